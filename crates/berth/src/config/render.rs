//! The effective configuration written back as TOML (`berth check-config`), in the file's own
//! spellings (`"64MiB"`, `"2h"`, `"unlimited"`), so the output can serve as a configuration file.

use std::fmt::Write as _;

use berth_core::DropPolicy;
use berth_server::auth::JwtAlgorithm;

use super::Config;
use super::value::{format_bytes, format_expiry, format_limit};

/// A `[section]` (`None`: the top level) and its `key = value` lines.
type Section<'a> = (Option<&'a str>, Vec<(&'a str, toml::Value)>);

impl Config {
    /// TOML that [`super::parse_file`] reads back to this same configuration.
    pub fn to_toml(&self) -> String {
        let broker = &self.broker;
        let string = |text: &str| toml::Value::String(text.to_owned());
        let integer = |n: u16| toml::Value::Integer(i64::from(n));
        let drop_policy = match broker.queue.drop_policy {
            DropPolicy::DropNewest => "drop_newest",
            DropPolicy::DropOldest => "drop_oldest",
        };
        let filters = toml::Value::Array(
            broker
                .denied_filters
                .iter()
                .map(|filter| string(filter.as_str()))
                .collect(),
        );
        let cluster = &self.cluster;
        let optional = |value: Option<String>| string(value.as_deref().unwrap_or("none"));
        let path = |value: &Option<std::path::PathBuf>| {
            string(
                &value
                    .as_ref()
                    .map_or_else(|| "none".to_owned(), |p| p.to_string_lossy().into_owned()),
            )
        };
        let tls = &self.tls;
        let sections: [Section<'_>; 12] = [
            (
                None,
                vec![
                    ("listen", optional(self.listen.map(|a| a.to_string()))),
                    ("proxy_protocol", string(self.proxy_protocol.as_str())),
                    (
                        "proxy_header_timeout",
                        string(&super::value::format_millis(self.proxy_header_timeout_ms)),
                    ),
                    ("http", string(&self.http.to_string())),
                    ("data_dir", string(&self.data_dir.to_string_lossy())),
                    ("log_level", string(&self.log_level)),
                    ("log_format", string(self.log_format.as_str())),
                ],
            ),
            (
                Some("storage"),
                vec![("sync", toml::Value::Boolean(self.storage_sync))],
            ),
            (
                Some("session"),
                vec![
                    (
                        "v3_persistent_expiry",
                        string(&format_expiry(broker.session.v3_persistent_expiry)),
                    ),
                    (
                        "max_expiry",
                        string(&format_expiry(broker.session.max_expiry)),
                    ),
                ],
            ),
            (
                Some("queue"),
                vec![
                    (
                        "max_messages",
                        format_limit(broker.queue.max_messages, false),
                    ),
                    ("max_bytes", format_limit(broker.queue.max_bytes, true)),
                    ("drop_policy", string(drop_policy)),
                    ("queue_qos0", toml::Value::Boolean(broker.queue.queue_qos0)),
                    (
                        "backpressure",
                        toml::Value::Boolean(broker.queue.backpressure),
                    ),
                ],
            ),
            (
                Some("limits"),
                vec![
                    (
                        "max_packet_size",
                        format_bytes(u64::from(broker.limits.max_packet_size)),
                    ),
                    ("receive_maximum", integer(broker.limits.receive_maximum)),
                    ("max_inflight", integer(broker.limits.max_inflight)),
                    (
                        "topic_alias_maximum",
                        integer(broker.limits.topic_alias_maximum),
                    ),
                    ("max_keep_alive", integer(broker.limits.max_keep_alive)),
                    ("max_connections", format_limit(self.max_connections, false)),
                    ("connection_rate", format_limit(self.connection_rate, false)),
                    (
                        "publish_rate",
                        format_limit(broker.limits.publish_rate, false),
                    ),
                    (
                        "publish_rate_bytes",
                        format_limit(broker.limits.publish_rate_bytes, true),
                    ),
                    (
                        "max_subscriptions",
                        format_limit(broker.limits.max_subscriptions, false),
                    ),
                    ("max_topic_length", integer(broker.limits.max_topic_length)),
                    (
                        "max_topic_levels",
                        format_limit(broker.limits.max_topic_levels, false),
                    ),
                ],
            ),
            (
                Some("tls"),
                vec![
                    ("listen", optional(tls.listen.map(|a| a.to_string()))),
                    ("cert", path(&tls.cert)),
                    ("key", path(&tls.key)),
                    ("client_ca", path(&tls.client_ca)),
                    (
                        "identity_from_cert",
                        toml::Value::Boolean(tls.identity_from_cert),
                    ),
                    ("proxy_protocol", string(tls.proxy_protocol.as_str())),
                ],
            ),
            (
                Some("ws"),
                vec![
                    ("listen", optional(self.ws.listen.map(|a| a.to_string()))),
                    (
                        "tls_listen",
                        optional(self.ws.tls_listen.map(|a| a.to_string())),
                    ),
                    ("path", string(&self.ws.path)),
                ],
            ),
            (
                Some("auth"),
                vec![
                    (
                        "allow_anonymous",
                        toml::Value::Boolean(self.auth.allow_anonymous),
                    ),
                    ("password_file", path(&self.auth.password_file)),
                    (
                        "jwt_algorithm",
                        string(self.auth.jwt_algorithm.map_or("none", JwtAlgorithm::as_str)),
                    ),
                    ("jwt_key_file", path(&self.auth.jwt_key_file)),
                ],
            ),
            (
                Some("acl"),
                vec![("denied_filters", filters), ("file", path(&self.acl_file))],
            ),
            (
                Some("cluster"),
                vec![
                    ("node_id", toml::Value::Integer(cluster.node_id as i64)),
                    ("listen", optional(cluster.listen.map(|a| a.to_string()))),
                    ("advertise", optional(cluster.advertise.clone())),
                    ("peers", super::value::format_peers(&cluster.peers)),
                    ("join", optional(cluster.join.clone())),
                    (
                        "commit_timeout",
                        string(&format!("{}s", cluster.commit_timeout_secs)),
                    ),
                    (
                        "handoff_after",
                        string(&super::value::format_millis(cluster.handoff_after_ms)),
                    ),
                    (
                        "handoff_max_per_session",
                        super::value::format_limit(broker.handoff.max_per_session, false),
                    ),
                    (
                        "handoff_max_total",
                        super::value::format_limit(broker.handoff.max_total, false),
                    ),
                ],
            ),
            (
                Some("drain"),
                vec![
                    ("grace", string(&format!("{}s", self.drain.grace_secs))),
                    ("rate", format_limit(self.drain.rate, false)),
                ],
            ),
            (
                Some("admin"),
                vec![("token_file", path(&self.admin_token_file))],
            ),
        ];
        let mut out = String::new();
        for (section, entries) in sections {
            if let Some(section) = section {
                let _ = writeln!(out, "\n[{section}]");
            }
            for (key, value) in entries {
                let _ = writeln!(out, "{key} = {value}");
            }
        }
        // Last: every line after a `[[listeners]]` header belongs to that entry.
        for listener in &self.listeners {
            let _ = writeln!(out, "\n[[listeners]]");
            for (key, value) in listener.to_toml_entries() {
                let _ = writeln!(out, "{key} = {value}");
            }
        }
        out
    }
}
