//! The client API's protobuf edge shared by its services: domain values to `hypercache.v1`
//! messages, and the write id checked on its way in.

use hypercache_proto::v1 as pb;
use hypercache_proto::Reason;

use crate::error::ServiceError;
use crate::machine::command::WriteId;
use crate::types::{ClientId, KeyValue};

impl From<KeyValue> for pb::KeyValue {
    fn from(kv: KeyValue) -> Self {
        pb::KeyValue {
            key: kv.key,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease.0,
        }
    }
}

/// The write id of a mutating request, checked: a 16-byte client id, seq >= 1 and
/// first_incomplete <= seq. An absent id is an untracked write (a client older than
/// exactly-once writes).
pub fn write_id(write: Option<pb::WriteId>) -> Result<Option<WriteId>, ServiceError> {
    let Some(w) = write else { return Ok(None) };
    let client = <[u8; 16]>::try_from(w.client_id.as_ref()).map_err(|_| {
        ServiceError::invalid(
            Reason::InvalidArgument,
            format!("write.client_id is {} bytes; it must be exactly 16", w.client_id.len()),
        )
    })?;
    if w.seq == 0 || w.first_incomplete > w.seq {
        return Err(ServiceError::invalid(
            Reason::InvalidArgument,
            format!(
                "write.seq {} / write.first_incomplete {}: seq must be >= 1 and first_incomplete <= seq",
                w.seq, w.first_incomplete
            ),
        ));
    }
    Ok(Some(WriteId { client: ClientId(client), seq: w.seq, first_incomplete: w.first_incomplete }))
}
