//! `hcctl shards`: one row per shard: replicas, leader, term, applied index, keys and size.
//!
//! The routing table (any node) names each shard's replicas; every node is then asked for the
//! replicas it hosts (`Cluster.LocalShards` with sizes), concurrently. A shard's leader, term,
//! applied index and size come from the replica that says it leads (else from the replica with
//! the highest term, marked as not leading). A node that does not answer is reported, not a
//! failure: its replicas show as `name(down)`.

use std::collections::BTreeMap;

use hypercache_client::{Client, Error, RoutingTable, ShardId};
use hypercache_proto::v1 as pb;
use hypercache_proto::Role;
use serde_json::{json, Value};

use crate::exit;
use crate::failure::Failure;
use crate::output::{align, note, Out};

/// One node's answer.
pub(super) type NodeAnswer = (u64, Result<pb::LocalShardsResponse, Error>);

/// What is shown for one shard.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ShardRow {
    pub shard_id: ShardId,
    /// (node id, name, reachable)
    pub replicas: Vec<(u64, String, bool)>,
    pub leader: Option<(u64, String)>,
    /// False when no replica that answered claims to lead (the figures come from the
    /// highest-term replica).
    pub leader_answered: bool,
    pub status: Option<pb::ReplicaStatus>,
}

pub(super) async fn run(client: &Client, out: &mut Out, json: bool) -> Result<u8, Failure> {
    let table = client.routing_fresh().await?;
    if table.is_legacy() {
        note("this cluster predates sharding (no Cluster.Routing): it is one shard; see `hcctl status`");
        return Ok(exit::OK);
    }
    let answers: Vec<NodeAnswer> = futures::future::join_all(
        table.nodes.values().map(|n| async move { (n.node_id, client.local_shards(&n.endpoint, true).await) }),
    )
    .await;
    let rows = rows(&table, &answers);
    if json {
        out.json(&shards_json(&table, &rows, &answers))?;
    } else {
        out.bytes(shards_table(&rows).as_bytes())?;
        // The table first, then the notes about silent nodes (stderr is unbuffered).
        out.flush()?;
        for (id, answer) in &answers {
            if let Err(e) = answer {
                let name = table.node(*id).map_or_else(|| id.to_string(), |n| n.name.clone());
                note(&format!("{name} did not answer: {e}"));
            }
        }
    }
    out.flush()?;
    Ok(exit::OK)
}

/// Merges the routing table with the nodes' answers. Pure, for tests.
pub(super) fn rows(table: &RoutingTable, answers: &[NodeAnswer]) -> Vec<ShardRow> {
    let name = |id: u64| table.node(id).map_or_else(|| format!("node-{id}"), |n| n.name.clone());
    let reachable: BTreeMap<u64, bool> = answers.iter().map(|(id, a)| (*id, a.is_ok())).collect();
    // Per shard, every replica status reported, with the reporting node.
    let mut reported: BTreeMap<ShardId, Vec<(u64, &pb::ReplicaStatus)>> = BTreeMap::new();
    for (id, answer) in answers {
        if let Ok(local) = answer {
            for replica in &local.replicas {
                reported.entry(ShardId(replica.shard_id)).or_default().push((*id, replica));
            }
        }
    }
    table
        .shards
        .iter()
        .map(|shard| {
            let statuses = reported.get(&shard.shard_id).map(Vec::as_slice).unwrap_or_default();
            let leading = statuses.iter().find(|(_, s)| Role::is_leader(&s.role));
            let best = leading.or_else(|| statuses.iter().max_by_key(|(_, s)| s.term));
            let leader_id = match (leading, best) {
                (Some((id, _)), _) => Some(*id),
                (None, Some((_, s))) if s.leader_id != 0 => Some(s.leader_id),
                _ => shard.leader_id,
            };
            ShardRow {
                shard_id: shard.shard_id,
                replicas: shard
                    .replicas
                    .iter()
                    .map(|id| (*id, name(*id), reachable.get(id).copied().unwrap_or(false)))
                    .collect(),
                leader: leader_id.map(|id| (id, name(id))),
                leader_answered: leading.is_some(),
                status: best.map(|(_, s)| (*s).clone()),
            }
        })
        .collect()
}

pub(super) fn shards_table(rows: &[ShardRow]) -> String {
    const HEADER: [&str; 7] = ["SHARD", "REPLICAS", "LEADER", "TERM", "APPLIED", "KEYS", "SIZE"];
    let mut cells: Vec<Vec<String>> = vec![HEADER.iter().map(|h| h.to_string()).collect()];
    for row in rows {
        let replicas: Vec<String> =
            row.replicas.iter().map(|(_, name, up)| if *up { name.clone() } else { format!("{name}(down)") }).collect();
        let leader = match (&row.leader, row.leader_answered) {
            (Some((_, name)), true) => name.clone(),
            (Some((_, name)), false) => format!("{name}?"),
            (None, _) => "-".to_string(),
        };
        let figure = |f: fn(&pb::ReplicaStatus) -> String| row.status.as_ref().map_or_else(|| "-".to_string(), f);
        cells.push(vec![
            row.shard_id.to_string(),
            replicas.join(","),
            leader,
            figure(|s| s.term.to_string()),
            figure(|s| s.applied_index.to_string()),
            figure(|s| s.keys.to_string()),
            figure(|s| human_bytes(s.size_bytes)),
        ]);
    }
    align(&cells, HEADER.len())
}

fn shards_json(table: &RoutingTable, rows: &[ShardRow], answers: &[NodeAnswer]) -> Value {
    let shards: Vec<Value> = rows
        .iter()
        .map(|row| {
            let status = row.status.as_ref();
            json!({
                "shard_id": row.shard_id.0,
                "replicas": row.replicas.iter().map(|(id, name, up)| json!({
                    "node_id": id, "name": name, "reachable": up,
                })).collect::<Vec<_>>(),
                "leader": row.leader.as_ref().map(|(id, name)| json!({"node_id": id, "name": name})),
                "leader_answered": row.leader_answered,
                // The membership as the reporting replica (the leader, when one answered) has it:
                // differs from `replicas` (the target) while the shard is moving.
                "voters": status.map(|s| s.voters.clone()),
                "learners": status.map(|s| s.learners.clone()),
                "term": status.map(|s| s.term),
                "applied_index": status.map(|s| s.applied_index),
                "keys": status.map(|s| s.keys),
                "size_bytes": status.map(|s| s.size_bytes),
            })
        })
        .collect();
    let unreachable: Vec<Value> = answers
        .iter()
        .filter_map(|(id, answer)| {
            let e = answer.as_ref().err()?;
            let node = table.node(*id);
            Some(json!({
                "node_id": id,
                "name": node.map(|n| n.name.clone()),
                "endpoint": node.map(|n| n.endpoint.clone()),
                "error": e.to_string(),
            }))
        })
        .collect();
    json!({
        "version": table.version, "shard_count": table.shard_count, "replication": table.replication,
        "shards": shards, "unreachable": unreachable,
    })
}

/// `n` bytes as B, KiB, MiB or GiB with one decimal.
pub(super) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two shards on three nodes (shard 0 on n1 and n2, shard 1 on n2 and n3; n2 marked down),
    /// with these leaders: n2 for shard 0, n3 for shard 1.
    fn table() -> RoutingTable {
        let response = pb::RoutingResponse {
            version: 3,
            shard_count: 2,
            replication: 2,
            nodes: (1..=3).map(|id| pb::Member { node_id: id, name: format!("n{id}"), ..Default::default() }).collect(),
            shards: vec![
                pb::ShardRoute { shard_id: 0, replicas: vec![1, 2], leader_id: 2 },
                pb::ShardRoute { shard_id: 1, replicas: vec![2, 3], leader_id: 3 },
            ],
            meta_leader_id: 1,
            down: vec![2],
            ..Default::default()
        };
        RoutingTable::from_wire(response).expect("ready")
    }

    fn replica(shard_id: u32, role: &str, term: u64, leader_id: u64) -> pb::ReplicaStatus {
        pb::ReplicaStatus {
            shard_id,
            role: role.into(),
            term,
            leader_id,
            applied_index: 40 + u64::from(shard_id),
            keys: 12,
            size_bytes: 3 * 1024,
            voters: vec![1, 2],
            learners: if role == "leader" { vec![3] } else { vec![] },
            ..Default::default()
        }
    }

    #[test]
    fn rows_take_the_leaders_figures_and_show_unreachable_nodes() {
        let answers: Vec<NodeAnswer> = vec![
            (
                1,
                Ok(pb::LocalShardsResponse {
                    node_id: 1,
                    name: "n1".into(),
                    replicas: vec![replica(0, "leader", 5, 1)],
                }),
            ),
            (
                2,
                Ok(pb::LocalShardsResponse {
                    node_id: 2,
                    name: "n2".into(),
                    replicas: vec![replica(0, "follower", 5, 1), replica(1, "follower", 2, 3)],
                }),
            ),
            (3, Err(Error::Unavailable { message: "refused".into() })),
        ];
        let rows = rows(&table(), &answers);
        assert_eq!(rows[0].leader, Some((1, "n1".into())), "the replica that leads wins over the hint");
        assert!(rows[0].leader_answered);
        assert_eq!(rows[1].leader, Some((3, "n3".into())), "the follower's leader_id");
        assert!(!rows[1].leader_answered);
        assert_eq!(rows[1].replicas[1], (3, "n3".into(), false));

        let text = shards_table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("SHARD"), "{text}");
        assert!(lines[1].contains("n1,n2") && !lines[1].contains("41") && lines[1].contains("40"), "{text}");
        assert!(lines[2].contains("n2,n3(down)") && lines[2].contains("n3?"), "{text}");
        assert!(lines[1].ends_with("3.0 KiB"), "{text}");

        let value = shards_json(&table(), &rows, &answers);
        assert_eq!(value["shards"][0]["leader"]["name"], "n1");
        assert_eq!(value["shards"][0]["voters"], serde_json::json!([1, 2]));
        assert_eq!(value["shards"][0]["learners"], serde_json::json!([3]), "the leader's view of the membership");
        assert_eq!(value["unreachable"][0]["name"], "n3");
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
