//! The storage conformance suite: one set of behaviours every [`Store`] must show, run against
//! [`MemStore`](crate::MemStore) here and against every other implementation from its own
//! crate (enable the `conformance` feature as a dev-dependency).
//!
//! ```text
//!   run_all(|| fresh empty store)            each case gets a new store
//!   run_reopen(|| opener for a fresh place)  each case opens, writes, drops, opens again
//! ```
//!
//! Stores may return loaded rows in any order; the suite compares sorted views. A failing case
//! panics (this is test support: a panic *is* the report), after printing its name to stderr.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dequeue;
mod fixtures;
mod kept_ids;
mod lifecycle;
mod messages;
mod queue;
mod records;
mod reopen;
mod sent_mark;

use crate::store::Store;

pub use reopen::run_reopen;

type Case = (&'static str, fn(&mut dyn Store));

/// `module::case, ...` to `(name, fn)` pairs, so a failing case can say its name.
macro_rules! cases {
    ($($module:ident::$case:ident),* $(,)?) => {
        &[$((stringify!($case), $module::$case as fn(&mut dyn Store))),*]
    };
}

const CASES: &[Case] = cases![
    records::empty_store_loads_nothing,
    records::session_round_trips_every_field,
    records::put_session_overwrites,
    records::subscriptions_put_overwrite_delete,
    records::retained_put_replace_delete,
    records::handoff_put_delete_in_seq_order_apart_from_sessions,
    queue::queue_reads_in_order_and_pages,
    queue::queue_orders_sequences_numerically,
    queue::dequeue_moves_bounds,
    queue::purge_removes_the_queue_below_its_bound,
    dequeue::dequeues_delete_exactly_their_rows,
    dequeue::dequeues_keep_the_batch_order,
    dequeue::dequeue_through_removes_the_head,
    queue::inflight_put_overwrite_delete_sorted,
    queue::incoming_qos2_put_delete,
    queue::seen_put_delete_and_go_with_the_session,
    queue::qos2_retry_shares_the_received_row,
    sent_mark::rows_at_or_below_the_sent_mark_read_back_as_redeliveries,
    sent_mark::sequences_go_on_above_the_sent_mark,
    sent_mark::delete_session_removes_the_sent_mark,
    kept_ids::kept_ids_put_replace_remove_and_go_with_the_session,
    lifecycle::delete_session_removes_everything,
    lifecycle::delete_session_spares_prefix_clients,
    lifecycle::delete_session_removes_rows_written_in_its_batch,
    lifecycle::delete_session_removes_a_long_queue,
    lifecycle::batch_ops_apply_in_order,
    lifecycle::deleting_missing_rows_is_fine,
    lifecycle::rows_without_session_are_not_loaded,
    lifecycle::sync_after_writes,
    messages::messages_round_trip_exactly,
    messages::payload_sizes_round_trip,
    messages::unicode_ids_and_topics,
];

/// Runs every case against a fresh, empty store from `make`.
pub fn run_all<S: Store>(mut make: impl FnMut() -> S) {
    for (name, case) in CASES {
        eprintln!("storage conformance: {name}");
        let mut store = make();
        case(&mut store);
    }
}
