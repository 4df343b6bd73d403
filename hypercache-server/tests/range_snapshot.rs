//! One page of a range is one snapshot (issue 16, defect 3): a transaction keeps writing the same
//! counter value to `{t}a` and `{t}z` while ranges over 10,000 `{t}` keys run concurrently. A
//! page that spans sled leaves must never show `a` from one transaction and `z` from another, and
//! no row in it may be newer than the revision its header reports.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestCluster;
use hypercache_proto::v1 as pb;

/// Keys between `{t}a` and `{t}z`, so one page holds the limit of 10,000 keys.
const FILLERS: usize = 9_998;
const RANGES: usize = 40;

fn put_op(key: String, value: String) -> pb::RequestOp {
    pb::RequestOp {
        op: Some(pb::request_op::Op::Put(pb::PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_page_is_one_snapshot_at_its_reported_revision() {
    let c = TestCluster::start(1, |_| {}).await;
    c.wait_leader(Duration::from_secs(30)).await;
    let mut kv = c.kv(0).await;
    let fillers: Vec<pb::RequestOp> =
        (0..FILLERS).map(|i| put_op(format!("{{t}}m{i:05}"), format!("filler-{i:05}"))).collect();
    for chunk in fillers.chunks(128) {
        kv.txn(pb::TxnRequest { success: chunk.to_vec(), ..Default::default() }).await.expect("filler txn");
    }

    let first = vec![put_op("{t}a".into(), "0".into()), put_op("{t}z".into(), "0".into())];
    kv.txn(pb::TxnRequest { success: first, ..Default::default() }).await.expect("first counter txn");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (mut kv, stop) = (kv.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let success = vec![put_op("{t}a".into(), n.to_string()), put_op("{t}z".into(), n.to_string())];
                kv.txn(pb::TxnRequest { success, ..Default::default() }).await.expect("counter txn");
            }
            n
        })
    };

    let started = Instant::now();
    let mut readers = Vec::new();
    for r in 0..2 {
        let mut kv = kv.clone();
        readers.push(tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            for i in 0..RANGES / 2 {
                let req = pb::RangeRequest { prefix: "{t}".into(), limit: 10_000, ..Default::default() };
                let page = kv.range(req).await.expect("range").into_inner();
                let revision = page.header.expect("header").revision;
                assert_eq!(page.kvs.len(), FILLERS + 2, "reader {r}, range {i}: one page holds every key");
                let (a, z) = (&page.kvs[0], &page.kvs[FILLERS + 1]);
                assert_eq!((a.key.as_ref(), z.key.as_ref()), (b"{t}a".as_ref(), b"{t}z".as_ref()));
                assert_eq!(
                    String::from_utf8_lossy(&a.value),
                    String::from_utf8_lossy(&z.value),
                    "reader {r}, range {i}: one page shows two transactions (a at revision {}, z at {})",
                    a.mod_revision,
                    z.mod_revision
                );
                let newest = page.kvs.iter().map(|kv| kv.mod_revision).max().unwrap_or(0);
                assert!(
                    newest <= revision,
                    "reader {r}, range {i}: a row at revision {newest} in a page at {revision}"
                );
                seen.insert(a.value.clone());
            }
            seen
        }));
    }
    let mut failure = None;
    let mut seen = std::collections::BTreeSet::new();
    for r in readers {
        match r.await {
            Ok(values) => seen.extend(values),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.expect("writer");
    eprintln!(
        "{RANGES} ranges of {} keys against {writes} transactions in {:?}; {} counter values seen",
        FILLERS + 2,
        started.elapsed(),
        seen.len()
    );
    if let Some(e) = failure {
        std::panic::resume_unwind(e.into_panic());
    }
    // The pages saw the counter move: the ranges really ran concurrently with the writes.
    assert!(seen.len() >= 3, "the ranges saw only {} counter values ({writes} transactions)", seen.len());
    c.shutdown().await;
}
