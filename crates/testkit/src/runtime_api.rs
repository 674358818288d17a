//! A Lambda Runtime API server, so the real handler binary can be driven here.
//!
//! Lambda runs a custom runtime (`provided.al2023`) as a plain process that
//! long-polls the Runtime API (version 2018-06-01) at `AWS_LAMBDA_RUNTIME_API`:
//!
//! - `GET  /2018-06-01/runtime/invocation/next`: blocks until there is an
//!   event; answers with the event JSON and the headers
//!   `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms` (epoch
//!   milliseconds), `Lambda-Runtime-Invoked-Function-Arn` and
//!   `Lambda-Runtime-Trace-Id`;
//! - `POST /2018-06-01/runtime/invocation/{id}/response`: the result (JSON);
//! - `POST /2018-06-01/runtime/invocation/{id}/error`: a handler error, as
//!   `{"errorType": …, "errorMessage": …}`;
//! - `POST /2018-06-01/runtime/init/error`: start-up failed.
//!
//! [`RuntimeApi`] serves exactly that on `127.0.0.1:<free port>`, one per
//! function instance (one execution environment), as in Lambda.
//! [`FunctionProcess`] is the handler binary as a child process polling it,
//! with its peak RSS and CPU time read from `/proc`. [`FunctionPool`] is a set
//! of such instances used one batch at a time, the way Lambda runs an SQS
//! event source mapping with `MaximumConcurrency` N; its
//! [`invoker`](FunctionPool::invoker) plugs into
//! [`EventSource::drain`](crate::event_source::EventSource::drain).
//!
//! Lambda semantics kept: a handler error (`/error`) fails the whole batch but
//! keeps the instance; a timed-out invocation or a process that exits (crash,
//! SIGKILL, bad configuration) loses its instance, and the next invocation on
//! that slot starts a new process on a new Runtime API (a cold start).
//!
//! Linux only: CPU time and RSS come from `/proc`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

/// The function name used when none is given.
pub const DEFAULT_FUNCTION_NAME: &str = "exclusion-handler";
/// The account id in the invoked function ARN.
const ACCOUNT_ID: &str = "123456789012";
const PREFIX: &str = "/2018-06-01/runtime/";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

static IDS: AtomicU64 = AtomicU64::new(0);

/// A fresh id shaped like Lambda's request ids (a UUID).
fn request_id() -> String {
    let n = IDS.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let pid = u64::from(std::process::id());
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (nanos >> 16) as u32,
        (nanos & 0xffff) as u16,
        pid & 0xfff,
        (n >> 48) & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

// ------------------------------------------------------------------------
// What an invocation comes to
// ------------------------------------------------------------------------

/// A handler error or an init error, as the runtime reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionError {
    pub error_type: String,
    pub message: String,
}

impl fmt::Display for FunctionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

/// How the function answered an invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// `POST …/response`: the handler's result (a JSON string if the body
    /// was not JSON).
    Response(Value),
    /// `POST …/error`: the handler returned an error (Lambda: the whole
    /// invocation failed; the instance lives on).
    Error { error_type: String, message: String },
}

/// Why an invocation got no answer from the function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeError {
    /// No answer within the timeout. Lambda would now throw the execution
    /// environment away; so does [`FunctionPool`].
    TimedOut,
    /// The function process exited (crashed, was killed, or exited at
    /// start-up) before it answered.
    InstanceGone { reason: String },
    /// The runtime reported `POST /runtime/init/error`.
    InitFailed(FunctionError),
}

impl fmt::Display for InvokeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvokeError::TimedOut => write!(f, "the invocation timed out"),
            InvokeError::InstanceGone { reason } => {
                write!(f, "the function instance is gone: {reason}")
            }
            InvokeError::InitFailed(e) => write!(f, "the function failed to start: {e}"),
        }
    }
}

impl std::error::Error for InvokeError {}

// ------------------------------------------------------------------------
// The Runtime API server
// ------------------------------------------------------------------------

/// What the Runtime API knows about the process polling it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Instance {
    /// No process attached yet: invocations wait (for a process, or their timeout).
    Waiting,
    Running {
        pid: u32,
    },
    InitFailed(FunctionError),
    Exited {
        reason: String,
    },
}

impl Instance {
    fn gone(&self) -> Option<InvokeError> {
        match self {
            Instance::Waiting | Instance::Running { .. } => None,
            Instance::InitFailed(e) => Some(InvokeError::InitFailed(e.clone())),
            Instance::Exited { reason } => Some(InvokeError::InstanceGone {
                reason: reason.clone(),
            }),
        }
    }
}

type Reply = oneshot::Sender<Invocation>;

struct Pending {
    id: String,
    event: Bytes,
    deadline_ms: u64,
    trace_id: String,
    reply: Reply,
}

#[derive(Default)]
struct Counters {
    first_poll: Option<Instant>,
    polls: u64,
    init_errors: Vec<FunctionError>,
}

struct Shared {
    function_name: String,
    function_arn: String,
    queue_tx: mpsc::UnboundedSender<Pending>,
    /// Held by the one `/next` long-poll; `recv` is cancel-safe, so a poll
    /// whose connection goes away loses nothing.
    queue_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>,
    in_flight: Mutex<HashMap<String, Reply>>,
    instance: watch::Sender<Instance>,
    counters: Mutex<Counters>,
}

impl Shared {
    fn set_instance(&self, state: Instance) {
        self.instance.send_replace(state);
    }
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every
        // connection (and any pending long-poll) with it.
        self.server.abort();
    }
}

/// The Lambda Runtime API of one function instance, on `127.0.0.1:<port>`.
/// Clones share one server; it stops when the last clone is dropped.
#[derive(Clone)]
pub struct RuntimeApi {
    inner: Arc<Inner>,
}

impl RuntimeApi {
    /// Serves the Runtime API for a function named [`DEFAULT_FUNCTION_NAME`].
    pub async fn start() -> io::Result<Self> {
        Self::start_named(DEFAULT_FUNCTION_NAME).await
    }

    /// Serves the Runtime API of a function called `function_name` (it
    /// appears in the invoked function ARN), in a task of the current runtime.
    pub async fn start_named(function_name: &str) -> io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            function_name: function_name.to_owned(),
            function_arn: format!("arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:{function_name}"),
            queue_tx,
            queue_rx: tokio::sync::Mutex::new(queue_rx),
            in_flight: Mutex::new(HashMap::new()),
            instance: watch::Sender::new(Instance::Waiting),
            counters: Mutex::new(Counters::default()),
        });
        let server = tokio::spawn(serve(listener, shared.clone())).abort_handle();
        Ok(RuntimeApi {
            inner: Arc::new(Inner {
                shared,
                addr,
                server,
            }),
        })
    }

    /// `127.0.0.1:PORT`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.inner.addr.to_string()
    }

    pub fn function_name(&self) -> &str {
        &self.inner.shared.function_name
    }

    /// Invokes the function with `event` and waits for its answer, at most
    /// `timeout` (which also sets the deadline the function is told). The
    /// event waits in the API's queue until the process polls for it; if no
    /// process has been attached yet it waits for one.
    pub async fn invoke(&self, event: Value, timeout: Duration) -> Result<Invocation, InvokeError> {
        let body = Bytes::from(serde_json::to_vec(&event).expect("a JSON value serialises"));
        self.invoke_raw(body, timeout).await
    }

    /// [`RuntimeApi::invoke`] telling the function a deadline of its own
    /// (epoch milliseconds) instead of now + `timeout`: to reproduce an
    /// emulator that sends a fixed `Lambda-Runtime-Deadline-Ms` (cargo-lambda
    /// sends 600000).
    pub async fn invoke_with_deadline(
        &self,
        event: Value,
        timeout: Duration,
        deadline_ms: u64,
    ) -> Result<Invocation, InvokeError> {
        let body = Bytes::from(serde_json::to_vec(&event).expect("a JSON value serialises"));
        self.send(body, timeout, Some(deadline_ms)).await
    }

    /// [`RuntimeApi::invoke`] with the event's bytes as they are.
    pub async fn invoke_raw(
        &self,
        event: Bytes,
        timeout: Duration,
    ) -> Result<Invocation, InvokeError> {
        self.send(event, timeout, None).await
    }

    async fn send(
        &self,
        event: Bytes,
        timeout: Duration,
        deadline_ms: Option<u64>,
    ) -> Result<Invocation, InvokeError> {
        let shared = &self.inner.shared;
        let mut instance = shared.instance.subscribe();
        if let Some(gone) = instance.borrow().gone() {
            return Err(gone);
        }
        let id = request_id();
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            id: id.clone(),
            event,
            deadline_ms: deadline_ms.unwrap_or_else(|| epoch_ms(SystemTime::now() + timeout)),
            trace_id: trace_id(),
            reply,
        };
        if shared.queue_tx.send(pending).is_err() {
            return Err(InvokeError::InstanceGone {
                reason: "the runtime API has stopped".into(),
            });
        }
        let outcome = tokio::select! {
            // An answer that came in wins over an exit noticed at the same time.
            biased;
            answer = answer => answer.map_err(|_| InvokeError::InstanceGone {
                reason: "the runtime API dropped the invocation".into(),
            }),
            gone = instance.wait_for(|s| s.gone().is_some()) => {
                let err = match gone {
                    Ok(state) => state.gone().unwrap_or(InvokeError::TimedOut),
                    Err(_) => InvokeError::InstanceGone { reason: "the runtime API has stopped".into() },
                };
                Err(err)
            }
            _ = tokio::time::sleep(timeout) => Err(InvokeError::TimedOut),
        };
        if outcome.is_err() {
            // A late answer to this id now gets 410 Gone.
            lock(&shared.in_flight).remove(&id);
        }
        outcome
    }

    /// When the process first asked for an invocation (`GET …/next`): the
    /// end of its initialisation, as Lambda counts "Init Duration".
    pub fn first_poll(&self) -> Option<Instant> {
        lock(&self.inner.shared.counters).first_poll
    }

    /// How many times `…/next` was called.
    pub fn polls(&self) -> u64 {
        lock(&self.inner.shared.counters).polls
    }

    /// Every `POST …/init/error` received.
    pub fn init_errors(&self) -> Vec<FunctionError> {
        lock(&self.inner.shared.counters).init_errors.clone()
    }

    fn attach(&self, pid: u32) {
        self.inner.shared.set_instance(Instance::Running { pid });
    }

    fn shared(&self) -> Arc<Shared> {
        self.inner.shared.clone()
    }
}

/// An X-Ray style trace header (not sampled).
fn trace_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let n = IDS.fetch_add(1, Ordering::Relaxed);
    format!(
        "Root=1-{now:08x}-{:024x};Parent={:016x};Sampled=0",
        n,
        n ^ 0x5eed
    )
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(route(&shared, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn accepted() -> Response<Full<Bytes>> {
    reply(StatusCode::ACCEPTED, json!({"status": "OK"}))
}

fn error_reply(status: StatusCode, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        json!({"errorType": error_type, "errorMessage": message}),
    )
}

async fn route(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return error_reply(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("no route {path}"),
        );
    };
    let method = req.method().clone();
    match (method, rest) {
        (Method::GET, "invocation/next") => next(shared).await,
        (Method::POST, "init/error") => {
            let header = header(&req, "lambda-runtime-function-error-type");
            let body = body_of(req).await;
            let error = diagnostic(&body, header.as_deref().unwrap_or("Runtime.InitError"));
            lock(&shared.counters).init_errors.push(error.clone());
            shared.set_instance(Instance::InitFailed(error));
            accepted()
        }
        (Method::POST, rest) => {
            let Some(rest) = rest.strip_prefix("invocation/") else {
                return error_reply(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("no route {path}"),
                );
            };
            let (id, kind) = match rest.rsplit_once('/') {
                Some((id, kind @ ("response" | "error"))) if !id.is_empty() => {
                    (id.to_owned(), kind)
                }
                _ => {
                    return error_reply(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("no route {path}"),
                    )
                }
            };
            let header = header(&req, "lambda-runtime-function-error-type");
            let body = body_of(req).await;
            let Some(waiting) = lock(&shared.in_flight).remove(&id) else {
                // Timed out (or never issued): as RAPID does with a stale response.
                return error_reply(
                    StatusCode::GONE,
                    "InvalidRequestID",
                    &format!("invocation {id} is not in progress"),
                );
            };
            let answer =
                if kind == "response" {
                    Invocation::Response(serde_json::from_slice(&body).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&body).into_owned())
                    }))
                } else {
                    let e = diagnostic(&body, header.as_deref().unwrap_or("Unhandled"));
                    Invocation::Error {
                        error_type: e.error_type,
                        message: e.message,
                    }
                };
            let _ = waiting.send(answer);
            accepted()
        }
        _ => error_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("no route {} {path}", req.method()),
        ),
    }
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn body_of(req: Request<Incoming>) -> Bytes {
    req.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}

/// `{"errorType": …, "errorMessage": …}`, or the raw body as the message.
fn diagnostic(body: &[u8], fallback_type: &str) -> FunctionError {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => FunctionError {
            error_type: v
                .get("errorType")
                .and_then(Value::as_str)
                .unwrap_or(fallback_type)
                .to_owned(),
            message: v
                .get("errorMessage")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string()),
        },
        Err(_) => FunctionError {
            error_type: fallback_type.to_owned(),
            message: String::from_utf8_lossy(body).into_owned(),
        },
    }
}

/// `GET …/invocation/next`: waits for the next invocation.
async fn next(shared: &Shared) -> Response<Full<Bytes>> {
    {
        let mut c = lock(&shared.counters);
        c.polls += 1;
        c.first_poll.get_or_insert_with(Instant::now);
    }
    let mut queue = shared.queue_rx.lock().await;
    loop {
        let Some(p) = queue.recv().await else {
            return error_reply(
                StatusCode::GONE,
                "ShuttingDown",
                "the runtime API has stopped",
            );
        };
        if p.reply.is_closed() {
            // Its caller gave up (timed out) before the function asked.
            continue;
        }
        lock(&shared.in_flight).insert(p.id.clone(), p.reply);
        let mut response = Response::new(Full::new(p.event));
        let h = response.headers_mut();
        let value = |s: &str| {
            hyper::header::HeaderValue::from_str(s)
                .unwrap_or_else(|_| hyper::header::HeaderValue::from_static("invalid"))
        };
        h.insert(hyper::header::CONTENT_TYPE, value("application/json"));
        h.insert("lambda-runtime-aws-request-id", value(&p.id));
        h.insert(
            "lambda-runtime-deadline-ms",
            value(&p.deadline_ms.to_string()),
        );
        h.insert(
            "lambda-runtime-invoked-function-arn",
            value(&shared.function_arn),
        );
        h.insert("lambda-runtime-trace-id", value(&p.trace_id));
        return response;
    }
}

// ------------------------------------------------------------------------
// /proc readings
// ------------------------------------------------------------------------

/// Clock ticks per second for `/proc/<pid>/stat`, from the auxiliary vector
/// (`AT_CLKTCK`); 100, Linux's value everywhere, if it cannot be read.
pub fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        const AT_CLKTCK: u64 = 17;
        let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
            return 100;
        };
        auxv.chunks_exact(16)
            .map(|pair| {
                let k = u64::from_ne_bytes(pair[..8].try_into().expect("8 bytes"));
                let v = u64::from_ne_bytes(pair[8..].try_into().expect("8 bytes"));
                (k, v)
            })
            .find(|(k, _)| *k == AT_CLKTCK)
            .map(|(_, v)| v)
            .filter(|v| *v > 0)
            .unwrap_or(100)
    })
}

/// `VmHWM` (peak resident set) of a live process, in KiB.
pub fn peak_rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User plus system CPU time of a live process (`utime + stime`).
pub fn cpu_time_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = clock_ticks_per_second();
    Some(Duration::from_nanos(
        (utime + stime) * 1_000_000_000 / ticks,
    ))
}

// ------------------------------------------------------------------------
// The handler binary as a child process
// ------------------------------------------------------------------------

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

static LOGS: AtomicU64 = AtomicU64::new(0);

fn log_file_in(dir: &Path, api: &RuntimeApi) -> PathBuf {
    let n = LOGS.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(
        "{}-{}-{n}.log",
        api.function_name(),
        std::process::id()
    ))
}

impl FunctionProcess {
    /// Starts `binary` against `api` with a clean environment: the Lambda
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
        let mut command = Command::new(binary);
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

// ------------------------------------------------------------------------
// A pool of instances: how Lambda runs an SQS event source mapping
// ------------------------------------------------------------------------

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
