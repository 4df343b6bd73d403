//! The resuming KV watcher: every event exactly once, in revision order, across reconnects.
//!
//! # Guarantees
//!
//! The server streams put/delete events in revision order and never splits the events of one
//! revision across messages. The [`Watcher`] remembers the last revision it has *fully*
//! delivered (the revision of the last event handed out, or the revision a progress
//! notification vouched for). When the stream breaks (connection loss, the node shutting down,
//! `NOT_LEADER`, `WATCHER_TOO_SLOW`), it reopens on another endpoint (any node serves watches;
//! the leader is preferred because it is the most up to date) from `last + 1`, and drops,
//! defensively, any event whose revision is not above `last`. So nothing is skipped and nothing
//! is delivered twice, whichever node serves the next stream.
//!
//! `start_revision = 0` means "changes from now on": before the first stream the watcher reads
//! the shard's current revision `R` through the leader and starts at `R + 1`, so that even a
//! break before the first event resumes without a gap.
//!
//! # Errors
//!
//! `COMPACTED` (the node no longer holds the history needed to resume; the error carries the
//! oldest revision available, see [`Error::compacted`]) cannot be resumed and is returned.
//! Failing to reconnect within the client's request deadline is returned as a retryable error;
//! the watcher keeps its position, so calling [`Watcher::next`] again continues exactly where it
//! stopped.

use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use hypercache_proto::v1 as pb;
use tonic::codec::Streaming;

use crate::client::Client;
use crate::error::Error;
use crate::stream::{next_message, open, reconnect_delay, Next};
use crate::types::{revision, KeyValue, RangeOptions};

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
    /// First revision to deliver; 0 means "changes from now on" (see the module documentation).
    pub start_revision: u64,
    /// Fill [`Event::prev_kv`].
    pub prev_kv: bool,
    /// How often an idle stream gets a progress notification; `None` for the server default.
    pub progress_interval: Option<Duration>,
}

impl WatchOptions {
    fn new(target: WatchTarget) -> Self {
        WatchOptions { target, start_revision: 0, prev_kv: false, progress_interval: None }
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

    pub fn start_revision(mut self, revision: u64) -> Self {
        self.start_revision = revision;
        self
    }

    pub fn prev_kv(mut self, prev_kv: bool) -> Self {
        self.prev_kv = prev_kv;
        self
    }

    pub fn progress_interval(mut self, interval: Duration) -> Self {
        self.progress_interval = Some(interval);
        self
    }

    fn to_request(&self, shard_id: u32, start_revision: u64) -> pb::WatchRequest {
        let (key, prefix, start, end) = match &self.target {
            WatchTarget::Key(key) => (key.clone(), Bytes::new(), Bytes::new(), Bytes::new()),
            WatchTarget::Prefix(prefix) => (Bytes::new(), prefix.clone(), Bytes::new(), Bytes::new()),
            WatchTarget::Range { start, end } => (Bytes::new(), Bytes::new(), start.clone(), end.clone()),
        };
        let progress_interval_ms =
            self.progress_interval.map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1));
        pb::WatchRequest {
            shard_id,
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
    fn probe(&self) -> RangeOptions {
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
    pub kind: EventKind,
    pub kv: KeyValue,
    /// The key before the change, when asked for and it existed.
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    /// The revision of the change.
    pub fn revision(&self) -> u64 {
        self.kv.mod_revision
    }
}

impl From<pb::Event> for Event {
    fn from(e: pb::Event) -> Self {
        let kind = match pb::event::Type::try_from(e.r#type) {
            Ok(pb::event::Type::Delete) => EventKind::Delete,
            _ => EventKind::Put,
        };
        Event { kind, kv: e.kv.unwrap_or_default(), prev_kv: e.prev_kv }
    }
}

/// What [`Watcher::next`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchUpdate {
    /// Events of one or more whole revisions, in order; `revision` is the last one's.
    Events { revision: u64, events: Vec<Event> },
    /// Every event up to `revision` has been delivered.
    Progress { revision: u64 },
}

/// A resuming watch; see the module documentation. Created by [`Client::watch`].
pub struct Watcher {
    client: Client,
    options: WatchOptions,
    /// The last revision fully delivered; `None` until "now" has been resolved.
    last: Option<u64>,
    stream: Option<(String, Streaming<pb::WatchResponse>)>,
    avoid: Option<String>,
    /// Consecutive breaks without a message in between.
    failures: u32,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("options", &self.options)
            .field("last", &self.last)
            .field("endpoint", &self.stream.as_ref().map(|(e, _)| e))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A watcher for `options`; nothing is sent until the first [`Watcher::next`].
    pub fn watch(&self, options: WatchOptions) -> Watcher {
        let last = options.start_revision.checked_sub(1);
        Watcher { client: self.clone(), options, last, stream: None, avoid: None, failures: 0 }
    }
}

impl Watcher {
    /// The last revision fully delivered (0 before anything is known).
    pub fn last_revision(&self) -> u64 {
        self.last.unwrap_or(0)
    }

    /// The next batch of events or progress notification. See the module documentation for
    /// which errors can be followed by another call.
    pub async fn next(&mut self) -> Result<WatchUpdate, Error> {
        loop {
            let Some((endpoint, stream)) = &mut self.stream else {
                self.connect().await?;
                continue;
            };
            match next_message(&self.client, endpoint, stream).await {
                Next::Message(response) => {
                    self.failures = 0;
                    let last = self.last.get_or_insert(0);
                    if let Some(update) = accept(last, response) {
                        return Ok(update);
                    }
                }
                Next::Failed(err) if err.watcher_too_slow().is_some() => {
                    tracing::debug!(last = ?self.last, error = %err, "watch fell behind; resuming");
                    self.drop_stream();
                }
                Next::Failed(err) => {
                    self.stream = None;
                    return Err(err);
                }
                Next::Broken(why) => {
                    tracing::debug!(last = ?self.last, %why, "watch stream broke; resuming");
                    self.drop_stream();
                    self.failures = self.failures.saturating_add(1);
                    if self.failures >= self.client.config().max_attempts {
                        return Err(Error::Unavailable {
                            message: format!("watch: {} streams in a row broke; last: {why}", self.failures),
                        });
                    }
                }
            }
        }
    }

    /// The watcher as a `Stream`, ending after the first error that [`Error::is_retryable`]
    /// does not cover.
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<WatchUpdate, Error>> + Send {
        futures::stream::unfold(Some(self), |watcher| async move {
            let mut watcher = watcher?;
            let item = watcher.next().await;
            let keep = item.as_ref().map_or_else(Error::is_retryable, |_| true);
            Some((item, keep.then_some(watcher)))
        })
    }

    fn drop_stream(&mut self) {
        self.avoid = self.stream.take().map(|(endpoint, _)| endpoint);
    }

    async fn connect(&mut self) -> Result<(), Error> {
        if self.failures > 0 {
            tokio::time::sleep(reconnect_delay(&self.client, self.failures)).await;
        }
        let last = match self.last {
            Some(last) => last,
            None => {
                let now = self.client.range(self.options.probe()).await?.revision;
                *self.last.insert(now)
            }
        };
        let msg = self.options.to_request(self.client.shard(), last + 1);
        let client = &self.client;
        let opened = open(client, "watch", self.avoid.clone(), |ch| {
            let mut kv = client.kv(ch);
            let req = tonic::Request::new(msg.clone());
            async move { kv.watch(req).await }.boxed()
        })
        .await;
        match opened {
            Ok(stream) => {
                self.stream = Some(stream);
                Ok(())
            }
            Err(err) => {
                self.failures = self.failures.saturating_add(1);
                Err(err)
            }
        }
    }
}

/// Advances `last` past `response` and returns what is new in it, if anything: events at or
/// below `last` were delivered before (by an earlier stream) and are dropped.
fn accept(last: &mut u64, response: pb::WatchResponse) -> Option<WatchUpdate> {
    let header_revision = revision(response.header.as_ref());
    if response.progress && response.events.is_empty() {
        *last = (*last).max(header_revision);
        return Some(WatchUpdate::Progress { revision: *last });
    }
    let floor = *last;
    let events: Vec<Event> =
        response.events.into_iter().map(Event::from).filter(|event| event.revision() > floor).collect();
    let newest = events.iter().map(Event::revision).max()?;
    *last = newest;
    Some(WatchUpdate::Events { revision: newest, events })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: pb::event::Type, key: &'static str, revision: u64) -> pb::Event {
        pb::Event {
            r#type: kind as i32,
            kv: Some(KeyValue {
                key: Bytes::from_static(key.as_bytes()),
                mod_revision: revision,
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    fn events(revisions: &[u64]) -> pb::WatchResponse {
        pb::WatchResponse {
            header: Some(pb::ResponseHeader { revision: 100, ..Default::default() }),
            events: revisions.iter().map(|r| event(pb::event::Type::Put, "k", *r)).collect(),
            progress: false,
        }
    }

    #[test]
    fn already_delivered_revisions_are_dropped() {
        let mut last = 5;
        assert_eq!(accept(&mut last, events(&[4, 5])), None);
        assert_eq!(last, 5);
        match accept(&mut last, events(&[5, 6, 6, 7])) {
            Some(WatchUpdate::Events { revision: 7, events }) => {
                assert_eq!(events.iter().map(Event::revision).collect::<Vec<_>>(), vec![6, 6, 7]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(last, 7, "the header revision (100) is not trusted for event batches");
    }

    #[test]
    fn progress_advances_but_never_rewinds() {
        let mut last = 7;
        let progress = |revision| pb::WatchResponse {
            header: Some(pb::ResponseHeader { revision, ..Default::default() }),
            events: vec![],
            progress: true,
        };
        assert_eq!(accept(&mut last, progress(9)), Some(WatchUpdate::Progress { revision: 9 }));
        assert_eq!(accept(&mut last, progress(3)), Some(WatchUpdate::Progress { revision: 9 }));
        assert_eq!(last, 9);
    }

    #[test]
    fn deletes_are_recognised_and_requests_name_one_target() {
        let e = Event::from(event(pb::event::Type::Delete, "gone", 4));
        assert_eq!((e.kind, e.revision()), (EventKind::Delete, 4));
        let req = WatchOptions::prefix("p/").prev_kv(true).to_request(0, 12);
        assert_eq!(
            (req.prefix.as_ref(), req.key.is_empty(), req.start_revision, req.prev_kv),
            (&b"p/"[..], true, 12, true)
        );
        let probe = WatchOptions::key("k").probe();
        assert_eq!((probe.start.as_ref(), probe.end.as_ref(), probe.limit), (&b"k"[..], &b"k\0"[..], 1));
    }
}
