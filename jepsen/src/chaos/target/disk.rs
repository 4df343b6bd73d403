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
}
