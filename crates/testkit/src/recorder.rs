//! A recording forwarder: an HTTP endpoint on 127.0.0.1 that passes each
//! request unchanged to a local service (DynamoDB Local, moto, the MTurk
//! double) and notes the IAM action it needs, `service:Action`.
//!
//! The operator's IAM policy (docs/operator-policy.json) is tested against
//! what the CLI really sends: the CLI's endpoints point here, so every
//! request of every SDK client is seen, whichever code path made it.
//!
//! An SDK operation is not always one IAM action of the same name: a
//! DynamoDB transaction is authorised item by item (`TransactWriteItems`
//! needs `PutItem`, `UpdateItem`, `DeleteItem` or `ConditionCheckItem` for
//! each of its items), and SQS's batch operations need the single ones
//! (`SendMessageBatch` needs `SendMessage`).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// Forwards to one upstream service and records the IAM actions asked for.
pub struct Recorder {
    endpoint: String,
    actions: Arc<Mutex<BTreeSet<String>>>,
    task: AbortHandle,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    /// A recorder in front of `upstream` (`http://127.0.0.1:PORT`).
    /// `query_service` is the IAM prefix of requests in the query protocol
    /// (`Action=...` in a form body, no `X-Amz-Target`), e.g. `cloudformation`.
    pub async fn start(upstream: &str, query_service: &str) -> anyhow::Result<Recorder> {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        anyhow::ensure!(
            upstream.starts_with("127.0.0.1:") || upstream.starts_with("localhost:"),
            "the recorder forwards to this machine only, not {upstream}"
        );
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let actions = Arc::new(Mutex::new(BTreeSet::new()));
        let recorded = actions.clone();
        let query_service = query_service.to_owned();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (upstream, recorded, query_service) =
                    (upstream.clone(), recorded.clone(), query_service.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (upstream, recorded, query_service) =
                            (upstream.clone(), recorded.clone(), query_service.clone());
                        async move {
                            Ok::<_, Infallible>(
                                forward(req, &upstream, &recorded, &query_service)
                                    .await
                                    .unwrap_or_else(|e| {
                                        let mut r = Response::new(Full::new(Bytes::from(format!(
                                            "recorder: {e:#}"
                                        ))));
                                        *r.status_mut() = StatusCode::BAD_GATEWAY;
                                        r
                                    }),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        })
        .abort_handle();
        Ok(Recorder {
            endpoint,
            actions,
            task,
        })
    }

    /// Where to point the client (`AWS_ENDPOINT_URL_...`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every IAM action asked for so far.
    pub fn actions(&self) -> BTreeSet<String> {
        self.actions.lock().expect("recorder lock").clone()
    }
}

async fn forward(
    req: Request<Incoming>,
    upstream: &str,
    recorded: &Mutex<BTreeSet<String>>,
    query_service: &str,
) -> anyhow::Result<Response<Full<Bytes>>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .context("reading the request")?
        .to_bytes();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok());
    let actions = iam_actions(target, &body, query_service);
    recorded.lock().expect("recorder lock").extend(actions);

    let stream = TcpStream::connect(upstream)
        .await
        .with_context(|| format!("connecting to {upstream}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake with the upstream")?;
    tokio::spawn(connection);
    let response = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await
        .context("forwarding the request")?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .context("reading the response")?
        .to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// The IAM actions one request needs.
pub fn iam_actions(target: Option<&str>, body: &[u8], query_service: &str) -> Vec<String> {
    let Some(target) = target else {
        // The query protocol: Action=Name&... in a form body.
        let text = String::from_utf8_lossy(body);
        return text
            .split('&')
            .find_map(|pair| pair.strip_prefix("Action="))
            .map(|action| vec![format!("{query_service}:{action}")])
            .unwrap_or_else(|| vec![format!("unknown:{query_service} request without an action")]);
    };
    let (prefix, operation) = target.split_once('.').unwrap_or(("", target));
    let json = || serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    match prefix {
        p if p.starts_with("DynamoDB_") => match operation {
            "TransactWriteItems" | "TransactGetItems" => {
                let items = json()["TransactItems"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                items
                    .iter()
                    .filter_map(|item| item.as_object()?.keys().next().cloned())
                    .map(|kind| {
                        let action = match kind.as_str() {
                            "ConditionCheck" => "ConditionCheckItem".to_owned(),
                            // Put, Update, Delete, Get
                            other => format!("{other}Item"),
                        };
                        format!("dynamodb:{action}")
                    })
                    .collect()
            }
            other => vec![format!("dynamodb:{other}")],
        },
        "AmazonSQS" => vec![format!(
            "sqs:{}",
            operation.strip_suffix("Batch").unwrap_or(operation)
        )],
        p if p.starts_with("MTurkRequesterService") => vec![format!("mechanicalturk:{operation}")],
        _ => vec![format!("unknown:{target}")],
    }
}

#[cfg(test)]
mod tests {
    use super::iam_actions;

    #[test]
    fn operations_become_the_iam_actions_that_authorise_them() {
        assert_eq!(
            iam_actions(Some("DynamoDB_20120810.Query"), b"{}", "x"),
            ["dynamodb:Query"]
        );
        let tx = br#"{"TransactItems":[{"Put":{}},{"Update":{}},{"ConditionCheck":{}}]}"#;
        assert_eq!(
            iam_actions(Some("DynamoDB_20120810.TransactWriteItems"), tx, "x"),
            [
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:ConditionCheckItem"
            ]
        );
        assert_eq!(
            iam_actions(Some("AmazonSQS.DeleteMessageBatch"), b"{}", "x"),
            ["sqs:DeleteMessage"]
        );
        assert_eq!(
            iam_actions(Some("MTurkRequesterServiceV20170117.ListHITs"), b"{}", "x"),
            ["mechanicalturk:ListHITs"]
        );
        assert_eq!(
            iam_actions(
                None,
                b"Action=DescribeStacks&Version=2010-05-15",
                "cloudformation"
            ),
            ["cloudformation:DescribeStacks"]
        );
        assert!(iam_actions(Some("Other.Thing"), b"", "x")[0].starts_with("unknown:"));
    }
}
