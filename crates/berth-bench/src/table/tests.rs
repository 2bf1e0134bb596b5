use super::*;

fn report(case: &str, broker: &str, metrics: &[(&str, f64)]) -> Report {
    let mut r = Report {
        case: case.into(),
        broker: broker.into(),
        params: "8 → 1".into(),
        ..Report::default()
    };
    for (name, value) in metrics {
        r.metric(name, *value);
    }
    r
}

/// The table row whose scenario column starts with `title`.
fn row<'a>(table: &'a str, title: &str) -> &'a str {
    let start = format!("| {title}");
    table
        .lines()
        .find(|l| l.starts_with(&start))
        .unwrap_or_else(|| panic!("no row {title:?} in\n{table}"))
}

fn lossless(value: f64) -> Cell {
    Cell {
        value: Some(value),
        lost: None,
    }
}

#[test]
fn median_of_odd_and_even_counts() {
    assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    assert_eq!(median(vec![]), None);
    assert_eq!(median(vec![f64::NAN, 1.0]), Some(1.0));
}

#[test]
fn best_peer_is_the_highest_rate_or_the_lowest_cost_among_lossless_peers() {
    let peers = [
        ("mosquitto", lossless(5.0)),
        ("rumqttd", lossless(9.0)),
        ("absent", Cell::default()),
    ];
    assert_eq!(best_peer(&peers, Unit::PerSecond), Some(("rumqttd", 9.0)));
    assert_eq!(best_peer(&peers, Unit::Micros), Some(("mosquitto", 5.0)));
    assert_eq!(best_peer(&peers, Unit::Bytes), Some(("mosquitto", 5.0)));
    let lossy = Cell {
        value: Some(9.0),
        lost: Some(3.0),
    };
    let peers = [("mosquitto", lossless(5.0)), ("rumqttd", lossy)];
    assert_eq!(best_peer(&peers, Unit::PerSecond), Some(("mosquitto", 5.0)));
    assert_eq!(best_peer(&[("rumqttd", lossy)], Unit::PerSecond), None);
    assert_eq!(best_peer(&[], Unit::PerSecond), None);
}

#[test]
fn ratio_is_to_the_best_peer_and_uses_medians() {
    let mut reports = Vec::new();
    for (broker, values) in [
        ("berth", [300.0, 100.0, 280.0]),
        ("mosquitto", [50.0, 60.0, 55.0]),
        ("rumqttd", [290.0, 310.0, 300.0]),
    ] {
        for v in values {
            reports.push(report(
                "fan-in-qos1",
                broker,
                &[("recv_msg_s", v * 1000.0), ("lost", 0.0)],
            ));
        }
    }
    let table = render(&reports, "berth", &[]);
    assert!(
        table.starts_with(
            "| scenario | Berth | Mosquitto | rumqttd | Berth ÷ best peer | target | met? |\n\
             |---|---:|---:|---:|---:|---|:---:|\n"
        ),
        "{table}"
    );
    assert_eq!(
        row(&table, "fan-in QoS 1"),
        "| fan-in QoS 1, msg/s (8 → 1) | 280,000 | 55,000 | 300,000 | 0.93× rumqttd | ≥ 1× best peer | ❌ |"
    );
    assert!(table.contains("| fan-in-qos1 | berth | 3/3 |"), "{table}");
    assert!(table.contains("| fan-in-qos1 | rumqttd | 3/3 |"), "{table}");
}

#[test]
fn a_peer_that_lost_messages_is_shown_but_not_best() {
    let mut reports = Vec::new();
    for case in ["fan-in-qos1", "fan-in-qos0"] {
        reports.push(report(
            case,
            "berth",
            &[("recv_msg_s", 200_000.0), ("lost", 0.0)],
        ));
        reports.push(report(
            case,
            "mosquitto",
            &[("recv_msg_s", 400_000.0), ("lost", 1500.0)],
        ));
        reports.push(report(
            case,
            "rumqttd",
            &[("recv_msg_s", 150_000.0), ("lost", 0.0)],
        ));
    }
    let peers = ["mosquitto".to_owned(), "rumqttd".to_owned()];
    let table = render(&reports, "berth", &peers);
    assert!(
        row(&table, "fan-in QoS 1").ends_with(
            "| 200,000 | 400,000 (lost 1,500) | 150,000 | 1.33× rumqttd | ≥ 1× best peer | ✅ |"
        ),
        "{table}"
    );
    // QoS 0 promises no delivery: Mosquitto's drops do not disqualify it there.
    assert!(
        row(&table, "fan-in QoS 0")
            .ends_with("| 200,000 | 400,000 | 150,000 | 0.50× Mosquitto | ≥ 1× best peer | ❌ |"),
        "{table}"
    );
}

#[test]
fn lower_is_better_rows_take_the_lowest_peer() {
    let reports = vec![
        report(
            "latency-qos1",
            "berth",
            &[("p99_us", 400.0), ("p50_us", 100.0), ("max_us", 5000.0)],
        ),
        report(
            "latency-qos1",
            "mosquitto",
            &[("p99_us", 550.0), ("p50_us", 150.0), ("max_us", 4000.0)],
        ),
        report(
            "latency-qos1",
            "rumqttd",
            &[("p99_us", 630.0), ("p50_us", 120.0), ("max_us", 3000.0)],
        ),
        report(
            "sessions",
            "berth",
            &[
                ("rss_per_session_b", 3769.0),
                ("rss_per_session_beyond_stores_b", 1600.0),
            ],
        ),
        report("sessions", "mosquitto", &[("rss_per_session_b", 700.0)]),
        report("sessions", "rumqttd", &[("rss_per_session_b", 45_000.0)]),
        report("reconnect-storm", "berth", &[("delivered_all_s", 2.0)]),
        report("reconnect-storm", "mosquitto", &[("delivered_all_s", 2.5)]),
        report("reconnect-storm", "rumqttd", &[("delivered_all_s", 1.5)]),
    ];
    let table = render(&reports, "berth", &[]);
    assert!(
        row(&table, "QoS 1 latency p99").ends_with(
            "| 400 µs | 550 µs | 630 µs | 0.73× Mosquitto | ≤ 500 µs and below every peer | ✅ |"
        ),
        "{table}"
    );
    assert_eq!(
        row(&table, "QoS 1 latency max"),
        "| QoS 1 latency max | 5.00 ms | 4.00 ms | 3.00 ms | 1.67× rumqttd |  |  |",
        "a reference row: a ratio, no target"
    );
    assert!(
        row(&table, "offline sessions, broker RSS per session")
            .ends_with("| 3,769 B | 700 B | 45,000 B | 5.38× Mosquitto |  |  |"),
        "{table}"
    );
    // The target is on the figure without the databases' own memory, which only Berth reports.
    assert!(
        row(&table, "offline sessions, RSS per session beyond")
            .ends_with("| 1,600 B | n/a | n/a | – | ≤ 500 B | ❌ |"),
        "{table}"
    );
    assert!(
        row(&table, "reconnect storm, every backlog delivered after")
            .ends_with("| 2.00 s | 2.50 s | 1.50 s | 1.33× rumqttd | ≤ Mosquitto | ✅ |"),
        "{table}"
    );

    // Under the absolute bound but not below every peer.
    let reports = vec![
        report("latency-qos1", "berth", &[("p99_us", 450.0)]),
        report("latency-qos1", "mosquitto", &[("p99_us", 550.0)]),
        report("latency-qos1", "rumqttd", &[("p99_us", 420.0)]),
    ];
    let table = render(&reports, "berth", &[]);
    assert!(
        row(&table, "QoS 1 latency p99").ends_with(
            "| 450 µs | 550 µs | 420 µs | 1.07× rumqttd | ≤ 500 µs and below every peer | ❌ |"
        ),
        "{table}"
    );
}

#[test]
fn named_peer_targets_compare_with_that_peer() {
    let reports = vec![
        report("offline-queue", "berth", &[("drain_msg_s", 138_000.0)]),
        report("offline-queue", "mosquitto", &[("drain_msg_s", 408_000.0)]),
        report("offline-queue", "rumqttd", &[("drain_msg_s", 820_000.0)]),
        report("conns", "berth", &[("connect_per_s", 20_000.0)]),
        report("conns", "mosquitto", &[("connect_per_s", 18_900.0)]),
        report("conns", "rumqttd", &[("connect_per_s", 900.0)]),
    ];
    let table = render(&reports, "berth", &[]);
    assert!(
        row(&table, "offline-queue drain").ends_with(
            "| 138,000 | 408,000 | 820,000 | 0.17× rumqttd | ≥ 1× Mosquitto (now 0.34×) | ❌ |"
        ),
        "{table}"
    );
    assert!(
        row(&table, "idle connections, connects/s").ends_with(
            "| 20,000 | 18,900 | 900 | 1.06× Mosquitto | ≥ 1× Mosquitto (now 1.06×) | ✅ |"
        ),
        "{table}"
    );
}

#[test]
fn failed_runs_are_listed_and_left_out() {
    let mut bad = report("pairs-qos1", "berth", &[("recv_msg_s", 1.0)]);
    bad.errors.push("publisher 0: no PUBACK within 10s".into());
    let reports = vec![
        bad,
        report("pairs-qos1", "berth", &[("recv_msg_s", 500_000.0)]),
        report("pairs-qos1", "mosquitto", &[("recv_msg_s", 200_000.0)]),
    ];
    let table = render(&reports, "berth", &[]);
    assert!(
        table.starts_with("| scenario | Berth | Mosquitto | Berth ÷ best peer | target | met? |"),
        "{table}"
    );
    assert!(
        row(&table, "pairs QoS 1")
            .ends_with("| 500,000 | 200,000 | 2.50× Mosquitto | ≥ 1× best peer | ✅ |"),
        "{table}"
    );
    assert!(table.contains("| pairs-qos1 | berth | 1/2 |"));
    assert!(
        table.contains("failed run 1: publisher 0: no PUBACK"),
        "{table}"
    );
}

#[test]
fn absent_peers_absolute_targets_and_a_lossy_subject() {
    let reports = vec![
        report(
            "conns",
            "berth",
            &[("rss_per_conn_b", 3000.0), ("connect_per_s", 9000.0)],
        ),
        report(
            "offline-queue",
            "berth",
            &[("lost", 0.0), ("drain_msg_s", 1.0)],
        ),
        report(
            "offline-queue",
            "berth",
            &[("lost", 2.0), ("drain_msg_s", 1.0)],
        ),
    ];
    let peers = ["mosquitto".to_owned(), "rumqttd".to_owned()];
    let table = render(&reports, "berth", &peers);
    assert!(
        row(&table, "idle connections, broker RSS")
            .ends_with("| 3,000 B | n/a | n/a | – | ≤ 1,024 B | ❌ |"),
        "{table}"
    );
    assert!(
        row(&table, "idle connections, connects/s")
            .ends_with("| 9,000 | n/a | n/a | – | ≥ 1× Mosquitto | – |"),
        "{table}"
    );
    assert!(
        row(&table, "offline-queue lost").ends_with("| 2 | n/a | n/a | – | 0 | ❌ |"),
        "the worst run counts: {table}"
    );
    // Berth lost messages in a case that must lose none: marked, and no target of it is met.
    assert!(
        row(&table, "offline-queue drain")
            .ends_with("| 1 (lost 2) | n/a | n/a | – | ≥ 1× Mosquitto | ❌ |"),
        "{table}"
    );
    assert!(
        !table.contains("| offline sessions"),
        "absent cases have no rows"
    );
}

#[test]
fn tls_cases_have_their_own_rows_without_targets() {
    let reports = vec![
        report(
            "conns-tls",
            "berth",
            &[("connect_per_s", 3000.0), ("rss_per_conn_b", 9000.0)],
        ),
        report(
            "conns-tls",
            "mosquitto",
            &[("connect_per_s", 2000.0), ("rss_per_conn_b", 6000.0)],
        ),
        report(
            "pairs-qos1-tls",
            "berth",
            &[("recv_msg_s", 50_000.0), ("lost", 0.0)],
        ),
    ];
    let peers = ["mosquitto".to_owned(), "rumqttd".to_owned()];
    let table = render(&reports, "berth", &peers);
    assert!(
        row(&table, "TLS connections, handshakes/s")
            .ends_with("| 3,000 | 2,000 | n/a | 1.50× Mosquitto |  |  |"),
        "{table}"
    );
    assert!(
        row(&table, "TLS connections, broker RSS per idle connection")
            .ends_with("| 9,000 B | 6,000 B | n/a | 1.50× Mosquitto |  |  |"),
        "{table}"
    );
    assert!(
        row(&table, "pairs QoS 1 over TLS, msg/s").ends_with("| 50,000 | n/a | n/a | – |  |  |"),
        "a broker without TLS runs is n/a: {table}"
    );
    assert!(
        !table.contains("| idle connections, connects/s"),
        "the plain conns rows are not the TLS ones: {table}"
    );
}

#[test]
fn unknown_cases_get_a_throughput_row() {
    let reports = vec![report("fan-out-qos0", "berth", &[("recv_msg_s", 10.0)])];
    let table = render(&reports, "berth", &[]);
    assert!(
        table.starts_with("| scenario | Berth | Berth ÷ best peer | target | met? |"),
        "{table}"
    );
    assert!(
        table.contains("| fan-out-qos0, msg/s received (8 → 1) | 10 | – |"),
        "{table}"
    );
}

#[test]
fn peers_default_to_every_other_label_sorted() {
    let reports = vec![
        report("conns", "rumqttd", &[]),
        report("conns", "berth", &[]),
        report("conns", "mosquitto", &[]),
        report("pairs-qos1", "rumqttd", &[]),
    ];
    assert_eq!(other_labels(&reports, "berth"), ["mosquitto", "rumqttd"]);
}
