//! Errors of the byte layouts: a corrupt record, named by a readable rendering of its key.

use berth_core::StoreError;

use super::{Cf, try_split_prefix};

pub(crate) fn corrupt(cf: Cf, key: &[u8], message: &str) -> StoreError {
    StoreError::Corrupt {
        key: describe_key(cf, key),
        message: message.to_owned(),
    }
}

/// A readable rendering of a key for error messages: `queues/"client"/…`.
fn describe_key(cf: Cf, key: &[u8]) -> String {
    if cf == Cf::Retained {
        return format!("{}/{:?}", cf.name(), String::from_utf8_lossy(key));
    }
    if cf == Cf::Handoff {
        return match <[u8; 8]>::try_from(key) {
            Ok(seq) => format!("{}/{}", cf.name(), u64::from_be_bytes(seq)),
            Err(_) => format!("{}/0x{}", cf.name(), hex(key)),
        };
    }
    let Some((prefix, rest)) = try_split_prefix(key) else {
        return format!("{}/0x{}", cf.name(), hex(key));
    };
    let client = String::from_utf8_lossy(prefix.get(2..).unwrap_or_default());
    let suffix = match (cf, rest.len()) {
        (Cf::Sessions, 0) => String::new(),
        (Cf::Subscriptions, _) => format!("/{:?}", String::from_utf8_lossy(rest)),
        (Cf::Queues, 1) => "/dequeued-through".to_owned(),
        (Cf::Queues, 8) | (Cf::Inflight | Cf::Qos2In, 2) => {
            format!("/{}", rest.iter().fold(0u64, |n, &b| n << 8 | u64::from(b)))
        }
        _ => format!("/0x{}", hex(rest)),
    };
    format!("{}/{client:?}{suffix}", cf.name())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
