//! A pool of instances: how Lambda runs an SQS event source mapping with
//! `MaximumConcurrency` N.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::process::{log_file_in, FunctionProcess, ProcessStats};
use super::{lock, Invocation, RuntimeApi, DEFAULT_FUNCTION_NAME};

/// How to start the function's instances.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub binary: PathBuf,
    /// The function's own environment (on top of [`lambda_env`]).
    pub env: Vec<(String, String)>,
    /// Instances at most: the event source mapping's `MaximumConcurrency`.
    pub size: usize,
    /// The function timeout; also sets each invocation's deadline.
    pub timeout: Duration,
    pub function_name: String,
    /// Where each process's log goes (kept); `None`: temp files removed
    /// with their process.
    pub log_dir: Option<PathBuf>,
}

impl PoolConfig {
    pub fn new(binary: impl Into<PathBuf>, env: Vec<(String, String)>, size: usize) -> Self {
        PoolConfig {
            binary: binary.into(),
            env,
            size: size.max(1),
            timeout: Duration::from_secs(60),
            function_name: DEFAULT_FUNCTION_NAME.to_owned(),
            log_dir: None,
        }
    }
}

struct Environment {
    api: RuntimeApi,
    process: Arc<FunctionProcess>,
}

#[derive(Default)]
struct Slot {
    env: Mutex<Option<Environment>>,
    /// The process now serving this slot, for kills from outside.
    current: Mutex<Option<Arc<FunctionProcess>>>,
    busy: AtomicBool,
}

/// Totals over a pool's life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolReport {
    /// Processes started (each a cold start).
    pub cold_starts: u64,
    pub invocations: u64,
    /// Invocations answered through `/error`.
    pub function_errors: u64,
    /// Invocations lost with their instance (exit, kill or timeout).
    pub lost_invocations: u64,
    /// The largest `VmHWM` of any process the pool ran, in KiB.
    pub peak_rss_kib: Option<u64>,
    /// CPU time of all processes together.
    pub cpu_time: Duration,
    /// Wall time spent in invocations, all instances together: what Lambda
    /// bills as duration (before rounding each invocation up to 1 ms).
    pub invocation_time: Duration,
    /// The longest single invocation.
    pub longest_invocation: Duration,
}

struct PoolInner {
    config: PoolConfig,
    slots: Vec<Slot>,
    free: Mutex<Vec<usize>>,
    permits: Semaphore,
    retired: Mutex<Vec<ProcessStats>>,
    cold_starts: AtomicU64,
    invocations: AtomicU64,
    function_errors: AtomicU64,
    lost: AtomicU64,
    invocation_nanos: AtomicU64,
    longest_nanos: AtomicU64,
}

/// Up to `size` instances of the function, each serving one batch at a
/// time, as Lambda does for an SQS event source with `MaximumConcurrency`.
/// Instances start lazily (a cold start on first use) and are replaced
/// after their process dies or an invocation times out.
#[derive(Clone)]
pub struct FunctionPool {
    inner: Arc<PoolInner>,
}

impl FunctionPool {
    pub fn new(config: PoolConfig) -> Self {
        let size = config.size.max(1);
        FunctionPool {
            inner: Arc::new(PoolInner {
                slots: (0..size).map(|_| Slot::default()).collect(),
                free: Mutex::new((0..size).rev().collect()),
                permits: Semaphore::new(size),
                retired: Mutex::new(Vec::new()),
                cold_starts: AtomicU64::new(0),
                invocations: AtomicU64::new(0),
                function_errors: AtomicU64::new(0),
                lost: AtomicU64::new(0),
                invocation_nanos: AtomicU64::new(0),
                longest_nanos: AtomicU64::new(0),
                config,
            }),
        }
    }

    /// Starts every instance now instead of on first use (so a benchmark's
    /// clock does not include cold starts). Waits until each has polled
    /// `…/next`, at most `limit`.
    pub async fn warm_up(&self, limit: Duration) -> io::Result<()> {
        let deadline = Instant::now() + limit;
        for slot in &self.inner.slots {
            let existing = lock(&slot.env).as_ref().map(|e| e.api.clone());
            let api = match existing {
                Some(api) => api,
                None => {
                    let env = self.start_environment(slot).await?;
                    let api = env.api.clone();
                    *lock(&slot.env) = Some(env);
                    api
                }
            };
            while api.first_poll().is_none() {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "an instance did not poll the runtime API in time",
                    ));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Ok(())
    }

    async fn start_environment(&self, slot: &Slot) -> io::Result<Environment> {
        let api = RuntimeApi::start_named(&self.inner.config.function_name).await?;
        let config = &self.inner.config;
        let process = Arc::new(match &config.log_dir {
            Some(dir) => {
                let log = log_file_in(dir, &api);
                FunctionProcess::spawn_logging_to(&config.binary, &api, &config.env, &log)?
            }
            None => FunctionProcess::spawn(&config.binary, &api, &config.env)?,
        });
        *lock(&slot.current) = Some(process.clone());
        self.inner.cold_starts.fetch_add(1, Ordering::Relaxed);
        Ok(Environment { api, process })
    }

    fn retire(&self, slot: &Slot, env: Environment) {
        env.process.kill();
        let stats = env.process.stats();
        lock(&self.inner.retired).push(stats);
        let mut current = lock(&slot.current);
        if current
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, &env.process))
        {
            *current = None;
        }
    }

    /// One SQS batch through a free instance. `Err` when the function
    /// failed the whole batch: a handler error, a timeout or a lost instance.
    pub async fn invoke(&self, event: SqsEvent) -> Result<SqsBatchResponse, String> {
        let inner = &self.inner;
        let _permit = inner
            .permits
            .acquire()
            .await
            .map_err(|_| "the pool is closed".to_owned())?;
        let index = lock(&inner.free).pop().expect("a permit means a free slot");
        let slot = &inner.slots[index];
        let result = self.invoke_on(slot, event).await;
        lock(&inner.free).push(index);
        result
    }

    async fn invoke_on(&self, slot: &Slot, event: SqsEvent) -> Result<SqsBatchResponse, String> {
        let inner = &self.inner;
        let mut kept = lock(&slot.env).take();
        if let Some(old) = kept.take() {
            if old.process.exit_status().is_some() {
                self.retire(slot, old);
            } else {
                kept = Some(old);
            }
        }
        let env = match kept {
            Some(env) => env,
            None => self
                .start_environment(slot)
                .await
                .map_err(|e| format!("could not start the function: {e}"))?,
        };
        inner.invocations.fetch_add(1, Ordering::Relaxed);
        let event = serde_json::to_value(&event).map_err(|e| e.to_string())?;
        slot.busy.store(true, Ordering::SeqCst);
        let started = Instant::now();
        let outcome = env.api.invoke(event, inner.config.timeout).await;
        let took = started.elapsed().as_nanos() as u64;
        slot.busy.store(false, Ordering::SeqCst);
        inner.invocation_nanos.fetch_add(took, Ordering::Relaxed);
        inner.longest_nanos.fetch_max(took, Ordering::Relaxed);
        match outcome {
            Ok(Invocation::Response(value)) => {
                *lock(&slot.env) = Some(env);
                serde_json::from_value::<SqsBatchResponse>(value).map_err(|e| {
                    format!("the function's response is not an SQS batch response: {e}")
                })
            }
            Ok(Invocation::Error {
                error_type,
                message,
            }) => {
                inner.function_errors.fetch_add(1, Ordering::Relaxed);
                *lock(&slot.env) = Some(env);
                Err(format!("{error_type}: {message}"))
            }
            Err(e) => {
                inner.lost.fetch_add(1, Ordering::Relaxed);
                self.retire(slot, env);
                Err(e.to_string())
            }
        }
    }

    /// `invoke` as the closure [`EventSource::drain`](crate::event_source::EventSource::drain) takes.
    pub fn invoker(
        &self,
    ) -> impl Fn(SqsEvent) -> crate::event_source::Invocation + Send + Sync + Clone + 'static {
        let pool = self.clone();
        move |event| {
            let pool = pool.clone();
            Box::pin(async move { pool.invoke(event).await })
        }
    }

    /// SIGKILLs the processes that are in the middle of an invocation now;
    /// returns their pids.
    pub fn kill_busy(&self) -> Vec<u32> {
        let mut killed = Vec::new();
        for slot in &self.inner.slots {
            if slot.busy.load(Ordering::SeqCst) {
                if let Some(p) = lock(&slot.current).clone() {
                    p.kill();
                    killed.push(p.pid());
                }
            }
        }
        killed
    }

    /// Pids of the processes alive now.
    pub fn pids(&self) -> Vec<u32> {
        self.inner
            .slots
            .iter()
            .filter_map(|s| lock(&s.current).as_ref().map(|p| p.pid()))
            .collect()
    }

    /// Totals so far, live processes read now.
    pub fn report(&self) -> PoolReport {
        let inner = &self.inner;
        let mut stats: Vec<ProcessStats> = lock(&inner.retired).clone();
        for slot in &inner.slots {
            if let Some(p) = lock(&slot.current).as_ref() {
                stats.push(p.stats());
            }
        }
        PoolReport {
            cold_starts: inner.cold_starts.load(Ordering::Relaxed),
            invocations: inner.invocations.load(Ordering::Relaxed),
            function_errors: inner.function_errors.load(Ordering::Relaxed),
            lost_invocations: inner.lost.load(Ordering::Relaxed),
            peak_rss_kib: stats.iter().filter_map(|s| s.peak_rss_kib).max(),
            cpu_time: stats.iter().filter_map(|s| s.cpu_time).sum(),
            invocation_time: Duration::from_nanos(inner.invocation_nanos.load(Ordering::Relaxed)),
            longest_invocation: Duration::from_nanos(inner.longest_nanos.load(Ordering::Relaxed)),
        }
    }

    /// Kills every process (waiting for none); the pool can be used again.
    pub fn shutdown(&self) {
        for slot in &self.inner.slots {
            let env = lock(&slot.env).take();
            if let Some(env) = env {
                self.retire(slot, env);
            }
        }
    }
}
