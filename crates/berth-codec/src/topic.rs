//! Topic names (what PUBLISH addresses) and topic filters (what SUBSCRIBE asks for), validated
//! once into newtypes so that the broker core can match them without re-checking.
//!
//! Rules (MQTT 5 §4.7, 3.1.1 §4.7):
//! - both are non-empty UTF-8 strings; levels are separated by `/` and may be empty;
//! - a topic name has no wildcards;
//! - in a filter `+` fills a whole level and `#` fills a whole, last level;
//! - `$share/{group}/{filter}` is a shared subscription: the group is non-empty and has no
//!   `/`, `+` or `#`, and the filter after it is itself valid;
//! - wildcards in the first level do not match topics that start with `$` ([MQTT-4.7.2-1]).

use std::fmt;

use crate::string::{MqttString, StringError};

const SHARE_PREFIX: &str = "$share/";

/// Why a string is not a valid topic name or filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic name contains a wildcard character")]
    WildcardInName,
    #[error("'#' is not alone in the last level of the filter")]
    MisplacedMultiLevelWildcard,
    #[error("'+' does not fill a whole level of the filter")]
    MisplacedSingleLevelWildcard,
    #[error("shared subscription has an empty or invalid share name")]
    InvalidShareName,
    #[error("shared subscription has no topic filter after the share name")]
    EmptySharedFilter,
    #[error("topic is not a valid MQTT string: {source}")]
    InvalidString { source: StringError },
}

/// A validated topic name. Empty only when it stands for a topic alias (see [`TopicName::empty`]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(MqttString);

impl TopicName {
    pub fn new(name: MqttString) -> Result<TopicName, TopicError> {
        if name.is_empty() {
            return Err(TopicError::Empty);
        }
        if name.as_bytes().iter().any(|&b| b == b'+' || b == b'#') {
            return Err(TopicError::WildcardInName);
        }
        Ok(TopicName(name))
    }

    /// The same name in an allocation of its own (see [`MqttString::detached`]).
    pub fn detached(&self) -> TopicName {
        TopicName(self.0.detached())
    }

    /// Parses a literal or owned text.
    pub fn parse(text: &str) -> Result<TopicName, TopicError> {
        TopicName::new(
            MqttString::new(text).map_err(|source| TopicError::InvalidString { source })?,
        )
    }

    /// The zero-length topic of an MQTT 5 PUBLISH that names its topic by Topic Alias only.
    pub fn empty() -> TopicName {
        TopicName(MqttString::default())
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn as_mqtt_str(&self) -> &MqttString {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `$SYS/...` and other `$` topics are not matched by leading wildcards.
    pub fn is_dollar(&self) -> bool {
        self.0.as_bytes().first() == Some(&b'$')
    }

    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.as_str().split('/')
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated topic filter, possibly a shared subscription.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter {
    /// The whole filter as sent, `$share/...` prefix included.
    raw: MqttString,
    /// For `$share/{group}/{filter}`: the byte offset where `{filter}` starts.
    shared_filter_start: Option<usize>,
}

impl TopicFilter {
    /// The same filter in an allocation of its own (see [`MqttString::detached`]).
    pub fn detached(&self) -> TopicFilter {
        TopicFilter {
            raw: self.raw.detached(),
            shared_filter_start: self.shared_filter_start,
        }
    }

    pub fn new(raw: MqttString) -> Result<TopicFilter, TopicError> {
        if raw.is_empty() {
            return Err(TopicError::Empty);
        }
        let text = raw.as_str();
        let shared_filter_start = if let Some(rest) = text.strip_prefix(SHARE_PREFIX) {
            let (group, filter) = rest.split_once('/').ok_or(TopicError::InvalidShareName)?;
            if group.is_empty() || group.contains(['+', '#']) {
                return Err(TopicError::InvalidShareName);
            }
            if filter.is_empty() {
                return Err(TopicError::EmptySharedFilter);
            }
            validate_filter(filter)?;
            Some(SHARE_PREFIX.len() + group.len() + 1)
        } else if text == "$share" {
            return Err(TopicError::InvalidShareName);
        } else {
            validate_filter(text)?;
            None
        };
        Ok(TopicFilter {
            raw,
            shared_filter_start,
        })
    }

    pub fn parse(text: &str) -> Result<TopicFilter, TopicError> {
        TopicFilter::new(
            MqttString::new(text).map_err(|source| TopicError::InvalidString { source })?,
        )
    }

    /// The filter exactly as the client sent it.
    pub fn as_str(&self) -> &str {
        self.raw.as_str()
    }

    pub fn as_mqtt_str(&self) -> &MqttString {
        &self.raw
    }

    pub fn is_shared(&self) -> bool {
        self.shared_filter_start.is_some()
    }

    /// The share name of a `$share/{group}/{filter}` subscription.
    pub fn share_group(&self) -> Option<&str> {
        let start = self.shared_filter_start?;
        self.raw.as_str().get(SHARE_PREFIX.len()..start - 1)
    }

    /// The part that is matched against topic names (without any `$share/{group}/`).
    pub fn matching_filter(&self) -> &str {
        let text = self.raw.as_str();
        match self.shared_filter_start {
            Some(start) => text.get(start..).unwrap_or(text),
            None => text,
        }
    }

    /// The matching part as its own zero-copy string.
    pub fn matching_mqtt_str(&self) -> MqttString {
        match self.shared_filter_start {
            Some(start) => self.raw.slice_ascii_bounded(start..self.raw.len()),
            None => self.raw.clone(),
        }
    }

    pub fn has_wildcards(&self) -> bool {
        self.matching_filter().contains(['+', '#'])
    }

    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.matching_filter().split('/')
    }

    /// Whether `topic` matches this filter, `$` rule included.
    pub fn matches(&self, topic: &TopicName) -> bool {
        filter_matches(self.matching_filter(), topic.as_str())
    }
}

/// Matches a (validated) filter against a topic name, level by level, without allocating.
pub(crate) fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for filter_level in filter.split('/') {
        match filter_level {
            // `#` also matches the parent level: `a/#` matches `a`.
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            literal => match topic_levels.next() {
                Some(level) if level == literal => {}
                _ => return false,
            },
        }
    }
    topic_levels.next().is_none()
}

fn validate_filter(filter: &str) -> Result<(), TopicError> {
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::MisplacedMultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevelWildcard);
        }
    }
    Ok(())
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.raw, f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(text: &str) -> TopicFilter {
        TopicFilter::parse(text).unwrap()
    }

    fn name(text: &str) -> TopicName {
        TopicName::parse(text).unwrap()
    }

    #[test]
    fn names_reject_wildcards_and_empty() {
        assert_eq!(TopicName::parse("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::parse("a/#"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::parse("a+b"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::parse(""), Err(TopicError::Empty));
        assert!(TopicName::parse("/").is_ok());
        assert!(TopicName::parse("$SYS/broker").is_ok());
    }

    #[test]
    fn filters_validate_wildcard_placement() {
        for ok in [
            "#",
            "+",
            "a/#",
            "a/+/b",
            "+/+",
            "/+",
            "a//b",
            "+/tennis/#",
            "$SYS/#",
        ] {
            assert!(TopicFilter::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            TopicFilter::parse("a/#/b"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
        assert_eq!(
            TopicFilter::parse("a#"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
        assert_eq!(
            TopicFilter::parse("a/b#"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
        assert_eq!(
            TopicFilter::parse("a+"),
            Err(TopicError::MisplacedSingleLevelWildcard)
        );
        assert_eq!(
            TopicFilter::parse("a/+b/c"),
            Err(TopicError::MisplacedSingleLevelWildcard)
        );
        assert_eq!(TopicFilter::parse(""), Err(TopicError::Empty));
    }

    #[test]
    fn shared_subscriptions_parse() {
        let f = filter("$share/g1/sensors/+/temp");
        assert!(f.is_shared());
        assert_eq!(f.share_group(), Some("g1"));
        assert_eq!(f.matching_filter(), "sensors/+/temp");
        assert_eq!(f.matching_mqtt_str(), "sensors/+/temp");
        assert!(f.matches(&name("sensors/1/temp")));
        assert_eq!(
            TopicFilter::parse("$share//a"),
            Err(TopicError::InvalidShareName)
        );
        assert_eq!(
            TopicFilter::parse("$share/g+/a"),
            Err(TopicError::InvalidShareName)
        );
        assert_eq!(
            TopicFilter::parse("$share/g"),
            Err(TopicError::InvalidShareName)
        );
        assert_eq!(
            TopicFilter::parse("$share"),
            Err(TopicError::InvalidShareName)
        );
        assert_eq!(
            TopicFilter::parse("$share/g/"),
            Err(TopicError::EmptySharedFilter)
        );
        assert_eq!(
            TopicFilter::parse("$share/g/a#"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
        assert!(!filter("$shared/a").is_shared());
    }

    #[test]
    fn matching_follows_the_spec_examples() {
        // MQTT 5 §4.7.1.2 and §4.7.1.3.
        let sport = filter("sport/tennis/player1/#");
        assert!(sport.matches(&name("sport/tennis/player1")));
        assert!(sport.matches(&name("sport/tennis/player1/ranking")));
        assert!(sport.matches(&name("sport/tennis/player1/score/wimbledon")));
        assert!(filter("sport/#").matches(&name("sport")));
        let plus = filter("sport/tennis/+");
        assert!(plus.matches(&name("sport/tennis/player1")));
        assert!(!plus.matches(&name("sport/tennis/player1/ranking")));
        assert!(!filter("sport/+").matches(&name("sport")));
        assert!(filter("sport/+").matches(&name("sport/")));
        assert!(filter("+/+").matches(&name("/finance")));
        assert!(filter("/+").matches(&name("/finance")));
        assert!(!filter("+").matches(&name("/finance")));
        assert!(!filter("a/b").matches(&name("a/b/c")));
        assert!(!filter("a/b/c").matches(&name("a/b")));
    }

    #[test]
    fn leading_wildcards_skip_dollar_topics() {
        assert!(!filter("#").matches(&name("$SYS/uptime")));
        assert!(!filter("+/monitor/Clients").matches(&name("$SYS/monitor/Clients")));
        assert!(filter("$SYS/#").matches(&name("$SYS/monitor/Clients")));
        assert!(filter("$SYS/monitor/+").matches(&name("$SYS/monitor/Clients")));
        assert!(filter("a/#").matches(&name("a/$b")));
    }
}
