//! Server streams fed by the watch hub: KV.Watch and the typed streams (registry watch,
//! assignment watch, election observe) all run one forwarding task built here.
//!
//! The task sends the catch-up events, then live batches, each converted to the stream's message
//! type; idle streams get progress notifications (only when nothing is queued, checked under the
//! hub lock, so "progress at R" really means every event up to R was sent). When the hub cuts the
//! watcher off, the stream ends with WATCHER_TOO_SLOW (or WATCH_RESET) naming the revision to
//! resume from. The task ends when the client goes away, and deregisters the watcher.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::error::ServiceError;
use crate::machine::overlay::Event;
use crate::shard::Shard;
use crate::watch_hub::{CutOff, Subscription};

/// Messages queued towards one gRPC stream; a client that stops reading fills this, then the
/// hub queue, and is then cut off.
const OUT_QUEUE: usize = 16;
/// Catch-up events per message at most (a message never splits a revision).
const CATCH_UP_CHUNK: usize = 512;

pub type Out<T> = ReceiverStream<Result<T, Status>>;

/// Turns events into stream messages; `None` means "nothing for this client".
pub trait Convert<T>: Send + 'static {
    fn events(&mut self, shard: &Shard, events: &[Event]) -> Result<Option<T>, ServiceError>;
    /// A progress notification at `revision`, if this stream has them.
    fn progress(&mut self, shard: &Shard, revision: u64) -> Option<T>;
}

/// Splits `events` into chunks of about `max` events without splitting a revision.
fn chunks(events: &[Event], max: usize) -> Vec<&[Event]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < events.len() {
        let mut end = (start + max).min(events.len());
        while end < events.len() && events[end].revision == events[end - 1].revision {
            end += 1;
        }
        out.push(&events[start..end]);
        start = end;
    }
    out
}

/// Starts the forwarding task. `first` is sent before anything else (a snapshot message).
pub fn forward<T, C>(
    shard: Arc<Shard>,
    mut sub: Subscription,
    first: Option<T>,
    mut convert: C,
    progress_every: Duration,
) -> Out<T>
where
    T: Send + 'static,
    C: Convert<T>,
{
    let (tx, rx) = mpsc::channel(OUT_QUEUE);
    tokio::spawn(async move {
        let shard_id = shard.id;
        // The last revision whose events were all sent (progress counts too).
        let mut last = 0u64;
        let result: Result<(), ServiceError> = async {
            if let Some(m) = first {
                if tx.send(Ok(m)).await.is_err() {
                    return Ok(());
                }
            }
            let catch_up = std::mem::take(&mut sub.catch_up);
            for chunk in chunks(&catch_up, CATCH_UP_CHUNK) {
                if let Some(m) = convert.events(&shard, chunk)? {
                    if tx.send(Ok(m)).await.is_err() {
                        return Ok(());
                    }
                }
                last = chunk.last().map_or(last, |e| e.revision);
            }
            let mut ticker = tokio::time::interval(progress_every);
            ticker.tick().await;
            let mut idle = true;
            loop {
                tokio::select! {
                    batch = sub.rx.recv() => {
                        let Some(mut batch) = batch else {
                            return Err(match sub.cut_off() {
                                CutOff::TooSlow => ServiceError::WatcherTooSlow { shard: shard_id, resume: last + 1 },
                                CutOff::Reset => ServiceError::WatchReset { shard: shard_id, resume: last + 1 },
                                CutOff::None => ServiceError::ShuttingDown { node: shard.node_id },
                            });
                        };
                        idle = false;
                        // Whatever else is already queued goes into the same message: under load
                        // one message (and one encode and frame) per revision per watcher is what
                        // falls behind. Batches hold whole revisions, so none is split.
                        while batch.len() < CATCH_UP_CHUNK {
                            match sub.rx.try_recv() {
                                Ok(more) => batch.extend(more),
                                Err(_) => break,
                            }
                        }
                        if let Some(m) = convert.events(&shard, &batch)? {
                            if tx.send(Ok(m)).await.is_err() {
                                return Ok(());
                            }
                        }
                        last = batch.last().map_or(last, |e| e.revision);
                    }
                    _ = ticker.tick() => {
                        if !idle {
                            idle = true;
                            continue;
                        }
                        let revision = {
                            let hub = shard.hub.lock();
                            sub.rx.is_empty().then_some(hub.revision)
                        };
                        if let Some(revision) = revision.filter(|r| *r > last) {
                            if let Some(m) = convert.progress(&shard, revision) {
                                if tx.send(Ok(m)).await.is_err() {
                                    return Ok(());
                                }
                            }
                            last = revision;
                        }
                    }
                    _ = tx.closed() => return Ok(()),
                }
            }
        }
        .await;
        shard.hub.remove(sub.id);
        if let Err(e) = result {
            let _ = tx.send(Err(e.into_status())).await;
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::overlay::EventKind;
    use crate::types::KeyValue;
    use bytes::Bytes;

    fn ev(rev: u64) -> Event {
        let kv = KeyValue {
            key: Bytes::from_static(b"k"),
            value: Bytes::new(),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            lease: crate::types::LeaseId::NONE,
        };
        Event { revision: rev, kind: EventKind::Put, kv, prev: None }
    }

    #[test]
    fn chunks_never_split_a_revision() {
        let events: Vec<Event> = [1, 2, 2, 2, 3, 4, 4].into_iter().map(ev).collect();
        let sizes: Vec<Vec<u64>> = chunks(&events, 2).iter().map(|c| c.iter().map(|e| e.revision).collect()).collect();
        assert_eq!(sizes, vec![vec![1, 2, 2, 2], vec![3, 4, 4]]);
    }
}
