//! Elections: a leader row attached to the leader's lease, and a term counter that is never
//! deleted, so terms strictly increase per election name across resignations, lease expiries and
//! Raft failovers (the counter is replicated state like any row).

use crate::machine::command::{GameReply, Rejection};
use crate::machine::game_ids::Term;
use crate::machine::game_records::{key, LeaderRecord, LeaderView, LEADER_PREFIX, TERM_PREFIX};
use crate::machine::lease;
use crate::machine::overlay::{Base, Fail, Overlay};
use crate::machine::rows::{counter_row, delete_row, read_record, write_record};
use crate::types::LeaseId;

pub fn current_leader<B: Base>(ov: &Overlay<B>, name: &str) -> Result<Option<LeaderView>, Fail> {
    Ok(read_record::<B, LeaderRecord>(ov, &key(LEADER_PREFIX, name))?.map(|(r, row)| LeaderView {
        candidate: r.candidate,
        lease: row.lease,
        term: r.term,
    }))
}

pub fn last_term<B: Base>(ov: &Overlay<B>, name: &str) -> Result<Term, Fail> {
    Ok(counter_row(ov, &key(TERM_PREFIX, name))?)
}

/// Takes leadership if nobody holds it. Losing is not an error: the reply names the leader and
/// the service waits for the leader row to go away before trying again.
pub fn campaign<B: Base>(
    ov: &mut Overlay<B>,
    revision: u64,
    name: &str,
    candidate: &str,
    lease: LeaseId,
) -> Result<GameReply, Fail> {
    if !lease::exists_here(ov, lease)? {
        return Err(Rejection::LeaseNotFound { id: lease }.into());
    }
    if let Some(current) = current_leader(ov, name)? {
        let won = current.candidate == candidate && current.lease == lease;
        return Ok(GameReply::Campaign { won, leader: Some(current) });
    }
    let term = last_term(ov, name)?.next();
    write_record(ov, revision, &key(TERM_PREFIX, name), &term, LeaseId::NONE)?;
    write_record(
        ov,
        revision,
        &key(LEADER_PREFIX, name),
        &LeaderRecord { candidate: candidate.to_string(), term },
        lease,
    )?;
    Ok(GameReply::Campaign { won: true, leader: Some(LeaderView { candidate: candidate.to_string(), lease, term }) })
}

pub fn resign<B: Base>(ov: &mut Overlay<B>, revision: u64, name: &str, term: Term) -> Result<GameReply, Fail> {
    let current = current_leader(ov, name)?;
    if current.as_ref().map(|l| l.term) != Some(term) {
        return Err(Rejection::NotElectionLeader { name: name.to_string(), given: term, current }.into());
    }
    delete_row(ov, revision, &key(LEADER_PREFIX, name))?;
    Ok(GameReply::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::command::LeaseOp;
    use crate::machine::lease;
    use crate::machine::rows::grant;
    use crate::types::ShardId;
    use std::collections::BTreeMap;

    #[test]
    fn terms_strictly_increase_across_resign_and_expiry() {
        let mut ov = Overlay::new(ShardId(0), BTreeMap::new());
        let l1 = grant(&mut ov, 1000, false).unwrap();
        let l2 = grant(&mut ov, 1000, false).unwrap();
        let GameReply::Campaign { won: true, leader: Some(a) } = campaign(&mut ov, 1, "e", "a", l1).unwrap() else {
            panic!()
        };
        // Someone else loses while a leads; a's re-campaign is idempotent.
        let GameReply::Campaign { won: false, leader: Some(cur) } = campaign(&mut ov, 2, "e", "b", l2).unwrap() else {
            panic!()
        };
        assert_eq!(cur.term, a.term);
        assert!(matches!(campaign(&mut ov, 2, "e", "a", l1).unwrap(), GameReply::Campaign { won: true, .. }));
        // a's lease expires: b wins with a larger term.
        lease::apply(&mut ov, 3, &LeaseOp::Expire { ids: vec![l1] }).unwrap();
        let GameReply::Campaign { won: true, leader: Some(b) } = campaign(&mut ov, 4, "e", "b", l2).unwrap() else {
            panic!()
        };
        assert!(b.term > a.term);
        assert!(matches!(
            resign(&mut ov, 5, "e", a.term).unwrap_err(),
            Fail::Reject(Rejection::NotElectionLeader { .. })
        ));
        resign(&mut ov, 5, "e", b.term).unwrap();
        let l3 = grant(&mut ov, 1000, false).unwrap();
        let GameReply::Campaign { leader: Some(c), .. } = campaign(&mut ov, 6, "e", "c", l3).unwrap() else { panic!() };
        assert!(c.term > b.term);
    }

    #[test]
    fn campaigning_with_an_unknown_lease_is_refused() {
        let mut ov = Overlay::new(ShardId(0), BTreeMap::new());
        assert!(matches!(
            campaign(&mut ov, 1, "e", "a", LeaseId(42)).unwrap_err(),
            Fail::Reject(Rejection::LeaseNotFound { id: LeaseId(42) })
        ));
    }
}
