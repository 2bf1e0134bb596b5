//! Identifiers with meaning: who a session belongs to, which connection, which ownership epoch.

use std::fmt;

use berth_codec::MqttString;

/// An MQTT client identifier: the key of a session.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(MqttString);

impl ClientId {
    /// Detached from the packet it came in (a session keeps its id for as long as it lives).
    pub fn new(id: MqttString) -> ClientId {
        ClientId(id.detached())
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn as_mqtt_str(&self) -> &MqttString {
        &self.0
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cluster member (its Raft node id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// One network connection, numbered by the server; never reused within a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Session ownership generation: bumped on every (re)connect so that a stale owner is fenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Epoch(pub u64);

impl Epoch {
    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

/// Position of a message in a session's persistent queue; strictly increasing per session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct QueueSeq(pub u64);

impl QueueSeq {
    pub fn next(self) -> QueueSeq {
        QueueSeq(self.0 + 1)
    }
}

/// A published QoS 2 message's identity across the cluster: the node that first received it
/// and a number that node never gives twice. Every copy of the message (a retried or re-routed
/// forward, an older copy of a session merged or recovered later) carries it, so that a
/// session takes each message once (`Session::seen`) whichever way it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId {
    pub origin: NodeId,
    pub seq: u64,
}
