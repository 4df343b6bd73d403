//! Serializable (local) reads are served only by voters that have applied something: a learner
//! may be any distance behind, so it refuses with `REPLICA_NOT_SERVING` (UNAVAILABLE, not
//! applied), which clients retry on another replica (issue 16, defect 7).
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{eventually, TestCluster};
use hypercache_proto::error_info::info_of;
use hypercache_proto::v1 as pb;
use hypercache_server::types::ShardId;
use openraft::ChangeMembers;

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_learner_refuses_serializable_reads_and_voters_serve_them() {
    let c = TestCluster::start(3, |_| {}).await;
    let l = c.wait_leader(T).await;
    let f = (l + 1) % 3;
    c.put("k", "v").await.expect("put");
    eventually("the follower applied the write", T, || async { c.local_get(f, "k").await }).await;

    // Demote the follower to a learner (it keeps replicating).
    let shard = c.node(l).shards().get(ShardId(0)).expect("leader hosts shard 0");
    let f_id = f as u64 + 1;
    shard
        .raft
        .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([f_id])), true)
        .await
        .expect("demote the follower to a learner");

    let read = pb::GetRequest { key: "k".into(), serializable: true, ..Default::default() };
    let status =
        eventually("the learner refuses local reads", T, || async { c.kv(f).await.get(read.clone()).await.err() })
            .await;
    let info = info_of(&status).expect("an ErrorInfo");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!((info.reason.as_str(), info.not_applied), ("REPLICA_NOT_SERVING", true), "{status:?}");
    assert!(status.message().contains("not a voter"), "{}", status.message());

    // The leader (a voter that applied the write) still serves them.
    let kv = c.kv(l).await.get(read).await.expect("the leader serves local reads").into_inner().kv;
    assert_eq!(kv.expect("the key").value, "v");
    c.shutdown().await;
}
