//! Rules between keys, checked once every source is applied (single values were checked where
//! they entered, in [`super::value`]).

use berth_core::SessionExpiry;

use super::{Config, ConfigError, Key, listener, value};

impl Config {
    /// Rules between keys; single values were checked where they entered.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let session = &self.broker.session;
        if longer(session.v3_persistent_expiry, session.max_expiry) {
            return Err(ConfigError::Conflict {
                key: Key::SessionV3PersistentExpiry.name(),
                value: value::format_expiry(session.v3_persistent_expiry),
                limit_key: Key::SessionMaxExpiry.name(),
                limit: value::format_expiry(session.max_expiry),
            });
        }
        self.validate_edge()?;
        self.validate_cluster()
    }

    /// Listeners, TLS files and authentication: a node no client could use is refused.
    fn validate_edge(&self) -> Result<(), ConfigError> {
        let rule = |key: Key, message: &str| {
            Err(ConfigError::Rule {
                key: key.name(),
                message: message.to_owned(),
            })
        };
        let tls = &self.tls;
        let listeners = self.mqtt_listeners();
        if listeners.is_empty() {
            return rule(
                Key::Listen,
                "is \"none\" and so are tls.listen, ws.listen and ws.tls_listen, and there is no [[listeners]] entry: clients could not connect at all",
            );
        }
        listener::validate(&listeners)?;
        let tls_user = listeners
            .iter()
            .find(|listening| listening.listener.kind.is_tls());
        let serves_tls = tls_user.is_some();
        if let Some(user) = tls_user {
            let needed = if user.listed {
                format!(
                    "is needed by {}, a {} listener",
                    user.key, user.listener.kind
                )
            } else {
                "is needed when tls.listen or ws.tls_listen is set".to_owned()
            };
            if tls.cert.is_none() {
                return rule(Key::TlsCert, needed.as_str());
            }
            if tls.key.is_none() {
                return rule(Key::TlsKey, needed.as_str());
            }
        }
        if tls.identity_from_cert && tls.client_ca.is_none() {
            return rule(
                Key::TlsIdentityFromCert,
                "needs tls.client_ca (a certificate is an identity only once verified)",
            );
        }
        let auth = &self.auth;
        if auth.jwt_algorithm.is_some() && auth.jwt_key_file.is_none() {
            return rule(
                Key::AuthJwtKeyFile,
                "is needed when auth.jwt_algorithm is set (the HS256 secret or the RS256/ES256 public key)",
            );
        }
        if auth.jwt_key_file.is_some() && auth.jwt_algorithm.is_none() {
            return rule(
                Key::AuthJwtAlgorithm,
                "is needed when auth.jwt_key_file is set (\"HS256\", \"RS256\" or \"ES256\")",
            );
        }
        let certificates_identify = serves_tls && tls.identity_from_cert;
        if !auth.allow_anonymous
            && auth.password_file.is_none()
            && auth.jwt_algorithm.is_none()
            && !certificates_identify
        {
            return rule(
                Key::AuthAllowAnonymous,
                "is false, but there is no auth.password_file, no auth.jwt_algorithm and no tls.identity_from_cert: no client could connect",
            );
        }
        Ok(())
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let cluster = &self.cluster;
        let rule = |key: Key, message: String| {
            Err(ConfigError::Rule {
                key: key.name(),
                message,
            })
        };
        let reachable = !cluster.peers.is_empty() || cluster.join.is_some();
        if reachable && cluster.listen.is_none() {
            return rule(
                Key::ClusterListen,
                "is needed when cluster.peers or cluster.join is set".to_owned(),
            );
        }
        if !cluster.peers.is_empty() && cluster.join.is_some() {
            return rule(
                Key::ClusterJoin,
                "cannot be combined with cluster.peers (join a running cluster, or list its members)".to_owned(),
            );
        }
        if !cluster.peers.is_empty() && !cluster.peers.iter().any(|(id, _)| *id == cluster.node_id)
        {
            return rule(
                Key::ClusterPeers,
                format!(
                    "must include this node (cluster.node_id = {})",
                    cluster.node_id
                ),
            );
        }
        let mut ids: Vec<u64> = cluster.peers.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return rule(Key::ClusterPeers, "lists a node id twice".to_owned());
        }
        if cluster
            .listen
            .is_some_and(|addr| addr.ip().is_unspecified())
            && cluster.advertised().is_none()
        {
            return rule(
                Key::ClusterAdvertise,
                "is needed when cluster.listen is a wildcard address (0.0.0.0 or [::])".to_owned(),
            );
        }
        Ok(())
    }
}

fn longer(a: SessionExpiry, b: SessionExpiry) -> bool {
    match (a, b) {
        (_, SessionExpiry::Never) => false,
        (SessionExpiry::Never, SessionExpiry::After(_)) => true,
        (SessionExpiry::After(a), SessionExpiry::After(b)) => a > b,
    }
}
