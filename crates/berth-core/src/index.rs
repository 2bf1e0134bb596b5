//! The subscription index: a topic trie from filters to subscribers, derived from the sessions'
//! subscriptions and rebuilt from them at start.
//!
//! Matching walks the topic's levels once. At each node it follows the literal level, `+`, and
//! collects `#` (which also matches the parent level: `a/#` matches `a`). Wildcards in the first
//! level skip topics that start with `$` ([MQTT-4.7.2-1]). The result is merged per client so
//! that overlapping subscriptions deliver once, at the highest granted QoS, with every matching
//! subscription identifier; each shared group (`$share/{group}/{filter}`) contributes one member.

use std::collections::HashMap;

use berth_codec::{QoS, SubscriptionId, TopicFilter, TopicName};

use crate::fast_map::FastMap;
use crate::ids::ClientId;
use crate::store::SubscriptionRecord;
use crate::vec_map::reserve_gently;

#[derive(Debug, Default)]
struct Node {
    children: FastMap<Box<str>, Node>,
    direct: Vec<(ClientId, SubscriptionRecord)>,
    /// Shared groups ending at this node, by group name; members in join order. Boxed: most
    /// nodes have none, and every node of a large trie pays for the empty map's size.
    #[allow(clippy::box_collection)] // the point: one pointer in the node instead of 48 bytes
    shared: Option<Box<HashMap<Box<str>, SharedGroup>>>,
}

#[derive(Debug, Default)]
struct SharedGroup {
    members: Vec<(ClientId, SubscriptionRecord)>,
    /// Round-robin cursor.
    next: usize,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.direct.is_empty() && self.shared.is_none()
    }
}

/// What one client gets for one published message, all its matching subscriptions merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub qos: QoS,
    /// Some matching subscription has Retain As Published.
    pub retain_as_published: bool,
    pub subscription_ids: Vec<SubscriptionId>,
}

/// Filter → subscribers trie.
#[derive(Debug, Default)]
pub struct SubscriptionIndex {
    root: Node,
    len: usize,
}

impl SubscriptionIndex {
    pub fn new() -> SubscriptionIndex {
        SubscriptionIndex::default()
    }

    /// Number of (client, filter) subscriptions.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or replaces `client`'s subscription to `filter`.
    pub fn insert(&mut self, client: &ClientId, filter: &TopicFilter, record: SubscriptionRecord) {
        let mut node = &mut self.root;
        for level in filter.levels() {
            node = node.children.entry(level.into()).or_default();
        }
        let entries = match filter.share_group() {
            Some(group) => {
                let groups = node.shared.get_or_insert_with(Box::default);
                &mut groups.entry(group.into()).or_default().members
            }
            None => &mut node.direct,
        };
        match entries.iter_mut().find(|(c, _)| c == client) {
            Some(entry) => entry.1 = record,
            None => {
                // A typical node (a device's own topic) has one subscriber.
                reserve_gently(entries);
                entries.push((client.clone(), record));
                self.len += 1;
            }
        }
    }

    /// Removes `client`'s subscription to `filter`; returns whether it existed.
    pub fn remove(&mut self, client: &ClientId, filter: &TopicFilter) -> bool {
        let levels: Vec<&str> = filter.levels().collect();
        let removed = remove_at(&mut self.root, &levels, filter.share_group(), client);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Every client whose subscriptions match `topic`, merged per client (each once). `publisher`
    /// is the client that published, for No Local; `is_online` lets shared groups prefer
    /// connected members.
    pub fn matches(
        &mut self,
        topic: &TopicName,
        publisher: Option<&ClientId>,
        is_online: impl Fn(&ClientId) -> bool,
    ) -> Vec<(ClientId, Match)> {
        let mut found: Vec<(ClientId, Match)> = Vec::new();
        // How many nodes and shared groups contributed. A node holds one subscription per
        // client, so a client can appear twice only if more than one did; the usual topic
        // matches one filter, and its result needs no merging (a map built per PUBLISH, and
        // grown as it went, was ~5 % of the broker thread in fan-out).
        let mut sources = 0;
        let levels: Vec<&str> = topic.levels().collect();
        let mut visit = |node: &mut Node| {
            let before = found.len();
            for (client, record) in &node.direct {
                if record.options.no_local && Some(client) == publisher {
                    continue;
                }
                found.push((client.clone(), match_of(record)));
            }
            if found.len() > before {
                sources += 1;
            }
            for group in node
                .shared
                .iter_mut()
                .flat_map(|groups| groups.values_mut())
            {
                if let Some((client, record)) = pick_member(group, &is_online) {
                    found.push((client, match_of(&record)));
                    sources += 1;
                }
            }
        };
        walk(&mut self.root, &levels, topic.is_dollar(), true, &mut visit);
        if sources > 1 {
            found = merge_per_client(found);
        }
        found
    }
}

/// What one subscription alone gives its client.
fn match_of(record: &SubscriptionRecord) -> Match {
    Match {
        qos: record.options.qos,
        retain_as_published: record.options.retain_as_published,
        subscription_ids: record.subscription_id.into_iter().collect(),
    }
}

/// Overlapping subscriptions of one client deliver once: at the highest granted QoS, retained
/// as published if any says so, with every matching subscription identifier.
fn merge_per_client(found: Vec<(ClientId, Match)>) -> Vec<(ClientId, Match)> {
    let mut merged: FastMap<ClientId, Match> =
        FastMap::with_capacity_and_hasher(found.len(), Default::default());
    for (client, one) in found {
        match merged.entry(client) {
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(one);
            }
            std::collections::hash_map::Entry::Occupied(mut entry) => {
                let entry = entry.get_mut();
                entry.qos = entry.qos.max(one.qos);
                entry.retain_as_published |= one.retain_as_published;
                entry.subscription_ids.extend(one.subscription_ids);
            }
        }
    }
    merged.into_iter().collect()
}

/// Round robin over the group, skipping offline members while any member is online.
fn pick_member(
    group: &mut SharedGroup,
    is_online: &impl Fn(&ClientId) -> bool,
) -> Option<(ClientId, SubscriptionRecord)> {
    let n = group.members.len();
    if n == 0 {
        return None;
    }
    let any_online = group.members.iter().any(|(client, _)| is_online(client));
    for step in 0..n {
        let index = (group.next + step) % n;
        let (client, record) = &group.members[index];
        if !any_online || is_online(client) {
            group.next = (index + 1) % n;
            return Some((client.clone(), record.clone()));
        }
    }
    None
}

fn walk(
    node: &mut Node,
    levels: &[&str],
    dollar_topic: bool,
    at_root: bool,
    visit: &mut impl FnMut(&mut Node),
) {
    let wildcards_allowed = !(at_root && dollar_topic);
    if wildcards_allowed && let Some(hash) = node.children.get_mut("#") {
        visit(hash);
    }
    let Some((level, rest)) = levels.split_first() else {
        visit(node);
        return;
    };
    if wildcards_allowed && let Some(plus) = node.children.get_mut("+") {
        walk(plus, rest, dollar_topic, false, visit);
    }
    if *level != "+"
        && *level != "#"
        && let Some(child) = node.children.get_mut(*level)
    {
        walk(child, rest, dollar_topic, false, visit);
    }
}

fn remove_at(node: &mut Node, levels: &[&str], group: Option<&str>, client: &ClientId) -> bool {
    let Some((level, rest)) = levels.split_first() else {
        let removed = match group {
            Some(group) => {
                let Some(groups) = node.shared.as_mut() else {
                    return false;
                };
                let Some(shared) = groups.get_mut(group) else {
                    return false;
                };
                let before = shared.members.len();
                shared.members.retain(|(c, _)| c != client);
                let removed = shared.members.len() != before;
                if shared.members.is_empty() {
                    groups.remove(group);
                }
                if groups.is_empty() {
                    node.shared = None;
                }
                removed
            }
            None => {
                let before = node.direct.len();
                node.direct.retain(|(c, _)| c != client);
                let removed = node.direct.len() != before;
                if node.direct.is_empty() {
                    // Give the slots back: a node may outlive its subscribers (its children).
                    node.direct = Vec::new();
                }
                removed
            }
        };
        return removed;
    };
    let Some(child) = node.children.get_mut(*level) else {
        return false;
    };
    let removed = remove_at(child, rest, group, client);
    if child.is_empty() {
        node.children.remove(*level);
    }
    removed
}

#[cfg(test)]
mod tests {
    use berth_codec::{MqttString, SubscriptionOptions};

    use super::*;

    fn client(id: &str) -> ClientId {
        ClientId::new(MqttString::new(id).unwrap())
    }

    fn record(qos: QoS, id: Option<u32>) -> SubscriptionRecord {
        SubscriptionRecord {
            options: SubscriptionOptions::new(qos),
            subscription_id: id.and_then(SubscriptionId::new),
        }
    }

    fn filter(text: &str) -> TopicFilter {
        TopicFilter::parse(text).unwrap()
    }

    fn topic(text: &str) -> TopicName {
        TopicName::parse(text).unwrap()
    }

    fn matched<'a>(found: &'a [(ClientId, Match)], client: &ClientId) -> Option<&'a Match> {
        found.iter().find(|(c, _)| c == client).map(|(_, m)| m)
    }

    #[test]
    fn overlapping_subscriptions_merge_to_max_qos_and_all_ids() {
        let mut index = SubscriptionIndex::new();
        let a = client("a");
        index.insert(&a, &filter("s/#"), record(QoS::AtMostOnce, Some(1)));
        index.insert(&a, &filter("s/+/t"), record(QoS::ExactlyOnce, Some(2)));
        index.insert(&a, &filter("s/x/t"), record(QoS::AtLeastOnce, None));
        let found = index.matches(&topic("s/x/t"), None, |_| true);
        assert_eq!(found.len(), 1);
        let m = matched(&found, &a).expect("a matches");
        assert_eq!(m.qos, QoS::ExactlyOnce);
        let mut ids: Vec<u32> = m.subscription_ids.iter().map(|id| id.get()).collect();
        ids.sort_unstable();
        assert_eq!(ids, [1, 2]);
    }

    #[test]
    fn every_client_is_matched_once_whichever_filters_match() {
        let mut index = SubscriptionIndex::new();
        let (a, b, c) = (client("a"), client("b"), client("c"));
        index.insert(&a, &filter("s/x"), record(QoS::AtMostOnce, Some(1)));
        index.insert(&b, &filter("s/x"), record(QoS::AtLeastOnce, None));
        let one_filter = index.matches(&topic("s/x"), None, |_| true);
        assert_eq!(one_filter.len(), 2, "{one_filter:?}");
        index.insert(&a, &filter("s/#"), record(QoS::AtLeastOnce, Some(2)));
        index.insert(&c, &filter("+/x"), record(QoS::ExactlyOnce, None));
        let found = index.matches(&topic("s/x"), None, |_| true);
        let mut clients: Vec<&str> = found.iter().map(|(c, _)| c.as_str()).collect();
        clients.sort_unstable();
        assert_eq!(clients, ["a", "b", "c"]);
        let m = matched(&found, &a).expect("a matches");
        assert_eq!(m.qos, QoS::AtLeastOnce);
        let mut ids: Vec<u32> = m.subscription_ids.iter().map(|id| id.get()).collect();
        ids.sort_unstable();
        assert_eq!(ids, [1, 2]);
        assert_eq!(matched(&found, &c).map(|m| m.qos), Some(QoS::ExactlyOnce));
    }

    #[test]
    fn a_client_subscribed_directly_and_in_a_shared_group_of_one_filter_is_matched_once() {
        let mut index = SubscriptionIndex::new();
        let a = client("a");
        index.insert(&a, &filter("jobs"), record(QoS::AtMostOnce, Some(1)));
        index.insert(
            &a,
            &filter("$share/g/jobs"),
            record(QoS::AtLeastOnce, Some(2)),
        );
        let found = index.matches(&topic("jobs"), None, |_| true);
        assert_eq!(found.len(), 1, "{found:?}");
        let m = matched(&found, &a).expect("a matches");
        assert_eq!(m.qos, QoS::AtLeastOnce);
        let mut ids: Vec<u32> = m.subscription_ids.iter().map(|id| id.get()).collect();
        ids.sort_unstable();
        assert_eq!(ids, [1, 2]);
    }

    #[test]
    fn hash_matches_parent_and_dollar_topics_are_skipped() {
        let mut index = SubscriptionIndex::new();
        index.insert(&client("a"), &filter("s/#"), record(QoS::AtMostOnce, None));
        index.insert(&client("b"), &filter("#"), record(QoS::AtMostOnce, None));
        index.insert(
            &client("c"),
            &filter("+/status"),
            record(QoS::AtMostOnce, None),
        );
        assert!(matched(&index.matches(&topic("s"), None, |_| true), &client("a")).is_some());
        let dollar = index.matches(&topic("$SYS/status"), None, |_| true);
        assert!(dollar.is_empty(), "{dollar:?}");
        assert_eq!(index.matches(&topic("x/status"), None, |_| true).len(), 2);
    }

    #[test]
    fn no_local_skips_the_publisher() {
        let mut index = SubscriptionIndex::new();
        let a = client("a");
        let mut rec = record(QoS::AtLeastOnce, None);
        rec.options.no_local = true;
        index.insert(&a, &filter("chat"), rec);
        assert!(index.matches(&topic("chat"), Some(&a), |_| true).is_empty());
        assert_eq!(
            index
                .matches(&topic("chat"), Some(&client("b")), |_| true)
                .len(),
            1
        );
    }

    #[test]
    fn shared_group_delivers_to_one_member_round_robin_preferring_online() {
        let mut index = SubscriptionIndex::new();
        for id in ["a", "b", "c"] {
            index.insert(
                &client(id),
                &filter("$share/g/jobs"),
                record(QoS::AtLeastOnce, None),
            );
        }
        let mut seen = Vec::new();
        for _ in 0..6 {
            let found = index.matches(&topic("jobs"), None, |_| true);
            assert_eq!(found.len(), 1);
            seen.push(found[0].0.to_string());
        }
        assert_eq!(seen, ["a", "b", "c", "a", "b", "c"]);
        let online = |c: &ClientId| c.as_str() == "b";
        for _ in 0..3 {
            assert!(matched(&index.matches(&topic("jobs"), None, online), &client("b")).is_some());
        }
    }

    #[test]
    fn remove_prunes_and_reports() {
        let mut index = SubscriptionIndex::new();
        let a = client("a");
        index.insert(&a, &filter("a/b/c"), record(QoS::AtMostOnce, None));
        index.insert(&a, &filter("$share/g/a/b/c"), record(QoS::AtMostOnce, None));
        assert_eq!(index.len(), 2);
        assert!(index.remove(&a, &filter("a/b/c")));
        assert!(!index.remove(&a, &filter("a/b/c")));
        assert!(index.remove(&a, &filter("$share/g/a/b/c")));
        assert!(index.is_empty());
        assert!(index.root.is_empty());
    }
}
