//! `berth cluster status|add|remove`: membership administration through the Cluster gRPC
//! service of any member. Changes are sent to the leader (found through the member asked).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use berth_cluster::pb;
use berth_cluster::pb::cluster_client::ClusterClient;
use tonic::transport::Channel;

use crate::cli::ClusterCommand;

const RPC_TIMEOUT: Duration = Duration::from_secs(60);

async fn client(addr: &str) -> anyhow::Result<ClusterClient<Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .with_context(|| format!("{addr} is not a valid address"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(RPC_TIMEOUT)
        .connect()
        .await
        .with_context(|| format!("cannot reach the cluster listener at {addr}"))?;
    Ok(ClusterClient::new(channel))
}

async fn status(addr: &str) -> anyhow::Result<pb::StatusReply> {
    Ok(client(addr)
        .await?
        .status(pb::StatusRequest {})
        .await
        .map_err(|s| anyhow!("status from {addr}: {}", s.message()))?
        .into_inner())
}

/// The leader's cluster address, as the member at `addr` knows it.
async fn leader(addr: &str) -> anyhow::Result<String> {
    let status = status(addr).await?;
    let leader = status.leader_id.ok_or_else(|| {
        anyhow!(
            "node {} knows no leader (is a majority up?)",
            status.node_id
        )
    })?;
    status
        .membership
        .unwrap_or_default()
        .nodes
        .into_iter()
        .find(|n| n.id == leader)
        .map(|n| n.addr)
        .ok_or_else(|| anyhow!("the leader {leader} has no address in the membership"))
}

fn voters(membership: &pb::Membership) -> BTreeSet<u64> {
    membership
        .configs
        .last()
        .map(|c| c.ids.iter().copied().collect())
        .unwrap_or_default()
}

fn describe(status: &pb::StatusReply) -> String {
    let membership = status.membership.clone().unwrap_or_default();
    let voters = voters(&membership);
    let mut out = format!(
        "node {} ({}), term {}, leader {}\n",
        status.node_id,
        status.state,
        status.term,
        status
            .leader_id
            .map_or_else(|| "unknown".to_owned(), |l| l.to_string())
    );
    for node in &membership.nodes {
        let role = if voters.contains(&node.id) {
            "voter"
        } else {
            "learner"
        };
        out.push_str(&format!("  {} {} {}\n", node.id, node.addr, role));
    }
    out
}

pub async fn run(command: &ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status { at } => {
            print!("{}", describe(&status(at).await?));
        }
        ClusterCommand::Add { at, node, addr } => {
            let leader = leader(at).await?;
            let mut rpc = client(&leader).await?;
            let reply = rpc
                .add_learner(pb::AddLearnerRequest {
                    node: Some(pb::Node {
                        id: *node,
                        addr: addr.clone(),
                    }),
                })
                .await
                .map_err(|s| anyhow!("adding node {node} as a learner: {}", s.message()))?
                .into_inner();
            let mut voters = voters(&reply.membership.unwrap_or_default());
            voters.insert(*node);
            rpc.change_membership(pb::ChangeMembershipRequest {
                voters: voters.into_iter().collect(),
            })
            .await
            .map_err(|s| anyhow!("making node {node} a voter: {}", s.message()))?;
            print!("{}", describe(&status(&leader).await?));
        }
        ClusterCommand::Remove { at, node } => {
            let leader = leader(at).await?;
            let current = status(&leader).await?;
            let mut voters = voters(&current.membership.unwrap_or_default());
            if !voters.remove(node) {
                bail!("node {node} is not a voter");
            }
            client(&leader)
                .await?
                .change_membership(pb::ChangeMembershipRequest {
                    voters: voters.into_iter().collect(),
                })
                .await
                .map_err(|s| anyhow!("removing node {node}: {}", s.message()))?;
            let after = if current.leader_id == Some(*node) {
                at.clone()
            } else {
                leader
            };
            print!("{}", describe(&status(&after).await?));
        }
    }
    Ok(())
}
