//! A node's identity: its id and its name, stable across restarts and IP changes.
//!
//! The id comes from, in order: the id persisted in the data dir (`<data_dir>/node-id`, written
//! on first start), the configured `node_id`, or the StatefulSet ordinal in the hostname
//! (`hypercache-2` is id 3; ids start at 1). A configured id that disagrees with the persisted one
//! is an error: the data belongs to the persisted id, and running it under another id would make
//! one Raft member look like two.

use std::path::{Path, PathBuf};

use crate::types::NodeId;

/// File in the data dir holding the node id, in decimal.
pub const ID_FILE: &str = "node-id";

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
