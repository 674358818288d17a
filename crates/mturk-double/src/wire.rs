//! HTTP/1.1 and AWS JSON 1.1 framing: the accept loop, request parsing,
//! fault application and response encoding.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::api::{dispatch, OPERATIONS};
use crate::error::ApiError;
use crate::faults::Fault;
use crate::ids::request_id;
use crate::notify::PendingDelivery;
use crate::{Call, Outcome, Shared};

/// The `X-Amz-Target` prefix of MTurk's requester API.
pub const TARGET_PREFIX: &str = "MTurkRequesterServiceV20170117.";
pub(crate) const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";

type Body = Full<Bytes>;

/// Returned from the service to make hyper close the connection without
/// writing a response.
#[derive(Debug)]
struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

/// Accepts connections until the task is aborted. Connection tasks live in a
/// `JoinSet` owned by this task, so aborting it also ends open keep-alive
/// connections instead of leaving them answering after `shutdown`.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) -> Infallible {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, shared.clone()));
                }
                Err(error) => {
                    // Typically EMFILE under a load test; back off instead of spinning.
                    warn!(%error, "mturk-double: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    // Small request/response pairs on keep-alive connections would otherwise
    // meet Nagle + delayed ACK and take ~40 ms each.
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%error, "mturk-double: set_nodelay failed");
    }
    let service = service_fn(move |request| handle(shared.clone(), request));
    if let Err(error) = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        debug!(%error, "mturk-double: connection ended with an error");
    }
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Body>, DropConnection> {
    let (parts, body) = request.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        // The client went away mid-body: nobody to answer.
        Err(_) => return Err(DropConnection),
    };
    let head = Head {
        method_is_post: parts.method == Method::POST,
        path: parts.uri.path().to_owned(),
        content_type: parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        target: parts
            .headers
            .get("x-amz-target")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    };
    if let Some(gate) = shared.gate_for(head.operation()) {
        gate.arrived.add_permits(1);
        if let Ok(permit) = gate.open.acquire().await {
            permit.forget();
        }
    }
    let plan = shared.decide(&head, &bytes, SystemTime::now());
    for pending in plan.deliveries {
        shared.deliver(pending).await;
    }
    if !plan.hold.is_zero() {
        tokio::time::sleep(plan.hold).await;
    }
    plan.reply.ok_or(DropConnection)
}

pub(crate) struct Head {
    pub method_is_post: bool,
    pub path: String,
    pub content_type: Option<String>,
    pub target: Option<String>,
}

impl Head {
    /// The operation name as recorded and as matched by faults: the target
    /// without MTurk's prefix, or the whole header if it lacks the prefix.
    pub(crate) fn operation(&self) -> &str {
        match &self.target {
            Some(target) => target.strip_prefix(TARGET_PREFIX).unwrap_or(target),
            None => "",
        }
    }
}

pub(crate) struct Plan {
    pub reply: Option<Response<Body>>,
    pub hold: Duration,
    pub deliveries: Vec<PendingDelivery>,
}

fn response(
    status: u16,
    content_type: &'static str,
    body: String,
    request_id: &str,
) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-RequestId", value);
    }
    response
}

fn error_response(error: &ApiError, request_id: &str) -> Response<Body> {
    response(
        error.status(),
        JSON_CONTENT_TYPE,
        error.body().to_string(),
        request_id,
    )
}

fn content_type_ok(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case(JSON_CONTENT_TYPE))
}

/// Protocol checks, then the operation itself.
pub(crate) fn answer(
    state: &mut crate::State,
    head: &Head,
    bytes: &[u8],
    now: SystemTime,
) -> Result<crate::api::Reply, ApiError> {
    let operation = match head.target.as_deref().map(|t| t.strip_prefix(TARGET_PREFIX)) {
        Some(Some(operation)) if head.method_is_post && head.path == "/" => operation,
        _ => {
            return Err(ApiError::UnknownOperation(
                "Requests must be POST / with an X-Amz-Target of MTurkRequesterServiceV20170117.<Operation>.".to_owned(),
            ))
        }
    };
    if !OPERATIONS.contains(&operation) {
        return Err(ApiError::UnknownOperation(format!(
            "Operation {operation} is not supported by this MTurk endpoint."
        )));
    }
    if !content_type_ok(head.content_type.as_deref()) {
        return Err(ApiError::UnknownOperation(format!(
            "Content-Type must be {JSON_CONTENT_TYPE}."
        )));
    }
    // AWS JSON treats an empty body as an empty object.
    let input: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(bytes).map_err(|e| {
            ApiError::Serialization(format!("The request body is not valid JSON: {e}"))
        })?
    };
    if !input.is_object() {
        return Err(ApiError::Serialization(
            "The request body must be a JSON object.".to_owned(),
        ));
    }
    dispatch(&mut state.model, operation, input, now)
}

impl Shared {
    /// Decides the fate of one request under the state lock: throttling,
    /// injected faults, or the model's answer. Records the call.
    pub(crate) fn decide(&self, head: &Head, bytes: &[u8], now: SystemTime) -> Plan {
        let mut state = self.lock();
        let state = &mut *state;
        let operation = head.operation().to_owned();
        state.requests += 1;
        let request_id = request_id(state.requests);
        let mut hold = state.faults.latency;
        let mut deliveries = Vec::new();

        let fault = if state.faults.admit(Instant::now()) {
            state.faults.injected(&operation)
        } else {
            Some(Fault::Throttle)
        };
        let (reply, outcome) = match fault {
            None | Some(Fault::Delay(_)) => {
                if let Some(Fault::Delay(delay)) = fault {
                    hold += delay;
                }
                let reply = match answer(state, head, bytes, now) {
                    Ok(reply) => {
                        deliveries = reply.deliveries;
                        response(200, JSON_CONTENT_TYPE, reply.body.to_string(), &request_id)
                    }
                    Err(error) => error_response(&error, &request_id),
                };
                let outcome = match fault {
                    Some(f) => Outcome::Fault(f.kind().to_owned()),
                    None => Outcome::Answered,
                };
                (Some(reply), outcome)
            }
            Some(Fault::Drop) => (None, Outcome::Dropped),
            Some(fault) => {
                let reply = match &fault {
                    Fault::Throttle => error_response(&ApiError::Throttling, &request_id),
                    Fault::Unrecognized => {
                        error_response(&ApiError::UnrecognizedClient, &request_id)
                    }
                    Fault::ServiceFault => error_response(&ApiError::service_fault(), &request_id),
                    Fault::RequestError { code, message } => error_response(
                        &ApiError::Request {
                            code: crate::error::turk_code(code),
                            message: message.clone(),
                        },
                        &request_id,
                    ),
                    Fault::ParameterValidation => error_response(
                        &ApiError::ParameterValidation(
                            "1 validation error detected: a parameter failed to satisfy its constraint".to_owned(),
                        ),
                        &request_id,
                    ),
                    Fault::Http500 | Fault::Drop | Fault::Delay(_) => response(
                        500,
                        "text/plain; charset=utf-8",
                        "Internal Server Error".to_owned(),
                        &request_id,
                    ),
                };
                (Some(reply), Outcome::Fault(fault.kind().to_owned()))
            }
        };

        let status = reply.as_ref().map(|r| r.status().as_u16());
        let request = if state.record_bodies {
            serde_json::from_slice(bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
        } else {
            Value::Null
        };
        state.record(Call {
            operation,
            request,
            outcome,
            status,
            request_id: reply.as_ref().map(|_| request_id),
        });
        Plan {
            reply,
            hold,
            deliveries,
        }
    }
}
