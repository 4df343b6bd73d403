//! The public operations of [`Client`]: each builds its request once and hands a closure that
//! performs one attempt to the retry loop in `client.rs`.

use std::time::Duration;

use bytes::Bytes;
use hypercache_proto::v1 as pb;
use pb::cluster_client::ClusterClient;
use pb::kv_client::KvClient;
use tonic::transport::Channel;
use tonic::Request;

use crate::client::{Client, Route};
use crate::error::Error;
use crate::retry::OpKind;
use crate::types::{CasResult, DeleteResult, KeyValue, PutOptions, PutResult, RangeOptions, RangePage};

pub(crate) fn request<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
}

impl Client {
    pub(crate) fn kv(&self, channel: Channel) -> KvClient<Channel> {
        let max = self.inner.config.max_message_bytes;
        KvClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max)
    }

    pub(crate) fn shard(&self) -> u32 {
        self.inner.config.shard_id
    }

    /// Linearizable read of one key through the leader; `None` if the key does not exist.
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<KeyValue>, Error> {
        let msg = pb::GetRequest { shard_id: self.shard(), key: key.into(), serializable: false };
        self.get_routed(msg, Route::Leader).await
    }

    /// Serializable (possibly stale) read served from the local state of the first configured
    /// endpoint, falling back to the others if it is unreachable.
    pub async fn get_serializable(&self, key: impl Into<Bytes>) -> Result<Option<KeyValue>, Error> {
        let msg = pb::GetRequest { shard_id: self.shard(), key: key.into(), serializable: true };
        self.get_routed(msg, Route::First).await
    }

    async fn get_routed(&self, msg: pb::GetRequest, route: Route) -> Result<Option<KeyValue>, Error> {
        let response = self
            .execute("get", OpKind::Read, route, |ch, t| {
                let mut kv = self.kv(ch);
                let req = request(msg.clone(), t);
                async move { kv.get(req).await }
            })
            .await?;
        Ok(response.kv)
    }

    /// Reads one key from exactly `endpoint`, with no redirect and no retry. A linearizable
    /// read on a follower fails with [`Error::NotLeader`].
    pub async fn get_from(
        &self,
        endpoint: &str,
        key: impl Into<Bytes>,
        serializable: bool,
    ) -> Result<Option<KeyValue>, Error> {
        let msg = pb::GetRequest { shard_id: self.shard(), key: key.into(), serializable };
        let response = self
            .single("get", endpoint, |ch, t| {
                let mut kv = self.kv(ch);
                async move { kv.get(request(msg, t)).await }
            })
            .await?;
        Ok(response.kv)
    }

    /// Writes `value` under `key`. Never retried once it may have reached a leader: a lost
    /// answer is [`Error::OutcomeUnknown`].
    pub async fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<PutResult, Error> {
        self.put_with(key, value, PutOptions::default()).await
    }

    /// Like [`put`](Self::put), also returning the previous key-value.
    pub async fn put_returning_prev(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<PutResult, Error> {
        self.put_with(key, value, PutOptions { prev_kv: true, ..PutOptions::default() }).await
    }

    /// [`put`](Self::put) with options: attach the key to a lease, or give it a TTL of its own
    /// (not both), and/or return the previous key-value. Keys beginning with byte 0xff are
    /// refused (`RESERVED_KEY`); a missing lease is `LEASE_NOT_FOUND`.
    pub async fn put_with(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        options: PutOptions,
    ) -> Result<PutResult, Error> {
        let msg = options.to_request(self.shard(), key.into(), value.into())?;
        let response = self
            .execute("put", OpKind::Write, Route::Leader, |ch, t| {
                let mut kv = self.kv(ch);
                let req = request(msg.clone(), t);
                async move { kv.put(req).await }
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
        let msg = pb::DeleteRequest { shard_id: self.shard(), key, prev_kv };
        let response = self
            .execute("delete", OpKind::Write, Route::Leader, |ch, t| {
                let mut kv = self.kv(ch);
                let req = request(msg.clone(), t);
                async move { kv.delete(req).await }
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
        let msg = pb::CompareAndSwapRequest {
            shard_id: self.shard(),
            key: key.into(),
            expected_mod_revision,
            expected_value,
            new_value: new_value.into(),
        };
        let response = self
            .execute("compare_and_swap", OpKind::Write, Route::Leader, |ch, t| {
                let mut kv = self.kv(ch);
                let req = request(msg.clone(), t);
                async move { kv.compare_and_swap(req).await }
            })
            .await?;
        Ok(response.into())
    }

    /// Reads one page of keys in order. Linearizable unless `options.serializable`.
    pub async fn range(&self, options: RangeOptions) -> Result<RangePage, Error> {
        let msg = options.to_request(self.shard());
        let route = if options.serializable { Route::First } else { Route::Leader };
        let response = self
            .execute("range", OpKind::Read, route, |ch, t| {
                let mut kv = self.kv(ch);
                let req = request(msg.clone(), t);
                async move { kv.range(req).await }
            })
            .await?;
        Ok(response.into())
    }

    /// The status of the node at `endpoint` (any endpoint, configured or not).
    pub async fn status(&self, endpoint: &str) -> Result<pb::StatusResponse, Error> {
        let max = self.inner.config.max_message_bytes;
        self.single("status", endpoint, |ch, t| {
            let mut cluster = ClusterClient::new(ch).max_decoding_message_size(max);
            async move { cluster.status(request(pb::StatusRequest {}, t)).await }
        })
        .await
    }

    /// Removes the node named `name` from the cluster's membership (scale-down). The leader
    /// refuses the last voter (`LAST_VOTER`) and unknown names (`UNKNOWN_NODE`). Returns the
    /// removed node's id and the members left. Removing a member that is already gone is
    /// `UNKNOWN_NODE`, so a retried decommission never removes a second node.
    pub async fn decommission(&self, name: &str) -> Result<pb::DecommissionResponse, Error> {
        let msg = pb::DecommissionRequest { name: name.to_string() };
        self.execute("decommission", OpKind::Write, Route::Leader, |ch, t| {
            let mut cluster = ClusterClient::new(ch);
            let req = request(msg.clone(), t);
            async move { cluster.decommission(req).await }
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
