//! Serializable reads never go back in time for one client.
//!
//! A serializable read is answered from one replica's local state, which may lag the leader.
//! Lagging is allowed (that is what "serializable" means); going *backwards* is not: after a
//! client wrote revision 42 of a shard, or read it anywhere, a serializable read of that shard
//! must not come from a replica that has applied only revision 30, or the client would see its
//! own write disappear. Every response header carries the shard's revision as the answering
//! replica knows it (a write: its own revision; a read: the replica's applied revision). The
//! client keeps the highest revision it has seen per shard ([`Seen`]) and refuses a
//! serializable answer below it: the attempt fails with `STALE_REPLICA` (transient, "not
//! applied"), so the retry loop moves on to the next replica, the leader included, which is
//! never behind what any client saw.
//!
//! The server refuses the other two cases by itself (`REPLICA_NOT_SERVING`): a learner, and a
//! replica that has applied nothing. A client that has seen nothing of a shard would otherwise
//! accept an empty replica's "no such key".
//!
//! The floor is per client (clones share it), in memory: a new process starts from zero, as
//! etcd's serializable reads do. Bounded by the shard count.

use std::collections::HashMap;
use std::sync::Mutex;

use hypercache_proto::error_info::status_with_info;
use hypercache_proto::poison::lock;
use hypercache_proto::v1 as pb;
use hypercache_proto::v1::{ErrorInfo, ResponseHeader};
use hypercache_proto::Reason;
use tonic::{Code, Response, Status};

use crate::ids::ShardId;

/// The highest revision this client has seen, per shard.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    revisions: Mutex<HashMap<ShardId, u64>>,
}

impl Seen {
    /// The newest revision of `shard` this client has seen (0: none).
    #[cfg(test)]
    fn floor(&self, shard: ShardId) -> u64 {
        lock(&self.revisions).get(&shard).copied().unwrap_or(0)
    }

    /// Passes one attempt's result through [`admit`](Self::admit).
    pub(crate) fn check<T: Headed>(
        &self,
        shard: ShardId,
        serializable: bool,
        result: Result<Response<T>, Status>,
    ) -> Result<Response<T>, Status> {
        let response = result?;
        self.admit(shard, response.get_ref().header(), serializable)?;
        Ok(response)
    }

    /// Records a response of `shard`. A serializable answer older than the floor is refused
    /// with a status the retry loop treats as "try another replica" (it names the endpoint).
    pub(crate) fn admit(
        &self,
        shard: ShardId,
        header: Option<&ResponseHeader>,
        serializable: bool,
    ) -> Result<(), Status> {
        let Some(revision) = header.map(|h| h.revision) else { return Ok(()) };
        let mut revisions = lock(&self.revisions);
        let floor = revisions.entry(shard).or_insert(0);
        if serializable && revision < *floor {
            let info = ErrorInfo {
                reason: Reason::StaleReplica.into(),
                not_applied: true,
                shard_id: shard.0,
                revision: *floor,
                ..Default::default()
            };
            let message = format!(
                "answered shard {shard} at revision {revision}, behind revision {} this client already saw; \
                 asking another replica",
                *floor
            );
            return Err(status_with_info(Code::Unavailable, message, &info));
        }
        *floor = (*floor).max(revision);
        Ok(())
    }
}

/// A response with a header (the revision it was answered at).
pub(crate) trait Headed {
    fn header(&self) -> Option<&ResponseHeader>;
}

macro_rules! headed {
    ($($t:ty),*) => {$(
        impl Headed for $t {
            fn header(&self) -> Option<&ResponseHeader> {
                self.header.as_ref()
            }
        }
    )*};
}
headed!(
    pb::GetResponse,
    pb::PutResponse,
    pb::DeleteResponse,
    pb::CompareAndSwapResponse,
    pb::RangeResponse,
    pb::TxnResponse
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::{classify, Decision, Delivery, OpKind};

    fn at(revision: u64) -> Option<ResponseHeader> {
        Some(ResponseHeader { revision, ..Default::default() })
    }

    #[test]
    fn serializable_answers_never_go_back_per_shard() {
        let seen = Seen::default();
        seen.admit(ShardId(1), at(42).as_ref(), false).expect("a write's revision");
        assert_eq!(seen.floor(ShardId(1)), 42);
        let stale = seen.admit(ShardId(1), at(30).as_ref(), true).expect_err("behind the floor");
        assert_eq!(classify(&stale, OpKind::Read, Delivery::MaybeSent), Decision::Retry, "another replica");
        assert!(stale.message().contains("revision 30") && stale.message().contains("42"), "{}", stale.message());
        seen.admit(ShardId(1), at(42).as_ref(), true).expect("equal is fine");
        seen.admit(ShardId(0), at(3).as_ref(), true).expect("shards are independent");
        seen.admit(ShardId(1), at(7).as_ref(), false).expect("only serializable answers are checked");
        assert_eq!(seen.floor(ShardId(1)), 42, "the floor never goes down");
        seen.admit(ShardId(1), None, true).expect("nothing to compare");
    }
}
