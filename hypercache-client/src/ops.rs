//! The single-key and cluster operations of [`Client`]: each builds its request once and hands
//! a closure that performs one attempt (on a channel, for the shard the retry loop resolved) to
//! the retry loop in `call.rs`. Multi-shard reads are in `range.rs`.

use bytes::Bytes;
use hypercache_proto::v1 as pb;
use pb::cluster_client::ClusterClient;
use pb::kv_client::KvClient;
use tonic::transport::Channel;

use crate::call::request;
use crate::client::Client;
use crate::error::Error;
use crate::ids::ShardId;
use crate::retry::OpKind;
use crate::target::{Route, Target};
use crate::types::{CasResult, DeleteResult, KeyValue, PutOptions, PutResult};

impl Client {
    pub(crate) fn kv(&self, channel: Channel) -> KvClient<Channel> {
        let max = self.inner.config.max_message_bytes;
        KvClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max)
    }

    pub(crate) fn cluster(&self, channel: Channel) -> ClusterClient<Channel> {
        let max = self.inner.config.max_message_bytes;
        ClusterClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max)
    }

    /// Linearizable read of one key through its shard's leader; `None` if the key does not
    /// exist.
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<KeyValue>, Error> {
        self.get_routed(key.into(), false, Route::Leader).await
    }

    /// Serializable (possibly stale) read served from the local state of one replica of the
    /// key's shard: a configured seed if one hosts it, else its first replica (in a cluster
    /// without a routing table: the first configured endpoint), falling back to the others if it
    /// is unreachable, refuses (a learner or an empty replica), or answers at a revision below
    /// one this client already saw of the shard.
    pub async fn get_serializable(&self, key: impl Into<Bytes>) -> Result<Option<KeyValue>, Error> {
        self.get_routed(key.into(), true, Route::First).await
    }

    async fn get_routed(&self, key: Bytes, serializable: bool, route: Route) -> Result<Option<KeyValue>, Error> {
        let target = Target::Key(key.clone());
        let response = self
            .execute("get", OpKind::Read, target, route, |ch, shard, t| {
                let mut kv = self.kv(ch);
                let req = request(pb::GetRequest { shard_id: shard.0, key: key.clone(), serializable }, t);
                let seen = &self.inner.seen;
                async move { seen.check(shard, serializable, kv.get(req).await) }
            })
            .await?;
        Ok(response.kv)
    }

    /// Reads one key from exactly `endpoint`, with no redirect and no retry. A linearizable
    /// read on a follower fails with [`Error::NotLeader`]; a node that hosts no replica of the
    /// key's shard with [`Error::UnknownShard`].
    pub async fn get_from(
        &self,
        endpoint: &str,
        key: impl Into<Bytes>,
        serializable: bool,
    ) -> Result<Option<KeyValue>, Error> {
        let key = key.into();
        let shard = self.routing().await?.shard_of(&key);
        let msg = pb::GetRequest { shard_id: shard.0, key, serializable };
        let response = self
            .single("get", endpoint, |ch, t| {
                let mut kv = self.kv(ch);
                async move { kv.get(request(msg, t)).await }
            })
            .await?;
        Ok(response.kv)
    }

    /// Writes `value` under `key`. Exactly once: every attempt carries the same write id, so the
    /// client retries a lost answer until the deadline and the shard applies the put once;
    /// only a deadline that passes with an attempt in flight is [`Error::OutcomeUnknown`].
    pub async fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<PutResult, Error> {
        self.put_with(key, value, PutOptions::default()).await
    }

    /// Like [`put`](Self::put), also returning the previous key-value.
    pub async fn put_returning_prev(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<PutResult, Error> {
        self.put_with(key, value, PutOptions { prev_kv: true, ..PutOptions::default() }).await
    }

    /// [`put`](Self::put) with options: attach the key to a lease, or give it a TTL of its own
    /// (not both), and/or return the previous key-value. Keys beginning with byte 0xff are
    /// refused (`RESERVED_KEY`); a missing lease is `LEASE_NOT_FOUND`. Any key may hang on any
    /// lease: the put goes to the key's shard, which checks a lease of another shard with that
    /// shard (its home) first, and deletes the key shortly after the lease ends at home (see
    /// [`Client::grant`]).
    pub async fn put_with(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        options: PutOptions,
    ) -> Result<PutResult, Error> {
        let mut msg = options.to_request(ShardId(0), key.into(), value.into())?;
        let pending = self.begin_write();
        msg.write = pending.id();
        let response = self
            .execute("put", OpKind::Tracked, Target::Key(msg.key.clone()), Route::Leader, |ch, shard, t| {
                let mut kv = self.kv(ch);
                let req = request(pb::PutRequest { shard_id: shard.0, ..msg.clone() }, t);
                let seen = &self.inner.seen;
                async move { seen.check(shard, false, kv.put(req).await) }
            })
            .await?;
        Ok(response.into())
    }

    /// Deletes `key`; deleting a missing key succeeds with `deleted = false`.
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<DeleteResult, Error> {
        self.delete_inner(key.into(), false).await
    }

    /// Like [`delete`](Self::delete), also returning the deleted key-value.
    pub async fn delete_returning_prev(&self, key: impl Into<Bytes>) -> Result<DeleteResult, Error> {
        self.delete_inner(key.into(), true).await
    }

    async fn delete_inner(&self, key: Bytes, prev_kv: bool) -> Result<DeleteResult, Error> {
        let target = Target::Key(key.clone());
        let pending = self.begin_write();
        let response = self
            .execute("delete", OpKind::Tracked, target, Route::Leader, |ch, shard, t| {
                let mut kv = self.kv(ch);
                let req =
                    request(pb::DeleteRequest { shard_id: shard.0, key: key.clone(), prev_kv, write: pending.id() }, t);
                let seen = &self.inner.seen;
                async move { seen.check(shard, false, kv.delete(req).await) }
            })
            .await?;
        Ok(response.into())
    }

    /// Writes `new_value` if the key's `mod_revision` equals `expected_mod_revision` (0: the
    /// key must not exist) and/or its value equals `expected_value`. At least one expectation
    /// is required (the server rejects the request otherwise). A failed comparison is a
    /// successful call with `succeeded = false` and the key's current state.
    pub async fn compare_and_swap(
        &self,
        key: impl Into<Bytes>,
        expected_mod_revision: Option<u64>,
        expected_value: Option<Bytes>,
        new_value: impl Into<Bytes>,
    ) -> Result<CasResult, Error> {
        let pending = self.begin_write();
        let msg = pb::CompareAndSwapRequest {
            shard_id: 0,
            key: key.into(),
            expected_mod_revision,
            expected_value,
            new_value: new_value.into(),
            write: pending.id(),
        };
        let target = Target::Key(msg.key.clone());
        let response = self
            .execute("compare_and_swap", OpKind::Tracked, target, Route::Leader, |ch, shard, t| {
                let mut kv = self.kv(ch);
                let req = request(pb::CompareAndSwapRequest { shard_id: shard.0, ..msg.clone() }, t);
                let seen = &self.inner.seen;
                async move { seen.check(shard, false, kv.compare_and_swap(req).await) }
            })
            .await?;
        Ok(response.into())
    }

    /// The status of the node at `endpoint` (any endpoint, configured or not): its view of the
    /// meta group.
    pub async fn status(&self, endpoint: &str) -> Result<pb::StatusResponse, Error> {
        self.single("status", endpoint, |ch, t| {
            let mut cluster = self.cluster(ch);
            async move { cluster.status(request(pb::StatusRequest {}, t)).await }
        })
        .await
    }

    /// The data-shard replicas the node at `endpoint` hosts, with their Raft state; with
    /// `with_size`, each replica's key count and bytes (the node reads its whole state: for
    /// operators, not polls).
    pub async fn local_shards(&self, endpoint: &str, with_size: bool) -> Result<pb::LocalShardsResponse, Error> {
        self.single("local_shards", endpoint, |ch, t| {
            let mut cluster = self.cluster(ch);
            async move { cluster.local_shards(request(pb::LocalShardsRequest { with_size }, t)).await }
        })
        .await
    }

    /// Starts removing the node named `name` from the cluster (scale-down): the placement
    /// driver moves its replicas away, then the node leaves; `replicas_left` says how many it
    /// still hosts (0 with `removed` once it has left). Watch [`Client::routing_fresh`] for the
    /// node to disappear. The meta leader refuses the last voter (`LAST_VOTER`), unknown names
    /// (`UNKNOWN_NODE`) and a node that holds the last replica of a shard; a retried
    /// decommission never removes a second node.
    pub async fn decommission(&self, name: &str) -> Result<pb::DecommissionResponse, Error> {
        let msg = pb::DecommissionRequest { name: name.to_string() };
        self.execute("decommission", OpKind::Write, Target::Meta, Route::Leader, |ch, _, t| {
            let mut cluster = self.cluster(ch);
            let req = request(msg.clone(), t);
            async move { cluster.decommission(req).await }
        })
        .await
    }

    /// Adds the node serving at `endpoint` (`host:port`, a DNS name) to the cluster; the
    /// placement driver then moves replicas onto it. Idempotent (`already_member` on repeats).
    pub async fn add_node(&self, endpoint: &str) -> Result<pb::AddNodeResponse, Error> {
        crate::config::validate_endpoint(endpoint)?;
        let msg = pb::AddNodeRequest { endpoint: endpoint.to_string() };
        self.execute("add_node", OpKind::Idempotent, Target::Meta, Route::Leader, |ch, _, t| {
            let mut cluster = self.cluster(ch);
            let req = request(msg.clone(), t);
            async move { cluster.add_node(req).await }
        })
        .await
    }

    /// The status of every configured endpoint, asked concurrently, in configuration order.
    pub async fn cluster_status(&self) -> Vec<(String, Result<pb::StatusResponse, Error>)> {
        let endpoints = self.inner.config.endpoints.clone();
        let answers = futures::future::join_all(endpoints.iter().map(|e| self.status(e))).await;
        endpoints.into_iter().zip(answers).collect()
    }
}
