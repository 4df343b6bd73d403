//! Every bad input is refused with a clear error naming the problem, and writes nothing.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::time::Duration;

use common::TestCluster;
use hypercache_proto::error_info::info_of;
use hypercache_proto::v1 as pb;
use hypercache_server::types::ShardId;
use tonic::Code;

fn reason(st: &tonic::Status) -> String {
    info_of(st).map(|i| i.reason).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_rejected_and_write_nothing() {
    let c = TestCluster::start(1, |cfg| cfg.limits.max_value_bytes = 1024).await;
    let l = c.wait_leader(Duration::from_secs(20)).await;
    let mut kv = c.kv(l).await;
    let applied_before = c.node(l).shards().get(ShardId(0)).unwrap().reader.applied_index();

    let put =
        |key: Vec<u8>, value: Vec<u8>| pb::PutRequest { key: key.into(), value: value.into(), ..Default::default() };
    let st = kv.put(put(vec![], b"v".to_vec())).await.unwrap_err();
    assert_eq!((st.code(), reason(&st).as_str()), (Code::InvalidArgument, "EMPTY_KEY"));
    assert!(st.message().contains("1..=4096"), "{}", st.message());

    let st = kv.put(put(vec![b'k'; 4097], b"v".to_vec())).await.unwrap_err();
    assert_eq!((st.code(), reason(&st).as_str()), (Code::InvalidArgument, "KEY_TOO_LONG"));
    assert!(st.message().contains("4097 bytes; the limit is 4096"), "{}", st.message());

    let st = kv.put(put(b"k".to_vec(), vec![0; 1025])).await.unwrap_err();
    assert_eq!((st.code(), reason(&st).as_str()), (Code::InvalidArgument, "VALUE_TOO_LARGE"));
    assert!(st.message().contains("limit is 1024 bytes"), "{}", st.message());

    // Far beyond the gRPC message limit: refused by the transport, never a panic.
    let st = kv.put(put(b"k".to_vec(), vec![0; 8 << 20])).await.unwrap_err();
    assert_eq!(st.code(), Code::OutOfRange, "{st:?}");
    assert!(st.message().contains("message length too large"), "{st:?}");

    let st = kv.put(pb::PutRequest { shard_id: 7, key: "k".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!((st.code(), reason(&st).as_str()), (Code::NotFound, "UNKNOWN_SHARD"));
    assert!(st.message().contains("unknown shard 7"), "{}", st.message());
    let st = kv.get(pb::GetRequest { shard_id: 3, key: "k".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(reason(&st), "UNKNOWN_SHARD");

    let st = kv.get(pb::GetRequest { key: vec![b'x'; 5000].into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(reason(&st), "KEY_TOO_LONG");
    let st = kv.delete(pb::DeleteRequest { key: "".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(reason(&st), "EMPTY_KEY");

    let st = kv
        .compare_and_swap(pb::CompareAndSwapRequest { key: "k".into(), new_value: "v".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument);
    assert!(st.message().contains("expected_mod_revision and/or expected_value"), "{}", st.message());
    let st = kv
        .compare_and_swap(pb::CompareAndSwapRequest {
            key: "k".into(),
            expected_mod_revision: Some(0),
            new_value: vec![0; 2000].into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&st), "VALUE_TOO_LARGE");

    let range = |prefix: &str, start: &str, end: &str, limit| pb::RangeRequest {
        prefix: prefix.to_string().into(),
        start: start.to_string().into(),
        end: end.to_string().into(),
        limit,
        ..Default::default()
    };
    let st = kv.range(range("a", "b", "", 0)).await.unwrap_err();
    assert_eq!(reason(&st), "INVALID_RANGE");
    let st = kv.range(range("", "b", "a", 0)).await.unwrap_err();
    assert_eq!(reason(&st), "INVALID_RANGE");
    let st = kv.range(range("", "", "", 10_001)).await.unwrap_err();
    assert!(st.message().contains("maximum of 10000"), "{}", st.message());

    // Nothing was written: no keys, and the log did not advance.
    let all = kv.range(range("", "", "", 0)).await.unwrap().into_inner();
    assert!(all.kvs.is_empty(), "{:?}", all.kvs);
    let applied_after = c.node(l).shards().get(ShardId(0)).unwrap().reader.applied_index();
    assert_eq!(applied_before, applied_after);
    // And the node still serves.
    c.put("k", "ok").await.unwrap();
    c.shutdown().await;
}
