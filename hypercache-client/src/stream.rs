//! Long-lived server streams: opening one, reading it, and telling a break that another node
//! (or a reconnect) may fix from a refusal that must reach the caller.
//!
//! Every stream the client exposes is served by any node (watches read the replicated state
//! machine), so a stream is opened on the cached leader when there is one (it is the most up to
//! date) and otherwise on any endpoint, and after a break on a *different* endpoint than the one
//! that broke ([`Route::PreferLeader`]). Opening goes through the normal retry loop, so a node that
//! is down or refuses at once is skipped within one call; only the wait for response headers is
//! bounded by the request timeout, never the stream itself.
//!
//! [`Resuming`] is the reconnecting reader for the streams whose first message is a snapshot of
//! the whole state (registry, board assignments, election observers): after a reconnect the
//! caller simply receives a new snapshot and must *replace* its state with it (changes between
//! the two connections are not replayed). The KV watcher needs exact resumption by revision and
//! has its own loop in `watch.rs` built from the same pieces.

use std::time::Duration;

use futures::future::BoxFuture;
use rand::Rng;
use tonic::codec::Streaming;
use tonic::transport::Channel;
use tonic::{Response, Status};

use crate::client::{describe, Client, Route};
use crate::error::Error;
use crate::retry::{backoff_delay, classify, delivery_of, Decision, OpKind};

/// What reading one message from a stream produced.
pub(crate) enum Next<T> {
    Message(T),
    /// The stream ended or broke in a way a reconnect may fix; the text says why.
    Broken(String),
    /// A refusal to report to the caller.
    Failed(Error),
}

/// Reads the next message of the stream open on `endpoint`, classifying any failure as a read
/// (streams have no effect). A NOT_LEADER hint is remembered so the reconnect goes there.
pub(crate) async fn next_message<T>(client: &Client, endpoint: &str, stream: &mut Streaming<T>) -> Next<T> {
    match stream.message().await {
        Ok(Some(message)) => Next::Message(message),
        Ok(None) => Next::Broken(format!("{endpoint} ended the stream")),
        Err(status) => classify_break(client, endpoint, &status),
    }
}

/// Classifies a status that ended a stream.
pub(crate) fn classify_break<T>(client: &Client, endpoint: &str, status: &Status) -> Next<T> {
    let delivery = delivery_of(status);
    match classify(status, OpKind::Read, delivery) {
        Decision::Fail(err) => Next::Failed(err),
        Decision::Redirect(leader) => {
            client.learn_leader(&leader);
            Next::Broken(format!("{endpoint}: {}", describe(status, delivery)))
        }
        Decision::Retry | Decision::OutcomeUnknown => {
            client.forget_leader(endpoint);
            Next::Broken(format!("{endpoint}: {}", describe(status, delivery)))
        }
    }
}

/// The pause before reconnect number `failures` (consecutive failures without a message).
pub(crate) fn reconnect_delay(client: &Client, failures: u32) -> Duration {
    let config = client.config();
    let jitter = rand::thread_rng().gen::<f64>();
    backoff_delay(failures, config.backoff_base, config.backoff_max, jitter)
}

/// Opens a stream with the retry loop: `avoid` is the endpoint the previous stream broke on.
pub(crate) async fn open<T, F>(
    client: &Client,
    op: &'static str,
    avoid: Option<String>,
    mut call: F,
) -> Result<(String, Streaming<T>), Error>
where
    F: FnMut(Channel) -> BoxFuture<'static, Result<Response<Streaming<T>>, Status>>,
{
    let timeout = client.config().request_timeout;
    client.execute_with(op, OpKind::Read, Route::PreferLeader { avoid }, timeout, |ch, _| call(ch)).await
}

type Opener<T> = Box<dyn FnMut(Channel) -> BoxFuture<'static, Result<Response<Streaming<T>>, Status>> + Send>;

/// A snapshot-first stream that reconnects on breaks. See the module documentation.
pub(crate) struct Resuming<T> {
    client: Client,
    op: &'static str,
    open: Opener<T>,
    current: Option<(String, Streaming<T>)>,
    avoid: Option<String>,
    /// Consecutive breaks without a message in between.
    failures: u32,
}

impl<T> Resuming<T> {
    pub(crate) fn new(client: Client, op: &'static str, open: Opener<T>) -> Self {
        Resuming { client, op, open, current: None, avoid: None, failures: 0 }
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
                match open_boxed(&self.client, self.op, self.avoid.clone(), &mut self.open).await {
                    Ok(opened) => self.current = Some(opened),
                    Err(err) => {
                        self.failures = self.failures.saturating_add(1);
                        return Err(err);
                    }
                }
                continue;
            };
            match next_message(&self.client, endpoint, stream).await {
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

async fn open_boxed<T>(
    client: &Client,
    op: &'static str,
    avoid: Option<String>,
    open: &mut Opener<T>,
) -> Result<(String, Streaming<T>), Error> {
    self::open(client, op, avoid, |ch| open(ch)).await
}
