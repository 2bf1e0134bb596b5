//! Authorization: which topics a client may publish to, which filters it may subscribe to and
//! which messages it may receive, from the rules an operator writes. Pure: the rules file arrives
//! as text and every check is a function of the rules, the client and the topic.
//!
//! ```text
//!   rules file ─▶ AclRules::parse ─▶ Acl::new ─────┐  one handle, cloned by the broker and the
//!   SIGHUP ─────▶ AclRules::parse ─▶ Acl::replace ─┤  cluster admission
//!                                                  ├─▶ may_publish     PUBLISH, wills
//!                                                  ├─▶ may_subscribe   SUBSCRIBE, admission
//!                                                  └─▶ may_receive     every delivery
//! ```
//!
//! A connection's credentials may carry topic grants of their own ([`grants`]: a JWT's `acl`
//! claim); then the rules here and the grants must both allow.
//!
//! # The rules file
//!
//! ```toml
//! # What applies when no rule matches: "allow" or "deny". Required, so that every file says it.
//! default = "deny"
//!
//! # Rules are tried in file order; the first that matches decides.
//! [[rule]]
//! permission = "allow"      # "allow" or "deny"
//! action = "both"           # "publish", "subscribe" (which also means receiving) or "both"
//! topic = "devices/%c/#"    # a topic filter; %u is the username, %c the client id
//!
//! [[rule]]
//! permission = "allow"
//! action = "subscribe"
//! topic = "alerts/#"
//! username = "alice"        # optional: only this username
//! client_id = "console-1"   # optional: only this client id
//! source = "10.0.0.0/8"     # optional: only clients from this network, IPv4 or IPv6
//!                           # (a bare address is a /32 or /128)
//! ```
//!
//! Unknown keys, a missing `default`, `permission`, `action` or `topic`, and a `topic` that is not
//! a valid filter are errors that name the rule (counted from 1) and the key. `%u` and `%c` must
//! each be a whole level (`a/%u/b`, not `a/x%u`). A `topic` may not start with `$share/`: a shared
//! subscription is checked by the filter after its group.
//!
//! # Matching (the contract)
//!
//! - A rule *applies* to a client when each of `username`, `client_id` and `source` it names
//!   matches: a client without a username never matches a rule that names one, a client whose
//!   address is unknown never matches a rule that names a network, and an IPv4-mapped IPv6
//!   address counts as its IPv4 address.
//! - `%u` / `%c` levels stand for the client's username / client id. A rule whose pattern uses
//!   `%u` does not apply to a client without a username; nor does a rule whose placeholder would
//!   be empty or contain `/`, `+` or `#` (it would widen the pattern beyond one level).
//! - Patterns match topics as MQTT filters do, but *without* the `$` exclusion: `#` matches
//!   `$SYS/uptime` too, so a `deny` rule on `#` denies everything.
//! - `may_publish(topic)`: the first applying `publish`/`both` rule whose pattern matches the
//!   topic decides; when none does, the default.
//! - `may_receive(topic)`, asked for every message before it is delivered: the same with
//!   `subscribe`/`both` rules.
//! - `may_subscribe(filter)`, of the part after any `$share/<group>/`: the first applying
//!   `subscribe`/`both` rule whose pattern *covers* the filter (matches every topic the filter
//!   can match) decides. When none covers it, the subscription is allowed if the default is
//!   `allow`; if it is `deny`, only when an applying `allow` rule's pattern *intersects* the filter
//!   (some topic matches both). Such a subscription is then held, and `may_receive` keeps the
//!   denied topics out of it: `#` under `allow devices/%c/#` receives only its own devices.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use berth_codec::TopicFilter;
use serde::Deserialize;

pub mod grants;

pub use grants::{Granted, Grants};

/// Who is asking: the connected client as authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Principal {
    pub username: Option<String>,
    pub client_id: String,
    /// The client's address (the PROXY header's, behind a balancer); None when unknown.
    pub source: Option<IpAddr>,
    /// The topics its credentials grant it (a JWT's `acl` claim), which the rules must allow
    /// too; `None`: its credentials say nothing, and the rules alone decide ([`Grants`]).
    /// Shared: the connection's principal and its cluster grant hold the same one.
    pub grants: Option<Arc<Grants>>,
}

impl Principal {
    /// Whether the connection's grants allow what `check` asks; true when it has none.
    pub fn granted(&self, check: impl FnOnce(&Grants) -> bool) -> bool {
        self.grants.as_deref().is_none_or(check)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Allow,
    Deny,
}

impl Permission {
    fn parse(key: &str, text: &str) -> Result<Permission, String> {
        match text {
            "allow" => Ok(Permission::Allow),
            "deny" => Ok(Permission::Deny),
            other => Err(format!(
                "{key}: expected \"allow\" or \"deny\", found {other:?}"
            )),
        }
    }
}

/// Why a rules file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", rule_prefix(.rule), .message)]
pub struct AclError {
    /// The rule the error is in, counted from 1 in file order; `None` for the file as a whole.
    pub rule: Option<usize>,
    pub message: String,
}

fn rule_prefix(rule: &Option<usize>) -> String {
    match rule {
        Some(number) => format!("rule {number}: "),
        None => String::new(),
    }
}

/// The ordered rules of a rules file and its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRules {
    rules: Vec<Rule>,
    default: Permission,
}

impl AclRules {
    /// Everything allowed, no rules: what a node without a rules file uses.
    pub fn allow_all() -> AclRules {
        AclRules {
            rules: Vec::new(),
            default: Permission::Allow,
        }
    }

    /// Parses a rules file (the format is in the module documentation).
    pub fn parse(text: &str) -> Result<AclRules, AclError> {
        let file_error = |message: String| AclError {
            rule: None,
            message,
        };
        let file: RawFile = toml::from_str(text)
            .map_err(|error| file_error(error.to_string().trim_end().to_owned()))?;
        let default = match string("default", file.default).map_err(file_error)? {
            Some(text) => Permission::parse("default", &text).map_err(file_error)?,
            None => {
                return Err(file_error(
                    "default: missing: write default = \"allow\" or \"deny\"".to_owned(),
                ));
            }
        };
        let rules = file
            .rule
            .into_iter()
            .enumerate()
            .map(|(index, table)| {
                Rule::parse(table).map_err(|message| AclError {
                    rule: Some(index + 1),
                    message,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AclRules { rules, default })
    }

    /// True for [`AclRules::allow_all`] (no rules, default allow): lets callers skip the checks.
    pub fn is_allow_all(&self) -> bool {
        self.rules.is_empty() && self.default == Permission::Allow
    }

    /// What applies when no rule decides.
    pub fn default_permission(&self) -> Permission {
        self.default
    }

    /// May `who` publish to `topic` (a topic name, no wildcards)?
    pub fn may_publish(&self, who: &Principal, topic: &str) -> bool {
        let decision = self.first_decision(who, Action::Publish, |rule| {
            matches_topic(rule.levels(), topic)
        });
        self.allows(decision)
    }

    /// May `who` hold a subscription to `filter` (checked at SUBSCRIBE)?
    pub fn may_subscribe(&self, who: &Principal, filter: &TopicFilter) -> bool {
        // `levels()` are those of the filter after any `$share/<group>/`.
        let requested = || filter.levels().map(Resolved::of);
        if let Some(permission) = self.first_decision(who, Action::Subscribe, |rule| {
            covers(rule.levels(), requested())
        }) {
            return permission == Permission::Allow;
        }
        match self.default {
            Permission::Allow => true,
            Permission::Deny => self
                .rules
                .iter()
                .filter(|rule| {
                    rule.permission == Permission::Allow && rule.action.includes(Action::Subscribe)
                })
                .any(|rule| {
                    rule.bind(who)
                        .is_some_and(|bound| intersects(bound.levels(), requested()))
                }),
        }
    }

    /// May a message published to `topic` be delivered to `who` (checked at every delivery, so
    /// a wildcard subscription delivers nothing from a denied topic)?
    pub fn may_receive(&self, who: &Principal, topic: &str) -> bool {
        let decision = self.first_decision(who, Action::Subscribe, |rule| {
            matches_topic(rule.levels(), topic)
        });
        self.allows(decision)
    }

    /// Number of rules (for the reload log line).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `decision`, or the default when no rule decided, allows.
    fn allows(&self, decision: Option<Permission>) -> bool {
        decision.unwrap_or(self.default) == Permission::Allow
    }

    /// The permission of the first rule for `action` that applies to `who` and for which
    /// `decides` holds; `None` when no rule does.
    fn first_decision<'a>(
        &'a self,
        who: &'a Principal,
        action: Action,
        decides: impl Fn(Bound<'a>) -> bool,
    ) -> Option<Permission> {
        self.rules
            .iter()
            .filter(|rule| rule.action.includes(action))
            .find_map(|rule| {
                let bound = rule.bind(who)?;
                decides(bound).then_some(rule.permission)
            })
    }
}

/// The rules as the broker and the cluster admission share them: one handle, cloned everywhere;
/// [`Acl::replace`] (SIGHUP) is seen by every clone at once.
//
// A `std` lock rather than one writer that owns the rules: they are read by every check and
// written only when the operator reloads them, so readers never wait for each other, practically
// never for a writer, and hold the read lock only for the comparisons of one check (never across
// an await). A node without rules does not touch the lock at all: `open` is true while the rules
// allow everything, and the checks return before reading them.
#[derive(Clone)]
pub struct Acl {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    rules: RwLock<Arc<AclRules>>,
    /// `rules.is_allow_all()`, kept outside the lock; written under the write lock.
    open: AtomicBool,
}

impl Acl {
    pub fn new(rules: AclRules) -> Acl {
        Acl {
            shared: Arc::new(Shared {
                open: AtomicBool::new(rules.is_allow_all()),
                rules: RwLock::new(Arc::new(rules)),
            }),
        }
    }

    /// Installs new rules for every clone of this handle. A check running meanwhile decides by
    /// the old rules or the new, never a mix.
    pub fn replace(&self, rules: AclRules) {
        let open = rules.is_allow_all();
        // A poisoned lock still holds whole rules: a writer only swaps an `Arc`.
        let mut current = self
            .shared
            .rules
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *current = Arc::new(rules);
        // Still under the write lock: two reloads racing cannot leave `open` describing the
        // other one's rules.
        self.shared.open.store(open, Ordering::Release);
    }

    /// The rules as they are now.
    pub fn rules(&self) -> Arc<AclRules> {
        Arc::clone(
            &self
                .shared
                .rules
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// [`AclRules::may_publish`] of the current rules.
    pub fn may_publish(&self, who: &Principal, topic: &str) -> bool {
        self.check(|rules| rules.may_publish(who, topic))
    }

    /// [`AclRules::may_subscribe`] of the current rules.
    pub fn may_subscribe(&self, who: &Principal, filter: &TopicFilter) -> bool {
        self.check(|rules| rules.may_subscribe(who, filter))
    }

    /// [`AclRules::may_receive`] of the current rules.
    pub fn may_receive(&self, who: &Principal, topic: &str) -> bool {
        self.check(|rules| rules.may_receive(who, topic))
    }

    fn check(&self, decide: impl FnOnce(&AclRules) -> bool) -> bool {
        if self.shared.open.load(Ordering::Acquire) {
            return true;
        }
        let rules = self
            .shared
            .rules
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        decide(&rules)
    }
}

impl Default for Acl {
    fn default() -> Acl {
        Acl::new(AclRules::allow_all())
    }
}

impl fmt::Debug for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules = self.rules();
        f.debug_struct("Acl")
            .field("rules", &rules.len())
            .field("default", &rules.default)
            .finish()
    }
}

/// Equal when their current rules are equal.
impl PartialEq for Acl {
    fn eq(&self, other: &Acl) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared) || self.rules() == other.rules()
    }
}

impl Eq for Acl {}

/// The file as TOML gives it; each rule stays a table so that its errors can name its number.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    default: Option<toml::Value>,
    #[serde(default)]
    rule: Vec<toml::Table>,
}

/// One `[[rule]]`; values stay raw so that a wrong type is reported with the key's name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    permission: Option<toml::Value>,
    action: Option<toml::Value>,
    topic: Option<toml::Value>,
    username: Option<toml::Value>,
    client_id: Option<toml::Value>,
    source: Option<toml::Value>,
}

fn string(key: &str, value: Option<toml::Value>) -> Result<Option<String>, String> {
    match value {
        None => Ok(None),
        Some(toml::Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(format!(
            "{key}: expected a string, found {}",
            other.type_str()
        )),
    }
}

fn required(key: &str, value: Option<toml::Value>) -> Result<String, String> {
    string(key, value)?.ok_or_else(|| format!("{key}: missing"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    permission: Permission,
    action: Action,
    pattern: Pattern,
    username: Option<String>,
    client_id: Option<String>,
    source: Option<Network>,
}

impl Rule {
    /// Converts one `[[rule]]` table; the error names the key, the caller adds the rule number.
    fn parse(table: toml::Table) -> Result<Rule, String> {
        let raw = RawRule::deserialize(table).map_err(|error| error.message().to_owned())?;
        Ok(Rule {
            permission: Permission::parse("permission", &required("permission", raw.permission)?)?,
            action: Action::parse(&required("action", raw.action)?)?,
            pattern: Pattern::parse(&required("topic", raw.topic)?)?,
            username: string("username", raw.username)?,
            client_id: string("client_id", raw.client_id)?,
            source: string("source", raw.source)?
                .map(|text| Network::parse(&text))
                .transpose()?,
        })
    }

    /// The rule's pattern for `who`, or `None` when the rule does not apply to `who`.
    fn bind<'a>(&'a self, who: &'a Principal) -> Option<Bound<'a>> {
        if self
            .username
            .as_ref()
            .is_some_and(|username| who.username.as_ref() != Some(username))
        {
            return None;
        }
        if self
            .client_id
            .as_ref()
            .is_some_and(|client_id| *client_id != who.client_id)
        {
            return None;
        }
        match (self.source, who.source) {
            (None, _) => {}
            (Some(network), Some(ip)) if network.contains(ip) => {}
            (Some(_), _) => return None,
        }
        // A placeholder must stand for exactly one literal level: a name that is empty or holds
        // `/`, `+` or `#` would make `devices/%c/#` reach other clients' topics (and `+` would
        // even count as a wildcard when covering filters), so the rule does not apply at all.
        let username = if self.pattern.uses_username {
            who.username.as_deref().filter(|name| is_one_level(name))?
        } else {
            ""
        };
        let client_id = if self.pattern.uses_client_id {
            Some(who.client_id.as_str()).filter(|id| is_one_level(id))?
        } else {
            ""
        };
        Some(Bound {
            levels: &self.pattern.levels,
            username,
            client_id,
        })
    }
}

fn is_one_level(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '+', '#'])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Publish,
    Subscribe,
    Both,
}

impl Action {
    fn parse(text: &str) -> Result<Action, String> {
        match text {
            "publish" => Ok(Action::Publish),
            "subscribe" => Ok(Action::Subscribe),
            "both" => Ok(Action::Both),
            other => Err(format!(
                "action: expected \"publish\", \"subscribe\" or \"both\", found {other:?}"
            )),
        }
    }

    /// Whether a rule for `self` is one for `asked` (`Publish` or `Subscribe`).
    fn includes(self, asked: Action) -> bool {
        self == Action::Both || self == asked
    }
}

/// A rule's topic pattern, split into levels once so that checks do not allocate.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    levels: Vec<Level>,
    uses_username: bool,
    uses_client_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Plus,
    Hash,
    Username,
    ClientId,
}

impl Pattern {
    fn parse(text: &str) -> Result<Pattern, String> {
        if text == "$share" || text.starts_with("$share/") {
            return Err(format!(
                "topic {text:?}: a $share/<group>/ prefix is not part of a topic: write the \
                 filter after it (a shared subscription is checked by its filter)"
            ));
        }
        let mut levels = Vec::new();
        // The pattern with each placeholder as a plain level, to validate it as a filter.
        let mut as_filter = String::with_capacity(text.len());
        for (index, level) in text.split('/').enumerate() {
            if index > 0 {
                as_filter.push('/');
            }
            let parsed = match level {
                "%u" => Level::Username,
                "%c" => Level::ClientId,
                _ if level.contains("%u") || level.contains("%c") => {
                    return Err(format!(
                        "topic {text:?}: %u and %c must be a whole topic level"
                    ));
                }
                "+" => Level::Plus,
                "#" => Level::Hash,
                literal => Level::Literal(literal.to_owned()),
            };
            as_filter.push_str(match parsed {
                Level::Username | Level::ClientId => "placeholder",
                _ => level,
            });
            levels.push(parsed);
        }
        TopicFilter::parse(&as_filter).map_err(|error| format!("topic {text:?}: {error}"))?;
        Ok(Pattern {
            uses_username: levels.contains(&Level::Username),
            uses_client_id: levels.contains(&Level::ClientId),
            levels,
        })
    }
}

/// A rule's pattern with its placeholders filled for one client.
#[derive(Debug, Clone, Copy)]
struct Bound<'a> {
    levels: &'a [Level],
    /// Only read when the pattern has a `%u` level (then it is a valid level).
    username: &'a str,
    /// Only read when the pattern has a `%c` level (then it is a valid level).
    client_id: &'a str,
}

impl<'a> Bound<'a> {
    fn levels(self) -> impl Iterator<Item = Resolved<'a>> {
        let Bound {
            levels,
            username,
            client_id,
        } = self;
        levels.iter().map(move |level| match level {
            Level::Literal(text) => Resolved::Literal(text),
            Level::Plus => Resolved::Plus,
            Level::Hash => Resolved::Hash,
            Level::Username => Resolved::Literal(username),
            Level::ClientId => Resolved::Literal(client_id),
        })
    }
}

/// One level of a filter or of a pattern with its placeholders filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolved<'a> {
    Literal(&'a str),
    Plus,
    Hash,
}

impl<'a> Resolved<'a> {
    /// A level of a (validated) topic filter.
    fn of(level: &'a str) -> Resolved<'a> {
        match level {
            "+" => Resolved::Plus,
            "#" => Resolved::Hash,
            literal => Resolved::Literal(literal),
        }
    }
}

/// Whether `pattern` matches the topic name `topic`: MQTT matching without the `$` exclusion.
fn matches_topic<'p>(pattern: impl IntoIterator<Item = Resolved<'p>>, topic: &str) -> bool {
    let mut topic_levels = topic.split('/');
    for level in pattern {
        match level {
            // `#` also matches the parent level: `a/#` matches `a`.
            Resolved::Hash => return true,
            Resolved::Plus => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            Resolved::Literal(literal) => {
                if topic_levels.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

/// Whether `pattern` matches every topic that `filter` can match: a `+` or `#` in the filter is
/// covered only by a `+` or `#` at that level of the pattern, and a `#` in the pattern covers
/// everything from its level on. It errs only towards "no" (`+/#` does not cover `#`, though both
/// match every topic), which leaves the decision to later rules and to the delivery checks.
fn covers<'p, 'f>(
    pattern: impl IntoIterator<Item = Resolved<'p>>,
    filter: impl IntoIterator<Item = Resolved<'f>>,
) -> bool {
    let mut filter = filter.into_iter();
    for level in pattern {
        match (level, filter.next()) {
            (Resolved::Hash, _) => return true,
            (Resolved::Plus, Some(Resolved::Literal(_) | Resolved::Plus)) => {}
            (Resolved::Literal(p), Some(Resolved::Literal(f))) if p == f => {}
            _ => return false,
        }
    }
    filter.next().is_none()
}

/// Whether some topic matches both `a` and `b`.
fn intersects<'a, 'b>(
    a: impl IntoIterator<Item = Resolved<'a>>,
    b: impl IntoIterator<Item = Resolved<'b>>,
) -> bool {
    let (mut a, mut b) = (a.into_iter(), b.into_iter());
    loop {
        match (a.next(), b.next()) {
            // `#` matches whatever levels the other side still has, or none.
            (Some(Resolved::Hash), _) | (_, Some(Resolved::Hash)) => return true,
            (None, None) => return true,
            // The other side needs at least one more level.
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(Resolved::Literal(x)), Some(Resolved::Literal(y))) => {
                if x != y {
                    return false;
                }
            }
            // A `+` takes whatever level the other side has.
            (Some(_), Some(_)) => {}
        }
    }
}

/// A rule's `source`: an IPv4 or IPv6 network, its host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    fn parse(text: &str) -> Result<Network, String> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| {
            format!(
                "source: {text:?} is not an address or a network (such as 10.0.0.0/8 or \
                 2001:db8::/32)"
            )
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|&prefix| prefix <= max)
                .ok_or_else(|| {
                    format!("source: {text:?}: the prefix length must be a number from 0 to {max}")
                })?,
        };
        // `::ffff:10.0.0.0/104` is `10.0.0.0/8`, as clients' mapped addresses are their IPv4 ones.
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => (IpAddr::V4(v4), prefix - 96),
                _ => (addr, prefix),
            },
            IpAddr::V4(_) => (addr, prefix),
        };
        let network = masked(addr, prefix);
        if network != addr {
            return Err(format!(
                "source: {text:?} has host bits set: the network is {network}/{prefix}"
            ));
        }
        Ok(Network { addr, prefix })
    }

    fn contains(self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && masked(ip, self.prefix) == self.addr
    }
}

/// `addr` with all but its first `prefix` bits cleared.
fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    let prefix = u32::from(prefix);
    match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX
                .checked_shl(32u32.saturating_sub(prefix))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128u32.saturating_sub(prefix))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
mod tests;
