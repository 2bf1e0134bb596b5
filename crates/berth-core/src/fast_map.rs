//! The hash maps on the broker thread's hot path (sessions, connections, the subscription
//! index, the merge of a PUBLISH's matches when several filters match): foldhash instead of std's SipHash, which profiling put at
//! about a tenth of the broker's CPU on QoS 1 fan-in. Its seed is random per process, so
//! client-chosen keys (client ids, topic levels) cannot be picked to collide in advance.

use std::collections::{HashMap, HashSet};

/// The hasher of [`FastMap`] and [`FastSet`].
pub type FastHasher = foldhash::fast::RandomState;

/// A `HashMap` with [`FastHasher`]; `FastMap::default()` makes an empty one.
pub type FastMap<K, V> = HashMap<K, V, FastHasher>;

/// A `HashSet` with [`FastHasher`].
pub type FastSet<T> = HashSet<T, FastHasher>;
