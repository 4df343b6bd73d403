//! The board sync loop and typed rejections against scripted servers: a transient failure is
//! retried with the same seq and data, STALE_EPOCH stops the loop with the current owner, the
//! lease fence stops it before the deadline, and rejections are never retried by the client.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::scripted::{lock, BoardsFake, BoardsScript, KeepAliveAnswer, LeaseFake, Script, SyncAnswer};
use common::{serve_routes, wait_until};
use hypercache_client::{
    BoardSyncer, Client, ClientConfig, CurrentOwner, Epoch, Error, Incarnation, LeaseId, LeaseState, Reason, Seq,
    SyncStatus, SyncStopped,
};
use hypercache_proto::v1::boards_server::BoardsServer;
use hypercache_proto::v1::lease_server::LeaseServer;
use tokio::sync::watch;
use tokio::time::{timeout, Instant};
use tonic::service::Routes;

const LIMIT: Duration = Duration::from_secs(10);

async fn boards(script: &BoardsScript, nodes: usize, config: impl Fn(ClientConfig) -> ClientConfig) -> Client {
    let mut endpoints = Vec::new();
    for _ in 0..nodes {
        let fake = BoardsFake { script: script.clone() };
        endpoints.push(serve_routes(Routes::new(BoardsServer::new(fake))).await);
    }
    let base = ClientConfig::new(endpoints).backoff(Duration::from_millis(1), Duration::from_millis(5));
    Client::new(config(base)).expect("client")
}

fn syncs(script: &BoardsScript) -> Vec<(u64, u64, Bytes)> {
    lock(script).received.iter().map(|(_, call)| call.clone()).collect()
}

#[tokio::test]
async fn the_syncer_retries_the_same_seq_and_stops_when_fenced() {
    let stale = SyncAnswer::StaleEpoch { owner: "srv-b", epoch: 8, incarnation: 2 };
    // The unclear answer comes late, so newer data is already waiting when the syncer retries.
    let unknown = SyncAnswer::Unknown { delay: Duration::from_millis(200) };
    let script = Script::new([SyncAnswer::Ok, unknown, SyncAnswer::Ok], stale);
    // One attempt per call, so the retry below is the syncer's own.
    let client = boards(&script, 1, |c| c.max_attempts(1)).await;
    let (state, source) = watch::channel(Bytes::from_static(b"s0"));
    let handle = BoardSyncer::new(client, "b1", Epoch(7), Seq(5), source)
        .interval(Duration::from_millis(20))
        .spawn()
        .expect("spawn");

    wait_until("the first sync", LIMIT, || syncs(&script).len() == 1).await;
    state.send_replace(Bytes::from_static(b"s1"));
    wait_until("the failed sync", LIMIT, || syncs(&script).len() >= 2).await;
    // Newer data arrives while seq 6 is unconfirmed: the retry must still carry s1.
    state.send_replace(Bytes::from_static(b"s2"));

    let stopped = timeout(LIMIT, handle.stopped()).await.expect("the syncer never stopped");
    let owner = CurrentOwner { owner: Some("srv-b".into()), incarnation: Incarnation(2), epoch: Epoch(8) };
    assert_eq!(stopped, SyncStopped::Fenced(owner));
    let s = |d: &'static [u8]| Bytes::from_static(d);
    assert_eq!(syncs(&script), vec![(7, 5, s(b"s0")), (7, 6, s(b"s1")), (7, 6, s(b"s1")), (7, 7, s(b"s2"))]);
    assert_eq!(handle.status(), SyncStatus::Stopped(stopped));
}

#[tokio::test]
async fn the_syncer_stops_when_the_board_is_gone() {
    let script = Script::new([], SyncAnswer::BoardNotFound);
    let client = boards(&script, 2, |c| c).await;
    let (_state, source) = watch::channel(Bytes::from_static(b"s0"));
    let handle = BoardSyncer::new(client, "b1", Epoch(1), Seq(1), source).spawn().expect("spawn");
    let stopped = timeout(LIMIT, handle.stopped()).await.expect("never stopped");
    assert_eq!(stopped, SyncStopped::BoardNotFound);
    assert_eq!(syncs(&script).len(), 1, "a rejection is not retried on the other node");
}

#[tokio::test]
async fn the_syncer_stops_a_margin_before_the_lease_deadline() {
    let script = Script::new([], SyncAnswer::Ok);
    let client = boards(&script, 1, |c| c).await;
    let (_state, source) = watch::channel(Bytes::from_static(b"s0"));
    let deadline = Instant::now() + Duration::from_millis(400);
    let margin = Duration::from_millis(150);
    let (lease_tx, lease) = watch::channel(LeaseState::Alive { deadline });
    let handle = BoardSyncer::new(client, "b1", Epoch(1), Seq(1), source)
        .interval(Duration::from_millis(20))
        .fence_with_lease(lease, margin)
        .spawn()
        .expect("spawn");
    let stopped = timeout(LIMIT, handle.stopped()).await.expect("never stopped");
    assert_eq!(stopped, SyncStopped::LeaseLapsed { deadline });
    assert!(Instant::now() >= deadline - margin, "stopped before the fence time");
    assert_eq!(syncs(&script).len(), 1, "unchanged data is not re-sent");
    drop(lease_tx);
}

#[tokio::test]
async fn rejections_are_returned_at_once_and_never_retried() {
    let stale = SyncAnswer::StaleEpoch { owner: "srv-b", epoch: 8, incarnation: 2 };
    let script = Script::new([], stale);
    let client = boards(&script, 2, |c| c).await;
    let err = client.sync_board("b1", Epoch(7), Seq(3), Bytes::from_static(b"x")).await.expect_err("stale");
    assert_eq!(err.to_string(), "epoch 7 of board b1 is stale", "the server's message is kept");
    assert!(err.is_reason(Reason::StaleEpoch));
    assert_eq!(err.stale_epoch().map(|o| o.epoch), Some(Epoch(8)));
    assert!(!err.is_retryable());
    assert_eq!(syncs(&script).len(), 1, "sent once although the server said not_applied and another node exists");

    // The same for a plain write: revoking a lease that does not exist.
    let leases = Script::new([], KeepAliveAnswer::Gone);
    let (a, b) = (LeaseFake::new(leases.clone()), LeaseFake::new(leases));
    let writes = [Arc::clone(&a.writes), Arc::clone(&b.writes)];
    let endpoints = vec![
        serve_routes(Routes::new(LeaseServer::new(a))).await,
        serve_routes(Routes::new(LeaseServer::new(b))).await,
    ];
    let client = Client::new(ClientConfig::new(endpoints)).expect("client");
    let err = client.revoke(LeaseId(99)).await.expect_err("no such lease");
    assert!(matches!(&err, Error::Rejected { code: tonic::Code::NotFound, .. }), "{err:?}");
    assert_eq!(writes.iter().map(|w| *lock(w)).sum::<u32>(), 1);
    assert_eq!(client.keep_alive_once(LeaseId(99)).await.expect("answered"), None, "gone is not an error here");
}
