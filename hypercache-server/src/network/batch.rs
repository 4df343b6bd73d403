//! Node-level batching of Raft appends across shards, sending side.
//!
//! openraft 0.9 runs one replication task per shard and target, and each sends its AppendEntries
//! (heartbeats included) through its own `RaftNetwork`. Sent one by one, 16 shards cost a node
//! pair 16 RPCs where one would do, and the follower's appends arrive one at a time, so its
//! group-commit flusher often flushes for one or two of them. Measured on the 3-node cluster, that
//! per-entry cost (flushes, RPCs, task wake-ups) made 16 shards cost 3-4x more CPU per write than
//! one (docs/benchmarks.md).
//!
//! An [`AppendBatcher`] per peer collects what the node's shards have for that peer and sends it
//! as one `AppendBatch` call; the receiver hands every message to its shard at once, so their log
//! writes reach the flusher together. It batches the way the proposer does: a message that finds
//! a free slot leaves at once (no added latency when idle); while [`MAX_IN_FLIGHT`] calls are on
//! the wire, new messages queue and leave together in the next one. So batches grow with load.
//!
//! A peer that does not know `AppendBatch` (an older version, mid-upgrade) answers
//! UNIMPLEMENTED; its batches are then sent as single AppendEntries for [`LEGACY_RETRY`] before
//! `AppendBatch` is tried again.

use hypercache_proto::poison::lock;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hypercache_proto::raft::v1::raft_client::RaftClient;
use hypercache_proto::raft::v1::{RaftBatch, RaftMessage, RaftReply};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::batching::BatchQueue;

/// Batch calls allowed on the wire to one peer at once.
pub const MAX_IN_FLIGHT: usize = 2;
/// Messages in one batch at most.
pub const MAX_BATCH_MESSAGES: usize = 64;
/// How long a peer that answered UNIMPLEMENTED gets single AppendEntries before `AppendBatch`
/// is tried again.
pub const LEGACY_RETRY: Duration = Duration::from_secs(10);

/// What a message's sender gets back: the response payload, or the status that explains why
/// there is none (the same statuses a plain AppendEntries call would give).
pub type Reply = Result<bytes::Bytes, Status>;

struct Pending {
    msg: RaftMessage,
    /// The caller gives up at this instant; a batch is abandoned when all of its callers have.
    deadline: Instant,
    reply: oneshot::Sender<Reply>,
}

/// Handle to one peer's batching task; the task ends when every handle is dropped.
#[derive(Clone)]
pub struct AppendBatcher {
    tx: mpsc::UnboundedSender<Pending>,
}

impl AppendBatcher {
    /// Spawns the batching task for the peer behind `channel` on the current Tokio runtime.
    /// A batch's messages add up to at most `max_message_bytes / 2` of payload, so the batch
    /// stays well inside the peer's message limit (a single larger message still goes, alone).
    pub fn spawn(addr: String, channel: Channel, max_message_bytes: usize) -> AppendBatcher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(addr, channel, rx, max_message_bytes));
        AppendBatcher { tx }
    }

    /// Sends one AppendEntries message (in some batch) and returns the peer's answer to it.
    pub async fn send(&self, msg: RaftMessage, deadline: Instant) -> Reply {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { msg, deadline, reply })
            .map_err(|_| Status::unavailable("peer connection closed: node is shutting down"))?;
        rx.await.unwrap_or_else(|_| Err(Status::unavailable("peer batcher stopped")))
    }
}

async fn run(addr: String, channel: Channel, rx: mpsc::UnboundedReceiver<Pending>, max_message_bytes: usize) {
    let addr: Arc<str> = addr.into();
    let max_batch_bytes = max_message_bytes / 2;
    let client = RaftClient::new(channel)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let legacy_until: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let mut queue = BatchQueue::new(rx);
    while let Some(first) = queue.first().await {
        // Wait for a slot first: messages that arrive meanwhile join this batch.
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let batch = queue.fill(first, MAX_BATCH_MESSAGES, max_batch_bytes, |p| p.msg.payload.len()).items;
        let client = client.clone();
        let legacy_until = legacy_until.clone();
        let addr = addr.clone();
        tokio::spawn(async move {
            send_batch(&addr, client, batch, &legacy_until).await;
            drop(permit);
        });
    }
}

async fn send_batch(
    addr: &str,
    client: RaftClient<Channel>,
    batch: Vec<Pending>,
    legacy_until: &Mutex<Option<Instant>>,
) {
    // Callers that already gave up need no answer; a batch nobody waits for is not sent.
    let batch: Vec<Pending> = batch.into_iter().filter(|p| !p.reply.is_closed()).collect();
    let Some(deadline) = batch.iter().map(|p| p.deadline).max() else { return };
    let legacy = matches!(
        *lock(legacy_until),
        Some(until) if Instant::now() < until
    );
    if batch.len() == 1 || legacy {
        // One message needs no envelope; an old peer only understands single messages.
        return send_singly(client, batch).await;
    }
    let messages: Vec<RaftMessage> = batch.iter().map(|p| p.msg.clone()).collect();
    let mut call = client.clone();
    let opened = match tokio::time::timeout_at(deadline, call.append_batch(RaftBatch { messages })).await {
        Err(_) => Err(Status::deadline_exceeded("append batch timed out")),
        Ok(Err(status)) if status.code() == Code::Unimplemented => {
            tracing::info!(peer = %addr, retry_after_s = LEGACY_RETRY.as_secs(),
                "peer does not support AppendBatch (older version); sending single AppendEntries");
            *lock(legacy_until) = Some(Instant::now() + LEGACY_RETRY);
            return send_singly(client, batch).await;
        }
        Ok(Err(status)) => Err(status),
        Ok(Ok(resp)) => Ok(resp.into_inner()),
    };
    // Each caller's reply slot, taken when its answer arrives.
    let mut waiting: Vec<Option<Pending>> = batch.into_iter().map(Some).collect();
    let ended = match opened {
        Err(status) => status,
        Ok(mut replies) => loop {
            match tokio::time::timeout_at(deadline, replies.message()).await {
                Err(_) => break Status::deadline_exceeded("append batch timed out"),
                Ok(Err(status)) => break status,
                Ok(Ok(None)) => break Status::internal("peer ended the append batch without answering every message"),
                Ok(Ok(Some(r))) => {
                    let slot = usize::try_from(r.index).ok().and_then(|i| waiting.get_mut(i)).and_then(Option::take);
                    match slot {
                        Some(p) => {
                            let _ = p.reply.send(reply_of(p.msg.shard_id, r));
                        }
                        None => {
                            tracing::warn!(peer = %addr, index = r.index, "append batch reply for no waiting message")
                        }
                    }
                    if waiting.iter().all(Option::is_none) {
                        return;
                    }
                }
            }
        },
    };
    for p in waiting.into_iter().flatten() {
        let _ = p.reply.send(Err(ended.clone()));
    }
}

/// One AppendEntries call per message, all at once.
async fn send_singly(client: RaftClient<Channel>, batch: Vec<Pending>) {
    let calls = batch.into_iter().map(|p| {
        let mut client = client.clone();
        async move {
            let outcome = tokio::time::timeout_at(p.deadline, client.append_entries(p.msg)).await;
            let reply = match outcome {
                Err(_) => Err(Status::deadline_exceeded("append timed out")),
                Ok(Err(status)) => Err(status),
                Ok(Ok(resp)) => Ok(resp.into_inner().payload),
            };
            let _ = p.reply.send(reply);
        }
    });
    futures::future::join_all(calls).await;
}

/// The reply to message `index` of a batch, from what its shard answered (the receiving side).
pub(crate) fn to_reply(index: u32, shard_id: u32, answer: Reply) -> RaftReply {
    match answer {
        Ok(payload) => RaftReply { index, shard_id, code: Code::Ok as i32, payload, message: String::new() },
        Err(status) => RaftReply {
            index,
            shard_id,
            code: status.code() as i32,
            payload: bytes::Bytes::new(),
            message: status.message().to_string(),
        },
    }
}

/// One message's answer from a batch reply (the sending side; the inverse of [`to_reply`]).
fn reply_of(shard_id: u32, r: RaftReply) -> Reply {
    if r.shard_id != shard_id {
        return Err(Status::internal(format!(
            "batch reply for shard {} answered a message of shard {shard_id}",
            r.shard_id
        )));
    }
    match Code::from(r.code) {
        Code::Ok => Ok(r.payload),
        code => Err(Status::new(code, r.message)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hypercache_proto::raft::v1::raft_server::{Raft as RaftRpc, RaftServer};
    use tonic::{Request, Response};

    use super::*;

    /// A peer that answers every append with its payload reversed, after `delay`; shard 99 is
    /// not hosted (NOT_FOUND), shard 88 answers after 500 ms, shard 77 after 2 s.
    struct Peer {
        batch_supported: bool,
        delay: Duration,
        /// Messages that reached the peer, counted on arrival.
        received: AtomicUsize,
        singles: AtomicUsize,
        batches: AtomicUsize,
        batched_messages: AtomicUsize,
    }

    impl Peer {
        async fn answer(&self, msg: RaftMessage) -> Result<bytes::Bytes, Status> {
            self.received.fetch_add(1, Ordering::SeqCst);
            match msg.shard_id {
                99 => return Err(Status::not_found("this node hosts no replica of shard 99")),
                88 => tokio::time::sleep(Duration::from_millis(500)).await,
                77 => tokio::time::sleep(Duration::from_secs(2)).await,
                _ => tokio::time::sleep(self.delay).await,
            }
            let mut v = msg.payload.to_vec();
            v.reverse();
            Ok(v.into())
        }
    }

    /// The gRPC face of a test [`Peer`].
    struct Remote(Arc<Peer>);

    #[tonic::async_trait]
    impl RaftRpc for Remote {
        async fn append_entries(&self, r: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
            self.0.singles.fetch_add(1, Ordering::SeqCst);
            let msg = r.into_inner();
            let shard_id = msg.shard_id;
            let payload = self.0.answer(msg).await?;
            Ok(Response::new(RaftMessage { shard_id, payload, ..Default::default() }))
        }
        type AppendBatchStream =
            std::pin::Pin<Box<dyn futures::Stream<Item = Result<RaftReply, Status>> + Send + 'static>>;

        async fn append_batch(&self, r: Request<RaftBatch>) -> Result<Response<Self::AppendBatchStream>, Status> {
            if !self.0.batch_supported {
                return Err(Status::unimplemented("no AppendBatch here"));
            }
            let messages = r.into_inner().messages;
            self.0.batches.fetch_add(1, Ordering::SeqCst);
            self.0.batched_messages.fetch_add(messages.len(), Ordering::SeqCst);
            let peer = self.0.clone();
            let replies: futures::stream::FuturesUnordered<_> = messages
                .into_iter()
                .enumerate()
                .map(|(i, m)| {
                    let peer = peer.clone();
                    async move {
                        let shard_id = m.shard_id;
                        let index = i as u32;
                        Ok(to_reply(index, shard_id, peer.answer(m).await))
                    }
                })
                .collect();
            Ok(Response::new(Box::pin(replies)))
        }
        async fn vote(&self, _: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
            Err(Status::unimplemented("test peer"))
        }
        async fn pre_vote(&self, _: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
            Err(Status::unimplemented("test peer"))
        }
        async fn install_snapshot(
            &self,
            _: Request<tonic::Streaming<RaftMessage>>,
        ) -> Result<Response<RaftMessage>, Status> {
            Err(Status::unimplemented("test peer"))
        }
        async fn transfer_leader(&self, _: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
            Err(Status::unimplemented("test peer"))
        }
        async fn shard_op(&self, _: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
            Err(Status::unimplemented("test peer"))
        }
        async fn lease_ends(&self, _: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
            Err(Status::unimplemented("test peer"))
        }
    }

    async fn serve(batch_supported: bool) -> (Arc<Peer>, AppendBatcher) {
        let peer = Arc::new(Peer {
            batch_supported,
            delay: Duration::from_millis(20),
            received: AtomicUsize::new(0),
            singles: AtomicUsize::new(0),
            batches: AtomicUsize::new(0),
            batched_messages: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = RaftServer::new(Remote(peer.clone()));
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
        (peer, AppendBatcher::spawn(addr.to_string(), channel, 4 * 1024 * 1024))
    }

    fn msg(shard_id: u32, i: u32) -> RaftMessage {
        RaftMessage {
            shard_id,
            payload: format!("shard {shard_id} message {i}").into_bytes().into(),
            ..Default::default()
        }
    }

    fn reversed(m: &RaftMessage) -> bytes::Bytes {
        let mut v = m.payload.to_vec();
        v.reverse();
        v.into()
    }

    /// Puts one slow (500 ms) call on the wire per in-flight slot, each sent only once the one
    /// before has reached the peer (so each is a call of its own), so that messages sent next
    /// queue and leave together once a slot frees.
    async fn occupy_slots(
        peer: &Peer,
        batcher: &AppendBatcher,
        deadline: Instant,
    ) -> Vec<tokio::task::JoinHandle<Reply>> {
        let mut busy = Vec::new();
        for i in 0..MAX_IN_FLIGHT {
            let b = batcher.clone();
            busy.push(tokio::spawn(async move { b.send(msg(88, i as u32), deadline).await }));
            let until = Instant::now() + Duration::from_secs(5);
            while peer.received.load(Ordering::SeqCst) < i + 1 {
                assert!(Instant::now() < until, "busy message {i} never reached the peer");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        busy
    }

    /// Sends `n` messages of shards 0..n at once; returns each one's reply, in shard order.
    async fn send_many(batcher: &AppendBatcher, n: u32) -> Vec<(RaftMessage, Reply)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let sends = (0..n).map(|s| {
            let b = batcher.clone();
            async move {
                let m = msg(s, s * 10);
                let r = b.send(m.clone(), deadline).await;
                (m, r)
            }
        });
        futures::future::join_all(sends).await
    }

    #[tokio::test]
    async fn concurrent_appends_share_calls_and_each_gets_its_own_answer() {
        let (peer, batcher) = serve(true).await;
        let results = send_many(&batcher, 16).await;
        for (m, r) in &results {
            assert_eq!(r.as_ref().unwrap(), &reversed(m), "shard {}", m.shard_id);
        }
        let singles = peer.singles.load(Ordering::SeqCst);
        let batches = peer.batches.load(Ordering::SeqCst);
        assert_eq!(singles + peer.batched_messages.load(Ordering::SeqCst), 16, "every message sent once");
        assert!(batches >= 1, "no AppendBatch call was made");
        assert!(singles + batches < 16, "16 messages took {singles} single and {batches} batch calls");
    }

    #[tokio::test]
    async fn one_message_in_a_batch_can_fail_alone() {
        let (peer, batcher) = serve(true).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        // Occupy both slots so the next three queue and leave as one batch.
        let busy = occupy_slots(&peer, &batcher, deadline).await;
        let (a, missing, c) = tokio::join!(
            batcher.send(msg(5, 1), deadline),
            batcher.send(msg(99, 1), deadline),
            batcher.send(msg(6, 1), deadline)
        );
        assert_eq!(a.unwrap(), reversed(&msg(5, 1)));
        assert_eq!(c.unwrap(), reversed(&msg(6, 1)));
        let e = missing.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        assert!(e.message().contains("shard 99"), "{e:?}");
        assert_eq!(peer.batches.load(Ordering::SeqCst), 1, "shards 5, 99 and 6 went in one batch");
        for b in busy {
            b.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn a_slow_shard_does_not_hold_back_the_others_in_its_batch() {
        let (peer, batcher) = serve(true).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        // Occupy both slots so the next two queue and leave as one batch.
        let busy = occupy_slots(&peer, &batcher, deadline).await;
        let slow = {
            let b = batcher.clone();
            tokio::spawn(async move { b.send(msg(77, 1), deadline).await })
        };
        let started = Instant::now();
        let fast = batcher.send(msg(5, 1), deadline).await.unwrap();
        assert_eq!(fast, reversed(&msg(5, 1)));
        // The slot frees within 500 ms; the slow shard answers 2 s after that.
        assert!(started.elapsed() < Duration::from_millis(1500), "waited {:?} for the slow shard", started.elapsed());
        assert!(!slow.is_finished(), "the slow shard answered early");
        assert_eq!(peer.batches.load(Ordering::SeqCst), 1, "shards 77 and 5 went in one batch");
        assert_eq!(slow.await.unwrap().unwrap(), reversed(&msg(77, 1)));
        for b in busy {
            b.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn an_old_peer_gets_single_appends() {
        let (peer, batcher) = serve(false).await;
        for round in 0..2 {
            let results = send_many(&batcher, 12).await;
            for (m, r) in &results {
                assert_eq!(r.as_ref().unwrap(), &reversed(m), "round {round}, shard {}", m.shard_id);
            }
        }
        assert_eq!(peer.singles.load(Ordering::SeqCst), 24, "every message went as a single AppendEntries");
        assert!(peer.batched_messages.load(Ordering::SeqCst) == 0);
    }

    #[tokio::test]
    async fn a_message_past_its_deadline_times_out() {
        let (_peer, batcher) = serve(true).await;
        let started = Instant::now();
        let e = batcher.send(msg(77, 0), Instant::now() + Duration::from_millis(100)).await.unwrap_err();
        assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
        // The batcher still works afterwards.
        let ok = batcher.send(msg(1, 1), Instant::now() + Duration::from_secs(10)).await.unwrap();
        assert_eq!(ok, reversed(&msg(1, 1)));
    }
}
