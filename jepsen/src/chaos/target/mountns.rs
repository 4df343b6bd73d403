//! hcjepsen's own mount namespace, for the docker target.
//!
//! The harness must reach the nodes by the names they advertise (`hypercache-<i>`), which only
//! Docker's DNS knows. So at start-up, before any thread exists, `hcjepsen --target docker`
//! enters a mount namespace of its own ([`enter_own_mount_namespace`]) in which `/etc/hosts` is
//! its own: each time a node gets a new IP, a new hosts file is bound over it ([`set_host`]).
//!
//! Everything else mounted by the harness must stay visible to the Docker engine, which
//! bind-mounts the run directory into the containers from the machine's namespace: the power
//! nemesis' loop-mounted disks (`disk.rs`). A disk mounted inside our namespace would be
//! invisible to the containers, which would write to the directory underneath it, and a power
//! cut would then cut nothing (seen: a `set` run under `power` on the docker target passed with
//! every node's data in the plain directory under its mount point). So the harness keeps the
//! machine's namespace and root it started in: [`in_machine_ns`] runs `mount` and `umount`
//! there (through `nsenter`), and [`machine_path`] names a path as the machine sees it (through
//! the root directory it kept open), for the power cut's ioctl and a wipe's delete. Without a
//! namespace of our own (the local target) both are the identity.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::TargetError;

/// This process's own `/etc/hosts`.
struct Hosts {
    dir: PathBuf,
    /// The machine's hosts file, which every version starts with.
    base: String,
    names: BTreeMap<String, Ipv4Addr>,
    version: u64,
}

/// The machine's mount namespace and root directory, opened before we left them.
struct Machine {
    ns: File,
    root: File,
}

static HOSTS: OnceLock<Mutex<Hosts>> = OnceLock::new();
static MACHINE: OnceLock<Machine> = OnceLock::new();

/// Gives this process a private mount namespace in which `/etc/hosts` is its own (see the
/// module essay). Must run before any other thread exists (the namespace is per thread until
/// then); needs root (`CAP_SYS_ADMIN`).
pub fn enter_own_mount_namespace() -> Result<(), TargetError> {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    let fail = |what: &str, e: String| {
        TargetError::Io(format!(
            "the docker target resolves node names through a private /etc/hosts; {what}: {e} (run hcjepsen as root)"
        ))
    };
    let base = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let ns = File::open("/proc/self/ns/mnt").map_err(|e| fail("opening /proc/self/ns/mnt", e.to_string()))?;
    let root = File::open("/").map_err(|e| fail("opening /", e.to_string()))?;
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| fail("unshare(CLONE_NEWNS)", e.to_string()))?;
    // Nothing mounted here may leak into the machine's namespace.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| fail("making / private", e.to_string()))?;
    let dir = std::env::temp_dir().join(format!("hcjepsen-hosts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| TargetError::Io(format!("creating {}: {e}", dir.display())))?;
    let twice = || TargetError::Io("hcjepsen's own mount namespace was set up twice".into());
    MACHINE.set(Machine { ns, root }).map_err(|_| twice())?;
    HOSTS.set(Mutex::new(Hosts { dir, base, names: BTreeMap::new(), version: 0 })).map_err(|_| twice())
}

/// An error unless this process has its own `/etc/hosts` (the docker target needs it).
pub fn names_ready() -> Result<(), TargetError> {
    match HOSTS.get() {
        Some(_) => Ok(()),
        None => Err(TargetError::Io(
            "the docker target needs hcjepsen's own /etc/hosts (mountns::enter_own_mount_namespace at start-up)".into(),
        )),
    }
}

/// Points `name` at `ip` in this process's `/etc/hosts`. A new file is bound over the old one
/// each time: a reader sees the whole old file or the whole new one, never half a write.
pub fn set_host(name: &str, ip: Ipv4Addr) -> Result<(), TargetError> {
    use nix::mount::{mount, MsFlags};
    let Some(hosts) = HOSTS.get() else { return names_ready() };
    let mut hosts = hosts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    hosts.names.insert(name.to_string(), ip);
    hosts.version += 1;
    let mut text = hosts.base.clone();
    text.push_str("\n# hcjepsen --target docker\n");
    for (name, ip) in &hosts.names {
        text.push_str(&format!("{ip}\t{name}\n"));
    }
    let file = hosts.dir.join(format!("hosts.{}", hosts.version));
    std::fs::write(&file, text).map_err(|e| TargetError::Io(format!("writing {}: {e}", file.display())))?;
    mount(Some(&file), "/etc/hosts", None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| TargetError::Io(format!("binding {} over /etc/hosts: {e}", file.display())))
}

/// `program args`, to run in the machine's mount namespace: through `nsenter` if this process
/// has its own, else unchanged.
pub fn in_machine_ns(program: &str, args: &[String]) -> (String, Vec<String>) {
    match MACHINE.get() {
        Some(machine) => {
            let ns = format!("--mount=/proc/{}/fd/{}", std::process::id(), machine.ns.as_raw_fd());
            let mut all = vec![ns, program.to_string()];
            all.extend(args.iter().cloned());
            ("nsenter".into(), all)
        }
        None => (program.to_string(), args.to_vec()),
    }
}

/// `path` (absolute) as the machine's mount namespace sees it: through the root directory this
/// process kept open, if it has a namespace of its own; else unchanged.
pub fn machine_path(path: &Path) -> PathBuf {
    match MACHINE.get() {
        Some(machine) => {
            let root = PathBuf::from(format!("/proc/self/fd/{}", machine.root.as_raw_fd()));
            root.join(path.strip_prefix("/").unwrap_or(path))
        }
        None => path.to_path_buf(),
    }
}
