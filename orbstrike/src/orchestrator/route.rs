//! Finding the game server that serves a game now.
//!
//! The board's owner record in HyperCache is the truth (`{server, incarnation}` and an epoch
//! that every move bumps); the address comes from the local registry view, so a lookup costs
//! one linearizable `Boards.Get`, never a scan of servers. A board may have no usable owner for
//! a moment: just created, released by a draining server, or owned by a server that died and
//! has not been moved yet. [`resolve`] then polls with a short, growing backoff until an owner
//! appears that is live in the registry (and, after a `MOVED`, has a newer epoch than the one
//! that refused), bounded by a deadline.

use std::time::Duration;

use hypercache_client::{Board, Epoch};
use rand::Rng;
use tokio::time::{sleep, Instant};

use super::error::Error;
use super::placement::Placement;
use super::shared::Shared;

const BACKOFF_FIRST: Duration = Duration::from_millis(25);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Where a game is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub game_id: String,
    pub server_id: String,
    pub address: String,
    pub epoch: Epoch,
}

/// Which owners a lookup accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Any,
    /// After the owner at this epoch said the board moved.
    NewerThan(Epoch),
}

/// Why a board has no usable owner right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoute {
    Unassigned { epoch: Epoch },
    OwnerNotLive { server_id: String, epoch: Epoch },
    NotNewer { epoch: Epoch },
}

impl std::fmt::Display for NoRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoRoute::Unassigned { epoch } => write!(f, "it has no game server (epoch {epoch})"),
            NoRoute::OwnerNotLive { server_id, epoch } => {
                write!(f, "its game server {server_id} is not registered (epoch {epoch})")
            }
            NoRoute::NotNewer { epoch } => write!(f, "it has not been moved yet (still epoch {epoch})"),
        }
    }
}

/// The route a board's owner record gives, judged against the registry view.
pub fn route_of(board: &Board, placement: &Placement, wanted: Wanted) -> Result<Route, NoRoute> {
    let epoch = board.epoch;
    let owner = board.owner.as_ref().filter(|o| !o.server_id.is_empty()).ok_or(NoRoute::Unassigned { epoch })?;
    if let Wanted::NewerThan(old) = wanted {
        if epoch <= old {
            return Err(NoRoute::NotNewer { epoch });
        }
    }
    let server = placement
        .live(&owner.server_id)
        .ok_or_else(|| NoRoute::OwnerNotLive { server_id: owner.server_id.clone(), epoch })?;
    Ok(Route {
        game_id: board.board_id.clone(),
        server_id: server.server_id.clone(),
        address: server.address.clone(),
        epoch,
    })
}

/// Growing, jittered delays between polls.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_FIRST }
    }
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        base.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }
}

/// Polls the board until it has an acceptable live owner, it turns out not to exist
/// (`NotFound`), or `deadline` passes (`Unavailable`, naming why). `wait_first` delays the first
/// poll (the caller's backoff after a failed attempt).
pub async fn resolve(
    shared: &Shared,
    game_id: &str,
    wanted: Wanted,
    wait_first: Duration,
    deadline: Instant,
) -> Result<Route, Error> {
    let mut backoff = Backoff::default();
    let mut wait = wait_first;
    let mut why = "the previous attempt failed".to_string();
    loop {
        if !wait.is_zero() {
            if Instant::now() + wait >= deadline {
                break;
            }
            sleep(wait).await;
        }
        why = match shared.store.get_board(game_id, false).await {
            Ok(None) => return Err(Error::NotFound(format!("game {game_id:?} not found"))),
            Ok(Some(record)) => match route_of(&record.board, &shared.placement(), wanted) {
                Ok(route) => return Ok(route),
                Err(no_route) => no_route.to_string(),
            },
            Err(e) if e.is_retryable() => e.to_string(),
            Err(e) => return Err(e.into()),
        };
        tracing::debug!(game = game_id, why = %why, "waiting for a game server");
        wait = backoff.next_delay();
    }
    Err(Error::Unavailable(format!("game {game_id:?} is not being served: {why}")))
}

/// What a failed call to a game server means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The server no longer owns the board (`MOVED:`): look for a newer epoch.
    Moved,
    /// The server is unreachable or the call broke in transit: look the owner up again.
    Broken,
    /// `NOT_FOUND` without `MOVED`: the owner has not loaded the board (yet), or the player is
    /// not on it; the caller knows which is likelier.
    NotFound,
    /// A definite answer (full, invalid, unauthenticated...): pass it on.
    Final,
}

/// Classifies a game server's status.
pub fn classify_failure(status: &tonic::Status) -> Failure {
    use tonic::Code;
    if status.message().starts_with("MOVED:") {
        return Failure::Moved;
    }
    match status.code() {
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded => Failure::Broken,
        // ABORTED is the owner's answer that a newer Play stream of the same player replaced this
        // one: re-routing would only fight the newer stream.
        Code::Aborted => Failure::Final,
        Code::NotFound => Failure::NotFound,
        Code::Unknown | Code::Internal if is_transport(status.message()) => Failure::Broken,
        _ => Failure::Final,
    }
}

/// tonic reports some connection failures (h2 resets, closed connections) as UNKNOWN or
/// INTERNAL; a game server's own INTERNAL answers do not look like these.
fn is_transport(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["transport error", "h2 protocol error", "connection", "broken pipe", "stream closed", "error reading a body"]
        .iter()
        .any(|needle| m.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::placement::LiveServer;
    use hypercache_client::{BoardOwner, Incarnation};

    fn board(owner: Option<&str>, epoch: u64) -> Board {
        Board {
            board_id: "g-1".into(),
            owner: owner.map(|o| BoardOwner { server_id: o.into(), incarnation: Incarnation(1) }),
            epoch: Epoch(epoch),
            ..Default::default()
        }
    }

    #[test]
    fn only_live_owners_route() {
        let mut p = Placement::new();
        let a = LiveServer { server_id: "a".into(), address: "h:1".into(), capacity: 1, incarnation: Incarnation(1) };
        p.replace_servers([a]);
        let r = route_of(&board(Some("a"), 2), &p, Wanted::Any).unwrap();
        assert_eq!((r.address.as_str(), r.epoch), ("h:1", Epoch(2)));
        assert_eq!(route_of(&board(None, 3), &p, Wanted::Any), Err(NoRoute::Unassigned { epoch: Epoch(3) }));
        assert!(matches!(route_of(&board(Some("b"), 2), &p, Wanted::Any), Err(NoRoute::OwnerNotLive { .. })));
        assert_eq!(
            route_of(&board(Some("a"), 2), &p, Wanted::NewerThan(Epoch(2))),
            Err(NoRoute::NotNewer { epoch: Epoch(2) })
        );
        assert!(route_of(&board(Some("a"), 3), &p, Wanted::NewerThan(Epoch(2))).is_ok());
    }

    #[test]
    fn game_server_failures() {
        use tonic::Status;
        assert_eq!(classify_failure(&Status::unavailable("MOVED: now gs-2")), Failure::Moved);
        assert_eq!(classify_failure(&Status::not_found("MOVED: now gs-2")), Failure::Moved);
        assert_eq!(classify_failure(&Status::aborted("superseded by a newer Play stream of player p")), Failure::Final);
        assert_eq!(classify_failure(&Status::unavailable("tcp connect error")), Failure::Broken);
        assert_eq!(classify_failure(&Status::unknown("h2 protocol error: reset")), Failure::Broken);
        assert_eq!(classify_failure(&Status::not_found("game g-1 is not here")), Failure::NotFound);
        assert_eq!(classify_failure(&Status::resource_exhausted("game is full")), Failure::Final);
        assert_eq!(classify_failure(&Status::internal("invariant broken")), Failure::Final);
    }

    #[test]
    fn backoff_grows_to_a_cap() {
        let mut b = Backoff::default();
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] <= BACKOFF_FIRST);
        assert!(delays.iter().all(|d| *d <= BACKOFF_MAX));
        assert!(delays[9] >= BACKOFF_MAX / 2);
    }
}
