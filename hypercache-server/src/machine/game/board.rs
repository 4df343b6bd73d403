//! Boards: an owner record `{owner, epoch}` and a checkpoint `{seq, epoch, data}` in two rows
//! (so assignment watchers are not woken by every checkpoint).
//!
//! Fencing: every change of owner bumps the epoch; a checkpoint is accepted only with the current
//! epoch. Because both checks and writes happen at one point of the log, a sync from a deposed
//! owner that is still in flight when the board is reassigned arrives after the reassignment in
//! log order and is refused, whatever the network did.
//!
//! Epochs never go back for a board id: a high-water row (`\xffhc/bepoch/<id>`, no lease, never
//! deleted) records the highest epoch the id has had, and a board created under an id that was
//! used before starts one above it, so deleting a board, or its lifetime lease ending, and
//! creating it again cannot hand an old owner's epoch to a new owner. A new id starts at epoch 0.

use bytes::Bytes;

use super::election::current_leader;
use super::registry::live;
use crate::machine::command::{Assign, GameReply, Rejection};
use crate::machine::game_ids::{Epoch, Seq};
use crate::machine::game_records::{
    key, BoardRecord, BoardView, CheckpointRecord, Owner, BOARD_EPOCH_PREFIX, BOARD_PREFIX, CKPT_PREFIX,
};
use crate::machine::overlay::{Base, Fail, Overlay};
use crate::machine::rows::{delete_row, grant, read_record, write_record, StoredValue};
use crate::types::LeaseId;

fn load<B: Base>(ov: &Overlay<B>, board_id: &str) -> Result<(BoardRecord, StoredValue), Fail> {
    read_record::<B, BoardRecord>(ov, &key(BOARD_PREFIX, board_id))?
        .ok_or_else(|| Rejection::BoardNotFound { board_id: board_id.to_string() }.into())
}

fn view(board_id: &str, record: BoardRecord, row: &StoredValue) -> BoardView {
    BoardView { board_id: board_id.to_string(), record, lease: row.lease, revision: row.mod_revision }
}

/// Records `epoch` as the board id's high-water mark (see the module comment).
fn raise_high_water<B: Base>(ov: &mut Overlay<B>, revision: u64, board_id: &str, epoch: Epoch) -> Result<(), Fail> {
    write_record(ov, revision, &key(BOARD_EPOCH_PREFIX, board_id), &epoch, LeaseId::NONE)?;
    Ok(())
}

fn stale(board_id: &str, given: Epoch, record: &BoardRecord) -> Fail {
    Rejection::StaleEpoch { board_id: board_id.to_string(), given, epoch: record.epoch, owner: record.owner.clone() }
        .into()
}

pub fn create<B: Base>(
    ov: &mut Overlay<B>,
    revision: u64,
    board_id: &str,
    params: &Bytes,
    checkpoint: &Bytes,
    lifetime_ms: Option<u64>,
) -> Result<GameReply, Fail> {
    let board_key = key(BOARD_PREFIX, board_id);
    if ov.row(&board_key)?.is_some() {
        return Err(Rejection::BoardExists { board_id: board_id.to_string() }.into());
    }
    let lease = match lifetime_ms {
        Some(ms) => grant(ov, ms, false)?,
        None => LeaseId::NONE,
    };
    // One above the highest epoch an earlier board of this id had (even an unassigned one at 0,
    // so a stale `expected_epoch` cannot match the new board either).
    let epoch =
        read_record::<B, Epoch>(ov, &key(BOARD_EPOCH_PREFIX, board_id))?.map_or(Epoch(0), |(high, _)| high.next());
    raise_high_water(ov, revision, board_id, epoch)?;
    let record = BoardRecord { params: params.clone(), owner: None, epoch, last_assign: None };
    let row = write_record(ov, revision, &board_key, &record, lease)?;
    let ckpt = CheckpointRecord { seq: Seq(0), epoch, data: checkpoint.clone() };
    write_record(ov, revision, &key(CKPT_PREFIX, board_id), &ckpt, lease)?;
    Ok(GameReply::Board(view(board_id, record, &row)))
}

pub fn assign<B: Base>(ov: &mut Overlay<B>, revision: u64, a: &Assign) -> Result<GameReply, Fail> {
    let (mut record, row) = load(ov, &a.board_id)?;
    // A retry of an assignment that already happened: same answer, no new epoch.
    if let Some((request_id, _)) = &record.last_assign {
        if *request_id == a.request_id {
            return Ok(GameReply::Board(view(&a.board_id, record, &row)));
        }
    }
    if let Some((name, term)) = &a.fence {
        let current = current_leader(ov, name)?;
        if current.as_ref().map(|l| l.term) != Some(*term) {
            return Err(Rejection::StaleTerm { name: name.clone(), given: *term, current }.into());
        }
    }
    if record.epoch != a.expected_epoch {
        return Err(stale(&a.board_id, a.expected_epoch, &record));
    }
    let server = live(ov, &a.server_id)?
        .ok_or_else(|| Rejection::ServerNotLive { board_id: a.board_id.clone(), server_id: a.server_id.clone() })?;
    record.epoch = record.epoch.next();
    record.owner = Some(Owner { server_id: server.server_id, incarnation: server.incarnation });
    record.last_assign = Some((a.request_id.clone(), record.epoch));
    raise_high_water(ov, revision, &a.board_id, record.epoch)?;
    let row = write_record(ov, revision, &key(BOARD_PREFIX, &a.board_id), &record, row.lease)?;
    Ok(GameReply::Board(view(&a.board_id, record, &row)))
}

pub fn sync<B: Base>(
    ov: &mut Overlay<B>,
    revision: u64,
    board_id: &str,
    epoch: Epoch,
    seq: Seq,
    checkpoint: &Bytes,
) -> Result<GameReply, Fail> {
    let (record, row) = load(ov, board_id)?;
    // The failpoint re-creates the zombie-owner bug the fence exists for (see `failpoints`).
    let zombie = epoch < record.epoch && crate::failpoints::on(crate::failpoints::Failpoint::AcceptStaleEpoch);
    if (record.epoch != epoch || record.owner.is_none()) && !zombie {
        return Err(stale(board_id, epoch, &record));
    }
    let ckpt_key = key(CKPT_PREFIX, board_id);
    // Seqs order the syncs of one owner, i.e. of one epoch. A checkpoint stored under an older
    // epoch (the previous owner's, or the initial one) never makes the current owner's sync a
    // repeat or stale, whatever its seq: comparing seqs across epochs would report a new owner's
    // first sync as an idempotent success without writing it.
    let stored =
        read_record::<B, CheckpointRecord>(ov, &ckpt_key)?.filter(|(c, _)| c.epoch == epoch).map(|(c, _)| c.seq);
    match stored {
        Some(stored) if seq == stored => return Ok(GameReply::Synced { seq, written: false }),
        Some(stored) if seq < stored => {
            return Err(Rejection::StaleSeq { board_id: board_id.to_string(), given: seq, stored }.into())
        }
        _ => {}
    }
    write_record(ov, revision, &ckpt_key, &CheckpointRecord { seq, epoch, data: checkpoint.clone() }, row.lease)?;
    Ok(GameReply::Synced { seq, written: true })
}

pub fn release<B: Base>(
    ov: &mut Overlay<B>,
    revision: u64,
    board_id: &str,
    server_id: &str,
    epoch: Epoch,
) -> Result<GameReply, Fail> {
    let (mut record, row) = load(ov, board_id)?;
    let owns = record.owner.as_ref().is_some_and(|o| o.server_id == server_id);
    if record.epoch != epoch || !owns {
        return Err(Rejection::NotOwner {
            board_id: board_id.to_string(),
            server_id: server_id.to_string(),
            given: epoch,
            epoch: record.epoch,
            owner: record.owner.clone(),
        }
        .into());
    }
    record.owner = None;
    record.epoch = record.epoch.next();
    raise_high_water(ov, revision, board_id, record.epoch)?;
    let row = write_record(ov, revision, &key(BOARD_PREFIX, board_id), &record, row.lease)?;
    Ok(GameReply::Board(view(board_id, record, &row)))
}

pub fn delete<B: Base>(
    ov: &mut Overlay<B>,
    revision: u64,
    board_id: &str,
    expected_epoch: Option<Epoch>,
) -> Result<GameReply, Fail> {
    let (record, _) = load(ov, board_id)?;
    if let Some(e) = expected_epoch {
        if e != record.epoch {
            return Err(stale(board_id, e, &record));
        }
    }
    // Already the high-water mark for boards written by this version; a board from before it
    // (no high-water row yet) gets one here.
    raise_high_water(ov, revision, board_id, record.epoch)?;
    delete_row(ov, revision, &key(BOARD_PREFIX, board_id))?;
    delete_row(ov, revision, &key(CKPT_PREFIX, board_id))?;
    Ok(GameReply::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::command::{GameOp, LeaseOp, Reply};
    use crate::machine::game::apply;
    use crate::machine::game_ids::{Epoch, Seq};
    use crate::types::ShardId;
    use std::collections::BTreeMap;

    type Mem = Overlay<BTreeMap<Vec<u8>, Vec<u8>>>;

    fn run(ov: &mut Mem, rev: u64, op: GameOp) -> Result<GameReply, Rejection> {
        let sp = ov.savepoint();
        match apply(ov, rev, &op) {
            Ok(Reply::Game(r)) => {
                ov.release();
                Ok(r)
            }
            Ok(other) => panic!("{other:?}"),
            Err(Fail::Reject(r)) => {
                ov.rollback(sp);
                Err(r)
            }
            Err(Fail::Fatal(e)) => panic!("{e}"),
        }
    }

    fn register(ov: &mut Mem, rev: u64, id: &str) -> LeaseId {
        let op = GameOp::Register {
            server_id: id.into(),
            address: "a:1".into(),
            capacity: 1,
            labels: BTreeMap::new(),
            ttl_ms: 1000,
        };
        match run(ov, rev, op).unwrap() {
            GameReply::Registered { lease, .. } => lease,
            other => panic!("{other:?}"),
        }
    }

    fn assign(
        ov: &mut Mem,
        rev: u64,
        board: &str,
        server: &str,
        expected: Epoch,
        req: &str,
    ) -> Result<Epoch, Rejection> {
        let a = Assign {
            board_id: board.into(),
            server_id: server.into(),
            expected_epoch: expected,
            request_id: req.into(),
            fence: None,
        };
        match run(ov, rev, GameOp::AssignBoard(a))? {
            GameReply::Board(b) => Ok(b.record.epoch),
            other => panic!("{other:?}"),
        }
    }

    fn sync(ov: &mut Mem, rev: u64, board: &str, epoch: Epoch, seq: Seq) -> Result<GameReply, Rejection> {
        let op = GameOp::SyncBoard { board_id: board.into(), epoch, seq, checkpoint: Bytes::from(format!("s{seq}")) };
        run(ov, rev, op)
    }

    fn setup() -> Mem {
        let mut ov = Overlay::new(ShardId(0), BTreeMap::new());
        register(&mut ov, 1, "A");
        register(&mut ov, 2, "B");
        let create = GameOp::CreateBoard {
            board_id: "b1".into(),
            params: Bytes::new(),
            checkpoint: Bytes::from_static(b"init"),
            lifetime_ms: None,
        };
        run(&mut ov, 3, create).unwrap();
        ov
    }

    #[test]
    fn a_deposed_owner_can_never_overwrite_the_checkpoint() {
        let mut ov = setup();
        let e1 = assign(&mut ov, 4, "b1", "A", Epoch(0), "r1").unwrap();
        assert_eq!(sync(&mut ov, 5, "b1", e1, Seq(1)).unwrap(), GameReply::Synced { seq: Seq(1), written: true });
        let e2 = assign(&mut ov, 6, "b1", "B", e1, "r2").unwrap();
        assert!(e2 > e1);
        // A's next sync (even with a newer seq) is refused and names the new owner.
        let err = sync(&mut ov, 7, "b1", e1, Seq(2)).unwrap_err();
        match &err {
            Rejection::StaleEpoch { epoch, owner: Some(o), .. } => {
                assert_eq!((*epoch, o.server_id.as_str()), (e2, "B"))
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("owned by B"), "{err}");
        assert_eq!(sync(&mut ov, 8, "b1", e2, Seq(2)).unwrap(), GameReply::Synced { seq: Seq(2), written: true });
        let (ckpt, _) = read_record::<_, CheckpointRecord>(&ov, &key(CKPT_PREFIX, "b1")).unwrap().unwrap();
        assert_eq!((ckpt.seq, ckpt.epoch, ckpt.data.as_ref()), (Seq(2), e2, b"s2".as_ref()));
    }

    #[test]
    fn seq_rules_repeats_are_idempotent_and_older_is_refused() {
        let mut ov = setup();
        let e = assign(&mut ov, 4, "b1", "A", Epoch(0), "r1").unwrap();
        sync(&mut ov, 5, "b1", e, Seq(5)).unwrap();
        assert_eq!(sync(&mut ov, 6, "b1", e, Seq(5)).unwrap(), GameReply::Synced { seq: Seq(5), written: false });
        assert!(matches!(sync(&mut ov, 6, "b1", e, Seq(4)).unwrap_err(), Rejection::StaleSeq { stored: Seq(5), .. }));
    }

    #[test]
    fn a_new_owners_first_sync_is_written_whatever_the_previous_owners_seq() {
        let mut ov = setup();
        let e1 = assign(&mut ov, 4, "b1", "A", Epoch(0), "r1").unwrap();
        sync(&mut ov, 5, "b1", e1, Seq(5)).unwrap();
        let e2 = assign(&mut ov, 6, "b1", "B", e1, "r2").unwrap();
        // The same seq as A's last one, and a lower one: both are B's own first syncs.
        assert_eq!(sync(&mut ov, 7, "b1", e2, Seq(5)).unwrap(), GameReply::Synced { seq: Seq(5), written: true });
        let e3 = assign(&mut ov, 8, "b1", "A", e2, "r3").unwrap();
        assert_eq!(sync(&mut ov, 9, "b1", e3, Seq(1)).unwrap(), GameReply::Synced { seq: Seq(1), written: true });
        // Within one epoch the usual rules hold.
        assert_eq!(sync(&mut ov, 10, "b1", e3, Seq(1)).unwrap(), GameReply::Synced { seq: Seq(1), written: false });
        assert!(matches!(sync(&mut ov, 10, "b1", e3, Seq(0)).unwrap_err(), Rejection::StaleSeq { stored: Seq(1), .. }));
    }

    #[test]
    fn assign_is_idempotent_by_request_id_and_checks_liveness_and_epoch() {
        let mut ov = setup();
        let e1 = assign(&mut ov, 4, "b1", "A", Epoch(0), "r1").unwrap();
        assert_eq!(assign(&mut ov, 5, "b1", "A", Epoch(0), "r1").unwrap(), e1, "a retry returns the same epoch");
        assert!(matches!(assign(&mut ov, 5, "b1", "B", Epoch(0), "r2").unwrap_err(), Rejection::StaleEpoch { .. }));
        assert!(matches!(assign(&mut ov, 5, "b1", "nobody", e1, "r3").unwrap_err(), Rejection::ServerNotLive { .. }));
        assert!(matches!(
            assign(&mut ov, 5, "nope", "A", Epoch(0), "r4").unwrap_err(),
            Rejection::BoardNotFound { .. }
        ));
    }

    #[test]
    fn assignment_to_a_server_whose_lease_expired_is_refused() {
        let mut ov = setup();
        let lease = register(&mut ov, 4, "C");
        crate::machine::lease::apply(&mut ov, 5, &LeaseOp::Expire { ids: vec![lease] }).unwrap();
        assert!(matches!(assign(&mut ov, 6, "b1", "C", Epoch(0), "r").unwrap_err(), Rejection::ServerNotLive { .. }));
    }

    #[test]
    fn release_fences_the_old_owner_and_allows_reassignment() {
        let mut ov = setup();
        let e1 = assign(&mut ov, 4, "b1", "A", Epoch(0), "r1").unwrap();
        let wrong = GameOp::ReleaseBoard { board_id: "b1".into(), server_id: "B".into(), epoch: e1 };
        assert!(matches!(run(&mut ov, 5, wrong).unwrap_err(), Rejection::NotOwner { .. }));
        let ok = GameOp::ReleaseBoard { board_id: "b1".into(), server_id: "A".into(), epoch: e1 };
        let GameReply::Board(b) = run(&mut ov, 5, ok).unwrap() else { panic!() };
        assert!(b.record.owner.is_none() && b.record.epoch == e1.next());
        assert!(matches!(sync(&mut ov, 6, "b1", e1, Seq(9)).unwrap_err(), Rejection::StaleEpoch { .. }));
        assign(&mut ov, 7, "b1", "B", e1.next(), "r2").unwrap();
    }

    fn create(ov: &mut Mem, rev: u64, board: &str, lifetime_ms: Option<u64>) -> BoardView {
        let op =
            GameOp::CreateBoard { board_id: board.into(), params: Bytes::new(), checkpoint: Bytes::new(), lifetime_ms };
        match run(ov, rev, op).unwrap() {
            GameReply::Board(b) => b,
            other => panic!("{other:?}"),
        }
    }

    /// The fault sequence of issue 16 (defect 5): the old owner A is paused with epoch e1, the
    /// board is deleted and created again under the same id and assigned to B; A's late sync
    /// must be refused, so B's epochs can never be ones A saw.
    #[test]
    fn a_board_id_created_again_never_reuses_an_epoch() {
        let mut ov = setup();
        let e1 = assign(&mut ov, 4, "b1", "A", Epoch(0), "r1").unwrap();
        run(&mut ov, 5, GameOp::DeleteBoard { board_id: "b1".into(), expected_epoch: None }).unwrap();
        let again = create(&mut ov, 6, "b1", None);
        let e2 = assign(&mut ov, 7, "b1", "B", again.record.epoch, "r2").unwrap();
        let late = sync(&mut ov, 8, "b1", e1, Seq(1));
        assert!(matches!(late, Err(Rejection::StaleEpoch { epoch, .. }) if epoch == e2), "A's late sync: {late:?}");
        assert!(again.record.epoch > e1, "created again at epoch {} after epoch {e1}", again.record.epoch);
        assert_eq!(sync(&mut ov, 9, "b1", e2, Seq(1)).unwrap(), GameReply::Synced { seq: Seq(1), written: true });
    }

    #[test]
    fn a_board_id_created_again_after_its_lifetime_never_reuses_an_epoch() {
        let mut ov = setup();
        let first = create(&mut ov, 4, "short", Some(1000));
        let e1 = assign(&mut ov, 5, "short", "A", first.record.epoch, "r1").unwrap();
        crate::machine::lease::apply(&mut ov, 6, &LeaseOp::Expire { ids: vec![first.lease] }).unwrap();
        assert!(ov.row(&key(BOARD_PREFIX, "short")).unwrap().is_none());
        let again = create(&mut ov, 7, "short", Some(1000));
        let e2 = assign(&mut ov, 8, "short", "B", again.record.epoch, "r2").unwrap();
        let late = sync(&mut ov, 9, "short", e1, Seq(1));
        assert!(matches!(late, Err(Rejection::StaleEpoch { epoch, .. }) if epoch == e2), "A's late sync: {late:?}");
        assert!(again.record.epoch > e1, "created again at epoch {} after epoch {e1}", again.record.epoch);
        // A release moves the high-water mark too: a third life starts above it.
        let GameReply::Board(released) =
            run(&mut ov, 10, GameOp::ReleaseBoard { board_id: "short".into(), server_id: "B".into(), epoch: e2 })
                .unwrap()
        else {
            panic!()
        };
        run(&mut ov, 11, GameOp::DeleteBoard { board_id: "short".into(), expected_epoch: None }).unwrap();
        assert!(create(&mut ov, 12, "short", None).record.epoch > released.record.epoch);
    }

    #[test]
    fn deleting_a_board_stored_without_a_high_water_row_still_fences_its_epochs() {
        let mut ov = setup();
        // A board as an earlier version stored it: at epoch 7, no high-water row.
        let old = BoardRecord { params: Bytes::new(), owner: None, epoch: Epoch(7), last_assign: None };
        write_record(&mut ov, 4, &key(BOARD_PREFIX, "legacy"), &old, LeaseId::NONE).unwrap();
        run(&mut ov, 5, GameOp::DeleteBoard { board_id: "legacy".into(), expected_epoch: None }).unwrap();
        assert_eq!(create(&mut ov, 6, "legacy", None).record.epoch, Epoch(8));
    }

    #[test]
    fn a_new_board_id_starts_at_epoch_0() {
        let mut ov = setup();
        assert_eq!(create(&mut ov, 4, "fresh", None).record.epoch, Epoch(0));
    }

    #[test]
    fn a_board_lifetime_deletes_board_and_checkpoint() {
        let mut ov = setup();
        let create = GameOp::CreateBoard {
            board_id: "short".into(),
            params: Bytes::new(),
            checkpoint: Bytes::new(),
            lifetime_ms: Some(1000),
        };
        let GameReply::Board(b) = run(&mut ov, 4, create).unwrap() else { panic!() };
        assert!(!b.lease.is_none());
        crate::machine::lease::apply(&mut ov, 5, &LeaseOp::Expire { ids: vec![b.lease] }).unwrap();
        assert!(ov.row(&key(BOARD_PREFIX, "short")).unwrap().is_none());
        assert!(ov.row(&key(CKPT_PREFIX, "short")).unwrap().is_none());
    }
}
