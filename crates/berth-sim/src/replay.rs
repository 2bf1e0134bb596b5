//! How a node's broker calls are made replayable and readable: its actions in one canonical
//! order, and a one-line description of each broker event for traces.

use berth_core::{Action, Event};

use crate::wire::replicate_client;

/// The broker's actions in a canonical order: per destination (connection, node, token,
/// client) their own order is kept; across destinations the order may follow the broker's
/// internal hash maps, so it is fixed here for the run to replay exactly.
pub(crate) fn canonical(actions: &mut [Action]) {
    pub(crate) fn key(action: &Action) -> (u8, u64, String) {
        match action {
            Action::Send { conn, .. } | Action::Close { conn } => (0, conn.0, String::new()),
            Action::Forward { node, .. }
            | Action::ForwardResume { node }
            | Action::ProbeNode { node } => (1, node.0, String::new()),
            Action::ForwardAccepted { token, .. } => (2, *token, String::new()),
            Action::Replicate(change) => (3, 0, replicate_client(change).to_string()),
            Action::Adopt { client, .. } => (4, 0, client.as_str().to_string()),
        }
    }
    actions.sort_by_key(key);
    for action in actions.iter_mut() {
        if let Action::Forward { clients, .. } = action {
            clients.sort();
        }
        if let Action::ForwardAccepted { not_owned, .. } = action {
            not_owned.sort();
        }
    }
}

/// A short description of a broker event, for traces (client packets are traced elsewhere).
pub(crate) fn describe_event(event: &Event) -> String {
    use berth_core::ClusterEvent;
    match event {
        Event::Cluster(ClusterEvent::Owner {
            client,
            owner,
            epoch,
            kept,
            ..
        }) => format!("Owner {client} n{owner} e{} kept={kept}", epoch.0),
        Event::Cluster(ClusterEvent::Reset { sessions }) => {
            format!("Reset ({} sessions)", sessions.len())
        }
        Event::Cluster(ClusterEvent::Dropped { client, epoch }) => {
            format!("Dropped {client} e{}", epoch.0)
        }
        Event::Cluster(ClusterEvent::CaughtUp) => "CaughtUp".into(),
        Event::Cluster(_) => String::new(),
        Event::Forwarded { token, messages } => {
            let items: Vec<String> = messages
                .iter()
                .map(|m| {
                    let clients: Vec<&str> = m.clients.iter().map(|c| c.as_str()).collect();
                    // A QoS 2 message's cluster identity as origin.seq, to follow its copies.
                    let id = m
                        .message
                        .id
                        .map(|id| format!(" #{}.{}", id.origin.0, id.seq))
                        .unwrap_or_default();
                    format!(
                        "{}{id}->{}",
                        String::from_utf8_lossy(&m.message.payload),
                        clients.join("+")
                    )
                })
                .collect();
            format!("Forwarded t{token} [{}]", items.join(", "))
        }
        Event::ForwardDone {
            token, delivered, ..
        } => {
            format!("ForwardDone t{token} delivered={delivered}")
        }
        Event::ImportBegin { client } => format!("ImportBegin {client}"),
        Event::ImportState { client, export } => format!(
            "ImportState {client} e{} ({} subscriptions, in flight [{}], {} taken, QoS 2 ids \
             {:?}{}{}{})",
            export.record.epoch.0,
            export.subscriptions.len(),
            window(&export.inflight),
            export.seen.len(),
            export.incoming_qos2,
            if export.record.qos2_state_elsewhere {
                ", without an older copy's QoS 2 state"
            } else {
                ""
            },
            if export.record.incoming_qos2_elsewhere {
                ", without an older copy's incoming QoS 2 ids"
            } else {
                ""
            },
            doubt(&export.record.qos2_doubt),
        ),
        Event::ImportQueue { client, page } => format!("ImportQueue {client} ({})", page.len()),
        Event::ImportComplete { client, epoch } => {
            format!("ImportComplete {client} e{}", epoch.0)
        }
        Event::ImportDone { client } => format!("ImportDone {client}"),
        Event::ImportLate {
            client,
            epoch,
            holder,
            page,
            export,
        } => format!(
            "ImportLate {client} e{} from n{} (in flight [{}], {} queued, QoS 2 ids {:?}{}{})",
            epoch.0,
            holder.0,
            window(&export.inflight),
            page.len(),
            export.incoming_qos2,
            if export.record.qos2_state_elsewhere {
                ", itself without an older copy's QoS 2 state"
            } else {
                ""
            },
            doubt(&export.record.qos2_doubt),
        ),
        Event::Release { client, epoch, .. } => format!("Release {client} e{}", epoch.0),
        _ => String::new(),
    }
}

/// An exported in-flight window: each packet id with its message (`rel`: PUBREL sent).
fn window(inflight: &[(berth_codec::PacketId, berth_core::InflightRecord)]) -> String {
    let entries: Vec<String> = inflight
        .iter()
        .map(|(id, record)| match record {
            berth_core::InflightRecord::Sent { delivery, .. } => format!(
                "{}={}",
                id.get(),
                String::from_utf8_lossy(&delivery.message.payload)
            ),
            berth_core::InflightRecord::Released { .. } => format!("{}=rel", id.get()),
        })
        .collect();
    entries.join(" ")
}

/// Which copy an imported state lacks and what the client released meanwhile, if known.
fn doubt(doubt: &berth_core::Qos2Doubt) -> String {
    let mut text = String::new();
    if let Some(copy) = doubt.lacking {
        text += &format!(" (that of n{} at e{})", copy.node.0, copy.epoch.0);
    }
    if !doubt.earlier.is_empty() {
        let copies: Vec<String> = doubt
            .earlier
            .iter()
            .map(|copy| format!("n{}@e{}", copy.node.0, copy.epoch.0))
            .collect();
        text += &format!(", before it {}", copies.join(" "));
    }
    if !doubt.released.is_empty() {
        let ids: Vec<u16> = doubt.released.iter().map(|id| id.get()).collect();
        text += &format!(", released since {ids:?}");
    }
    text
}
