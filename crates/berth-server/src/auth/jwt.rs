//! JWTs as MQTT passwords: a device fleet provisioned with signed tokens sends its token as the
//! CONNECT password, and the node checks it against one configured key.
//!
//! Rules (the module docs of [`super`] say where they sit among the others):
//! - **Which passwords are tokens.** Exactly three non-empty segments of the base64url alphabet
//!   (`A-Z a-z 0-9 - _`) separated by dots. Any other password is a password, for the password
//!   file.
//! - **Signature.** With the configured key, and the header's `alg` must be exactly the
//!   configured algorithm: a token signed with HS256 using an RS256/ES256 public key as the
//!   secret (the classic confusion attack) is refused, and so is `alg: none`.
//! - **Times.** `exp` is required and checked with no leeway; `nbf`, when present, is checked
//!   too. `aud` and `iss` are not checked.
//! - **Subject.** A `sub` claim names the client: a CONNECT username must equal it, and the
//!   authenticated username becomes `sub`. A `sub` that is not a non-empty string is refused.
//!   Without `sub`, the CONNECT's username stays as it was.
//! - **Topics.** An `acl` claim grants topics, in EMQX's shape so that tokens issued for it
//!   work here unchanged: `"acl": {"pub": [...], "sub": [...], "all": [...]}`, each list
//!   optional, of topic patterns as the ACL rules file writes them (`+`, `#`, `%u` for the
//!   username, `%c` for the client id). (`sub` inside `acl` means subscribing; the top-level
//!   `sub` stays the subject.) A client whose token carries the claim may use exactly those
//!   topics, and the rules file must allow them too (core decides: `berth_core::acl::grants`);
//!   `"acl": {}` allows nothing. Without the claim the rules file alone decides. A claim that
//!   is not such an object, has another key, or holds anything but valid patterns is refused
//!   (0x87 / 5, not 0x86: the token is genuine, but what it allows cannot be read, and reading
//!   it as "no grants" would let the client do everything the rules file allows).
//!
//! Key files: HS256 reads a shared secret (the file's bytes, less a trailing line break) of at
//! least [`MIN_SECRET_LEN`] bytes, as RFC 7518 §3.2 requires; RS256 a PEM RSA public key
//! (`PUBLIC KEY` or `RSA PUBLIC KEY`, or a certificate); ES256 a PEM P-256 public key (or a
//! certificate). A file that is missing, unreadable or not such a key stops the node at start,
//! naming the file; on reload it keeps the previous key.
//!
//! Verification is a single HMAC or signature check (microseconds), so it runs on the
//! connection task; nothing is cached.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use berth_core::acl::{Granted, Grants};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::{AuthError, Authenticated, Refusal};

/// The claim that carries a token's topic grants, and its lists (see the module docs).
const ACL_CLAIM: &str = "acl";
const GRANT_LISTS: [(&str, Granted); 3] = [
    ("pub", Granted::Publish),
    ("sub", Granted::Subscribe),
    ("all", Granted::Both),
];

/// Shortest HS256 secret: the hash's output size (RFC 7518 §3.2).
const MIN_SECRET_LEN: usize = 32;

/// The base64 of the first 27 bytes of every uncompressed P-256 public key in
/// SubjectPublicKeyInfo DER (the algorithm and curve identifiers): what a `PUBLIC KEY` PEM for
/// ES256 starts with.
const P256_SPKI_PREFIX: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE";

/// The one algorithm tokens must be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 and a shared secret.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 and an RSA public key.
    Rs256,
    /// ECDSA on P-256 with SHA-256 and an EC public key.
    Es256,
}

impl JwtAlgorithm {
    /// Every algorithm, for the configuration's spellings.
    pub const ALL: [JwtAlgorithm; 3] = [
        JwtAlgorithm::Hs256,
        JwtAlgorithm::Rs256,
        JwtAlgorithm::Es256,
    ];

    /// The JOSE name, as a token's header and the configuration spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Es256 => "ES256",
        }
    }

    fn algorithm(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Es256 => Algorithm::ES256,
        }
    }
}

/// JWT passwords: the algorithm and the file holding the secret or the public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    pub algorithm: JwtAlgorithm,
    pub key_file: PathBuf,
}

/// Checks tokens against the configured key; the key is swapped whole by [`Verifier::reload`].
pub(super) struct Verifier {
    settings: JwtSettings,
    key: RwLock<Arc<DecodingKey>>,
    validation: Validation,
}

impl Verifier {
    /// Reads the key file; an error names it.
    pub(super) fn load(settings: JwtSettings) -> Result<Verifier, AuthError> {
        let key = read_key(&settings)?;
        let validation = validation(settings.algorithm);
        Ok(Verifier {
            settings,
            key: RwLock::new(Arc::new(key)),
            validation,
        })
    }

    /// Reads the key file again; on error the previous key stays in force.
    pub(super) fn reload(&self) -> Result<(), AuthError> {
        let fresh = Arc::new(read_key(&self.settings)?);
        *self.key.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// Verifies `token`, matches its subject with the CONNECT's `username` and reads the
    /// topics it grants.
    pub(super) fn admit(
        &self,
        token: &str,
        username: Option<&str>,
    ) -> Result<Authenticated, Refusal> {
        let claims = self.verified_claims(token)?;
        let subject = subject(&claims)?;
        let mismatch = match (subject.as_deref(), username) {
            (Some(subject), Some(username)) => subject != username,
            _ => false,
        };
        if mismatch {
            tracing::debug!("JWT refused: its sub is not the CONNECT's username");
            return Err(Refusal::BadCredentials);
        }
        Ok(Authenticated {
            username: subject,
            grants: grants(&claims)?,
        })
    }

    /// The token's claims, once its signature, algorithm and times are verified.
    fn verified_claims(&self, token: &str) -> Result<Map<String, Value>, Refusal> {
        let key = Arc::clone(&self.key.read().unwrap_or_else(PoisonError::into_inner));
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(error) => {
                tracing::debug!(%error, "JWT refused");
                Err(Refusal::BadCredentials)
            }
        }
    }
}

/// The token's `sub`.
fn subject(claims: &Map<String, Value>) -> Result<Option<String>, Refusal> {
    match claims.get("sub") {
        None => Ok(None),
        Some(Value::String(subject)) if !subject.is_empty() => Ok(Some(subject.clone())),
        Some(_) => {
            tracing::debug!("JWT refused: its sub is not a non-empty string");
            Err(Refusal::BadCredentials)
        }
    }
}

/// The topics the token's `acl` claim grants; `None` without the claim (see the module docs).
fn grants(claims: &Map<String, Value>) -> Result<Option<Arc<Grants>>, Refusal> {
    let Some(claim) = claims.get(ACL_CLAIM) else {
        return Ok(None);
    };
    let Value::Object(lists) = claim else {
        return Err(unreadable_acl("is not an object"));
    };
    if let Some(key) = lists
        .keys()
        .find(|key| !GRANT_LISTS.iter().any(|(name, _)| *name == key.as_str()))
    {
        return Err(unreadable_acl(&format!(
            "has the key {key:?}; only \"pub\", \"sub\" and \"all\" are known"
        )));
    }
    let mut patterns = Vec::new();
    for (name, granted) in GRANT_LISTS {
        let Some(list) = lists.get(name) else {
            continue;
        };
        let Value::Array(items) = list else {
            return Err(unreadable_acl(&format!("{name} is not an array")));
        };
        for item in items {
            let Value::String(pattern) = item else {
                return Err(unreadable_acl(&format!(
                    "{name} holds {item}, not a string"
                )));
            };
            patterns.push((granted, pattern.as_str()));
        }
    }
    match Grants::parse(patterns) {
        Ok(grants) => Ok(Some(Arc::new(grants))),
        Err(problem) => Err(unreadable_acl(&format!("has a bad pattern: {problem}"))),
    }
}

fn unreadable_acl(problem: &str) -> Refusal {
    tracing::debug!("JWT refused: its acl claim {problem}");
    Refusal::NotAuthorized
}

/// What every token is held to (see the module docs).
fn validation(algorithm: JwtAlgorithm) -> Validation {
    let mut validation = Validation::new(algorithm.algorithm());
    validation.leeway = 0;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    validation
}

/// `password` as a token, if it has a token's shape (see the module docs).
pub(super) fn as_token(password: &[u8]) -> Option<&str> {
    let mut segments = 0;
    for segment in password.split(|&byte| byte == b'.') {
        segments += 1;
        let base64url = segment
            .iter()
            .all(|&byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        if segments > 3 || segment.is_empty() || !base64url {
            return None;
        }
    }
    if segments != 3 {
        return None;
    }
    std::str::from_utf8(password).ok()
}

fn read_key(settings: &JwtSettings) -> Result<DecodingKey, AuthError> {
    let path = &settings.key_file;
    let bytes = std::fs::read(path).map_err(|source| AuthError::JwtKeyRead {
        path: path.clone(),
        source,
    })?;
    parse_key(settings.algorithm, path, bytes)
}

fn parse_key(
    algorithm: JwtAlgorithm,
    path: &Path,
    mut bytes: Vec<u8>,
) -> Result<DecodingKey, AuthError> {
    let problem = |problem: String| AuthError::JwtKey {
        path: path.to_owned(),
        problem,
    };
    match algorithm {
        JwtAlgorithm::Hs256 => {
            while let Some(&(b'\n' | b'\r')) = bytes.last() {
                bytes.pop();
            }
            if bytes.len() < MIN_SECRET_LEN {
                return Err(problem(format!(
                    "an HS256 secret must be at least {MIN_SECRET_LEN} bytes, this one is {}",
                    bytes.len()
                )));
            }
            Ok(DecodingKey::from_secret(&bytes))
        }
        JwtAlgorithm::Rs256 => DecodingKey::from_rsa_pem(&bytes).map_err(|error| {
            problem(format!(
                "not a PEM RSA public key (\"PUBLIC KEY\" or \"RSA PUBLIC KEY\") for RS256: {error}"
            ))
        }),
        JwtAlgorithm::Es256 => {
            let not_p256 = std::str::from_utf8(&bytes).is_ok_and(|text| {
                public_key_body(text).is_some_and(|body| !body.starts_with(P256_SPKI_PREFIX))
            });
            if not_p256 {
                return Err(problem(
                    "the public key is not a P-256 (prime256v1) key, which ES256 needs".to_owned(),
                ));
            }
            DecodingKey::from_ec_pem(&bytes).map_err(|error| {
                problem(format!(
                    "not a PEM EC public key (\"PUBLIC KEY\") for ES256: {error}"
                ))
            })
        }
    }
}

/// The base64 body of the first `PUBLIC KEY` block of a PEM text, lines joined.
fn public_key_body(text: &str) -> Option<String> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .skip_while(|line| *line != "-----BEGIN PUBLIC KEY-----");
    lines.next()?;
    Some(
        lines
            .take_while(|line| !line.starts_with("-----END"))
            .collect(),
    )
}

#[cfg(test)]
mod tests;
