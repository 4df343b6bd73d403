//! Game-server registrations: a row attached to a lease, plus an incarnation counter that only
//! grows, so a server that re-registers is distinguishable from its earlier self.

use std::collections::BTreeMap;

use crate::machine::command::{GameReply, Rejection};
use crate::machine::game_ids::ServerIncarnation;
use crate::machine::game_records::{key, ServerRecord, INCARNATION_PREFIX, SERVER_PREFIX};
use crate::machine::lease;
use crate::machine::overlay::{Base, Fail, Overlay};
use crate::machine::rows::{check_ttl, counter_row, grant, read_record, write_record};
use crate::types::LeaseId;

pub fn register<B: Base>(
    ov: &mut Overlay<B>,
    revision: u64,
    server_id: &str,
    address: &str,
    capacity: u32,
    labels: &BTreeMap<String, String>,
    ttl_ms: u64,
) -> Result<GameReply, Fail> {
    check_ttl(ttl_ms)?;
    let row_key = key(SERVER_PREFIX, server_id);
    // A new registration replaces the old one and everything hanging on the old lease.
    if let Some((_, row)) = read_record::<B, ServerRecord>(ov, &row_key)? {
        lease::end(ov, revision, row.lease)?;
    }
    let lease = grant(ov, ttl_ms, false)?;
    let inc_key = key(INCARNATION_PREFIX, server_id);
    let incarnation = counter_row::<B, ServerIncarnation>(ov, &inc_key)?.next();
    write_record(ov, revision, &inc_key, &incarnation, LeaseId::NONE)?;
    let record = ServerRecord {
        server_id: server_id.to_string(),
        address: address.to_string(),
        capacity,
        labels: labels.clone(),
        incarnation,
    };
    write_record(ov, revision, &row_key, &record, lease)?;
    Ok(GameReply::Registered { lease, incarnation, ttl_ms })
}

pub fn deregister<B: Base>(
    ov: &mut Overlay<B>,
    revision: u64,
    server_id: &str,
    incarnation: ServerIncarnation,
) -> Result<GameReply, Fail> {
    let row_key = key(SERVER_PREFIX, server_id);
    let (record, row) = read_record::<B, ServerRecord>(ov, &row_key)?
        .ok_or_else(|| Rejection::ServerNotFound { server_id: server_id.to_string() })?;
    if record.incarnation != incarnation {
        return Err(Rejection::StaleIncarnation {
            server_id: server_id.to_string(),
            given: incarnation,
            current: record.incarnation,
        }
        .into());
    }
    lease::end(ov, revision, row.lease)?;
    Ok(GameReply::Done)
}

/// The live registration of `server_id`, if any.
pub fn live<B: Base>(ov: &Overlay<B>, server_id: &str) -> Result<Option<ServerRecord>, Fail> {
    Ok(read_record::<B, ServerRecord>(ov, &key(SERVER_PREFIX, server_id))?.map(|(r, _)| r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::command::{GameOp, LeaseOp, Reply};
    use crate::machine::game::apply;
    use crate::types::ShardId;
    use std::collections::BTreeMap;

    type Mem = Overlay<BTreeMap<Vec<u8>, Vec<u8>>>;

    fn reg(ov: &mut Mem, rev: u64, id: &str) -> (LeaseId, ServerIncarnation) {
        let op = GameOp::Register {
            server_id: id.into(),
            address: "gs:1".into(),
            capacity: 4,
            labels: BTreeMap::new(),
            ttl_ms: 1000,
        };
        match apply(ov, rev, &op).unwrap() {
            Reply::Game(GameReply::Registered { lease, incarnation, .. }) => (lease, incarnation),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reregistering_grows_the_incarnation_and_ends_the_old_lease() {
        let mut ov = Overlay::new(ShardId(0), BTreeMap::new());
        let (l1, i1) = reg(&mut ov, 1, "a");
        let (l2, i2) = reg(&mut ov, 2, "a");
        assert!(i2 > i1 && l2 != l1);
        assert!(ov.lease(l1).unwrap().is_none());
        assert_eq!(live(&ov, "a").unwrap().unwrap().incarnation, i2);
        // A stale instance cannot log out its successor.
        let err = deregister(&mut ov, 3, "a", i1).unwrap_err();
        assert!(matches!(err, Fail::Reject(Rejection::StaleIncarnation { current, .. }) if current == i2));
        deregister(&mut ov, 3, "a", i2).unwrap();
        assert!(live(&ov, "a").unwrap().is_none());
        let (_, i3) = reg(&mut ov, 4, "a");
        assert!(i3 > i2, "incarnations survive deregistration");
    }

    #[test]
    fn an_expired_lease_removes_the_server() {
        let mut ov = Overlay::new(ShardId(0), BTreeMap::new());
        let (lease, _) = reg(&mut ov, 1, "a");
        crate::machine::lease::apply(&mut ov, 2, &LeaseOp::Expire { ids: vec![lease] }).unwrap();
        assert!(live(&ov, "a").unwrap().is_none());
    }
}
