//! `[[listeners]]`: MQTT listeners as a list — several of a kind, each with its own PROXY
//! protocol mode, WebSocket path and connection limit — and the node's effective list, in which
//! each shorthand key (`listen`, `tls.listen`, `ws.listen`, `ws.tls_listen`) is one entry more.
//!
//! ```text
//!   listen, tls.listen, ws.listen, ws.tls_listen ─┐
//!   [[listeners]] (file only) ─────────────────────┴─▶ Config::mqtt_listeners
//!        ─▶ validate (unique names, no shared address) ─▶ node::bind_listeners
//! ```
//! An entry's bad value is refused naming `listeners[i].field`, `i` counting from 0 in the
//! order of the file.

use std::net::{IpAddr, SocketAddr};

use berth_core::Limit;
use berth_server::ListenerKind;
use berth_server::proxy_protocol::ProxyMode;
use serde::Deserialize;

use super::Config;
use super::error::{ConfigError, Origin, Problem};
use super::value::{self, Input};

/// The path of a ws or wss entry that sets none (`ws.path` is the shorthand's own).
pub const DEFAULT_PATH: &str = berth_server::DEFAULT_WS_PATH;

/// One `[[listeners]]` entry as the file writes it; [`read`] converts it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    name: Option<toml::Value>,
    kind: Option<toml::Value>,
    bind: Option<toml::Value>,
    proxy_protocol: Option<toml::Value>,
    max_connections: Option<toml::Value>,
    path: Option<toml::Value>,
}

/// An MQTT listener of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Its name in logs and in `berth_listener_refusals_total{listener}`; `<kind>-<index>`
    /// unless set (the shorthand keys' are `tcp`, `tls`, `ws` and `wss`).
    pub name: String,
    pub kind: ListenerKind,
    /// Where it listens; port 0: a free port the system picks (tests).
    pub bind: SocketAddr,
    pub proxy_protocol: ProxyMode,
    /// Connections open at once on this listener, on top of `limits.max_connections`.
    pub max_connections: Limit,
    /// ws and wss: the HTTP path of the upgrade; `None` for tcp and tls.
    pub path: Option<String>,
}

/// A listener of the effective list and the key that sets it, to name it in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    /// `listen`, `tls.listen`, `ws.listen`, `ws.tls_listen`, or `listeners[i]`.
    pub key: String,
    /// A `[[listeners]]` entry (its fields are `key.field`), not a shorthand key.
    pub listed: bool,
    pub listener: ListenerConfig,
}

impl Listening {
    /// The key that sets its address.
    fn bind_key(&self) -> String {
        if self.listed {
            format!("{}.bind", self.key)
        } else {
            self.key.clone()
        }
    }
}

/// Converts the file's entries; the first bad value is the error, naming its entry and field.
pub(super) fn read(entries: &[RawListener]) -> Result<Vec<ListenerConfig>, ConfigError> {
    entries
        .iter()
        .enumerate()
        .map(|(index, raw)| raw.convert(index))
        .collect()
}

fn invalid(index: usize, field: &'static str) -> impl Fn(Problem) -> ConfigError {
    move |problem| ConfigError::Invalid {
        origin: Origin::Listener { index, field },
        problem,
    }
}

fn required<'a>(value: Option<&'a toml::Value>, hint: &'static str) -> Result<Input<'a>, Problem> {
    value.map(Input::Toml).ok_or(Problem::Required { hint })
}

fn optional<'a, T>(
    value: Option<&'a toml::Value>,
    convert: impl FnOnce(Input<'a>) -> Result<T, Problem>,
) -> Result<Option<T>, Problem> {
    value.map(|value| convert(Input::Toml(value))).transpose()
}

impl RawListener {
    fn convert(&self, index: usize) -> Result<ListenerConfig, ConfigError> {
        let kind = required(self.kind.as_ref(), "one of tcp, tls, ws, wss")
            .and_then(value::listener_kind)
            .map_err(invalid(index, "kind"))?;
        let bind = required(
            self.bind.as_ref(),
            "an address such as \"0.0.0.0:1883\" (port 0: any free port)",
        )
        .and_then(value::socket_addr)
        .map_err(invalid(index, "bind"))?;
        let proxy_protocol = optional(self.proxy_protocol.as_ref(), value::proxy_mode)
            .map_err(invalid(index, "proxy_protocol"))?
            .unwrap_or(ProxyMode::Off);
        let max_connections = optional(self.max_connections.as_ref(), value::count_limit)
            .map_err(invalid(index, "max_connections"))?
            .unwrap_or(Limit::Unlimited);
        let path =
            optional(self.path.as_ref(), value::http_path).map_err(invalid(index, "path"))?;
        let path = match path {
            Some(_) if !kind.is_websocket() => {
                return Err(invalid(index, "path")(Problem::PathWithoutWebSocket {
                    kind: kind.as_str(),
                }));
            }
            Some(path) => Some(path),
            None if kind.is_websocket() => Some(DEFAULT_PATH.to_owned()),
            None => None,
        };
        let name = optional(self.name.as_ref(), value::listener_name)
            .map_err(invalid(index, "name"))?
            .unwrap_or_else(|| format!("{}-{index}", kind.as_str()));
        Ok(ListenerConfig {
            name,
            kind,
            bind,
            proxy_protocol,
            max_connections,
            path,
        })
    }
}

impl ListenerConfig {
    /// Its `key = value` lines in a `[[listeners]]` table, every field written out.
    pub(super) fn to_toml_entries(&self) -> Vec<(&'static str, toml::Value)> {
        let string = |text: &str| toml::Value::String(text.to_owned());
        let mut entries = vec![
            ("name", string(&self.name)),
            ("kind", string(self.kind.as_str())),
            ("bind", string(&self.bind.to_string())),
            ("proxy_protocol", string(self.proxy_protocol.as_str())),
            (
                "max_connections",
                value::format_limit(self.max_connections, false),
            ),
        ];
        if let Some(path) = &self.path {
            entries.push(("path", string(path)));
        }
        entries
    }
}

impl Config {
    /// Every MQTT listener of the node, in the order they are bound: the shorthand keys'
    /// (`listen`, `tls.listen`, `ws.listen`, `ws.tls_listen`) first, then `[[listeners]]`.
    pub fn mqtt_listeners(&self) -> Vec<Listening> {
        let shorthand = [
            (
                "listen",
                ListenerKind::Tcp,
                self.listen,
                self.proxy_protocol,
            ),
            (
                "tls.listen",
                ListenerKind::Tls,
                self.tls.listen,
                self.tls.proxy_protocol,
            ),
            (
                "ws.listen",
                ListenerKind::Ws,
                self.ws.listen,
                self.proxy_protocol,
            ),
            (
                "ws.tls_listen",
                ListenerKind::Wss,
                self.ws.tls_listen,
                self.tls.proxy_protocol,
            ),
        ];
        let shorthand = shorthand
            .into_iter()
            .filter_map(|(key, kind, bind, proxy_protocol)| {
                Some(Listening {
                    key: key.to_owned(),
                    listed: false,
                    listener: ListenerConfig {
                        name: kind.as_str().to_owned(),
                        kind,
                        bind: bind?,
                        proxy_protocol,
                        max_connections: Limit::Unlimited,
                        path: kind.is_websocket().then(|| self.ws.path.clone()),
                    },
                })
            });
        let listed = self
            .listeners
            .iter()
            .enumerate()
            .map(|(index, listener)| Listening {
                key: format!("listeners[{index}]"),
                listed: true,
                listener: listener.clone(),
            });
        shorthand.chain(listed).collect()
    }

    /// Whether a listener speaks TLS (then `[tls]` needs its certificate and key).
    pub fn serves_tls(&self) -> bool {
        self.mqtt_listeners()
            .iter()
            .any(|listening| listening.listener.kind.is_tls())
    }
}

/// Rules across listeners: names are unique, and no two share an address (port 0 aside: each
/// gets a port of its own).
pub(super) fn validate(listeners: &[Listening]) -> Result<(), ConfigError> {
    for (i, later) in listeners.iter().enumerate() {
        for earlier in &listeners[..i] {
            let (name, bind) = (&later.listener.name, later.listener.bind);
            if *name == earlier.listener.name {
                // Shorthand names differ from one another: `later` is a list entry.
                return Err(ConfigError::Listener {
                    at: format!("{}.name", later.key),
                    message: format!("{name:?} is also the name of {}", earlier.key),
                });
            }
            let other = earlier.listener.bind;
            if clash(bind, other) {
                let message = if bind == other {
                    format!("{bind} is also the address of {}", earlier.key)
                } else {
                    format!(
                        "{bind} overlaps {other}, the address of {} (the same port)",
                        earlier.key
                    )
                };
                return Err(ConfigError::Listener {
                    at: later.bind_key(),
                    message,
                });
            }
        }
    }
    Ok(())
}

/// Whether two listening addresses would take the same port: the same address, or one is a
/// wildcard that covers the other (`0.0.0.0` the IPv4 addresses, `[::]` all of them).
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == 0 || a.port() != b.port() {
        return false;
    }
    let covers = |wide: IpAddr, other: IpAddr| {
        wide == other || (wide.is_unspecified() && (wide.is_ipv6() || other.is_ipv4()))
    };
    covers(a.ip(), b.ip()) || covers(b.ip(), a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap_or_else(|_| panic!("{text}"))
    }

    #[test]
    fn addresses_clash_when_they_would_take_the_same_port() {
        for (a, b) in [
            ("127.0.0.1:1883", "127.0.0.1:1883"),
            ("0.0.0.0:1883", "127.0.0.1:1883"),
            ("[::]:1883", "10.0.0.1:1883"),
            ("[::]:1883", "[::1]:1883"),
        ] {
            assert!(clash(addr(a), addr(b)), "{a} {b}");
            assert!(clash(addr(b), addr(a)), "{b} {a}");
        }
        for (a, b) in [
            ("127.0.0.1:0", "127.0.0.1:0"),
            ("0.0.0.0:0", "0.0.0.0:0"),
            ("127.0.0.1:1883", "127.0.0.1:1884"),
            ("127.0.0.1:1883", "127.0.0.2:1883"),
            ("0.0.0.0:1883", "[::1]:1883"),
        ] {
            assert!(!clash(addr(a), addr(b)), "{a} {b}");
        }
    }
}
