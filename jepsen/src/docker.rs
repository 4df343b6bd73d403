//! The `docker` CLI, and a [`Scope`] that owns what a test creates.
//!
//! Everything a scope creates carries the labels `hypercache-jepsen=1` and
//! `hypercache-jepsen.pid=<test process id>`. Dropping the scope removes it all; a scope created
//! later also sweeps what a killed test process left behind (its pid no longer exists).

use hypercache_proto::poison::lock;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

pub const LABEL: &str = "hypercache-jepsen";
const PID_LABEL: &str = "hypercache-jepsen.pid";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("docker {args}: {detail}")]
    Failed { args: String, detail: String },
    #[error("cannot run docker ({0}); the container tests need a Docker engine")]
    Missing(std::io::Error),
}

/// Runs `docker <args>` and returns its stdout, trimmed; a non-zero exit is an error carrying
/// stderr.
pub fn docker<S: AsRef<str>>(args: &[S]) -> Result<String, DockerError> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let out = Command::new("docker").args(&args).output().map_err(DockerError::Missing)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(DockerError::Failed {
            args: args.join(" "),
            detail: format!("{} ({})", String::from_utf8_lossy(&out.stderr).trim(), out.status),
        })
    }
}

/// True when a Docker engine answers.
pub fn available() -> Result<(), DockerError> {
    docker(&["version", "--format", "{{.Server.Version}}"]).map(|_| ())
}

/// One container to start.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub hostname: Option<String>,
    pub network: Option<String>,
    pub ip: Option<String>,
    pub aliases: Vec<String>,
    /// (volume, mount path)
    pub volumes: Vec<(String, String)>,
    pub entrypoint: Option<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Owns the containers, networks and volumes a test creates; removes them when dropped.
pub struct Scope {
    prefix: String,
    containers: Mutex<Vec<String>>,
    networks: Mutex<Vec<String>>,
    volumes: Mutex<Vec<String>>,
}

impl Scope {
    /// A scope whose resource names start with `hcj-<test>-<pid>`.
    pub fn new(test: &str) -> Result<Scope, DockerError> {
        available()?;
        sweep_leftovers();
        Ok(Scope {
            prefix: format!("hcj-{test}-{}", std::process::id()),
            containers: Mutex::new(Vec::new()),
            networks: Mutex::new(Vec::new()),
            volumes: Mutex::new(Vec::new()),
        })
    }

    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// The `docker run` label arguments every container of a scope carries.
    pub fn labels() -> Vec<String> {
        vec!["--label".into(), format!("{LABEL}=1"), "--label".into(), format!("{PID_LABEL}={}", std::process::id())]
    }

    /// Creates a bridge network with its own /24 subnet (containers may then be given fixed
    /// IPs) and returns its name and subnet (`a.b.c.0/24`). Subnets are picked in 10.128.0.0/9
    /// from the process id and clock; one that overlaps an existing network is skipped.
    pub fn network(&self, suffix: &str) -> Result<(String, String), DockerError> {
        let name = self.name(suffix);
        let seed = std::process::id() as u64
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
        let mut last = None;
        for attempt in 0..32u64 {
            let n = seed.wrapping_add(attempt.wrapping_mul(7919)) % (128 * 256);
            let subnet = format!("10.{}.{}.0/24", 128 + n / 256, n % 256);
            let mut args = vec!["network".to_string(), "create".into(), "--subnet".into(), subnet.clone()];
            args.extend(Self::labels());
            args.push(name.clone());
            match docker(&args) {
                Ok(_) => {
                    lock(&self.networks).push(name.clone());
                    return Ok((name, subnet));
                }
                Err(e) if e.to_string().contains("overlap") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(DockerError::Failed { args: "network create".into(), detail: "no free subnet".into() }))
    }

    /// Creates (or reuses) a named volume.
    pub fn volume(&self, suffix: &str) -> Result<String, DockerError> {
        let name = self.name(suffix);
        if lock(&self.volumes).contains(&name) {
            return Ok(name);
        }
        let mut args = vec!["volume".to_string(), "create".into()];
        args.extend(Self::labels());
        args.push(name.clone());
        docker(&args)?;
        lock(&self.volumes).push(name.clone());
        Ok(name)
    }

    /// Removes a volume now (its container must be gone).
    pub fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        docker(&["volume", "rm", "-f", name])?;
        lock(&self.volumes).retain(|v| v != name);
        Ok(())
    }

    /// Takes a container started elsewhere (with [`Scope::labels`]) into the scope: dropping
    /// the scope removes it.
    pub fn track(&self, name: &str) {
        lock(&self.containers).push(name.to_string());
    }

    /// Forgets a container removed elsewhere.
    pub fn untrack(&self, name: &str) {
        lock(&self.containers).retain(|c| c != name);
    }

    /// Starts a detached container.
    pub fn run(&self, spec: &ContainerSpec) -> Result<(), DockerError> {
        let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), spec.name.clone()];
        args.extend(Self::labels());
        if let Some(h) = &spec.hostname {
            args.extend(["--hostname".into(), h.clone()]);
        }
        if let Some(n) = &spec.network {
            args.extend(["--network".into(), n.clone()]);
        }
        if let Some(ip) = &spec.ip {
            args.extend(["--ip".into(), ip.clone()]);
        }
        for a in &spec.aliases {
            args.extend(["--network-alias".into(), a.clone()]);
        }
        for (vol, path) in &spec.volumes {
            args.extend(["-v".into(), format!("{vol}:{path}")]);
        }
        for (k, v) in &spec.env {
            args.extend(["-e".into(), format!("{k}={v}")]);
        }
        if let Some(e) = &spec.entrypoint {
            args.extend(["--entrypoint".into(), e.clone()]);
        }
        args.push(spec.image.clone());
        args.extend(spec.args.iter().cloned());
        lock(&self.containers).push(spec.name.clone());
        docker(&args).map(|_| ())
    }

    /// Runs a container to completion (removed afterwards) and returns its stdout, or an error
    /// with its stderr.
    pub fn run_once(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        self.run(spec)?;
        let code = docker(&["wait", &spec.name])?;
        let out = Command::new("docker").args(["logs", &spec.name]).output().map_err(DockerError::Missing)?;
        let _ = docker(&["rm", "-f", &spec.name]);
        lock(&self.containers).retain(|c| c != &spec.name);
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if code.trim() == "0" {
            Ok(stdout)
        } else {
            Err(DockerError::Failed {
                args: format!("run {}", spec.args.join(" ")),
                detail: format!("exit {code}: {} {}", String::from_utf8_lossy(&out.stderr).trim(), stdout),
            })
        }
    }

    /// Stops a container with SIGTERM, waiting up to `grace` before SIGKILL.
    pub fn stop(&self, name: &str, grace: Duration) -> Result<(), DockerError> {
        docker(&["stop", "-t", &grace.as_secs().max(1).to_string(), name]).map(|_| ())
    }

    /// Removes a container (killing it if it runs). Its volumes stay.
    pub fn remove(&self, name: &str) -> Result<(), DockerError> {
        docker(&["rm", "-f", name])?;
        lock(&self.containers).retain(|c| c != name);
        Ok(())
    }

    /// The last `lines` lines of a container's output (stdout and stderr).
    pub fn logs(&self, name: &str, lines: usize) -> String {
        match Command::new("docker").args(["logs", "--tail", &lines.to_string(), name]).output() {
            Ok(out) => format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
            Err(e) => format!("(no logs: {e})"),
        }
    }

    /// Whether the container is running; None if docker cannot tell (e.g. it is gone).
    pub fn running(&self, name: &str) -> Option<bool> {
        docker(&["inspect", "-f", "{{.State.Running}}", name]).ok().map(|s| s == "true")
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for c in lock(&self.containers).iter() {
                eprintln!("==== last log lines of {c}\n{}", self.logs(c, 200));
            }
        }
        for c in lock(&self.containers).drain(..) {
            let _ = docker(&["rm", "-f", "-v", &c]);
        }
        for v in lock(&self.volumes).drain(..) {
            let _ = docker(&["volume", "rm", "-f", &v]);
        }
        for n in lock(&self.networks).drain(..) {
            let _ = docker(&["network", "rm", &n]);
        }
    }
}

/// Removes containers, volumes and networks labelled by a test process that no longer exists.
fn sweep_leftovers() {
    let alive = |pid: &str| pid.parse::<i32>().is_ok_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
    let list = |args: &[&str]| docker(args).unwrap_or_default();
    let format = format!("{{{{.ID}}}} {{{{.Label \"{PID_LABEL}\"}}}}");
    let filter = format!("label={LABEL}");
    let dead = |text: String| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, pid)| !alive(pid))
            .map(|(id, _)| id.to_string())
            .collect()
    };
    for id in dead(list(&["ps", "-a", "--filter", &filter, "--format", &format])) {
        let _ = docker(&["rm", "-f", "-v", &id]);
    }
    let vformat = format!("{{{{.Name}}}} {{{{.Label \"{PID_LABEL}\"}}}}");
    for id in dead(list(&["volume", "ls", "--filter", &filter, "--format", &vformat])) {
        let _ = docker(&["volume", "rm", "-f", &id]);
    }
    for id in dead(list(&["network", "ls", "--filter", &filter, "--format", &format])) {
        let _ = docker(&["network", "rm", &id]);
    }
}
