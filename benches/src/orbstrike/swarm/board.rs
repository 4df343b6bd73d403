//! The task that plays every player of one board (see the module documentation of `swarm`).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hypercache_proto::poison::lock;
use orbstrike::bot::{BoardView, Steering};
use orbstrike::proto::v1 as pb;
use pb::play_request::Msg;
use pb::play_update::Body;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::{StreamExt, StreamMap};
use tonic::{Code, Status};

use super::join::{join, open, BoardPlan, Joined, Opened, Route, UpdateStream};
use super::stats::{Reroute, RouteStats, WindowStats};
use super::{Phase, Shared};
use crate::game::common::kind;

/// Inputs remembered per player while waiting for their ack (older ones are forgotten).
const MAX_PENDING: usize = 256;

/// A reopened (or rejoined) player, handed back to its board task.
struct Reopened {
    slot: usize,
    joined: Joined,
    opened: Opened,
    rejoined: bool,
}

struct Player {
    joined: Joined,
    /// `None` while the stream is being reopened.
    inputs: Option<mpsc::Sender<pb::PlayRequest>>,
    seq: u64,
    pending: VecDeque<(u64, Instant)>,
    steering: Steering,
    last_at: Option<Instant>,
    last_tick: u64,
    last_ack: u64,
    /// Updates on the current stream, and on all streams.
    in_stream: u64,
    ever: u64,
}

pub(super) struct BoardTask {
    shared: Arc<Shared>,
    n: usize,
    game_id: String,
    players: Vec<Player>,
    streams: StreamMap<usize, UpdateStream>,
    view: BoardView,
    phase: watch::Receiver<Phase>,
    stop: watch::Receiver<bool>,
    /// The window being recorded, and this task's figures for it.
    local: Option<(u64, WindowStats)>,
    reopened_tx: mpsc::Sender<Reopened>,
    reopened_rx: mpsc::Receiver<Reopened>,
    rng: StdRng,
}

impl BoardTask {
    pub(super) fn new(
        shared: Arc<Shared>,
        n: usize,
        plan: BoardPlan,
        streams: Vec<Opened>,
        phase: watch::Receiver<Phase>,
        stop: watch::Receiver<bool>,
    ) -> BoardTask {
        let (reopened_tx, reopened_rx) = mpsc::channel(64);
        let now = Instant::now();
        let mut map = StreamMap::new();
        let mut players = Vec::with_capacity(plan.players.len());
        for (slot, (joined, opened)) in plan.players.into_iter().zip(streams).enumerate() {
            map.insert(slot, opened.updates);
            players.push(Player {
                joined,
                inputs: Some(opened.inputs),
                seq: 0,
                pending: VecDeque::new(),
                steering: Steering::new(now),
                last_at: None,
                last_tick: 0,
                last_ack: 0,
                in_stream: 0,
                ever: 0,
            });
        }
        BoardTask {
            shared,
            n,
            game_id: plan.game_id,
            players,
            streams: map,
            view: BoardView::default(),
            phase,
            stop,
            local: None,
            reopened_tx,
            reopened_rx,
            rng: StdRng::from_entropy(),
        }
    }

    pub(super) async fn run(mut self) {
        let interval = self.shared.input_interval;
        let inputs = tokio::time::sleep(interval.mul_f64(self.rng.gen::<f64>()));
        tokio::pin!(inputs);
        self.on_phase();
        loop {
            tokio::select! {
                _ = self.stop.changed() => break,
                changed = self.phase.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.on_phase();
                }
                Some(reopened) = self.reopened_rx.recv() => self.on_reopened(reopened),
                _ = &mut inputs => {
                    self.send_inputs();
                    // Random spacing (0.5-1.5 intervals): a fixed period would lock each board's
                    // inputs to one phase of its ticks, and the wait for the next tick (most of
                    // the latency) would then be the same for every input of the board.
                    let next = interval.mul_f64(self.rng.gen_range(0.5..1.5));
                    inputs.as_mut().reset(Instant::now() + next);
                }
                Some((slot, item)) = self.streams.next() => self.on_item(slot, item),
            }
        }
        self.flush();
        self.shared.alive.fetch_sub(1, Ordering::Relaxed);
    }

    /// Hands in the figures of a window that ended, and starts recording a new one.
    fn on_phase(&mut self) {
        let phase = *self.phase.borrow_and_update();
        if self.local.as_ref().is_some_and(|(w, _)| *w != phase.window || !phase.recording) {
            self.flush();
        }
        if phase.recording && self.local.is_none() {
            self.local = Some((phase.window, WindowStats::default()));
        }
    }

    fn flush(&mut self) {
        let Some((window, stats)) = self.local.take() else { return };
        let mut c = lock(&self.shared.collector);
        let w = c.windows.entry(window).or_default();
        w.direct.merge(&stats.direct);
        w.proxied.merge(&stats.proxied);
        w.flushed += 1;
    }

    fn stats(&mut self, route: Route) -> Option<&mut RouteStats> {
        self.local.as_mut().map(|(_, w)| w.route_mut(route))
    }

    fn send_inputs(&mut self) {
        let now = Instant::now();
        let radius = self.view.arena_radius().unwrap_or(1000.0);
        for slot in 0..self.players.len() {
            let p = &mut self.players[slot];
            let Some(tx) = &p.inputs else { continue };
            let (direction, ring) = p.steering.next(self.view.position(p.joined.player_id), radius, now, &mut self.rng);
            let seq = p.seq + 1;
            let input = pb::Input { seq, direction: direction as i32, ring };
            let sent = tx.try_send(pb::PlayRequest { msg: Some(Msg::Input(input)) }).is_ok();
            if sent {
                p.seq = seq;
                p.pending.push_back((seq, now));
                if p.pending.len() > MAX_PENDING {
                    p.pending.pop_front();
                }
            }
            let route = p.joined.route;
            if let Some(s) = self.stats(route) {
                if sent {
                    s.inputs += 1;
                } else {
                    s.inputs_dropped += 1;
                }
            }
        }
    }

    fn on_item(&mut self, slot: usize, item: Option<Result<pb::PlayUpdate, Status>>) {
        match item {
            Some(Ok(update)) => self.on_update(slot, update),
            Some(Err(status)) => {
                let route = self.players[slot].joined.route;
                if let Some(s) = self.stats(route) {
                    s.errors.add(kind(&status), || status.message().to_string());
                }
                // The board forgot the player (or never had it): join again; else reopen.
                let rejoin = matches!(status.code(), Code::NotFound | Code::Unauthenticated | Code::InvalidArgument);
                self.reopen(slot, rejoin, Duration::from_millis(100));
            }
            None => self.reopen(slot, false, Duration::from_millis(100)),
        }
    }

    fn on_update(&mut self, slot: usize, update: pb::PlayUpdate) {
        let now = Instant::now();
        let p = &mut self.players[slot];
        let route = p.joined.route;
        let gap = p.last_at.map(|last| now.saturating_duration_since(last));
        let mut acked = Vec::new();
        while let Some(&(seq, sent)) = p.pending.front() {
            if seq > update.ack_seq {
                break;
            }
            p.pending.pop_front();
            acked.push(now.saturating_duration_since(sent));
        }
        let (prev_tick, prev_ack, prev_at) = (p.last_tick, p.last_ack, p.last_at);
        let (first_in_stream, first_ever) = (p.in_stream == 0, p.ever == 0);
        p.last_at = Some(now);
        p.last_tick = update.tick;
        p.last_ack = update.ack_seq;
        p.in_stream += 1;
        p.ever += 1;
        let player_id = p.joined.player_id;
        let mut missed = 0;
        let mut snapshot_after_first = false;
        let mut game_over = false;
        match &update.body {
            Some(Body::Snapshot(_)) => {
                if !first_ever {
                    snapshot_after_first = true;
                    let event = Reroute {
                        game_id: self.game_id.clone(),
                        player_id,
                        route,
                        at: now,
                        wall: SystemTime::now(),
                        tick: update.tick,
                        ack: update.ack_seq,
                        prev_tick,
                        prev_ack,
                        prev_at,
                        mid_stream: !first_in_stream,
                    };
                    lock(&self.shared.reroutes).push(event);
                }
                if update.tick >= self.view.tick {
                    self.view.apply(&update);
                }
            }
            Some(Body::Delta(_)) => {
                if !first_in_stream && update.tick > prev_tick + 1 {
                    missed = update.tick - prev_tick - 1;
                }
                if update.tick > self.view.tick {
                    self.view.apply(&update);
                }
            }
            Some(Body::GameOver(_)) => game_over = true,
            None => {}
        }
        if let Some(s) = self.stats(route) {
            s.updates += 1;
            if let Some(gap) = gap.filter(|_| !first_in_stream) {
                s.gaps.record(gap);
            }
            for d in acked {
                s.latency.record(d);
            }
            s.missed_ticks += missed;
            s.snapshots_after_first += u64::from(snapshot_after_first);
            s.game_overs += u64::from(game_over);
        }
        if game_over {
            self.reopen(slot, true, Duration::ZERO);
        }
    }

    /// Reopens player `slot`'s stream off this task (joining again first if `rejoin`).
    fn reopen(&mut self, slot: usize, rejoin: bool, after: Duration) {
        self.streams.remove(&slot);
        let p = &mut self.players[slot];
        p.inputs = None;
        let joined = p.joined.clone();
        let (links, tx, n) = (self.shared.links.clone(), self.reopened_tx.clone(), self.n + slot);
        let mut stop = self.stop.clone();
        tokio::spawn(async move {
            let mut wait = after;
            let mut rejoin = rejoin;
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).clamp(Duration::from_millis(100), Duration::from_secs(2));
                let joined = if rejoin {
                    match join(&links, joined.route, &joined.game_id, &joined.name, n).await {
                        Ok(j) => j,
                        Err(_) => continue,
                    }
                } else {
                    joined.clone()
                };
                match open(&links, &joined, n).await {
                    Ok(opened) => {
                        let _ = tx.send(Reopened { slot, joined, opened, rejoined: rejoin }).await;
                        return;
                    }
                    Err(s) => {
                        rejoin = rejoin || matches!(s.code(), Code::NotFound | Code::Unauthenticated);
                    }
                }
            }
        });
    }

    fn on_reopened(&mut self, r: Reopened) {
        let p = &mut self.players[r.slot];
        if r.rejoined {
            p.seq = 0;
            p.pending.clear();
        }
        p.joined = r.joined;
        p.inputs = Some(r.opened.inputs);
        p.in_stream = 0;
        self.streams.insert(r.slot, r.opened.updates);
        let route = p.joined.route;
        if let Some(s) = self.stats(route) {
            if r.rejoined {
                s.rejoins += 1;
            } else {
                s.reopened += 1;
            }
        }
    }
}
