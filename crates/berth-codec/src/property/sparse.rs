//! PUBLISH properties kept out of line, and not at all while they are empty.
//!
//! Every message the broker handles is a `Publish` (or a core `Message`), moved by value from
//! the decoder to the broker thread, into its actions, into a connection's outbox. Inline, the
//! property set made a `Publish` 232 bytes, 160 of them properties that an MQTT 3.1.1 message
//! never has and most MQTT 5 messages leave empty; copying them was the largest single item of
//! a QoS 2 profile (`memmove`, 15 % of the broker's samples). Out of line they cost one pointer,
//! and an allocation only for a message that does carry properties.

use std::fmt;
use std::ops::{Deref, DerefMut};

use super::PublishProperties;

/// What an absent set reads as.
static EMPTY: PublishProperties = PublishProperties::EMPTY;

/// A [`PublishProperties`] that is `None` until something is set. It reads as the set it holds
/// (or the empty set); writing through it allocates the set on first use. Two values compare
/// by their sets, so an allocated empty set equals an absent one.
#[derive(Clone, Default)]
pub struct SparseProperties(Option<Box<PublishProperties>>);

impl SparseProperties {
    /// No properties (no allocation).
    pub const fn none() -> SparseProperties {
        SparseProperties(None)
    }

    pub fn is_empty(&self) -> bool {
        self.0.as_deref().is_none_or(PublishProperties::is_empty)
    }

    /// The same properties in allocations of their own (see [`PublishProperties::detached`]).
    pub fn detached(&self) -> SparseProperties {
        match &self.0 {
            None => SparseProperties(None),
            Some(set) => SparseProperties::from(set.detached()),
        }
    }

    /// The set where there is one: changes that only clear values go through here, so that a
    /// message without properties is not given an empty set.
    pub fn get_mut(&mut self) -> Option<&mut PublishProperties> {
        self.0.as_deref_mut()
    }

    /// Gives up an allocated set that has become empty.
    pub fn compact(&mut self) {
        if self.0.as_deref().is_some_and(PublishProperties::is_empty) {
            self.0 = None;
        }
    }
}

impl From<PublishProperties> for SparseProperties {
    fn from(set: PublishProperties) -> Self {
        if set.is_empty() {
            SparseProperties(None)
        } else {
            SparseProperties(Some(Box::new(set)))
        }
    }
}

impl Deref for SparseProperties {
    type Target = PublishProperties;

    fn deref(&self) -> &PublishProperties {
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl DerefMut for SparseProperties {
    fn deref_mut(&mut self) -> &mut PublishProperties {
        self.0.get_or_insert_with(Box::default)
    }
}

impl PartialEq for SparseProperties {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for SparseProperties {}

impl PartialEq<PublishProperties> for SparseProperties {
    fn eq(&self, other: &PublishProperties) -> bool {
        **self == *other
    }
}

impl fmt::Debug for SparseProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU16;

    use super::*;

    #[test]
    fn an_absent_set_reads_as_empty_and_equals_an_allocated_empty_one() {
        let absent = SparseProperties::none();
        assert!(absent.is_empty());
        assert_eq!(absent.message_expiry_interval, None);
        let mut allocated = SparseProperties::none();
        allocated.topic_alias = NonZeroU16::new(3);
        assert!(!allocated.is_empty());
        assert_ne!(absent, allocated);
        allocated.topic_alias = None;
        assert!(allocated.is_empty());
        assert_eq!(absent, allocated);
    }

    #[test]
    fn an_empty_set_converts_to_no_allocation_and_a_set_keeps_its_values() {
        assert!(
            SparseProperties::from(PublishProperties::default())
                .0
                .is_none()
        );
        let set = PublishProperties {
            message_expiry_interval: Some(30),
            ..PublishProperties::default()
        };
        let mut sparse = SparseProperties::from(set.clone());
        assert_eq!(sparse, set);
        sparse.get_mut().unwrap().message_expiry_interval = None;
        sparse.compact();
        assert!(sparse.0.is_none(), "an emptied set is given up");
    }

    #[test]
    fn a_publish_is_small() {
        // 232 bytes with the set inline.
        assert!(std::mem::size_of::<crate::Publish>() <= 80);
    }
}
