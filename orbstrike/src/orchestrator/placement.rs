//! The local placement view: live game servers and how many boards each holds.
//!
//! Placement must not cost store round trips per request (the original scanned every server's
//! hash per create and per connect), so each orchestrator keeps a view fed by two drivers
//! (see `discovery`): the registry watch (servers up and down, with incarnations) and a
//! periodic scan of all boards (counts per owner). Between scans, the placements this
//! orchestrator made itself are remembered as *reservations* and added on top of a scan that
//! does not show them yet, so a burst of creates spreads instead of piling on one server.
//!
//! The choice is pure: among live servers with spare capacity (boards < capacity), the one with
//! the lowest fill ratio (boards / capacity), then the fewest boards, then the smallest id. A
//! server registered with capacity 0 takes no boards. Other orchestrators' placements show up at
//! the next scan, so a server can briefly exceed its capacity by what several orchestrators
//! placed within one scan interval; the game server is the one that enforces hard limits.

use std::collections::HashMap;
use std::time::Duration;

use hypercache_client::{GameServer, Incarnation};
use tokio::time::Instant;

/// How long a reservation is added on top of scans that do not show it yet.
const RESERVATION_TTL: Duration = Duration::from_secs(5);

/// A registered game server as placement and routing need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveServer {
    pub server_id: String,
    pub address: String,
    pub capacity: u32,
    pub incarnation: Incarnation,
}

impl From<GameServer> for LiveServer {
    fn from(s: GameServer) -> Self {
        LiveServer { server_id: s.server_id, address: s.address, capacity: s.capacity, incarnation: s.incarnation }
    }
}

/// Why no server was chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("no live game servers are registered; try again once a game server is up")]
    NoServers,
    #[error("all {servers} live game servers are at capacity ({boards} boards for {capacity} slots)")]
    AllFull { servers: usize, boards: u64, capacity: u64 },
}

#[derive(Debug, Clone)]
struct Reservation {
    server_id: String,
    at: Instant,
}

/// Live servers and board counts per owner.
#[derive(Debug, Default)]
pub struct Placement {
    servers: HashMap<String, LiveServer>,
    counts: HashMap<String, u32>,
    /// Boards this orchestrator placed that a scan has not shown on their server yet.
    reservations: HashMap<String, Reservation>,
    /// True once a registry snapshot arrived and no watch error happened since.
    synced: bool,
}

impl Placement {
    pub fn new() -> Placement {
        Placement::default()
    }

    /// Replaces the servers with a registry snapshot.
    pub fn replace_servers(&mut self, servers: impl IntoIterator<Item = LiveServer>) {
        self.servers = servers.into_iter().map(|s| (s.server_id.clone(), s)).collect();
        self.synced = true;
    }

    /// A registration (or re-registration, with a larger incarnation).
    pub fn server_up(&mut self, server: LiveServer) {
        match self.servers.get(&server.server_id) {
            Some(known) if known.incarnation > server.incarnation => {}
            _ => {
                self.servers.insert(server.server_id.clone(), server);
            }
        }
    }

    /// A registration ended; ignored if a newer incarnation is already known.
    pub fn server_down(&mut self, server_id: &str, incarnation: Incarnation) {
        if self.servers.get(server_id).is_some_and(|s| s.incarnation <= incarnation) {
            self.servers.remove(server_id);
        }
    }

    /// The registry watch broke: the view may be missing changes until the next snapshot.
    pub fn mark_unsynced(&mut self) {
        self.synced = false;
    }

    /// True when the server view is complete as of the last registry snapshot plus changes.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    pub fn live(&self, server_id: &str) -> Option<&LiveServer> {
        self.servers.get(server_id)
    }

    pub fn live_servers(&self) -> impl Iterator<Item = &LiveServer> {
        self.servers.values()
    }

    pub fn server_count(&self) -> usize {
        self.servers.len()
    }

    pub fn boards_on(&self, server_id: &str) -> u32 {
        self.counts.get(server_id).copied().unwrap_or(0)
    }

    /// Takes a board scan: `owners` maps every listed board to its owner (None if unassigned).
    /// Reservations the scan confirms are dropped; younger ones it does not show are kept and
    /// counted.
    pub fn apply_scan<'a>(&mut self, owners: impl IntoIterator<Item = (&'a str, Option<&'a str>)>, now: Instant) {
        let mut counts: HashMap<String, u32> = HashMap::new();
        let mut owner_of: HashMap<&str, Option<&str>> = HashMap::new();
        for (board, owner) in owners {
            if let Some(owner) = owner {
                *counts.entry(owner.to_string()).or_default() += 1;
            }
            owner_of.insert(board, owner);
        }
        self.reservations.retain(|board, r| {
            let confirmed = owner_of.get(board.as_str()).is_some_and(|o| *o == Some(r.server_id.as_str()));
            let keep = !confirmed && now.saturating_duration_since(r.at) < RESERVATION_TTL;
            if keep {
                *counts.entry(r.server_id.clone()).or_default() += 1;
            }
            keep
        });
        self.counts = counts;
    }

    /// The server a new board should go to (see the module documentation), skipping `exclude`.
    pub fn choose(&self, exclude: &[&str]) -> Result<&LiveServer, PlacementError> {
        let candidates: Vec<&LiveServer> =
            self.servers.values().filter(|s| !exclude.contains(&s.server_id.as_str())).collect();
        if candidates.is_empty() {
            return Err(PlacementError::NoServers);
        }
        let with_room = candidates.iter().copied().filter(|s| self.boards_on(&s.server_id) < s.capacity);
        with_room
            .min_by(|a, b| {
                let (la, lb) = (u64::from(self.boards_on(&a.server_id)), u64::from(self.boards_on(&b.server_id)));
                // la / ca < lb / cb  <=>  la * cb < lb * ca (capacities are > 0 here).
                (la * u64::from(b.capacity))
                    .cmp(&(lb * u64::from(a.capacity)))
                    .then(la.cmp(&lb))
                    .then(a.server_id.cmp(&b.server_id))
            })
            .ok_or_else(|| PlacementError::AllFull {
                servers: candidates.len(),
                boards: candidates.iter().map(|s| u64::from(self.boards_on(&s.server_id))).sum(),
                capacity: candidates.iter().map(|s| u64::from(s.capacity)).sum(),
            })
    }

    /// Chooses a server for `board_id` and counts the board on it at once.
    pub fn reserve(&mut self, board_id: &str, exclude: &[&str], now: Instant) -> Result<LiveServer, PlacementError> {
        let chosen = self.choose(exclude)?.clone();
        self.unreserve(board_id);
        *self.counts.entry(chosen.server_id.clone()).or_default() += 1;
        self.reservations.insert(board_id.to_string(), Reservation { server_id: chosen.server_id.clone(), at: now });
        Ok(chosen)
    }

    /// Undoes [`reserve`](Self::reserve) after a failed assignment.
    pub fn unreserve(&mut self, board_id: &str) {
        if let Some(r) = self.reservations.remove(board_id) {
            if let Some(c) = self.counts.get_mut(&r.server_id) {
                *c = c.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(id: &str, capacity: u32) -> LiveServer {
        LiveServer { server_id: id.into(), address: format!("{id}:1"), capacity, incarnation: Incarnation(1) }
    }

    #[test]
    fn the_least_loaded_server_with_room_wins() {
        let now = Instant::now();
        let mut p = Placement::new();
        assert_eq!(p.choose(&[]).unwrap_err(), PlacementError::NoServers);
        p.replace_servers([server("a", 10), server("b", 10), server("c", 0)]);
        p.apply_scan([("g1", Some("a")), ("g2", Some("a")), ("g3", Some("b")), ("g4", None)], now);
        assert_eq!(p.choose(&[]).unwrap().server_id, "b");
        assert_eq!(p.choose(&["b"]).unwrap().server_id, "a");
        // Reservations spread a burst: b gets one, then the tie goes to the smaller id.
        assert_eq!(p.reserve("n1", &[], now).unwrap().server_id, "b");
        assert_eq!(p.reserve("n2", &[], now).unwrap().server_id, "a");
        assert_eq!(p.boards_on("a"), 3);
    }

    #[test]
    fn fill_ratio_not_raw_count_decides() {
        let mut p = Placement::new();
        p.replace_servers([server("big", 100), server("small", 4)]);
        p.apply_scan([("g1", Some("big")), ("g2", Some("big")), ("g3", Some("small"))], Instant::now());
        assert_eq!(p.choose(&[]).unwrap().server_id, "big", "2/100 is emptier than 1/4");
    }

    #[test]
    fn full_servers_are_reported_with_the_numbers() {
        let now = Instant::now();
        let mut p = Placement::new();
        p.replace_servers([server("a", 1), server("b", 0)]);
        p.reserve("g1", &[], now).unwrap();
        let err = p.reserve("g2", &[], now).unwrap_err();
        assert_eq!(err, PlacementError::AllFull { servers: 2, boards: 1, capacity: 1 });
        assert!(err.to_string().contains("at capacity"), "{err}");
        p.unreserve("g1");
        assert_eq!(p.reserve("g2", &[], now).unwrap().server_id, "a");
    }

    #[test]
    fn reservations_survive_scans_until_confirmed_or_old() {
        let t0 = Instant::now();
        let mut p = Placement::new();
        p.replace_servers([server("a", 10)]);
        p.reserve("g1", &[], t0).unwrap();
        // A scan that started before the assignment landed does not show g1 on a.
        p.apply_scan([("g1", None)], t0 + Duration::from_millis(10));
        assert_eq!(p.boards_on("a"), 1);
        // Confirmed: counted once, not twice.
        p.apply_scan([("g1", Some("a"))], t0 + Duration::from_millis(20));
        assert_eq!(p.boards_on("a"), 1);
        p.apply_scan([("g1", Some("a"))], t0 + Duration::from_millis(30));
        assert_eq!(p.boards_on("a"), 1);
        // A reservation never confirmed fades out.
        p.reserve("g2", &[], t0).unwrap();
        p.apply_scan([("g1", Some("a"))], t0 + RESERVATION_TTL);
        assert_eq!(p.boards_on("a"), 1);
    }

    #[test]
    fn registry_changes_respect_incarnations() {
        let mut p = Placement::new();
        assert!(!p.is_synced());
        p.replace_servers([server("a", 1)]);
        assert!(p.is_synced());
        p.server_up(LiveServer { incarnation: Incarnation(3), ..server("a", 5) });
        // A late DOWN of the older incarnation does not remove the newer one.
        p.server_down("a", Incarnation(1));
        assert_eq!(p.live("a").map(|s| s.incarnation), Some(Incarnation(3)));
        p.server_up(LiveServer { incarnation: Incarnation(2), ..server("a", 9) });
        assert_eq!(p.live("a").map(|s| s.capacity), Some(5), "an older UP is ignored");
        p.server_down("a", Incarnation(3));
        assert!(p.live("a").is_none());
        p.mark_unsynced();
        assert!(!p.is_synced());
    }
}
