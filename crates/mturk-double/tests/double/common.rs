//! Shared helpers: SDK clients pointed at the double, a raw HTTP client for
//! protocol tests, and an SQS endpoint (the project's, or a moto we start).

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use aws_sdk_mturk::config::retry::{RetryConfig, RetryPartition};
use aws_sdk_mturk::config::timeout::TimeoutConfig;
use aws_sdk_mturk::config::{BehaviorVersion, Credentials, Region, SharedHttpClient};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use mturk_double::MturkDouble;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

static ENV: Once = Once::new();

/// The clients below are configured explicitly; the variables are set as
/// well so nothing in the SDK can wander off to a real credential chain or
/// instance metadata.
pub fn init_env() {
    ENV.call_once(|| {
        for (name, value) in [
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ] {
            if std::env::var_os(name).is_none() {
                std::env::set_var(name, value);
            }
        }
    });
}

pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// A client without retries, so each call is exactly one request.
pub fn mturk(double: &MturkDouble) -> aws_sdk_mturk::Client {
    mturk_with(double, RetryConfig::disabled(), None)
}

pub fn mturk_with(
    double: &MturkDouble,
    retry: RetryConfig,
    timeout: Option<TimeoutConfig>,
) -> aws_sdk_mturk::Client {
    init_env();
    // Clients of one partition share a retry quota; a partition per client
    // keeps one retry-heavy test from starving another running alongside.
    static PARTITION: AtomicU64 = AtomicU64::new(0);
    let partition = format!(
        "mturk-double-test-{}",
        PARTITION.fetch_add(1, Ordering::Relaxed)
    );
    let mut config = aws_sdk_mturk::Config::builder()
        .retry_partition(RetryPartition::new(partition))
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .endpoint_url(double.endpoint())
        .http_client(http_client())
        .retry_config(retry);
    if let Some(timeout) = timeout {
        config = config.timeout_config(timeout);
    }
    aws_sdk_mturk::Client::from_conf(config.build())
}

/// Standard retries with short backoff so retry tests stay fast.
pub fn quick_retries(max_attempts: u32) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(max_attempts)
        .with_initial_backoff(Duration::from_millis(5))
        .with_max_backoff(Duration::from_millis(20))
}

/// The `TurkErrorCode` of a `RequestError`, whatever the operation.
pub fn turk_code(error: impl Into<aws_sdk_mturk::Error>) -> Option<String> {
    match error.into() {
        aws_sdk_mturk::Error::RequestError(e) => e.turk_error_code().map(str::to_owned),
        _ => None,
    }
}

/// The error code (`__type`) the SDK read, whatever the operation.
pub fn error_code(error: impl Into<aws_sdk_mturk::Error>) -> Option<String> {
    use aws_sdk_mturk::error::ProvideErrorMetadata;
    error.into().code().map(str::to_owned)
}

pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends one HTTP/1.1 request over a fresh connection and reads until the
/// server closes it. `None` when the server closed without answering.
pub async fn raw(
    double: &MturkDouble,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<RawResponse> {
    let mut stream = TcpStream::connect(double.local_addr())
        .await
        .expect("connect to the double");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        double.local_addr(),
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let mut received = Vec::new();
    // A reset counts as "no answer" too.
    let _ = stream.read_to_end(&mut received).await;
    if received.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&received).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("a complete response head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(RawResponse {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// A well-formed MTurk request, sent raw.
pub async fn raw_call(double: &MturkDouble, operation: &str, body: &str) -> Option<RawResponse> {
    let target = format!("MTurkRequesterServiceV20170117.{operation}");
    raw(
        double,
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", &target),
        ],
        body.as_bytes(),
    )
    .await
}

/// An SQS endpoint: `AWS_ENDPOINT_URL_SQS` when the project's test script has
/// started one, otherwise a `moto_server` child of this test, killed (by its
/// own pid) on drop.
pub struct Sqs {
    pub client: aws_sdk_sqs::Client,
    pub endpoint: String,
    child: Option<Child>,
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

pub fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    init_env();
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .endpoint_url(endpoint)
        .http_client(http_client())
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

impl Sqs {
    pub async fn start() -> Sqs {
        if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL_SQS") {
            return Sqs {
                client: sqs_client(&endpoint),
                endpoint,
                child: None,
            };
        }
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start moto_server ({e}). Run `scripts/local-stack.sh start` and \
                     `eval \"$(scripts/local-stack.sh env)\"` (or use scripts/test.sh), \
                     or put moto_server on PATH"
                )
            });
        let sqs = Sqs {
            client: sqs_client(&format!("http://127.0.0.1:{port}")),
            endpoint: format!("http://127.0.0.1:{port}"),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on port {port} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sqs
    }

    /// A queue with a name no other test uses.
    pub async fn queue(&self, label: &str) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "mturk-double-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        self.client
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("create queue")
            .queue_url()
            .expect("queue url")
            .to_owned()
    }

    /// Message bodies on the queue, deleting them; waits up to `wait` for at
    /// least `at_least` of them.
    pub async fn drain(&self, queue_url: &str, at_least: usize, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        let mut bodies = Vec::new();
        loop {
            let out = self
                .client
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("receive");
            for message in out.messages() {
                bodies.push(message.body().unwrap_or_default().to_owned());
                if let Some(handle) = message.receipt_handle() {
                    self.client
                        .delete_message()
                        .queue_url(queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .expect("delete");
                }
            }
            if bodies.len() >= at_least && (at_least > 0 || Instant::now() >= deadline) {
                return bodies;
            }
            if Instant::now() >= deadline {
                return bodies;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Sqs {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // Child::kill signals exactly this child's pid.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
