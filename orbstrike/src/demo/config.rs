//! The demo's flags ([`DemoArgs`]), their validation into a [`DemoConfig`], and the fixed plan
//! of which port each process gets ([`PortPlan`]).
//!
//! Every port is an offset from `--base-port`, so one flag moves the whole stack and the demo
//! occupies exactly `base..base+99`:
//!
//! | offset  | what                                   |
//! |---------|----------------------------------------|
//! | 0..=2   | HyperCache nodes 1-3, gRPC             |
//! | 10..=12 | HyperCache nodes 1-3, admin HTTP       |
//! | 20, 21  | orchestrators 1-2, gRPC (the public API) |
//! | 30, 31  | orchestrators 1-2, admin HTTP          |
//! | 40, 41  | game servers 1-2, gRPC                 |
//! | 50, 51  | game servers 1-2, admin HTTP           |
//!
//! The default base is 7200 rather than 7100 so that the demo can run next to the store's own
//! dev cluster (`hypercache dev`, ports 7001-7003 and 7101-7103).

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use crate::bot::parse_duration;

/// Default first port of the demo's range.
pub const DEFAULT_BASE_PORT: u16 = 7200;
/// Ports the demo may use above `--base-port`.
pub const PORT_SPAN: u16 = 100;
/// Store nodes, orchestrators and game servers the demo runs.
pub const NODES: u16 = 3;
pub const ORCHESTRATORS: u16 = 2;
pub const GAME_SERVERS: u16 = 2;

/// Flags of `orbstrike-demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Directory for every process's data and log (must be new or empty; default: a fresh
    /// directory under the system temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// First port of the demo's range; it uses base..base+99 on 127.0.0.1.
    #[arg(long, default_value_t = DEFAULT_BASE_PORT)]
    pub base_port: u16,
    /// Games the bots create.
    #[arg(long, default_value_t = 4)]
    pub games: u32,
    /// Bot players per game.
    #[arg(long, default_value_t = 4)]
    pub players: u32,
    /// Inputs per second per bot player.
    #[arg(long, default_value_t = 10)]
    pub input_hz: u32,
    /// Restart a game server or orchestrator this long after it died (e.g. 5s; 0 = never), so
    /// that the other one can be killed next.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub restart_after: Duration,
    /// Use the binaries next to this one as they are, even when run by cargo.
    #[arg(long)]
    pub no_build: bool,
}

/// A flag with an invalid value; the message names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --{flag}: {message}")]
pub struct FlagError {
    pub flag: &'static str,
    pub message: String,
}

fn flag_error(flag: &'static str, message: impl Into<String>) -> FlagError {
    FlagError { flag, message: message.into() }
}

/// Where the data directory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDir {
    /// Given with `--dir`.
    Given(PathBuf),
    /// Created fresh under the system temp dir.
    Fresh,
}

/// Validated demo settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoConfig {
    pub dir: DataDir,
    pub ports: PortPlan,
    pub games: u32,
    pub players: u32,
    pub input_hz: u32,
    /// `None`: dead processes are not restarted.
    pub restart_after: Option<Duration>,
    pub build: bool,
}

impl TryFrom<&DemoArgs> for DemoConfig {
    type Error = FlagError;

    fn try_from(args: &DemoArgs) -> Result<DemoConfig, FlagError> {
        let ports = PortPlan::new(args.base_port)?;
        if !(1..=1000).contains(&args.games) {
            return Err(flag_error("games", format!("{} must be within 1..=1000", args.games)));
        }
        // The bots create games with max_players = max(players, 8), and a board holds at most 64.
        if !(1..=64).contains(&args.players) {
            return Err(flag_error("players", format!("{} must be within 1..=64", args.players)));
        }
        if !(1..=100).contains(&args.input_hz) {
            return Err(flag_error("input-hz", format!("{} must be within 1..=100", args.input_hz)));
        }
        if args.restart_after > Duration::from_secs(3600) {
            return Err(flag_error(
                "restart-after",
                format!("{:?} must be at most 1h (0 = never)", args.restart_after),
            ));
        }
        let dir = args.dir.clone().map_or(DataDir::Fresh, DataDir::Given);
        Ok(DemoConfig {
            dir,
            ports,
            games: args.games,
            players: args.players,
            input_hz: args.input_hz,
            restart_after: (!args.restart_after.is_zero()).then_some(args.restart_after),
            build: !args.no_build,
        })
    }
}

/// Which port each process of the demo listens on (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortPlan {
    base: u16,
}

impl PortPlan {
    /// Checks that `base..base+99` is a range of unprivileged ports.
    pub fn new(base: u16) -> Result<PortPlan, FlagError> {
        let last = u32::from(base) + u32::from(PORT_SPAN) - 1;
        if base < 1024 || last > u32::from(u16::MAX) {
            return Err(flag_error(
                "base-port",
                format!(
                    "{base} must be within 1024..={} (the demo uses base..base+{})",
                    u16::MAX - (PORT_SPAN - 1),
                    PORT_SPAN - 1
                ),
            ));
        }
        Ok(PortPlan { base })
    }

    pub fn base(&self) -> u16 {
        self.base
    }

    /// gRPC port of store node `i` (1-based): what `hypercache dev --base-port` gets for i = 1.
    pub fn node(&self, i: u16) -> u16 {
        self.base + i - 1
    }

    pub fn node_admin(&self, i: u16) -> u16 {
        self.base + 10 + i - 1
    }

    pub fn orchestrator(&self, i: u16) -> u16 {
        self.base + 20 + i - 1
    }

    pub fn orchestrator_admin(&self, i: u16) -> u16 {
        self.base + 30 + i - 1
    }

    pub fn game_server(&self, i: u16) -> u16 {
        self.base + 40 + i - 1
    }

    pub fn game_server_admin(&self, i: u16) -> u16 {
        self.base + 50 + i - 1
    }

    /// Every port the demo listens on, with what uses it.
    pub fn all(&self) -> Vec<(u16, String)> {
        let mut ports = Vec::new();
        for i in 1..=NODES {
            ports.push((self.node(i), format!("HyperCache node-{i} gRPC")));
            ports.push((self.node_admin(i), format!("HyperCache node-{i} admin")));
        }
        for i in 1..=ORCHESTRATORS {
            ports.push((self.orchestrator(i), format!("orchestrator-{i} gRPC")));
            ports.push((self.orchestrator_admin(i), format!("orchestrator-{i} admin")));
        }
        for i in 1..=GAME_SERVERS {
            ports.push((self.game_server(i), format!("gs-{i} gRPC")));
            ports.push((self.game_server_admin(i), format!("gs-{i} admin")));
        }
        ports.sort();
        ports
    }

    /// Fails naming every port that something else already listens on.
    ///
    /// A check, not a reservation: a port taken between this check and the process binding it
    /// shows up as that process failing to start, with its log named.
    pub fn check_free(&self) -> Result<(), FlagError> {
        let taken: Vec<String> = self
            .all()
            .into_iter()
            .filter_map(|(port, what)| {
                TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
                    .err()
                    .map(|e| format!("{port} ({what}: {e})"))
            })
            .collect();
        if taken.is_empty() {
            return Ok(());
        }
        Err(flag_error(
            "base-port",
            format!(
                "the demo needs ports {}..={} on 127.0.0.1, but these are not free: {}; pick another range with --base-port",
                self.base,
                self.base + PORT_SPAN - 1,
                taken.join(", ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: DemoArgs,
    }

    fn parse(argv: &[&str]) -> Result<DemoConfig, FlagError> {
        let mut all = vec!["demo"];
        all.extend_from_slice(argv);
        DemoConfig::try_from(&Cli::try_parse_from(all).expect("flags parse").args)
    }

    #[test]
    fn defaults_are_valid_and_ports_distinct() {
        let c = parse(&[]).expect("defaults");
        assert_eq!((c.games, c.players, c.input_hz), (4, 4, 10));
        assert_eq!(c.dir, DataDir::Fresh);
        assert_eq!(c.restart_after, Some(Duration::from_secs(5)));
        assert!(c.build);
        let ports = c.ports.all();
        assert_eq!(ports.len(), 2 * usize::from(NODES + ORCHESTRATORS + GAME_SERVERS));
        let mut unique: Vec<u16> = ports.iter().map(|(p, _)| *p).collect();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        assert!(ports.iter().all(|(p, _)| (7200..7300).contains(p)));
        assert_eq!((c.ports.node(1), c.ports.orchestrator(2), c.ports.game_server(1)), (7200, 7221, 7240));
        assert_eq!(parse(&["--restart-after", "0"]).expect("valid").restart_after, None);
    }

    #[test]
    fn errors_name_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--base-port", "80"], "base-port"),
            (&["--base-port", "65500"], "base-port"),
            (&["--games", "0"], "games"),
            (&["--players", "65"], "players"),
            (&["--input-hz", "0"], "input-hz"),
            (&["--restart-after", "2h"], "restart-after"),
        ];
        for (argv, flag) in cases {
            let err = parse(argv).expect_err(flag);
            assert_eq!(err.flag, *flag, "{err}");
            assert!(err.to_string().starts_with(&format!("invalid --{flag}: ")), "{err}");
        }
    }

    #[test]
    fn a_taken_port_is_named() {
        let held = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = held.local_addr().expect("addr").port();
        // Put the held port at the orchestrator-1 gRPC slot.
        let Ok(plan) = PortPlan::new(port.saturating_sub(20)) else { return };
        let err = plan.check_free().expect_err("taken");
        assert_eq!(err.flag, "base-port");
        assert!(err.message.contains(&format!("{port} (orchestrator-1 gRPC: ")), "{err}");
    }
}
