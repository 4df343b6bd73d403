//! Discovery-driven formation and membership changes, in process: nodes advertise DNS names
//! (`localhost:<port>`), find each other through a `static://` discovery list, bootstrap with
//! `bootstrap_expect`, join as learners, get promoted, and leave only by decommission.
//! (The same flows with real DNS, containers and changing IPs: `jepsen/tests/discovery.rs`.)
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::time::Duration;

use common::eventually;
use hypercache_proto::error_info::info_of;
use hypercache_proto::v1::cluster_client::ClusterClient;
use hypercache_proto::v1::{self as pb};
use hypercache_proto::Reason;
use hypercache_server::config::Config;
use hypercache_server::node::Node;
use tempfile::TempDir;
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(20);

struct Nodes {
    _root: TempDir,
    configs: Vec<Config>,
    listeners: Vec<Option<(TcpListener, TcpListener)>>,
    nodes: Vec<Option<Node>>,
}

impl Nodes {
    /// Prepares `n` node configs that all discover each other; starts none.
    async fn prepare(n: usize, expect: usize) -> Nodes {
        let root = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        for _ in 0..n {
            let g = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listeners.push(Some((g, a)));
        }
        let names: Vec<String> = listeners
            .iter()
            .map(|l| format!("localhost:{}", l.as_ref().unwrap().0.local_addr().unwrap().port()))
            .collect();
        let discovery = format!("static://{}", names.join(","));
        let configs = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let (g, a) = l.as_ref().unwrap();
                let mut c = Config {
                    node_id: i as u64 + 1,
                    name: format!("hc-{i}"),
                    data_dir: root.path().join(format!("hc-{i}")),
                    listen_addr: g.local_addr().unwrap(),
                    advertise_addr: names[i].clone(),
                    admin_addr: a.local_addr().unwrap(),
                    discovery: discovery.clone(),
                    bootstrap_expect: expect,
                    ..Config::default()
                };
                c.storage.cache_capacity_mb = 8;
                c.shutdown_grace_ms = 5_000;
                c.validate().expect("valid config");
                c
            })
            .collect();
        Nodes { _root: root, configs, nodes: (0..n).map(|_| None).collect(), listeners }
    }

    async fn start(&mut self, i: usize) {
        let (g, a) = self.listeners[i].take().expect("not started before");
        self.nodes[i] = Some(Node::start_on(self.configs[i].clone(), g, a).await.expect("node starts"));
    }

    async fn client(&self, i: usize) -> ClusterClient<tonic::transport::Channel> {
        ClusterClient::connect(format!("http://{}", self.configs[i].advertise_addr)).await.unwrap()
    }

    async fn status(&self, i: usize) -> pb::StatusResponse {
        self.client(i).await.status(pb::StatusRequest {}).await.unwrap().into_inner()
    }

    /// Voter names as node `i` sees them, once it knows a leader.
    async fn voters(&self, i: usize) -> Option<Vec<String>> {
        let s = self.status(i).await;
        if s.leader_id == 0 {
            return None;
        }
        let mut v: Vec<String> = s.members.into_iter().filter(|m| m.voter).map(|m| m.name).collect();
        v.sort();
        Some(v)
    }

    /// Index of the node that leads, as node `i` sees it.
    async fn leader(&self, i: usize) -> usize {
        eventually("a leader", WAIT, || async {
            let s = self.status(i).await;
            (s.leader_id != 0).then(|| s.leader_id as usize - 1)
        })
        .await
    }

    async fn shutdown(mut self) {
        for n in self.nodes.iter_mut() {
            if let Some(node) = n.take() {
                node.shutdown().await.unwrap();
            }
        }
    }
}

fn names(ids: &[usize]) -> Vec<String> {
    ids.iter().map(|i| format!("hc-{i}")).collect()
}

fn reason(status: &tonic::Status) -> String {
    info_of(status).map(|i| i.reason).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_bootstrap_from_discovery_join_as_learners_and_leave_only_by_decommission() {
    let mut c = Nodes::prepare(4, 3).await;
    // Two of three: nobody initializes.
    c.start(1).await;
    c.start(2).await;
    // A negative check: let both run several discovery rounds, each of which could (wrongly) act.
    eventually("3 discovery rounds on each", WAIT, || async {
        let rounds = |i: usize| c.nodes[i].as_ref().unwrap().metrics().discovery_rounds.get();
        (rounds(1) >= 3 && rounds(2) >= 3).then_some(())
    })
    .await;
    assert_eq!(c.status(1).await.term, 0, "two visible nodes of three must not initialize");
    assert!(c.status(2).await.members.is_empty());
    // The third arrives; the lowest id (node 1, hc-0) initializes with exactly the three.
    c.start(0).await;
    let voters = eventually("3 voters", WAIT, || async { c.voters(1).await.filter(|v| *v == names(&[0, 1, 2])) }).await;
    assert_eq!(voters, names(&[0, 1, 2]));
    let members = c.status(0).await.members;
    assert!(members.iter().all(|m| m.endpoint.starts_with("localhost:")), "names, never IPs: {members:?}");

    // A fourth node finds the cluster, joins as a learner and is promoted once caught up.
    c.start(3).await;
    eventually("hc-3 promoted to voter", WAIT, || async { c.voters(0).await.filter(|v| *v == names(&[0, 1, 2, 3])) })
        .await;

    // Refusals name the problem and change nothing.
    let l = c.leader(0).await;
    let mut leader = c.client(l).await;
    let conflict = |id: u64, name: &str, endpoint: &str| pb::JoinRequest {
        node_id: id,
        name: name.to_string(),
        endpoint: endpoint.to_string(),
        incarnation: 12345,
    };
    let ep1 = c.configs[1].advertise_addr.clone();
    // A join that claims a new incarnation for a live member is checked against what the node
    // itself reports, and refused: replacing its entry would cut a healthy node off.
    let e = leader.join(conflict(2, "hc-1", &ep1)).await.unwrap_err();
    assert_eq!(reason(&e), "INCARNATION_MISMATCH", "{e:?}");
    assert!(e.message().contains("0000000000003039"), "{}", e.message());
    let e = leader.join(pb::JoinRequest { incarnation: 0, ..conflict(2, "hc-1", &ep1) }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("incarnation"), "{}", e.message());
    let e = leader.join(conflict(9, "hc-1", &ep1)).await.unwrap_err();
    assert_eq!(reason(&e), "MEMBER_CONFLICT", "{e:?}");
    let e = leader.join(conflict(9, "hc-9", "10.0.0.9:7000")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("DNS names"), "{}", e.message());
    let e = leader.decommission(pb::DecommissionRequest { name: "hc-9".into() }).await.unwrap_err();
    assert_eq!((e.code(), reason(&e)), (tonic::Code::NotFound, "UNKNOWN_NODE".to_string()), "{e:?}");
    // A follower redirects to the leader.
    let f = (l + 1) % 4;
    let e = c.client(f).await.decommission(pb::DecommissionRequest { name: "hc-3".into() }).await.unwrap_err();
    assert_eq!(reason(&e), "NOT_LEADER", "{e:?}");

    // Stopping a node does not remove it.
    let stopped = if l == 3 { 2 } else { 3 };
    c.nodes[stopped].take().unwrap().shutdown().await.unwrap();
    eventually("the others still count 4 voters", WAIT, || async { c.voters(l).await.filter(|v| v.len() == 4) }).await;

    // Decommission moves its replicas to the others, then removes it for good.
    let started =
        leader.decommission(pb::DecommissionRequest { name: format!("hc-{stopped}") }).await.unwrap().into_inner();
    assert_eq!(started.node_id, stopped as u64 + 1);
    let members = eventually("the decommissioned node leaves", Duration::from_secs(30), || async {
        Some(c.status(l).await.members).filter(|m| m.len() == 3)
    })
    .await;
    assert!(members.iter().all(|m| m.voter && m.name != format!("hc-{stopped}")), "{members:?}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_voter_cannot_be_decommissioned() {
    let mut c = Nodes::prepare(1, 1).await;
    c.start(0).await;
    eventually("1 voter", WAIT, || async { c.voters(0).await.filter(|v| *v == names(&[0])) }).await;
    let e = c.client(0).await.decommission(pb::DecommissionRequest { name: "hc-0".into() }).await.unwrap_err();
    assert_eq!(reason(&e), "LAST_VOTER", "{e:?}");
    assert!(c.voters(0).await.is_some_and(|v| v == names(&[0])));
    c.shutdown().await;
}

/// A StatefulSet scaled down and up again: a decommissioned node comes back under the same id on
/// an empty volume (a new incarnation) and joins. It must stay a member. The placement driver
/// remembered the decommission by node id alone, so when the node came back before a driver
/// round had seen it gone, the driver took the new node for the one it was draining and removed
/// it again as soon as it held nothing (found by the chaos suite's churn nemesis: the node never
/// became ready again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decommissioned_node_that_comes_back_on_an_empty_volume_stays() {
    let mut c = Nodes::prepare(4, 3).await;
    for i in 0..4 {
        c.start(i).await;
    }
    eventually("4 voters", WAIT, || async { c.voters(0).await.filter(|v| *v == names(&[0, 1, 2, 3])) }).await;
    let l = c.leader(0).await;
    let gone = if l == 3 { 2 } else { 3 };
    let name = format!("hc-{gone}");
    // The placement driver may be writing the placement just then (the 4th node's join): the
    // decommission is refused with MEMBERSHIP_BUSY, nothing changed, and an operator retries.
    eventually("the decommission is accepted", WAIT, || async {
        match c.client(l).await.decommission(pb::DecommissionRequest { name: name.clone() }).await {
            Ok(_) => Some(()),
            Err(e) if reason(&e) == Reason::MembershipBusy.as_str() => None,
            Err(e) => panic!("decommission {name}: {e:?}"),
        }
    })
    .await;
    eventually("the decommissioned node leaves", Duration::from_secs(30), || async {
        let members = c.status(l).await.members;
        (!members.iter().any(|m| m.name == name)).then_some(())
    })
    .await;
    // At once, as a pod recreated on a new volume: same id, same name, same address.
    c.nodes[gone].take().unwrap().shutdown().await.unwrap();
    std::fs::remove_dir_all(&c.configs[gone].data_dir).unwrap();
    let g = TcpListener::bind(c.configs[gone].listen_addr).await.unwrap();
    let a = TcpListener::bind(c.configs[gone].admin_addr).await.unwrap();
    c.nodes[gone] = Some(Node::start_on(c.configs[gone].clone(), g, a).await.expect("node starts again"));
    eventually("it is a voter again", WAIT, || async {
        c.voters(l).await.filter(|v| v.contains(&name) && v.len() == 4)
    })
    .await;
    // And it stays one through several driver rounds: checked at every poll, so a
    // removal at any point in those 5 s fails the test (before the fix it came within 1 s).
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let voters = c.voters(l).await.unwrap_or_default();
        assert!(voters.contains(&name), "{name} was removed again: voters {voters:?}");
    }
    c.shutdown().await;
}
