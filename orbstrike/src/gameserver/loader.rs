//! Loading a board this server just gained: read its owner record and checkpoint, check that the
//! assignment is really this incarnation's, and rebuild the board.
//!
//! The assignment watch only says "gained at epoch e". Before serving, the loader reads the board
//! (linearizably, so after that assignment) and insists on three things:
//!
//! - the epoch is still `e` (a later one means the board moved on meanwhile: skip it, the watch
//!   will say so too);
//! - the owner is this server id;
//! - the owner's incarnation is this process's current one. A board assigned to an *earlier*
//!   incarnation (this server restarted, or lost its lease and re-registered) is released rather
//!   than served: nothing told its orchestrators that the earlier incarnation's boards are safe
//!   to serve again, and a release (which bumps the epoch) hands it back for a clean
//!   reassignment. A *later* incarnation means another process registered this id after us: we
//!   are the stale one, and do not serve.
//!
//! A checkpoint that holds only params (tick 0, no players) is a new game. One whose data is
//! empty falls back to the owner record's params (prost `GameParams`), if any.

use std::time::Duration;

use bytes::Bytes;
use hypercache_client::{BoardRecord, Client, Epoch, Incarnation};
use prost::Message;

use crate::proto::v1 as pb;
use crate::rules::{validate_params, Board, CheckpointError, ParamsError};

pub(crate) enum LoadOutcome {
    Ready(Box<Board>),
    /// Owned by an earlier incarnation of this server: release it.
    EarlierIncarnation {
        owner_incarnation: Incarnation,
    },
    /// Not ours to serve (any more); the reason is for the log.
    NotOurs(String),
    /// Ours, but it cannot be served.
    Broken(String),
}

/// Reads and checks board `board_id` gained at `epoch`. Transient store failures are retried
/// until the read succeeds (the caller aborts the load if the board is lost meanwhile).
pub(crate) async fn load(
    client: &Client,
    board_id: &str,
    epoch: Epoch,
    server_id: &str,
    incarnation: Incarnation,
    default_tick_hz: u32,
) -> LoadOutcome {
    let mut delay = Duration::from_millis(50);
    let record = loop {
        match client.get_board(board_id, false).await {
            Ok(Some(record)) => break record,
            Ok(None) => return LoadOutcome::NotOurs("the board no longer exists".into()),
            Err(err) if err.is_retryable() || err.may_have_been_applied() => {
                tracing::debug!(board = board_id, error = %err, "reading the gained board failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(err) => return LoadOutcome::Broken(format!("reading the board failed: {err}")),
        }
    };
    judge(&record, epoch, server_id, incarnation, default_tick_hz, rand::random())
}

/// The pure part of [`load`].
fn judge(
    record: &BoardRecord,
    epoch: Epoch,
    server_id: &str,
    incarnation: Incarnation,
    default_tick_hz: u32,
    seed: u64,
) -> LoadOutcome {
    let board = &record.board;
    if board.epoch != epoch {
        return LoadOutcome::NotOurs(format!("the board is at epoch {} now, not {epoch}", board.epoch));
    }
    let Some(owner) = board.owner.as_ref().filter(|o| o.server_id == server_id) else {
        return LoadOutcome::NotOurs(format!("the owner at epoch {epoch} is not {server_id}"));
    };
    let owner_incarnation = owner.incarnation;
    if owner_incarnation < incarnation {
        return LoadOutcome::EarlierIncarnation { owner_incarnation };
    }
    if owner_incarnation > incarnation {
        return LoadOutcome::NotOurs(format!(
            "assigned to incarnation {} of {server_id}, newer than this process's {incarnation}",
            owner.incarnation
        ));
    }
    let (seq, data) = record.checkpoint.as_ref().map_or((0, Bytes::new()), |c| (c.seq.0, c.data.clone()));
    match decode(&data, &board.params, default_tick_hz, seed) {
        Ok(mut board) => {
            // The next checkpoint's seq (= tick) must be above the stored one.
            board.advance_tick_to(seq);
            LoadOutcome::Ready(Box::new(board))
        }
        Err(why) => LoadOutcome::Broken(why.to_string()),
    }
}

/// Why a stored board cannot be loaded.
#[derive(Debug, thiserror::Error)]
enum DecodeError {
    #[error("the board's params are not a GameParams message: {0}")]
    Params(prost::DecodeError),
    #[error("invalid board params: {0}")]
    InvalidParams(ParamsError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

fn decode(data: &[u8], record_params: &[u8], default_tick_hz: u32, seed: u64) -> Result<Board, DecodeError> {
    if data.is_empty() && !record_params.is_empty() {
        let params = pb::GameParams::decode(record_params).map_err(DecodeError::Params)?;
        let params = validate_params(&params, default_tick_hz).map_err(DecodeError::InvalidParams)?;
        return Ok(Board::new(params, seed));
    }
    Ok(Board::decode_checkpoint(data, default_tick_hz, seed)?)
}

#[cfg(test)]
mod tests {
    use hypercache_client::{BoardOwner, Checkpoint, Seq};

    use super::*;

    fn params() -> pb::GameParams {
        pb::GameParams {
            arena_radius: 500.0,
            max_players: 4,
            speed: 50.0,
            player_radius: 10.0,
            ring_radius: 20.0,
            tick_hz: 0,
        }
    }

    fn record(owner: &str, incarnation: u64, epoch: u64, data: Bytes, seq: u64) -> BoardRecord {
        BoardRecord {
            board: hypercache_client::Board {
                board_id: "g1".into(),
                params: Bytes::new(),
                owner: Some(BoardOwner { server_id: owner.into(), incarnation: Incarnation(incarnation) }),
                epoch: Epoch(epoch),
                lease: None,
                revision: 1,
            },
            checkpoint: Some(Checkpoint { seq: Seq(seq), epoch: Epoch(0), data }),
            revision: 1,
        }
    }

    fn initial() -> Bytes {
        Bytes::from(pb::BoardCheckpoint { params: Some(params()), ..Default::default() }.encode_to_vec())
    }

    #[test]
    fn an_initial_checkpoint_is_a_new_game_at_the_default_tick_rate() {
        let LoadOutcome::Ready(board) = judge(&record("gs", 2, 1, initial(), 0), Epoch(1), "gs", Incarnation(2), 30, 1)
        else {
            panic!("ready expected");
        };
        assert_eq!((board.tick(), board.player_count(), board.params().tick_hz), (0, 0, 30));
    }

    #[test]
    fn the_tick_starts_above_the_stored_seq() {
        let LoadOutcome::Ready(board) =
            judge(&record("gs", 2, 1, initial(), 40), Epoch(1), "gs", Incarnation(2), 30, 1)
        else {
            panic!("ready expected");
        };
        assert_eq!(board.tick(), 40);
    }

    #[test]
    fn ownership_is_checked_before_serving() {
        assert!(matches!(
            judge(&record("gs", 2, 5, initial(), 0), Epoch(4), "gs", Incarnation(2), 30, 1),
            LoadOutcome::NotOurs(_)
        ));
        assert!(matches!(
            judge(&record("other", 2, 4, initial(), 0), Epoch(4), "gs", Incarnation(2), 30, 1),
            LoadOutcome::NotOurs(_)
        ));
        assert!(matches!(
            judge(&record("gs", 1, 4, initial(), 0), Epoch(4), "gs", Incarnation(2), 30, 1),
            LoadOutcome::EarlierIncarnation { owner_incarnation: Incarnation(1) }
        ));
        assert!(matches!(
            judge(&record("gs", 3, 4, initial(), 0), Epoch(4), "gs", Incarnation(2), 30, 1),
            LoadOutcome::NotOurs(_)
        ));
    }

    #[test]
    fn empty_data_falls_back_to_the_record_params_and_garbage_is_broken() {
        let mut r = record("gs", 1, 1, Bytes::new(), 0);
        r.board.params = Bytes::from(params().encode_to_vec());
        assert!(matches!(judge(&r, Epoch(1), "gs", Incarnation(1), 30, 1), LoadOutcome::Ready(_)));
        let garbage = record("gs", 1, 1, Bytes::from_static(b"\xff\xff"), 0);
        let LoadOutcome::Broken(why) = judge(&garbage, Epoch(1), "gs", Incarnation(1), 30, 1) else {
            panic!("broken expected")
        };
        assert!(why.contains("BoardCheckpoint"), "{why}");
        let empty = record("gs", 1, 1, Bytes::new(), 0);
        assert!(matches!(judge(&empty, Epoch(1), "gs", Incarnation(1), 30, 1), LoadOutcome::Broken(_)));
    }
}
