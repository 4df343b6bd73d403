//! One shard's leg of a [`Watcher`](crate::Watcher): a resuming stream that delivers the
//! shard's events exactly once and in revision order (see `watch.rs` for the guarantees), run as
//! a task that hands its updates to the watcher.

use futures::FutureExt;
use hypercache_proto::v1 as pb;
use tokio::sync::mpsc;
use tonic::codec::Streaming;

use crate::client::Client;
use crate::error::Error;
use crate::ids::ShardId;
use crate::stream::{next_message, open, reconnect_delay, Next};
use crate::target::{Group, Target};
use crate::types::revision;
use crate::watch_types::{Event, WatchOptions, WatchUpdate};

pub(crate) struct ShardWatch {
    client: Client,
    options: WatchOptions,
    shard: ShardId,
    /// The last revision fully delivered; `None` until "now" has been resolved.
    last: Option<u64>,
    stream: Option<(String, Streaming<pb::WatchResponse>)>,
    avoid: Option<String>,
    /// Consecutive breaks without a message in between.
    failures: u32,
}

impl ShardWatch {
    /// A leg starting at revision `start` of `shard` (0: from now).
    pub(crate) fn new(client: Client, options: WatchOptions, shard: ShardId, start: u64) -> Self {
        ShardWatch { client, options, shard, last: start.checked_sub(1), stream: None, avoid: None, failures: 0 }
    }

    /// Sends every update (and every error) to `updates` until an error that cannot be resumed,
    /// or until the watcher is gone. A retryable error is handed over and the leg keeps
    /// trying: the watcher's next call picks up where it stopped.
    pub(crate) async fn run(mut self, updates: mpsc::Sender<Result<WatchUpdate, Error>>) {
        loop {
            let item = self.next().await;
            let fatal = matches!(&item, Err(err) if !err.is_retryable());
            if updates.send(item).await.is_err() || fatal {
                return;
            }
        }
    }

    async fn next(&mut self) -> Result<WatchUpdate, Error> {
        loop {
            let Some((endpoint, stream)) = &mut self.stream else {
                self.connect().await?;
                continue;
            };
            match next_message(&self.client, Group::Shard(self.shard), endpoint, stream).await {
                Next::Message(response) => {
                    self.failures = 0;
                    let last = self.last.get_or_insert(0);
                    if let Some(update) = accept(self.shard, last, response) {
                        return Ok(update);
                    }
                }
                Next::Failed(err) if err.watcher_too_slow().is_some() => {
                    tracing::debug!(shard = self.shard.0, last = ?self.last, error = %err, "watch fell behind; resuming");
                    self.drop_stream();
                }
                Next::Failed(err) => {
                    self.stream = None;
                    return Err(err);
                }
                Next::Broken(why) => {
                    tracing::debug!(shard = self.shard.0, last = ?self.last, %why, "watch stream broke; resuming");
                    self.drop_stream();
                    self.failures = self.failures.saturating_add(1);
                    if self.failures >= self.client.config().max_attempts {
                        return Err(Error::Unavailable {
                            message: format!(
                                "watch of shard {}: {} streams in a row broke; last: {why}",
                                self.shard, self.failures
                            ),
                        });
                    }
                }
            }
        }
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
                let now = self.client.range_shard(self.shard, &self.options.probe()).await?.revision;
                *self.last.insert(now)
            }
        };
        let msg = self.options.to_request(self.shard, last + 1);
        let client = &self.client;
        let opened = open(client, "watch", Target::Shard(self.shard), self.avoid.clone(), |ch, shard| {
            let mut kv = client.kv(ch);
            let req = tonic::Request::new(pb::WatchRequest { shard_id: shard.0, ..msg.clone() });
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
fn accept(shard: ShardId, last: &mut u64, response: pb::WatchResponse) -> Option<WatchUpdate> {
    let header_revision = revision(response.header.as_ref());
    if response.progress && response.events.is_empty() {
        *last = (*last).max(header_revision);
        return Some(WatchUpdate::Progress { shard, revision: *last });
    }
    let floor = *last;
    let events: Vec<Event> = response
        .events
        .into_iter()
        .map(|e| Event::from_wire(shard, e))
        .filter(|event| event.revision() > floor)
        .collect();
    let newest = events.iter().map(Event::revision).max()?;
    *last = newest;
    Some(WatchUpdate::Events { shard, revision: newest, events })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    use crate::types::KeyValue;

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
        assert_eq!(accept(ShardId(1), &mut last, events(&[4, 5])), None);
        assert_eq!(last, 5);
        match accept(ShardId(1), &mut last, events(&[5, 6, 6, 7])) {
            Some(WatchUpdate::Events { shard: ShardId(1), revision: 7, events }) => {
                assert_eq!(events.iter().map(Event::revision).collect::<Vec<_>>(), vec![6, 6, 7]);
                assert!(events.iter().all(|e| e.shard == ShardId(1)));
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
        let at = |revision| Some(WatchUpdate::Progress { shard: ShardId(0), revision });
        assert_eq!(accept(ShardId(0), &mut last, progress(9)), at(9));
        assert_eq!(accept(ShardId(0), &mut last, progress(3)), at(9));
        assert_eq!(last, 9);
    }

    #[test]
    fn deletes_are_recognised() {
        let e = Event::from_wire(ShardId(2), event(pb::event::Type::Delete, "gone", 4));
        assert_eq!((e.kind, e.revision(), e.shard), (crate::watch::EventKind::Delete, 4, ShardId(2)));
    }
}
