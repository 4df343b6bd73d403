//! `--spectate`: join a game as a player that never moves and draw the board in the terminal.
//!
//! The arena is drawn as a circle of dots, each player as the first letter of its name in its
//! colour (the spectator itself as `@`), and a ringed player with its ring as `*` around it;
//! below, the players by kills. Terminal cells are about twice as tall as wide, so the grid
//! is twice as many columns as rows to keep the arena round. The frame is redrawn ~10 times a
//! second with ANSI escapes (home, clear to end). The spectator is a real player on the board:
//! it can be killed, and then it joins again.

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use super::connect::Orchestrators;
use super::view::{Applied, BoardView};
use super::{BotConfig, BotError};
use crate::proto::v1 as pb;
use pb::play_request::Msg;

const ROWS: usize = 30;
const COLS: usize = 2 * ROWS;
const FRAME: Duration = Duration::from_millis(100);
/// Players listed under the arena.
const LEGEND: usize = 10;

/// Draws the board as text with ANSI colours; `me` is drawn as `@`.
pub fn render(view: &BoardView, me: Option<u32>, rows: usize, cols: usize) -> String {
    let rows = rows.max(3);
    let cols = cols.max(3);
    let radius = view.arena_radius().unwrap_or(1000.0).max(1.0);
    let mut grid: Vec<Vec<(char, Option<u32>)>> = vec![vec![(' ', None); cols]; rows];
    let (cw, ch) = (2.0 * radius / cols as f64, 2.0 * radius / rows as f64);
    let cell_of = |x: f64, y: f64| -> Option<(usize, usize)> {
        let c = ((x + radius) / cw).floor();
        let r = ((radius - y) / ch).floor();
        (c >= 0.0 && r >= 0.0 && (c as usize) < cols && (r as usize) < rows).then_some((r as usize, c as usize))
    };
    for (r, row) in grid.iter_mut().enumerate() {
        for (c, cell) in row.iter_mut().enumerate() {
            let x = -radius + (c as f64 + 0.5) * cw;
            let y = radius - (r as f64 + 0.5) * ch;
            if (x.hypot(y) - radius).abs() <= cw.max(ch) * 0.5 {
                *cell = ('.', None);
            }
        }
    }
    for p in view.players.values().filter(|p| p.ring) {
        let steps = 24;
        for i in 0..steps {
            let a = i as f64 / steps as f64 * std::f64::consts::TAU;
            if let Some((r, c)) = cell_of(p.x + p.ring_radius * a.cos(), p.y + p.ring_radius * a.sin()) {
                grid[r][c] = ('*', Some(p.color));
            }
        }
    }
    for p in view.players.values() {
        if let Some((r, c)) = cell_of(p.x, p.y) {
            let letter =
                if Some(p.id) == me { '@' } else { p.name.chars().next().map_or('?', |ch| ch.to_ascii_uppercase()) };
            grid[r][c] = (letter, Some(p.color));
        }
    }
    let mut out = String::new();
    for row in &grid {
        for (ch, color) in row {
            match color {
                Some(rgb) => {
                    let (r, g, b) = ((rgb >> 16) & 0xff, (rgb >> 8) & 0xff, rgb & 0xff);
                    out.push_str(&format!("\x1b[38;2;{r};{g};{b}m{ch}\x1b[0m"));
                }
                None => out.push(*ch),
            }
        }
        out.push('\n');
    }
    out.push_str(&format!("game {}  tick {}  players {}\n", view.game_id, view.tick, view.players.len()));
    let mut by_kills: Vec<&pb::Player> = view.players.values().collect();
    by_kills.sort_by(|a, b| b.kills.cmp(&a.kills).then(a.id.cmp(&b.id)));
    for p in by_kills.into_iter().take(LEGEND) {
        let ring = if p.ring { "ring" } else { "" };
        let me = if Some(p.id) == me { " (you)" } else { "" };
        out.push_str(&format!("  #{:<4} {:<32} kills {:<4} {ring}{me}\n", p.id, p.name, p.kills));
    }
    out
}

/// Spectates `game_id` for `config.duration`, drawing to `out`.
pub async fn spectate(config: &BotConfig, game_id: &str, out: &mut (impl Write + Send)) -> Result<(), BotError> {
    let orchestrators = Orchestrators::new(&config.orchestrators, &config.client_id)?;
    let deadline = Instant::now() + config.duration;
    while Instant::now() < deadline {
        let mut client = orchestrators.client();
        let join = pb::JoinGameRequest { game_id: game_id.to_string(), name: "spectator".into() };
        let joined = match timeout(Duration::from_secs(10), client.join_game(orchestrators.request(join))).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => {
                return Err(BotError::Rpc { operation: "JoinGame", status });
            }
            Ok(Err(status)) => {
                tracing::warn!(%status, "join failed; retrying");
                sleep_until((Instant::now() + Duration::from_secs(1)).min(deadline)).await;
                continue;
            }
            Err(_) => continue,
        };
        watch_once(&orchestrators, &joined, deadline, out).await?;
    }
    Ok(())
}

/// One Play stream: draw until game over, a broken stream or the deadline.
async fn watch_once(
    orchestrators: &Orchestrators,
    joined: &pb::JoinGameResponse,
    deadline: Instant,
    out: &mut (impl Write + Send),
) -> Result<(), BotError> {
    let (tx, rx) = mpsc::channel(4);
    let hello = pb::Hello { token: joined.token.clone(), ..Default::default() };
    let _ = tx.try_send(pb::PlayRequest { msg: Some(Msg::Hello(hello)) });
    let mut client = orchestrators.client();
    let mut stream = match client.play(orchestrators.request(ReceiverStream::new(rx))).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            tracing::warn!(%status, "Play failed; retrying");
            sleep_until((Instant::now() + Duration::from_secs(1)).min(deadline)).await;
            return Ok(());
        }
    };
    let mut view = BoardView::default();
    let mut frames = tokio::time::interval(FRAME);
    frames.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let draw = |view: &BoardView, out: &mut (dyn Write + Send)| -> Result<(), BotError> {
        let frame = render(view, Some(joined.player_id), ROWS, COLS);
        write!(out, "\x1b[H{frame}\x1b[J").and_then(|()| out.flush()).map_err(BotError::Terminal)
    };
    write!(out, "\x1b[2J").map_err(BotError::Terminal)?;
    loop {
        tokio::select! {
            _ = sleep_until(deadline) => return Ok(()),
            _ = frames.tick() => draw(&view, out)?,
            update = stream.next() => match update {
                Some(Ok(update)) => {
                    if view.apply(&update) == Applied::GameOver {
                        draw(&view, out)?;
                        writeln!(out, "the spectator was killed; joining again").map_err(BotError::Terminal)?;
                        return Ok(());
                    }
                }
                Some(Err(status)) => {
                    tracing::warn!(%status, "stream ended; reconnecting");
                    return Ok(());
                }
                None => return Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn player(id: u32, name: &str, x: f64, y: f64, ring: bool) -> pb::Player {
        pb::Player { id, name: name.into(), x, y, ring, ring_radius: 200.0, color: 0xff0000, ..Default::default() }
    }

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn players_rings_and_the_arena_are_drawn_where_they_are() {
        let mut view = BoardView {
            game_id: "g-1".into(),
            params: Some(pb::GameParams { arena_radius: 1000.0, ..Default::default() }),
            ..Default::default()
        };
        view.players.insert(1, player(1, "ann", 0.0, 0.0, true));
        view.players.insert(2, player(2, "bob", 0.0, 900.0, false));
        view.players.insert(3, player(3, "me", -900.0, 0.0, false));
        let text = strip_ansi(&render(&view, Some(3), 20, 40));
        let lines: Vec<&str> = text.lines().collect();
        // Ann in the middle with her ring around her; Bob near the top; the spectator on the left.
        assert_eq!(lines[10].chars().nth(20), Some('A'));
        assert!(lines[10].contains('*'));
        assert!(lines[1].contains('B'), "{}", lines[1]);
        assert_eq!(lines[10].chars().nth(2), Some('@'));
        assert!(lines[0].contains('.') && lines[19].contains('.'), "the arena edge");
        assert!(text.contains("players 3"));
        assert!(text.contains("(you)"));
    }
}
