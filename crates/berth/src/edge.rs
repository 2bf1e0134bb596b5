//! The node's edge from its configuration: the TLS listener's certificate files, the password
//! file and the JWT key file, read (and checked) at start, and read again on SIGHUP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use berth_core::acl::{Acl, AclRules};
use berth_server::TlsOptions;
use berth_server::auth::{AuthSettings, Authenticator, JwtSettings};
use berth_server::tls::{TlsFiles, TlsSettings};

use crate::config::Config;

/// What `ServerOptions` takes for TLS and authentication, and what a reload re-reads.
#[derive(Debug, Clone)]
pub struct Edge {
    pub tls: Option<TlsOptions>,
    pub auth: Arc<Authenticator>,
    /// The rules file and the handle the broker and the cluster admission check through.
    pub acl: Option<(PathBuf, Acl)>,
}

impl Edge {
    /// Reads the files the configuration names; an error names the key and the file.
    pub fn load(config: &Config) -> anyhow::Result<Edge> {
        // Any tls or wss listener, a shorthand key's or a `[[listeners]]` entry.
        let tls = match (config.serves_tls(), &config.tls.cert, &config.tls.key) {
            (true, Some(cert), Some(key)) => {
                let files = TlsFiles::load(TlsSettings {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: config.tls.client_ca.clone(),
                    identity_from_cert: config.tls.identity_from_cert,
                })?;
                Some(TlsOptions {
                    files: Arc::new(files),
                    proxy: config.proxy_settings(config.tls.proxy_protocol),
                })
            }
            _ => None,
        };
        // `validate` lets through both JWT keys or neither.
        let jwt = match (config.auth.jwt_algorithm, &config.auth.jwt_key_file) {
            (Some(algorithm), Some(key_file)) => Some(JwtSettings {
                algorithm,
                key_file: key_file.clone(),
            }),
            _ => None,
        };
        let auth = Authenticator::load(AuthSettings {
            allow_anonymous: config.auth.allow_anonymous,
            password_file: config.auth.password_file.clone(),
            jwt,
        })
        .map_err(|error| {
            let key = if error.is_jwt_key() {
                "auth.jwt_key_file"
            } else {
                "auth.password_file"
            };
            anyhow::Error::new(error).context(key)
        })?;
        let acl = match &config.acl_file {
            Some(path) => {
                let handle = config.broker.acl.clone();
                handle.replace(read_rules(path)?);
                Some((path.clone(), handle))
            }
            None => None,
        };
        Ok(Edge {
            tls,
            auth: Arc::new(auth),
            acl,
        })
    }

    /// Reads the certificate files, the password file and the JWT key file again. Each that
    /// fails keeps what it had (a renewal half done, a typo in the password file) and says why
    /// in the log.
    pub fn reload(&self) {
        if let Some(tls) = &self.tls {
            match tls.files.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(error) => {
                    tracing::error!(%error, "TLS certificate not reloaded; keeping the previous one");
                }
            }
        }
        if let Some((path, handle)) = &self.acl {
            match read_rules(path) {
                Ok(rules) => {
                    let count = rules.len();
                    handle.replace(rules);
                    tracing::info!(rules = count, "ACL rules reloaded");
                }
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "ACL rules not reloaded; keeping the previous rules");
                }
            }
        }
        match self.auth.reload() {
            Ok(users) if self.auth.has_password_file() => {
                tracing::info!(users, "password file reloaded");
            }
            Ok(_) => {}
            Err(error) => {
                tracing::error!(%error, "password file not reloaded; keeping the previous users");
            }
        }
        match self.auth.reload_jwt_key() {
            Ok(true) => tracing::info!("JWT key reloaded"),
            Ok(false) => {}
            Err(error) => {
                tracing::error!(%error, "JWT key not reloaded; keeping the previous key");
            }
        }
    }

    /// Warns when anyone who can reach a listener on a non-loopback address can connect
    /// without credentials (the default, for a first start on a laptop).
    pub fn warn_if_open(&self, listeners: &[SocketAddr]) {
        if self.auth.allows_anonymous() && listeners.iter().any(|addr| !addr.ip().is_loopback()) {
            tracing::warn!(
                "anonymous clients are allowed (auth.allow_anonymous = true) on a listener \
                 other hosts can reach; set auth.allow_anonymous = false and auth.password_file \
                 (or TLS client certificates) before exposing this node"
            );
        }
    }
}

/// Reads and parses the rules file; an error names the key, the file and the rule.
fn read_rules(path: &Path) -> anyhow::Result<AclRules> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("acl.file = {}: cannot read it", path.display()))?;
    AclRules::parse(&text).with_context(|| format!("acl.file = {}", path.display()))
}

/// Calls `edge.reload()` on every SIGHUP, for as long as the process runs.
#[cfg(unix)]
pub fn reload_on_sighup(edge: Edge) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!(
                "SIGHUP received; reloading certificates, the password file and the JWT key"
            );
            edge.reload();
        }
    });
    Ok(())
}

#[cfg(not(unix))]
pub fn reload_on_sighup(_edge: Edge) -> anyhow::Result<()> {
    Ok(())
}
