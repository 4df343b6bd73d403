//! Per-link network faults on loopback without privileges: every node advertises a proxy
//! address instead of its own port, so peers (and clients) reach it through the proxy, and the
//! proxy decides per link whether bytes flow.
//!
//! A node advertises one address to everybody, so a proxy cannot tell links apart by the
//! address dialled. It tells them apart by the *caller*: on each accepted connection it looks
//! the caller's socket up in `/proc/net/tcp` (its inode) and finds which node process holds that
//! socket (`/proc/<pid>/fd`). A caller that is no node (the workload's clients, `hcctl`) is
//! never cut off: as in Jepsen, faults are between servers.
//!
//! A cut link is a black hole, not a reset: the proxy stops reading from (and writing to) the
//! connections of that direction and holds new ones unanswered, so the caller sees timeouts as
//! with dropped packets; bytes read before the cut are delivered after the heal, like
//! retransmissions. Links are directed, so one-way partitions are expressible.
//!
//! A proxy listens only while its node runs ([`Proxies::set_up`]): a killed node's address
//! refuses connections, as the node's own port would, instead of accepting and then resetting
//! them (which a client must take as "the write may have been applied").
//!
//! Linux only (`/proc`). A connection whose caller cannot be identified (the lookup races with
//! the caller closing it) is treated as external.

use hypercache_proto::poison::lock;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::TargetError;

/// Which links are cut, and which process is which node.
#[derive(Default)]
struct Links {
    /// Directed (from, to) node pairs whose bytes do not flow.
    cut: HashSet<(u64, u64)>,
    pids: HashMap<u32, u64>,
    /// Nodes whose proxy does not listen (their process is down).
    down: HashSet<u64>,
}

/// The proxies of one cluster.
#[derive(Clone)]
pub struct Proxies {
    links: Arc<Mutex<Links>>,
    /// Bumped on every change of `cut`, so held connections re-check their link.
    generation: watch::Sender<u64>,
}

impl Default for Proxies {
    fn default() -> Self {
        Proxies { links: Arc::default(), generation: watch::channel(0).0 }
    }
}

impl Proxies {
    fn lock(&self) -> std::sync::MutexGuard<'_, Links> {
        lock(&self.links)
    }

    /// Starts the proxy for `node`: listens on a free loopback port (returned) and forwards to
    /// `upstream`.
    pub async fn start(&self, node: u64, upstream: SocketAddr) -> Result<SocketAddr, TargetError> {
        let listener =
            TcpListener::bind("127.0.0.1:0").await.map_err(|e| TargetError::Io(format!("proxy bind: {e}")))?;
        let addr = listener.local_addr().map_err(|e| TargetError::Io(format!("proxy address: {e}")))?;
        let proxies = self.clone();
        tokio::spawn(async move {
            let mut listener = Some(listener);
            loop {
                let Some(open) = listener.take() else {
                    // Down: wait until the node is up again, then listen on the same address.
                    proxies.wait_until(|links| !links.down.contains(&node)).await;
                    match TcpListener::bind(addr).await {
                        Ok(l) => listener = Some(l),
                        Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                    }
                    continue;
                };
                let mut changed = proxies.generation.subscribe();
                tokio::select! {
                    accepted = open.accept() => {
                        let Ok((inbound, peer)) = accepted else { return };
                        let proxies = proxies.clone();
                        tokio::spawn(async move {
                            let from = proxies.identify(peer, addr).await;
                            proxies.forward(inbound, from, node, upstream).await;
                        });
                        listener = Some(open);
                    }
                    _ = changed.changed() => {
                        if !proxies.lock().down.contains(&node) {
                            listener = Some(open);
                        }
                    }
                }
            }
        });
        Ok(addr)
    }

    /// Marks `node`'s process up or down: its proxy listens only while it is up.
    pub fn set_up(&self, node: u64, up: bool) {
        let mut links = self.lock();
        let changed = if up { links.down.remove(&node) } else { links.down.insert(node) };
        drop(links);
        if changed {
            self.generation.send_modify(|g| *g += 1);
        }
    }

    /// Returns once `ready` holds for the links.
    async fn wait_until(&self, ready: impl Fn(&Links) -> bool) {
        let mut changed = self.generation.subscribe();
        while !ready(&self.lock()) {
            if changed.changed().await.is_err() {
                return;
            }
        }
    }

    /// Records the process id of `node` (after every start).
    pub fn set_pid(&self, node: u64, pid: u32) {
        let mut links = self.lock();
        links.pids.retain(|_, n| *n != node);
        links.pids.insert(pid, node);
    }

    /// Replaces the set of cut directed links.
    pub fn set_cut(&self, cut: HashSet<(u64, u64)>) {
        self.lock().cut = cut;
        self.generation.send_modify(|g| *g += 1);
    }

    /// True while any link is cut.
    pub fn any_cut(&self) -> bool {
        !self.lock().cut.is_empty()
    }

    /// Which node's process holds the socket connected from `peer` to `local`, if any.
    async fn identify(&self, peer: SocketAddr, local: SocketAddr) -> Option<u64> {
        let pids: Vec<(u32, u64)> = self.lock().pids.iter().map(|(p, n)| (*p, *n)).collect();
        tokio::task::spawn_blocking(move || {
            let inode = socket_inode(peer, local)?;
            let needle = format!("socket:[{inode}]");
            pids.into_iter().find_map(|(pid, node)| {
                let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
                fds.flatten()
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy() == needle))
                    .then_some(node)
            })
        })
        .await
        .ok()
        .flatten()
    }

    /// Copies bytes both ways while the link in that direction is not cut.
    async fn forward(&self, inbound: TcpStream, from: Option<u64>, to: u64, upstream: SocketAddr) {
        self.wait_open(from, to).await;
        let Ok(outbound) = TcpStream::connect(upstream).await else { return };
        // gRPC sets TCP_NODELAY on its own sockets; without it here, Nagle's algorithm and
        // delayed ACKs add ~40 ms to small requests (measured: a third of the throughput).
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let (in_read, in_write) = inbound.into_split();
        let (out_read, out_write) = outbound.into_split();
        let there = self.pump(in_read, out_write, from, Some(to));
        let back = self.pump(out_read, in_write, Some(to), from);
        // Either side closing ends the connection.
        tokio::select! {
            _ = there => {}
            _ = back => {}
        }
    }

    async fn pump(
        &self,
        mut src: tokio::net::tcp::OwnedReadHalf,
        mut dst: tokio::net::tcp::OwnedWriteHalf,
        from: Option<u64>,
        to: Option<u64>,
    ) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(to) = to {
                self.wait_open(from, to).await;
            }
            let mut changed = self.generation.subscribe();
            let n = tokio::select! {
                n = src.read(&mut buf) => match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                },
                // The link may have been cut while this side waited to read: check again.
                _ = changed.changed() => continue,
            };
            if let Some(to) = to {
                self.wait_open(from, to).await;
            }
            if dst.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    /// Returns once bytes may flow from `from` to `to`.
    async fn wait_open(&self, from: Option<u64>, to: u64) {
        if let Some(from) = from {
            self.wait_until(|links| !links.cut.contains(&(from, to))).await;
        }
    }
}

/// The inode of the socket whose local end is `local` and remote end `remote`, from
/// `/proc/net/tcp` (IPv4).
fn socket_inode(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let (want_local, want_remote) = (proc_addr(local)?, proc_addr(remote)?);
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&want_local.as_str()) && fields.get(2) == Some(&want_remote.as_str()))
            .then(|| fields.get(9)?.parse().ok())
            .flatten()
    })
}

/// An address as `/proc/net/tcp` prints it: the IPv4 address as a native-endian hex word, then
/// the port in hex.
fn proc_addr(addr: SocketAddr) -> Option<String> {
    let SocketAddr::V4(v4) = addr else { return None };
    let ip = u32::from_ne_bytes(v4.ip().octets());
    Some(format!("{ip:08X}:{:04X}", v4.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_proc_net_tcp_does() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(proc_addr(addr).unwrap(), "0100007F:1F90");
        }
    }

    /// A "node" (this test process, registered under its own pid) talking through a proxy:
    /// bytes flow, stop while the link is cut, and resume after the heal; an unknown caller is
    /// never cut.
    #[tokio::test]
    async fn a_cut_link_holds_bytes_until_healed() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let proxies = Proxies::default();
        let addr = proxies.start(2, upstream).await.unwrap();
        let roundtrip = |mut s: TcpStream| async move {
            s.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            let got = tokio::time::timeout(std::time::Duration::from_millis(500), s.read_exact(&mut buf)).await;
            (s, got.is_ok())
        };
        // Unknown caller: cuts between nodes do not touch it.
        proxies.set_cut(HashSet::from([(1, 2), (2, 1)]));
        let (_, ok) = roundtrip(TcpStream::connect(addr).await.unwrap()).await;
        assert!(ok, "an external caller is never cut off");
        // A node that is down refuses connections; back up, it accepts them again.
        proxies.set_up(2, false);
        let refused = async {
            while TcpStream::connect(addr).await.is_ok() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), refused).await.expect("refused while down");
        proxies.set_up(2, true);
        let accepted = async {
            loop {
                if let Ok(s) = TcpStream::connect(addr).await {
                    return s;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        };
        let s = tokio::time::timeout(std::time::Duration::from_secs(5), accepted).await.expect("accepted once up");
        assert!(roundtrip(s).await.1);
        // Now this process is node 1.
        proxies.set_cut(HashSet::new());
        proxies.set_pid(1, std::process::id());
        let (s, ok) = roundtrip(TcpStream::connect(addr).await.unwrap()).await;
        assert!(ok, "an open link passes bytes");
        proxies.set_cut(HashSet::from([(1, 2)]));
        let (mut s, ok) = roundtrip(s).await;
        assert!(!ok, "a cut link passes nothing");
        proxies.set_cut(HashSet::new());
        let mut buf = [0u8; 4];
        tokio::time::timeout(std::time::Duration::from_secs(5), s.read_exact(&mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf, b"ping", "held bytes arrive after the heal");
    }
}
