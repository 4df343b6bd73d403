//! The placement document's home: one key of the meta group's state machine, written only by a
//! compare-and-swap on the key's `mod_revision`. A driver that lost leadership (or raced another)
//! fails the compare instead of overwriting a newer placement.

use bytes::Bytes;

use super::Placement;
use crate::error::ServiceError;
use crate::machine::command::{Attach, Compare, CompareTarget, Op, Reply, Request, Txn};
use crate::shard::Shard;

/// The meta group key that holds the placement (JSON, so `hcctl` and humans can read it too).
pub const PLACEMENT_KEY: &[u8] = b"placement";

/// A placement as read, with the revision a later write must compare against.
#[derive(Debug, Clone)]
pub struct Stored {
    pub placement: Placement,
    pub mod_revision: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("the stored placement is unreadable: {0}")]
    Corrupt(String),
    #[error("the placement changed since it was read (another driver wrote it)")]
    Conflict,
}

/// This replica's copy of the placement: current as of its last apply (a follower may lag).
pub fn load_local(meta: &Shard) -> Result<Option<Stored>, StoreError> {
    let kv = meta.reader.get(PLACEMENT_KEY).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    kv.map(|kv| {
        let placement = serde_json::from_slice(&kv.value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Stored { placement, mod_revision: kv.mod_revision })
    })
    .transpose()
}

/// The placement as of now, on the meta leader (after a read barrier).
pub async fn load(meta: &Shard) -> Result<Option<Stored>, StoreError> {
    meta.read_barrier().await?;
    load_local(meta)
}

/// Writes `next` if the stored placement is still at `expected` (0: none stored yet).
pub async fn save(meta: &Shard, expected: u64, next: &Placement) -> Result<u64, StoreError> {
    let value = serde_json::to_vec(next).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let key = Bytes::from_static(PLACEMENT_KEY);
    let txn = Txn {
        compares: vec![Compare { key: key.clone(), target: CompareTarget::ModRevision(expected) }],
        success: vec![Op::Put { key, value: Bytes::from(value), prev_kv: false, attach: Attach::None }],
        failure: vec![],
    };
    match meta.submit(Request::Txn(txn)).await? {
        (revision, Reply::Txn(r)) if r.succeeded => Ok(revision),
        (_, Reply::Txn(_)) => Err(StoreError::Conflict),
        (_, other) => Err(StoreError::Corrupt(format!("unexpected reply {other:?}"))),
    }
}
