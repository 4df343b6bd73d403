//! A frozen node must not stall `hcctl` (issue 16, defect 7): the binary, with its default
//! attempt timeout, gives up on a frozen first endpoint after one attempt timeout, not at the
//! deadline. The frozen node is simulated as in the client's own test of the same contract
//! (`hypercache-client/tests/frozen_endpoint.rs`): connects succeed, requests are sent, nothing
//! answers.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

// The client's fake servers, shared rather than copied: one definition of each fake.
#[path = "../../hypercache-client/tests/common/mod.rs"]
mod common;

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{frozen, serve, Behaviour, Fake};
use hypercache_client::ClientConfig;

/// Scheduling noise allowed on a shared 2-core machine.
const MARGIN: Duration = Duration::from_millis(700);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hcctl_put_with_the_first_endpoint_frozen_answers_promptly() {
    let (_frozen, frozen_addr) = frozen();
    let good = Fake::new(Behaviour::Serve);
    let good_addr = serve(good.clone()).await;
    // hcctl's defaults: a 5 s deadline, a 1 s attempt timeout.
    let started = Instant::now();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hcctl"))
        .args(["--endpoints", &format!("{frozen_addr},{good_addr}"), "--timeout-ms", "5000", "put", "k", "v"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("run hcctl");
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let attempt = ClientConfig::default().attempt_timeout;
    assert!(took < attempt * 2 + MARGIN, "hcctl put took {took:?} with the default attempt timeout {attempt:?}");
    assert_eq!(good.puts.load(Ordering::SeqCst), 1);
}
