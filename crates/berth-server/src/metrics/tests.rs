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
