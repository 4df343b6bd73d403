//! Where an operation goes: its [`Target`] (a key, a shard, the home shard, the meta group)
//! resolves to a [`Group`] through the routing table, and the [`Route`] picks a node among the
//! group's replicas. The choice is a pure function of the endpoint table, the per-group leader
//! cache, the routing table and the endpoints the health table skips (`health.rs`), so it is
//! tested without sockets. A skipped endpoint is never chosen while another candidate is not
//! skipped, not even as the group's leader: a frozen leader stays "the leader" in every table
//! until its followers elect another, and waiting on it is what the skip exists to avoid.

use std::collections::HashMap;

use bytes::Bytes;

use crate::client::{Node, Origin};
use crate::routing::RoutingTable;

/// Where the first attempt of an operation goes, among the nodes that can serve its shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// The shard's cached leader, else the table's leader hint, else its first replica;
    /// successes update the cache.
    Leader,
    /// A replica that is a configured seed, else the first replica, else the first endpoint
    /// (serializable reads); the cache is left alone.
    First,
    /// Streams any replica can serve (watches): the leader unless it is `avoid` (the node a
    /// stream just broke on), else the replica after `avoid`, else the first. A success says
    /// nothing about leadership, so the cache is left alone.
    PreferLeader { avoid: Option<String> },
}

/// What an operation addresses: decides its shard (see `routing.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The shard `key` maps to.
    Key(Bytes),
    /// A shard named directly (a lease id's shard, one leg of a fan-out).
    Shard(u32),
    /// The home shard (`ClientConfig::namespace`): the game services.
    Home,
    /// The meta group (membership operations); no routing table needed.
    Meta,
}

/// A Raft group whose leader the client caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Group {
    Meta,
    Shard(u32),
}

impl Group {
    /// The shard id requests for this group carry (0 for the meta group, which ignores it).
    pub(crate) fn shard_id(self) -> u32 {
        match self {
            Group::Meta => 0,
            Group::Shard(s) => s,
        }
    }
}

/// The replicas of `group`'s shard that the endpoint table holds, in placement order; every
/// node when the table names none (legacy clusters, the meta group). Endpoints in `skipped`
/// are left out unless that would leave none.
pub(crate) fn candidates<'a>(
    nodes: &'a [Node],
    table: Option<&RoutingTable>,
    group: Group,
    skipped: &[String],
) -> Vec<&'a Node> {
    let mut all: Vec<&Node> = nodes.iter().collect();
    if let (Some(table), Group::Shard(shard)) = (table, group) {
        let replicas: Vec<&Node> =
            table.replica_endpoints(shard).into_iter().filter_map(|e| nodes.iter().find(|n| n.endpoint == e)).collect();
        if !replicas.is_empty() {
            all = replicas;
        }
    }
    let healthy: Vec<&Node> = all.iter().copied().filter(|n| !skipped.contains(&n.endpoint)).collect();
    if healthy.is_empty() {
        all
    } else {
        healthy
    }
}

/// The node believed to lead `group`: the cached leader, else the routing table's hint.
fn leader_of<'a>(
    nodes: &'a [Node],
    leaders: &HashMap<Group, String>,
    table: Option<&RoutingTable>,
    group: Group,
) -> Option<&'a Node> {
    let hint = leaders.get(&group).map(String::as_str).or_else(|| {
        let table = table?;
        match group {
            Group::Shard(s) => table.leader_endpoint(s),
            Group::Meta => table.meta_leader_id.and_then(|id| table.endpoint_of(id)),
        }
    })?;
    nodes.iter().find(|n| n.endpoint == hint)
}

/// The candidate after `endpoint` (cyclic), or the first when `endpoint` is not one.
pub(crate) fn after<'a>(candidates: &[&'a Node], endpoint: &str) -> Option<&'a Node> {
    let next = candidates.iter().position(|n| n.endpoint == endpoint).map_or(0, |i| (i + 1) % candidates.len());
    candidates.get(next).copied()
}

/// Where the first attempt for `group` goes (see [`Route`]), avoiding `skipped` endpoints.
/// Pure, for tests.
pub(crate) fn choose(
    nodes: &[Node],
    leaders: &HashMap<Group, String>,
    table: Option<&RoutingTable>,
    group: Group,
    route: &Route,
    skipped: &[String],
) -> Node {
    let candidates = candidates(nodes, table, group, skipped);
    // A skipped leader is a candidate only when every candidate is skipped.
    let usable = |n: &&Node| !skipped.contains(&n.endpoint) || candidates.iter().any(|c| c.endpoint == n.endpoint);
    let leader = || leader_of(nodes, leaders, table, group).filter(usable);
    let chosen = match route {
        Route::Leader | Route::PreferLeader { avoid: None } => leader().or_else(|| candidates.first().copied()),
        Route::First => candidates.iter().find(|n| n.origin == Origin::Seed).or_else(|| candidates.first()).copied(),
        Route::PreferLeader { avoid: Some(avoid) } => {
            leader().filter(|n| &n.endpoint != avoid).or_else(|| after(&candidates, avoid))
        }
    };
    chosen.unwrap_or(&nodes[0]).clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::make_channel;
    use crate::config::ClientConfig;
    use hypercache_proto::v1 as pb;

    fn node(endpoint: &str, origin: Origin) -> Node {
        let config = ClientConfig::new([endpoint]);
        Node { endpoint: endpoint.into(), channel: make_channel(endpoint, &config).expect("valid"), origin }
    }

    /// Shards 0 and 1 on n1,n2 / n2,n3; the table says n1 leads shard 0 and nothing for shard 1.
    fn table() -> RoutingTable {
        RoutingTable::from_wire(pb::RoutingResponse {
            version: 1,
            shard_count: 2,
            nodes: (1..=3)
                .map(|id| pb::Member { node_id: id, endpoint: format!("n{id}:1"), ..Default::default() })
                .collect(),
            shards: vec![
                pb::ShardRoute { shard_id: 0, replicas: vec![1, 2], leader_id: 1 },
                pb::ShardRoute { shard_id: 1, replicas: vec![2, 3], leader_id: 0 },
            ],
            meta_leader_id: 3,
            ..Default::default()
        })
        .expect("ready")
    }

    #[tokio::test]
    async fn routes_pick_the_shards_leader_then_its_replicas() {
        let nodes = vec![
            node("seed:1", Origin::Seed),
            node("n1:1", Origin::Routing),
            node("n2:1", Origin::Routing),
            node("n3:1", Origin::Routing),
        ];
        let table = table();
        let mut leaders = HashMap::new();
        let pick = |leaders: &HashMap<Group, String>, group, route: &Route| {
            choose(&nodes, leaders, Some(&table), group, route, &[]).endpoint
        };
        assert_eq!(pick(&leaders, Group::Shard(0), &Route::Leader), "n1:1", "the table's hint");
        assert_eq!(pick(&leaders, Group::Shard(1), &Route::Leader), "n2:1", "no hint: the first replica");
        assert_eq!(pick(&leaders, Group::Meta, &Route::Leader), "n3:1", "the meta leader");
        assert_eq!(pick(&leaders, Group::Shard(1), &Route::First), "n2:1", "no seed hosts shard 1");
        assert_eq!(choose(&nodes, &leaders, None, Group::Shard(1), &Route::First, &[]).endpoint, "seed:1", "no table");

        // A NOT_LEADER for shard 1 updates shard 1 only.
        leaders.insert(Group::Shard(1), "n3:1".to_string());
        assert_eq!(pick(&leaders, Group::Shard(1), &Route::Leader), "n3:1");
        assert_eq!(pick(&leaders, Group::Shard(0), &Route::Leader), "n1:1");
        // Streams avoid the node that just broke, staying on the shard's replicas.
        let avoid = Route::PreferLeader { avoid: Some("n3:1".into()) };
        assert_eq!(pick(&leaders, Group::Shard(1), &avoid), "n2:1");
        let candidates = candidates(&nodes, Some(&table), Group::Shard(1), &[]);
        assert_eq!(after(&candidates, "n2:1").map(|n| n.endpoint.as_str()), Some("n3:1"));
        assert_eq!(after(&candidates, "seed:1").map(|n| n.endpoint.as_str()), Some("n2:1"), "not a replica: the first");
    }

    #[tokio::test]
    async fn skipped_endpoints_are_avoided_even_as_leaders_unless_nothing_else_is_left() {
        let nodes = vec![node("n1:1", Origin::Seed), node("n2:1", Origin::Seed), node("n3:1", Origin::Seed)];
        let table = table();
        let leaders = HashMap::from([(Group::Shard(0), "n1:1".to_string())]);
        let skipped = vec!["n1:1".to_string()];
        let pick = |route: &Route, skipped: &[String]| {
            choose(&nodes, &leaders, Some(&table), Group::Shard(0), route, skipped).endpoint
        };
        assert_eq!(pick(&Route::Leader, &[]), "n1:1");
        assert_eq!(pick(&Route::Leader, &skipped), "n2:1", "a frozen leader is not waited on");
        assert_eq!(pick(&Route::First, &skipped), "n2:1");
        let candidates = candidates(&nodes, Some(&table), Group::Shard(0), &skipped);
        assert_eq!(candidates.iter().map(|n| n.endpoint.as_str()).collect::<Vec<_>>(), ["n2:1"]);
        assert_eq!(after(&candidates, "n2:1").map(|n| n.endpoint.as_str()), Some("n2:1"), "cycles on the healthy");
        let all = vec!["n1:1".to_string(), "n2:1".to_string()];
        assert_eq!(pick(&Route::Leader, &all), "n1:1", "every replica skipped: the leader after all");
    }
}
