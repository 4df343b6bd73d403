//! `hcctl servers`: the game-server registry.

use std::collections::HashMap;
use std::time::Duration;

use clap::Subcommand;
use hypercache_client::{Client, GameServer, Incarnation, LeaseKeeper, RegisterOptions, ServerUpdate};
use serde_json::{json, Value};

use crate::exit;
use crate::failure::Failure;
use crate::lease_cmd::lost_text;
use crate::output::{note, Out};
use crate::terminal::{ctrl_c, Interrupt};

#[derive(Debug, Subcommand)]
pub enum ServersCommand {
    /// List the live servers.
    List,
    /// Print the live servers, then every UP / DOWN change, until Ctrl-C.
    Watch,
    /// Register (or re-register) a server; prints its lease and incarnation.
    Register {
        id: String,
        /// host:port of the server's own API.
        address: String,
        #[arg(long, default_value_t = 0)]
        capacity: u32,
        /// A label KEY=VALUE (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// TTL of the registration's lease, in milliseconds.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        ttl_ms: u64,
        /// Keep the lease alive until Ctrl-C, then deregister. Exit 7 if the lease is lost.
        #[arg(long)]
        keepalive: bool,
    },
    /// End a registration; INCARNATION must be the current one.
    Deregister { id: String, incarnation: u64 },
}

/// A `--label` that is not `KEY=VALUE` with a non-empty key; clap prints it as a usage error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label {text:?}: expected KEY=VALUE")]
struct LabelError {
    text: String,
}

fn parse_label(text: &str) -> Result<(String, String), LabelError> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(LabelError { text: text.to_string() }),
    }
}

pub(super) async fn run(client: &Client, out: &mut Out, json: bool, command: ServersCommand) -> Result<u8, Failure> {
    match command {
        ServersCommand::List => {
            let servers = client.list_servers().await?;
            if json {
                out.update(true, "", &json!({"servers": servers.iter().map(server_json).collect::<Vec<_>>()}))?;
            } else {
                for server in &servers {
                    out.line(&server_line(server))?;
                }
                out.flush()?;
            }
            Ok(exit::OK)
        }
        ServersCommand::Watch => watch(client, out, json).await,
        ServersCommand::Register { id, address, capacity, labels, ttl_ms, keepalive } => {
            let options = RegisterOptions {
                server_id: id.clone(),
                address,
                capacity,
                labels: labels.into_iter().collect::<HashMap<_, _>>(),
                ttl: Duration::from_millis(ttl_ms),
            };
            let registration = client.register(options).await?;
            let (lease, incarnation) = (registration.lease.id, registration.incarnation);
            let text = format!("registered {id} incarnation={incarnation} lease={lease}");
            let value = json!({
                "server_id": id, "incarnation": incarnation.0, "lease": lease.0,
                "ttl_ms": registration.lease.ttl.as_millis() as u64, "revision": registration.revision,
            });
            out.update(json, &text, &value)?;
            if !keepalive {
                return Ok(exit::OK);
            }
            let keeper = LeaseKeeper::spawn(client.clone(), registration.lease)?;
            tokio::select! {
                state = keeper.lost() => {
                    if let hypercache_client::LeaseState::Lost { reason, .. } = state {
                        note(&format!("registration lease {lease} lost: {}", lost_text(&reason)));
                    }
                    Ok(exit::LEASE_NOT_FOUND)
                }
                _ = ctrl_c() => {
                    keeper.stop().await;
                    client.deregister(&id, incarnation).await?;
                    out.update(json, &format!("deregistered {id}"), &json!({"server_id": id, "deregistered": true}))?;
                    Ok(exit::OK)
                }
            }
        }
        ServersCommand::Deregister { id, incarnation } => {
            client.deregister(&id, Incarnation(incarnation)).await?;
            out.update(json, &format!("deregistered {id}"), &json!({"server_id": id, "deregistered": true}))?;
            Ok(exit::OK)
        }
    }
}

async fn watch(client: &Client, out: &mut Out, json: bool) -> Result<u8, Failure> {
    let mut watch = client.watch_servers();
    let mut interrupt = Interrupt::listen();
    loop {
        let Some(update) = interrupt.or(watch.next()).await else { return Ok(exit::OK) };
        match update {
            Ok(ServerUpdate::Snapshot { revision, servers }) => {
                let value = json!({
                    "type": "SNAPSHOT", "revision": revision,
                    "servers": servers.iter().map(server_json).collect::<Vec<_>>(),
                });
                out.update(json, &format!("SNAPSHOT {} servers (rev {revision})", servers.len()), &value)?;
                if !json {
                    for server in &servers {
                        out.update(false, &format!("UP {} (rev {revision})", server_line(server)), &Value::Null)?;
                    }
                }
            }
            Ok(ServerUpdate::Changes { changes, .. }) => {
                for change in &changes {
                    let kind = if change.up { "UP" } else { "DOWN" };
                    let text = format!("{kind} {} (rev {})", server_line(&change.server), change.revision);
                    let value =
                        json!({"type": kind, "server": server_json(&change.server), "revision": change.revision});
                    out.update(json, &text, &value)?;
                }
            }
            Err(err) if err.is_retryable() => note(&format!("servers watch: {err}; retrying")),
            Err(err) => return Err(err.into()),
        }
    }
}

fn server_line(s: &GameServer) -> String {
    let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    format!(
        "{} {} capacity={} incarnation={} lease={} labels={}",
        s.server_id,
        s.address,
        s.capacity,
        s.incarnation,
        s.lease,
        labels.join(",")
    )
}

fn server_json(s: &GameServer) -> Value {
    json!({
        "server_id": s.server_id, "address": s.address, "capacity": s.capacity, "labels": s.labels,
        "lease": s.lease.0, "incarnation": s.incarnation.0, "revision": s.revision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypercache_client::LeaseId;

    #[test]
    fn labels_and_server_lines() {
        assert_eq!(parse_label("zone=eu=1"), Ok(("zone".into(), "eu=1".into())));
        assert!(parse_label("=x").is_err() && parse_label("x").is_err());
        let server = GameServer {
            server_id: "s1".into(),
            address: "h:1".into(),
            capacity: 4,
            labels: [("b".to_string(), "2".to_string()), ("a".to_string(), "1".to_string())].into(),
            lease: LeaseId(7),
            incarnation: Incarnation(3),
            revision: 9,
        };
        assert_eq!(server_line(&server), "s1 h:1 capacity=4 incarnation=3 lease=7 labels=a=1,b=2");
        // The typed ids print as the bare numbers they have always been.
        let v = server_json(&server);
        assert_eq!([&v["lease"], &v["incarnation"]].map(Value::as_u64), [Some(7), Some(3)]);
    }
}
