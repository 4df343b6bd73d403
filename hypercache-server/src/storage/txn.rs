//! Transaction evaluation: the deterministic heart of the state machine.
//!
//! [`execute`] runs one [`Txn`] at one revision against a [`View`] of the current rows and
//! records its writes back into the view. It does no I/O of its own and never looks at a clock,
//! so every replica that applies the same entries in the same order computes the same result.
//! A view error (a corrupt row) is returned, and the caller stops the node rather than diverge.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::types::{Compare, CompareTarget, KeyValue, Op, OpResult, Txn, TxnResult};

/// A row of the state machine: a value and its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredValue {
    pub value: Bytes,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
}

impl StoredValue {
    pub fn to_kv(&self, key: &[u8]) -> KeyValue {
        KeyValue {
            key: Bytes::copy_from_slice(key),
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
        }
    }
}

/// Rows as seen by a transaction: committed rows underneath, this apply batch's writes on top.
pub struct View<F> {
    /// Reads a committed row.
    base: F,
    /// Writes of the batch so far: `None` is a deletion.
    pub changes: BTreeMap<Bytes, Option<StoredValue>>,
}

impl<F, E> View<F>
where
    F: FnMut(&[u8]) -> Result<Option<StoredValue>, E>,
{
    pub fn new(base: F) -> Self {
        View { base, changes: BTreeMap::new() }
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<StoredValue>, E> {
        match self.changes.get(key) {
            Some(row) => Ok(row.clone()),
            None => (self.base)(key),
        }
    }
}

fn holds(row: Option<&StoredValue>, target: &CompareTarget) -> bool {
    match target {
        CompareTarget::Exists(want) => row.is_some() == *want,
        CompareTarget::Value(v) => row.is_some_and(|r| r.value == *v),
        CompareTarget::ModRevision(rev) => row.map_or(0, |r| r.mod_revision) == *rev,
        CompareTarget::CreateRevision(rev) => row.map_or(0, |r| r.create_revision) == *rev,
        CompareTarget::Version(v) => row.map_or(0, |r| r.version) == *v,
    }
}

/// True if the ops that ran changed any row (such a transaction consumes a revision).
pub fn changed(result: &TxnResult) -> bool {
    result.results.iter().any(|r| matches!(r, OpResult::Put { .. } | OpResult::Delete { deleted: true, .. }))
}

/// Runs `txn` at `revision`: all compares, then the matching branch's ops in order.
pub fn execute<F, E>(view: &mut View<F>, revision: u64, txn: &Txn) -> Result<TxnResult, E>
where
    F: FnMut(&[u8]) -> Result<Option<StoredValue>, E>,
{
    let mut succeeded = true;
    for Compare { key, target } in &txn.compares {
        let row = view.get(key)?;
        if !holds(row.as_ref(), target) {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded { &txn.success } else { &txn.failure };
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        results.push(match op {
            Op::Get { key } => OpResult::Get { kv: view.get(key)?.map(|r| r.to_kv(key)) },
            Op::Put { key, value, prev_kv } => {
                let prev = view.get(key)?;
                let row = StoredValue {
                    value: value.clone(),
                    create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
                    mod_revision: revision,
                    version: prev.as_ref().map_or(1, |p| p.version + 1),
                };
                let kv = row.to_kv(key);
                view.changes.insert(key.clone(), Some(row));
                OpResult::Put { prev: prev.filter(|_| *prev_kv).map(|p| p.to_kv(key)), kv }
            }
            Op::Delete { key, prev_kv } => {
                let prev = view.get(key)?;
                let deleted = prev.is_some();
                if deleted {
                    view.changes.insert(key.clone(), None);
                }
                OpResult::Delete { deleted, prev: prev.filter(|_| *prev_kv).map(|p| p.to_kv(key)) }
            }
        });
    }
    Ok(TxnResult { succeeded, results })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn empty(_: &[u8]) -> Result<Option<StoredValue>, Infallible> {
        Ok(None)
    }

    fn put(k: &str, v: &str) -> Op {
        Op::Put { key: Bytes::from(k.to_string()), value: Bytes::from(v.to_string()), prev_kv: true }
    }

    #[test]
    fn revisions_and_versions_follow_writes() {
        let mut view = View::new(empty);
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
        let mut view = View::new(empty);
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
            let mut v = View::new(empty);
            v.changes = view.changes.clone();
            let r = execute(&mut v, 4, &cas(target.clone())).unwrap();
            assert_eq!(r.succeeded, want, "{target:?}");
            assert!(matches!(r.results[0], OpResult::Put { .. }) == want);
        }
        // A missing key: ModRevision(0) is "must not exist".
        let mut v = View::new(empty);
        let txn = Txn {
            compares: vec![Compare { key: Bytes::from_static(b"new"), target: CompareTarget::ModRevision(0) }],
            success: vec![put("new", "x")],
            failure: vec![],
        };
        assert!(execute(&mut v, 7, &txn).unwrap().succeeded);
    }
}
