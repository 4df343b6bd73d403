//! The lease keeper against a scripted lease service: the deadline it vouches for is measured
//! from when a keepalive was sent, and it reports the lease lost (with the last vouched
//! deadline) when the server says it is gone or when no renewal succeeds before the deadline.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::time::Duration;

use common::scripted::{lock, KeepAliveAnswer, LeaseFake, LeaseScript, Script};
use common::serve_routes;
use hypercache_client::{Client, ClientConfig, LeaseId, LeaseKeeper, LeaseState, LostReason};
use hypercache_proto::v1::lease_server::LeaseServer;
use tokio::time::{timeout, Instant};
use tonic::service::Routes;

const LIMIT: Duration = Duration::from_secs(10);

async fn lease_service(answers: Vec<KeepAliveAnswer>, default: KeepAliveAnswer) -> (Client, LeaseScript) {
    let script = Script::new(answers, default);
    let addr = serve_routes(Routes::new(LeaseServer::new(LeaseFake::new(script.clone())))).await;
    let config = ClientConfig::new([addr]).backoff(Duration::from_millis(1), Duration::from_millis(5));
    (Client::new(config).expect("client"), script)
}

fn ttl(ms: i64) -> KeepAliveAnswer {
    KeepAliveAnswer::Ttl { ttl_ms: ms, delay: Duration::ZERO }
}

fn received(script: &LeaseScript) -> Vec<Instant> {
    lock(script).received.iter().map(|(at, _)| *at).collect()
}

async fn wait_lost(keeper: &LeaseKeeper) -> (LostReason, Instant, Instant) {
    let state = timeout(LIMIT, keeper.lost()).await.expect("the lease was never reported lost");
    let observed = Instant::now();
    match state {
        LeaseState::Lost { reason, last_deadline } => (reason, last_deadline, observed),
        alive => panic!("lost() returned {alive:?}"),
    }
}

#[tokio::test]
async fn the_deadline_is_measured_from_the_send_not_the_answer() {
    let ttl_ms = 1000;
    let slow = KeepAliveAnswer::Ttl { ttl_ms, delay: Duration::from_millis(300) };
    // One slow renewal, then silence: the deadline cannot move again during the checks.
    let (client, script) = lease_service(vec![slow], KeepAliveAnswer::Hang).await;
    let lease = client.grant(Duration::from_millis(ttl_ms as u64)).await.expect("grant");
    let keeper = LeaseKeeper::spawn(client, lease).expect("spawn");
    let mut states = keeper.subscribe();
    timeout(LIMIT, states.wait_for(|s| s.deadline() > lease.deadline))
        .await
        .expect("no renewal")
        .expect("keeper alive");
    let answered = Instant::now();
    let deadline = keeper.deadline();
    let sent_at_latest = received(&script)[0];
    let ttl = Duration::from_millis(ttl_ms as u64);

    assert!(deadline <= sent_at_latest + ttl, "the deadline must not start after the keepalive reached the server");
    // The answer took 300 ms; a deadline measured from its arrival would be that much later.
    assert!(
        deadline + Duration::from_millis(250) <= answered + ttl,
        "deadline {:?} after the answer: measured from the answer, not the send",
        deadline.saturating_duration_since(answered)
    );
    assert!(keeper.is_safe(Duration::from_millis(100)));
    assert!(!keeper.is_safe(ttl));

    let last = keeper.stop().await;
    assert_eq!(last, LeaseState::Lost { reason: LostReason::Stopped, last_deadline: deadline });
}

#[tokio::test]
async fn a_lease_the_server_reports_gone_is_lost_with_the_last_vouched_deadline() {
    let ttl_ms = 300;
    let (client, script) = lease_service(vec![ttl(ttl_ms), ttl(ttl_ms)], KeepAliveAnswer::Gone).await;
    let lease = client.grant(Duration::from_millis(ttl_ms as u64)).await.expect("grant");
    let keeper = LeaseKeeper::spawn(client, lease).expect("spawn");

    let (reason, last_deadline, _) = wait_lost(&keeper).await;
    assert_eq!(reason, LostReason::Gone);
    let sent = received(&script);
    assert_eq!(sent.len(), 3, "two renewals, then the answer that the lease is gone");
    let ttl = Duration::from_millis(ttl_ms as u64);
    // The last deadline is the second renewal's: sent after the first arrived, before it was received.
    assert!(last_deadline > sent[0] + ttl && last_deadline <= sent[1] + ttl, "{last_deadline:?} {sent:?}");
    assert!(!keeper.is_safe(Duration::ZERO));
}

#[tokio::test]
async fn lease_not_found_on_the_stream_is_a_loss_and_start_checks_the_lease_first() {
    let (client, _) = lease_service(vec![ttl(300), ttl(300)], KeepAliveAnswer::NotFound).await;
    // `start` renews once (KeepAliveOnce) before spawning.
    let keeper = LeaseKeeper::start(client.clone(), LeaseId(7)).await.expect("start");
    let (reason, _, _) = wait_lost(&keeper).await;
    assert_eq!(reason, LostReason::Gone);

    let (client, _) = lease_service(vec![], KeepAliveAnswer::Gone).await;
    let err = LeaseKeeper::start(client, LeaseId(7)).await.expect_err("the lease is gone");
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn failing_renewals_end_in_a_loss_at_the_deadline() {
    let ttl_ms = 600;
    let (client, script) = lease_service(vec![ttl(ttl_ms)], KeepAliveAnswer::NoLeader).await;
    let lease = client.grant(Duration::from_millis(ttl_ms as u64)).await.expect("grant");
    let keeper = LeaseKeeper::spawn(client, lease).expect("spawn");

    let (reason, last_deadline, observed) = wait_lost(&keeper).await;
    assert_eq!(reason, LostReason::DeadlinePassed);
    let sent = received(&script);
    assert!(last_deadline > lease.deadline, "the one successful renewal counts");
    assert!(last_deadline <= sent[0] + Duration::from_millis(ttl_ms as u64));
    assert!(observed >= last_deadline, "reported lost before its deadline");
    assert!(observed < last_deadline + Duration::from_secs(1), "reported lost late");
    assert!(sent.len() >= 3, "the keeper kept retrying: {} keepalives", sent.len());
}

#[tokio::test]
async fn unanswered_keepalives_end_in_a_loss_at_the_deadline() {
    let ttl_ms = 600;
    let (client, script) = lease_service(vec![ttl(ttl_ms)], KeepAliveAnswer::Hang).await;
    let lease = client.grant(Duration::from_millis(ttl_ms as u64)).await.expect("grant");
    let keeper = LeaseKeeper::spawn(client, lease).expect("spawn");

    let (reason, last_deadline, observed) = wait_lost(&keeper).await;
    assert_eq!(reason, LostReason::DeadlinePassed);
    assert!(observed >= last_deadline);
    let sent = received(&script);
    assert!(last_deadline <= sent[0] + Duration::from_millis(ttl_ms as u64));
    // The silent stream is abandoned after half the TTL and a new one tried before the deadline.
    assert!(sent.len() >= 3, "{} keepalives", sent.len());
}
