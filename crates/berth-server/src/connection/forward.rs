//! Handing what a connection decoded to the broker thread, in the order read: each packet as a
//! command of its own, except consecutive PUBACKs read together, which go as one (`AckRun`);
//! on a cluster node, packets whose change must commit first (SUBSCRIBE, UNSUBSCRIBE, a
//! retained PUBLISH) wait for Raft.

use std::future::Future;
use std::sync::Arc;

use berth_codec::{DecodeError, DecodeOptions, Packet, PacketType, decode};
use berth_core::ConnId;
use bytes::BytesMut;
use tokio::sync::mpsc::Sender;

use super::to_broker;
use crate::ack_run::AckRun;
use crate::cluster_port::{ClusterPort, Grant};
use crate::mailbox::Outbox;
use crate::runtime::{Command, Outbound};

/// A cluster connection's way to replicate packets and answer those that did not commit.
pub(super) struct Replicated {
    pub(super) port: Arc<dyn ClusterPort>,
    pub(super) grant: Grant,
    pub(super) replies: Outbox,
}

/// Hands every complete packet in `read_buf` to the broker. A malformed one ends it with the
/// error, after everything read before it was handed over. The connection's task runs
/// `forward_ready` itself and boxes `finish` only when a wait is needed (see `serve.rs`).
#[cfg(test)]
async fn forward_packets(
    conn: ConnId,
    read_buf: &mut BytesMut,
    opts: DecodeOptions,
    commands: &Sender<Command>,
    replicated: Option<&Replicated>,
    read: std::time::Instant,
) -> Result<(), DecodeError> {
    let to = Forward::new(conn, opts, commands, replicated, read);
    let step = forward_ready(to, read_buf);
    finish(to, read_buf, step).await
}

/// What is left of handing a read over, boxed: it ends like `finish`.
pub(super) type Rest<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<(), DecodeError>> + Send + 'a>>;

/// What the connection's task runs after a read: hands the complete packets in `read_buf` to
/// the broker as far as that needs no waiting. What is left, where something has to be waited
/// for (or a malformed packet ends it after a wait), is returned boxed: the task's future keeps
/// no room for it while idle.
pub(super) fn forward_now<'a>(to: Forward<'a>, read_buf: &'a mut BytesMut) -> Option<Rest<'a>> {
    match forward_ready(to, read_buf) {
        Step::Empty | Step::BrokerGone => None,
        step => Some(Box::pin(finish(to, read_buf, step))),
    }
}

/// Goes on from `step`, what `forward_ready` returned: waits where it has to, then hands over
/// the rest of `read_buf`, until nothing complete is left (`Ok`) or a packet is malformed.
async fn finish<'a>(
    to: Forward<'a>,
    read_buf: &mut BytesMut,
    mut step: Step<'a>,
) -> Result<(), DecodeError> {
    loop {
        match step {
            Step::Sent => {}
            Step::Wait(wait) => {
                if !wait.await {
                    return Ok(());
                }
            }
            Step::Empty | Step::BrokerGone => return Ok(()),
            Step::Malformed(wait, error) => {
                if let Some(wait) = wait {
                    wait.await;
                }
                return Err(error);
            }
        }
        step = forward_ready(to, read_buf);
    }
}

/// Where a connection's decoded packets go, and what goes along with each.
#[derive(Clone, Copy)]
pub(super) struct Forward<'a> {
    conn: ConnId,
    /// Copied (8 bytes, as a reference would be): the connection keeps none of its own.
    opts: DecodeOptions,
    commands: &'a Sender<Command>,
    /// On a cluster node: how packets that change the cluster are committed first.
    replicated: Option<&'a Replicated>,
    /// When the packets were read.
    read: std::time::Instant,
}

impl<'a> Forward<'a> {
    pub(super) fn new(
        conn: ConnId,
        opts: DecodeOptions,
        commands: &'a Sender<Command>,
        replicated: Option<&'a Replicated>,
        read: std::time::Instant,
    ) -> Forward<'a> {
        Forward {
            conn,
            opts,
            commands,
            replicated,
            read,
        }
    }
}

type Wait<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>>;

/// What handing buffered packets to the broker came to.
enum Step<'a> {
    /// Handed over, or added to the run of PUBACKs that goes next.
    Sent,
    /// It needs waiting for (a Raft commit, or room in the broker's channel); the packet is
    /// inside this boxed future. False once the broker is gone.
    Wait(Wait<'a>),
    /// No complete packet is buffered.
    Empty,
    BrokerGone,
    /// A malformed packet, after the PUBACKs read before it (handed over by the wait, if any).
    Malformed(Option<Wait<'a>>, DecodeError),
}

/// Hands buffered packets over for as long as no wait is needed: the run of PUBACKs lives only
/// here, so that it is not part of the connection task's future (every idle connection holds
/// that). A run is never pending when a wait is returned: each wait hands over either the run
/// itself or a packet that came after the run had been handed over.
fn forward_ready<'a>(to: Forward<'a>, read_buf: &mut BytesMut) -> Step<'a> {
    let Forward { conn, commands, .. } = to;
    let mut acks = AckRun::default();
    loop {
        match next_packet(to, read_buf, &mut acks) {
            Ok(Step::Sent) => {}
            Ok(Step::Empty) if !acks.is_empty() => {
                // A PUBACK cut off at the end of the read: the run goes now.
                return match hand_over(commands, Command::PubAcks { conn, acks }) {
                    Step::Sent => Step::Empty,
                    step => step,
                };
            }
            Ok(step) => {
                debug_assert!(acks.is_empty(), "no run is pending at a wait");
                return step;
            }
            Err(error) if acks.is_empty() => return Step::Malformed(None, error),
            Err(error) => {
                let wait = to_broker(commands, move || Command::PubAcks { conn, acks });
                return Step::Malformed(Some(Box::pin(wait)), error);
            }
        }
    }
}

/// Decodes the next packet and hands it to the broker without waiting when it can. Not async
/// on purpose: a decoded packet is never held across an await by the connection's task (it
/// would make every connection's task that much larger); the rare waits take it along in a box.
///
/// A PUBACK joins `acks`, which goes to the broker when it is full, before any other packet
/// (what comes next is looked at before it is decoded), and at the end of what was read.
fn next_packet<'a>(
    to: Forward<'a>,
    read_buf: &mut BytesMut,
    acks: &mut AckRun,
) -> Result<Step<'a>, DecodeError> {
    let Forward {
        conn,
        opts,
        commands,
        replicated,
        read,
    } = to;
    let next_is_puback = read_buf
        .first()
        .is_some_and(|&byte| byte >> 4 == PacketType::PubAck as u8);
    if !acks.is_empty() && !next_is_puback {
        let acks = std::mem::take(acks);
        return Ok(hand_over(commands, Command::PubAcks { conn, acks }));
    }
    let Some(packet) = decode(read_buf, &opts)? else {
        return Ok(Step::Empty);
    };
    if let Packet::PubAck(ack) = &packet {
        acks.push(ack.packet_id);
        if !acks.is_full() {
            return Ok(Step::Sent);
        }
        let acks = std::mem::take(acks);
        return Ok(hand_over(commands, Command::PubAcks { conn, acks }));
    }
    if let Some(r) = replicated
        && crate::cluster_port::needs_commit(&packet)
    {
        return Ok(Step::Wait(Box::pin(async move {
            match replicate_or_refuse(r, packet).await {
                Some(packet) => {
                    to_broker(commands, move || Command::Packet { conn, packet, read }).await
                }
                // Refused and answered here: the connection goes on.
                None => true,
            }
        })));
    }
    Ok(hand_over(commands, Command::Packet { conn, packet, read }))
}

/// Sends `command` if the broker's channel has room; otherwise a wait for room (TCP
/// backpressure on this client).
fn hand_over(commands: &Sender<Command>, command: Command) -> Step<'_> {
    match commands.try_reserve() {
        Ok(permit) => {
            permit.send(command);
            Step::Sent
        }
        Err(tokio::sync::mpsc::error::TrySendError::Full(())) => {
            Step::Wait(Box::pin(to_broker(commands, move || command)))
        }
        Err(tokio::sync::mpsc::error::TrySendError::Closed(())) => Step::BrokerGone,
    }
}

/// Commits what `packet` changes in the cluster (SUBSCRIBE, UNSUBSCRIBE, retained PUBLISH);
/// when that fails, answers the client here (e.g. SUBACK 0x80) and returns `None`.
async fn replicate_or_refuse(r: &Replicated, packet: Packet) -> Option<Packet> {
    match r
        .port
        .commit(&r.grant, &packet, crate::runtime::now())
        .await
    {
        Ok(()) => Some(packet),
        Err(reply) => {
            let _ = r.replies.send(Outbound::Packet(reply));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use berth_codec::{PacketId, ProtocolVersion, PubAck, PubComp, encode};
    use tokio::sync::mpsc;

    use super::*;

    const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

    fn puback(id: u16) -> Packet {
        Packet::PubAck(PubAck::new(PacketId::new(id).expect("non-zero")))
    }

    fn bytes_of(packets: &[Packet]) -> BytesMut {
        let mut buf = BytesMut::new();
        for packet in packets {
            encode(packet, V311, &mut buf).expect("encodes");
        }
        buf
    }

    /// What the broker was handed, as PUBACK runs (their ids) and other packets (their type).
    #[derive(Debug, PartialEq)]
    enum Handed {
        Acks(Vec<u16>),
        Other(PacketType),
    }

    /// Forwards `buf` through a channel with room for one command (so that hand-overs also
    /// wait for room), collecting what arrives.
    async fn forward(mut buf: BytesMut) -> (Result<(), DecodeError>, Vec<Handed>, BytesMut) {
        let (commands, mut rx) = mpsc::channel(1);
        let collect = tokio::spawn(async move {
            let mut handed = Vec::new();
            while let Some(command) = rx.recv().await {
                handed.push(match command {
                    Command::PubAcks { acks, .. } => {
                        Handed::Acks(acks.ids().map(PacketId::get).collect())
                    }
                    Command::Packet { packet, .. } => Handed::Other(packet.packet_type()),
                    _ => panic!("only packets are forwarded"),
                });
            }
            handed
        });
        let opts = DecodeOptions::new(V311);
        let read = std::time::Instant::now();
        let outcome = forward_packets(ConnId(7), &mut buf, opts, &commands, None, read).await;
        drop(commands);
        let handed = tokio::time::timeout(std::time::Duration::from_secs(5), collect)
            .await
            .expect("the collector ends once the sender is gone")
            .expect("the collector does not panic");
        (outcome, handed, buf)
    }

    #[tokio::test]
    async fn pubacks_read_together_go_as_runs_in_the_order_read() {
        let mut packets = vec![puback(1), puback(2), Packet::PingReq, puback(3)];
        packets.push(Packet::PubComp(PubComp::new(PacketId::new(9).unwrap())));
        packets.extend((10..10 + AckRun::CAPACITY as u16 + 2).map(puback));
        let (outcome, handed, rest) = forward(bytes_of(&packets)).await;
        assert!(outcome.is_ok());
        assert!(rest.is_empty());
        let full: Vec<u16> = (10..10 + AckRun::CAPACITY as u16).collect();
        let last = AckRun::CAPACITY as u16 + 10;
        assert_eq!(
            handed,
            [
                Handed::Acks(vec![1, 2]),
                Handed::Other(PacketType::PingReq),
                Handed::Acks(vec![3]),
                Handed::Other(PacketType::PubComp),
                Handed::Acks(full),
                Handed::Acks(vec![last, last + 1]),
            ]
        );
    }

    #[tokio::test]
    async fn pubacks_before_another_malformed_packet_are_handed_over_before_the_error() {
        let mut buf = bytes_of(&[puback(4), puback(5)]);
        // Packet type 0 is reserved: malformed.
        buf.extend_from_slice(&[0x00, 0x00]);
        let (outcome, handed, _) = forward(buf).await;
        assert!(outcome.is_err());
        assert_eq!(handed, [Handed::Acks(vec![4, 5])]);
    }

    #[tokio::test]
    async fn pubacks_before_a_malformed_puback_are_handed_over_before_the_error() {
        // The PINGREQ fills the one-command channel, so the run's hand-over has to wait.
        let mut buf = bytes_of(&[Packet::PingReq, puback(4), puback(5)]);
        // A PUBACK's type with flags that must be 0: malformed, found only when decoded.
        buf.extend_from_slice(&[0x42, 0x02, 0x00, 0x06]);
        let (outcome, handed, _) = forward(buf).await;
        assert!(outcome.is_err());
        assert_eq!(
            handed,
            [Handed::Other(PacketType::PingReq), Handed::Acks(vec![4, 5])]
        );
    }

    #[tokio::test]
    async fn a_puback_cut_off_at_the_end_of_a_read_waits_for_the_rest() {
        let mut buf = bytes_of(&[puback(6), puback(7)]);
        buf.truncate(buf.len() - 1);
        let (outcome, handed, rest) = forward(buf).await;
        assert!(outcome.is_ok());
        assert_eq!(handed, [Handed::Acks(vec![6])]);
        assert_eq!(rest.len(), 3, "the partial PUBACK stays buffered");
    }
}
