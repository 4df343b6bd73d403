//! Where an operation goes: its [`Target`] (a key, a shard, the home shard, the meta group)
//! resolves to a [`Group`] through the routing table (`routing.rs`), and the [`Route`] picks a
//! node among the group's replicas (`endpoints.rs`). Plain data that depends on nothing of the
//! crate but the ids: the endpoint table, the retry loop and every operation name these.

use bytes::Bytes;

use crate::ids::ShardId;

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
    Shard(ShardId),
    /// The home shard (`ClientConfig::namespace`): the game services.
    Home,
    /// The meta group (membership operations); no routing table needed.
    Meta,
}

/// A Raft group whose leader the client caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Group {
    Meta,
    Shard(ShardId),
}

impl Group {
    /// The shard id requests for this group carry (0 for the meta group, which ignores it).
    pub(crate) fn shard_id(self) -> ShardId {
        match self {
            Group::Meta => ShardId(0),
            Group::Shard(s) => s,
        }
    }
}
