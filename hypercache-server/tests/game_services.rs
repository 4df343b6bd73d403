//! Registry, boards and elections on real in-process clusters.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{eventually, TestCluster};
use hypercache_proto::error_info::info_of;
use hypercache_proto::v1::boards_client::BoardsClient;
use hypercache_proto::v1::election_client::ElectionClient;
use hypercache_proto::v1::lease_client::LeaseClient;
use hypercache_proto::v1::registry_client::RegistryClient;
use hypercache_proto::v1::{self as pb};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

async fn leader_channel(c: &TestCluster) -> Channel {
    let l = c.wait_leader(Duration::from_secs(20)).await;
    Channel::from_shared(format!("http://{}", c.endpoint(l))).expect("uri").connect().await.expect("connect")
}

fn reason(st: &tonic::Status) -> String {
    info_of(st).map(|i| i.reason).unwrap_or_default()
}

async fn register(ch: &Channel, id: &str, ttl_ms: i64) -> pb::RegisterResponse {
    let req = pb::RegisterRequest {
        shard_id: 0,
        server_id: id.into(),
        address: format!("{id}:9000"),
        capacity: 8,
        labels: HashMap::from([("region".to_string(), "eu".to_string())]),
        ttl_ms,
        write: None,
    };
    RegistryClient::new(ch.clone()).register(req).await.expect("register").into_inner()
}

fn assign_req(board: &str, server: &str, expected: u64, request_id: &str) -> pb::AssignBoardRequest {
    pb::AssignBoardRequest {
        shard_id: 0,
        board_id: board.into(),
        server_id: server.into(),
        expected_epoch: expected,
        request_id: request_id.into(),
        ..Default::default()
    }
}

fn sync_req(board: &str, epoch: u64, seq: u64, data: &str) -> pb::SyncBoardRequest {
    pb::SyncBoardRequest {
        shard_id: 0,
        board_id: board.into(),
        epoch,
        seq,
        checkpoint: data.to_string().into(),
        write: None,
    }
}

async fn create(ch: &Channel, board: &str) {
    let req = pb::CreateBoardRequest {
        shard_id: 0,
        board_id: board.into(),
        params: "radius=100".into(),
        checkpoint: "init".into(),
        lifetime_ms: None,
        write: None,
    };
    BoardsClient::new(ch.clone()).create(req).await.expect("create");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_owner_never_overwrites_the_checkpoint_even_with_syncs_in_flight() {
    let c = TestCluster::start(3, |_| {}).await;
    let ch = leader_channel(&c).await;
    register(&ch, "gs-a", 30_000).await;
    register(&ch, "gs-b", 30_000).await;
    create(&ch, "arena-1").await;
    let mut boards = BoardsClient::new(ch.clone());
    let e1 = boards.assign(assign_req("arena-1", "gs-a", 0, "r1")).await.unwrap().into_inner().board.unwrap().epoch;
    // A syncs as fast as it can while the board is moved to B.
    let zombie = {
        let mut b = boards.clone();
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            for seq in 1..=400u64 {
                match b.sync(sync_req("arena-1", e1, seq, &format!("a{seq}"))).await {
                    Ok(r) => accepted.push(r.into_inner().header.unwrap().revision),
                    Err(st) => {
                        assert_eq!(reason(&st), "STALE_EPOCH", "{st}");
                        let info = info_of(&st).unwrap();
                        return (accepted, Some((info.owner, info.epoch, st.message().to_string())));
                    }
                }
            }
            (accepted, None)
        })
    };
    eventually("A has synced a few times", Duration::from_secs(10), || async {
        let r = BoardsClient::new(ch.clone())
            .get(pb::GetBoardRequest { shard_id: 0, board_id: "arena-1".into(), serializable: false })
            .await
            .ok()?;
        (r.into_inner().checkpoint?.seq >= 3).then_some(())
    })
    .await;
    let moved = boards.assign(assign_req("arena-1", "gs-b", e1, "r2")).await.unwrap().into_inner();
    let (e2, assign_rev) = (moved.board.unwrap().epoch, moved.header.unwrap().revision);
    assert!(e2 > e1);
    let (accepted, refusal) = zombie.await.unwrap();
    assert!(accepted.iter().all(|r| *r < assign_rev), "a sync of the old owner was accepted after the reassignment");
    let (owner, epoch, message) = refusal.expect("the zombie's syncs were refused after the move");
    assert_eq!((owner.as_str(), epoch), ("gs-b", e2));
    assert!(message.contains("gs-b"), "{message}");
    // B's syncs succeed; a repeated seq is an idempotent success; the store holds B's checkpoint.
    let r = boards.sync(sync_req("arena-1", e2, 1000, "b1000")).await.expect("B syncs").into_inner();
    assert!(r.written);
    let r = boards.sync(sync_req("arena-1", e2, 1000, "b1000")).await.expect("repeat").into_inner();
    assert!(!r.written);
    let st = boards.sync(sync_req("arena-1", e2, 999, "old")).await.unwrap_err();
    assert_eq!(reason(&st), "STALE_SEQ");
    let st = boards.sync(sync_req("arena-1", e1, 5000, "zombie")).await.unwrap_err();
    assert_eq!((st.code(), reason(&st).as_str()), (Code::FailedPrecondition, "STALE_EPOCH"));
    let got = boards
        .get(pb::GetBoardRequest { shard_id: 0, board_id: "arena-1".into(), serializable: false })
        .await
        .unwrap()
        .into_inner();
    let ckpt = got.checkpoint.unwrap();
    assert_eq!((ckpt.seq, ckpt.epoch, ckpt.data.as_ref()), (1000, e2, b"b1000".as_ref()));
    assert_eq!(got.board.unwrap().owner.unwrap().server_id, "gs-b");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_board_inputs_get_clear_errors_and_change_nothing() {
    let c = TestCluster::start(1, |_| {}).await;
    let ch = leader_channel(&c).await;
    let mut boards = BoardsClient::new(ch.clone());
    create(&ch, "b1").await;
    let before = boards.get(pb::GetBoardRequest { board_id: "b1".into(), ..Default::default() }).await.unwrap();
    // Assignment to a server that never registered, and to one whose lease expired.
    let st = boards.assign(assign_req("b1", "ghost", 0, "r1")).await.unwrap_err();
    assert_eq!((st.code(), reason(&st).as_str()), (Code::FailedPrecondition, "SERVER_NOT_LIVE"), "{st}");
    register(&ch, "short", 200).await;
    eventually("the short registration expires", Duration::from_secs(5), || async {
        let r = RegistryClient::new(ch.clone()).list(pb::ListServersRequest::default()).await.ok()?;
        r.into_inner().servers.is_empty().then_some(())
    })
    .await;
    let st = boards.assign(assign_req("b1", "short", 0, "r2")).await.unwrap_err();
    assert_eq!(reason(&st), "SERVER_NOT_LIVE");
    // Unknown board, oversize checkpoint, bad id, duplicate create.
    let st = boards.sync(sync_req("nope", 1, 1, "x")).await.unwrap_err();
    assert_eq!((st.code(), reason(&st).as_str()), (Code::NotFound, "BOARD_NOT_FOUND"));
    let big = pb::SyncBoardRequest {
        board_id: "b1".into(),
        epoch: 0,
        seq: 1,
        checkpoint: vec![0; 2 << 20].into(),
        ..Default::default()
    };
    let st = boards.sync(big).await.unwrap_err();
    assert_eq!((st.code(), reason(&st).as_str()), (Code::InvalidArgument, "CHECKPOINT_TOO_LARGE"));
    let st = boards.assign(assign_req("b/1", "x", 0, "r")).await.unwrap_err();
    assert_eq!(reason(&st), "INVALID_ID");
    let st = boards.create(pb::CreateBoardRequest { board_id: "b1".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!((st.code(), reason(&st).as_str()), (Code::AlreadyExists, "BOARD_EXISTS"));
    let after = boards.get(pb::GetBoardRequest { board_id: "b1".into(), ..Default::default() }).await.unwrap();
    assert_eq!(before.into_inner().board, after.into_inner().board, "nothing changed");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_watch_and_assignment_watch_stream_changes() {
    let c = TestCluster::start(1, |_| {}).await;
    let ch = leader_channel(&c).await;
    let mut registry = RegistryClient::new(ch.clone());
    let a = register(&ch, "gs-a", 30_000).await;
    let mut servers = registry.watch(pb::WatchServersRequest::default()).await.unwrap().into_inner();
    let first = servers.next().await.unwrap().unwrap();
    assert!(first.snapshot);
    assert_eq!(first.servers.len(), 1);
    assert_eq!(first.servers[0].labels.get("region").map(String::as_str), Some("eu"));
    // Re-registration: a new incarnation; the old lease is gone.
    let a2 = register(&ch, "gs-a", 30_000).await;
    assert!(a2.incarnation > a.incarnation);
    let ev = servers.next().await.unwrap().unwrap();
    let kinds: Vec<i32> = ev.events.iter().map(|e| e.r#type).collect();
    assert!(kinds.contains(&(pb::server_event::Type::Up as i32)), "{ev:?}");
    // Deregistering with the stale incarnation is refused; the current one works.
    let st = registry
        .deregister(pb::DeregisterRequest {
            shard_id: 0,
            server_id: "gs-a".into(),
            incarnation: a.incarnation,
            write: None,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&st), "STALE_INCARNATION");

    // Assignment watch: current boards first, then gained and lost.
    create(&ch, "b1").await;
    create(&ch, "b2").await;
    let mut boards = BoardsClient::new(ch.clone());
    let e = boards.assign(assign_req("b1", "gs-a", 0, "x1")).await.unwrap().into_inner().board.unwrap().epoch;
    let mut watch = boards
        .watch_assignments(pb::WatchAssignmentsRequest { shard_id: 0, server_id: "gs-a".into() })
        .await
        .unwrap()
        .into_inner();
    let snap = watch.next().await.unwrap().unwrap();
    assert!(snap.snapshot);
    assert_eq!(snap.events.iter().map(|e| e.board_id.as_str()).collect::<Vec<_>>(), vec!["b1"]);
    boards.assign(assign_req("b2", "gs-a", 0, "x2")).await.unwrap();
    let gained = watch.next().await.unwrap().unwrap();
    assert_eq!(
        (gained.events[0].board_id.as_str(), gained.events[0].r#type),
        ("b2", pb::assignment_event::Type::Gained as i32)
    );
    boards
        .release(pb::ReleaseBoardRequest {
            shard_id: 0,
            board_id: "b1".into(),
            server_id: "gs-a".into(),
            epoch: e,
            write: None,
        })
        .await
        .unwrap();
    let lost = watch.next().await.unwrap().unwrap();
    assert_eq!(
        (lost.events[0].board_id.as_str(), lost.events[0].r#type),
        ("b1", pb::assignment_event::Type::Lost as i32)
    );
    // Deregistration: the server goes DOWN for watchers.
    registry
        .deregister(pb::DeregisterRequest {
            shard_id: 0,
            server_id: "gs-a".into(),
            incarnation: a2.incarnation,
            write: None,
        })
        .await
        .unwrap();
    let down = async {
        loop {
            let ev = servers.next().await.expect("stream open").expect("no error");
            if ev.events.iter().any(|e| e.r#type == pb::server_event::Type::Down as i32) {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), down).await.expect("a DOWN event");
    // Paginated listing.
    for i in 3..8 {
        create(&ch, &format!("b{i}")).await;
    }
    let mut token = String::new();
    let mut all = Vec::new();
    loop {
        let r = boards
            .list(pb::ListBoardsRequest { limit: 2, page_token: token.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert!(r.boards.len() <= 2);
        all.extend(r.boards.into_iter().map(|b| b.board_id));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    assert_eq!(all, vec!["b1", "b2", "b3", "b4", "b5", "b6", "b7"]);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_terms_strictly_increase_across_failovers_and_fence_assignments() {
    let mut c = TestCluster::start(3, |_| {}).await;
    let ch = leader_channel(&c).await;
    let grant = |ch: Channel, ttl_ms: i64| async move {
        LeaseClient::new(ch)
            .grant(pb::LeaseGrantRequest { shard_id: 0, ttl_ms, write: None })
            .await
            .unwrap()
            .into_inner()
            .id
    };
    let l1 = grant(ch.clone(), 800).await;
    let mut el = ElectionClient::new(ch.clone());
    let campaign = |name: &str, candidate: &str, lease| pb::CampaignRequest {
        shard_id: 0,
        name: name.into(),
        candidate: candidate.into(),
        lease,
        write: None,
    };
    let t1 = el.campaign(campaign("master", "orch-1", l1)).await.unwrap().into_inner().leader.unwrap().term;
    // A second campaigner waits; when the first's lease expires (no keepalives), it wins.
    let ch2 = ch.clone();
    let second = tokio::spawn(async move {
        let l2 = LeaseClient::new(ch2.clone())
            .grant(pb::LeaseGrantRequest { shard_id: 0, ttl_ms: 30_000, write: None })
            .await
            .unwrap()
            .into_inner()
            .id;
        let mut el = ElectionClient::new(ch2);
        let mut req = tonic::Request::new(pb::CampaignRequest {
            shard_id: 0,
            name: "master".into(),
            candidate: "orch-2".into(),
            lease: l2,
            write: None,
        });
        req.set_timeout(Duration::from_secs(20));
        (el.campaign(req).await.unwrap().into_inner().leader.unwrap(), l2)
    });
    let (leader2, l2) = second.await.unwrap();
    assert_eq!(leader2.candidate, "orch-2");
    let t2 = leader2.term;
    assert!(t2 > t1, "{t2} > {t1}");
    // The old term no longer fences: assignment with it is refused, with the current term named.
    register(&ch, "gs", 30_000).await;
    create(&ch, "b").await;
    let mut boards = BoardsClient::new(ch.clone());
    let mut stale = assign_req("b", "gs", 0, "m1");
    stale.election = "master".into();
    stale.election_term = t1;
    let st = boards.assign(stale.clone()).await.unwrap_err();
    assert_eq!(reason(&st), "STALE_TERM");
    assert_eq!(info_of(&st).unwrap().term, t2);
    stale.election_term = t2;
    boards.assign(stale).await.expect("the current term may assign");
    // Raft failover: the term counter is replicated state, it survives and keeps growing.
    let raft_leader = c.wait_leader(Duration::from_secs(20)).await;
    c.crash(raft_leader).await;
    let ch = leader_channel(&c).await;
    let mut el = ElectionClient::new(ch.clone());
    let cur = el
        .leader(pb::LeaderRequest { shard_id: 0, name: "master".into(), serializable: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((cur.leader.as_ref().unwrap().term, cur.last_term), (t2, t2));
    el.resign(pb::ResignRequest { shard_id: 0, name: "master".into(), term: t2, write: None }).await.expect("resign");
    let st =
        el.resign(pb::ResignRequest { shard_id: 0, name: "master".into(), term: t2, write: None }).await.unwrap_err();
    assert_eq!(reason(&st), "NOT_ELECTION_LEADER");
    let l3 = grant(ch.clone(), 30_000).await;
    let mut observe = el.observe(pb::ObserveRequest { shard_id: 0, name: "master".into() }).await.unwrap().into_inner();
    assert!(observe.next().await.unwrap().unwrap().leader.is_none(), "nobody leads after the resignation");
    let t3 = el.campaign(campaign("master", "orch-3", l3)).await.unwrap().into_inner().leader.unwrap().term;
    assert!(t3 > t2, "{t3} > {t2}");
    let seen = observe.next().await.unwrap().unwrap().leader.unwrap();
    assert_eq!((seen.candidate.as_str(), seen.term), ("orch-3", t3));
    let _ = l2;
    c.shutdown().await;
}
