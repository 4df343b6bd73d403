//! The orchestrator against a real (single-node, in-process) HyperCache and fake game servers.
//!
//! The fakes implement the GameServer API just enough to observe what the orchestrator does:
//! they accept any game, hand out player ids, stream a snapshot then deltas acknowledging the
//! latest input seq, and can be told that a game moved away (streams end with "MOVED:") or that
//! they crashed (every call and stream fails UNAVAILABLE). End-to-end tests with the real game
//! server live with the game server's tests.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{eventually, HyperCache};
use futures::StreamExt;
use hypercache_client::{AssignBoard, Client, Epoch, LeaseKeeper, RegisterOptions};
use orbstrike::orchestrator::token::{Claims, TokenKey};
use orbstrike::orchestrator::{Config, Orchestrator};
use orbstrike::proto::v1 as pb;
use pb::game_server_server::{GameServer as GameServerApi, GameServerServer};
use pb::orchestrator_client::OrchestratorClient;
use pb::play_request::Msg;
use pb::play_update::Body;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status, Streaming};

const SECRET: &[u8] = b"orchestrator-test-secret";
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// A one-node HyperCache.

/// A one-node HyperCache ([`common::HyperCache`]) with its endpoint and a client.
struct Store {
    cluster: HyperCache,
    endpoint: String,
    client: Client,
}

impl Store {
    async fn start() -> Store {
        let cluster = HyperCache::start(1).await;
        let endpoint = cluster.endpoints()[0].clone();
        let client = cluster.client();
        Store { cluster, endpoint, client }
    }

    async fn stop(self) {
        self.cluster.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Fake game servers.

struct Fake {
    id: String,
    /// Ticks of this server start here, so tests can tell servers apart in updates.
    tick_base: u64,
    next_player: AtomicU32,
    players: AtomicU64,
    inputs: AtomicU64,
    names: Mutex<HashMap<u32, String>>,
    removed: Mutex<Vec<(String, u32)>>,
    /// Games that moved away: calls about them answer "MOVED:".
    moved: watch::Sender<HashSet<String>>,
    crashed: watch::Sender<bool>,
    plays: AtomicU32,
}

#[derive(Clone)]
struct FakeService(Arc<Fake>);

impl Fake {
    fn is_crashed(&self) -> bool {
        *self.crashed.borrow()
    }

    fn moved_status(&self, game: &str) -> Option<Status> {
        self.moved.borrow().contains(game).then(|| Status::unavailable(format!("MOVED: {game} left {}", self.id)))
    }
}

fn crashed() -> Status {
    Status::unavailable("connection reset by peer")
}

#[tonic::async_trait]
impl GameServerApi for FakeService {
    async fn add_player(
        &self,
        request: Request<pb::AddPlayerRequest>,
    ) -> Result<Response<pb::AddPlayerResponse>, Status> {
        let fake = &self.0;
        if fake.is_crashed() {
            return Err(crashed());
        }
        let req = request.into_inner();
        if let Some(moved) = fake.moved_status(&req.game_id) {
            return Err(Status::not_found(moved.message().to_string()));
        }
        if req.name == "full" {
            return Err(Status::resource_exhausted("game is full (8 players)"));
        }
        let id = fake.next_player.fetch_add(1, Ordering::SeqCst) + 1;
        fake.players.fetch_add(1, Ordering::SeqCst);
        fake.names.lock().unwrap().insert(id, req.name);
        Ok(Response::new(pb::AddPlayerResponse { player_id: id }))
    }

    async fn remove_player(
        &self,
        request: Request<pb::RemovePlayerRequest>,
    ) -> Result<Response<pb::RemovePlayerResponse>, Status> {
        if self.0.is_crashed() {
            return Err(crashed());
        }
        let req = request.into_inner();
        self.0.players.fetch_sub(1, Ordering::SeqCst);
        self.0.removed.lock().unwrap().push((req.game_id, req.player_id));
        Ok(Response::new(pb::RemovePlayerResponse {}))
    }

    type PlayStream = ReceiverStream<Result<pb::PlayUpdate, Status>>;

    async fn play(&self, request: Request<Streaming<pb::PlayRequest>>) -> Result<Response<Self::PlayStream>, Status> {
        let fake = self.0.clone();
        if fake.is_crashed() {
            return Err(crashed());
        }
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(pb::PlayRequest { msg: Some(Msg::Hello(h)) }) => h,
            _ => return Err(Status::invalid_argument("hello first")),
        };
        if let Some(moved) = fake.moved_status(&hello.game_id) {
            return Err(moved);
        }
        let name = fake.names.lock().unwrap().get(&hello.player_id).cloned();
        let Some(name) = name else { return Err(Status::not_found("player is not on this board")) };
        fake.plays.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut tick = fake.tick_base;
            let me = pb::Player { id: hello.player_id, name: name.clone(), ..Default::default() };
            let snapshot = pb::Snapshot {
                game_id: hello.game_id.clone(),
                params: Some(pb::GameParams { arena_radius: 1000.0, ..Default::default() }),
                players: vec![me],
            };
            if tx.send(Ok(pb::PlayUpdate { tick, ack_seq: 0, body: Some(Body::Snapshot(snapshot)) })).await.is_err() {
                return;
            }
            let mut acked = 0;
            let mut moved = fake.moved.subscribe();
            let mut crash = fake.crashed.subscribe();
            let mut ticks = tokio::time::interval(Duration::from_millis(20));
            loop {
                tokio::select! {
                    _ = async { crash.wait_for(|c| *c).await.map(|_| ()) } => {
                        let _ = tx.send(Err(crashed())).await;
                        return;
                    }
                    _ = async { moved.wait_for(|m| m.contains(&hello.game_id)).await.map(|_| ()) } => {
                        let _ = tx.send(Err(Status::unavailable(format!("MOVED: {} left {}", hello.game_id, fake.id)))).await;
                        return;
                    }
                    msg = inbound.next() => match msg {
                        Some(Ok(pb::PlayRequest { msg: Some(Msg::Input(input)) })) => {
                            fake.inputs.fetch_add(1, Ordering::SeqCst);
                            acked = acked.max(input.seq);
                            if name == "doomed" {
                                let over = pb::GameOver { reason: pb::GameOverReason::Killed as i32, killer_id: 99 };
                                let _ = tx.send(Ok(pb::PlayUpdate { tick, ack_seq: acked, body: Some(Body::GameOver(over)) })).await;
                                return;
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => return,
                    },
                    _ = ticks.tick() => {
                        tick += 1;
                        let delta = pb::Delta::default();
                        if tx.send(Ok(pb::PlayUpdate { tick, ack_seq: acked, body: Some(Body::Delta(delta)) })).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn server_stats(
        &self,
        _: Request<pb::ServerStatsRequest>,
    ) -> Result<Response<pb::ServerStatsResponse>, Status> {
        if self.0.is_crashed() {
            return Err(crashed());
        }
        Ok(Response::new(pb::ServerStatsResponse {
            server_id: self.0.id.clone(),
            boards: 1,
            players: self.0.players.load(Ordering::SeqCst),
            kills: 3,
            inputs: self.0.inputs.load(Ordering::SeqCst),
        }))
    }
}

struct FakeServer {
    fake: Arc<Fake>,
    keeper: Option<LeaseKeeper>,
    task: JoinHandle<()>,
}

impl FakeServer {
    async fn start(store: &Store, id: &str, capacity: u32, tick_base: u64, ttl: Duration) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        let fake = Arc::new(Fake {
            id: id.into(),
            tick_base,
            next_player: AtomicU32::new(0),
            players: AtomicU64::new(0),
            inputs: AtomicU64::new(0),
            names: Mutex::new(HashMap::new()),
            removed: Mutex::new(Vec::new()),
            moved: watch::channel(HashSet::new()).0,
            crashed: watch::channel(false).0,
            plays: AtomicU32::new(0),
        });
        let service = GameServerServer::new(FakeService(fake.clone()));
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener).map(|c| {
                    if let Ok(s) = &c {
                        s.set_nodelay(true).expect("nodelay");
                    }
                    c
                }))
                .await;
        });
        let mut options = RegisterOptions::new(id, address, ttl);
        options.capacity = capacity;
        let registration = store.client.register(options).await.expect("register");
        let keeper = LeaseKeeper::spawn(store.client.clone(), registration.lease).expect("keeper");
        FakeServer { fake, keeper: Some(keeper), task }
    }

    fn move_away(&self, game: &str) {
        self.fake.moved.send_modify(|m| {
            m.insert(game.to_string());
        });
    }

    /// Stops heartbeating (the registration expires after its TTL) and fails every call.
    async fn crash(&mut self) {
        self.fake.crashed.send_replace(true);
        if let Some(keeper) = self.keeper.take() {
            keeper.stop().await;
        }
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Orchestrators and players.

/// The value of an unlabelled metric in the orchestrator's exposition (0 if absent).
fn metric(o: &Orchestrator, name: &str) -> u64 {
    metric_in(&o.metrics_text(), name)
}

/// The value of the unlabelled series `name` in a Prometheus text exposition (0 if absent).
fn metric_in(text: &str, name: &str) -> u64 {
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(name));
    line.and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<f64>().ok()).map_or(0, |v| v as u64)
}

fn config(store: &Store, id: &str) -> Config {
    let mut c = Config::new(vec![store.endpoint.clone()], SECRET);
    c.id = id.into();
    c.scan_interval = Duration::from_millis(100);
    c.stats_interval = Duration::from_millis(200);
    c.failover_margin = Duration::from_millis(300);
    c.election_ttl = Duration::from_millis(1000);
    c.reroute_timeout = Duration::from_secs(8);
    c.create_rate = 1000.0;
    c.create_burst = 1000;
    c
}

async fn start(config: Config) -> Orchestrator {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    Orchestrator::start_on(config, listener, None).await.expect("orchestrator starts")
}

async fn client(o: &Orchestrator) -> OrchestratorClient<Channel> {
    OrchestratorClient::connect(format!("http://{}", o.local_addr())).await.expect("connect")
}

async fn wait_servers(o: &Orchestrator, n: usize) {
    eventually(&format!("{n} live servers in the view"), WAIT, || async { (o.live_servers() == n).then_some(()) })
        .await;
}

fn params() -> pb::GameParams {
    pb::GameParams {
        arena_radius: 1000.0,
        max_players: 8,
        speed: 100.0,
        player_radius: 10.0,
        ring_radius: 30.0,
        tick_hz: 0,
    }
}

async fn create(c: &mut OrchestratorClient<Channel>) -> pb::CreateGameResponse {
    c.create_game(pb::CreateGameRequest { params: Some(params()), lifetime_ms: 0 }).await.expect("create").into_inner()
}

async fn join(c: &mut OrchestratorClient<Channel>, game: &str, name: &str) -> pb::JoinGameResponse {
    c.join_game(pb::JoinGameRequest { game_id: game.into(), name: name.into() }).await.expect("join").into_inner()
}

/// Opens Play with `first` as the first message.
async fn play_with(
    c: &mut OrchestratorClient<Channel>,
    first: pb::PlayRequest,
) -> Result<(mpsc::Sender<pb::PlayRequest>, Streaming<pb::PlayUpdate>), Status> {
    let (tx, rx) = mpsc::channel(16);
    tx.send(first).await.expect("queue first message");
    let stream = c.play(ReceiverStream::new(rx)).await?.into_inner();
    Ok((tx, stream))
}

fn hello(token: &[u8]) -> pb::PlayRequest {
    pb::PlayRequest { msg: Some(Msg::Hello(pb::Hello { token: token.to_vec().into(), ..Default::default() })) }
}

fn input(seq: u64) -> pb::PlayRequest {
    pb::PlayRequest { msg: Some(Msg::Input(pb::Input { seq, direction: pb::Direction::Up as i32, ring: false })) }
}

/// The first error or update a stream yields (the orchestrator reports hello problems either
/// as the call's status or as the stream's first item).
async fn first_item(c: &mut OrchestratorClient<Channel>, first: pb::PlayRequest) -> Result<pb::PlayUpdate, Status> {
    let (_tx, mut stream) = play_with(c, first).await?;
    match tokio::time::timeout(WAIT, stream.message()).await.expect("an answer") {
        Ok(Some(update)) => Ok(update),
        Ok(None) => Err(Status::ok("stream ended")),
        Err(status) => Err(status),
    }
}

/// Reads updates until `pred` holds for one, sending an input with a fresh seq every so often.
async fn until_update(
    tx: &mpsc::Sender<pb::PlayRequest>,
    stream: &mut Streaming<pb::PlayUpdate>,
    seq: &mut u64,
    what: &str,
    pred: impl Fn(&pb::PlayUpdate) -> bool,
) -> pb::PlayUpdate {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        *seq += 1;
        let _ = tx.try_send(input(*seq));
        match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
            Ok(Ok(Some(update))) if pred(&update) => return update,
            Ok(Ok(Some(_))) | Err(_) => {}
            Ok(Ok(None)) => panic!("stream ended while waiting for {what}"),
            Ok(Err(status)) => panic!("stream failed while waiting for {what}: {status:?}"),
        }
    }
}

fn code_and_message<T: std::fmt::Debug>(r: Result<T, Status>) -> (Code, String) {
    let status = r.expect_err("must fail");
    (status.code(), status.message().to_string())
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_the_field_named() {
    let store = Store::start().await;
    let o = start(config(&store, "o1")).await;
    let mut c = client(&o).await;

    let (code, msg) = code_and_message(c.create_game(pb::CreateGameRequest::default()).await);
    assert_eq!((code, msg.as_str()), (Code::InvalidArgument, "params are required"));
    let bad = pb::GameParams { max_players: 0, ..params() };
    let (code, msg) =
        code_and_message(c.create_game(pb::CreateGameRequest { params: Some(bad), lifetime_ms: 0 }).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("max_players") && msg.contains("1..=64"), "{msg}");
    let bad = pb::GameParams { ring_radius: 5.0, ..params() };
    let (code, msg) =
        code_and_message(c.create_game(pb::CreateGameRequest { params: Some(bad), lifetime_ms: 0 }).await);
    assert!(code == Code::InvalidArgument && msg.contains("ring_radius"), "{msg}");
    let (code, msg) =
        code_and_message(c.create_game(pb::CreateGameRequest { params: Some(params()), lifetime_ms: 5 }).await);
    assert!(code == Code::InvalidArgument && msg.contains("lifetime_ms"), "{msg}");

    // No game servers: nowhere to place a game.
    let (code, msg) = eventually("the registry view to load", WAIT, || {
        let mut c = c.clone();
        async move {
            let r = c.create_game(pb::CreateGameRequest { params: Some(params()), lifetime_ms: 0 }).await;
            let status = r.expect_err("no servers");
            (status.code() != Code::Unavailable).then(|| (status.code(), status.message().to_string()))
        }
    })
    .await;
    assert!(code == Code::ResourceExhausted && msg.contains("no live game servers"), "{code:?} {msg}");

    for (game, name, needle) in
        [("g-1", "", "name is empty"), ("g-1", &"x".repeat(33)[..], "33 characters"), ("a/b", "ann", "game_id")]
    {
        let (code, msg) =
            code_and_message(c.join_game(pb::JoinGameRequest { game_id: game.into(), name: name.into() }).await);
        assert!(code == Code::InvalidArgument && msg.contains(needle), "{code:?} {msg}");
    }
    let (code, _) =
        code_and_message(c.join_game(pb::JoinGameRequest { game_id: "g-nope".into(), name: "ann".into() }).await);
    assert_eq!(code, Code::NotFound);
    let (code, msg) =
        code_and_message(c.list_games(pb::ListGamesRequest { limit: 5000, page_token: String::new() }).await);
    assert!(code == Code::InvalidArgument && msg.contains("limit"), "{msg}");

    // Play: hello first, with a genuine, unexpired token.
    let (code, msg) = code_and_message(first_item(&mut c, input(1)).await);
    assert!(code == Code::InvalidArgument && msg.contains("hello"), "{msg}");
    let forged = TokenKey::new(b"not-the-shared-secret").unwrap();
    let claims = Claims { game_id: "g-1".into(), player_id: 1, expires_at_ms: u64::MAX };
    let (code, msg) = code_and_message(first_item(&mut c, hello(&forged.sign(&claims).unwrap())).await);
    assert_eq!((code, msg.as_str()), (Code::Unauthenticated, "invalid token"));
    let mut tampered = TokenKey::new(SECRET).unwrap().sign(&claims).unwrap();
    tampered[10] ^= 1;
    let (code, msg) = code_and_message(first_item(&mut c, hello(&tampered)).await);
    assert_eq!((code, msg.as_str()), (Code::Unauthenticated, "invalid token"));
    let expired = TokenKey::new(SECRET).unwrap().sign(&Claims { expires_at_ms: 1, ..claims.clone() }).unwrap();
    let (code, msg) = code_and_message(first_item(&mut c, hello(&expired)).await);
    assert_eq!((code, msg.as_str()), (Code::Unauthenticated, "token expired"));
    let (code, msg) = code_and_message(c.exit_game(pb::ExitGameRequest { token: expired.into() }).await);
    assert_eq!((code, msg.as_str()), (Code::Unauthenticated, "token expired"));

    o.shutdown().await.expect("shutdown");
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_is_created_joined_played_and_exited_through_its_server() {
    let store = Store::start().await;
    let gs = FakeServer::start(&store, "gs-a", 10, 0, Duration::from_secs(5)).await;
    let o = start(config(&store, "o1")).await;
    wait_servers(&o, 1).await;
    let mut c = client(&o).await;

    let created = create(&mut c).await;
    assert_eq!(created.server_id, "gs-a");
    let listed = c.list_games(pb::ListGamesRequest::default()).await.expect("list").into_inner();
    let summary = listed.games.iter().find(|g| g.game_id == created.game_id).expect("listed");
    assert_eq!((summary.server_id.as_str(), summary.epoch), ("gs-a", 1));
    assert_eq!(summary.params, Some(pb::GameParams { tick_hz: 30, ..params() }), "tick_hz resolved at creation");

    let joined = join(&mut c, &created.game_id, "ann").await;
    assert_eq!(joined.player_id, 1);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(joined.token_expires_at_ms > now_ms + 3_000_000, "an hour by default");
    let (tx, mut stream) = play_with(&mut c, hello(&joined.token)).await.expect("play");
    let first = stream.message().await.expect("update").expect("not ended");
    assert!(matches!(first.body, Some(Body::Snapshot(_))), "a snapshot first");
    let mut seq = 0;
    let acked = until_update(&tx, &mut stream, &mut seq, "an acknowledged input", |u| u.ack_seq >= 3).await;
    assert!(acked.ack_seq <= seq);

    // The game server's refusals reach the player unchanged.
    let (code, msg) = code_and_message(
        c.join_game(pb::JoinGameRequest { game_id: created.game_id.clone(), name: "full".into() }).await,
    );
    assert_eq!((code, msg.as_str()), (Code::ResourceExhausted, "game is full (8 players)"));

    c.exit_game(pb::ExitGameRequest { token: joined.token.clone() }).await.expect("exit");
    assert_eq!(gs.fake.removed.lock().unwrap().clone(), vec![(created.game_id.clone(), 1)]);

    // Game over is forwarded and ends the stream normally.
    let doomed = join(&mut c, &created.game_id, "doomed").await;
    let (tx, mut stream) = play_with(&mut c, hello(&doomed.token)).await.expect("play");
    let mut seq = 0;
    let over =
        until_update(&tx, &mut stream, &mut seq, "game over", |u| matches!(u.body, Some(Body::GameOver(_)))).await;
    assert!(matches!(over.body, Some(Body::GameOver(pb::GameOver { killer_id: 99, .. }))));
    let end = tokio::time::timeout(WAIT, stream.message()).await.expect("the stream ends");
    assert!(matches!(end, Ok(None)), "ended normally: {end:?}");

    o.shutdown().await.expect("shutdown");
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_games_is_rate_limited_per_client() {
    let store = Store::start().await;
    let _gs = FakeServer::start(&store, "gs-a", 100, 0, Duration::from_secs(5)).await;
    let mut cfg = config(&store, "o1");
    cfg.create_rate = 0.01;
    cfg.create_burst = 2;
    let o = start(cfg).await;
    wait_servers(&o, 1).await;
    let mut c = client(&o).await;
    let create_as = |who: &str| {
        let mut r = Request::new(pb::CreateGameRequest { params: Some(params()), lifetime_ms: 0 });
        r.metadata_mut().insert("x-client-id", who.parse().unwrap());
        r
    };
    c.create_game(create_as("alice")).await.expect("first");
    c.create_game(create_as("alice")).await.expect("second (burst of 2)");
    let (code, msg) = code_and_message(c.create_game(create_as("alice")).await);
    assert_eq!(code, Code::ResourceExhausted);
    assert!(msg.contains("rate limit") && msg.contains("alice") && msg.contains("burst 2"), "{msg}");
    c.create_game(create_as("bob")).await.expect("another client has its own budget");

    o.shutdown().await.expect("shutdown");
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn games_go_to_the_least_loaded_server_until_all_are_full() {
    let store = Store::start().await;
    let _a = FakeServer::start(&store, "gs-a", 2, 0, Duration::from_secs(5)).await;
    let _b = FakeServer::start(&store, "gs-b", 2, 0, Duration::from_secs(5)).await;
    let o = start(config(&store, "o1")).await;
    wait_servers(&o, 2).await;
    let mut c = client(&o).await;
    let mut per_server: HashMap<String, usize> = HashMap::new();
    for _ in 0..4 {
        *per_server.entry(create(&mut c).await.server_id).or_default() += 1;
    }
    assert_eq!(per_server, HashMap::from([("gs-a".to_string(), 2), ("gs-b".to_string(), 2)]));
    let (code, msg) =
        code_and_message(c.create_game(pb::CreateGameRequest { params: Some(params()), lifetime_ms: 0 }).await);
    assert!(code == Code::ResourceExhausted && msg.contains("at capacity"), "{code:?} {msg}");

    o.shutdown().await.expect("shutdown");
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_play_stream_follows_its_board_to_the_new_owner() {
    let store = Store::start().await;
    let a = FakeServer::start(&store, "gs-a", 10, 0, Duration::from_secs(5)).await;
    let b = FakeServer::start(&store, "gs-b", 10, 1_000_000, Duration::from_secs(5)).await;
    let o = start(config(&store, "o1")).await;
    wait_servers(&o, 2).await;
    let mut c = client(&o).await;
    let game = create(&mut c).await;
    assert_eq!(game.server_id, "gs-a", "a tie goes to the smaller id");
    let joined = join(&mut c, &game.game_id, "ann").await;
    // B must know the player too (a real server would load it from the checkpoint).
    b.fake.names.lock().unwrap().insert(joined.player_id, "ann".into());
    let (tx, mut stream) = play_with(&mut c, hello(&joined.token)).await.expect("play");
    let mut seq = 0;
    until_update(&tx, &mut stream, &mut seq, "updates from A", |u| u.tick < 1_000_000 && u.ack_seq >= 1).await;

    // The board moves to B; A ends its streams with MOVED.
    let moved = store
        .client
        .assign_board(AssignBoard {
            board_id: game.game_id.clone(),
            server_id: "gs-b".into(),
            expected_epoch: Epoch(1),
            request_id: "test-move".into(),
            election: None,
        })
        .await
        .expect("move");
    assert_eq!(moved.epoch, Epoch(2));
    a.move_away(&game.game_id);
    let resync = until_update(&tx, &mut stream, &mut seq, "a snapshot from B", |u| u.tick >= 1_000_000).await;
    assert!(matches!(resync.body, Some(Body::Snapshot(_))), "the new owner starts with a full snapshot");
    let before = seq;
    until_update(&tx, &mut stream, &mut seq, "B acknowledging inputs", |u| u.ack_seq > before).await;
    assert_eq!(b.fake.plays.load(Ordering::SeqCst), 1, "one stream opened on B");
    assert!(o.metrics_text().contains("orbstrike_orchestrator_reroutes_total 1"), "{}", o.metrics_text());

    o.shutdown().await.expect("shutdown");
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failover_master_moves_boards_off_a_dead_server_and_players_follow() {
    let store = Store::start().await;
    let mut a = FakeServer::start(&store, "gs-a", 10, 0, Duration::from_millis(1000)).await;
    let b = FakeServer::start(&store, "gs-b", 10, 1_000_000, Duration::from_secs(5)).await;
    let o = start(config(&store, "o1")).await;
    wait_servers(&o, 2).await;
    eventually("o1 to become the failover master", WAIT, || async { o.is_failover_leader().then_some(()) }).await;
    let mut c = client(&o).await;
    let game = create(&mut c).await;
    assert_eq!(game.server_id, "gs-a");
    let joined = join(&mut c, &game.game_id, "ann").await;
    b.fake.names.lock().unwrap().insert(joined.player_id, "ann".into());
    let (tx, mut stream) = play_with(&mut c, hello(&joined.token)).await.expect("play");
    let mut seq = 0;
    until_update(&tx, &mut stream, &mut seq, "updates from A", |u| u.ack_seq >= 1).await;

    let crashed_at = Instant::now();
    a.crash().await;
    let resync = until_update(&tx, &mut stream, &mut seq, "a snapshot from B", |u| u.tick >= 1_000_000).await;
    assert!(matches!(resync.body, Some(Body::Snapshot(_))));
    let board = store.client.get_board(&game.game_id, false).await.expect("get").expect("exists").board;
    assert_eq!(board.owner.map(|o| o.server_id).as_deref(), Some("gs-b"));
    assert_eq!(board.epoch, Epoch(2), "moved exactly once");
    // Not before the registration's TTL has passed.
    assert!(crashed_at.elapsed() >= Duration::from_millis(900), "{:?}", crashed_at.elapsed());
    assert!(o.metrics_text().contains("orbstrike_orchestrator_failover_moves_total 1"));

    o.shutdown().await.expect("shutdown");
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_pushed_to_every_subscriber() {
    let store = Store::start().await;
    let _a = FakeServer::start(&store, "gs-a", 10, 0, Duration::from_secs(5)).await;
    let _b = FakeServer::start(&store, "gs-b", 10, 0, Duration::from_secs(5)).await;
    let o = start(config(&store, "o1")).await;
    wait_servers(&o, 2).await;
    let mut c = client(&o).await;
    let g1 = create(&mut c).await;
    let g2 = create(&mut c).await;
    join(&mut c, &g1.game_id, "ann").await;
    join(&mut c, &g2.game_id, "bob").await;
    join(&mut c, &g2.game_id, "cy").await;
    let mut subscribers = Vec::new();
    for _ in 0..2 {
        subscribers.push(c.watch_stats(pb::WatchStatsRequest {}).await.expect("watch").into_inner());
    }
    for mut s in subscribers {
        let deadline = Instant::now() + WAIT;
        let stats = loop {
            assert!(Instant::now() < deadline, "timed out waiting for complete stats");
            let stats = tokio::time::timeout(WAIT, s.message()).await.expect("stats").expect("stream").expect("open");
            if stats.games == 2 && stats.players == 3 && stats.servers == 2 {
                break stats;
            }
        };
        assert_eq!((stats.kills, stats.orchestrator.as_str()), (6, "o1"));
        assert!(stats.at_ms > 0 && stats.moves_per_second >= 0.0);
    }
    o.shutdown().await.expect("shutdown");
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_master_at_a_time_and_shutdown_hands_over() {
    let store = Store::start().await;
    let _a = FakeServer::start(&store, "gs-a", 10, 0, Duration::from_secs(5)).await;
    let o1 = start(config(&store, "o1")).await;
    let o2 = start(config(&store, "o2")).await;
    let leader = eventually("a failover master", WAIT, || async {
        match (o1.is_failover_leader(), o2.is_failover_leader()) {
            (true, false) => Some(1),
            (false, true) => Some(2),
            (true, true) => panic!("two masters at once"),
            (false, false) => None,
        }
    })
    .await;
    let (leader, other) = if leader == 1 { (o1, o2) } else { (o2, o1) };

    // A player streaming through the leader is told to reconnect when it shuts down.
    wait_servers(&leader, 1).await;
    let mut c = client(&leader).await;
    let game = create(&mut c).await;
    let joined = join(&mut c, &game.game_id, "ann").await;
    let (tx, mut stream) = play_with(&mut c, hello(&joined.token)).await.expect("play");
    let mut seq = 0;
    until_update(&tx, &mut stream, &mut seq, "updates", |u| u.ack_seq >= 1).await;

    let stopped_at = Instant::now();
    leader.shutdown().await.expect("shutdown");
    let end = loop {
        match tokio::time::timeout(WAIT, stream.message()).await.expect("the stream ends") {
            Ok(Some(_)) => continue,
            other => break other,
        }
    };
    let status = end.expect_err("ends with a status");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("shutting down"), "{status:?}");

    // The resignation lets the other take over well before the old lease would have expired.
    eventually("the other orchestrator to take over", WAIT, || async { other.is_failover_leader().then_some(()) })
        .await;
    assert!(stopped_at.elapsed() < Duration::from_secs(10));

    // The same token keeps working through the other replica.
    let mut c2 = client(&other).await;
    let (tx, mut stream) = play_with(&mut c2, hello(&joined.token)).await.expect("play again");
    let target = seq + 1;
    until_update(&tx, &mut stream, &mut seq, "updates via the other replica", |u| u.ack_seq >= target).await;

    other.shutdown().await.expect("shutdown");
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_master_stops_moving_boards_until_it_leads_again() {
    let store = Store::start().await;
    let mut a = FakeServer::start(&store, "gs-a", 10, 0, Duration::from_millis(1000)).await;
    let _b = FakeServer::start(&store, "gs-b", 10, 0, Duration::from_secs(5)).await;
    let o = start(config(&store, "o1")).await;
    wait_servers(&o, 2).await;
    eventually("o1 to lead", WAIT, || async { o.is_failover_leader().then_some(()) }).await;
    let mut c = client(&o).await;
    let game = create(&mut c).await;
    assert_eq!(game.server_id, "gs-a");

    // Someone else takes the election: o1's lease is revoked and a test candidate wins.
    let election = orbstrike::orchestrator::DEFAULT_ELECTION;
    let held = store.client.election_leader(election).await.expect("leader").leader.expect("o1 leads");
    assert_eq!(held.candidate, "o1");
    store.client.revoke(held.lease).await.expect("revoke o1's lease");
    let lease = store.client.grant(Duration::from_secs(30)).await.expect("grant");
    let usurper = store.client.campaign(election, "usurper", lease.id, WAIT).await.expect("campaign");
    assert!(usurper.term > held.term);
    eventually("o1 to stop leading", WAIT, || async { (!o.is_failover_leader()).then_some(()) }).await;

    // A's boards are orphaned, but o1 is not the master: nothing moves.
    a.crash().await;
    eventually("A to leave the view", WAIT, || async { (o.live_servers() == 1).then_some(()) }).await;
    // A negative check needs a window: seven more scans of 100 ms each cover twice the 300 ms
    // failover margin after A left the view.
    let scans = metric(&o, "orbstrike_orchestrator_board_scans_total");
    eventually("seven more board scans", WAIT, || async {
        (metric(&o, "orbstrike_orchestrator_board_scans_total") >= scans + 7).then_some(())
    })
    .await;
    let board = store.client.get_board(&game.game_id, false).await.expect("get").expect("exists").board;
    assert_eq!((board.owner.map(|o| o.server_id), board.epoch), (Some("gs-a".to_string()), Epoch(1)));

    // The usurper resigns: o1 leads again (a larger term) and moves the board.
    store.client.resign(election, usurper.term).await.expect("resign");
    store.client.revoke(lease.id).await.expect("revoke");
    eventually("o1 to lead again", WAIT, || async { o.is_failover_leader().then_some(()) }).await;
    let board = eventually("the board to move to B", WAIT, || async {
        let board = store.client.get_board(&game.game_id, false).await.ok()??.board;
        (board.owner.as_ref()?.server_id == "gs-b").then_some(board)
    })
    .await;
    assert_eq!(board.epoch, Epoch(2));
    let now = store.client.election_leader(election).await.expect("leader").leader.expect("o1 leads");
    assert!(now.term > usurper.term && now.candidate == "o1");

    o.shutdown().await.expect("shutdown");
    store.stop().await;
}

// ---------------------------------------------------------------------------------------------
// End to end: real game servers, the bot, and a server draining mid-game.

async fn real_game_server(store: &Store, id: &str) -> orbstrike::gameserver::GameServer {
    let mut config = orbstrike::gameserver::Config::new([store.endpoint.clone()]);
    config.server_id = Some(id.into());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.capacity = 10;
    config.checkpoint_interval_ms = 50;
    config.lease_ttl_ms = 1500;
    config.lease_margin_ms = 300;
    config.drain_timeout_ms = 3000;
    orbstrike::gameserver::GameServer::start(config).await.expect("game server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_keep_playing_while_a_game_server_drains() {
    let store = Store::start().await;
    let gs1 = real_game_server(&store, "gs-1").await;
    let gs2 = real_game_server(&store, "gs-2").await;
    let o = start(config(&store, "o1")).await;
    wait_servers(&o, 2).await;
    eventually("o1 to become the failover master", WAIT, || async { o.is_failover_leader().then_some(()) }).await;

    let mut bots = orbstrike::bot::BotConfig::new(vec![o.local_addr().to_string()]);
    bots.games = 2;
    bots.players = 3;
    bots.duration = Duration::from_secs(6);
    bots.input_hz = 20;
    let run = tokio::spawn(orbstrike::bot::run(bots));
    // Both games run (one per server: least loaded), then gs-1 drains: its board is released,
    // the failover master places it on gs-2 and the players' streams follow.
    eventually("both servers to run a game", WAIT, || async {
        (gs1.running_boards().len() == 1 && gs2.running_boards().len() == 1).then_some(())
    })
    .await;
    // Drain only once gs-1's three players stream from its board, so the drain re-routes live
    // streams. The orchestrator counts a stream before it reaches the game server: a player
    // whose stream reached gs-1 only after the drain would start on gs-2 and never be
    // re-routed (seen in CI under load).
    eventually("all six players to stream", WAIT, || async {
        (metric(&o, "orbstrike_orchestrator_play_streams") >= 6).then_some(())
    })
    .await;
    eventually("gs-1's three players to stream from its board", WAIT, || async {
        (metric_in(&gs1.metrics_text(), "orbstrike_gameserver_play_streams") == 3).then_some(())
    })
    .await;
    let moved_game = gs1.running_boards()[0].clone();
    gs1.drain().await.expect("drain");
    eventually("gs-2 to run the drained server's game", WAIT, || async {
        gs2.running_boards().contains(&moved_game).then_some(())
    })
    .await;
    let report = run.await.expect("bot task").expect("bot run");
    println!("{}", report.text());
    assert_eq!((report.games, report.players), (2, 6));
    assert!(report.updates_per_second > 30.0, "{}", report.text());
    assert!(report.latency_ms.samples > 100, "{}", report.text());
    assert!(report.reroutes >= 1, "the drained game's players were re-routed: {}", report.text());
    assert!(report.latency_ms.p50.is_some_and(|p50| p50 < 500.0), "{}", report.text());

    o.shutdown().await.expect("shutdown");
    gs2.drain().await.expect("drain");
    store.stop().await;
}
