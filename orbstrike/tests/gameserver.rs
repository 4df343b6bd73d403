//! The game server against a real in-process HyperCache: registration, board loading, play,
//! checkpoints, fencing on reassignment, lease loss, and drain.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{
    eventually, game_client, game_server_config, init_logging, initial_checkpoint, params, start_game_server,
    HyperCache, PlayStream,
};
use hypercache_client::{AssignBoard, Client, CreateBoard, Epoch, RegisterOptions, Seq};
use orbstrike::gameserver::{GameServer, MOVED_PREFIX};
use orbstrike::proto::v1 as pb;
use prost::Message;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);

async fn create_and_assign(client: &Client, board: &str, server: &str) -> u64 {
    let create = CreateBoard { checkpoint: initial_checkpoint(&params()), ..CreateBoard::new(board) };
    client.create_board(create).await.expect("create board");
    assign(client, board, server, 0, "first").await
}

async fn assign(client: &Client, board: &str, server: &str, expected_epoch: u64, request_id: &str) -> u64 {
    let assign = AssignBoard {
        board_id: board.into(),
        server_id: server.into(),
        expected_epoch: Epoch(expected_epoch),
        request_id: request_id.into(),
        election: None,
    };
    client.assign_board(assign).await.expect("assign board").epoch.0
}

async fn wait_running(server: &GameServer, board: &str) {
    eventually(&format!("{} runs {board}", server.server_id()), WAIT, || async {
        server.running_boards().iter().any(|b| b == board).then_some(())
    })
    .await;
}

/// The stored checkpoint of `board`: (seq, epoch of the writer, decoded data).
async fn stored(client: &Client, board: &str) -> (u64, u64, pb::BoardCheckpoint) {
    let record = client.get_board(board, false).await.expect("get board").expect("board exists");
    let ckpt = record.checkpoint.expect("checkpoint");
    (ckpt.seq.0, ckpt.epoch.0, pb::BoardCheckpoint::decode(ckpt.data.as_ref()).expect("checkpoint decodes"))
}

fn body(update: &pb::PlayUpdate) -> &pb::play_update::Body {
    update.body.as_ref().expect("update body")
}

fn assert_moved(status: &tonic::Status, code: Code) {
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().starts_with(MOVED_PREFIX), "{status:?}");
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as u64
}

async fn add_player(
    client: &mut pb::game_server_client::GameServerClient<tonic::transport::Channel>,
    game: &str,
    name: &str,
) -> u32 {
    let request = pb::AddPlayerRequest { game_id: game.into(), name: name.into() };
    client.add_player(request).await.expect("add player").into_inner().player_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_server_registers_and_appears_in_the_registry() {
    init_logging();
    let hc = HyperCache::start(1).await;
    let gs = start_game_server(&hc, game_server_config(&hc, "gs-reg")).await;
    let servers = hc.client().list_servers().await.expect("list servers");
    let me = servers.iter().find(|s| s.server_id == "gs-reg").expect("registered");
    assert_eq!(me.address, gs.advertise());
    assert_eq!(me.address, gs.local_addr().to_string(), "127.0.0.1 listeners advertise their own address");
    assert_eq!(me.capacity, 200);
    let stats = game_client(&gs).await.server_stats(pb::ServerStatsRequest {}).await.expect("stats").into_inner();
    assert_eq!((stats.server_id.as_str(), stats.boards, stats.players), ("gs-reg", 0, 0));
    hc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assigned_board_is_loaded_and_a_player_gets_a_snapshot_then_deltas() {
    init_logging();
    let hc = HyperCache::start(1).await;
    let client = hc.client();
    let gs = start_game_server(&hc, game_server_config(&hc, "gs-play")).await;
    let epoch = create_and_assign(&client, "g-play", "gs-play").await;
    wait_running(&gs, "g-play").await;
    let mut c = game_client(&gs).await;

    // A join is answered only once it is in the store.
    let alice = add_player(&mut c, "g-play", "alice").await;
    let (_, writer_epoch, ckpt) = stored(&client, "g-play").await;
    assert_eq!(writer_epoch, epoch);
    assert!(ckpt.players.iter().any(|p| p.id == alice && p.name == "alice"), "{ckpt:?}");

    let mut play = PlayStream::open(&mut c, "g-play", alice).await.expect("play");
    let first = play.next(WAIT).await.expect("ok").expect("an update");
    let pb::play_update::Body::Snapshot(snapshot) = body(&first) else {
        panic!("first update is a snapshot: {first:?}")
    };
    assert_eq!(snapshot.game_id, "g-play");
    assert_eq!(snapshot.params.expect("params").tick_hz, 30, "tick_hz 0 resolved to the server default");
    let start_y = snapshot.players.iter().find(|p| p.id == alice).expect("alice in the snapshot").y;

    for seq in 1..=10 {
        play.send(seq, pb::Direction::Up, false).await;
    }
    let mut last_tick = first.tick;
    let mut last_ack = 0;
    let mut y = start_y;
    while last_ack < 10 {
        let update = play.next(WAIT).await.expect("ok").expect("an update");
        assert!(update.tick > last_tick, "ticks grow: {} after {last_tick}", update.tick);
        assert!(update.ack_seq >= last_ack, "acks never go back");
        (last_tick, last_ack) = (update.tick, update.ack_seq);
        let pb::play_update::Body::Delta(delta) = body(&update) else { panic!("then deltas: {update:?}") };
        if let Some(me) = delta.changed.iter().find(|p| p.id == alice) {
            y = me.y;
        }
    }
    assert_eq!(last_ack, 10);
    assert!(y > start_y, "alice moved up: {start_y} -> {y}");

    // Checkpoints keep advancing while the board runs.
    let (seq, _, _) = stored(&client, "g-play").await;
    eventually("the stored checkpoint advances", WAIT, || {
        let client = client.clone();
        async move { (stored(&client, "g-play").await.0 > seq + 5).then_some(()) }
    })
    .await;

    // Clear errors for an unknown player and a board that was never here (not "MOVED": the
    // server may simply not have loaded it yet).
    let Err(status) = PlayStream::open(&mut c, "g-play", 99).await else { panic!("unknown player accepted") };
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("player 99"), "{status:?}");
    let request = pb::AddPlayerRequest { game_id: "elsewhere".into(), name: "bob".into() };
    let status = c.add_player(request).await.expect_err("not here");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(!status.message().starts_with(MOVED_PREFIX), "{status:?}");

    let stats = c.server_stats(pb::ServerStatsRequest {}).await.expect("stats").into_inner();
    assert_eq!((stats.boards, stats.players), (1, 1));
    assert!(stats.inputs >= 10, "{stats:?}");
    gs.drain().await.expect("drain");
    hc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reassigned_board_stops_at_once_ends_streams_with_moved_and_old_syncs_are_refused() {
    init_logging();
    let hc = HyperCache::start(1).await;
    let client = hc.client();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("accept.jsonl");
    let config = orbstrike::gameserver::Config { accept_log: Some(log.clone()), ..game_server_config(&hc, "gs-a") };
    let gs = start_game_server(&hc, config).await;
    let epoch = create_and_assign(&client, "g-move", "gs-a").await;
    wait_running(&gs, "g-move").await;
    let mut c = game_client(&gs).await;
    let alice = add_player(&mut c, "g-move", "alice").await;
    let mut play = PlayStream::open(&mut c, "g-move", alice).await.expect("play");
    play.next(WAIT).await.expect("ok").expect("snapshot");

    // The player keeps sending inputs throughout.
    let inputs = play.inputs.clone();
    let sender = tokio::spawn(async move {
        for seq in 1..=100_000u64 {
            let direction = if seq % 2 == 0 { pb::Direction::Left } else { pb::Direction::Right };
            let input = pb::Input { seq, direction: direction as i32, ring: false };
            let msg = pb::PlayRequest { msg: Some(pb::play_request::Msg::Input(input)) };
            if inputs.send(msg).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    play.until(WAIT, |u| u.ack_seq > 5).await;

    // An orchestrator moves the board to another (fake) server.
    client.register(RegisterOptions::new("gs-fake", "127.0.0.1:1", Duration::from_secs(60))).await.expect("register");
    let new_epoch = assign(&client, "g-move", "gs-fake", epoch, "move").await;
    assert!(new_epoch > epoch);
    let status = play.end(WAIT).await.expect_err("the stream ends with a status");
    assert_moved(&status, Code::Unavailable);
    let moved_at = unix_ms();
    sender.abort();
    let request = pb::AddPlayerRequest { game_id: "g-move".into(), name: "bob".into() };
    assert_moved(&c.add_player(request).await.expect_err("no longer here"), Code::NotFound);
    assert!(gs.running_boards().is_empty());

    // A late sync under the old epoch is refused, naming the new owner.
    let (seq, writer_epoch, _) = stored(&client, "g-move").await;
    assert_eq!(writer_epoch, epoch);
    let err = client
        .sync_board("g-move", Epoch(epoch), Seq(seq + 1_000), Bytes::from_static(b"late"))
        .await
        .expect_err("fenced");
    let owner = err.stale_epoch().expect("STALE_EPOCH");
    assert_eq!((owner.owner.as_deref(), owner.epoch), (Some("gs-fake"), Epoch(new_epoch)));

    // No input was accepted for the board after the stream said MOVED.
    gs.drain().await.expect("drain");
    let text = std::fs::read_to_string(&log).expect("accept log");
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    let mine: Vec<_> = lines.iter().filter(|l| l["board"] == "g-move").collect();
    assert!(!mine.is_empty(), "inputs were accepted before the move");
    for line in &mine {
        assert_eq!((line["server"].as_str(), line["epoch"].as_u64()), (Some("gs-a"), Some(epoch)));
        assert!(line["at_ms"].as_u64().expect("at_ms") <= moved_at, "accepted after the move: {line}");
    }
    hc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_checkpoints_releases_every_board_and_deregisters() {
    init_logging();
    let hc = HyperCache::start(1).await;
    let client = hc.client();
    let gs = start_game_server(&hc, game_server_config(&hc, "gs-drain")).await;
    let e1 = create_and_assign(&client, "d-1", "gs-drain").await;
    let e2 = create_and_assign(&client, "d-2", "gs-drain").await;
    wait_running(&gs, "d-1").await;
    wait_running(&gs, "d-2").await;
    let mut c = game_client(&gs).await;
    let alice = add_player(&mut c, "d-1", "alice").await;
    let mut play = PlayStream::open(&mut c, "d-1", alice).await.expect("play");
    play.send(7, pb::Direction::Down, false).await;
    play.until(WAIT, |u| u.ack_seq == 7).await;

    let report = gs.drain().await.expect("drain");
    assert_eq!(report.released, vec!["d-1".to_string(), "d-2".to_string()]);
    assert!(report.not_released.is_empty());
    assert!(report.deregistered);
    assert_moved(&play.end(WAIT).await.expect_err("ends with a status"), Code::Unavailable);

    let servers = client.list_servers().await.expect("list");
    assert!(servers.iter().all(|s| s.server_id != "gs-drain"), "deregistered: {servers:?}");
    for (board, epoch) in [("d-1", e1), ("d-2", e2)] {
        let record = client.get_board(board, false).await.expect("get").expect("exists");
        assert_eq!(record.board.owner, None, "{board} released");
        assert_eq!(record.board.epoch, Epoch(epoch + 1), "the release bumped the epoch");
    }
    let (_, writer_epoch, ckpt) = stored(&client, "d-1").await;
    assert_eq!(writer_epoch, e1);
    assert_eq!(ckpt.acked_seq.get(&alice), Some(&7), "the final checkpoint holds the last input");
    hc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_stops_every_board_and_the_server_registers_again() {
    init_logging();
    let hc = HyperCache::start(1).await;
    let client = hc.client();
    let gs = start_game_server(&hc, game_server_config(&hc, "gs-lease")).await;
    let epoch = create_and_assign(&client, "l-1", "gs-lease").await;
    wait_running(&gs, "l-1").await;
    let mut c = game_client(&gs).await;
    let alice = add_player(&mut c, "l-1", "alice").await;
    let mut play = PlayStream::open(&mut c, "l-1", alice).await.expect("play");
    play.next(WAIT).await.expect("ok").expect("snapshot");

    let before =
        client.list_servers().await.expect("list").into_iter().find(|s| s.server_id == "gs-lease").expect("registered");
    client.revoke(before.lease).await.expect("revoke the registration lease");
    assert_moved(&play.end(WAIT).await.expect_err("ends with a status"), Code::Unavailable);

    let after = eventually("gs-lease registers again", WAIT, || {
        let client = client.clone();
        async move {
            client
                .list_servers()
                .await
                .ok()?
                .into_iter()
                .find(|s| s.server_id == "gs-lease" && s.incarnation > before.incarnation)
        }
    })
    .await;
    assert_ne!(after.lease, before.lease);
    // The board was assigned to the earlier incarnation: it is released, not served.
    let released_epoch = eventually("the board of the earlier incarnation is released", WAIT, || {
        let client = client.clone();
        async move {
            let record = client.get_board("l-1", false).await.ok()??;
            record.board.owner.is_none().then_some(record.board.epoch.0)
        }
    })
    .await;
    assert!(released_epoch > epoch);
    assert!(gs.running_boards().is_empty());

    // Reassigned to the new incarnation, it is served again with the player still on it.
    assign(&client, "l-1", "gs-lease", released_epoch, "again").await;
    wait_running(&gs, "l-1").await;
    let mut play = PlayStream::open(&mut c, "l-1", alice).await.expect("play again");
    let first = play.next(WAIT).await.expect("ok").expect("snapshot");
    let pb::play_update::Body::Snapshot(snapshot) = body(&first) else { panic!("snapshot first: {first:?}") };
    assert!(snapshot.players.iter().any(|p| p.id == alice));
    gs.drain().await.expect("drain");
    hc.shutdown().await;
}
