//! Topics a client's credentials grant it (a JWT's `acl` claim), on top of the rules file.
//!
//! # The contract
//!
//! - A connection whose credentials carry grants may publish to, subscribe to and receive from
//!   the granted topics only, **and** the rules file (with `acl.denied_filters`) must allow the
//!   same: both must say yes. Grants narrow what the operator's rules allow; they never widen
//!   it, so a token cannot lift a deny the operator wrote. A connection without grants is
//!   decided by the rules file alone. `BrokerConfig` (`config.rs`) combines the two; it is the
//!   one place every check goes through (PUBLISH, a will, SUBSCRIBE here and in the cluster's
//!   plan, a retained PUBLISH before it is replicated, and every delivery).
//! - An empty set of grants (a claim that lists no topic) allows nothing: the token says what
//!   the client may do, and it says "nothing".
//! - Patterns are those of the rules file: MQTT topic filters in which `%u` and `%c` stand for
//!   the username and the client id as whole levels, matched without the `$` exclusion. Each
//!   pattern is an `allow` rule for publishing, subscribing (which also means receiving) or
//!   both, under `default = "deny"`: a filter is allowed at SUBSCRIBE when a granted pattern
//!   covers it or could match part of it (`#` under a grant of `devices/%c/#` is held, and
//!   delivers only that device's topics), and every delivery is checked by topic.
//! - Grants belong to the connection, like the username they are bound to: a client presents
//!   its token again at every CONNECT, on whichever node, so they are never stored with the
//!   session nor exported at a takeover. A message queued while the client was away is checked
//!   when it is sent, by the grants of the connection it is sent on (the same rule as the
//!   rules file's: checked at delivery, as things are then).

use berth_codec::TopicFilter;

use super::{AclRules, Action, Pattern, Permission, Principal, Rule};

/// What one granted pattern allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granted {
    /// Publishing to the topics the pattern matches.
    Publish,
    /// Subscribing to (and receiving from) them.
    Subscribe,
    /// Both.
    Both,
}

impl Granted {
    fn action(self) -> Action {
        match self {
            Granted::Publish => Action::Publish,
            Granted::Subscribe => Action::Subscribe,
            Granted::Both => Action::Both,
        }
    }
}

/// The topics one connection's credentials grant it (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    /// One `allow` rule per pattern, default deny: the rules file's matching, reused whole so
    /// that a pattern means the same in a token as in the file.
    rules: AclRules,
}

impl Grants {
    /// Parses granted patterns. The error names the first pattern that is not a valid topic
    /// filter (or uses `%u`/`%c` inside a level, or starts with `$share/`), as the rules file
    /// would report it.
    pub fn parse<'a>(
        patterns: impl IntoIterator<Item = (Granted, &'a str)>,
    ) -> Result<Grants, String> {
        let rules = patterns
            .into_iter()
            .map(|(granted, text)| {
                Pattern::parse(text).map(|pattern| Rule {
                    permission: Permission::Allow,
                    action: granted.action(),
                    pattern,
                    username: None,
                    client_id: None,
                    source: None,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Grants {
            rules: AclRules {
                rules,
                default: Permission::Deny,
            },
        })
    }

    /// Whether no topic is granted at all (the client may then do nothing).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// May `who` publish to `topic`, as far as its grants go?
    pub fn may_publish(&self, who: &Principal, topic: &str) -> bool {
        self.rules.may_publish(who, topic)
    }

    /// May `who` hold a subscription to `filter`, as far as its grants go?
    pub fn may_subscribe(&self, who: &Principal, filter: &TopicFilter) -> bool {
        self.rules.may_subscribe(who, filter)
    }

    /// May a message on `topic` be delivered to `who`, as far as its grants go?
    pub fn may_receive(&self, who: &Principal, topic: &str) -> bool {
        self.rules.may_receive(who, topic)
    }
}

#[cfg(test)]
mod tests;
