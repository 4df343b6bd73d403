//! The endpoint table: the nodes the client can send to, and the pure choice of one of them.
//!
//! The table starts as the configured seed list, gains the nodes of the routing table
//! (`routing.rs`) and the leader endpoints learned from NOT_LEADER redirects (at most
//! [`MAX_LEARNED_ENDPOINTS`] of those). Each entry owns one lazily connected tonic `Channel`;
//! tonic multiplexes all concurrent requests over it and re-resolves the host name whenever it
//! reconnects. Next to the nodes, the table caches each group's leader: a NOT_LEADER for shard
//! `s` moves shard `s` only.
//!
//! Which node an attempt goes to ([`choose`], [`candidates`], [`after`]) is a pure function of
//! the endpoint table, the per-group leader cache, the routing table and the endpoints the
//! health table skips (`health.rs`), so it is tested without sockets. A skipped endpoint is
//! never chosen while another candidate is not skipped, not even as the group's leader: a
//! frozen leader stays "the leader" in every table until its followers elect another, and
//! waiting on it is what the skip exists to avoid.
//!
//! The [`Client`](crate::Client) methods that read and change the table live in `client.rs`;
//! this module holds only the data and the decisions, below everything that sends a request.

use std::collections::HashMap;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::config::ClientConfig;
use crate::error::Error;
use crate::routing::RoutingTable;
use crate::target::{Group, Route};

/// HTTP/2 ping interval and the wait for its answer on every channel.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Learned (non-configured) endpoints kept in the table; more are used once and dropped.
pub(crate) const MAX_LEARNED_ENDPOINTS: usize = 32;

/// The endpoints the client knows and the leader it last saw per group. Behind the client's
/// `RwLock`, held only to look up or change an entry, never across an `.await`.
pub(crate) struct EndpointTable {
    /// Seeds first (configuration order), then the routing table's nodes, then learned ones.
    pub(crate) nodes: Vec<Node>,
    pub(crate) leaders: HashMap<Group, String>,
}

/// How a node came into the table: seeds stay for good, the others follow the routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Seed,
    Routing,
    /// A leader endpoint from a NOT_LEADER redirect.
    Learned,
}

/// One endpoint and its lazily connected channel (tonic multiplexes every request over it).
#[derive(Clone)]
pub(crate) struct Node {
    pub(crate) endpoint: String,
    pub(crate) channel: Channel,
    pub(crate) origin: Origin,
}

pub(crate) fn make_channel(endpoint: &str, config: &ClientConfig) -> Result<Channel, Error> {
    let uri = format!("http://{endpoint}");
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| Error::config(format!("invalid endpoint {endpoint:?}: {e}")))?
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        // A node that vanished (a pod replaced under the same name with a new IP) leaves a
        // connection nobody answers; pings find it within seconds so the channel reconnects and
        // resolves the name again, instead of waiting minutes for TCP to give up.
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
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
    use crate::config::ClientConfig;
    use crate::ids::ShardId;
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
        assert_eq!(pick(&leaders, Group::Shard(ShardId(0)), &Route::Leader), "n1:1", "the table's hint");
        assert_eq!(pick(&leaders, Group::Shard(ShardId(1)), &Route::Leader), "n2:1", "no hint: the first replica");
        assert_eq!(pick(&leaders, Group::Meta, &Route::Leader), "n3:1", "the meta leader");
        assert_eq!(pick(&leaders, Group::Shard(ShardId(1)), &Route::First), "n2:1", "no seed hosts shard 1");
        assert_eq!(
            choose(&nodes, &leaders, None, Group::Shard(ShardId(1)), &Route::First, &[]).endpoint,
            "seed:1",
            "no table"
        );

        // A NOT_LEADER for shard 1 updates shard 1 only.
        leaders.insert(Group::Shard(ShardId(1)), "n3:1".to_string());
        assert_eq!(pick(&leaders, Group::Shard(ShardId(1)), &Route::Leader), "n3:1");
        assert_eq!(pick(&leaders, Group::Shard(ShardId(0)), &Route::Leader), "n1:1");
        // Streams avoid the node that just broke, staying on the shard's replicas.
        let avoid = Route::PreferLeader { avoid: Some("n3:1".into()) };
        assert_eq!(pick(&leaders, Group::Shard(ShardId(1)), &avoid), "n2:1");
        let candidates = candidates(&nodes, Some(&table), Group::Shard(ShardId(1)), &[]);
        assert_eq!(after(&candidates, "n2:1").map(|n| n.endpoint.as_str()), Some("n3:1"));
        assert_eq!(after(&candidates, "seed:1").map(|n| n.endpoint.as_str()), Some("n2:1"), "not a replica: the first");
    }

    #[tokio::test]
    async fn skipped_endpoints_are_avoided_even_as_leaders_unless_nothing_else_is_left() {
        let nodes = vec![node("n1:1", Origin::Seed), node("n2:1", Origin::Seed), node("n3:1", Origin::Seed)];
        let table = table();
        let leaders = HashMap::from([(Group::Shard(ShardId(0)), "n1:1".to_string())]);
        let skipped = vec!["n1:1".to_string()];
        let pick = |route: &Route, skipped: &[String]| {
            choose(&nodes, &leaders, Some(&table), Group::Shard(ShardId(0)), route, skipped).endpoint
        };
        assert_eq!(pick(&Route::Leader, &[]), "n1:1");
        assert_eq!(pick(&Route::Leader, &skipped), "n2:1", "a frozen leader is not waited on");
        assert_eq!(pick(&Route::First, &skipped), "n2:1");
        let candidates = candidates(&nodes, Some(&table), Group::Shard(ShardId(0)), &skipped);
        assert_eq!(candidates.iter().map(|n| n.endpoint.as_str()).collect::<Vec<_>>(), ["n2:1"]);
        assert_eq!(after(&candidates, "n2:1").map(|n| n.endpoint.as_str()), Some("n2:1"), "cycles on the healthy");
        let all = vec!["n1:1".to_string(), "n2:1".to_string()];
        assert_eq!(pick(&Route::Leader, &all), "n1:1", "every replica skipped: the leader after all");
    }
}
