//! KV transactions: the deterministic heart of the state machine.
//!
//! [`execute`] runs one [`Txn`] at one revision against the [`Overlay`] and writes its effects
//! there. It does no I/O of its own and never looks at a clock, so every replica that applies the
//! same entries in the same order computes the same result. It writes through the row primitives
//! of `rows.rs` ([`write_row`], [`delete_row`]), as the lease and game-state operations do, so lease
//! attachment bookkeeping lives in one place.

use super::command::{Compare, CompareTarget, Op, OpResult, Txn, TxnResult};
use super::overlay::{Base, Fail, Overlay};
use super::rows::{delete_row, write_row, StoredValue};
use crate::types::LeaseId;

fn holds(row: Option<&StoredValue>, target: &CompareTarget) -> bool {
    match target {
        CompareTarget::Exists(want) => row.is_some() == *want,
        CompareTarget::Value(v) => row.is_some_and(|r| r.value == *v),
        CompareTarget::ModRevision(rev) => row.map_or(0, |r| r.mod_revision) == *rev,
        CompareTarget::CreateRevision(rev) => row.map_or(0, |r| r.create_revision) == *rev,
        CompareTarget::Version(v) => row.map_or(0, |r| r.version) == *v,
        CompareTarget::Lease(id) => row.map_or(LeaseId::NONE, |r| r.lease) == *id,
    }
}

/// Runs `txn` at `revision`: all compares, then the matching branch's ops in order.
pub fn execute<B: Base>(ov: &mut Overlay<B>, revision: u64, txn: &Txn) -> Result<TxnResult, Fail> {
    let mut succeeded = true;
    for Compare { key, target } in &txn.compares {
        let row = ov.row(key)?;
        if !holds(row.as_ref(), target) {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded { &txn.success } else { &txn.failure };
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        results.push(match op {
            Op::Get { key } => OpResult::Get { kv: ov.row(key)?.map(|r| r.to_kv(key)) },
            Op::Put { key, value, prev_kv, attach } => {
                let (prev, row) = write_row(ov, revision, key, value.clone(), *attach)?;
                OpResult::Put { prev: prev.filter(|_| *prev_kv).map(|p| p.to_kv(key)), kv: row.to_kv(key) }
            }
            Op::Delete { key, prev_kv } => {
                let prev = delete_row(ov, revision, key)?;
                OpResult::Delete { deleted: prev.is_some(), prev: prev.filter(|_| *prev_kv).map(|p| p.to_kv(key)) }
            }
        });
    }
    Ok(TxnResult { succeeded, results })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::command::Attach;
    use crate::types::ShardId;
    use bytes::Bytes;
    use std::collections::BTreeMap;

    type Mem = Overlay<BTreeMap<Vec<u8>, Vec<u8>>>;

    fn empty() -> Mem {
        Overlay::new(ShardId(0), BTreeMap::new())
    }

    fn put(k: &str, v: &str) -> Op {
        Op::Put {
            key: Bytes::from(k.to_string()),
            value: Bytes::from(v.to_string()),
            prev_kv: true,
            attach: Attach::None,
        }
    }

    #[test]
    fn revisions_and_versions_follow_writes() {
        let mut view = empty();
        let r = execute(&mut view, 5, &Txn { success: vec![put("a", "1")], ..Txn::default() }).unwrap();
        let OpResult::Put { prev, kv } = &r.results[0] else { panic!("{r:?}") };
        assert!(prev.is_none());
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
        let r = execute(&mut view, 9, &Txn { success: vec![put("a", "2")], ..Txn::default() }).unwrap();
        let OpResult::Put { prev, kv } = &r.results[0] else { panic!("{r:?}") };
        assert_eq!(prev.as_ref().unwrap().value, "1");
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 9, 2));
        let del = Op::Delete { key: Bytes::from_static(b"a"), prev_kv: false };
        let r = execute(&mut view, 10, &Txn { success: vec![del.clone()], ..Txn::default() }).unwrap();
        assert_eq!(r.results[0], OpResult::Delete { deleted: true, prev: None });
        let r = execute(&mut view, 11, &Txn { success: vec![del], ..Txn::default() }).unwrap();
        assert_eq!(r.results[0], OpResult::Delete { deleted: false, prev: None });
        // Recreated after deletion: a fresh create_revision and version.
        let r = execute(&mut view, 12, &Txn { success: vec![put("a", "3")], ..Txn::default() }).unwrap();
        let OpResult::Put { kv, .. } = &r.results[0] else { panic!() };
        assert_eq!((kv.create_revision, kv.version), (12, 1));
    }

    #[test]
    fn compares_pick_the_branch() {
        let mut view = empty();
        execute(&mut view, 3, &Txn { success: vec![put("k", "v")], ..Txn::default() }).unwrap();
        let key = Bytes::from_static(b"k");
        let cas = |target| Txn {
            compares: vec![Compare { key: key.clone(), target }],
            success: vec![put("k", "new")],
            failure: vec![Op::Get { key: key.clone() }],
        };
        for (target, want) in [
            (CompareTarget::ModRevision(3), true),
            (CompareTarget::ModRevision(0), false),
            (CompareTarget::Value(Bytes::from_static(b"v")), true),
            (CompareTarget::Value(Bytes::from_static(b"x")), false),
            (CompareTarget::Exists(true), true),
            (CompareTarget::Exists(false), false),
            (CompareTarget::Version(1), true),
            (CompareTarget::CreateRevision(2), false),
        ] {
            let sp = view.savepoint();
            let r = execute(&mut view, 4, &cas(target.clone())).unwrap();
            view.rollback(sp);
            assert_eq!(r.succeeded, want, "{target:?}");
            assert!(matches!(r.results[0], OpResult::Put { .. }) == want);
        }
        // A missing key: ModRevision(0) is "must not exist".
        let mut v = empty();
        let txn = Txn {
            compares: vec![Compare { key: Bytes::from_static(b"new"), target: CompareTarget::ModRevision(0) }],
            success: vec![put("new", "x")],
            failure: vec![],
        };
        assert!(execute(&mut v, 7, &txn).unwrap().succeeded);
    }
}
