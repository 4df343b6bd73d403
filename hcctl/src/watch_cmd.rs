//! `hcctl watch`: prints every change exactly once, resuming across reconnects, until Ctrl-C.
//!
//! Revisions are per shard: when the watch covers several shards (a prefix without a hash tag
//! in a sharded cluster) each line names its shard, and `--rev` is refused (one revision cannot
//! position several shards). JSON lines always carry `shard`.

use bytes::Bytes;
use hypercache_client::{Client, Event, EventKind, WatchOptions, WatchUpdate};
use serde_json::{json, Map, Value};

use crate::exit;
use crate::failure::Failure;
use crate::output::{kv_json, note, put_bytes, Out};
use crate::terminal::Interrupt;

pub(super) async fn run(
    client: &Client,
    out: &mut Out,
    json: bool,
    key: String,
    prefix: bool,
    rev: u64,
    prev_kv: bool,
) -> Result<u8, Failure> {
    let key = Bytes::from(key.into_bytes());
    let options = if prefix { WatchOptions::prefix(key) } else { WatchOptions::key(key) };
    let mut watcher = client.watch(options.start_revision(rev).prev_kv(prev_kv));
    let mut interrupt = Interrupt::listen();
    loop {
        let Some(update) = interrupt.or(watcher.next()).await else { return Ok(exit::OK) };
        match update {
            Ok(WatchUpdate::Events { events, .. }) => {
                let sharded = watcher.last_revisions().len() > 1;
                for event in &events {
                    out.update(json, &event_line(event, sharded), &event_json(event))?;
                }
            }
            Ok(WatchUpdate::Progress { shard, revision }) => {
                if json {
                    out.update(json, "", &json!({"type": "PROGRESS", "shard": shard.0, "revision": revision}))?;
                }
            }
            // The watcher keeps its position: the next call resumes where it stopped.
            Err(err) if err.is_retryable() => note(&format!("watch: {err}; retrying")),
            Err(err) => return Err(err.into()),
        }
    }
}

/// `PUT key value (rev N)` or `DELETE key (rev N)` (`(shard S rev N)` when the watch covers
/// several shards); bytes that are not UTF-8 are replaced.
pub(super) fn event_line(event: &Event, sharded: bool) -> String {
    let key = String::from_utf8_lossy(&event.kv.key);
    let at = if sharded {
        format!("(shard {} rev {})", event.shard, event.revision())
    } else {
        format!("(rev {})", event.revision())
    };
    let mut line = match event.kind {
        EventKind::Put => format!("PUT {key} {} {at}", String::from_utf8_lossy(&event.kv.value)),
        EventKind::Delete => format!("DELETE {key} {at}"),
    };
    if let Some(prev) = &event.prev_kv {
        line.push_str(&format!(" prev={}", String::from_utf8_lossy(&prev.value)));
    }
    line
}

fn event_json(event: &Event) -> Value {
    let mut obj = Map::new();
    let kind = match event.kind {
        EventKind::Put => "PUT",
        EventKind::Delete => "DELETE",
    };
    obj.insert("type".into(), kind.into());
    put_bytes(&mut obj, "key", &event.kv.key);
    if event.kind == EventKind::Put {
        put_bytes(&mut obj, "value", &event.kv.value);
        obj.insert("version".into(), event.kv.version.into());
        obj.insert("lease".into(), event.kv.lease.into());
    }
    obj.insert("shard".into(), event.shard.0.into());
    obj.insert("revision".into(), event.revision().into());
    if let Some(prev) = &event.prev_kv {
        obj.insert("prev_kv".into(), kv_json(prev, true));
    }
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypercache_client::{KeyValue, ShardId};

    #[test]
    fn events_print_as_documented() {
        let kv = KeyValue { key: "k".into(), value: "v".into(), mod_revision: 9, ..Default::default() };
        let put = Event { shard: ShardId(0), kind: EventKind::Put, kv: kv.clone(), prev_kv: None };
        assert_eq!(event_line(&put, false), "PUT k v (rev 9)");
        let del = Event {
            shard: ShardId(3),
            kind: EventKind::Delete,
            kv: KeyValue { value: Bytes::new(), ..kv },
            prev_kv: None,
        };
        assert_eq!(event_line(&del, false), "DELETE k (rev 9)");
        assert_eq!(event_line(&del, true), "DELETE k (shard 3 rev 9)");
        assert_eq!(event_json(&del), json!({"type": "DELETE", "key": "k", "shard": 3, "revision": 9}));
    }
}
