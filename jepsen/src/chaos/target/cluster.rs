//! A chaos run's cluster. The `local` target: one `hypercache serve` process per node on
//! loopback, each with its own gRPC and admin port, data directory and log file, all peers
//! listed statically (as `hypercache dev` and `hypercache-server/tests/process.rs` do). The
//! `docker` target ([`ClusterSpec::docker`]): one container per node, found by DNS name
//! (`docker.rs`); everything below holds for both but the proxies. A node is restarted with
//! exactly the command line it was first started with, so it keeps its identity and data.
//!
//! Faults act on the processes: SIGKILL (no shutdown path runs), SIGSTOP / SIGCONT, and a wipe
//! (SIGKILL, then the data directory deleted: a lost volume; the restart keeps the node id). A
//! [`Probe`] tells, without holding the cluster, whether a wiped node has caught up again.
//!
//! With `spares`, that many more node slots are prepared but not started ([`NodeState::Spare`]):
//! the churn nemesis starts one (it joins the running cluster through `Cluster.Join`, as a new
//! pod of a scaled-up StatefulSet does) and retires a decommissioned member into a spare again
//! (SIGKILL, data directory deleted). A spare's peers list names the first nodes and itself; the
//! first nodes' lists name only the first nodes, so bootstrap never waits for a spare.
//! Children are spawned with `kill_on_drop`, so a run that panics leaves no node behind.
//!
//! With `proxied`, each node advertises the address of its [`Proxies`] proxy instead of its own
//! port, so peers and clients reach it through the proxy and the partition nemesis can cut
//! links between nodes.
//!
//! With `disks` ([`ClusterSpec`]), each node's data directory is on its own loop-mounted ext4
//! image (`disk.rs`), so that [`Cluster::power_cut`] can lose what a node did not fsync.
//!
//! With a [`Faketime`], every node runs under libfaketime (`LD_PRELOAD`, the thread-safe
//! `libfaketimeMT.so.1`), reading its clock offset from its own file `n<id>.faketime` (next to
//! its log, so a wipe keeps it) on every clock read (`FAKETIME_NO_CACHE=1`: a change is seen at
//! once; measured cost ~4 us per `clock_gettime` instead of ~20 ns). libfaketime shifts
//! `CLOCK_REALTIME` and, unless `wall_only`, `CLOCK_MONOTONIC` too (which tokio's timers and
//! openraft's election and lease timers read). [`Cluster::set_clock`] changes a node's
//! offset; the file is replaced by a rename, so a node never reads half a write.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hypercache_client::{Client, ClientConfig};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::disk::Disk;
use super::docker::{self as containers, Containers};
use super::proxy::Proxies;
use super::TargetError;

/// A node's lifecycle as the nemesis sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Running,
    Paused,
    Killed,
    /// Not a member: never started, or decommissioned and retired (killed, data deleted). Only
    /// the churn nemesis starts it; no heal does.
    Spare,
}

pub struct ClusterNode {
    /// Raft node id (1-based).
    pub id: u64,
    /// Its name in the membership (`n<id>`), as `hcctl node decommission` takes it.
    pub name: String,
    pub endpoint: String,
    admin: String,
    args: Vec<String>,
    log: PathBuf,
    /// The libfaketime offset file, when the cluster runs under a [`Faketime`].
    clock_file: Option<PathBuf>,
    /// The offset last written to `clock_file`.
    pub clock_offset: ClockOffset,
    child: Option<Child>,
    pub state: NodeState,
}

pub struct Cluster {
    exe: PathBuf,
    /// The planned member count (`--nodes`); `nodes` also holds the spare slots.
    size: usize,
    pub nodes: Vec<ClusterNode>,
    proxies: Option<Proxies>,
    /// The `docker` target's containers (nodes are processes here when `None`).
    containers: Option<Containers>,
    faketime: Option<Faketime>,
    /// Each slot's own filesystem, for power cuts (`disk.rs`).
    disks: Option<Vec<Disk>>,
}

/// What a [`Cluster`] is made of.
#[derive(Debug, Clone, Default)]
pub struct ClusterSpec {
    /// Members at the start.
    pub nodes: usize,
    /// Slots prepared but not started (the churn nemesis').
    pub spares: usize,
    pub shards: u32,
    /// Behind per-node proxies (the partition nemesis').
    pub proxied: bool,
    /// Under libfaketime (the clock nemesis').
    pub faketime: Option<Faketime>,
    /// Each node's data on its own loop-mounted filesystem (the power nemesis').
    pub disks: bool,
    /// One container per node, addressed by name (`docker.rs`); partitions by iptables, so no
    /// proxies.
    pub docker: bool,
}

/// How nodes run under libfaketime (the `clock` nemesis).
#[derive(Debug, Clone)]
pub struct Faketime {
    /// The preloaded library.
    pub library: PathBuf,
    /// Fake `CLOCK_REALTIME` only (`FAKETIME_DONT_FAKE_MONOTONIC=1`).
    pub wall_only: bool,
}

/// Where Debian's `libfaketime` package puts the thread-safe library, per architecture.
const FAKETIME_PATHS: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
];

impl Faketime {
    /// `HCJ_LIBFAKETIME` if set, else Debian's path; `HCJ_FAKETIME_WALL_ONLY=1` keeps the
    /// monotonic clock real.
    pub fn locate() -> Result<Faketime, TargetError> {
        let wall_only = std::env::var("HCJ_FAKETIME_WALL_ONLY").is_ok_and(|v| v == "1");
        let (library, looked) = match std::env::var_os("HCJ_LIBFAKETIME") {
            Some(path) => (PathBuf::from(&path), PathBuf::from(path).display().to_string()),
            None => (
                FAKETIME_PATHS.iter().map(PathBuf::from).find(|p| p.is_file()).unwrap_or_default(),
                FAKETIME_PATHS.join(", "),
            ),
        };
        if library.is_file() {
            Ok(Faketime { library, wall_only })
        } else {
            Err(TargetError::Io(format!(
                "the clock nemesis needs libfaketime, not found at {looked}: install Debian's `faketime` package \
                 (`apt-get install faketime`), or set HCJ_LIBFAKETIME to its libfaketimeMT.so.1"
            )))
        }
    }
}

/// `n` distinct free loopback ports. Every listener is held until all are bound: releasing each
/// at once let the kernel hand the same port out twice (seen: a node's admin and gRPC ports
/// equal, so it refused to start and the run ended `valid: unknown`). Another process can still
/// take a port between the release and the node's bind, which a test cluster accepts (the node
/// then fails to start, and readiness says so).
fn free_ports(n: usize) -> Result<Vec<u16>, TargetError> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| TargetError::Io(format!("free port: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(|e| TargetError::Io(format!("free port: {e}"))))
        .collect()
}

impl Cluster {
    /// Starts the cluster `spec` describes under `dir` (see the module essay).
    pub async fn start(exe: &Path, dir: &Path, spec: ClusterSpec) -> Result<Cluster, TargetError> {
        let ClusterSpec { nodes: count, spares, shards, proxied, faketime, disks, docker } = spec;
        std::fs::create_dir_all(dir).map_err(|e| TargetError::Io(format!("creating {}: {e}", dir.display())))?;
        if docker {
            return Cluster::start_containers(exe, dir, count, spares, shards, faketime, disks).await;
        }
        let proxies = proxied.then(Proxies::default);
        let mut own_disks = Vec::new();
        if disks {
            for i in 0..count + spares {
                own_disks.push(Disk::create(dir, &format!("n{}", i + 1)).await?);
            }
        }
        let data_dir = |i: usize| match own_disks.get(i) {
            Some(disk) => disk.root().join("data"),
            None => dir.join(format!("n{}", i + 1)),
        };
        // (listen, advertised, admin) per node.
        let mut addrs = Vec::new();
        let ports = free_ports(2 * (count + spares))?;
        for (i, pair) in ports.chunks_exact(2).enumerate() {
            let listen = format!("127.0.0.1:{}", pair[0]);
            let advertised = match &proxies {
                Some(p) => {
                    let upstream = listen.parse().map_err(|e| TargetError::Io(format!("{listen}: {e}")))?;
                    p.start(i as u64 + 1, upstream).await?.to_string()
                }
                None => listen.clone(),
            };
            addrs.push((listen, advertised, format!("127.0.0.1:{}", pair[1])));
        }
        let peers: Vec<String> = addrs.iter().enumerate().map(|(i, (_, a, _))| format!("{}={a}", i + 1)).collect();
        let first = &peers[..count];
        let nodes = addrs
            .into_iter()
            .enumerate()
            .map(|(i, (listen, endpoint, admin))| {
                let id = i as u64 + 1;
                let spare = i >= count;
                let mut peers = first.to_vec();
                if spare {
                    peers.push(format!("{id}={endpoint}"));
                }
                let args = vec![
                    "serve".into(),
                    "--node-id".into(),
                    id.to_string(),
                    "--name".into(),
                    format!("n{id}"),
                    "--data-dir".into(),
                    data_dir(i).display().to_string(),
                    "--listen".into(),
                    listen,
                    "--advertise".into(),
                    endpoint.clone(),
                    "--admin".into(),
                    admin.clone(),
                    "--peers".into(),
                    peers.join(","),
                    "--shards".into(),
                    shards.to_string(),
                    "--replication".into(),
                    count.min(3).to_string(),
                ];
                let log = dir.join(format!("n{id}.log"));
                let clock_file = faketime.as_ref().map(|_| dir.join(format!("n{id}.faketime")));
                ClusterNode {
                    id,
                    name: format!("n{id}"),
                    endpoint,
                    admin,
                    args,
                    log,
                    clock_file,
                    clock_offset: ClockOffset::ZERO,
                    child: None,
                    state: if spare { NodeState::Spare } else { NodeState::Killed },
                }
            })
            .collect();
        let disks = (!own_disks.is_empty()).then_some(own_disks);
        let mut cluster =
            Cluster { exe: exe.to_path_buf(), size: count, nodes, proxies, containers: None, faketime, disks };
        cluster.start_all(count + spares).await?;
        Ok(cluster)
    }

    /// The `docker` target's cluster: node `i` is container `hypercache-<i>` with data in
    /// `dir/n<i + 1>` (or on its own disk), found by name (see `docker.rs`).
    async fn start_containers(
        exe: &Path,
        dir: &Path,
        count: usize,
        spares: usize,
        shards: u32,
        faketime: Option<Faketime>,
        disks: bool,
    ) -> Result<Cluster, TargetError> {
        // Bind-mounted at the same path in every container: it must be absolute.
        let dir = &std::path::absolute(dir).map_err(|e| TargetError::Io(format!("{}: {e}", dir.display())))?;
        let mut own_disks = Vec::new();
        if disks {
            for i in 0..count + spares {
                own_disks.push(Disk::create(dir, &format!("n{}", i + 1)).await?);
            }
        }
        let containers = Containers::create(exe, dir, faketime.as_ref().map(|f| f.library.as_path())).await?;
        let nodes = (0..count + spares)
            .map(|i| {
                let id = i as u64 + 1;
                let host = containers::hostname(id);
                let data_dir = match own_disks.get(i) {
                    Some(disk) => disk.root().join("data"),
                    None => dir.join(format!("n{id}")),
                };
                ClusterNode {
                    id,
                    name: host.clone(),
                    endpoint: format!("{host}:{}", containers::GRPC_PORT),
                    admin: format!("{host}:{}", containers::ADMIN_PORT),
                    args: Containers::args(&data_dir, count, shards),
                    log: dir.join(format!("n{id}.log")),
                    clock_file: faketime.as_ref().map(|_| dir.join(format!("n{id}.faketime"))),
                    clock_offset: ClockOffset::ZERO,
                    child: None,
                    state: if i >= count { NodeState::Spare } else { NodeState::Killed },
                }
            })
            .collect();
        let disks = (!own_disks.is_empty()).then_some(own_disks);
        let mut cluster = Cluster {
            exe: exe.to_path_buf(),
            size: count,
            nodes,
            proxies: None,
            containers: Some(containers),
            faketime,
            disks,
        };
        cluster.start_all(count + spares).await?;
        Ok(cluster)
    }

    /// Sets every slot's clock file (under libfaketime) and starts the members.
    async fn start_all(&mut self, slots: usize) -> Result<(), TargetError> {
        let cluster = self;
        for i in 0..slots {
            if cluster.faketime.is_some() {
                cluster.set_clock(i, ClockOffset::ZERO).await?;
            }
            if i < cluster.size {
                cluster.restart(i).await?;
            }
        }
        Ok(())
    }

    /// The planned member count (without spares).
    pub fn size(&self) -> usize {
        self.size
    }

    /// The slots of the current members (every node not [`NodeState::Spare`]), in slot order.
    pub fn members(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].state != NodeState::Spare).collect()
    }

    /// A decommissioned node out of the cluster: SIGKILL, data directory deleted, back to
    /// [`NodeState::Spare`] (a later [`Cluster::restart`] joins it as a new node).
    pub async fn retire(&mut self, i: usize) -> Result<(), TargetError> {
        let wiped = self.wipe(i).await;
        self.nodes[i].state = NodeState::Spare;
        wiped
    }

    /// Replaces the set of cut directed links `(from, to)` (node ids): through the proxies, or
    /// iptables in the containers; an error for a local cluster started without proxies.
    pub async fn set_cut(&mut self, cut: std::collections::HashSet<(u64, u64)>) -> Result<(), TargetError> {
        match (&mut self.containers, &self.proxies) {
            (Some(containers), _) => containers.set_cut(cut).await,
            (None, Some(proxies)) => {
                proxies.set_cut(cut);
                Ok(())
            }
            (None, None) => Err(TargetError::Io("the cluster was started without proxies".into())),
        }
    }

    /// True while any link is cut.
    pub fn any_cut(&self) -> bool {
        match (&self.containers, &self.proxies) {
            (Some(containers), _) => containers.any_cut(),
            (None, Some(proxies)) => proxies.any_cut(),
            (None, None) => false,
        }
    }

    /// The addresses clients use (the proxies' when proxied).
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.endpoint.clone()).collect()
    }

    /// The environment of a node: its log filter, and libfaketime's when under it.
    fn env(&self, i: usize) -> Vec<(String, String)> {
        let mut env = vec![("RUST_LOG".to_string(), std::env::var("HCJ_NODE_LOG").unwrap_or_else(|_| "info".into()))];
        if let (Some(faketime), Some(file)) = (&self.faketime, &self.nodes[i].clock_file) {
            env.push(("LD_PRELOAD".into(), faketime.library.display().to_string()));
            env.push(("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()));
            env.push(("FAKETIME_NO_CACHE".into(), "1".into()));
            if faketime.wall_only {
                env.push(("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()));
            }
        }
        env
    }

    /// (Re)starts node `i` (0-based) with its original command line.
    pub async fn restart(&mut self, i: usize) -> Result<(), TargetError> {
        let env = self.env(i);
        if let Some(containers) = &mut self.containers {
            let node = &mut self.nodes[i];
            containers.start(node.id, &node.args, &env, &node.log).await?;
            node.state = NodeState::Running;
            return Ok(());
        }
        let node = &mut self.nodes[i];
        let err = |m: String| TargetError::Node { node: node.id, message: m };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|e| err(format!("opening {}: {e}", node.log.display())))?;
        let log2 = log.try_clone().map_err(|e| err(e.to_string()))?;
        let mut command = Command::new(&self.exe);
        command
            .args(&node.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .envs(env)
            // Ours, not the node's: its strict config reads every HYPERCACHE_* variable.
            .env_remove("HYPERCACHE_BIN")
            .kill_on_drop(true);
        let child = command.spawn().map_err(|e| err(format!("starting {}: {e}", self.exe.display())))?;
        if let (Some(proxies), Some(pid)) = (&self.proxies, child.id()) {
            proxies.set_pid(node.id, pid);
            proxies.set_up(node.id, true);
        }
        node.child = Some(child);
        node.state = NodeState::Running;
        Ok(())
    }

    /// Whether the nodes' monotonic clocks are faked too (then an offset must never decrease
    /// while a node runs: see `nemesis/clock.rs`); `None` without libfaketime.
    pub fn fakes_monotonic(&self) -> Option<bool> {
        self.faketime.as_ref().map(|f| !f.wall_only)
    }

    /// Sets node `i`'s clock offset (it reads it on its next clock read); an error for a cluster
    /// not started under libfaketime.
    pub async fn set_clock(&mut self, i: usize, offset: ClockOffset) -> Result<(), TargetError> {
        let node = &mut self.nodes[i];
        let err = |m: String| TargetError::Node { node: node.id, message: m };
        let Some(file) = &node.clock_file else {
            return Err(err("the cluster was started without libfaketime".into()));
        };
        let tmp = file.with_extension("faketime.new");
        tokio::fs::write(&tmp, format!("{}\n", offset.spec()))
            .await
            .map_err(|e| err(format!("writing {}: {e}", tmp.display())))?;
        tokio::fs::rename(&tmp, file).await.map_err(|e| err(format!("renaming to {}: {e}", file.display())))?;
        node.clock_offset = offset;
        Ok(())
    }

    /// SIGKILL node `i`, reap it and delete its data directory, as when a pod comes back on an
    /// empty volume; [`Cluster::restart`] then starts it with the same node id.
    pub async fn wipe(&mut self, i: usize) -> Result<(), TargetError> {
        self.kill(i).await?;
        let node = &self.nodes[i];
        let at = node.args.iter().position(|a| a == "--data-dir").map(|at| at + 1);
        let Some(dir) = at.and_then(|at| node.args.get(at)) else {
            return Err(TargetError::Node { node: node.id, message: "no --data-dir in its command line".into() });
        };
        // As the machine sees it: a node's disk is mounted there, not in hcjepsen's namespace.
        match tokio::fs::remove_dir_all(super::mountns::machine_path(Path::new(dir))).await {
            Ok(()) => Ok(()),
            // Killed before it created it: as empty as a wiped one.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(TargetError::Node { node: node.id, message: format!("deleting {dir}: {e}") }),
        }
    }

    /// The addresses a [`Probe`] asks, detached from the cluster (the nemesis keeps `&mut` to it).
    pub fn probe(&self) -> Result<Probe, TargetError> {
        let client = self.client()?;
        let nodes = self.nodes.iter().map(|n| (n.id, n.endpoint.clone(), n.admin.clone())).collect();
        Ok(Probe { nodes, client, replication: self.size.min(3) })
    }

    /// A power cut of `nodes` (0-based): they are stopped first, every thread (SIGSTOP, also to a
    /// container's node process from the host), so nothing they do after the cut's instant can be
    /// observed; then their filesystems stop taking writes (what was not fsynced by then is
    /// lost); then they are SIGKILLed, and their filesystems mounted again as after a reboot.
    /// [`Cluster::restart`] brings them back. An error for a cluster started without disks.
    ///
    /// Why stopped first (`disk.rs`): an `fdatasync` in flight when the filesystem is shut down
    /// can return success for data the remount does not have. Before, the nodes ran on for a few
    /// milliseconds after their cut (they are killed one after another) and acknowledged such
    /// writes: the chaos suite reported acknowledged adds lost after whole-cluster power cuts
    /// (2 runs of 42 of `--workload set --nemesis power --time-limit 12 --seed 0 --workers 8`,
    /// openraft 0.10 build, 2026-12-07), a loss no stored byte explained.
    pub async fn power_cut(&mut self, nodes: &[usize]) -> Result<(), TargetError> {
        let Some(disks) = &self.disks else {
            return Err(TargetError::Io("the cluster was started without its own disks (ClusterSpec::disks)".into()));
        };
        let mut errors = Vec::new();
        let mut pids = Vec::new();
        for &i in nodes {
            let node = &self.nodes[i];
            let pid = match &self.containers {
                // The container's init is the node binary; SIGSTOP from the host, not `docker
                // pause`, which would make the SIGKILL below a conflict for Docker.
                Some(containers) => containers.pid(node.id),
                None => node.child.as_ref().and_then(|c| c.id()),
            };
            let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else { continue };
            match kill(Pid::from_raw(pid), Signal::SIGSTOP) {
                Ok(()) => pids.push(pid),
                Err(e) => errors.push(format!("node {}: SIGSTOP before the cut: {e}", node.id)),
            }
        }
        if let Err(e) = super::disk::wait_stopped(|| pids.clone(), Duration::from_secs(5)).await {
            errors.push(e.to_string());
        }
        for &i in nodes {
            if let Err(e) = disks[i].cut() {
                errors.push(e.to_string());
            }
        }
        for &i in nodes {
            if let Err(e) = self.kill(i).await {
                errors.push(e.to_string());
            }
        }
        if let Some(disks) = &mut self.disks {
            for &i in nodes {
                if let Err(e) = disks[i].remount().await {
                    errors.push(e.to_string());
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(TargetError::Io(errors.join("; ")))
        }
    }

    /// SIGKILL node `i` and reap it.
    pub async fn kill(&mut self, i: usize) -> Result<(), TargetError> {
        let node = &mut self.nodes[i];
        if let Some(containers) = &mut self.containers {
            containers.kill(node.id, &node.log).await?;
            node.state = NodeState::Killed;
            return Ok(());
        }
        if let Some(mut child) = node.child.take() {
            child.start_kill().map_err(|e| TargetError::Node { node: node.id, message: format!("SIGKILL: {e}") })?;
            let _ = child.wait().await;
        }
        if let Some(proxies) = &self.proxies {
            // Its address refuses connections now, as its own port does.
            proxies.set_up(node.id, false);
        }
        node.state = NodeState::Killed;
        Ok(())
    }

    fn signal(&mut self, i: usize, signal: Signal, state: NodeState) -> Result<(), TargetError> {
        let node = &mut self.nodes[i];
        let Some(pid) = node.child.as_ref().and_then(|c| c.id()) else {
            return Err(TargetError::Node { node: node.id, message: format!("{signal}: not running") });
        };
        let pid =
            i32::try_from(pid).map_err(|_| TargetError::Node { node: node.id, message: "pid out of range".into() })?;
        kill(Pid::from_raw(pid), signal)
            .map_err(|e| TargetError::Node { node: node.id, message: format!("{signal}: {e}") })?;
        node.state = state;
        Ok(())
    }

    /// SIGSTOP node `i` (a container: the cgroup freezer, which stops every thread at once).
    pub async fn pause(&mut self, i: usize) -> Result<(), TargetError> {
        self.freeze(i, true).await
    }

    pub async fn resume(&mut self, i: usize) -> Result<(), TargetError> {
        self.freeze(i, false).await
    }

    async fn freeze(&mut self, i: usize, frozen: bool) -> Result<(), TargetError> {
        let state = if frozen { NodeState::Paused } else { NodeState::Running };
        let Some(containers) = &self.containers else {
            return self.signal(i, if frozen { Signal::SIGSTOP } else { Signal::SIGCONT }, state);
        };
        containers.freeze(self.nodes[i].id, frozen).await?;
        self.nodes[i].state = state;
        Ok(())
    }

    /// A client of every node slot's address (the nemesis' own, not a workload's).
    pub fn client(&self) -> Result<Client, TargetError> {
        Client::new(ClientConfig::new(self.endpoints())).map_err(|e| TargetError::Io(format!("a client: {e}")))
    }

    /// Waits until every running node answers `/readyz` with 200 (not shutting down, every
    /// shard it hosts knows a leader and has caught up); returns how long that took.
    pub async fn wait_ready(&self, within: Duration) -> Result<Duration, TargetError> {
        let start = Instant::now();
        loop {
            let mut not_ready = Vec::new();
            for node in self.nodes.iter().filter(|n| n.state == NodeState::Running) {
                if !ready(&node.admin).await {
                    not_ready.push(node.id);
                }
            }
            if not_ready.is_empty() {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= within {
                let logs: Vec<String> =
                    not_ready.iter().map(|id| self.nodes[(*id - 1) as usize].log.display().to_string()).collect();
                return Err(TargetError::NotReady {
                    secs: within.as_secs(),
                    detail: format!("nodes {not_ready:?} not ready; logs: {}", logs.join(" ")),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The running node that leads the most data shards, if any node answers.
    pub async fn busiest_leader(&self) -> Option<usize> {
        let client = self.client().ok()?;
        let mut best: Option<(usize, usize)> = None;
        for (i, node) in self.nodes.iter().enumerate().filter(|(_, n)| n.state == NodeState::Running) {
            let Ok(shards) = client.local_shards(&node.endpoint, false).await else { continue };
            let leads = shards.replicas.iter().filter(|r| r.role == "leader").count();
            if best.is_none_or(|(_, most)| leads > most) {
                best = Some((i, leads));
            }
        }
        best.filter(|(_, leads)| *leads > 0).map(|(i, _)| i)
    }

    /// Stops every node: paused ones are resumed first so that nothing stays stopped, then all
    /// are killed (the run is over; its data is kept for inspection).
    pub async fn stop(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].state == NodeState::Paused {
                let _ = self.resume(i).await;
            }
            let _ = self.kill(i).await;
        }
        for disk in self.disks.iter_mut().flatten() {
            if let Err(e) = disk.unmount().await {
                eprintln!("warning: a node's filesystem stays mounted: {e}");
            }
        }
    }
}

/// A clock offset from real time, in milliseconds (negative: behind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockOffset(pub i64);

impl ClockOffset {
    pub const ZERO: ClockOffset = ClockOffset(0);

    /// libfaketime's relative form: a sign, then seconds (fractions allowed), e.g. `+15.000`.
    pub fn spec(self) -> String {
        let sign = if self.0 < 0 { '-' } else { '+' };
        let ms = self.0.unsigned_abs();
        format!("{sign}{}.{:03}", ms / 1000, ms % 1000)
    }
}

/// Asks a cluster's nodes (by address only) whether a wiped node has caught up again.
#[derive(Clone)]
pub struct Probe {
    /// (Raft id, gRPC endpoint, admin address) per node.
    nodes: Vec<(u64, String, String)>,
    /// Voters every data shard has when nothing is missing (`--replication` of the nodes).
    replication: usize,
    /// One client for every poll: its channels to the nodes are reused.
    client: Client,
}

impl Probe {
    /// Whether node `i` (0-based) has caught up after a wipe: its `/readyz` is 200 (it is a
    /// meta voter under its new incarnation, and every shard it hosts knows a leader and has
    /// applied what it committed), every data shard's leader (as any answering node reports
    /// it) lists its full count of voters and the node not as a learner (until the node's new
    /// replica is promoted its shard has one voter too few, and a second wipe then could take
    /// its quorum: combined runs showed both the learner and the gap between the stale entry's
    /// removal and the re-add), and for every data shard whose leader lists it as a voter, it
    /// hosts that shard again, ready, with something applied. The second half matters because a wiped node hosts no data-shard
    /// replica until the placement driver reopens them, and a node hosting nothing is ready. A
    /// shard with no reported leader makes the answer false: nothing tells what it should hold.
    pub async fn caught_up(&self, i: usize) -> bool {
        let Some((id, endpoint, admin)) = self.nodes.get(i) else { return false };
        if !ready(admin).await {
            return false;
        }
        let ask = |endpoint: String| async move {
            // A paused node would hold the call until the client's deadline.
            tokio::time::timeout(Duration::from_millis(500), self.client.local_shards(&endpoint, false))
                .await
                .ok()
                .and_then(Result::ok)
        };
        let Some(mine) = ask(endpoint.clone()).await else { return false };
        // shard -> whether the wiped node must host it (None: no leader seen yet).
        let mut needed: BTreeMap<u32, Option<bool>> = BTreeMap::new();
        for (_, other, _) in &self.nodes {
            let Some(theirs) = ask(other.clone()).await else { continue };
            for r in theirs.replicas {
                // Still a learner somewhere, or a shard short of voters (the stale entry removed,
                // the new replica not added yet): until it is whole, a second wipe could take its
                // quorum.
                if r.role == "leader" && (r.learners.contains(id) || r.voters.len() < self.replication) {
                    return false;
                }
                let entry = needed.entry(r.shard_id).or_insert(None);
                if r.role == "leader" {
                    *entry = Some(r.voters.contains(id));
                }
            }
        }
        let hosts_all = needed.iter().all(|(shard, need)| match need {
            None => false,
            Some(false) => true,
            Some(true) => mine.replicas.iter().any(|r| r.shard_id == *shard && r.ready && r.applied_index > 0),
        });
        // Again: the node may have been re-added (and so not ready) after the first look.
        hosts_all && ready(admin).await
    }
}

/// One `GET /readyz` on the admin port; true on HTTP 200.
async fn ready(admin: &str) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(admin).await.ok()?;
        stream.write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n").await.ok()?;
        let mut head = [0u8; 16];
        let n = stream.read(&mut head).await.ok()?;
        Some(head[..n].starts_with(b"HTTP/1.1 200") || head[..n].starts_with(b"HTTP/1.0 200"))
    };
    matches!(tokio::time::timeout(Duration::from_millis(500), attempt).await, Ok(Some(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_written_in_libfaketimes_relative_form() {
        assert_eq!(ClockOffset(15_000).spec(), "+15.000");
        assert_eq!(ClockOffset(-250).spec(), "-0.250");
        assert_eq!(ClockOffset(-61_005).spec(), "-61.005");
        assert_eq!(ClockOffset::ZERO.spec(), "+0.000");
    }

    #[test]
    fn the_ports_of_one_cluster_are_distinct() {
        for _ in 0..20 {
            let ports = free_ports(10).unwrap();
            let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
            assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        }
    }
}
