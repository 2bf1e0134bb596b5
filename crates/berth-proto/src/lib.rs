//! Generated types and gRPC stubs of `proto/berth/cluster/v1/cluster.proto`.

/// `berth.cluster.v1`: Raft RPCs, batched forwarding, session takeover, administration.
#[allow(
    missing_debug_implementations,
    clippy::all,
    clippy::unwrap_used,
    clippy::expect_used
)]
pub mod v1 {
    tonic::include_proto!("berth.cluster.v1");
}
