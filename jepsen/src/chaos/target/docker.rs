//! The `docker` target's node runtime: one container per node on a private network, each with
//! its own IP and a stable DNS name, configured as on Kubernetes (`--discovery
//! dns://hypercache:7000 --bootstrap-expect N`, the node id from the hostname's ordinal), so a
//! chaos run also tests what the product exists for: every restart gets an IP never used before
//! in the run, and the nodes find each other by name again.
//!
//! - **Image**: built per run `FROM scratch` with only the shared libraries the node binary (and
//!   libfaketime, if installed) link, as `k8s/images/build.sh` does; the binary under test is
//!   bind-mounted, so `HYPERCACHE_BIN` (a failpoint build) runs as it is. The run's `cluster/`
//!   directory is bind-mounted at the same path: data directories, libfaketime's offset files
//!   and loop-mounted disks are where the `local` target keeps them, so wipes, clock faults and
//!   power cuts act on the same files. Nodes run as root here (the production image does not):
//!   they write into the harness's directories.
//! - **Names**: the harness itself resolves `hypercache-<i>` through `/etc/hosts`, in a mount
//!   namespace of its own (`mountns.rs`, entered at start-up, before any thread): each
//!   (re)start binds a new hosts file over it, naming the node's new IP. Clients and the
//!   nemesis then address nodes by name only, as the nodes do.
//! - **Faults**: kill is `docker kill -s KILL` (its output is appended to the node's log, the
//!   container removed), pause is `docker pause` (the cgroup freezer: every thread stops at
//!   once, as SIGSTOP), a wipe deletes the data directory as on `local`. A partition is
//!   iptables in the receiving node's network namespace (`nsenter`): a cut link `(a, b)` drops
//!   the packets `a` sends on connections `a` opened to `b` (`conntrack --ctdir ORIGINAL`), so
//!   `b`'s own connections to `a` still work (one-way cuts) and the harness, not a node, is
//!   never cut off. A node restarted during a partition gets the rules for its new IP.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::mountns::{names_ready, set_host};
use super::{command, TargetError};
use crate::cluster::{serve_args, SERVICE};
use crate::docker::Scope;

pub use crate::cluster::{ADMIN_PORT, GRPC_PORT};
const NSENTER: &str = "the docker target's partitions need nsenter and iptables, as root";
/// Where the bind-mounted node binary sits in the container.
const BINARY: &str = "/hypercache";
const IMAGE: &str = "hcjepsen-node:latest";

/// The hostname of node `id` (1-based): its StatefulSet-style ordinal is `id - 1`.
pub fn hostname(id: u64) -> String {
    crate::cluster::hostname(id.saturating_sub(1) as usize)
}

/// Runs `docker args` without blocking a Tokio worker; stdout, trimmed, or an error naming the
/// command and docker's complaint.
async fn docker(args: &[String]) -> Result<String, TargetError> {
    command("docker", args, "the docker target needs the docker CLI and a Docker engine").await
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// One running node container.
struct Running {
    container: String,
    ip: Ipv4Addr,
    /// Its init process on the machine: the network namespace iptables runs in.
    pid: u32,
}

/// The containers of one run (see the module essay).
pub struct Containers {
    /// Owns the network and removes every container when dropped (also after a panic).
    scope: Scope,
    network: String,
    /// First address of the network's subnet; nodes take `.100` up, never reused.
    base: u32,
    next_ip: u32,
    exe: PathBuf,
    /// The run's cluster directory, bind-mounted at the same path.
    dir: PathBuf,
    running: BTreeMap<u64, Running>,
    cut: HashSet<(u64, u64)>,
}

impl Containers {
    /// Builds the node image for `exe` and creates the run's network.
    pub async fn create(exe: &Path, dir: &Path, faketime: Option<&Path>) -> Result<Containers, TargetError> {
        names_ready()?;
        build_image(exe, faketime).await?;
        let scope = tokio::task::spawn_blocking(|| Scope::new("chaos"))
            .await
            .map_err(|e| TargetError::Io(format!("docker scope: {e}")))?
            .map_err(|e| TargetError::Io(e.to_string()))?;
        let (network, subnet) = scope.network("net").map_err(|e| TargetError::Io(e.to_string()))?;
        let base = subnet
            .split('/')
            .next()
            .and_then(|a| a.parse::<Ipv4Addr>().ok())
            .ok_or_else(|| TargetError::Io(format!("network {network} has no IPv4 subnet ({subnet:?})")))?;
        Ok(Containers {
            scope,
            network,
            base: u32::from(base),
            next_ip: 100,
            exe: exe.to_path_buf(),
            dir: dir.to_path_buf(),
            running: BTreeMap::new(),
            cut: HashSet::new(),
        })
    }

    /// The command line of a node with its data in `data_dir`, in a cluster of `members` initial
    /// nodes: its id and name come from its hostname, as on Kubernetes.
    pub fn args(data_dir: &Path, members: usize, shards: u32) -> Vec<String> {
        let mut args = serve_args(&data_dir.display().to_string(), members);
        args.extend(["--shards".into(), shards.to_string(), "--replication".into(), members.min(3).to_string()]);
        args
    }

    /// Starts node `id` in a new container with a new IP (its old one, if any, is removed and
    /// its output appended to `log`), names it in `/etc/hosts`, and re-applies the cut links.
    pub async fn start(
        &mut self,
        id: u64,
        args: &[String],
        env: &[(String, String)],
        log: &Path,
    ) -> Result<(), TargetError> {
        self.remove(id, log).await?;
        let ip = Ipv4Addr::from(self.base + self.next_ip);
        self.next_ip += 1;
        let host = hostname(id);
        let container = self.scope.name(&format!("n{id}"));
        let dir = self.dir.display().to_string();
        let mut run = strings(&["run", "-d", "--name", &container]);
        run.extend(Scope::labels());
        run.extend(strings(&["--hostname", &host, "--network", &self.network, "--ip", &ip.to_string()]));
        run.extend(strings(&["--network-alias", &host, "--network-alias", SERVICE, "--user", "0:0"]));
        run.extend(strings(&["-v", &format!("{}:{BINARY}:ro", self.exe.display()), "-v", &format!("{dir}:{dir}")]));
        // A local node inherits the harness's environment; a container gets the node's own
        // settings (`HYPERCACHE_*`, e.g. `HYPERCACHE_FAILPOINTS`) passed on, but not ours.
        let inherited = std::env::vars().filter(|(k, _)| k.starts_with("HYPERCACHE_") && k != "HYPERCACHE_BIN");
        for (k, v) in env.iter().cloned().chain(inherited) {
            run.extend(["-e".to_string(), format!("{k}={v}")]);
        }
        run.extend(strings(&["--entrypoint", BINARY, IMAGE]));
        run.extend(args.iter().cloned());
        self.scope.track(&container);
        docker(&run).await.map_err(|e| TargetError::Node { node: id, message: e.to_string() })?;
        let pid = docker(&strings(&["inspect", "-f", "{{.State.Pid}}", &container]))
            .await?
            .parse::<u32>()
            .map_err(|e| TargetError::Node { node: id, message: format!("container pid: {e}") })?;
        set_host(&host, ip)?;
        self.running.insert(id, Running { container, ip, pid });
        self.apply_cut().await
    }

    /// SIGKILL node `id`'s container; its output goes to `log` and the container is removed.
    pub async fn kill(&mut self, id: u64, log: &Path) -> Result<(), TargetError> {
        if let Some(node) = self.running.get(&id) {
            // Already exited (it crashed): nothing to kill, the removal below still runs.
            let _ = docker(&strings(&["kill", "-s", "KILL", &node.container])).await;
        }
        self.remove(id, log).await
    }

    async fn remove(&mut self, id: u64, log: &Path) -> Result<(), TargetError> {
        let Some(node) = self.running.remove(&id) else { return Ok(()) };
        let out = Command::new("docker").args(["logs", &node.container]).output().await;
        if let Ok(out) = out {
            use std::io::Write;
            let file = std::fs::OpenOptions::new().create(true).append(true).open(log);
            if let Ok(mut file) = file {
                let _ = file.write_all(&out.stdout).and_then(|_| file.write_all(&out.stderr));
            }
        }
        docker(&strings(&["rm", "-f", &node.container])).await?;
        self.scope.untrack(&node.container);
        Ok(())
    }

    /// The host pid of node `id`'s process (the container's init: the node binary), if running.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.running.get(&id).map(|node| node.pid)
    }

    /// Freezes (`true`) or thaws node `id`'s container.
    pub async fn freeze(&self, id: u64, frozen: bool) -> Result<(), TargetError> {
        let Some(node) = self.running.get(&id) else {
            return Err(TargetError::Node { node: id, message: "not running".into() });
        };
        docker(&strings(&[if frozen { "pause" } else { "unpause" }, &node.container])).await.map(|_| ())
    }

    /// Replaces the set of cut directed links `(from, to)` (node ids).
    pub async fn set_cut(&mut self, cut: HashSet<(u64, u64)>) -> Result<(), TargetError> {
        self.cut = cut;
        self.apply_cut().await
    }

    pub fn any_cut(&self) -> bool {
        !self.cut.is_empty()
    }

    /// Writes every running node's INPUT rules from `cut` and the current IPs.
    async fn apply_cut(&self) -> Result<(), TargetError> {
        let mut errors = Vec::new();
        for (&to, node) in &self.running {
            let netns = format!("--net=/proc/{}/ns/net", node.pid);
            let mut rules = vec![strings(&[&netns, "iptables", "-w", "-F", "INPUT"])];
            for &(from, _) in self.cut.iter().filter(|(_, t)| *t == to) {
                let Some(peer) = self.running.get(&from) else { continue };
                let source = peer.ip.to_string();
                rules.push(strings(&[
                    &netns,
                    "iptables",
                    "-w",
                    "-A",
                    "INPUT",
                    "-s",
                    &source,
                    "-m",
                    "conntrack",
                    "--ctdir",
                    "ORIGINAL",
                    "-j",
                    "DROP",
                ]));
            }
            for rule in rules {
                if let Err(e) = command("nsenter", &rule, NSENTER).await {
                    errors.push(format!("node {to}: {e}"));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(TargetError::Io(errors.join("; ")))
        }
    }
}

/// The shared libraries `binary` links, as `ldd` lists them.
async fn libraries(binary: &Path) -> Result<Vec<PathBuf>, TargetError> {
    let out = command("ldd", &[binary.display().to_string()], "building the node image needs ldd").await?;
    Ok(out
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Builds [`IMAGE`]: the libraries `exe` (and libfaketime, when given) need, and glibc's name
/// service config; the binaries themselves are bind-mounted.
async fn build_image(exe: &Path, faketime: Option<&Path>) -> Result<(), TargetError> {
    let work = std::env::temp_dir().join(format!("hcjepsen-image-{}", std::process::id()));
    let rootfs = work.join("rootfs");
    let io = |what: String| move |e: std::io::Error| TargetError::Io(format!("{what}: {e}"));
    tokio::fs::create_dir_all(rootfs.join("etc")).await.map_err(io(format!("creating {}", rootfs.display())))?;
    let mut files = libraries(exe).await?;
    if let Some(lib) = faketime {
        files.push(lib.to_path_buf());
        files.extend(libraries(lib).await?);
    }
    for file in files {
        let to = rootfs.join(file.strip_prefix("/").unwrap_or(&file));
        if let Some(parent) = to.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io(format!("creating {}", parent.display())))?;
        }
        tokio::fs::copy(&file, &to).await.map_err(io(format!("copying {}", file.display())))?;
    }
    tokio::fs::write(rootfs.join("etc/nsswitch.conf"), "hosts: files dns\n")
        .await
        .map_err(io("writing nsswitch.conf".into()))?;
    tokio::fs::write(work.join("Dockerfile"), "FROM scratch\nCOPY rootfs/ /\n")
        .await
        .map_err(io("writing the Dockerfile".into()))?;
    let built = docker(&strings(&["build", "-q", "-t", IMAGE, &work.display().to_string()])).await;
    let _ = tokio::fs::remove_dir_all(&work).await;
    built.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_map_to_statefulset_ordinals() {
        assert_eq!(hostname(1), "hypercache-0");
        assert_eq!(hostname(4), "hypercache-3");
    }

    #[test]
    fn a_node_is_configured_as_on_kubernetes() {
        let args = Containers::args(Path::new("/run/cluster/n2"), 3, 16).join(" ");
        assert!(args.contains("--discovery dns://hypercache:7000 --bootstrap-expect 3"), "{args}");
        assert!(args.contains("--data-dir /run/cluster/n2") && !args.contains("--node-id"), "{args}");
    }
}
