//! The watch vocabulary: what a watch covers and where it starts ([`WatchTarget`],
//! [`WatchOptions`]), and what it delivers ([`Event`], [`WatchUpdate`]). A leaf: the merging
//! [`Watcher`](crate::Watcher) (`watch.rs`) and the per-shard streams (`watch_shard.rs`) both
//! speak it.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use hypercache_proto::v1 as pb;

use crate::error::Error;
use crate::ids::ShardId;
use crate::types::{KeyValue, RangeOptions};

/// What a watch covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchTarget {
    Key(Bytes),
    Prefix(Bytes),
    /// `[start, end)`; an empty `end` means to the end of the keyspace.
    Range {
        start: Bytes,
        end: Bytes,
    },
}

/// Options of [`Client::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOptions {
    pub target: WatchTarget,
    /// First revision to deliver, for a watch that covers one shard; 0 means "changes from now
    /// on" (see the module documentation).
    pub start_revision: u64,
    /// First revision to deliver per shard, for a watch that covers several shards; shards not
    /// listed start from now.
    pub start_revisions: BTreeMap<ShardId, u64>,
    /// Fill [`Event::prev_kv`].
    pub prev_kv: bool,
    /// How often an idle stream gets a progress notification; `None` for the server default.
    pub progress_interval: Option<Duration>,
}

impl WatchOptions {
    fn new(target: WatchTarget) -> Self {
        WatchOptions {
            target,
            start_revision: 0,
            start_revisions: BTreeMap::new(),
            prev_kv: false,
            progress_interval: None,
        }
    }

    pub fn key(key: impl Into<Bytes>) -> Self {
        WatchOptions::new(WatchTarget::Key(key.into()))
    }

    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        WatchOptions::new(WatchTarget::Prefix(prefix.into()))
    }

    pub fn range(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Self {
        WatchOptions::new(WatchTarget::Range { start: start.into(), end: end.into() })
    }

    /// See [`WatchOptions::start_revision`] (one-shard watches).
    pub fn start_revision(mut self, revision: u64) -> Self {
        self.start_revision = revision;
        self
    }

    /// See [`WatchOptions::start_revisions`] (multi-shard watches).
    pub fn start_revisions(mut self, revisions: BTreeMap<ShardId, u64>) -> Self {
        self.start_revisions = revisions;
        self
    }

    /// Starts every shard right after the revision given for it (typically
    /// [`Watcher::last_revisions`] of an earlier watcher); works for one-shard watches too.
    pub fn resume_after(self, last: &BTreeMap<ShardId, u64>) -> Self {
        self.start_revisions(last.iter().map(|(shard, revision)| (*shard, revision + 1)).collect())
    }

    pub fn prev_kv(mut self, prev_kv: bool) -> Self {
        self.prev_kv = prev_kv;
        self
    }

    pub fn progress_interval(mut self, interval: Duration) -> Self {
        self.progress_interval = Some(interval);
        self
    }

    pub(crate) fn to_request(&self, shard: ShardId, start_revision: u64) -> pb::WatchRequest {
        let (key, prefix, start, end) = match &self.target {
            WatchTarget::Key(key) => (key.clone(), Bytes::new(), Bytes::new(), Bytes::new()),
            WatchTarget::Prefix(prefix) => (Bytes::new(), prefix.clone(), Bytes::new(), Bytes::new()),
            WatchTarget::Range { start, end } => (Bytes::new(), Bytes::new(), start.clone(), end.clone()),
        };
        let progress_interval_ms =
            self.progress_interval.map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1));
        pb::WatchRequest {
            shard_id: shard.0,
            key,
            prefix,
            start,
            end,
            start_revision,
            prev_kv: self.prev_kv,
            progress_interval_ms,
        }
    }

    /// A one-key read of the same target: its header carries the shard's current revision.
    pub(crate) fn probe(&self) -> RangeOptions {
        let mut options = match &self.target {
            WatchTarget::Key(key) => {
                let mut end = key.to_vec();
                end.push(0);
                RangeOptions::between(key.clone(), end)
            }
            WatchTarget::Prefix(prefix) => RangeOptions::prefix(prefix.clone()),
            WatchTarget::Range { start, end } => RangeOptions::between(start.clone(), end.clone()),
        };
        options.limit = 1;
        options.keys_only = true;
        options
    }

    /// The shards the watch covers and where each starts (0: now), under a cluster of
    /// `shard_count` shards mapped by `shard_of`.
    pub(crate) fn plan(&self, shard_count: u32, shards: Vec<ShardId>) -> Result<Vec<(ShardId, u64)>, Error> {
        if let Some(bad) = self.start_revisions.keys().find(|s| s.0 >= shard_count) {
            return Err(Error::config(format!(
                "watch: start_revisions names shard {bad}, but the cluster has {shard_count} shard(s)"
            )));
        }
        if shards.len() > 1 && self.start_revision != 0 {
            return Err(Error::config(format!(
                "watch: start_revision {} names a position in one shard's history, but this watch covers {} \
                 shards; give per-shard positions with WatchOptions::start_revisions",
                self.start_revision,
                shards.len()
            )));
        }
        Ok(shards
            .into_iter()
            .map(|shard| {
                let listed = self.start_revisions.get(&shard).copied().unwrap_or(0);
                (shard, if self.start_revision != 0 { self.start_revision } else { listed })
            })
            .collect())
    }
}

/// Whether an event wrote or deleted its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change. For a delete, `kv` holds the key with `mod_revision` = the delete's revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The shard the key lives in; [`Event::revision`] is that shard's.
    pub shard: ShardId,
    pub kind: EventKind,
    pub kv: KeyValue,
    /// The key before the change, when asked for and it existed.
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    /// The revision of the change, in its shard.
    pub fn revision(&self) -> u64 {
        self.kv.mod_revision
    }

    pub(crate) fn from_wire(shard: ShardId, e: pb::Event) -> Self {
        let kind = match pb::event::Type::try_from(e.r#type) {
            Ok(pb::event::Type::Delete) => EventKind::Delete,
            _ => EventKind::Put,
        };
        Event { shard, kind, kv: e.kv.unwrap_or_default(), prev_kv: e.prev_kv }
    }
}

/// What [`Watcher::next`] yields; each update comes from one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchUpdate {
    /// Events of one or more whole revisions of `shard`, in order; `revision` is the last one's.
    Events { shard: ShardId, revision: u64, events: Vec<Event> },
    /// Every event of `shard` up to `revision` has been delivered.
    Progress { shard: ShardId, revision: u64 },
}

impl WatchUpdate {
    pub fn shard(&self) -> ShardId {
        match self {
            WatchUpdate::Events { shard, .. } | WatchUpdate::Progress { shard, .. } => *shard,
        }
    }

    /// The shard's revision up to which everything has now been delivered.
    pub fn revision(&self) -> u64 {
        match self {
            WatchUpdate::Events { revision, .. } | WatchUpdate::Progress { revision, .. } => *revision,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_start_revision_cannot_position_several_shards() {
        let options = WatchOptions::prefix("p/").start_revision(5);
        let shards = |ids: &[u32]| ids.iter().copied().map(ShardId).collect::<Vec<_>>();
        assert_eq!(options.plan(4, shards(&[2])).expect("one shard"), vec![(ShardId(2), 5)]);
        let err = options.plan(4, shards(&[0, 1, 2, 3])).expect_err("four shards");
        assert!(err.to_string().contains("start_revisions"), "{err}");

        let positions = BTreeMap::from([(ShardId(1), 9), (ShardId(3), 20)]);
        let resumed = WatchOptions::prefix("p/").resume_after(&positions);
        assert_eq!(
            resumed.plan(4, shards(&[0, 1, 2, 3])).expect("valid"),
            vec![(ShardId(0), 0), (ShardId(1), 10), (ShardId(2), 0), (ShardId(3), 21)]
        );
        let err =
            WatchOptions::prefix("p/").start_revisions(BTreeMap::from([(ShardId(7), 1)])).plan(4, shards(&[0, 1]));
        assert!(err.expect_err("no shard 7").to_string().contains("shard 7"));
    }

    #[test]
    fn requests_name_one_target_and_probes_read_one_key() {
        let e =
            Event::from_wire(ShardId(3), pb::Event { r#type: pb::event::Type::Delete as i32, kv: None, prev_kv: None });
        assert_eq!((e.shard, e.kind), (ShardId(3), EventKind::Delete));
        let req = WatchOptions::prefix("p/").prev_kv(true).to_request(ShardId(2), 12);
        assert_eq!(
            (req.shard_id, req.prefix.as_ref(), req.key.is_empty(), req.start_revision, req.prev_kv),
            (2, &b"p/"[..], true, 12, true)
        );
        let probe = WatchOptions::key("k").probe();
        assert_eq!((probe.start.as_ref(), probe.end.as_ref(), probe.limit), (&b"k"[..], &b"k\0"[..], 1));
    }
}
