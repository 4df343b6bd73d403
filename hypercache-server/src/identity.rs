//! A node's identity: its id and its name, stable across restarts and IP changes.
//!
//! The id comes from, in order: the id persisted in the data dir (`<data_dir>/node-id`, written
//! on first start), the configured `node_id`, or the StatefulSet ordinal in the hostname
//! (`hypercache-2` is id 3; ids start at 1). A configured id that disagrees with the persisted one
//! is an error: the data belongs to the persisted id, and running it under another id would make
//! one Raft member look like two.
//!
//! The id alone does not say whether the node still holds what the cluster remembers of it: a
//! pod recreated on an empty volume keeps its ordinal, so its id. Every data dir is therefore
//! stamped at first start with an *incarnation* (a random number, `<data_dir>/incarnation`), and
//! with the cluster's id once it belongs to one (`<data_dir>/cluster-id`). Membership records
//! each member's incarnation; a node refuses Raft messages meant for another incarnation of itself
//! (`network/admit.rs`, checked by `service/peer.rs`), so a wiped voter never votes or counts toward a quorum as the voter it
//! was, and the cluster replaces it by a new replica (docs/architecture.md, "Incarnations").

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use hypercache_proto::poison::{read, write};

use crate::types::{Incarnation, NodeId};

/// File in the data dir holding the node id, in decimal.
pub const ID_FILE: &str = "node-id";
/// File in the data dir holding its incarnation, in decimal.
pub const INCARNATION_FILE: &str = "incarnation";
/// File in the data dir holding the id of the cluster it belongs to.
pub const CLUSTER_FILE: &str = "cluster-id";

/// The id of a cluster: chosen at random by the node that initializes it, adopted by every node
/// from the first Raft message it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterId(pub String);

impl ClusterId {
    pub fn random() -> ClusterId {
        ClusterId(format!("{:016x}{:016x}", random_u64(), random_u64()))
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "node_id: not set, and the hostname {hostname:?} carries no StatefulSet ordinal (<name>-<n>); \
         set --node-id or HYPERCACHE_NODE_ID"
    )]
    NoId { hostname: String },
    #[error("node_id: configured as {configured}, but the data dir {} belongs to node {persisted}", dir.display())]
    Mismatch { configured: NodeId, persisted: NodeId, dir: PathBuf },
    #[error("node_id: {} is not a valid node id (expected an integer >= 1)", path.display())]
    Corrupt { path: PathBuf },
    #[error("node_id: {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "data dir {}: written by a HyperCache older than its incarnation stamps (it has {ID_FILE} but no \
         {INCARNATION_FILE}); this version stores membership in another format and cannot read it. \
         Start this node on an empty data dir: the cluster replaces it and copies its data back",
        dir.display()
    )]
    OldFormat { dir: PathBuf },
    #[error("data dir {}: {file} is not valid ({detail})", dir.display())]
    BadStamp { dir: PathBuf, file: &'static str, detail: String },
}

/// This machine's host name, if it has a readable one.
pub fn hostname() -> Option<String> {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).filter(|h| !h.is_empty())
}

/// `<name>-<n>` (a StatefulSet pod name, possibly followed by a domain) -> id `n + 1`.
pub fn ordinal_id(hostname: &str) -> Option<NodeId> {
    let short = hostname.split('.').next()?;
    let (_, n) = short.rsplit_once('-')?;
    if n.is_empty() || n.len() > 9 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse::<NodeId>().ok().map(|n| n + 1)
}

/// The id persisted in `data_dir`, if any.
pub fn persisted_id(data_dir: &Path) -> Result<Option<NodeId>, IdentityError> {
    let path = data_dir.join(ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            text.trim().parse::<NodeId>().ok().filter(|id| *id >= 1).map(Some).ok_or(IdentityError::Corrupt { path })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IdentityError::Io { path, source }),
    }
}

/// Picks the id (see the module docs). `configured` is 0 when unset.
pub fn resolve_id(configured: NodeId, data_dir: &Path, hostname: Option<&str>) -> Result<NodeId, IdentityError> {
    match (persisted_id(data_dir)?, configured) {
        (Some(persisted), 0) => Ok(persisted),
        (Some(persisted), configured) if persisted != configured => {
            Err(IdentityError::Mismatch { configured, persisted, dir: data_dir.to_path_buf() })
        }
        (Some(persisted), _) => Ok(persisted),
        (None, 0) => {
            let host = hostname.unwrap_or_default();
            ordinal_id(host).ok_or_else(|| IdentityError::NoId { hostname: host.to_string() })
        }
        (None, configured) => Ok(configured),
    }
}

/// Writes the id into `data_dir` if it is not there yet (atomically: temp file, fsync, rename).
pub fn persist_id(data_dir: &Path, id: NodeId) -> Result<(), IdentityError> {
    match persisted_id(data_dir)? {
        Some(existing) if existing == id => return Ok(()),
        Some(existing) => {
            return Err(IdentityError::Mismatch { configured: id, persisted: existing, dir: data_dir.to_path_buf() })
        }
        None => {}
    }
    let path = data_dir.join(ID_FILE);
    let tmp = data_dir.join(format!("{ID_FILE}.tmp"));
    let io = |source| IdentityError::Io { path: path.clone(), source };
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(format!("{id}\n").as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(())
}

/// 64 random bits from the OS (the data dir's incarnation, the cluster id).
fn random_u64() -> u64 {
    use std::io::Read;
    let mut buf = [0u8; 8];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).is_ok() {
        return u64::from_le_bytes(buf);
    }
    // No /dev/urandom: std's per-process random hasher keys, mixed with the time.
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// Writes `text` to `data_dir/file` atomically (temp file, fsync, rename, dir fsync).
fn write_atomically(data_dir: &Path, file: &str, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let path = data_dir.join(file);
    let tmp = data_dir.join(format!("{file}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(data_dir)?.sync_all()
}

fn read_stamp(data_dir: &Path, file: &'static str) -> Result<Option<String>, IdentityError> {
    let path = data_dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IdentityError::Io { path, source }),
    }
}

/// What a node's data dir says about it: its id, its incarnation and, once it belongs to one,
/// its cluster's id. Shared by the Raft transport (both directions) and the cluster service.
#[derive(Debug)]
pub struct Stamp {
    pub node_id: NodeId,
    pub incarnation: Incarnation,
    /// True when this start created the data dir's incarnation (an empty volume).
    pub fresh: bool,
    data_dir: PathBuf,
    cluster: RwLock<Option<ClusterId>>,
}

impl Stamp {
    /// Reads the data dir's stamp, creating the incarnation of a new data dir. Call before any
    /// Raft state exists in it; `id` must already be resolved ([`resolve_id`]).
    pub fn open(data_dir: &Path, id: NodeId) -> Result<Arc<Stamp>, IdentityError> {
        let bad = |file, detail: String| IdentityError::BadStamp { dir: data_dir.to_path_buf(), file, detail };
        let existing = read_stamp(data_dir, INCARNATION_FILE)?;
        if existing.is_none() && persisted_id(data_dir)?.is_some() {
            return Err(IdentityError::OldFormat { dir: data_dir.to_path_buf() });
        }
        persist_id(data_dir, id)?;
        let (incarnation, fresh) = match existing {
            Some(text) => match text.parse::<u64>() {
                Ok(n) if n != 0 => (Incarnation(n), false),
                _ => return Err(bad(INCARNATION_FILE, format!("{text:?} is not a non-zero integer"))),
            },
            None => {
                let n = random_u64().max(1);
                write_atomically(data_dir, INCARNATION_FILE, &format!("{n}\n"))
                    .map_err(|source| IdentityError::Io { path: data_dir.join(INCARNATION_FILE), source })?;
                (Incarnation(n), true)
            }
        };
        let cluster = match read_stamp(data_dir, CLUSTER_FILE)? {
            Some(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit()) => Some(ClusterId(text)),
            Some(text) => return Err(bad(CLUSTER_FILE, format!("{text:?} is not a hex cluster id"))),
            None => None,
        };
        Ok(Arc::new(Stamp {
            node_id: id,
            incarnation,
            fresh,
            data_dir: data_dir.to_path_buf(),
            cluster: RwLock::new(cluster),
        }))
    }

    /// The cluster this data dir belongs to, if it belongs to one yet.
    pub fn cluster(&self) -> Option<ClusterId> {
        read(&self.cluster).clone()
    }

    /// Stamps the data dir with `id` unless it already has a cluster id; returns the one it has
    /// now. Blocking (a file write and fsync): call from a blocking thread.
    pub fn adopt_cluster(&self, id: &ClusterId) -> Result<ClusterId, IdentityError> {
        let mut current = write(&self.cluster);
        if let Some(existing) = current.as_ref() {
            return Ok(existing.clone());
        }
        write_atomically(&self.data_dir, CLUSTER_FILE, &format!("{id}\n"))
            .map_err(|source| IdentityError::Io { path: self.data_dir.join(CLUSTER_FILE), source })?;
        tracing::info!(node = self.node_id, cluster = %id, "data dir stamped with the cluster id");
        *current = Some(id.clone());
        Ok(id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statefulset_ordinals_become_ids_from_one() {
        assert_eq!(ordinal_id("hypercache-0"), Some(1));
        assert_eq!(ordinal_id("hypercache-12"), Some(13));
        assert_eq!(ordinal_id("hypercache-2.hypercache.default.svc.cluster.local"), Some(3));
        for no in ["hypercache", "hypercache-", "hc-x1", "laptop", "", "a-1234567890"] {
            assert_eq!(ordinal_id(no), None, "{no}");
        }
    }

    #[test]
    fn the_persisted_id_wins_and_a_conflicting_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resolve_id(0, dir.path(), Some("hc-4")).unwrap(), 5);
        assert_eq!(resolve_id(7, dir.path(), Some("hc-4")).unwrap(), 7);
        assert!(matches!(resolve_id(0, dir.path(), Some("laptop")), Err(IdentityError::NoId { .. })));
        persist_id(dir.path(), 5).unwrap();
        persist_id(dir.path(), 5).unwrap();
        // A new hostname does not change a node that has data.
        assert_eq!(resolve_id(0, dir.path(), Some("other-9")).unwrap(), 5);
        let e = resolve_id(7, dir.path(), None).unwrap_err().to_string();
        assert!(e.contains("belongs to node 5"), "{e}");
        assert!(persist_id(dir.path(), 6).is_err());
        std::fs::write(dir.path().join(ID_FILE), "zero").unwrap();
        assert!(matches!(persisted_id(dir.path()), Err(IdentityError::Corrupt { .. })));
    }
}

#[cfg(test)]
mod stamp_tests {
    use super::*;

    #[test]
    fn a_new_data_dir_gets_an_incarnation_that_survives_restarts_and_only_there() {
        let dir = tempfile::tempdir().unwrap();
        let first = Stamp::open(dir.path(), 3).unwrap();
        assert!(first.fresh);
        assert_ne!(first.incarnation.0, 0);
        assert_eq!(first.cluster(), None);
        let cluster = ClusterId::random();
        assert_eq!(first.adopt_cluster(&cluster).unwrap(), cluster);
        // A second adoption keeps the first cluster id.
        assert_eq!(first.adopt_cluster(&ClusterId::random()).unwrap(), cluster);

        let again = Stamp::open(dir.path(), 3).unwrap();
        assert!(!again.fresh);
        assert_eq!(again.incarnation, first.incarnation);
        assert_eq!(again.cluster(), Some(cluster));

        // The same volume, emptied: a new incarnation, no cluster.
        let wiped = tempfile::tempdir().unwrap();
        let reborn = Stamp::open(wiped.path(), 3).unwrap();
        assert!(reborn.fresh);
        assert_ne!(reborn.incarnation, first.incarnation);
        assert_eq!(reborn.cluster(), None);
    }

    #[test]
    fn a_data_dir_from_before_incarnations_and_a_damaged_stamp_are_refused_by_name() {
        let old = tempfile::tempdir().unwrap();
        persist_id(old.path(), 2).unwrap();
        let e = Stamp::open(old.path(), 2).unwrap_err();
        assert!(matches!(e, IdentityError::OldFormat { .. }), "{e}");
        assert!(e.to_string().contains("incarnation"), "{e}");

        let bad = tempfile::tempdir().unwrap();
        std::fs::write(bad.path().join(INCARNATION_FILE), "0\n").unwrap();
        let e = Stamp::open(bad.path(), 2).unwrap_err().to_string();
        assert!(e.contains("incarnation") && e.contains("not a non-zero integer"), "{e}");
        std::fs::write(bad.path().join(INCARNATION_FILE), "7\n").unwrap();
        std::fs::write(bad.path().join(CLUSTER_FILE), "not hex!\n").unwrap();
        let e = Stamp::open(bad.path(), 2).unwrap_err().to_string();
        assert!(e.contains("cluster-id"), "{e}");
    }
}
