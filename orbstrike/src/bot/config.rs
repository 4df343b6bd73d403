//! The bot's flags ([`BotArgs`]) and validated configuration ([`BotConfig`]).

use std::time::Duration;

use super::BotError;
use crate::proto::v1 as pb;

/// Command-line flags of `orbstrike-bot`.
#[derive(Debug, Clone, clap::Args)]
pub struct BotArgs {
    /// Orchestrator endpoints, host:port[,host:port...]; players spread over them.
    #[arg(long, env = "ORBSTRIKE_ORCHESTRATOR", value_delimiter = ',', required = true)]
    pub orchestrator: Vec<String>,
    /// Games to create.
    #[arg(long, default_value_t = 1)]
    pub games: u32,
    /// Players per game.
    #[arg(long, default_value_t = 4)]
    pub players: u32,
    /// How long to play, e.g. 30s, 500ms, 2m.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Inputs per second per player.
    #[arg(long, default_value_t = 10)]
    pub input_hz: u32,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Join this existing game instead of creating games.
    #[arg(long, conflicts_with = "spectate")]
    pub join: Option<String>,
    /// Join this game as a player that never moves and draw the board live in the terminal.
    #[arg(long)]
    pub spectate: Option<String>,
    /// Arena radius of created games.
    #[arg(long, default_value_t = 1000.0)]
    pub arena_radius: f64,
    /// Player limit of created games (default: max(players, 8)).
    #[arg(long)]
    pub max_players: Option<u32>,
    /// Speed of created games, units per second.
    #[arg(long, default_value_t = 200.0)]
    pub speed: f64,
    #[arg(long, default_value_t = 15.0)]
    pub player_radius: f64,
    #[arg(long, default_value_t = 40.0)]
    pub ring_radius: f64,
    /// Tick rate of created games (0 = server default).
    #[arg(long, default_value_t = 0)]
    pub tick_hz: u32,
    /// Lifetime of created games (0 = none), e.g. 10m.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    pub lifetime: Duration,
    /// `x-client-id` sent with every call (the orchestrators' rate-limit key).
    #[arg(long)]
    pub client_id: Option<String>,
}

/// What [`run`](super::run) does.
#[derive(Debug, Clone)]
pub struct BotConfig {
    pub orchestrators: Vec<String>,
    /// Games to create (ignored with `join`).
    pub games: u32,
    /// Players per game.
    pub players: u32,
    pub duration: Duration,
    pub input_hz: u32,
    /// Play in this game instead of creating games.
    pub join: Option<String>,
    /// Parameters of created games.
    pub params: pb::GameParams,
    pub lifetime: Option<Duration>,
    pub client_id: String,
    /// Player names are `{name_prefix}-{game}-{player}`.
    pub name_prefix: String,
}

impl BotConfig {
    /// Defaults for tests and demos: 1 game, 4 players, 10 s, 10 inputs/s.
    pub fn new(orchestrators: Vec<String>) -> BotConfig {
        BotConfig {
            orchestrators,
            games: 1,
            players: 4,
            duration: Duration::from_secs(10),
            input_hz: 10,
            join: None,
            params: pb::GameParams {
                arena_radius: 1000.0,
                max_players: 8,
                speed: 200.0,
                player_radius: 15.0,
                ring_radius: 40.0,
                tick_hz: 0,
            },
            lifetime: None,
            client_id: format!("orbstrike-bot-{:08x}", rand::random::<u32>()),
            name_prefix: "bot".into(),
        }
    }

    pub fn validate(&self) -> Result<(), BotError> {
        let bad = |m: String| Err(BotError::Config(m));
        if self.orchestrators.is_empty() {
            return bad("--orchestrator: give at least one host:port".into());
        }
        if self.join.is_none() && !(1..=100_000).contains(&self.games) {
            return bad(format!("--games: {} must be 1..=100000", self.games));
        }
        if !(1..=64).contains(&self.players) {
            return bad(format!("--players: {} must be 1..=64 per game", self.players));
        }
        if self.duration.is_zero() {
            return bad("--duration must be greater than zero".into());
        }
        if !(1..=1000).contains(&self.input_hz) {
            return bad(format!("--input-hz: {} must be 1..=1000", self.input_hz));
        }
        Ok(())
    }
}

impl TryFrom<&BotArgs> for BotConfig {
    type Error = BotError;

    fn try_from(args: &BotArgs) -> Result<BotConfig, BotError> {
        let mut config = BotConfig::new(args.orchestrator.clone());
        config.games = args.games;
        config.players = args.players;
        config.duration = args.duration;
        config.input_hz = args.input_hz;
        config.join = args.join.clone();
        config.params = pb::GameParams {
            arena_radius: args.arena_radius,
            max_players: args.max_players.unwrap_or(args.players.max(8)),
            speed: args.speed,
            player_radius: args.player_radius,
            ring_radius: args.ring_radius,
            tick_hz: args.tick_hz,
        };
        config.lifetime = (!args.lifetime.is_zero()).then_some(args.lifetime);
        if let Some(id) = &args.client_id {
            config.client_id = id.clone();
        }
        config.validate()?;
        Ok(config)
    }
}

/// A duration flag that does not parse; the message names the text and the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration like 30s, 500ms or 2m")]
    NotANumber(String),
    #[error("unknown unit {unit:?} in {text:?}; use ms, s, m or h")]
    UnknownUnit { unit: String, text: String },
    #[error("{text:?}: {why}")]
    OutOfRange { text: String, why: std::time::TryFromFloatSecsError },
}

/// Parses `30s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| DurationError::NotANumber(text.to_string()))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(DurationError::UnknownUnit { unit: other.to_string(), text: text.to_string() }),
    };
    Duration::try_from_secs_f64(seconds).map_err(|why| DurationError::OutOfRange { text: text.to_string(), why })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn validation_names_the_flag() {
        let mut c = BotConfig::new(vec!["127.0.0.1:7300".into()]);
        c.validate().unwrap();
        c.players = 0;
        assert!(c.validate().unwrap_err().to_string().contains("--players"));
    }
}
