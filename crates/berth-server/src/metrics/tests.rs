#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn connects(connects_total: u64, connections: u64) -> Stats {
    let mut stats = Stats::default();
    stats.connects_total = connects_total;
    stats.connections = connections;
    stats
}

fn line_value(text: &str, series: &str) -> u64 {
    let line = text
        .lines()
        .find(|line| line.split_once(' ').map(|(name, _)| name) == Some(series))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn every_metric_is_exported_with_its_type_before_any_observation() {
    let text = Metrics::new().unwrap().render();
    for gauge in [
        "berth_connections",
        "berth_sessions",
        "berth_queued_messages",
        "berth_retained_messages",
    ] {
        assert!(
            text.contains(&format!("# TYPE {gauge} gauge\n")),
            "{gauge} in:\n{text}"
        );
        assert_eq!(line_value(&text, gauge), 0);
    }
    for counter in [
        "berth_connects_total",
        "berth_publishes_received_total",
        "berth_publishes_sent_total",
        "berth_wills_published_total",
        "berth_sessions_expired_total",
        "berth_protocol_errors_total",
        "berth_messages_dropped_total",
        "berth_takeovers_total",
        "berth_raft_elections_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {counter} counter\n")),
            "{counter} in:\n{text}"
        );
    }
    for reason in DropReason::ALL {
        let series = format!(
            "berth_messages_dropped_total{{reason=\"{}\"}}",
            reason.label()
        );
        assert_eq!(line_value(&text, &series), 0, "{series}");
    }
    for reason in LimitReason::ALL {
        let series = format!(
            "berth_limit_refusals_total{{reason=\"{}\"}}",
            reason.label()
        );
        assert_eq!(line_value(&text, &series), 0, "{series}");
    }
    assert_eq!(
        line_value(&text, "berth_connects_refused_total{code=\"0x90\"}"),
        0,
        "a will over the topic limits"
    );
}

#[test]
fn limit_refusals_advance_by_reason() {
    let metrics = Metrics::new().unwrap();
    let mut stats = Stats::default();
    stats.count_limit(LimitReason::MaxSubscriptions);
    stats.count_limit(LimitReason::MaxSubscriptions);
    stats.count_limit(LimitReason::MaxTopicLevels);
    metrics.observe(&stats);
    metrics.observe(&stats);
    let text = metrics.render();
    let value = |reason: &str| {
        line_value(
            &text,
            &format!("berth_limit_refusals_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(value("max_subscriptions"), 2);
    assert_eq!(value("max_topic_levels"), 1);
    assert_eq!(value("max_topic_length"), 0);
}

#[test]
fn counters_advance_by_deltas_and_gauges_follow_levels() {
    let metrics = Metrics::new().unwrap();
    let mut stats = Stats::default();
    stats.connections = 5;
    stats.sessions = 7;
    stats.queued_messages = 100;
    stats.retained_messages = 3;
    stats.connects_total = 10;
    stats.publishes_received_total = 50;
    stats.publishes_sent_total = 40;
    stats.wills_published_total = 1;
    stats.sessions_expired_total = 2;
    stats.protocol_errors_total = 4;
    stats.count_drop(DropReason::QueueFull);
    metrics.observe(&stats);
    // Observing the same snapshot again changes nothing.
    metrics.observe(&stats);
    assert_eq!(metrics.connects_total.get(), 10);
    assert_eq!(metrics.publishes_received_total.get(), 50);

    stats.connections = 2;
    stats.queued_messages = 30;
    stats.connects_total = 13;
    stats.publishes_received_total = 65;
    stats.publishes_sent_total = 41;
    stats.count_drop(DropReason::QueueFull);
    stats.count_drop(DropReason::Expired);
    metrics.observe(&stats);

    let text = metrics.render();
    assert_eq!(line_value(&text, "berth_connections"), 2);
    assert_eq!(line_value(&text, "berth_queued_messages"), 30);
    assert_eq!(line_value(&text, "berth_connects_total"), 13);
    assert_eq!(line_value(&text, "berth_publishes_received_total"), 65);
    assert_eq!(line_value(&text, "berth_publishes_sent_total"), 41);
    assert_eq!(line_value(&text, "berth_wills_published_total"), 1);
    assert_eq!(line_value(&text, "berth_sessions_expired_total"), 2);
    assert_eq!(line_value(&text, "berth_protocol_errors_total"), 4);
    assert_eq!(
        line_value(&text, "berth_messages_dropped_total{reason=\"queue_full\"}"),
        2
    );
    assert_eq!(
        line_value(&text, "berth_messages_dropped_total{reason=\"expired\"}"),
        1
    );
    assert_eq!(
        line_value(
            &text,
            "berth_messages_dropped_total{reason=\"qos0_offline\"}"
        ),
        0
    );
}

#[test]
fn a_lower_total_is_a_restart_of_the_source_and_never_lowers_a_counter() {
    let metrics = Metrics::new().unwrap();
    metrics.observe(&connects(10, 4));
    // The source restarted from zero and has counted 3 connects since.
    metrics.observe(&connects(3, 1));
    assert_eq!(metrics.connects_total.get(), 13);
    assert_eq!(metrics.connections.get(), 1);
    metrics.observe(&connects(5, 1));
    assert_eq!(metrics.connects_total.get(), 15);
}

#[test]
fn two_instances_do_not_share_values() {
    let a = Metrics::new().unwrap();
    let b = Metrics::new().unwrap();
    a.observe(&connects(9, 0));
    assert_eq!(line_value(&b.render(), "berth_connects_total"), 0);
    assert_eq!(line_value(&a.render(), "berth_connects_total"), 9);
}

fn forwards(text: &str, peer: &str, result: &str) -> u64 {
    line_value(
        text,
        &format!("berth_forwards_total{{peer=\"{peer}\",result=\"{result}\"}}"),
    )
}

#[test]
fn forwards_count_messages_by_peer_and_result() {
    let metrics = Metrics::new().unwrap();
    assert!(
        !metrics.render().contains("berth_forwards_total"),
        "a peer's series appear with its first forward"
    );
    let to_2 = metrics.forwards_to(NodeId(2));
    let to_3 = metrics.forwards_to(NodeId(3));
    to_2.add(ForwardResult::Stored, 512);
    to_2.add(ForwardResult::Stored, 3);
    to_2.add(ForwardResult::HandedBack, 7);
    to_3.add(ForwardResult::Failed, 2);
    to_3.add(ForwardResult::Rerouted, 0);
    // Another handle on the same peer (its queue started again) adds to the same series.
    metrics.forwards_to(NodeId(2)).add(ForwardResult::Failed, 1);

    let text = metrics.render();
    assert!(
        text.contains("# TYPE berth_forwards_total counter\n"),
        "{text}"
    );
    assert_eq!(forwards(&text, "2", "stored"), 515);
    assert_eq!(forwards(&text, "2", "handed_back"), 7);
    assert_eq!(forwards(&text, "2", "failed"), 1);
    assert_eq!(forwards(&text, "2", "rerouted"), 0);
    assert_eq!(forwards(&text, "3", "failed"), 2);
    // Every result of a known peer is exported, at 0 until it happens.
    assert_eq!(forwards(&text, "3", "stored"), 0);
    assert_eq!(forwards(&text, "3", "rerouted"), 0);
    assert_eq!(forwards(&text, "3", "handed_back"), 0);
}

#[test]
fn takeovers_count_by_result_every_result_exported_from_the_start() {
    let metrics = Metrics::new().unwrap();
    let value = |text: &str, result: TakeoverResult| {
        line_value(
            text,
            &format!("berth_takeovers_total{{result=\"{}\"}}", result.label()),
        )
    };
    let text = metrics.render();
    for result in TakeoverResult::ALL {
        assert_eq!(value(&text, result), 0, "{}", result.label());
    }
    metrics.count_takeover(TakeoverResult::Completed);
    metrics.count_takeover(TakeoverResult::Completed);
    metrics.count_takeover(TakeoverResult::OldOwnerUnreachable);
    let text = metrics.render();
    assert_eq!(value(&text, TakeoverResult::Completed), 2);
    assert_eq!(value(&text, TakeoverResult::OldOwnerUnreachable), 1);
    assert_eq!(value(&text, TakeoverResult::FromRegistry), 0);
    assert_eq!(value(&text, TakeoverResult::StartedAfresh), 0);
}

#[test]
fn elections_are_the_term_increases_after_the_first_scrape() {
    let metrics = Metrics::new().unwrap();
    let at_term = |term: u64| ClusterHealth {
        term,
        ..ClusterHealth::default()
    };
    let elections = |metrics: &Metrics| line_value(&metrics.render(), "berth_raft_elections_total");
    // A restarted node reads its persisted term: the baseline, not 57 new elections.
    metrics.observe_cluster(&at_term(57));
    assert_eq!(elections(&metrics), 0);
    metrics.observe_cluster(&at_term(57));
    metrics.observe_cluster(&at_term(58));
    assert_eq!(elections(&metrics), 1);
    // Three elections between two scrapes (candidates that did not win) add up.
    metrics.observe_cluster(&at_term(61));
    assert_eq!(elections(&metrics), 4);
    // A stale, lower reading neither lowers the baseline nor counts again.
    metrics.observe_cluster(&at_term(60));
    metrics.observe_cluster(&at_term(61));
    assert_eq!(elections(&metrics), 4);
    assert_eq!(line_value(&metrics.render(), "berth_raft_term"), 61);
}

#[test]
fn each_databases_own_memory_is_a_series_of_its_own() {
    let metrics = Metrics::new().unwrap();
    metrics.observe_store(berth_core::StoreMemory {
        memtables: 64 << 20,
        block_cache: 4096,
        table_readers: 10,
    });
    metrics.observe_cluster(&ClusterHealth {
        memory: berth_core::StoreMemory {
            memtables: 6144,
            block_cache: 0,
            table_readers: 1,
        },
        ..ClusterHealth::default()
    });
    let text = metrics.render();
    let bytes = |store: &str, kind: &str| {
        line_value(
            &text,
            &format!("berth_store_memory_bytes{{kind=\"{kind}\",store=\"{store}\"}}"),
        )
    };
    assert_eq!(bytes("sessions", "memtables"), 64 << 20);
    assert_eq!(bytes("sessions", "block_cache"), 4096);
    assert_eq!(bytes("sessions", "table_readers"), 10);
    assert_eq!(bytes("raft", "memtables"), 6144);
    assert_eq!(bytes("raft", "block_cache"), 0);
    assert_eq!(bytes("raft", "table_readers"), 1);
}
