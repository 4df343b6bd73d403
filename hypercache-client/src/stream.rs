//! Long-lived server streams: opening one, reading it, and telling a break that another node
//! (or a reconnect) may fix from a refusal that must reach the caller.
//!
//! Every stream the client exposes is served by any replica of its shard (watches read the
//! replicated state machine), so a stream is opened on the shard's cached leader when there is
//! one (it is the most up to date) and otherwise on any replica, and after a break on a
//! *different* replica than the one that broke ([`Route::PreferLeader`]). Opening goes through the normal retry loop, so a node that
//! is down or refuses at once is skipped within one call; only the wait for response headers is
//! bounded by the request timeout, never the stream itself.
//!
//! [`Resuming`] is the reconnecting reader for the streams of the home shard whose first message
//! is a snapshot of the whole state (registry, board assignments, election observers): after a reconnect the
//! caller simply receives a new snapshot and must *replace* its state with it (changes between
//! the two connections are not replayed). The KV watcher needs exact resumption by revision and
//! has its own loop in `watch.rs` built from the same pieces.

use std::time::Duration;

use futures::future::BoxFuture;
use rand::Rng;
use tonic::codec::Streaming;
use tonic::transport::Channel;
use tonic::{Response, Status};

use crate::call::describe;
use crate::client::Client;
use crate::error::Error;
use crate::ids::ShardId;
use crate::retry::{backoff_delay, classify, delivery_of, wants_refresh, Decision, OpKind};
use crate::target::{Group, Route, Target};

/// What reading one message from a stream produced.
pub(crate) enum Next<T> {
    Message(T),
    /// The stream ended or broke in a way a reconnect may fix; the text says why.
    Broken(String),
    /// A refusal to report to the caller.
    Failed(Error),
}

/// Reads the next message of the stream for `group` open on `endpoint`, classifying any failure
/// as a read (streams have no effect). A NOT_LEADER hint is remembered so the reconnect goes
/// there.
pub(crate) async fn next_message<T>(
    client: &Client,
    group: Group,
    endpoint: &str,
    stream: &mut Streaming<T>,
) -> Next<T> {
    match stream.message().await {
        Ok(Some(message)) => Next::Message(message),
        Ok(None) => Next::Broken(format!("{endpoint} ended the stream")),
        Err(status) => classify_break(client, group, endpoint, &status),
    }
}

/// Classifies a status that ended a stream for `group`. A routing error (`UNKNOWN_SHARD`,
/// `WRONG_SHARD`: the replica moved away) or a lost leader marks the routing table stale, so the
/// reconnect refreshes it first.
pub(crate) fn classify_break<T>(client: &Client, group: Group, endpoint: &str, status: &Status) -> Next<T> {
    let delivery = delivery_of(status);
    let broken = || Next::Broken(format!("{endpoint}: {}", describe(status, delivery)));
    match classify(status, OpKind::Read, delivery) {
        Decision::Fail(err) => Next::Failed(err),
        Decision::Redirect(leader) => {
            client.learn_leader(group, &leader);
            broken()
        }
        Decision::Reroute => {
            client.forget_leader(group, endpoint);
            client.invalidate_routing();
            broken()
        }
        Decision::Retry | Decision::OutcomeUnknown => {
            if wants_refresh(status) {
                client.invalidate_routing();
            }
            client.forget_leader(group, endpoint);
            broken()
        }
    }
}

/// The pause before reconnect number `failures` (consecutive failures without a message).
pub(crate) fn reconnect_delay(client: &Client, failures: u32) -> Duration {
    let config = client.config();
    let jitter = rand::thread_rng().gen::<f64>();
    backoff_delay(failures, config.backoff_base, config.backoff_max, jitter)
}

/// Opens a stream for `target` with the retry loop: `avoid` is the endpoint the previous stream
/// broke on. `call` gets the channel and the shard id to put in its request.
pub(crate) async fn open<T, F>(
    client: &Client,
    op: &'static str,
    target: Target,
    avoid: Option<String>,
    mut call: F,
) -> Result<(String, Streaming<T>), Error>
where
    F: FnMut(Channel, ShardId) -> BoxFuture<'static, Result<Response<Streaming<T>>, Status>>,
{
    let timeout = client.config().request_timeout;
    let route = Route::PreferLeader { avoid };
    client.execute_with(op, OpKind::Read, target, route, timeout, |ch, shard, _| call(ch, shard)).await
}

type Opener<T> = Box<dyn FnMut(Channel, ShardId) -> BoxFuture<'static, Result<Response<Streaming<T>>, Status>> + Send>;

/// A snapshot-first stream of the home shard that reconnects on breaks. See the module
/// documentation.
pub(crate) struct Resuming<T> {
    client: Client,
    op: &'static str,
    /// The home shard as resolved by the last open (for the leader cache).
    group: Group,
    open: Opener<T>,
    current: Option<(String, Streaming<T>)>,
    avoid: Option<String>,
    /// Consecutive breaks without a message in between.
    failures: u32,
}

impl<T> Resuming<T> {
    pub(crate) fn new(client: Client, op: &'static str, open: Opener<T>) -> Self {
        Resuming { client, op, group: Group::Shard(ShardId(0)), open, current: None, avoid: None, failures: 0 }
    }

    /// The next message; the first one after every (re)connect is a snapshot. A transient
    /// failure to reconnect is returned (retryable) and the next call tries again; so is a run
    /// of `max_attempts` streams that broke before delivering anything.
    pub(crate) async fn next(&mut self) -> Result<T, Error> {
        loop {
            let Some((endpoint, stream)) = &mut self.current else {
                if self.failures > 0 {
                    tokio::time::sleep(reconnect_delay(&self.client, self.failures)).await;
                }
                let group = &mut self.group;
                let open = &mut self.open;
                let opened = self::open(&self.client, self.op, Target::Home, self.avoid.clone(), |ch, shard| {
                    *group = Group::Shard(shard);
                    open(ch, shard)
                })
                .await;
                match opened {
                    Ok(opened) => self.current = Some(opened),
                    Err(err) => {
                        self.failures = self.failures.saturating_add(1);
                        return Err(err);
                    }
                }
                continue;
            };
            match next_message(&self.client, self.group, endpoint, stream).await {
                Next::Message(message) => {
                    self.failures = 0;
                    return Ok(message);
                }
                Next::Broken(why) => {
                    tracing::debug!(op = self.op, %why, "stream broke; reconnecting");
                    self.avoid = self.current.take().map(|(endpoint, _)| endpoint);
                    self.failures = self.failures.saturating_add(1);
                    if self.failures >= self.client.config().max_attempts {
                        return Err(Error::Unavailable {
                            message: format!("{}: {} streams in a row broke; last: {why}", self.op, self.failures),
                        });
                    }
                }
                Next::Failed(err) => {
                    self.current = None;
                    return Err(err);
                }
            }
        }
    }
}
