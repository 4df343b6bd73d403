//! Domain <-> protobuf conversions for the client API.

use hypercache_proto::v1 as pb;

use crate::types::KeyValue;

impl From<KeyValue> for pb::KeyValue {
    fn from(kv: KeyValue) -> Self {
        pb::KeyValue {
            key: kv.key,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}
