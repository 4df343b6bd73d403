//! The [`Client`]: its shared state, and the methods that read and change its endpoint table
//! and per-group leader cache.
//!
//! The endpoint table's data and the pure choice of a node are in `endpoints.rs`; what an
//! operation addresses is in `target.rs`; the routing table in `routing.rs` (fetched by
//! `refresh.rs`); the retry loop every operation runs in is in `call.rs`. Those modules add
//! `impl Client` blocks of their own; this file only needs the types below it.
//!
//! The lock around the endpoint table is a std `RwLock`: it is only held to look up or insert
//! an entry, never across an `.await` (poisoning: `hypercache_proto::poison`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use hypercache_proto::poison;

use crate::config::{validate_endpoint, ClientConfig};
use crate::endpoints::{after, candidates, choose, make_channel, EndpointTable, Node, Origin, MAX_LEARNED_ENDPOINTS};
use crate::error::Error;
use crate::freshness::Seen;
use crate::health::Health;
use crate::ids::ShardId;
use crate::routing::{RoutingCache, RoutingTable};
use crate::target::{Group, Route, Target};
use crate::writes::{PendingWrite, WriteIds};

/// A HyperCache client. Cheap to clone (clones share channels, the routing table and the
/// leader cache).
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    table: RwLock<EndpointTable>,
    pub(crate) routing: RoutingCache,
    /// Endpoints that recently did not answer in time.
    pub(crate) health: Health,
    /// The newest revision seen per shard (serializable reads never go below it).
    pub(crate) seen: Seen,
    /// This instance's client id and write numbering (exactly-once writes).
    pub(crate) writes: WriteIds,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("endpoints", &self.inner.config.endpoints).finish_non_exhaustive()
    }
}

impl Client {
    /// Validates `config` and prepares one lazy channel per endpoint. Nothing is connected or
    /// resolved yet. Must be called inside a Tokio runtime (channels spawn a worker task).
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        config.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::config("Client::new must be called inside a Tokio runtime"));
        }
        let nodes = config
            .endpoints
            .iter()
            .map(|e| Ok(Node { endpoint: e.clone(), channel: make_channel(e, &config)?, origin: Origin::Seed }))
            .collect::<Result<Vec<_>, Error>>()?;
        let table = RwLock::new(EndpointTable { nodes, leaders: HashMap::new() });
        let inner = Inner {
            config,
            table,
            routing: RoutingCache::default(),
            health: Health::default(),
            seen: Seen::default(),
            writes: WriteIds::default(),
        };
        Ok(Client { inner: Arc::new(inner) })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The endpoint believed to lead `shard` (the last one that served a leader request for
    /// it, or the last redirect target), if any.
    pub fn leader_hint(&self, shard: ShardId) -> Option<String> {
        self.read_table().leaders.get(&Group::Shard(shard)).cloned()
    }

    /// Starts a write: the id all its attempts carry (see `writes.rs`); keep the guard until the
    /// operation returns.
    pub(crate) fn begin_write(&self) -> PendingWrite {
        self.inner.writes.begin()
    }

    /// Every endpoint the client knows: the seeds, the routing table's nodes, learned leaders.
    pub fn endpoints(&self) -> Vec<String> {
        self.read_table().nodes.iter().map(|n| n.endpoint.clone()).collect()
    }

    fn read_table(&self) -> std::sync::RwLockReadGuard<'_, EndpointTable> {
        poison::read(&self.inner.table)
    }

    fn write_table(&self) -> std::sync::RwLockWriteGuard<'_, EndpointTable> {
        poison::write(&self.inner.table)
    }

    /// The group `target` addresses under `table` (which every target but `Meta` needs).
    pub(crate) fn resolve(&self, target: &Target, table: Option<&RoutingTable>) -> Result<Group, Error> {
        let Some(table) = table else {
            return Ok(match target {
                Target::Meta => Group::Meta,
                Target::Shard(s) => Group::Shard(*s),
                Target::Key(_) | Target::Home => Group::Shard(ShardId(0)),
            });
        };
        match target {
            Target::Meta => Ok(Group::Meta),
            Target::Key(key) => Ok(Group::Shard(table.shard_of(key))),
            Target::Home => Ok(Group::Shard(table.shard_of(self.inner.config.namespace.as_bytes()))),
            Target::Shard(s) if table.has_shard(*s) => Ok(Group::Shard(*s)),
            Target::Shard(s) => Err(Error::UnknownShard {
                message: format!("shard {s} does not exist: the cluster has {} shard(s)", table.shard_count),
            }),
        }
    }

    /// The home shard: where the game services (registry, boards, elections) live.
    pub async fn home_shard(&self) -> Result<ShardId, Error> {
        let table = self.routing().await?;
        Ok(self.resolve(&Target::Home, Some(&table))?.shard_id())
    }

    pub(crate) fn first_target(&self, group: Group, route: &Route, table: Option<&RoutingTable>) -> Node {
        let skipped = self.inner.health.skipped(tokio::time::Instant::now());
        let t = self.read_table();
        choose(&t.nodes, &t.leaders, table, group, route, &skipped)
    }

    pub(crate) fn next_after(&self, group: Group, table: Option<&RoutingTable>, endpoint: &str) -> Node {
        let skipped = self.inner.health.skipped(tokio::time::Instant::now());
        let t = self.read_table();
        let candidates = candidates(&t.nodes, table, group, &skipped);
        after(&candidates, endpoint).unwrap_or(&t.nodes[0]).clone()
    }

    pub(crate) fn remember_leader(&self, group: Group, endpoint: &str) {
        let mut table = self.write_table();
        if table.leaders.get(&group).map(String::as_str) != Some(endpoint) {
            table.leaders.insert(group, endpoint.to_string());
        }
    }

    /// Follows a leader hint received outside the retry loop (in a stream): later requests and
    /// reconnects for `group` go there. An invalid endpoint is ignored (logged).
    pub(crate) fn learn_leader(&self, group: Group, endpoint: &str) {
        match self.node_for(endpoint, true) {
            Ok(node) => self.remember_leader(group, &node.endpoint),
            Err(_) => tracing::warn!(leader = %endpoint, "server named an invalid leader endpoint"),
        }
    }

    pub(crate) fn forget_leader(&self, group: Group, endpoint: &str) {
        let mut table = self.write_table();
        if table.leaders.get(&group).map(String::as_str) == Some(endpoint) {
            table.leaders.remove(&group);
        }
    }

    /// The node for `endpoint`, creating a channel if it is not in the table. With `learn`, the
    /// new node joins the table (bounded) so later requests and retries can use it.
    pub(crate) fn node_for(&self, endpoint: &str, learn: bool) -> Result<Node, Error> {
        if let Some(node) = self.read_table().nodes.iter().find(|n| n.endpoint == endpoint) {
            return Ok(node.clone());
        }
        validate_endpoint(endpoint)?;
        let channel = make_channel(endpoint, &self.inner.config)?;
        let node = Node { endpoint: endpoint.to_string(), channel, origin: Origin::Learned };
        if learn {
            let mut table = self.write_table();
            if let Some(existing) = table.nodes.iter().find(|n| n.endpoint == endpoint) {
                return Ok(existing.clone());
            }
            if table.nodes.iter().filter(|n| n.origin == Origin::Learned).count() < MAX_LEARNED_ENDPOINTS {
                table.nodes.push(node.clone());
            }
        }
        Ok(node)
    }

    /// Makes the routing table's nodes part of the endpoint table: seeds stay first, nodes that
    /// left the table are dropped (unless seeds), channels of known endpoints are reused.
    pub(crate) fn adopt_endpoints(&self, routing: &RoutingTable) {
        let config = &self.inner.config;
        let mut table = self.write_table();
        let mut nodes: Vec<Node> = table.nodes.iter().filter(|n| n.origin == Origin::Seed).cloned().collect();
        for member in routing.nodes.values() {
            let endpoint = member.endpoint.as_str();
            if nodes.iter().any(|n| n.endpoint == endpoint) || validate_endpoint(endpoint).is_err() {
                continue;
            }
            let channel = match table.nodes.iter().find(|n| n.endpoint == endpoint) {
                Some(known) => known.channel.clone(),
                None => match make_channel(endpoint, config) {
                    Ok(channel) => channel,
                    Err(_) => continue,
                },
            };
            nodes.push(Node { endpoint: endpoint.to_string(), channel, origin: Origin::Routing });
        }
        for learned in table.nodes.iter().filter(|n| n.origin == Origin::Learned) {
            if !nodes.iter().any(|n| n.endpoint == learned.endpoint) {
                nodes.push(learned.clone());
            }
        }
        table.nodes = nodes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::routing::tests::response;

    fn table() -> RoutingTable {
        RoutingTable::from_wire(response(2, 1)).expect("ready")
    }

    #[tokio::test]
    async fn the_routing_tables_nodes_join_the_endpoint_table_and_seeds_stay() {
        let client = Client::new(ClientConfig::new(["seed:1", "n1:7000"])).expect("client");
        client.node_for("learned:1", true).expect("valid");
        client.adopt_endpoints(&table());
        assert_eq!(client.endpoints(), vec!["seed:1", "n1:7000", "n2:7000", "n3:7000", "learned:1"]);
        let home = client.resolve(&Target::Home, Some(&table())).expect("home");
        assert_eq!(home, Group::Shard(ShardId(hypercache_proto::routing::Router::new(2).shard_of(b"hypercache"))));
        let err = client.resolve(&Target::Shard(ShardId(2)), Some(&table())).expect_err("two shards");
        assert!(matches!(err, Error::UnknownShard { .. }), "{err:?}");
    }
}
