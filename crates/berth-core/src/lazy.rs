//! Per-session collections that most sessions never use: eight bytes inline (a null box) until
//! the first element, instead of an empty collection's 32 (`VecDeque`) or 48 (`HashSet`).
//! Every session, connected or offline, pays its collections' inline size: 100,000 offline
//! sessions with an empty `HashSet` and `VecDeque` each held 6.4 MB of nothing.
//!
//! The room, once allocated, stays until `clear` (a session that uses one keeps using it).

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

/// A `HashSet` allocated at its first insert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
// Boxed on purpose: the point is one word inline instead of the collection's header.
#[allow(clippy::box_collection)]
pub struct LazySet<T: Eq + Hash>(Option<Box<HashSet<T>>>);

impl<T: Eq + Hash> LazySet<T> {
    pub fn new() -> Self {
        LazySet(None)
    }

    /// True if it was not there.
    pub fn insert(&mut self, value: T) -> bool {
        self.0.get_or_insert_default().insert(value)
    }

    /// True if it was there.
    pub fn remove(&mut self, value: &T) -> bool {
        self.0.as_mut().is_some_and(|set| set.remove(value))
    }

    pub fn contains(&self, value: &T) -> bool {
        self.0.as_ref().is_some_and(|set| set.contains(value))
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |set| set.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties it and gives its room back.
    pub fn clear(&mut self) {
        self.0 = None;
    }

    pub fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        if let Some(set) = self.0.as_mut() {
            set.retain(keep);
        }
    }

    /// In no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().flat_map(|set| set.iter())
    }
}

impl<T: Eq + Hash> Extend<T> for LazySet<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, values: I) {
        let mut values = values.into_iter().peekable();
        if values.peek().is_some() {
            self.0.get_or_insert_default().extend(values);
        }
    }
}

impl<T: Eq + Hash> FromIterator<T> for LazySet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(values: I) -> Self {
        let mut set = LazySet::new();
        set.extend(values);
        set
    }
}

/// A `VecDeque` allocated at its first push.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
// Boxed on purpose, as above.
#[allow(clippy::box_collection)]
pub struct LazyDeque<T>(Option<Box<VecDeque<T>>>);

impl<T> LazyDeque<T> {
    pub fn new() -> Self {
        LazyDeque(None)
    }

    pub fn push_back(&mut self, value: T) {
        self.0.get_or_insert_default().push_back(value);
    }

    pub fn push_front(&mut self, value: T) {
        self.0.get_or_insert_default().push_front(value);
    }

    pub fn pop_front(&mut self) -> Option<T> {
        self.0.as_mut().and_then(|deque| deque.pop_front())
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |deque| deque.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties it and gives its room back.
    pub fn clear(&mut self) {
        self.0 = None;
    }

    pub fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        if let Some(deque) = self.0.as_mut() {
            deque.retain(keep);
        }
    }

    /// Front to back.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().flat_map(|deque| deque.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_takes_one_word_until_used_and_behaves_as_a_set() {
        assert_eq!(std::mem::size_of::<LazySet<u16>>(), 8);
        let mut set = LazySet::new();
        assert!(set.is_empty() && !set.contains(&1) && !set.remove(&1));
        assert!(set.insert(1));
        assert!(!set.insert(1), "already there");
        set.extend([2, 3]);
        assert_eq!(set.len(), 3);
        set.retain(|v| *v != 2);
        let mut values: Vec<u16> = set.iter().copied().collect();
        values.sort_unstable();
        assert_eq!(values, [1, 3]);
        assert!(set.remove(&1) && !set.contains(&1));
        set.clear();
        assert!(set.is_empty());
        assert_eq!(set, LazySet::new(), "cleared: no room kept");
    }

    #[test]
    fn a_deque_takes_one_word_until_used_and_keeps_its_order() {
        assert_eq!(std::mem::size_of::<LazyDeque<u16>>(), 8);
        let mut deque = LazyDeque::new();
        assert!(deque.pop_front().is_none() && deque.is_empty());
        deque.push_back(2);
        deque.push_back(3);
        deque.push_front(1);
        assert_eq!(deque.iter().copied().collect::<Vec<_>>(), [1, 2, 3]);
        deque.retain(|v| *v != 2);
        assert_eq!(deque.len(), 2);
        assert_eq!(deque.pop_front(), Some(1));
        deque.clear();
        assert_eq!(deque, LazyDeque::new());
    }
}
