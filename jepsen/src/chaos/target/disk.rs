//! A node's own filesystem, so that a power cut can be simulated: an ext4 image in the run
//! directory, loop-mounted, holding the node's data directory.
//!
//! SIGKILL only ends a process: whatever it wrote is in the kernel's page cache and reaches the
//! disk anyway, fsync or not. A power cut loses everything not fsynced. [`Disk::cut`] makes the
//! filesystem act as if the machine lost power at that instant: `FS_IOC_SHUTDOWN` with
//! `NOLOGFLUSH` (what xfstests' `godown` does; ext4 and XFS support it) stops every further write
//! from reaching the image and drops the journal's uncommitted tail. After the node is killed,
//! [`Disk::remount`] unmounts (the dirty pages are discarded, not written) and mounts the image
//! again: ext4 replays its journal, and the node finds exactly what it had fsynced, as after a
//! reboot.
//!
//! **Stop the process first.** A power cut also stops the machine: nothing that completes after
//! the instant can be observed. The shutdown alone does not give that: an `fdatasync` in flight
//! when it lands can still return success to a process that keeps running, for data that is not
//! on the image after the remount (the last acknowledged record gone in 4 of 60 cuts, see the
//! test below; with `LOGFLUSH` too, once in 60). A node still running then acknowledges a write
//! no disk kept, which the chaos suite reported as acknowledged adds lost after whole-cluster
//! power cuts. So the node is stopped (SIGSTOP, every thread: [`stopped`]) before
//! its disk is cut, and killed after: any sync the cut races finishes unobserved.
//!
//! Needs root (mount, loop devices) and `mkfs.ext4` (Debian's `e2fsprogs`). The image is sparse
//! (it takes what the node writes) and stays in the run directory, unmounted at the end, for
//! post-mortems (`mount -o loop n1.img /mnt`).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::mountns::{in_machine_ns, machine_path};
use super::TargetError;

/// Image size: sparse, so only what the node writes is used on the host.
const IMAGE_BYTES: u64 = 2 << 30;

/// `FS_IOC_SHUTDOWN` (`_IOR('X', 125, __u32)`; the kernel reads the flags the pointer names).
mod ioctl {
    nix::ioctl_read!(fs_shutdown, b'X', 125, u32);
}
/// Shut down without flushing the log: the unsynced tail is lost, as in a power cut.
const SHUTDOWN_NOLOGFLUSH: u32 = 2;

pub struct Disk {
    image: PathBuf,
    mount: PathBuf,
    /// The loop device the filesystem is mounted from, while mounted.
    device: Option<String>,
}

/// Runs `program args` in the machine's mount namespace (`mountns.rs`: the Docker engine must
/// see the disks it bind-mounts into containers).
async fn run(program: &str, args: &[&str]) -> Result<String, TargetError> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (program, args) = in_machine_ns(program, &args);
    super::command(&program, &args, "the power nemesis needs mount, losetup and mkfs.ext4, as root").await
}

/// Whether process `pid` is stopped: every thread of it in state `T` (stopped) or `t`, or gone.
/// A stopped thread runs no more user code, so nothing it does after this can be observed.
pub fn stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return true };
    tasks.flatten().all(|task| {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // `pid (comm) S ...`: the state follows the last ')' (comm may hold one).
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
        matches!(state, None | Some('T' | 't' | 'Z' | 'X'))
    })
}

/// Waits (at most `within`) until [`stopped`] holds for every pid `pids` lists (called again on
/// each poll: a process group can gain members).
pub async fn wait_stopped(pids: impl Fn() -> Vec<i32>, within: std::time::Duration) -> Result<(), TargetError> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let running: Vec<i32> = pids().into_iter().filter(|&p| !stopped(p)).collect();
        if running.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let states: Vec<String> = running
                .iter()
                .map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default())
                .map(|stat| stat.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .collect();
            return Err(TargetError::Io(format!("processes did not stop within {within:?} of SIGSTOP: {states:?}")));
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

impl Disk {
    /// Creates `<dir>/<name>.img` with an ext4 filesystem and mounts it at `<dir>/<name>.fs`.
    pub async fn create(dir: &Path, name: &str) -> Result<Disk, TargetError> {
        let image = dir.join(format!("{name}.img"));
        let mount = dir.join(format!("{name}.fs"));
        let file =
            std::fs::File::create(&image).map_err(|e| TargetError::Io(format!("creating {}: {e}", image.display())))?;
        file.set_len(IMAGE_BYTES).map_err(|e| TargetError::Io(format!("sizing {}: {e}", image.display())))?;
        std::fs::create_dir_all(&mount).map_err(|e| TargetError::Io(format!("creating {}: {e}", mount.display())))?;
        let img = image.display().to_string();
        run("mkfs.ext4", &["-q", "-F", "-E", "nodiscard", &img]).await?;
        let mut disk = Disk { image, mount, device: None };
        disk.mount().await?;
        Ok(disk)
    }

    /// Where the filesystem is mounted.
    pub fn root(&self) -> &Path {
        &self.mount
    }

    /// Mounts the image from a loop device of its own. Not `mount -o loop`: that reuses a loop
    /// device still attached to the image, and after a cut the old, shut-down filesystem can
    /// outlive its unmount for a moment (a container's mount namespace still holding it), so
    /// the mount would hand back that filesystem, and every read fails with EIO (seen on the
    /// docker target: a node restarted after a cut could not read its node id).
    async fn mount(&mut self) -> Result<(), TargetError> {
        let (img, at) = (self.image.display().to_string(), self.mount.display().to_string());
        let device = run("losetup", &["--find", "--show", &img]).await?;
        if let Err(e) = run("mount", &[&device, &at]).await {
            let _ = run("losetup", &["-d", &device]).await;
            return Err(e);
        }
        self.device = Some(device);
        Ok(())
    }

    /// The power cut: from now on nothing more reaches the image, and what was not fsynced is
    /// lost. Kill the node, then [`Disk::remount`].
    pub fn cut(&self) -> Result<(), TargetError> {
        let at = machine_path(&self.mount);
        let dir =
            std::fs::File::open(&at).map_err(|e| TargetError::Io(format!("opening {}: {e}", self.mount.display())))?;
        // Only ever a mount point: the ioctl on a plain directory would shut down the filesystem
        // holding it, the machine's own (a mount missing, or made where the path does not see it).
        let device = |p: &Path| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::dev(&m));
        let parent = at.parent().map(device);
        match (device(&at), parent) {
            (Ok(own), Some(Ok(parent))) if own != parent => {}
            _ => {
                return Err(TargetError::Io(format!(
                    "{} is not a mounted disk; no power cut (it would hit the filesystem holding it)",
                    self.mount.display()
                )))
            }
        }
        let mut flags = SHUTDOWN_NOLOGFLUSH;
        // SAFETY: the descriptor is open for the whole call and `flags` outlives it; the kernel
        // only reads the u32 it points to.
        unsafe { ioctl::fs_shutdown(std::os::fd::AsRawFd::as_raw_fd(&dir), &mut flags) }
            .map_err(|e| TargetError::Io(format!("FS_IOC_SHUTDOWN on {}: {e}", self.mount.display())))?;
        Ok(())
    }

    /// Unmounts (the node must be dead: nothing may hold a file open) and mounts again, as
    /// after a reboot: the journal is replayed and only what was fsynced is there.
    pub async fn remount(&mut self) -> Result<(), TargetError> {
        self.unmount().await?;
        self.mount().await
    }

    pub async fn unmount(&mut self) -> Result<(), TargetError> {
        if let Some(device) = &self.device {
            run("umount", &[&self.mount.display().to_string()]).await?;
            // Freed once nothing holds it any more (the kernel defers a busy detach).
            let _ = run("losetup", &["-d", device]).await;
            self.device = None;
        }
        Ok(())
    }
}

impl Drop for Disk {
    /// A run that ends early (an error, a panic) must not leave mounts behind.
    fn drop(&mut self) {
        if let Some(device) = &self.device {
            let steps =
                [("umount", vec![self.mount.display().to_string()]), ("losetup", vec!["-d".into(), device.clone()])];
            for (program, args) in steps {
                let (program, args) = in_machine_ns(program, &args);
                let _ =
                    std::process::Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_refuses_a_directory_that_is_not_a_mounted_disk() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk { image: dir.path().join("n1.img"), mount: dir.path().to_path_buf(), device: None };
        let err = disk.cut().expect_err("a plain directory is no disk");
        assert!(err.to_string().contains("not a mounted disk"), "{err}");
    }

    /// What the power cut promises, and what it does not: a record whose `fdatasync` returned
    /// before the cut is on the disk after the remount; one whose `fdatasync` was in flight
    /// when the cut landed may return success and still be gone. A writer thread appends
    /// 128-byte records, `fdatasync`ing each, until a write or sync fails; the cut lands at a
    /// random moment. Asserted: every record acknowledged before the cut is there. Counted, not
    /// asserted: records acknowledged after it (the hazard `Cluster::power_cut` avoids by
    /// stopping the node before cutting its disk). Asserting the second instead failed, 4 of
    /// 60 rounds losing the last acknowledged record (2026-12-07). Needs root and loop devices,
    /// like the power nemesis.
    #[test]
    fn what_fdatasync_acknowledged_before_a_cut_is_on_the_disk_after_it() {
        use std::os::unix::fs::FileExt;
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut disk = runtime.block_on(Disk::create(dir.path(), "d")).unwrap();
        let (mut lost, mut late) = (Vec::new(), 0);
        for round in 0..60u64 {
            let path = disk.root().join(format!("log-{round}"));
            let file = std::fs::File::create(&path).unwrap();
            file.sync_all().unwrap();
            std::fs::File::open(disk.root()).unwrap().sync_all().unwrap();
            let acked = Arc::new(AtomicU64::new(0));
            let writer = {
                let acked = acked.clone();
                std::thread::spawn(move || {
                    let mut end = 0u64;
                    while file.write_all_at(&[b'x'; 128], end).and_then(|()| file.sync_data()).is_ok() {
                        end += 128;
                        acked.store(end, Ordering::SeqCst);
                    }
                })
            };
            std::thread::sleep(std::time::Duration::from_millis(5 + (round * 7919) % 60));
            let before_cut = acked.load(Ordering::SeqCst);
            disk.cut().unwrap();
            writer.join().unwrap();
            let after_cut = acked.load(Ordering::SeqCst);
            runtime.block_on(disk.remount()).unwrap();
            let on_disk = std::fs::metadata(&path).unwrap().len();
            assert!(before_cut > 0, "round {round}: the writer synced nothing before the cut");
            if on_disk < before_cut {
                lost.push(format!(
                    "round {round}: {before_cut} bytes acknowledged before the cut, {on_disk} on the disk"
                ));
            }
            if on_disk < after_cut {
                late += 1;
            }
        }
        runtime.block_on(disk.unmount()).unwrap();
        eprintln!("rounds where a sync in flight at the cut returned success for lost bytes: {late} of 60");
        assert!(lost.is_empty(), "fdatasync-acknowledged bytes lost by the cut: {lost:?}");
    }
}
