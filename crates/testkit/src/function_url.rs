//! A Lambda Function URL on 127.0.0.1, as Lambda serves one.
//!
//! Each HTTP request to `http://127.0.0.1:<port>/lambda-url/<function>/…`
//! becomes the API Gateway HTTP API payload 2.0 event that Lambda sends for
//! Function URLs (`rawPath` is what follows the prefix, at least `/`), the
//! function is invoked (the real binary through a [`RuntimeApi`], or any
//! in-process [`Invoke`]), and its payload 2.0 answer becomes the HTTP
//! response.
//!
//! CORS is done here, from the function's `FunctionUrlConfig.Cors` block in
//! template.yaml ([`Cors::from_template`]), the way Lambda does it: a
//! preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
//! is answered without invoking the function, and the CORS headers are added
//! to the function's responses to requests that carry an `Origin`. The
//! function itself sets none; if it did, the headers would appear twice,
//! as they would behind a real Function URL.
//!
//! Like Lambda: a function error or timeout answers 502; a body over 6 MB
//! answers 413.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinSet};

use crate::runtime_api::{Invocation, RuntimeApi};

/// Lambda's limit on a synchronous invocation's payload.
const MAX_BODY: usize = 6 * 1024 * 1024;

/// Invokes the function with an event and returns its answer (or why not).
pub type Invoke = Arc<dyn Fn(Value) -> BoxFuture<'static, Result<Value, String>> + Send + Sync>;

/// A Function URL's `Cors` block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cors {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<u64>,
    pub allow_credentials: bool,
}

impl Cors {
    /// The `FunctionUrlConfig.Cors` of `function` (a logical id) in
    /// template.yaml, its parameters at their defaults; a mapping whose
    /// lists are literal or a `!Ref` to a parameter.
    pub fn from_template(function: &str) -> anyhow::Result<Cors> {
        Self::from_template_text(crate::table::TEMPLATE, function)
    }

    /// [`Cors::from_template`] as deployed with these parameter values
    /// (`(name, value)`; a `CommaDelimitedList` as its comma-separated text).
    pub fn from_template_with(function: &str, parameters: &[(&str, &str)]) -> anyhow::Result<Cors> {
        Self::from_template_text_with(crate::table::TEMPLATE, function, parameters)
    }

    pub fn from_template_text(template: &str, function: &str) -> anyhow::Result<Cors> {
        Self::from_template_text_with(template, function, &[])
    }

    pub fn from_template_text_with(
        template: &str,
        function: &str,
        parameters: &[(&str, &str)],
    ) -> anyhow::Result<Cors> {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(template).context("template.yaml is not YAML")?;
        let url = doc
            .get("Resources")
            .and_then(|r| r.get(function))
            .and_then(|f| f.get("Properties"))
            .and_then(|p| p.get("FunctionUrlConfig"))
            .with_context(|| format!("template.yaml: {function} has no FunctionUrlConfig"))?;
        let Some(cors) = url.get("Cors") else {
            return Ok(Cors::default());
        };
        // `!Ref Name`: the value given, else the parameter's Default, split
        // on commas as CloudFormation splits a CommaDelimitedList.
        let parameter = |name: &str| -> anyhow::Result<Vec<String>> {
            let text = match parameters.iter().find(|(n, _)| *n == name) {
                Some((_, v)) => (*v).to_owned(),
                None => doc
                    .get("Parameters")
                    .and_then(|p| p.get(name))
                    .and_then(|p| p.get("Default"))
                    .and_then(serde_yaml::Value::as_str)
                    .with_context(|| {
                        format!("template.yaml: no parameter {name} with a Default, and none given")
                    })?
                    .to_owned(),
            };
            Ok(text.split(',').map(|s| s.trim().to_owned()).collect())
        };
        let list = |name: &str| -> anyhow::Result<Vec<String>> {
            match cors.get(name) {
                None => Ok(Vec::new()),
                Some(serde_yaml::Value::Tagged(tagged)) if tagged.tag == "Ref" => {
                    let referred = tagged.value.as_str().with_context(|| {
                        format!("template.yaml: Cors.{name} is a Ref to no name")
                    })?;
                    parameter(referred)
                }
                Some(v) => v
                    .as_sequence()
                    .with_context(|| {
                        format!("template.yaml: Cors.{name} is neither a list nor a !Ref")
                    })?
                    .iter()
                    .map(|x| {
                        x.as_str().map(str::to_owned).with_context(|| {
                            format!("template.yaml: Cors.{name} holds a non-string")
                        })
                    })
                    .collect(),
            }
        };
        Ok(Cors {
            allow_origins: list("AllowOrigins")?,
            allow_methods: list("AllowMethods")?,
            allow_headers: list("AllowHeaders")?,
            expose_headers: list("ExposeHeaders")?,
            max_age: cors.get("MaxAge").and_then(serde_yaml::Value::as_u64),
            allow_credentials: cors
                .get("AllowCredentials")
                .and_then(serde_yaml::Value::as_bool)
                .unwrap_or(false),
        })
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, if allowed.
    fn allowed_origin(&self, origin: &str) -> Option<String> {
        if self.allow_origins.iter().any(|o| o == "*") {
            Some("*".into())
        } else if self
            .allow_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
        {
            Some(origin.to_owned())
        } else {
            None
        }
    }

    fn allows_method(&self, method: &str) -> bool {
        self.allow_methods
            .iter()
            .any(|m| m == "*" || m.eq_ignore_ascii_case(method))
    }

    /// Headers a preflight answer carries (none if refused).
    pub fn preflight(&self, origin: &str, method: &str) -> Vec<(String, String)> {
        let Some(allow_origin) = self.allowed_origin(origin) else {
            return Vec::new();
        };
        if !self.allows_method(method) {
            return Vec::new();
        }
        let mut h = vec![
            (
                "access-control-allow-origin".to_owned(),
                allow_origin.clone(),
            ),
            (
                "access-control-allow-methods".to_owned(),
                self.allow_methods.join(","),
            ),
        ];
        if !self.allow_headers.is_empty() {
            h.push((
                "access-control-allow-headers".into(),
                self.allow_headers.join(","),
            ));
        }
        if let Some(age) = self.max_age {
            h.push(("access-control-max-age".into(), age.to_string()));
        }
        if self.allow_credentials {
            h.push(("access-control-allow-credentials".into(), "true".into()));
        }
        if allow_origin != "*" {
            h.push(("vary".into(), "Origin".into()));
        }
        h
    }

    /// Headers added to an ordinary response to a request from `origin`.
    pub fn response(&self, origin: &str) -> Vec<(String, String)> {
        let Some(allow_origin) = self.allowed_origin(origin) else {
            return Vec::new();
        };
        let mut h = vec![(
            "access-control-allow-origin".to_owned(),
            allow_origin.clone(),
        )];
        if !self.expose_headers.is_empty() {
            h.push((
                "access-control-expose-headers".into(),
                self.expose_headers.join(","),
            ));
        }
        if self.allow_credentials {
            h.push(("access-control-allow-credentials".into(), "true".into()));
        }
        if allow_origin != "*" {
            h.push(("vary".into(), "Origin".into()));
        }
        h
    }
}

/// A served Function URL. Stops when dropped.
pub struct FunctionUrl {
    addr: SocketAddr,
    function_name: String,
    server: AbortHandle,
}

impl Drop for FunctionUrl {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Shared {
    prefix: String,
    cors: Cors,
    invoke: Invoke,
    url_id: String,
}

static IDS: AtomicU64 = AtomicU64::new(1);

impl FunctionUrl {
    /// Serves `function_name`'s URL on a free 127.0.0.1 port.
    pub async fn start(function_name: &str, cors: Cors, invoke: Invoke) -> std::io::Result<Self> {
        Self::start_on(0, function_name, cors, invoke).await
    }

    /// [`FunctionUrl::start`] on a given port (0: any free one).
    pub async fn start_on(
        port: u16,
        function_name: &str,
        cors: Cors,
        invoke: Invoke,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            prefix: format!("/lambda-url/{function_name}"),
            cors,
            invoke,
            url_id: format!("{:032x}", u128::from(addr.port()) << 64 | 0xfeed),
        });
        let server = tokio::spawn(serve(listener, shared)).abort_handle();
        Ok(FunctionUrl {
            addr,
            function_name: function_name.to_owned(),
            server,
        })
    }

    /// `http://127.0.0.1:<port>/lambda-url/<function>/`
    pub fn url(&self) -> String {
        format!("http://{}/lambda-url/{}/", self.addr, self.function_name)
    }

    pub fn address(&self) -> SocketAddr {
        self.addr
    }
}

/// Invokes through Runtime APIs (one per function instance), taking them
/// in turn; each invocation waits at most `timeout`.
pub fn over_runtime_apis(apis: Vec<RuntimeApi>, timeout: Duration) -> Invoke {
    assert!(!apis.is_empty(), "at least one instance");
    let apis = Arc::new(apis);
    let next = Arc::new(AtomicUsize::new(0));
    Arc::new(move |event: Value| {
        let apis = apis.clone();
        let i = next.fetch_add(1, Ordering::Relaxed) % apis.len();
        Box::pin(async move {
            match apis[i].invoke(event, timeout).await {
                Ok(Invocation::Response(v)) => Ok(v),
                Ok(Invocation::Error {
                    error_type,
                    message,
                }) => Err(format!("{error_type}: {message}")),
                Err(e) => Err(e.to_string()),
            }
        })
    })
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(route(&shared, req, peer).await) }
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

fn plain(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn add_headers(response: &mut Response<Full<Bytes>>, headers: &[(String, String)]) {
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            response.headers_mut().append(k, v);
        }
    }
}

async fn route(shared: &Shared, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let raw_path = match path.strip_prefix(&shared.prefix) {
        Some("") => "/".to_owned(),
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        _ => return plain(StatusCode::NOT_FOUND, r#"{"Message":"Not Found"}"#),
    };
    let origin = req
        .headers()
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if req.method() == Method::OPTIONS {
        let requested = req
            .headers()
            .get("access-control-request-method")
            .and_then(|v| v.to_str().ok());
        if let (Some(origin), Some(method)) = (&origin, requested) {
            // A preflight: Lambda answers it from the Cors block alone.
            let mut r = plain(StatusCode::OK, "");
            r.headers_mut().remove("content-type");
            add_headers(&mut r, &shared.cors.preflight(origin, method));
            return r;
        }
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                r#"{"Message":"Request must be smaller than 6291456 bytes for the InvokeFunction operation"}"#,
            )
        }
    };
    let event = event_v2(shared, &parts, &raw_path, &body, peer);
    let mut response = match (shared.invoke)(event).await {
        Ok(answer) => response_from(answer),
        Err(_) => plain(
            StatusCode::BAD_GATEWAY,
            r#"{"Message":"Internal Server Error"}"#,
        ),
    };
    if let Some(origin) = &origin {
        add_headers(&mut response, &shared.cors.response(origin));
    }
    response
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The payload 2.0 event Lambda sends a function for a Function URL request.
fn event_v2(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    raw_path: &str,
    body: &Bytes,
    peer: SocketAddr,
) -> Value {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == "cookie" {
            cookies.extend(value.split("; ").map(|c| Value::String(c.to_owned())));
            continue;
        }
        match headers.get_mut(name.as_str()) {
            Some(Value::String(v)) => {
                v.push(',');
                v.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let raw_query = parts.uri.query().unwrap_or("").to_owned();
    let mut params = Map::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        match params.get_mut(&k) {
            Some(Value::String(old)) => {
                old.push(',');
                old.push_str(&v);
            }
            _ => {
                params.insert(k, Value::String(v));
            }
        }
    }
    let n = IDS.fetch_add(1, Ordering::Relaxed);
    let ms = now_ms();
    let user_agent = headers
        .get("user-agent")
        .cloned()
        .unwrap_or(Value::String(String::new()));
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": shared.url_id,
            "domainName": format!("{}.lambda-url.us-east-1.on.aws", shared.url_id),
            "domainPrefix": shared.url_id,
            "http": {
                "method": parts.method.as_str(),
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": user_agent,
            },
            "requestId": format!("{:08x}-0000-4000-8000-{:012x}", ms as u32, n),
            "routeKey": "$default",
            "stage": "$default",
            "time": httpdate_like(ms),
            "timeEpoch": ms,
        },
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = Value::Array(cookies);
    }
    if !params.is_empty() {
        event["queryStringParameters"] = Value::Object(params);
    }
    if !body.is_empty() {
        event["body"] = Value::String(String::from_utf8_lossy(body).into_owned());
    }
    event
}

/// `dd/Mon/yyyy:HH:mm:ss +0000`, as requestContext.time has it.
fn httpdate_like(ms: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms / 1000;
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

fn percent_decode(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&raw[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The HTTP response for a function's payload 2.0 answer. An answer
/// without `statusCode` is, as Lambda has it, a 200 JSON body.
fn response_from(answer: Value) -> Response<Full<Bytes>> {
    let Some(status) = answer.get("statusCode").and_then(Value::as_u64) else {
        return plain(StatusCode::OK, &answer.to_string());
    };
    let body = match answer.get("body") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::BAD_GATEWAY);
    if let Some(Value::Object(h)) = answer.get("headers") {
        let headers: Vec<(String, String)> = h
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
            .collect();
        add_headers(&mut r, &headers);
    }
    if let Some(Value::Object(h)) = answer.get("multiValueHeaders") {
        for (k, vs) in h {
            if let Some(vs) = vs.as_array() {
                let headers: Vec<(String, String)> = vs
                    .iter()
                    .filter_map(|v| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect();
                add_headers(&mut r, &headers);
            }
        }
    }
    if let Some(Value::Array(cookies)) = answer.get("cookies") {
        let headers: Vec<(String, String)> = cookies
            .iter()
            .filter_map(|c| c.as_str().map(|c| ("set-cookie".to_owned(), c.to_owned())))
            .collect();
        add_headers(&mut r, &headers);
    }
    r
}

/// An HTTP answer as a test sees it.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    /// Lower-case names, in order, repeated headers repeated.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    /// Every value of one header.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// One HTTP/1.1 request to a 127.0.0.1 URL (`http://127.0.0.1:PORT/path?query`),
/// with `Connection: close`; at most 10 s.
pub async fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<HttpReply> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").context("only http:// URLs")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    anyhow::ensure!(
        host.starts_with("127.0.0.1:") || host.starts_with("localhost:"),
        "only loopback URLs: {url}"
    );
    let path = if path.is_empty() { "/" } else { path };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(host).await?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .context("no answer within 10 s")??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(HttpReply {
        status,
        headers,
        body: body.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_check_functions_cors_from_the_template() {
        let cors = Cors::from_template("ExclusionCheckFunction").unwrap();
        assert_eq!(cors.allow_origins, ["*"]);
        assert_eq!(cors.allow_methods, ["GET"]);
        assert_eq!(cors.max_age, Some(300));
        assert!(!cors.allow_credentials);
        let pre = cors.preflight("http://127.0.0.1:1234", "GET");
        assert!(pre.contains(&("access-control-allow-origin".into(), "*".into())));
        assert!(pre.contains(&("access-control-max-age".into(), "300".into())));
        assert!(cors.preflight("http://127.0.0.1:1234", "POST").is_empty());
    }

    #[test]
    fn allowed_origins_follow_the_templates_parameter() {
        let cors = Cors::from_template_with(
            "ExclusionCheckFunction",
            &[(
                "CheckAllowedOrigins",
                "https://www.mturk.com, https://workersandbox.mturk.com",
            )],
        )
        .unwrap();
        assert_eq!(
            cors.allow_origins,
            ["https://www.mturk.com", "https://workersandbox.mturk.com"]
        );
        let pre = cors.preflight("https://workersandbox.mturk.com", "GET");
        assert!(pre.contains(&(
            "access-control-allow-origin".into(),
            "https://workersandbox.mturk.com".into()
        )));
        assert!(cors.preflight("https://evil.example", "GET").is_empty());
        // Not a Ref: a literal list, as before.
        let literal = "Resources:\n  F:\n    Properties:\n      FunctionUrlConfig:\n        Cors:\n          AllowOrigins: [\"https://a.example\"]\n";
        assert_eq!(
            Cors::from_template_text(literal, "F")
                .unwrap()
                .allow_origins,
            ["https://a.example"]
        );
    }

    #[test]
    fn request_times_read_like_lambdas() {
        assert_eq!(
            httpdate_like(1_772_471_051_000),
            "02/Mar/2026:17:04:11 +0000"
        );
        assert_eq!(httpdate_like(0), "01/Jan/1970:00:00:00 +0000");
    }

    #[test]
    fn decodes_queries() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("%2"), "%2");
    }
}
