//! Exactly-once writes across a log truncation (issue 16, defect 2).
//!
//! openraft answers `ForwardToLeader` to every proposal whose entry is truncated from the node
//! that took it, yet another node may hold the entry and a later leader may commit it. This test
//! builds that history in a 5-voter shard with the Raft links under test control
//! (`Node::raft_links`):
//!
//! 1. A leads. A and B are cut from C, D and E; among C, D and E votes flow but appends do not,
//!    and only C may start elections (openraft's runtime switch), so C is elected and its entries
//!    reach nobody. The write W is proposed on A and reaches B only.
//! 2. C's messages reach A: A steps down and truncates W (C holds another entry at W's index);
//!    the client is told NOT_LEADER.
//! 3. A and C are isolated; B, D and E talk, and only B may start elections. B (whose log ends
//!    with W) wins, and its first entry commits W. The client retries W with the same write id.
//! 4. Everything heals.
//!
//! W must be applied once, and the client must not have been promised "not applied".
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, TestCluster};
use hypercache_proto::error_info::info_of;
use hypercache_proto::v1 as pb;
use hypercache_server::network::RaftRpc;
use hypercache_server::shard::Shard;
use hypercache_server::types::ShardId;
use openraft::ServerState;

const T: Duration = Duration::from_secs(30);

fn shard0(c: &TestCluster, i: usize) -> Option<Arc<Shard>> {
    c.nodes[i].as_ref()?.shards().get(ShardId(0))
}

fn last_log(c: &TestCluster, i: usize) -> u64 {
    shard0(c, i).and_then(|s| s.metrics().last_log_index).unwrap_or(0)
}

/// Lets only `candidates` start elections in shard 0 (the others still vote). Without this, D and
/// E would campaign over and over while cut off, and their rising terms would keep C (later B)
/// from ever winning on a loaded machine.
fn only_candidates(c: &TestCluster, candidates: &[usize]) {
    for i in 0..c.nodes.len() {
        if let Some(s) = shard0(c, i) {
            s.raft.runtime_config().elect(candidates.contains(&i));
        }
    }
}

/// Sets every node's blocked sends to what `policy(from, to)` says, in `order` (a node whose
/// set only grows goes first, so no message slips through between two nodes' updates).
fn partition(c: &TestCluster, order: &[usize], policy: impl Fn(usize, usize) -> Vec<RaftRpc>) {
    for &from in order {
        let blocked: HashSet<(String, RaftRpc)> = (0..c.nodes.len())
            .filter(|to| *to != from)
            .flat_map(|to| policy(from, to).into_iter().map(move |k| (to, k)))
            .map(|(to, k)| (c.endpoint(to), k))
            .collect();
        c.node(from).raft_links().set(blocked);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_truncated_on_its_leader_but_committed_by_another_is_applied_once() {
    let c = TestCluster::start(5, |cfg| {
        cfg.replication = 5;
        cfg.replace_down_node_after_ms = 0;
    })
    .await;
    eventually("shard 0 with five voters on every node", T, || async {
        let five = (0..5).all(|i| {
            shard0(&c, i).is_some_and(|s| s.metrics().membership_config.membership().voter_ids().count() == 5)
        });
        five.then_some(())
    })
    .await;
    c.put("warm", "up").await.expect("warm-up write");
    let a = c.wait_leader(T).await;
    eventually("every replica holds the leader's whole log", T, || async {
        let l = last_log(&c, a);
        (0..5).all(|i| last_log(&c, i) == l).then_some(())
    })
    .await;
    let others: Vec<usize> = (0..5).filter(|i| *i != a).collect();
    let (b, cc, d, e) = (others[0], others[1], others[2], others[3]);
    let minority = [a, b];
    let majority = [cc, d, e];
    let term_a = shard0(&c, a).expect("A").current_term();

    // Phase 1: {A, B} | {C, D, E}; inside the majority only votes, and only C asks for them.
    let phase1 = |from: usize, to: usize| {
        if minority.contains(&from) != minority.contains(&to) {
            RaftRpc::ALL.to_vec()
        } else if majority.contains(&from) {
            vec![RaftRpc::Append, RaftRpc::Snapshot]
        } else {
            vec![]
        }
    };
    only_candidates(&c, &[cc]);
    partition(&c, &[a, b, cc, d, e], phase1);
    let before = last_log(&c, a);
    let write = pb::WriteId { client_id: vec![7u8; 16].into(), seq: 1, first_incomplete: 1 };
    let put =
        pb::PutRequest { key: "w".into(), value: "once".into(), write: Some(write.clone()), ..Default::default() };
    let mut kv_a = c.kv(a).await;
    let first_attempt = tokio::spawn({
        let put = put.clone();
        async move { kv_a.put(put).await }
    });
    eventually("W appended on A and replicated to B only", T, || async {
        (last_log(&c, a) > before && last_log(&c, b) > before).then_some(())
    })
    .await;
    let w_index = before + 1;
    eventually("C leads a later term, its entries on no one else", T, || async {
        let m = shard0(&c, cc)?.metrics();
        (m.state == ServerState::Leader && m.current_term > term_a).then_some(())
    })
    .await;
    assert!(majority.iter().all(|&x| x == cc || last_log(&c, x) < w_index), "D and E never got W nor C's entry");

    // Phase 2: C reaches A. A steps down and truncates W; the client hears NOT_LEADER.
    partition(&c, &[a, b, cc, d, e], |from, to| {
        let a_c = (from == a && to == cc) || (from == cc && to == a);
        if a_c {
            vec![]
        } else {
            phase1(from, to)
        }
    });
    let status = tokio::time::timeout(T, first_attempt)
        .await
        .expect("the first attempt is answered once W is truncated on A")
        .expect("task")
        .expect_err("W was not committed by A");
    let info = info_of(&status).expect("error info");
    assert_eq!(info.reason, "NOT_LEADER", "{status:?}");
    let told_not_applied = info.not_applied;

    // Phase 3: A and C isolated; B, D, E connected. B wins and commits W.
    only_candidates(&c, &[]);
    partition(&c, &[a, cc, b, d, e], |from, to| {
        let isolated = [a, cc];
        if isolated.contains(&from) || isolated.contains(&to) {
            RaftRpc::ALL.to_vec()
        } else {
            vec![]
        }
    });
    only_candidates(&c, &[b]);
    eventually("B leads and has applied W", T, || async {
        let m = shard0(&c, b)?.metrics();
        let applied = m.last_applied.map_or(0, |l| l.index);
        (m.state == ServerState::Leader && applied >= w_index).then_some(())
    })
    .await;

    // The client retries W with the same write id, wherever the leader is now.
    let retry_revision = eventually("the retry of W is answered", T, || {
        let put = put.clone();
        let endpoints = c.endpoints();
        async move {
            for ep in endpoints {
                let Ok(mut kv) = pb::kv_client::KvClient::connect(format!("http://{ep}")).await else { continue };
                if let Ok(r) = kv.put(put.clone()).await {
                    return r.into_inner().header.map(|h| h.revision);
                }
            }
            None
        }
    })
    .await;

    // Phase 4: heal; every replica converges.
    for i in 0..5 {
        c.node(i).raft_links().heal();
    }
    only_candidates(&c, &[0, 1, 2, 3, 4]);
    for i in 0..5 {
        let kv = eventually("the replica has W", T, || async {
            let l = last_log(&c, b);
            let applied = shard0(&c, i)?.metrics().last_applied.map_or(0, |l| l.index);
            if applied < l {
                return None;
            }
            c.local_get(i, "w").await
        })
        .await;
        assert_eq!(
            (kv.value.as_ref(), kv.version, kv.mod_revision),
            (&b"once"[..], 1, retry_revision),
            "node {}: W applied once, and the retry answered with the original revision",
            i + 1
        );
    }
    assert!(!told_not_applied, "the client was promised 'not applied' for a write that was applied: {status:?}");
    c.shutdown().await;
}
