//! The identity a client certificate carries: its subject's Common Name, used as the MQTT
//! username where the listener says so (`tls.identity_from_cert`).
//!
//! Only called on a certificate rustls has already verified against the configured CA, so the
//! DER is well formed; this walks just far enough to find the subject (a few dozen lines
//! instead of a general X.509 parser) and still fails soft (`None`) on anything unexpected.

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// `[0] EXPLICIT Version`, present in every v2/v3 certificate.
const VERSION_TAG: u8 = 0xA0;
/// id-at-commonName, 2.5.4.3.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const UTF8_STRING: u8 = 0x0C;
const PRINTABLE_STRING: u8 = 0x13;
const IA5_STRING: u8 = 0x16;
const TELETEX_STRING: u8 = 0x14;

/// The subject's (last) Common Name of a DER certificate, if it has one in a string type that
/// is plain text.
pub fn common_name(cert_der: &[u8]) -> Option<String> {
    let (tag, certificate, _) = tlv(cert_der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = tlv(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == VERSION_TAG {
        rest = after;
    }
    // serialNumber, signature, issuer, validity: skipped; then the subject.
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let (tag, subject, _) = tlv(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut name = None;
    let mut rdns = subject;
    while !rdns.is_empty() {
        let (tag, rdn, after) = tlv(rdns)?;
        rdns = after;
        if tag != SET {
            return None;
        }
        let mut attributes = rdn;
        while !attributes.is_empty() {
            let (tag, attribute, after) = tlv(attributes)?;
            attributes = after;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, oid, value) = tlv(attribute)?;
            if tag == OID && oid == COMMON_NAME {
                let (tag, text, _) = tlv(value)?;
                if matches!(
                    tag,
                    UTF8_STRING | PRINTABLE_STRING | IA5_STRING | TELETEX_STRING
                ) {
                    name = std::str::from_utf8(text).ok().map(str::to_owned);
                }
            }
        }
    }
    name.filter(|n| !n.is_empty())
}

/// One DER element: (tag, contents, what follows it). Single-byte tags only (all the fields
/// walked here have them); definite lengths up to four bytes.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |len, byte| (len << 8) | usize::from(*byte));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal certificate-shaped DER: version, serial, algorithm, issuer, validity, subject.
    fn cert_with_subject(subject: &[u8]) -> Vec<u8> {
        let element = |tag: u8, body: &[u8]| {
            let mut out = vec![tag];
            if body.len() < 0x80 {
                out.push(body.len() as u8);
            } else {
                out.push(0x82);
                out.extend_from_slice(&(body.len() as u16).to_be_bytes());
            }
            out.extend_from_slice(body);
            out
        };
        let mut tbs = element(VERSION_TAG, &element(0x02, &[2]));
        tbs.extend(element(0x02, &[1, 2, 3]));
        tbs.extend(element(SEQUENCE, &element(OID, &[0x2A, 0x86, 0x48])));
        tbs.extend(element(SEQUENCE, &[]));
        tbs.extend(element(SEQUENCE, &[0u8; 150]));
        tbs.extend(element(SEQUENCE, subject));
        let mut cert = element(SEQUENCE, &tbs);
        cert = element(SEQUENCE, &cert);
        cert
    }

    fn attribute(oid: &[u8], tag: u8, value: &str) -> Vec<u8> {
        let mut seq = vec![OID, oid.len() as u8];
        seq.extend_from_slice(oid);
        seq.extend([tag, value.len() as u8]);
        seq.extend_from_slice(value.as_bytes());
        let mut out = vec![SEQUENCE, seq.len() as u8];
        out.extend(seq);
        let mut set = vec![SET, out.len() as u8];
        set.extend(out);
        set
    }

    #[test]
    fn finds_the_common_name_among_other_attributes() {
        let mut subject = attribute(&[0x55, 0x04, 0x06], PRINTABLE_STRING, "DE");
        subject.extend(attribute(COMMON_NAME, UTF8_STRING, "sensor-17"));
        subject.extend(attribute(&[0x55, 0x04, 0x0A], UTF8_STRING, "Fleet"));
        assert_eq!(
            common_name(&cert_with_subject(&subject)).as_deref(),
            Some("sensor-17")
        );
    }

    #[test]
    fn no_common_name_or_broken_der_is_none() {
        let subject = attribute(&[0x55, 0x04, 0x0A], UTF8_STRING, "Fleet");
        assert_eq!(common_name(&cert_with_subject(&subject)), None);
        let cert = cert_with_subject(&attribute(COMMON_NAME, UTF8_STRING, "x"));
        for cut in 0..cert.len() {
            assert_eq!(common_name(&cert[..cut]), None, "cut at {cut}");
        }
        assert_eq!(common_name(&[]), None);
    }
}
