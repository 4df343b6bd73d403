//! Exactly-once writes: per-client sessions that remember the replies of applied writes.
//!
//! Why: a client cannot always tell whether a write took effect. A lost answer, a node that
//! stopped, or a `NOT_LEADER` sent to a proposal whose entry was truncated on the node that took
//! it (openraft answers every pending proposal above a truncation point that way, yet another
//! node may hold the entry and a later leader may commit it) all leave the outcome open. So every
//! mutating request carries a [`WriteId`] (client id, seq, first incomplete seq), every attempt
//! of one write repeats it, and the state machine applies a given (client, seq) at most once: a
//! repeat returns the stored [`Applied`] (the original revision and reply, or the original
//! rejection) and changes nothing. With that, the client may retry any write until its deadline.
//!
//! The model is the Raft dissertation's (Ongaro, section 6.3), with its extension for
//! concurrent requests: a client instance is used by many tasks at once, so its writes reach a
//! shard in any order, and a shard sees only the seqs whose keys it owns. Instead of "the last
//! seq and its reply" a session keeps the replies of every seq at or above a floor; the client
//! raises the floor with `first_incomplete` (the lowest seq it still waits for), and a seq below
//! the floor that has no stored reply is refused with [`Rejection::WriteSeqTooOld`]: it is a late
//! copy of a write the client already gave up or got an answer for, and applying it now could
//! apply it twice. The client reports that as "outcome unknown", never as a failure.
//!
//! Determinism: every decision here depends only on replicated state. Time is the log clock,
//! the largest proposer timestamp ([`crate::machine::command::Command::Tracked`]) applied so far, kept in
//! the counter row `c log_clock_ms` so it travels in snapshots with the session rows.
//!
//! Layout: a small head row per client (`s<id>`: last seen, floor, the seqs it holds outcomes
//! for) and one row per stored outcome (`r<id><seq>`). An outcome is written once and deleted
//! once, so a client with many writes in flight costs each write a head rewrite (8 bytes per seq
//! held), not a rewrite of every reply it holds; replies may be large (a put echoes its value).
//! A leader's clock that runs behind does not move the log clock back; one that runs far ahead
//! expires sessions early (documented in docs/api.md; node clocks are assumed NTP-synchronised).
//!
//! Bounds (docs/api.md, "Exactly-once writes"): a session not seen for [`Limits::idle_ms`] of
//! log time is dropped; a shard holds at most [`Limits::max_sessions`], and when full it evicts
//! its idlest session only if that one has been idle for [`Limits::min_evict_idle_ms`] (longer
//! than any client's deadline, so no retry still in flight can miss its reply), otherwise the new
//! client is refused with [`Rejection::TooManyClients`] (nothing applied); a session keeps at most
//! [`Limits::max_replies`] replies, dropping its lowest seqs (and raising its floor) beyond that.
//!
//! [`Sessions`] is the in-memory index of the session rows (who is idlest), kept in step with
//! the rows by every call here and rebuilt from them at start and after a snapshot install.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::overlay::{ApplyError, Base, Overlay};
use crate::machine::command::{Applied, Rejection, Request, WriteId};
use crate::types::ClientId;

/// The counter row holding the log clock (ms since the Unix epoch).
pub const LOG_CLOCK: &str = "log_clock_ms";

/// The bounds of the session table. Every replica must use the same values (they decide what is
/// applied), so production uses [`Limits::DEFAULT`]; tests shrink them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A session not seen for this long (log time) is dropped.
    pub idle_ms: u64,
    /// Sessions per shard at most.
    pub max_sessions: usize,
    /// A full table evicts its idlest session only if it has been idle this long.
    pub min_evict_idle_ms: u64,
    /// Stored replies per session at most.
    pub max_replies: usize,
}

impl Limits {
    pub const DEFAULT: Limits =
        Limits { idle_ms: 10 * 60 * 1000, max_sessions: 50_000, min_evict_idle_ms: 60 * 1000, max_replies: 1024 };
}

/// What a shard remembers about one client (row `s<client id>`; each outcome is a row
/// `r<client id><seq>`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Log time of the client's last write here.
    pub last_seen_ms: u64,
    /// Seqs below this have no stored reply and are refused.
    pub floor: u64,
    /// The applied seqs at or above `floor`, whose outcomes are stored.
    pub seqs: BTreeSet<u64>,
}

/// In-memory index of a shard's session rows: last-seen time per client, ordered by age.
#[derive(Debug)]
pub struct Sessions {
    limits: Limits,
    last_seen: HashMap<ClientId, u64>,
    by_age: BTreeSet<(u64, ClientId)>,
}

impl Sessions {
    /// The index of the given session rows (client, last seen).
    pub fn new(limits: Limits, rows: impl IntoIterator<Item = (ClientId, u64)>) -> Self {
        let mut s = Sessions { limits, last_seen: HashMap::new(), by_age: BTreeSet::new() };
        for (client, seen) in rows {
            s.touch(client, seen);
        }
        s
    }

    pub fn len(&self) -> usize {
        self.last_seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last_seen.is_empty()
    }

    fn touch(&mut self, client: ClientId, seen: u64) {
        if let Some(old) = self.last_seen.insert(client, seen) {
            self.by_age.remove(&(old, client));
        }
        self.by_age.insert((seen, client));
    }

    fn forget<B: Base>(&mut self, ov: &mut Overlay<B>, client: ClientId) -> Result<(), ApplyError> {
        if let Some(seen) = self.last_seen.remove(&client) {
            self.by_age.remove(&(seen, client));
        }
        if let Some(record) = ov.session::<SessionRecord>(&client)? {
            for seq in record.seqs {
                ov.set_reply::<Applied>(&client, seq, None)?;
            }
        }
        ov.set_session::<SessionRecord>(&client, None)
    }

    /// Moves the log clock to `time_ms` (never back), drops the sessions idle too long, and
    /// returns the log clock.
    pub fn advance<B: Base>(&mut self, ov: &mut Overlay<B>, time_ms: u64) -> Result<u64, ApplyError> {
        let stored = ov.counter(LOG_CLOCK)?;
        let clock = stored.max(time_ms);
        if clock != stored {
            ov.set_counter(LOG_CLOCK, clock)?;
        }
        while let Some(&(seen, client)) = self.by_age.first() {
            if clock.saturating_sub(seen) < self.limits.idle_ms {
                break;
            }
            self.forget(ov, client)?;
        }
        Ok(clock)
    }

    /// Applies `request` once for `write` at log time `clock`: a repeat of an applied seq returns
    /// its stored outcome and changes nothing. A replayed outcome carries its original revision,
    /// which is below `revision`: callers keep the larger of the two as the shard's revision.
    pub fn apply<B: Base>(
        &mut self,
        ov: &mut Overlay<B>,
        clock: u64,
        revision: u64,
        write: &WriteId,
        request: &Request,
    ) -> Result<Applied, ApplyError> {
        let refuse =
            |rejection: Rejection| -> Result<Applied, ApplyError> { Ok(Applied { revision, outcome: Err(rejection) }) };
        let mut record = match ov.session::<SessionRecord>(&write.client)? {
            Some(record) => {
                // The failpoint re-creates the bug sessions exist for: a retry applied twice.
                let again = crate::failpoints::on(crate::failpoints::Failpoint::DoubleApply);
                if record.seqs.contains(&write.seq) && again {
                    tracing::warn!(shard = %ov.shard, client = %write.client, seq = write.seq, "failpoint double-apply: applying a repeated write again");
                }
                if record.seqs.contains(&write.seq) && !again {
                    return ov.reply::<Applied>(&write.client, write.seq)?.ok_or_else(|| {
                        ApplyError(format!(
                            "shard {}: session of client {} lists seq {} but its reply row is missing",
                            ov.shard, write.client, write.seq
                        ))
                    });
                }
                if write.seq < record.floor {
                    return refuse(Rejection::WriteSeqTooOld {
                        client: write.client.to_string(),
                        seq: write.seq,
                        floor: record.floor,
                    });
                }
                record
            }
            None => {
                if self.len() >= self.limits.max_sessions {
                    match self.by_age.first() {
                        Some(&(seen, idlest)) if clock.saturating_sub(seen) >= self.limits.min_evict_idle_ms => {
                            self.forget(ov, idlest)?;
                        }
                        _ => return refuse(Rejection::TooManyClients { limit: self.limits.max_sessions as u64 }),
                    }
                }
                SessionRecord::default()
            }
        };
        let applied = super::apply(ov, revision, request)?;
        record.last_seen_ms = clock;
        record.floor = record.floor.max(write.first_incomplete.min(write.seq));
        record.seqs.insert(write.seq);
        ov.set_reply(&write.client, write.seq, Some(&applied))?;
        let kept = record.seqs.split_off(&record.floor);
        let mut dropped: Vec<u64> = std::mem::replace(&mut record.seqs, kept).into_iter().collect();
        while record.seqs.len() > self.limits.max_replies {
            if let Some(seq) = record.seqs.pop_first() {
                record.floor = seq + 1;
                dropped.push(seq);
            }
        }
        for seq in dropped {
            ov.set_reply::<Applied>(&write.client, seq, None)?;
        }
        ov.set_session(&write.client, Some(&record))?;
        self.touch(write.client, clock);
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::record::unseal;
    use crate::machine::command::{Op, Reply, Txn};
    use crate::machine::overlay::{reply_key, session_key, REPLY, SESSION};
    use crate::types::ShardId;
    use bytes::Bytes;

    type Rows = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;

    fn put(key: &str, value: &str) -> Request {
        Request::Txn(Txn {
            success: vec![Op::Put {
                key: Bytes::from(key.to_string()),
                value: Bytes::from(value.to_string()),
                prev_kv: false,
                attach: Default::default(),
            }],
            ..Txn::default()
        })
    }

    fn client(n: u8) -> ClientId {
        ClientId([n; 16])
    }

    fn wid(c: u8, seq: u64, first_incomplete: u64) -> WriteId {
        WriteId { client: client(c), seq, first_incomplete }
    }

    /// A tiny replica: committed rows, revision, the session index; each step is one entry.
    struct Replica {
        rows: Rows,
        revision: u64,
        sessions: Sessions,
    }

    impl Replica {
        fn new(limits: Limits) -> Self {
            Replica { rows: Rows::new(), revision: 0, sessions: Sessions::new(limits, []) }
        }

        /// Applies one entry stamped `time_ms` with `requests`, commits it, returns the outcomes.
        fn entry(&mut self, time_ms: u64, requests: &[(WriteId, Request)]) -> Vec<Applied> {
            let mut ov = Overlay::new(ShardId(0), &self.rows);
            let clock = self.sessions.advance(&mut ov, time_ms).unwrap();
            let mut out = Vec::new();
            for (w, r) in requests {
                let a = self.sessions.apply(&mut ov, clock, self.revision, w, r).unwrap();
                self.revision = self.revision.max(a.revision);
                out.push(a);
            }
            let changes = ov.into_changes();
            for (k, v) in changes {
                match v {
                    Some(v) => self.rows.insert(k, v),
                    None => self.rows.remove(&k),
                };
            }
            out
        }

        fn value(&self, key: &str) -> Option<(Bytes, u64)> {
            let ov = Overlay::new(ShardId(0), &self.rows);
            ov.row(key.as_bytes()).unwrap().map(|r| (r.value, r.version))
        }

        /// The session index rebuilt from the rows alone, as after a restart or a snapshot.
        fn reloaded(&self, limits: Limits) -> Replica {
            let rows: Vec<(ClientId, u64)> = self
                .rows
                .iter()
                .filter(|(k, _)| k.first() == Some(&SESSION))
                .map(|(k, v)| {
                    let id: [u8; 16] = k[1..].try_into().unwrap();
                    (ClientId(id), unseal::<SessionRecord>(v).unwrap().last_seen_ms)
                })
                .collect();
            Replica { rows: self.rows.clone(), revision: self.revision, sessions: Sessions::new(limits, rows) }
        }
    }

    #[test]
    fn a_repeated_write_returns_the_original_reply_and_changes_nothing() {
        let mut r = Replica::new(Limits::DEFAULT);
        let first = r.entry(1_000, &[(wid(1, 1, 1), put("k", "a"))]);
        assert_eq!(first[0].revision, 1);
        r.entry(1_001, &[(wid(2, 1, 1), put("k", "b"))]);
        // The same write again (a retry), in a later entry and twice in one entry.
        let again = r.entry(1_002, &[(wid(1, 1, 1), put("k", "a")), (wid(1, 1, 1), put("k", "a"))]);
        assert_eq!(again, vec![first[0].clone(), first[0].clone()], "original revision and reply");
        assert_eq!(r.value("k"), Some((Bytes::from("b"), 2)), "the retry did not write again");
        assert_eq!(r.revision, 2, "the shard's revision did not go back");
    }

    #[test]
    fn writes_of_one_client_may_arrive_out_of_order() {
        let mut r = Replica::new(Limits::DEFAULT);
        r.entry(1, &[(wid(1, 5, 3), put("a", "5"))]);
        let late = r.entry(2, &[(wid(1, 3, 3), put("b", "3"))]);
        assert!(late[0].outcome.is_ok(), "seq 3 is at the floor: applied");
        assert_eq!(r.value("b"), Some((Bytes::from("3"), 1)));
    }

    #[test]
    fn a_seq_below_the_floor_without_a_reply_is_refused() {
        let mut r = Replica::new(Limits::DEFAULT);
        // Seq 1 was answered elsewhere and the client moved on: first incomplete is 2.
        r.entry(1, &[(wid(1, 2, 2), put("a", "2"))]);
        let late = r.entry(2, &[(wid(1, 1, 1), put("b", "1"))]);
        assert_eq!(late[0].outcome, Err(Rejection::WriteSeqTooOld { client: client(1).to_string(), seq: 1, floor: 2 }));
        assert_eq!(r.value("b"), None);
        // Seq 2 is still remembered (its reply is at the floor).
        let again = r.entry(3, &[(wid(1, 2, 2), put("a", "2"))]);
        assert_eq!(again[0].revision, 1);
        // Once the client says it is done with 2, its reply goes and a late copy is refused.
        r.entry(4, &[(wid(1, 3, 3), put("c", "3"))]);
        let late = r.entry(5, &[(wid(1, 2, 2), put("a", "2"))]);
        assert!(matches!(late[0].outcome, Err(Rejection::WriteSeqTooOld { seq: 2, floor: 3, .. })));
        assert_eq!(r.value("a"), Some((Bytes::from("2"), 1)));
    }

    #[test]
    fn a_rejection_is_remembered_like_a_reply() {
        let mut r = Replica::new(Limits::DEFAULT);
        let revoke = Request::Lease(crate::machine::command::LeaseOp::Revoke { id: crate::types::LeaseId(77) });
        let first = r.entry(1, &[(wid(1, 1, 1), revoke.clone())]);
        assert_eq!(first[0].outcome, Err(Rejection::LeaseNotFound { id: crate::types::LeaseId(77) }));
        assert_eq!(r.entry(2, &[(wid(1, 1, 1), revoke)]), first);
    }

    #[test]
    fn idle_sessions_expire_by_log_time_and_the_clock_never_goes_back() {
        let limits = Limits { idle_ms: 100, ..Limits::DEFAULT };
        let mut r = Replica::new(limits);
        r.entry(1_000, &[(wid(1, 1, 1), put("a", "1"))]);
        r.entry(1_050, &[(wid(2, 1, 1), put("b", "1"))]);
        // A leader whose clock is behind: the log clock stays at 1_050, nothing expires.
        r.entry(10, &[]);
        assert_eq!(r.sessions.len(), 2);
        r.entry(1_100, &[]);
        assert_eq!(r.sessions.len(), 1, "client 1 idle for 100 ms of log time");
        assert!(!r.rows.contains_key(&session_key(&client(1))));
        assert!(!r.rows.contains_key(&reply_key(&client(1), 1)), "its replies go with it");
        assert!(r.rows.contains_key(&session_key(&client(2))));
        // Client 2 stays alive by writing.
        r.entry(1_140, &[(wid(2, 2, 2), put("b", "2"))]);
        r.entry(1_200, &[]);
        assert_eq!(r.sessions.len(), 1);
    }

    #[test]
    fn a_full_table_evicts_only_long_idle_sessions_and_refuses_new_clients_otherwise() {
        let limits = Limits { idle_ms: 10_000, max_sessions: 2, min_evict_idle_ms: 100, max_replies: 8 };
        let mut r = Replica::new(limits);
        r.entry(1_000, &[(wid(1, 1, 1), put("a", "1"))]);
        r.entry(1_050, &[(wid(2, 1, 1), put("b", "1"))]);
        let refused = r.entry(1_060, &[(wid(3, 1, 1), put("c", "1"))]);
        assert_eq!(refused[0].outcome, Err(Rejection::TooManyClients { limit: 2 }));
        assert_eq!(r.value("c"), None, "refused: nothing applied");
        // Client 1 has been idle 100 ms: it makes room.
        let ok = r.entry(1_100, &[(wid(3, 1, 1), put("c", "1"))]);
        assert!(ok[0].outcome.is_ok());
        assert_eq!(r.sessions.len(), 2);
        assert!(!r.rows.contains_key(&session_key(&client(1))));
    }

    #[test]
    fn a_session_keeps_at_most_max_replies_and_raises_its_floor() {
        let limits = Limits { max_replies: 3, ..Limits::DEFAULT };
        let mut r = Replica::new(limits);
        for seq in 1..=5 {
            r.entry(seq, &[(wid(1, seq, 1), put(&format!("k{seq}"), "v"))]);
        }
        let ov = Overlay::new(ShardId(0), &r.rows);
        let record: SessionRecord = ov.session(&client(1)).unwrap().unwrap();
        assert_eq!(record.seqs.iter().copied().collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(record.floor, 3);
        let replies: Vec<&Vec<u8>> = r.rows.keys().filter(|k| k.first() == Some(&REPLY)).collect();
        assert_eq!(replies, [3, 4, 5].map(|s| reply_key(&client(1), s)).iter().collect::<Vec<_>>(), "rows dropped too");
        let late = r.entry(9, &[(wid(1, 2, 1), put("k2", "v"))]);
        assert!(matches!(late[0].outcome, Err(Rejection::WriteSeqTooOld { seq: 2, floor: 3, .. })));
    }

    #[test]
    fn the_table_survives_a_reload_from_its_rows() {
        // What a snapshot carries is the rows; the index is rebuilt from them.
        let limits = Limits { idle_ms: 100, ..Limits::DEFAULT };
        let mut r = Replica::new(limits);
        let first = r.entry(1_000, &[(wid(1, 1, 1), put("a", "1"))]);
        r.entry(1_060, &[(wid(2, 1, 1), put("b", "1"))]);
        let mut copy = r.reloaded(limits);
        assert_eq!(copy.sessions.len(), 2);
        assert_eq!(copy.entry(1_070, &[(wid(1, 1, 1), put("a", "1"))]), first, "dedup after reload");
        assert_eq!(copy.value("a"), Some((Bytes::from("1"), 1)));
        copy.entry(1_100, &[]);
        assert_eq!(copy.sessions.len(), 1, "expiry order rebuilt from the rows");
        let reply = match &first[0].outcome {
            Ok(Reply::Txn(t)) => t.clone(),
            other => panic!("{other:?}"),
        };
        assert!(reply.succeeded);
    }
}
