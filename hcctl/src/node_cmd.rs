//! `hcctl node`: cluster membership (list members, add a node, decommission one).
//!
//! Decommissioning only *starts* a node's departure: the placement driver moves its replicas to
//! other nodes, then removes it. By default the command waits for that, polling the routing
//! table and printing how many replicas the node still hosts whenever the number drops.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Subcommand;
use hypercache_client::{Client, Error, RoutingTable};
use hypercache_proto::v1 as pb;
use serde_json::json;
use tokio::time::Instant;

use crate::exit;
use crate::failure::Failure;
use crate::output::{note, Out};

/// Pause between two looks at the routing table while waiting for a node to leave.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the cluster's members (id, name, endpoint, voter or learner, the data-dir
    /// incarnation membership records, "draining" for nodes being decommissioned, "down" for
    /// nodes whose replicas are being re-created elsewhere, "rejoining" for a node that came back
    /// on an empty data dir and is being replaced under its new incarnation), as the first
    /// endpoint that answers sees them.
    List,
    /// Add the node NAME (a DNS name, `host` or `host:port`; the port defaults to 7000, the
    /// nodes' gRPC port in the Kubernetes manifests) to the cluster; the placement driver then
    /// moves replicas onto it.
    Add {
        #[arg(value_name = "NAME")]
        endpoint: String,
    },
    /// Remove NAME from the cluster for good (scale-down): its replicas move to other nodes
    /// first, then it leaves; waits for that unless --no-wait. Run it before the node is stopped
    /// for the last time. The last voter, and a node holding the last replica of a shard, are
    /// refused. The removed node keeps its data but never rejoins by itself; wipe its data dir
    /// (delete the PVC) before reusing the name.
    Decommission {
        name: String,
        /// Return once the decommission has started instead of waiting for the node to leave.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for the node to leave, in seconds (exit 5 when it has not).
        #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
        wait_timeout_s: u64,
    },
}

/// What the placement says about nodes, beyond membership.
#[derive(Debug, Default)]
struct Marks {
    draining: Vec<u64>,
    down: Vec<u64>,
    /// Nodes that now run another data-dir incarnation than membership records: node -> the
    /// incarnation the node itself reports.
    rejoining: BTreeMap<u64, u64>,
}

fn member_line(m: &pb::Member, marks: &Marks) -> String {
    let mut line = format!(
        "{}\t{}\t{}\t{}\t{:016x}",
        m.node_id,
        m.name,
        m.endpoint,
        if m.voter { "voter" } else { "learner" },
        m.incarnation
    );
    if marks.draining.contains(&m.node_id) {
        line.push_str("\tdraining");
    }
    if marks.down.contains(&m.node_id) {
        line.push_str("\tdown");
    }
    if let Some(now) = marks.rejoining.get(&m.node_id) {
        line.push_str(&format!("\trejoining: data dir recreated as incarnation {now:016x}, being replaced"));
    }
    line
}

fn member_json(m: &pb::Member, marks: &Marks) -> serde_json::Value {
    json!({
        "node_id": m.node_id, "name": m.name, "endpoint": m.endpoint, "voter": m.voter,
        "incarnation": format!("{:016x}", m.incarnation),
        "draining": marks.draining.contains(&m.node_id), "down": marks.down.contains(&m.node_id),
        "rejoining_as": marks.rejoining.get(&m.node_id).map(|i| format!("{i:016x}")),
    })
}

/// Members whose node reports another incarnation than membership records (asked directly;
/// a node that does not answer is left out).
async fn rejoining(client: &Client, members: &[pb::Member]) -> BTreeMap<u64, u64> {
    let asks = members.iter().map(|m| async move {
        let now = client.status(&m.endpoint).await.ok()?;
        (now.node_id == m.node_id && now.incarnation != 0 && now.incarnation != m.incarnation)
            .then_some((m.node_id, now.incarnation))
    });
    futures::future::join_all(asks).await.into_iter().flatten().collect()
}

fn print_members(
    out: &mut Out,
    json: bool,
    members: &[pb::Member],
    marks: &Marks,
    extra: serde_json::Value,
) -> Result<(), Failure> {
    if json {
        let members: Vec<_> = members.iter().map(|m| member_json(m, marks)).collect();
        let mut value = json!({ "members": members });
        if let (Some(obj), Some(more)) = (value.as_object_mut(), extra.as_object()) {
            obj.extend(more.clone());
        }
        out.update(true, "", &value)?;
    } else {
        for m in members {
            out.line(&member_line(m, marks))?;
        }
        out.flush()?;
    }
    Ok(())
}

/// The nodes being decommissioned and those marked down, as the routing table says (none for
/// a cluster that predates sharding, or when no table can be had).
async fn marks(client: &Client) -> Marks {
    match client.routing().await {
        Ok(table) => Marks {
            draining: table.nodes.values().filter(|n| n.draining).map(|n| n.node_id).collect(),
            down: table.nodes.values().filter(|n| n.down).map(|n| n.node_id).collect(),
            rejoining: BTreeMap::new(),
        },
        Err(_) => Marks::default(),
    }
}

/// The replicas `node_id` still hosts under `table`; `None` once it has left the table.
pub(super) fn replicas_left(table: &RoutingTable, node_id: u64) -> Option<usize> {
    table.node(node_id)?;
    Some(table.shards.iter().filter(|s| s.replicas.contains(&node_id)).count())
}

async fn wait_until_gone(
    client: &Client,
    out: &mut Out,
    json: bool,
    name: &str,
    node_id: u64,
    mut shown: usize,
    timeout: Duration,
) -> Result<u8, Failure> {
    let deadline = Instant::now() + timeout;
    loop {
        if Instant::now() >= deadline {
            return Err(Failure::Client(Error::DeadlineExceeded {
                message: format!(
                    "{name} still hosts {shown} replica(s) after {timeout:?}; the placement driver keeps moving \
                     them (see `hcctl shards`; run again to keep waiting)"
                ),
            }));
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now()))).await;
        let table = match client.routing_fresh().await {
            Ok(table) => table,
            Err(e) => {
                note(&format!("routing table: {e}; still waiting"));
                continue;
            }
        };
        match replicas_left(&table, node_id) {
            None => {
                let value = json!({"decommissioned": name, "node_id": node_id, "replicas_left": 0, "removed": true});
                out.update(json, &format!("{name} has left the cluster"), &value)?;
                return Ok(exit::OK);
            }
            Some(left) if left != shown => {
                shown = left;
                let value =
                    json!({"decommissioning": name, "node_id": node_id, "replicas_left": left, "removed": false});
                out.update(json, &format!("{name}: {left} replica(s) left to move"), &value)?;
            }
            Some(_) => {}
        }
    }
}

pub(super) async fn run(client: &Client, out: &mut Out, json: bool, command: NodeCommand) -> Result<u8, Failure> {
    match command {
        NodeCommand::List => {
            let rows = client.cluster_status().await;
            let mut last_error = None;
            for (_, answer) in rows {
                match answer {
                    Ok(status) => {
                        let mut marks = marks(client).await;
                        marks.rejoining = rejoining(client, &status.members).await;
                        print_members(out, json, &status.members, &marks, json!({"from": status.name}))?;
                        return Ok(exit::OK);
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            match last_error {
                Some(e) => Err(Failure::Client(e)),
                None => Ok(exit::OK),
            }
        }
        NodeCommand::Add { endpoint } => {
            let endpoint = with_default_port(&endpoint);
            let added = client.add_node(&endpoint).await?;
            if !json {
                let what = if added.already_member { "already a member" } else { "added" };
                out.line(&format!("{} (node {}) at {endpoint}: {what}; members now:", added.name, added.node_id))?;
            }
            let extra = json!({
                "added": added.name, "node_id": added.node_id, "already_member": added.already_member,
            });
            print_members(out, json, &added.members, &Marks::default(), extra)?;
            Ok(exit::OK)
        }
        NodeCommand::Decommission { name, no_wait, wait_timeout_s } => {
            let started = client.decommission(&name).await?;
            let (id, left) = (started.node_id, started.replicas_left);
            if started.removed || no_wait {
                if !json {
                    let state = if started.removed { "decommissioned" } else { "decommissioning" };
                    out.line(&format!("{state} {name} (node {id}), {left} replica(s) left to move; members now:"))?;
                }
                let extra = json!({
                    "decommissioned": name, "node_id": id, "replicas_left": left, "removed": started.removed,
                });
                print_members(out, json, &started.members, &Marks::default(), extra)?;
                return Ok(exit::OK);
            }
            let value = json!({"decommissioning": name, "node_id": id, "replicas_left": left, "removed": false});
            out.update(json, &format!("decommissioning {name} (node {id}): {left} replica(s) left to move"), &value)?;
            let shown = usize::try_from(left).unwrap_or(usize::MAX);
            wait_until_gone(client, out, json, &name, id, shown, Duration::from_secs(wait_timeout_s)).await
        }
    }
}

/// `host` -> `host:7000`; `host:port` and `[v6]:port` stay as they are.
fn with_default_port(name: &str) -> String {
    let has_port = name.rsplit_once(':').is_some_and(|(host, port)| {
        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && (!host.contains(':') || host.ends_with(']'))
    });
    if has_port {
        name.to_string()
    } else {
        format!("{name}:7000")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_left_counts_until_the_node_leaves_the_table() {
        let mut response = pb::RoutingResponse {
            version: 2,
            shard_count: 3,
            nodes: (1..=3).map(|id| pb::Member { node_id: id, name: format!("n{id}"), ..Default::default() }).collect(),
            shards: vec![
                pb::ShardRoute { shard_id: 0, replicas: vec![1, 3], leader_id: 1 },
                pb::ShardRoute { shard_id: 1, replicas: vec![2, 3], leader_id: 0 },
                pb::ShardRoute { shard_id: 2, replicas: vec![1, 2], leader_id: 0 },
            ],
            draining: vec![3],
            ..Default::default()
        };
        let table = RoutingTable::from_wire(response.clone()).expect("ready");
        assert_eq!(replicas_left(&table, 3), Some(2));
        let marks = Marks { draining: vec![3], down: vec![2], rejoining: BTreeMap::from([(1, 0xab)]) };
        assert!(member_line(&response.nodes[2], &marks).ends_with("\tdraining"));
        assert_eq!(member_line(&response.nodes[1], &marks), "2\tn2\t\tlearner\t0000000000000000\tdown");
        assert_eq!(member_json(&response.nodes[1], &marks)["down"], true);
        assert!(member_line(&response.nodes[0], &marks)
            .ends_with("\trejoining: data dir recreated as incarnation 00000000000000ab, being replaced"));
        assert_eq!(member_json(&response.nodes[0], &marks)["rejoining_as"], "00000000000000ab");
        response.nodes.pop();
        let table = RoutingTable::from_wire(response).expect("ready");
        assert_eq!(replicas_left(&table, 3), None, "gone from the table: it has left");
    }

    #[test]
    fn node_add_defaults_the_port() {
        assert_eq!(with_default_port("hypercache-5"), "hypercache-5:7000");
        assert_eq!(with_default_port("hypercache-5.hypercache:7010"), "hypercache-5.hypercache:7010");
    }
}
