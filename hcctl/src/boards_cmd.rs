//! `hcctl boards`: creation, fenced assignment, checkpoints, assignment watch.

use std::time::Duration;

use bytes::Bytes;
use clap::Subcommand;
use hypercache_client::{
    AssignBoard, AssignmentChange, AssignmentUpdate, Board, Checkpoint, Client, CreateBoard, Epoch, Reason, Seq, Term,
};
use rand::Rng;
use serde_json::{json, Map, Value};

use crate::exit;
use crate::failure::Failure;
use crate::output::{not_found, note, printable, put_bytes, Out};
use crate::terminal::{read_stdin, Interrupt};

#[derive(Debug, Subcommand)]
pub enum BoardsCommand {
    /// Create a board, unassigned at epoch 0. Exit 2 if the id is taken.
    Create {
        id: String,
        /// Opaque game parameters.
        #[arg(long)]
        params: Option<String>,
        /// Initial checkpoint data (seq 0).
        #[arg(long)]
        checkpoint: Option<String>,
        /// Delete the board when this many milliseconds have passed.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        lifetime_ms: Option<u64>,
    },
    /// Assign a board to a live server, bumping its epoch. Exit 2 if EPOCH is stale (the current
    /// owner is printed on stderr) or the server is not live.
    Assign {
        id: String,
        server: String,
        /// The epoch the board is expected to be at.
        #[arg(long)]
        epoch: u64,
        /// Idempotency key: repeating the last assignment's id returns its result (default: random).
        #[arg(long)]
        request_id: Option<String>,
        /// Fence the assignment with an election's term (with --term).
        #[arg(long, requires = "term")]
        election: Option<String>,
        #[arg(long, requires = "election")]
        term: Option<u64>,
    },
    /// Write a checkpoint fenced by EPOCH. DATA "-" reads it from stdin. Exit 2 if the epoch is
    /// stale (the current owner is printed on stderr) or SEQ is below the stored one.
    Sync {
        id: String,
        #[arg(long)]
        epoch: u64,
        #[arg(long)]
        seq: u64,
        data: String,
    },
    /// Print a board and its checkpoint. Exit 9 if it does not exist.
    Get { id: String },
    /// List boards (all pages).
    List {
        /// Only boards this server owns.
        #[arg(long)]
        owner: Option<String>,
    },
    /// The owner gives a board up: owner cleared, epoch bumped.
    Release {
        id: String,
        server: String,
        #[arg(long)]
        epoch: u64,
    },
    /// Delete a board and its checkpoint (with --epoch: only at that epoch).
    Delete {
        id: String,
        #[arg(long)]
        epoch: Option<u64>,
    },
    /// Print the boards SERVER owns, then every GAINED / LOST change, until Ctrl-C.
    Watch { server: String },
}

fn bytes_of(s: Option<String>) -> Bytes {
    s.map(|s| Bytes::from(s.into_bytes())).unwrap_or_default()
}

pub(super) async fn run(client: &Client, out: &mut Out, json: bool, command: BoardsCommand) -> Result<u8, Failure> {
    match command {
        BoardsCommand::Create { id, params, checkpoint, lifetime_ms } => {
            let create = CreateBoard {
                board_id: id,
                params: bytes_of(params),
                checkpoint: bytes_of(checkpoint),
                lifetime: lifetime_ms.map(Duration::from_millis),
            };
            let board = client.create_board(create).await?;
            out.update(json, &board_line(&board), &board_json(&board, None))?;
        }
        BoardsCommand::Assign { id, server, epoch, request_id, election, term } => {
            let request_id = request_id.unwrap_or_else(|| format!("hcctl-{:016x}", rand::thread_rng().gen::<u64>()));
            let assign = AssignBoard {
                board_id: id,
                server_id: server,
                expected_epoch: Epoch(epoch),
                request_id,
                election: election.zip(term.map(Term)),
            };
            let board = client.assign_board(assign).await?;
            out.update(json, &board_line(&board), &board_json(&board, None))?;
        }
        BoardsCommand::Sync { id, epoch, seq, data } => {
            let data = if data == "-" { read_stdin()? } else { Bytes::from(data.into_bytes()) };
            let result = client.sync_board(&id, Epoch(epoch), Seq(seq), data).await?;
            let text = format!("synced {id} seq={} written={}", result.seq, result.written);
            out.update(json, &text, &json!({"board_id": id, "seq": result.seq.0, "written": result.written}))?;
        }
        BoardsCommand::Get { id } => match client.get_board(&id, false).await? {
            Some(record) => {
                let checkpoint = record.checkpoint.as_ref();
                if json {
                    out.update(true, "", &board_json(&record.board, checkpoint))?;
                } else {
                    out.line(&board_line(&record.board))?;
                    if let Some(c) = checkpoint {
                        out.line(&format!("checkpoint seq={} epoch={} data={}", c.seq, c.epoch, printable(&c.data)))?;
                    }
                    out.flush()?;
                }
            }
            None => {
                let message = format!("board {id} not found");
                return not_found(out, json, Reason::BoardNotFound, &message, exit::BOARD_NOT_FOUND);
            }
        },
        BoardsCommand::List { owner } => {
            let boards = client.list_all_boards(owner.as_deref()).await?;
            if json {
                let boards: Vec<Value> = boards.iter().map(|b| board_json(b, None)).collect();
                out.update(true, "", &json!({"boards": boards}))?;
            } else {
                for board in &boards {
                    out.line(&board_line(board))?;
                }
                out.flush()?;
            }
        }
        BoardsCommand::Release { id, server, epoch } => {
            let board = client.release_board(&id, &server, Epoch(epoch)).await?;
            out.update(json, &board_line(&board), &board_json(&board, None))?;
        }
        BoardsCommand::Delete { id, epoch } => {
            client.delete_board(&id, epoch.map(Epoch)).await?;
            out.update(json, &format!("deleted {id}"), &json!({"board_id": id, "deleted": true}))?;
        }
        BoardsCommand::Watch { server } => return watch(client, out, json, &server).await,
    }
    Ok(exit::OK)
}

async fn watch(client: &Client, out: &mut Out, json: bool, server: &str) -> Result<u8, Failure> {
    let mut watch = client.watch_assignments(server);
    let mut interrupt = Interrupt::listen();
    loop {
        let Some(update) = interrupt.or(watch.next()).await else { return Ok(exit::OK) };
        match update {
            Ok(AssignmentUpdate::Snapshot { revision, owned }) => {
                let boards: Vec<Value> =
                    owned.iter().map(|c| json!({"board_id": c.board_id, "epoch": c.epoch.0})).collect();
                let text = format!("SNAPSHOT {server} owns {} boards (rev {revision})", owned.len());
                out.update(json, &text, &json!({"type": "SNAPSHOT", "revision": revision, "boards": boards}))?;
                if !json {
                    for change in &owned {
                        out.update(false, &change_line(change), &Value::Null)?;
                    }
                }
            }
            Ok(AssignmentUpdate::Changes { changes, .. }) => {
                for change in &changes {
                    let kind = if change.gained { "GAINED" } else { "LOST" };
                    let value = json!({
                        "type": kind, "board_id": change.board_id, "epoch": change.epoch.0, "revision": change.revision,
                    });
                    out.update(json, &change_line(change), &value)?;
                }
            }
            Err(err) if err.is_retryable() => note(&format!("boards watch: {err}; retrying")),
            Err(err) => return Err(err.into()),
        }
    }
}

fn change_line(change: &AssignmentChange) -> String {
    let kind = if change.gained { "GAINED" } else { "LOST" };
    format!("{kind} {} epoch={} (rev {})", change.board_id, change.epoch, change.revision)
}

/// `ID owner=SERVER incarnation=I epoch=E lease=L revision=R` (`owner=-` when unassigned).
pub(super) fn board_line(b: &Board) -> String {
    let (owner, incarnation) = b.owner.as_ref().map_or(("-", 0), |o| (o.server_id.as_str(), o.incarnation.0));
    format!(
        "{} owner={owner} incarnation={incarnation} epoch={} lease={} revision={}",
        b.board_id,
        b.epoch,
        lease_number(b),
        b.revision
    )
}

/// The board's lease as the wire numbers it, 0 for none: what the output has always shown.
fn lease_number(b: &Board) -> u64 {
    b.lease.map_or(0, |l| l.0)
}

fn board_json(b: &Board, checkpoint: Option<&Checkpoint>) -> Value {
    let mut obj = Map::new();
    obj.insert("board_id".into(), b.board_id.clone().into());
    let owner = b.owner.as_ref();
    obj.insert("owner".into(), owner.map_or(Value::Null, |o| o.server_id.clone().into()));
    obj.insert("incarnation".into(), owner.map_or(0, |o| o.incarnation.0).into());
    obj.insert("epoch".into(), b.epoch.0.into());
    obj.insert("lease".into(), lease_number(b).into());
    obj.insert("revision".into(), b.revision.into());
    put_bytes(&mut obj, "params", &b.params);
    if let Some(c) = checkpoint {
        let mut cp = Map::new();
        cp.insert("seq".into(), c.seq.0.into());
        cp.insert("epoch".into(), c.epoch.0.into());
        put_bytes(&mut cp, "data", &c.data);
        obj.insert("checkpoint".into(), Value::Object(cp));
    }
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypercache_client::{BoardOwner, Epoch, Incarnation, LeaseId, Seq};

    #[test]
    fn boards_print_their_owner_or_a_dash() {
        let mut board = Board { board_id: "b1".into(), epoch: Epoch(3), ..Default::default() };
        assert_eq!(board_line(&board), "b1 owner=- incarnation=0 epoch=3 lease=0 revision=0");
        board.owner = Some(BoardOwner { server_id: "srv-a".into(), incarnation: Incarnation(2) });
        assert!(board_line(&board).contains("owner=srv-a incarnation=2"));
        let cp = Checkpoint { seq: Seq(4), epoch: Epoch(3), data: Bytes::from_static(&[0xff]) };
        let v = board_json(&board, Some(&cp));
        assert_eq!((v["owner"].as_str(), v["checkpoint"]["data_hex"].as_str()), (Some("srv-a"), Some("ff")));
        // The typed ids print as the bare numbers they have always been, a missing lease as 0.
        let numbers = [&v["incarnation"], &v["epoch"], &v["lease"], &v["checkpoint"]["seq"], &v["checkpoint"]["epoch"]];
        assert_eq!(numbers.map(Value::as_u64), [Some(2), Some(3), Some(0), Some(4), Some(3)]);
        board.lease = Some(LeaseId(7));
        assert_eq!(board_json(&board, None)["lease"].as_u64(), Some(7));
        assert!(board_line(&board).contains("lease=7 "));
    }
}
