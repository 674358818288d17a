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
//!
//! The parts: this file (the server and what an invocation comes to),
//! `process` (the binary as a child process), `readings` (its CPU time
//! and RSS from `/proc`) and `pool` (instances used as an event source
//! mapping uses them).

mod pool;
mod process;
mod readings;

pub use pool::{FunctionPool, PoolConfig, PoolReport};
pub use process::{
    binary_under_test, lambda_env, lambda_env_for, FunctionProcess, ProcessStats, RUNNER_VAR,
};
pub use readings::{clock_ticks_per_second, cpu_time_of, peak_rss_kib_of};

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
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
