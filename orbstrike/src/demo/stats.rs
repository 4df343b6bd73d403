//! What the demo shows once a second: the orchestrators' global statistics (a WatchStats
//! subscription), which game server holds which boards (ListGames), and board moves as they
//! happen.
//!
//! The demo is a client like any other: it reads only the public orchestrator API, and it
//! switches to the other orchestrator when its subscription breaks, so killing an orchestrator
//! does not blank the display. Formatting is pure ([`status_line`], [`board_moves`]) and tested.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hypercache_client::Epoch;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

use crate::proto::v1 as pb;
use pb::orchestrator_client::OrchestratorClient;

/// Wait before subscribing again after a broken subscription.
const RESUBSCRIBE: Duration = Duration::from_millis(500);
/// Longest wait for a ListGames page.
const LIST_TIMEOUT: Duration = Duration::from_secs(2);

/// Lazily connected clients of the orchestrators, tried in turn.
#[derive(Clone)]
pub struct Orchestrators {
    channels: Vec<Channel>,
}

impl Orchestrators {
    /// `endpoints` are `host:port` (they come from the demo's own port plan).
    pub fn new(endpoints: &[String]) -> Result<Orchestrators, tonic::transport::Error> {
        let channels = endpoints
            .iter()
            .map(|e| {
                Endpoint::from_shared(format!("http://{e}"))
                    .map(|ep| ep.connect_timeout(Duration::from_secs(1)).tcp_nodelay(true).connect_lazy())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Orchestrators { channels })
    }

    fn client(&self, i: usize) -> Option<OrchestratorClient<Channel>> {
        self.channels.get(i % self.channels.len().max(1)).cloned().map(OrchestratorClient::new)
    }

    /// Every game with its owner, from the first orchestrator that answers.
    pub async fn list_games(&self) -> Option<Vec<pb::GameSummary>> {
        for i in 0..self.channels.len() {
            if let Some(games) = self.list_games_at(i).await {
                return Some(games);
            }
        }
        None
    }

    async fn list_games_at(&self, i: usize) -> Option<Vec<pb::GameSummary>> {
        let mut client = self.client(i)?;
        let mut games = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = pb::ListGamesRequest { limit: 1000, page_token };
            let page = tokio::time::timeout(LIST_TIMEOUT, client.list_games(request)).await.ok()?.ok()?.into_inner();
            games.extend(page.games);
            if page.next_page_token.is_empty() {
                return Some(games);
            }
            page_token = page.next_page_token;
        }
    }

    /// Follows WatchStats, moving to the next orchestrator whenever a subscription ends; the
    /// latest statistics are published on the returned channel until the task is aborted.
    pub fn watch_stats(&self) -> (watch::Receiver<Option<pb::Stats>>, JoinHandle<()>) {
        let (tx, rx) = watch::channel(None);
        let this = self.clone();
        let task = tokio::spawn(async move {
            let mut i = 0;
            loop {
                if let Some(mut client) = this.client(i) {
                    if let Ok(response) = client.watch_stats(pb::WatchStatsRequest {}).await {
                        let mut stream = response.into_inner();
                        while let Ok(Some(stats)) = stream.message().await {
                            tx.send_replace(Some(stats));
                        }
                    }
                }
                i += 1;
                tokio::time::sleep(RESUBSCRIBE).await;
            }
        });
        (rx, task)
    }
}

/// What the status line says about one game server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerView {
    pub id: String,
    pub pid: u32,
    /// `None` while it runs; how it ended otherwise.
    pub dead: Option<String>,
}

/// One line: global stats, then each game server with its pid and the boards it owns.
pub fn status_line(
    elapsed: Duration,
    stats: Option<&pb::Stats>,
    servers: &[ServerView],
    games: Option<&[pb::GameSummary]>,
) -> String {
    let mut line = format!("[{:>5}s] ", elapsed.as_secs());
    match stats {
        Some(s) => {
            let _ = write!(
                line,
                "games {}  players {}  kills {}  moves/s {:.0}  servers {}",
                s.games, s.players, s.kills, s.moves_per_second, s.servers
            );
        }
        None => line.push_str("waiting for the orchestrators' stats"),
    }
    let mut owned: BTreeMap<&str, usize> = BTreeMap::new();
    for game in games.unwrap_or_default() {
        *owned.entry(game.server_id.as_str()).or_default() += 1;
    }
    for server in servers {
        let boards = match games {
            Some(_) => owned.remove(server.id.as_str()).unwrap_or(0).to_string(),
            None => "?".to_string(),
        };
        let state = match &server.dead {
            None => format!("pid {}", server.pid),
            Some(how) => format!("pid {} {how}", server.pid),
        };
        let _ = write!(line, " | {} {state}: {boards} boards", server.id);
    }
    // Boards between owners (released, or their owner died and they wait for the failover).
    let unowned = owned.remove("").unwrap_or(0);
    if unowned > 0 {
        let _ = write!(line, " | moving: {unowned}");
    }
    for (other, n) in owned {
        let _ = write!(line, " | {other}: {n} boards");
    }
    line
}

/// A board that changed owner between two listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardMove {
    pub game_id: String,
    pub from: String,
    pub to: String,
    pub epoch: Epoch,
}

/// Owner per game (`""` for none) and its epoch.
pub type Owners = BTreeMap<String, (String, Epoch)>;

pub fn owners(games: &[pb::GameSummary]) -> Owners {
    games.iter().map(|g| (g.game_id.clone(), (g.server_id.clone(), Epoch(g.epoch)))).collect()
}

/// `after`, except that a board without an owner keeps its last known one, so that a board
/// passing through "released" or "owner dead" is reported as one move from server to server.
pub fn remember_owners(before: &Owners, mut after: Owners) -> Owners {
    for (game, (owner, _)) in after.iter_mut() {
        if owner.is_empty() {
            if let Some((previous, _)) = before.get(game) {
                owner.clone_from(previous);
            }
        }
    }
    after
}

/// Boards now owned by a server other than their last known owner. A board's first owner is
/// not a move, and a board without an owner is not news: the next listing shows where it lands.
pub fn board_moves(before: &Owners, after: &Owners) -> Vec<BoardMove> {
    after
        .iter()
        .filter_map(|(game, (to, epoch))| {
            let (from, _) = before.get(game)?;
            (!from.is_empty() && !to.is_empty() && to != from).then(|| BoardMove {
                game_id: game.clone(),
                from: from.clone(),
                to: to.clone(),
                epoch: *epoch,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn game(id: &str, server: &str, epoch: u64) -> pb::GameSummary {
        pb::GameSummary { game_id: id.into(), server_id: server.into(), epoch, params: None }
    }

    #[test]
    fn the_line_shows_stats_servers_and_boards() {
        let stats =
            pb::Stats { games: 3, players: 12, kills: 4, moves_per_second: 119.6, servers: 1, ..Default::default() };
        let servers = vec![
            ServerView { id: "gs-1".into(), pid: 11, dead: Some("killed by SIGKILL".into()) },
            ServerView { id: "gs-2".into(), pid: 12, dead: None },
        ];
        let games = vec![game("a", "gs-1", 1), game("b", "gs-2", 1), game("c", "", 2)];
        let line = status_line(Duration::from_secs(7), Some(&stats), &servers, Some(&games));
        assert_eq!(
            line,
            "[    7s] games 3  players 12  kills 4  moves/s 120  servers 1 \
             | gs-1 pid 11 killed by SIGKILL: 1 boards | gs-2 pid 12: 1 boards | moving: 1"
        );
        let line = status_line(Duration::from_secs(0), None, &servers[1..], None);
        assert_eq!(line, "[    0s] waiting for the orchestrators' stats | gs-2 pid 12: ? boards");
    }

    #[test]
    fn moves_are_owner_changes_to_a_server() {
        let before = owners(&[game("a", "gs-1", 1), game("b", "gs-1", 1), game("c", "", 2)]);
        let after = owners(&[game("a", "gs-2", 2), game("b", "", 2), game("c", "gs-1", 3), game("d", "gs-1", 1)]);
        let moves = board_moves(&before, &after);
        assert_eq!(
            moves,
            vec![BoardMove { game_id: "a".into(), from: "gs-1".into(), to: "gs-2".into(), epoch: Epoch(2) }],
            "c got its first owner and d is new: neither moved"
        );
        let remembered = remember_owners(&before, after.clone());
        assert_eq!(remembered["b"], ("gs-1".to_string(), Epoch(2)), "released: the last owner is kept");
        let later = owners(&[game("b", "gs-2", 3)]);
        let moved = board_moves(&remembered, &later);
        assert_eq!(
            moved,
            vec![BoardMove { game_id: "b".into(), from: "gs-1".into(), to: "gs-2".into(), epoch: Epoch(3) }]
        );
    }
}
