//! A throwaway PKI for the TLS tests, made with the `openssl` command line (what an operator
//! would use): a CA, server certificates for `localhost` / 127.0.0.1, client certificates with a
//! Common Name, and a second, unrelated CA whose certificates Berth must not accept.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pair {
    /// The certificate's DER, to compare with what a server presented.
    pub fn der(&self) -> Vec<u8> {
        CertificateDer::from_pem_file(&self.cert)
            .expect("a PEM certificate")
            .to_vec()
    }
}

/// A CA that signs what the tests need.
#[derive(Debug)]
pub struct Ca {
    dir: PathBuf,
    pub pair: Pair,
    serial: std::cell::Cell<u32>,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (scripts/setup.sh installs it)");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Ca {
    /// A new CA in `dir`, files prefixed with `name`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let key = format!("{name}.key");
        let cert = format!("{name}.crt");
        let subject = format!("/CN=Berth test CA {name}");
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &cert,
                "-days",
                "3",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Ca {
            dir: dir.to_owned(),
            pair: Pair {
                cert: dir.join(cert),
                key: dir.join(key),
            },
            serial: std::cell::Cell::new(1),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self, name: &str) -> Pair {
        self.issue(
            name,
            "localhost",
            "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
    }

    /// A client certificate whose subject Common Name is `common_name`.
    pub fn client(&self, name: &str, common_name: &str) -> Pair {
        self.issue(name, common_name, "extendedKeyUsage=clientAuth\n")
    }

    fn issue(&self, name: &str, common_name: &str, extensions: &str) -> Pair {
        let dir = &self.dir;
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let cert = format!("{name}.crt");
        let ext = format!("{name}.ext");
        std::fs::write(
            dir.join(&ext),
            format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}"),
        )
        .expect("write extensions");
        let subject = format!("/CN={common_name}");
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &subject,
            ],
        );
        let serial = self.serial.get() + 1;
        self.serial.set(serial);
        let serial = serial.to_string();
        let ca_cert = self.pair.cert.to_string_lossy().into_owned();
        let ca_key = self.pair.key.to_string_lossy().into_owned();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_cert,
                "-CAkey",
                &ca_key,
                "-set_serial",
                &serial,
                "-days",
                "3",
                "-out",
                &cert,
                "-extfile",
                &ext,
            ],
        );
        Pair {
            cert: dir.join(cert),
            key: dir.join(key),
        }
    }
}

/// A client configuration trusting `ca`, presenting `identity` if given.
pub fn client_config(ca: &Path, identity: Option<&Pair>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots
            .add(cert.expect("CA certificate"))
            .expect("a usable CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(pair) => {
            let certs = CertificateDer::pem_file_iter(&pair.cert)
                .expect("client certificate file")
                .collect::<Result<Vec<_>, _>>()
                .expect("client certificate");
            let key = PrivateKeyDer::from_pem_file(&pair.key).expect("client key");
            builder
                .with_client_auth_cert(certs, key)
                .expect("client certificate and key")
        }
    };
    Arc::new(config)
}
