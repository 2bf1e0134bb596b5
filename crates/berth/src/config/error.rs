//! Why a configuration was refused. Every message names the key, variable or file involved and
//! the value it did not accept.

use std::fmt;
use std::path::PathBuf;

use super::Key;

/// A configuration refused at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, a key that does not exist (its name is in `message`), a section of the wrong type.
    #[error("config: {}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("config: {origin}: {problem}")]
    Invalid { origin: Origin, problem: Problem },
    /// A value that breaks a rule involving other keys.
    #[error("config: {key}: {message}")]
    Rule { key: &'static str, message: String },
    /// Two values that are each fine but contradict each other.
    #[error("config: {key}: {value} is longer than {limit_key} ({limit})")]
    Conflict {
        key: &'static str,
        value: String,
        limit_key: &'static str,
        limit: String,
    },
    #[error("config: environment variable {var} is not valid UTF-8")]
    EnvNotUnicode { var: String },
    /// A listener that breaks a rule involving others (a name or an address taken twice);
    /// `at` is `listeners[i].field` or a shorthand key.
    #[error("config: {at}: {message}")]
    Listener { at: String, message: String },
}

/// Where a refused value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The TOML file; named by its dotted key, e.g. `queue.max_messages`.
    File { key: Key },
    /// An environment variable, e.g. `BERTH_QUEUE_MAX_MESSAGES`.
    Env { key: Key },
    /// A field of a `[[listeners]]` entry of the file, e.g. `listeners[2].kind` (counted from 0).
    Listener { index: usize, field: &'static str },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { key } => f.write_str(key.name()),
            Origin::Env { key } => {
                write!(f, "environment variable {} ({})", key.env_var(), key.name())
            }
            Origin::Listener { index, field } => write!(f, "listeners[{index}].{field}"),
        }
    }
}

/// What is wrong with one value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("0 is not allowed; write \"unlimited\" for no limit")]
    ZeroIsNotUnlimited,
    #[error("{value} is out of range {min}..={max}")]
    OutOfRange { value: String, min: u64, max: u64 },
    #[error("expected {expected}, found {found}")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    #[error("must not be empty")]
    Empty,
    #[error(
        "{value:?} is not a size; write a number of bytes, or a number with a unit \
         (B, KiB, MiB, GiB, TiB, kB, MB, GB, TB) such as \"64MiB\""
    )]
    BadSize { value: String },
    #[error(
        "{value:?} is not a duration; write a number with a unit (s, m, h, d) such as \"2h\", \
         or \"never\""
    )]
    BadDuration { value: String },
    #[error("{value:?} is longer than {max} seconds; write \"never\" for no expiry")]
    DurationTooLong { value: String, max: u32 },
    #[error("{value:?} is not a socket address such as \"0.0.0.0:1883\" or \"[::]:1883\"")]
    BadAddress { value: String },
    #[error("{value:?} is not a drop policy; write \"drop_newest\" or \"drop_oldest\"")]
    BadDropPolicy { value: String },
    #[error("{value:?} is not a PROXY protocol mode (\"off\", \"optional\" or \"required\")")]
    BadProxyMode { value: String },
    #[error("{value:?} is not a valid topic filter: {reason}")]
    BadFilter { value: String, reason: String },
    #[error("{value:?} is not a log filter: {reason}")]
    BadLogLevel { value: String, reason: String },
    #[error("{value:?} is not host:port (e.g. \"10.0.0.1:7001\"), or \"none\"")]
    BadHostPort { value: String },
    #[error("{value:?} is not a peer; write id=host:port, e.g. \"1=10.0.0.1:7001\"")]
    BadPeer { value: String },
    #[error("expected one of tcp, tls, ws, wss, got {value:?}")]
    BadListenerKind { value: String },
    #[error("{value:?} is not a listener name; write 1 to {max} letters, digits, '-', '_' or '.'")]
    BadListenerName { value: String, max: usize },
    #[error("is required: {hint}")]
    Required { hint: &'static str },
    #[error("only ws and wss listeners have a path; this one is {kind}")]
    PathWithoutWebSocket { kind: &'static str },
}
