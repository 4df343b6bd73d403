//! Prometheus metrics of one orchestrator, in a registry of its own (tests run several in one
//! process). Names follow `orbstrike_orchestrator_<name>_<unit>`; labels are bounded (method and
//! gRPC code), never per game, server or player.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    pub play_streams: IntGauge,
    pub reroutes: IntCounter,
    pub dropped_inputs: IntCounter,
    pub failover_moves: IntCounter,
    pub failover_leader: IntGauge,
    pub live_servers: IntGauge,
    pub games: IntGauge,
    pub board_scans: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("orbstrike_orchestrator_requests_total", "Public API calls by method and gRPC code"),
            &["method", "code"],
        )?;
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("orbstrike_orchestrator_request_duration_seconds", "Unary public API call latency")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["method"],
        )?;
        let play_streams = IntGauge::new("orbstrike_orchestrator_play_streams", "Player streams being proxied")?;
        let reroutes = IntCounter::new(
            "orbstrike_orchestrator_reroutes_total",
            "Player streams re-opened on another game server after a move or a failure",
        )?;
        let dropped_inputs = IntCounter::new(
            "orbstrike_orchestrator_dropped_inputs_total",
            "Player inputs dropped because the game server stream was full or being re-routed",
        )?;
        let failover_moves =
            IntCounter::new("orbstrike_orchestrator_failover_moves_total", "Boards moved by this failover master")?;
        let failover_leader = IntGauge::new(
            "orbstrike_orchestrator_failover_leader",
            "1 while this orchestrator is the failover master",
        )?;
        let live_servers =
            IntGauge::new("orbstrike_orchestrator_live_servers", "Game servers live in the registry view")?;
        let games = IntGauge::new("orbstrike_orchestrator_games", "Games (boards) in the last scan")?;
        // How often placement and failover got a fresh view (a stalled scan stalls failover).
        let board_scans =
            IntCounter::new("orbstrike_orchestrator_board_scans_total", "Completed listings of all boards")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(play_streams.clone()))?;
        registry.register(Box::new(reroutes.clone()))?;
        registry.register(Box::new(dropped_inputs.clone()))?;
        registry.register(Box::new(failover_moves.clone()))?;
        registry.register(Box::new(failover_leader.clone()))?;
        registry.register(Box::new(live_servers.clone()))?;
        registry.register(Box::new(games.clone()))?;
        registry.register(Box::new(board_scans.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            request_seconds,
            play_streams,
            reroutes,
            dropped_inputs,
            failover_moves,
            failover_leader,
            live_servers,
            games,
            board_scans,
        })
    }

    /// Counts one call of `method` that ended with `code` after `elapsed`.
    pub fn observe(&self, method: &str, code: tonic::Code, elapsed: Option<Duration>) {
        self.requests.with_label_values(&[method, code_name(code)]).inc();
        if let Some(elapsed) = elapsed {
            self.request_seconds.with_label_values(&[method]).observe(elapsed.as_secs_f64());
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bounded_series() {
        let m = Metrics::new().unwrap();
        m.observe("CreateGame", tonic::Code::Ok, Some(Duration::from_millis(3)));
        m.observe("CreateGame", tonic::Code::ResourceExhausted, None);
        m.reroutes.inc();
        let text = m.render();
        assert!(
            text.contains("orbstrike_orchestrator_requests_total{code=\"RESOURCE_EXHAUSTED\",method=\"CreateGame\"} 1")
        );
        assert!(text.contains("orbstrike_orchestrator_reroutes_total 1"));
    }
}
