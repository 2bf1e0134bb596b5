//! `RocksStore` against the storage conformance suite (fresh directory per case, plus the
//! persistence cases that drop and re-open the store), and what it does with damaged bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use berth_codec::MqttString;
use berth_core::conformance::{run_all, run_reopen};
use berth_core::{
    Batch, ClientId, Epoch, Op, QueueSeq, SessionExpiry, SessionRecord, Store, StoreError,
};
use berth_store::{RocksOptions, RocksStore};
use tempfile::TempDir;

fn open(path: &Path) -> RocksStore {
    RocksStore::open(path, RocksOptions::default()).expect("store opens")
}

#[test]
fn rocks_store_passes_the_conformance_suite() {
    // Directories outlive their stores and are removed when the test ends.
    let mut dirs = Vec::new();
    run_all(|| {
        let dir = TempDir::new().expect("temp dir");
        let store = open(dir.path());
        dirs.push(dir);
        store
    });
}

#[test]
fn rocks_store_passes_the_reopen_suite() {
    run_reopen(|| {
        let dir = TempDir::new().expect("temp dir");
        move || open(dir.path())
    });
}

#[test]
fn open_creates_missing_directories() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("a/b/data");
    let mut store = open(&path);
    assert!(store.load().unwrap().sessions.is_empty());
    assert!(path.join("CURRENT").exists());
}

#[test]
fn a_second_open_of_the_same_directory_fails_cleanly() {
    let dir = TempDir::new().unwrap();
    let _first = open(dir.path());
    match RocksStore::open(dir.path(), RocksOptions::default()) {
        Err(StoreError::Io { operation, .. }) => assert_eq!(operation, "open database"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

fn client(id: &str) -> ClientId {
    ClientId::new(MqttString::new(id).unwrap())
}

/// The documented key of a per-client row: `len:u16 BE`, client id, suffix.
fn key(client: &str, suffix: &[u8]) -> Vec<u8> {
    let mut key = (client.len() as u16).to_be_bytes().to_vec();
    key.extend_from_slice(client.as_bytes());
    key.extend_from_slice(suffix);
    key
}

/// Writes `value` under `key` in column family `cf` with a raw RocksDB handle, the store closed.
fn put_raw(path: &Path, cf: &str, key: &[u8], value: &[u8]) {
    let mut options = rocksdb::Options::default();
    options.create_missing_column_families(true);
    let names = [
        "sessions",
        "subscriptions",
        "queues",
        "inflight",
        "qos2_in",
        "qos2_seen",
        "retained",
        "handoff",
    ];
    let db = rocksdb::DB::open_cf(&options, path, names).unwrap();
    db.put_cf(db.cf_handle(cf).unwrap(), key, value).unwrap();
}

fn assert_corrupt<T: std::fmt::Debug>(result: Result<T, StoreError>, expected_key: &str) {
    match result {
        Err(StoreError::Corrupt { key, message }) => {
            assert_eq!(key, expected_key, "{message}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// A session record with nothing optional set.
fn session_record() -> SessionRecord {
    SessionRecord {
        epoch: Epoch(1),
        protocol: berth_codec::ProtocolVersion::V5,
        expiry: SessionExpiry::Never,
        expires_at: None,
        will: None,
        will_due_at: None,
        qos2_state_elsewhere: false,
        incoming_qos2_elsewhere: false,
        qos2_doubt: Default::default(),
        landed: Epoch(1),
    }
}

#[test]
fn garbage_values_are_corrupt_errors() {
    let dir = TempDir::new().unwrap();
    {
        let mut store = open(dir.path());
        store
            .write(Batch {
                ops: vec![Op::PutSession {
                    client: client("dev"),
                    record: session_record(),
                }],
            })
            .unwrap();
    }
    put_raw(
        dir.path(),
        "queues",
        &key("dev", &7u64.to_be_bytes()),
        b"\x01garbage that is not a delivery",
    );
    put_raw(dir.path(), "inflight", &key("dev", &[0, 3]), &[9, 9, 9]);
    {
        let store = open(dir.path());
        assert_corrupt(
            store.read_queue(&client("dev"), QueueSeq(0), 10),
            "queues/\"dev\"/7",
        );
        assert_corrupt(store.read_inflight(&client("dev")), "inflight/\"dev\"/3");
    }
    // A queue value too short to hold its size fails `load`, which reads only that size.
    put_raw(
        dir.path(),
        "queues",
        &key("dev", &8u64.to_be_bytes()),
        &[1, 0],
    );
    assert_corrupt(open(dir.path()).load(), "queues/\"dev\"/8");
    put_raw(
        dir.path(),
        "queues",
        &key("dev", &8u64.to_be_bytes()),
        &[1, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    open(dir.path())
        .load()
        .expect("a well-formed size loads; the body is checked when read");

    put_raw(dir.path(), "sessions", &key("dev", b""), &[1, 2, 3]);
    assert_corrupt(open(dir.path()).load(), "sessions/\"dev\"");

    // A handoff entry whose client id runs past the value's end.
    let dir = TempDir::new().unwrap();
    drop(open(dir.path()));
    put_raw(
        dir.path(),
        "handoff",
        &5u64.to_be_bytes(),
        &[1, 0, 0, 9, b'x'],
    );
    assert_corrupt(open(dir.path()).load(), "handoff/5");
}

#[test]
fn garbage_keys_are_corrupt_errors() {
    let dir = TempDir::new().unwrap();
    drop(open(dir.path()));
    // A length prefix promising more bytes than the key has.
    put_raw(dir.path(), "sessions", &[0, 9, b'x'], &[1]);
    assert_corrupt(open(dir.path()).load(), "sessions/0x000978");

    let dir = TempDir::new().unwrap();
    drop(open(dir.path()));
    put_raw(dir.path(), "retained", b"topic/x", b"\x01\x00");
    assert_corrupt(open(dir.path()).load(), "retained/\"topic/x\"");

    // A handoff key that is not a sequence number.
    let dir = TempDir::new().unwrap();
    drop(open(dir.path()));
    put_raw(dir.path(), "handoff", &[1, 2, 3], &[1]);
    assert_corrupt(open(dir.path()).load(), "handoff/0x010203");
}

/// The metrics' figure of what the store holds for itself: its memtables grow with what is
/// written, and its block cache stays within the configured size.
#[test]
fn memory_counts_the_memtables_writes_fill() {
    let dir = TempDir::new().unwrap();
    let mut store = open(dir.path());
    let before = store.memory();
    let ops = (0..2000)
        .map(|n| Op::PutSession {
            client: client(&format!("device-{n}")),
            record: session_record(),
        })
        .collect();
    store.write(Batch { ops }).unwrap();
    let after = store.memory();
    assert!(
        after.memtables >= before.memtables + 2000 * 20,
        "{before:?} → {after:?}"
    );
    assert!(after.block_cache <= 32 << 20, "{after:?}");
}
