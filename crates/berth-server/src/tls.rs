//! MQTT over TLS (rustls with the *ring* provider): the server's certificate and key from PEM
//! files, optionally client certificates verified against a CA, and a reload that a renewal
//! needs (SIGHUP) without a restart.
//!
//! ```text
//!  TCP accept ─▶ PROXY header (on the raw socket, as the balancer sends it)
//!             ─▶ TLS handshake with the config current at accept time ─▶ MQTT codec
//!  SIGHUP ─▶ TlsFiles::reload: read and check the files; only a good set replaces the config
//! ```
//! A connection keeps the configuration it was accepted with; a reload only changes what later
//! connections get. A reload that fails (unreadable file, key not matching the certificate)
//! keeps the previous configuration, so a bad renewal never takes the listener down.

mod identity;

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

pub use identity::common_name;

/// Where the TLS listener's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM: the server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: CA certificates that client certificates must chain to. When set, every client
    /// must present a valid certificate.
    pub client_ca: Option<PathBuf>,
    /// Use the client certificate's Common Name as the MQTT username (needs `client_ca`).
    pub identity_from_cert: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key} = {path}: cannot read it: {message}")]
    Read {
        key: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{key} = {path}: no {what} in it")]
    Empty {
        key: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error("tls.cert and tls.key: {0}")]
    KeyPair(String),
    #[error("tls.client_ca: {0}")]
    ClientCa(String),
}

/// The TLS listener's configuration, swapped whole by [`TlsFiles::reload`].
pub struct TlsFiles {
    settings: TlsSettings,
    /// A std lock: held only to clone or replace the `Arc`, never across an await.
    current: RwLock<TlsAcceptor>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// Reads and checks the files; an error names the key and the file (the node stops).
    pub fn load(settings: TlsSettings) -> Result<TlsFiles, TlsError> {
        let acceptor = build(&settings)?;
        Ok(TlsFiles {
            settings,
            current: RwLock::new(acceptor),
        })
    }

    /// Reads the files again; only a complete, consistent set replaces the current one.
    pub fn reload(&self) -> Result<(), TlsError> {
        let acceptor = build(&self.settings)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = acceptor;
        Ok(())
    }

    /// What a connection accepted now is served with.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn identity_from_cert(&self) -> bool {
        self.settings.identity_from_cert
    }
}

fn build(settings: &TlsSettings) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs("tls.cert", &settings.cert)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            key: "tls.key",
            path: settings.key.clone(),
            what: "private key",
        },
        other => read_error("tls.key", &settings.key, &other),
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::KeyPair(error.to_string()))?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs("tls.client_ca", path)? {
                roots
                    .add(cert)
                    .map_err(|error| TlsError::ClientCa(format!("{}: {error}", path.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| TlsError::ClientCa(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    // `with_single_cert` checks that the key matches the certificate: a renewal that replaced
    // one file but not yet the other is refused here, and the previous pair stays.
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|error| TlsError::KeyPair(error.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|error| read_error(key, path, &error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| read_error(key, path, &error))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            key,
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn read_error(key: &'static str, path: &Path, error: &dyn std::fmt::Display) -> TlsError {
    TlsError::Read {
        key,
        path: path.to_owned(),
        message: error.to_string(),
    }
}
