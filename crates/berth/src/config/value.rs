//! One configuration value at a time: text or TOML in, typed value or [`Problem`] out.
//!
//! The same converter serves the TOML file (typed TOML values) and the environment (text), so a
//! key accepts the same spellings wherever it is set. Converters do not know which key they
//! convert; the caller attaches the key (or variable) to the problem.

use std::net::SocketAddr;
use std::path::PathBuf;

use berth_codec::TopicFilter;
use berth_core::{DropPolicy, Limit, SessionExpiry};
use berth_server::auth::JwtAlgorithm;

use super::LogFormat;
use super::error::Problem;

/// Smallest `limits.max_packet_size`: an MQTT 5 CONNECT with a one-byte client id fits in 16 bytes.
pub const MIN_PACKET_SIZE: u64 = 16;
/// Largest MQTT packet: 268,435,455 bytes of remaining length plus a 5-byte fixed header.
pub const MAX_PACKET_SIZE: u64 = 268_435_460;
/// Longest `drain.grace`: an hour.
pub const MAX_GRACE_SECS: u32 = 3600;

/// A raw value as one source gave it.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// From the TOML file: its type matters (`1000` is an integer, `"1000"` a string).
    Toml(&'a toml::Value),
    /// From an environment variable: always text, read according to the key's type.
    Text(&'a str),
}

impl Input<'_> {
    /// The value as an operator would recognise it in an error message.
    fn describe(&self) -> String {
        match self {
            Input::Text(text) => format!("{text:?}"),
            Input::Toml(toml::Value::String(text)) => format!("string {text:?}"),
            Input::Toml(toml::Value::Integer(n)) => format!("integer {n}"),
            Input::Toml(toml::Value::Float(f)) => format!("float {f}"),
            Input::Toml(toml::Value::Boolean(b)) => format!("boolean {b}"),
            Input::Toml(toml::Value::Datetime(d)) => format!("datetime {d}"),
            Input::Toml(toml::Value::Array(_)) => "an array".to_owned(),
            Input::Toml(toml::Value::Table(_)) => "a table".to_owned(),
        }
    }

    fn wrong_type(&self, expected: &'static str) -> Problem {
        Problem::WrongType {
            expected,
            found: self.describe(),
        }
    }

    /// Text of a TOML string or of an environment value.
    fn text(&self) -> Option<&str> {
        match self {
            Input::Text(text) => Some(text.trim()),
            Input::Toml(toml::Value::String(text)) => Some(text.as_str()),
            Input::Toml(_) => None,
        }
    }

    /// A TOML integer, or environment text that is one; `Ok(None)` for any other text.
    fn integer(&self) -> Option<i64> {
        match self {
            Input::Toml(toml::Value::Integer(n)) => Some(*n),
            Input::Text(text) => text.trim().parse().ok(),
            Input::Toml(_) => None,
        }
    }
}

pub fn socket_addr(input: Input<'_>) -> Result<SocketAddr, Problem> {
    let text = input
        .text()
        .ok_or_else(|| input.wrong_type("an address such as \"0.0.0.0:1883\""))?;
    text.parse().map_err(|_| Problem::BadAddress {
        value: text.to_owned(),
    })
}

pub fn path(input: Input<'_>) -> Result<PathBuf, Problem> {
    let text = input.text().ok_or_else(|| input.wrong_type("a path"))?;
    if text.is_empty() {
        return Err(Problem::Empty);
    }
    Ok(PathBuf::from(text))
}

/// An HTTP path: starts with `/`, no spaces, no query.
pub fn http_path(input: Input<'_>) -> Result<String, Problem> {
    let expected = "a path such as \"/mqtt\" (starting with /, without spaces or a query)";
    let text = input.text().ok_or_else(|| input.wrong_type(expected))?;
    if !text.starts_with('/') || text.contains(char::is_whitespace) || text.contains(['?', '#']) {
        return Err(input.wrong_type(expected));
    }
    Ok(text.to_owned())
}

/// `"none"`, or a path.
pub fn optional_path(input: Input<'_>) -> Result<Option<PathBuf>, Problem> {
    if input.text() == Some("none") {
        return Ok(None);
    }
    path(input).map(Some)
}

pub fn boolean(input: Input<'_>) -> Result<bool, Problem> {
    match input {
        Input::Toml(toml::Value::Boolean(b)) => Ok(*b),
        Input::Text(text) => match text.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(input.wrong_type("true or false")),
        },
        Input::Toml(_) => Err(input.wrong_type("true or false")),
    }
}

/// An integer in `min..=max`.
pub fn integer_in(input: Input<'_>, min: u64, max: u64) -> Result<u64, Problem> {
    let n = input
        .integer()
        .ok_or_else(|| input.wrong_type("an integer"))?;
    match u64::try_from(n) {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Problem::OutOfRange {
            value: n.to_string(),
            min,
            max,
        }),
    }
}

pub fn u16_in(input: Input<'_>, min: u16) -> Result<u16, Problem> {
    let n = integer_in(input, u64::from(min), u64::from(u16::MAX))?;
    u16::try_from(n).map_err(|_| Problem::OutOfRange {
        value: n.to_string(),
        min: u64::from(min),
        max: u64::from(u16::MAX),
    })
}

/// A message count: a positive integer or `"unlimited"`.
pub fn count_limit(input: Input<'_>) -> Result<Limit, Problem> {
    const EXPECTED: &str = "a positive integer or \"unlimited\"";
    if input.text() == Some("unlimited") {
        return Ok(Limit::Unlimited);
    }
    match input.integer() {
        Some(0) => Err(Problem::ZeroIsNotUnlimited),
        Some(n) => u64::try_from(n)
            .map(Limit::AtMost)
            .map_err(|_| Problem::OutOfRange {
                value: n.to_string(),
                min: 1,
                max: u64::MAX,
            }),
        None => Err(input.wrong_type(EXPECTED)),
    }
}

/// A byte count: an integer, or a number with a unit (`"64MiB"`), or `"unlimited"`.
pub fn byte_limit(input: Input<'_>) -> Result<Limit, Problem> {
    if input.text() == Some("unlimited") {
        return Ok(Limit::Unlimited);
    }
    match bytes(input)? {
        0 => Err(Problem::ZeroIsNotUnlimited),
        n => Ok(Limit::AtMost(n)),
    }
}

/// `limits.max_packet_size`: a size between [`MIN_PACKET_SIZE`] and [`MAX_PACKET_SIZE`].
pub fn packet_size(input: Input<'_>) -> Result<u32, Problem> {
    let n = bytes(input)?;
    let out_of_range = || Problem::OutOfRange {
        value: n.to_string(),
        min: MIN_PACKET_SIZE,
        max: MAX_PACKET_SIZE,
    };
    if !(MIN_PACKET_SIZE..=MAX_PACKET_SIZE).contains(&n) {
        return Err(out_of_range());
    }
    u32::try_from(n).map_err(|_| out_of_range())
}

/// A number of bytes: a non-negative TOML integer, or text `1024`, `64MiB`, `10 MB`.
fn bytes(input: Input<'_>) -> Result<u64, Problem> {
    if let Input::Toml(toml::Value::Integer(n)) = input {
        return u64::try_from(*n).map_err(|_| Problem::OutOfRange {
            value: n.to_string(),
            min: 0,
            max: u64::MAX,
        });
    }
    let text = input
        .text()
        .ok_or_else(|| input.wrong_type("a size such as 1024 or \"64MiB\""))?;
    parse_size(text)
}

const SIZE_UNITS: [(&str, u64); 10] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("kB", 1_000),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

pub fn parse_size(text: &str) -> Result<u64, Problem> {
    let bad = || Problem::BadSize {
        value: text.to_owned(),
    };
    let (number, unit) = split_number(text.trim());
    let number: u64 = number.parse().map_err(|_| bad())?;
    let multiplier = match unit {
        "" => 1,
        unit => SIZE_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, m)| *m)
            .ok_or_else(bad)?,
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| Problem::OutOfRange {
            value: text.to_owned(),
            min: 0,
            max: u64::MAX,
        })
}

/// A session expiry: `"30s"`, `"15m"`, `"2h"`, `"7d"` or `"never"`.
pub fn expiry(input: Input<'_>) -> Result<SessionExpiry, Problem> {
    let text = input
        .text()
        .ok_or_else(|| input.wrong_type("a duration such as \"2h\", or \"never\""))?;
    parse_expiry(text)
}

pub fn parse_expiry(text: &str) -> Result<SessionExpiry, Problem> {
    if text == "never" {
        return Ok(SessionExpiry::Never);
    }
    let bad = || Problem::BadDuration {
        value: text.to_owned(),
    };
    let too_long = || Problem::DurationTooLong {
        value: text.to_owned(),
        max: u32::MAX - 1,
    };
    let (number, unit) = split_number(text);
    if number.is_empty() {
        return Err(bad());
    }
    let multiplier: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        _ => return Err(bad()),
    };
    let number: u64 = number.parse().map_err(|_| too_long())?;
    let secs = number.checked_mul(multiplier).ok_or_else(too_long)?;
    // u32::MAX is MQTT's "never"; a finite expiry must stay below it.
    match u32::try_from(secs) {
        Ok(secs) if secs < u32::MAX => Ok(SessionExpiry::After(secs)),
        _ => Err(too_long()),
    }
}

pub fn drop_policy(input: Input<'_>) -> Result<DropPolicy, Problem> {
    match input.text() {
        Some("drop_newest") => Ok(DropPolicy::DropNewest),
        Some("drop_oldest") => Ok(DropPolicy::DropOldest),
        Some(other) => Err(Problem::BadDropPolicy {
            value: other.to_owned(),
        }),
        None => Err(input.wrong_type("\"drop_newest\" or \"drop_oldest\"")),
    }
}

/// `"off"`, `"optional"` or `"required"`.
pub fn proxy_mode(input: Input<'_>) -> Result<berth_server::proxy_protocol::ProxyMode, Problem> {
    match input.text() {
        Some(text) => text.parse().map_err(|_| Problem::BadProxyMode {
            value: text.to_owned(),
        }),
        None => Err(input.wrong_type("\"off\", \"optional\" or \"required\"")),
    }
}

/// A `[[listeners]]` entry's `kind`: `"tcp"`, `"tls"`, `"ws"` or `"wss"`.
pub fn listener_kind(input: Input<'_>) -> Result<berth_server::ListenerKind, Problem> {
    let text = input
        .text()
        .ok_or_else(|| input.wrong_type("one of tcp, tls, ws, wss"))?;
    berth_server::ListenerKind::ALL
        .into_iter()
        .find(|kind| kind.as_str() == text)
        .ok_or_else(|| Problem::BadListenerKind {
            value: text.to_owned(),
        })
}

/// Longest listener name.
pub const MAX_LISTENER_NAME: usize = 64;

/// A listener's name: letters, digits, `-`, `_` and `.`, as a metric label and a log field
/// read back without quoting.
pub fn listener_name(input: Input<'_>) -> Result<String, Problem> {
    let text = input.text().ok_or_else(|| input.wrong_type("a name"))?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if text.is_empty() || text.len() > MAX_LISTENER_NAME || !text.chars().all(allowed) {
        return Err(Problem::BadListenerName {
            value: text.to_owned(),
            max: MAX_LISTENER_NAME,
        });
    }
    Ok(text.to_owned())
}

/// `"text"` or `"json"`.
pub fn log_format(input: Input<'_>) -> Result<LogFormat, Problem> {
    match input.text() {
        Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        _ => Err(input.wrong_type("\"text\" or \"json\"")),
    }
}

/// `"none"`, `"HS256"`, `"RS256"` or `"ES256"` (JOSE spellings, case as written).
pub fn jwt_algorithm(input: Input<'_>) -> Result<Option<JwtAlgorithm>, Problem> {
    let expected = "\"none\", \"HS256\", \"RS256\" or \"ES256\"";
    match input.text() {
        Some("none") => Ok(None),
        Some(text) => JwtAlgorithm::ALL
            .into_iter()
            .find(|algorithm| algorithm.as_str() == text)
            .map(Some)
            .ok_or_else(|| input.wrong_type(expected)),
        None => Err(input.wrong_type(expected)),
    }
}

/// Topic filters: a TOML array of strings, or comma-separated text in the environment.
pub fn filters(input: Input<'_>) -> Result<Vec<TopicFilter>, Problem> {
    string_list(input, "an array of topic filters", "a topic filter string")?
        .into_iter()
        .map(|text| {
            TopicFilter::parse(text).map_err(|error| Problem::BadFilter {
                value: text.to_owned(),
                reason: error.to_string(),
            })
        })
        .collect()
}

/// A `tracing` filter: a level (`info`) or directives (`info,berth_server=debug`).
pub fn log_filter(input: Input<'_>) -> Result<String, Problem> {
    let text = input
        .text()
        .ok_or_else(|| input.wrong_type("a log level such as \"info\""))?;
    if text.is_empty() {
        return Err(Problem::Empty);
    }
    // `tracing` reads a bare word as a target to enable at every level, so a misspelt level
    // ("inf") would pass silently; here a bare word must be a level.
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let bare_non_level = text.split(',').map(str::trim).find(|directive| {
        !directive.is_empty()
            && !directive.contains(['=', '['])
            && !LEVELS
                .iter()
                .any(|level| level.eq_ignore_ascii_case(directive))
    });
    if let Some(word) = bare_non_level {
        return Err(Problem::BadLogLevel {
            value: text.to_owned(),
            reason: format!(
                "{word:?} is not a level (off, error, warn, info, debug, trace); write target=level for one module"
            ),
        });
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map(|_| text.to_owned())
        .map_err(|error| Problem::BadLogLevel {
            value: text.to_owned(),
            reason: error.to_string(),
        })
}

/// Splits `"64MiB"` into `("64", "MiB")`, allowing blanks between number and unit.
fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    (number, unit.trim_start())
}

/// `7200` seconds as `"2h"`: the largest unit that divides it.
pub fn format_expiry(expiry: SessionExpiry) -> String {
    match expiry {
        SessionExpiry::Never => "never".to_owned(),
        SessionExpiry::After(secs) => {
            let secs = u64::from(secs);
            let unit = [(24 * 60 * 60, "d"), (60 * 60, "h"), (60, "m")]
                .into_iter()
                .find(|(size, _)| secs != 0 && secs.is_multiple_of(*size));
            match unit {
                Some((size, name)) => format!("{}{name}", secs / size),
                None => format!("{secs}s"),
            }
        }
    }
}

/// `67108864` as `"64MiB"`; a size that is no whole number of KiB stays a plain integer.
pub fn format_bytes(bytes: u64) -> toml::Value {
    let unit = [
        (1u64 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ]
    .into_iter()
    .find(|(size, _)| bytes != 0 && bytes.is_multiple_of(*size));
    match (unit, i64::try_from(bytes)) {
        (Some((size, name)), _) => toml::Value::String(format!("{}{name}", bytes / size)),
        (None, Ok(n)) => toml::Value::Integer(n),
        (None, Err(_)) => toml::Value::String(bytes.to_string()),
    }
}

pub fn format_limit(limit: Limit, as_bytes: bool) -> toml::Value {
    match limit {
        Limit::Unlimited => toml::Value::String("unlimited".to_owned()),
        Limit::AtMost(n) if as_bytes => format_bytes(n),
        Limit::AtMost(n) => i64::try_from(n)
            .map(toml::Value::Integer)
            .unwrap_or_else(|_| toml::Value::String(n.to_string())),
    }
}

/// `"none"`, or a socket address to listen on.
pub fn optional_socket_addr(input: Input<'_>) -> Result<Option<SocketAddr>, Problem> {
    if input.text() == Some("none") {
        return Ok(None);
    }
    socket_addr(input).map(Some)
}

/// `host:port` with a port number.
pub fn parse_host_port(text: &str) -> Result<String, Problem> {
    let bad = || Problem::BadHostPort {
        value: text.to_owned(),
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains(char::is_whitespace) || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(text.to_owned())
}

/// `"none"`, or host:port.
pub fn optional_host_port(input: Input<'_>) -> Result<Option<String>, Problem> {
    let text = input
        .text()
        .ok_or_else(|| input.wrong_type("host:port, or \"none\""))?;
    if text == "none" {
        return Ok(None);
    }
    parse_host_port(text).map(Some)
}

/// Peers: a TOML array of `"id=host:port"` strings, or comma-separated text.
pub fn peers(input: Input<'_>) -> Result<Vec<(u64, String)>, Problem> {
    string_list(
        input,
        "an array of \"id=host:port\" strings",
        "an \"id=host:port\" string",
    )?
    .into_iter()
    .map(|text| {
        let bad = || Problem::BadPeer {
            value: text.to_owned(),
        };
        let (id, addr) = text.split_once('=').ok_or_else(bad)?;
        let id: u64 = id.trim().parse().map_err(|_| bad())?;
        if id == 0 {
            return Err(bad());
        }
        let addr = parse_host_port(addr.trim()).map_err(|_| bad())?;
        Ok((id, addr))
    })
    .collect()
}

/// A positive duration in whole seconds (`"5s"`, `"1m"`).
pub fn timeout_secs(input: Input<'_>) -> Result<u32, Problem> {
    let text = input
        .text()
        .ok_or_else(|| input.wrong_type("a duration such as \"5s\""))?;
    match parse_expiry(text) {
        Ok(SessionExpiry::After(secs)) if secs > 0 => Ok(secs),
        Ok(SessionExpiry::After(_)) => Err(Problem::OutOfRange {
            value: text.to_owned(),
            min: 1,
            max: u64::from(u32::MAX - 1),
        }),
        _ => Err(Problem::BadDuration {
            value: text.to_owned(),
        }),
    }
}

/// A duration in whole seconds from 0 to [`MAX_GRACE_SECS`] (`"0s"`, `"10s"`, `"2m"`); unlike
/// [`timeout_secs`], 0 is allowed.
pub fn grace_secs(input: Input<'_>) -> Result<u32, Problem> {
    let text = input
        .text()
        .ok_or_else(|| input.wrong_type("a duration such as \"10s\""))?;
    let out_of_range = || Problem::OutOfRange {
        value: text.to_owned(),
        min: 0,
        max: u64::from(MAX_GRACE_SECS),
    };
    match parse_expiry(text) {
        Ok(SessionExpiry::After(secs)) if secs <= MAX_GRACE_SECS => Ok(secs),
        Ok(SessionExpiry::After(_)) | Err(Problem::DurationTooLong { .. }) => Err(out_of_range()),
        _ => Err(Problem::BadDuration {
            value: text.to_owned(),
        }),
    }
}

/// A short duration: `"100ms"` or `"2s"`, from 1 ms to 60 s.
pub fn millis(input: Input<'_>) -> Result<u32, Problem> {
    let text = input
        .text()
        .ok_or_else(|| input.wrong_type("a duration such as \"100ms\""))?;
    let bad = || Problem::BadDuration {
        value: text.to_owned(),
    };
    let (number, unit) = split_number(text);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "ms" => number,
        "s" => number.checked_mul(1_000).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    match u32::try_from(ms) {
        Ok(ms) if (1..=60_000).contains(&ms) => Ok(ms),
        _ => Err(Problem::OutOfRange {
            value: text.to_owned(),
            min: 1,
            max: 60_000,
        }),
    }
}

/// `100` → `"100ms"`.
pub fn format_millis(ms: u32) -> String {
    format!("{ms}ms")
}

/// `peers` written back as the file spells them.
pub fn format_peers(peers: &[(u64, String)]) -> toml::Value {
    toml::Value::Array(
        peers
            .iter()
            .map(|(id, addr)| toml::Value::String(format!("{id}={addr}")))
            .collect(),
    )
}

/// A list of strings: a TOML array in the file, comma-separated text in the environment.
fn string_list<'a>(
    input: Input<'a>,
    expected: &'static str,
    expected_item: &'static str,
) -> Result<Vec<&'a str>, Problem> {
    match input {
        Input::Toml(toml::Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| Input::Toml(item).wrong_type(expected_item))
            })
            .collect(),
        Input::Text(text) => Ok(text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .collect()),
        Input::Toml(_) => Err(input.wrong_type(expected)),
    }
}
