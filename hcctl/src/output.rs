//! How `hcctl` prints results: raw bytes or aligned text for people, JSON for scripts.
//!
//! Keys and values are bytes. In JSON they appear as strings when valid UTF-8 and as
//! `<field>_hex` otherwise, so a script never receives a lossy conversion.

use std::io::{self, Write};

use hypercache_client::{
    CasResult, DeleteResult, Error, KeyValue, OpResult, PutResult, Reason, ShardId, StatusResponse, TxnResult,
};
use serde_json::{json, Map, Value};

use crate::exit;
use crate::failure::Failure;
use crate::txn_syntax::TxnOp;

/// Buffered stdout. Write errors are returned (never a panic); `BrokenPipe` becomes a quiet
/// exit in the caller.
pub(super) struct Out {
    inner: io::BufWriter<io::Stdout>,
}

impl Out {
    pub(super) fn stdout() -> Self {
        Out { inner: io::BufWriter::new(io::stdout()) }
    }

    pub(super) fn bytes(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.write_all(data)
    }

    pub(super) fn line(&mut self, text: &str) -> io::Result<()> {
        self.inner.write_all(text.as_bytes())?;
        self.inner.write_all(b"\n")
    }

    pub(super) fn json(&mut self, value: &Value) -> io::Result<()> {
        self.line(&value.to_string())
    }

    pub(super) fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    /// One line of a stream, flushed at once: text, or the JSON object with `--json`.
    pub(super) fn update(&mut self, json: bool, text: &str, value: &Value) -> io::Result<()> {
        if json {
            self.json(value)?;
        } else {
            self.line(text)?;
        }
        self.flush()
    }
}

/// `error: <message>` on stderr, on one line.
pub(super) fn error_line(message: &str) {
    let _ = writeln!(io::stderr(), "error: {}", message.replace('\n', " "));
}

/// Something a successful call found missing (a lease, a board): a note on stderr, or with
/// `--json` the error object on stdout. Returns `exit_code`.
pub(super) fn not_found(
    out: &mut Out,
    json: bool,
    reason: Reason,
    message: &str,
    exit_code: u8,
) -> Result<u8, Failure> {
    if json {
        out.json(&crate::failure::own_error_json(tonic::Code::NotFound, reason, message, exit_code))?;
        out.flush()?;
    } else {
        note(message);
    }
    Ok(exit_code)
}

/// An informational line on stderr.
pub(super) fn note(message: &str) {
    let _ = writeln!(io::stderr(), "{message}");
}

pub(super) fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// Inserts `name` as a string if `data` is UTF-8, else `<name>_hex`.
pub(super) fn put_bytes(obj: &mut Map<String, Value>, name: &str, data: &[u8]) {
    match std::str::from_utf8(data) {
        Ok(s) => obj.insert(name.to_string(), Value::from(s)),
        Err(_) => obj.insert(format!("{name}_hex"), Value::from(hex(data))),
    };
}

pub(super) fn kv_json(kv: &KeyValue, with_value: bool) -> Value {
    let mut obj = Map::new();
    put_bytes(&mut obj, "key", &kv.key);
    if with_value {
        put_bytes(&mut obj, "value", &kv.value);
    }
    obj.insert("create_revision".into(), kv.create_revision.into());
    obj.insert("mod_revision".into(), kv.mod_revision.into());
    obj.insert("version".into(), kv.version.into());
    obj.insert("lease".into(), kv.lease.into());
    Value::Object(obj)
}

/// `get`'s output; `shard` is the shard the key maps to (named in JSON, so a script can tell
/// which shard's leader or replica it read).
pub(super) fn get(
    out: &mut Out,
    json: bool,
    key: &[u8],
    shard: ShardId,
    found: Option<&KeyValue>,
) -> Result<u8, Failure> {
    match (found, json) {
        (Some(kv), false) => out.bytes(&kv.value)?,
        (Some(kv), true) => {
            let mut v = kv_json(kv, true);
            if let Value::Object(obj) = &mut v {
                obj.insert("found".into(), true.into());
                obj.insert("shard".into(), shard.0.into());
            }
            out.json(&v)?;
        }
        (None, false) => note("not found"),
        (None, true) => {
            let mut obj = Map::new();
            obj.insert("found".into(), false.into());
            put_bytes(&mut obj, "key", key);
            obj.insert("shard".into(), shard.0.into());
            out.json(&Value::Object(obj))?;
        }
    }
    out.flush()?;
    Ok(if found.is_some() { exit::OK } else { exit::KEY_NOT_FOUND })
}

pub(super) fn put(out: &mut Out, json: bool, result: &PutResult) -> Result<u8, Failure> {
    if json {
        let (version, create) = result.kv.as_ref().map_or((0, 0), |kv| (kv.version, kv.create_revision));
        out.json(&json!({"revision": result.revision, "version": version, "create_revision": create}))?;
    } else {
        out.line(&format!("OK revision={}", result.revision))?;
    }
    out.flush()?;
    Ok(exit::OK)
}

pub(super) fn delete(out: &mut Out, json: bool, result: &DeleteResult) -> Result<u8, Failure> {
    if json {
        out.json(&json!({"deleted": result.deleted, "revision": result.revision}))?;
    } else if result.deleted {
        out.line(&format!("deleted revision={}", result.revision))?;
    } else {
        out.line("not found")?;
    }
    out.flush()?;
    Ok(exit::OK)
}

pub(super) fn cas(out: &mut Out, json: bool, result: &CasResult) -> Result<u8, Failure> {
    if json {
        let kv = result.kv.as_ref().map_or(Value::Null, |kv| kv_json(kv, true));
        out.json(&json!({"succeeded": result.succeeded, "revision": result.revision, "kv": kv}))?;
    } else if result.succeeded {
        out.line(&format!("OK revision={}", result.revision))?;
    } else {
        note(&cas_failure_text(result.kv.as_ref()));
    }
    out.flush()?;
    Ok(if result.succeeded { exit::OK } else { exit::CAS_FAILED })
}

pub(super) fn cas_failure_text(current: Option<&KeyValue>) -> String {
    match current {
        None => "comparison failed: the key does not exist".to_string(),
        Some(kv) => format!(
            "comparison failed: current mod_revision={} version={} value={}",
            kv.mod_revision,
            kv.version,
            printable(&kv.value)
        ),
    }
}

/// A value for a human-readable message: quoted UTF-8 (escaped), else hex; at most 200 bytes.
pub(super) fn printable(data: &[u8]) -> String {
    const MAX: usize = 200;
    let (shown, cut) = if data.len() > MAX { (&data[..MAX], "...") } else { (data, "") };
    match std::str::from_utf8(shown) {
        Ok(s) => format!("{s:?}{cut}"),
        Err(_) => format!("0x{}{cut}", hex(shown)),
    }
}

/// A transaction's outcome: a summary line, then one line per op of the branch that ran.
pub(super) fn txn(out: &mut Out, json: bool, result: &TxnResult, ran: &[TxnOp]) -> Result<u8, Failure> {
    let ops = ran.iter().zip(&result.responses);
    if json {
        let responses: Vec<Value> = ops
            .map(|(op, r)| {
                let mut obj = Map::new();
                obj.insert("op".into(), op.verb.into());
                put_bytes(&mut obj, "key", op.key.as_bytes());
                match r {
                    OpResult::Get(kv) => {
                        obj.insert("found".into(), kv.is_some().into());
                        obj.insert("kv".into(), kv.as_ref().map_or(Value::Null, |kv| kv_json(kv, true)));
                    }
                    OpResult::Put(put) => {
                        obj.insert("version".into(), put.kv.as_ref().map_or(0, |kv| kv.version).into());
                    }
                    OpResult::Delete(del) => {
                        obj.insert("deleted".into(), del.deleted.into());
                    }
                }
                Value::Object(obj)
            })
            .collect();
        out.json(&json!({"succeeded": result.succeeded, "revision": result.revision, "responses": responses}))?;
    } else {
        let branch = if result.succeeded { "SUCCEEDED (--then ran)" } else { "FAILED (--else ran)" };
        out.line(&format!("{branch} revision={}", result.revision))?;
        for (op, r) in ops {
            let outcome = match r {
                OpResult::Get(Some(kv)) => printable(&kv.value),
                OpResult::Get(None) => "not found".to_string(),
                OpResult::Put(put) => format!("OK version={}", put.kv.as_ref().map_or(0, |kv| kv.version)),
                OpResult::Delete(del) => if del.deleted { "deleted" } else { "not found" }.to_string(),
            };
            out.line(&format!("{} {}: {outcome}", op.verb, op.key))?;
        }
    }
    out.flush()?;
    Ok(if result.succeeded { exit::OK } else { exit::CAS_FAILED })
}

pub(super) fn range_lines(out: &mut Out, kvs: &[KeyValue], keys_only: bool) -> io::Result<()> {
    for kv in kvs {
        out.bytes(&kv.key)?;
        if !keys_only {
            out.bytes(b"\t")?;
            out.bytes(&kv.value)?;
        }
        out.bytes(b"\n")?;
    }
    out.flush()
}

pub(super) fn range_json(
    out: &mut Out,
    kvs: &[KeyValue],
    revision: u64,
    revisions: &std::collections::BTreeMap<ShardId, u64>,
    more: bool,
    keys_only: bool,
) -> io::Result<()> {
    let kvs: Vec<Value> = kvs.iter().map(|kv| kv_json(kv, !keys_only)).collect();
    // `revision` is the serving shard's when one shard answered (0 when merged from several);
    // `revisions` maps every shard that answered to its revision.
    let revisions: Map<String, Value> = revisions.iter().map(|(s, r)| (s.to_string(), (*r).into())).collect();
    out.json(&json!({"kvs": kvs, "revision": revision, "revisions": revisions, "more": more}))?;
    out.flush()
}

pub(super) fn status(
    out: &mut Out,
    json: bool,
    rows: &[(String, Result<StatusResponse, Error>)],
) -> Result<u8, Failure> {
    if json {
        let rows: Vec<Value> = rows.iter().map(|(endpoint, r)| status_json(endpoint, r)).collect();
        out.json(&Value::Array(rows))?;
    } else {
        out.bytes(status_table(rows).as_bytes())?;
    }
    out.flush()?;
    let answered = rows.iter().any(|(_, r)| r.is_ok());
    Ok(if answered { exit::OK } else { exit::UNAVAILABLE })
}

fn leader_of(s: &StatusResponse) -> String {
    match (s.leader_id, s.leader_endpoint.as_str()) {
        (0, _) => "-".to_string(),
        (id, "") => id.to_string(),
        (id, ep) => format!("{id}@{ep}"),
    }
}

fn status_json(endpoint: &str, result: &Result<StatusResponse, Error>) -> Value {
    match result {
        Err(e) => json!({"endpoint": endpoint, "reachable": false, "error": e.to_string()}),
        Ok(s) => json!({
            "endpoint": endpoint, "reachable": true, "name": s.name, "node_id": s.node_id,
            "advertised_endpoint": s.endpoint, "shard_id": s.shard_id, "role": s.role, "term": s.term,
            "leader_id": s.leader_id, "leader_endpoint": s.leader_endpoint,
            "commit_index": s.commit_index, "applied_index": s.applied_index,
            "last_log_index": s.last_log_index, "ready": s.ready,
            "members": s.members.iter().map(|m| json!({
                "node_id": m.node_id, "name": m.name, "endpoint": m.endpoint, "voter": m.voter,
            })).collect::<Vec<_>>(),
        }),
    }
}

/// An aligned table, one row per endpoint; unreachable nodes say so in place of their state.
pub(super) fn status_table(rows: &[(String, Result<StatusResponse, Error>)]) -> String {
    const HEADER: [&str; 10] =
        ["ENDPOINT", "NAME", "ID", "ADVERTISED", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "READY"];
    let mut cells: Vec<Vec<String>> = vec![HEADER.iter().map(|h| h.to_string()).collect()];
    for (endpoint, result) in rows {
        cells.push(match result {
            Ok(s) => vec![
                endpoint.clone(),
                s.name.clone(),
                s.node_id.to_string(),
                s.endpoint.clone(),
                s.role.clone(),
                s.term.to_string(),
                leader_of(s),
                s.commit_index.to_string(),
                s.applied_index.to_string(),
                if s.ready { "yes" } else { "no" }.to_string(),
            ],
            Err(e) => vec![endpoint.clone(), format!("unreachable: {e}")],
        });
    }
    align(&cells, HEADER.len())
}

/// Aligns `cells` (the header row first) into columns two spaces apart. Rows shorter than
/// `columns` (error rows) span the table and do not widen the columns.
pub(super) fn align(cells: &[Vec<String>], columns: usize) -> String {
    let mut widths = vec![0usize; columns];
    for row in cells.iter().filter(|r| r.len() == columns) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in cells {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                let width = widths.get(i).copied().unwrap_or(0).max(cell.chars().count());
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn kv(key: &'static [u8], value: &'static [u8]) -> KeyValue {
        KeyValue {
            key: Bytes::from_static(key),
            value: Bytes::from_static(value),
            create_revision: 3,
            mod_revision: 7,
            version: 2,
            lease: 0,
        }
    }

    #[test]
    fn json_uses_strings_for_utf8_and_hex_otherwise() {
        let v = kv_json(&kv(b"k", b"v"), true);
        assert_eq!(
            v,
            json!({"key": "k", "value": "v", "create_revision": 3, "mod_revision": 7, "version": 2, "lease": 0})
        );
        let v = kv_json(&kv(b"k", &[0, 0xff]), true);
        assert_eq!(v["value_hex"], "00ff");
        assert!(v.get("value").is_none());
        assert!(kv_json(&kv(b"k", b"v"), false).get("value").is_none());
    }

    #[test]
    fn cas_failure_shows_the_current_state() {
        assert!(cas_failure_text(None).contains("does not exist"));
        let text = cas_failure_text(Some(&kv(b"k", b"old")));
        assert!(text.contains("mod_revision=7") && text.contains("\"old\""), "{text}");
    }

    #[test]
    fn status_table_shows_unreachable_nodes() {
        let up = StatusResponse {
            node_id: 1,
            name: "n1".into(),
            endpoint: "n1:7001".into(),
            role: "leader".into(),
            term: 4,
            leader_id: 1,
            leader_endpoint: "n1:7001".into(),
            commit_index: 10,
            applied_index: 10,
            ready: true,
            ..Default::default()
        };
        let rows = vec![
            ("a:7001".to_string(), Ok(up)),
            ("b:7002".to_string(), Err(Error::Unavailable { message: "status on b:7002: refused".into() })),
        ];
        let table = status_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ENDPOINT"));
        assert!(lines[1].contains("1@n1:7001") && lines[1].contains("leader") && lines[1].ends_with("yes"));
        assert!(lines[2].contains("unreachable: unavailable"), "{}", lines[2]);
    }
}
