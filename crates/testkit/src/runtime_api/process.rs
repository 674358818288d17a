//! The handler binary as a child process polling its own Runtime API.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::readings::{cpu_time_of, peak_rss_kib_of};
use super::{epoch_ms, lock, Instance, RuntimeApi, IDS};

/// Readings of a process, kept after it is gone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessStats {
    pub peak_rss_kib: Option<u64>,
    pub cpu_time: Option<Duration>,
}

struct ProcessShared {
    child: Mutex<Child>,
    pid: u32,
    /// The last readings taken while the process was alive.
    last: Mutex<ProcessStats>,
    exited: watch::Sender<Option<String>>,
}

impl ProcessShared {
    /// Reads /proc while the process exists (also as a zombie: then the
    /// VmHWM line is missing and the last good value is kept).
    fn sample(&self) -> ProcessStats {
        let mut last = lock(&self.last);
        if let Some(rss) = peak_rss_kib_of(self.pid) {
            last.peak_rss_kib = Some(rss);
        }
        if let Some(cpu) = cpu_time_of(self.pid) {
            last.cpu_time = Some(cpu);
        }
        *last
    }

    /// Reaps the child if it has exited; returns how it ended.
    fn poll_exit(&self) -> Option<String> {
        if let Some(done) = self.exited.borrow().clone() {
            return Some(done);
        }
        self.sample();
        let status = lock(&self.child).try_wait().ok().flatten()?;
        let reason = format!("process {} exited: {status}", self.pid);
        self.exited.send_replace(Some(reason.clone()));
        Some(reason)
    }
}

/// The real handler binary, started as a Lambda custom runtime would be,
/// polling one [`RuntimeApi`]. Killed (SIGKILL) when dropped.
pub struct FunctionProcess {
    shared: Arc<ProcessShared>,
    log: PathBuf,
    /// The log is a temp file of ours, removed on drop.
    remove_log: bool,
    spawned_at: Instant,
    watcher: AbortHandle,
}

/// What Lambda puts in a function's environment that the runtime reads.
pub fn lambda_env(api: &RuntimeApi) -> Vec<(String, String)> {
    lambda_env_for(&api.address(), api.function_name())
}

/// [`lambda_env`] for a Runtime API served elsewhere (`address` is
/// `host:port[/path]`, as `AWS_LAMBDA_RUNTIME_API` takes it).
pub fn lambda_env_for(address: &str, function_name: &str) -> Vec<(String, String)> {
    let name = function_name.to_owned();
    let stream = format!(
        "2026/11/22/[$LATEST]{:032x}",
        (u128::from(epoch_ms(SystemTime::now())) << 32)
            | u128::from(IDS.fetch_add(1, Ordering::Relaxed))
    );
    [
        ("AWS_LAMBDA_RUNTIME_API", address.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", stream),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("TZ", ":UTC".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The function binary a test runs: the file `var` names if it is set (the
/// `bootstrap` unpacked from a release zip, which scripts/check-dist.sh
/// tests as deployed), else `built`, this build's binary.
pub fn binary_under_test(var: &str, built: &str) -> PathBuf {
    std::env::var_os(var)
        .map(Into::into)
        .unwrap_or_else(|| built.into())
}

/// The variable naming a command that runs each function binary, e.g.
/// `qemu-aarch64 -L /usr/aarch64-linux-gnu` for the arm64 `bootstrap` of a
/// release zip on x86_64 (scripts/check-dist.sh). Split on whitespace;
/// the binary's path is its last argument.
pub const RUNNER_VAR: &str = "BOOTSTRAP_RUNNER";

/// [`RUNNER_VAR`]'s program (resolved on this process's `PATH`, since the
/// function's environment has none) and arguments, if it is set.
fn runner() -> Option<(PathBuf, Vec<String>)> {
    let spec = std::env::var(RUNNER_VAR).ok()?;
    let mut words = spec.split_whitespace().map(str::to_owned);
    let program = words.next()?;
    let resolved = if program.contains('/') {
        PathBuf::from(&program)
    } else {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|dir| dir.join(&program))
            .find(|candidate| candidate.is_file())
            .unwrap_or_else(|| PathBuf::from(&program))
    };
    Some((resolved, words.collect()))
}

static LOGS: AtomicU64 = AtomicU64::new(0);

pub(super) fn log_file_in(dir: &Path, api: &RuntimeApi) -> PathBuf {
    let n = LOGS.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(
        "{}-{}-{n}.log",
        api.function_name(),
        std::process::id()
    ))
}

impl FunctionProcess {
    /// Starts `binary` (through [`RUNNER_VAR`]'s command if that is set)
    /// against `api` with a clean environment: the Lambda
    /// variables of [`lambda_env`] (including the dummy AWS credentials and
    /// `AWS_EC2_METADATA_DISABLED=true`), then `env` on top. Nothing is
    /// inherited from this process's environment, so endpoints
    /// (`AWS_ENDPOINT_URL_*`) must be passed in `env`. Stdout and stderr go
    /// to one log file in the temp directory ([`FunctionProcess::log_path`]),
    /// removed when this is dropped.
    ///
    /// Must be called inside a Tokio runtime (a task watches for the exit).
    pub fn spawn(binary: &Path, api: &RuntimeApi, env: &[(String, String)]) -> io::Result<Self> {
        let log = log_file_in(&std::env::temp_dir(), api);
        let mut process = Self::spawn_logging_to(binary, api, env, &log)?;
        process.remove_log = true;
        Ok(process)
    }

    /// [`FunctionProcess::spawn`] with the log file chosen by the caller
    /// (truncated, and kept).
    pub fn spawn_logging_to(
        binary: &Path,
        api: &RuntimeApi,
        env: &[(String, String)],
        log: &Path,
    ) -> io::Result<Self> {
        Self::start(binary, lambda_env(api), env, log, Some(api))
    }

    /// Starts `binary` against a Runtime API that is not a [`RuntimeApi`]
    /// (another emulator, such as cargo-lambda's). [`RuntimeApi`]'s
    /// invocations know nothing of this process.
    pub fn spawn_external(
        binary: &Path,
        runtime_api: &str,
        function_name: &str,
        env: &[(String, String)],
        log: &Path,
    ) -> io::Result<Self> {
        Self::start(
            binary,
            lambda_env_for(runtime_api, function_name),
            env,
            log,
            None,
        )
    }

    fn start(
        binary: &Path,
        lambda: Vec<(String, String)>,
        env: &[(String, String)],
        log: &Path,
        api: Option<&RuntimeApi>,
    ) -> io::Result<Self> {
        let out = File::create(log)?;
        let err = out.try_clone()?;
        let mut command = match runner() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        command
            .env_clear()
            .envs(lambda)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let spawned_at = Instant::now();
        let child = command.spawn()?;
        let pid = child.id();
        let shared = Arc::new(ProcessShared {
            child: Mutex::new(child),
            pid,
            last: Mutex::new(ProcessStats::default()),
            exited: watch::Sender::new(None),
        });
        if let Some(api) = api {
            api.attach(pid);
        }
        let api_shared = api.map(RuntimeApi::shared);
        let watched = shared.clone();
        let watcher = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Some(reason) = watched.poll_exit() {
                    let Some(api_shared) = &api_shared else { break };
                    api_shared.instance.send_if_modified(|s| {
                        if matches!(s, Instance::Running { pid: p } if *p == watched.pid) {
                            *s = Instance::Exited { reason };
                            true
                        } else {
                            false
                        }
                    });
                    break;
                }
            }
        })
        .abort_handle();
        Ok(FunctionProcess {
            shared,
            log: log.to_owned(),
            remove_log: false,
            spawned_at,
            watcher,
        })
    }

    pub fn pid(&self) -> u32 {
        self.shared.pid
    }

    /// When `spawn` started the process.
    pub fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    /// SIGKILLs the process (if it still runs) and reaps it. The readings
    /// taken just before stay available.
    pub fn kill(&self) {
        if self.shared.exited.borrow().is_some() {
            return;
        }
        self.shared.sample();
        let status = {
            let mut child = lock(&self.shared.child);
            let _ = child.kill();
            child.wait()
        };
        let reason = match status {
            Ok(s) => format!("process {} was killed: {s}", self.shared.pid),
            Err(e) => format!("process {} was killed (wait failed: {e})", self.shared.pid),
        };
        self.shared.exited.send_if_modified(|s| {
            if s.is_none() {
                *s = Some(reason);
                true
            } else {
                false
            }
        });
        // The watcher reports the exit to the Runtime API within one tick.
    }

    /// How the process ended, if it has (checked now).
    pub fn exit_status(&self) -> Option<String> {
        self.shared.poll_exit()
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub async fn wait_exit(&self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(done) = self.shared.poll_exit() {
                return Some(done);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Peak resident set size (`VmHWM`) in KiB: read now if the process
    /// lives, else the last reading taken while it did.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.stats().peak_rss_kib
    }

    /// User + system CPU time, read as for [`FunctionProcess::peak_rss_kib`].
    /// `/proc/<pid>/stat` counts in clock ticks ([`clock_ticks_per_second`],
    /// 100 on Linux), so the resolution is 10 ms.
    pub fn cpu_time(&self) -> Option<Duration> {
        self.stats().cpu_time
    }

    pub fn stats(&self) -> ProcessStats {
        if self.shared.exited.borrow().is_none() {
            self.shared.sample()
        } else {
            *lock(&self.shared.last)
        }
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        self.kill();
        self.watcher.abort();
        if self.remove_log {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
