//! The pipeline, assembled from real parts on this machine: DynamoDB Local,
//! the SQS stand-in (moto), the MTurk double over HTTP, and the real handler
//! invoked by the event-source loop.

use std::sync::Arc;
use std::time::Duration;

use crate::event_source::{EventSource, Invocation, Totals};
use crate::{unique_name, Queues, Stack};
use aws_lambda_events::event::sqs::SqsEvent;
use mturk_double::MturkDouble;
use mturk_exclusion::aws::Clients;
use mturk_exclusion::aws::{self, Limits};
use mturk_exclusion::config::Config;
use mturk_exclusion::handler::{Handler, MTURK_SENDER_ID};
use mturk_exclusion::ids::QualificationTypeId;
use mturk_exclusion::ledger::Ledger;
use mturk_exclusion::mturk::MturkEnvironment;
use tokio::time::Instant;

pub struct Options {
    pub visibility_secs: u32,
    pub max_receive_count: u32,
    pub limits: Limits,
    /// Changes to the handler's configuration (after the test defaults below).
    pub configure: fn(&mut Config),
    pub mturk_rps: f64,
    /// A DynamoDB of the test's own instead of the shared one.
    pub dynamodb_endpoint: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            visibility_secs: 2,
            max_receive_count: 3,
            limits: Limits {
                connect: Duration::from_secs(1),
                attempt: Duration::from_secs(2),
                operation: Duration::from_secs(5),
                max_attempts: 3,
                initial_backoff: Duration::from_millis(50),
                // As the handler's main sets it.
                stalled_stream_protection: false,
            },
            configure: |_| {},
            mturk_rps: 100.0,
            dynamodb_endpoint: None,
        }
    }
}

pub struct Pipeline {
    pub stack: Stack,
    pub double: MturkDouble,
    pub queues: Queues,
    pub ledger: Ledger,
    pub qualification: QualificationTypeId,
    pub handler: Arc<Handler>,
    /// What `handler` was built from, for variants of it.
    pub config: Config,
    pub clients: Clients,
    /// A real SDK client on the double, for what the lab (or the CLI) does.
    pub mturk: aws_sdk_mturk::Client,
    /// A HIT type whose notifications go to `queues.url`.
    pub hit_type: String,
}

impl Pipeline {
    pub async fn start() -> Pipeline {
        Self::with(Options::default()).await
    }

    pub async fn with(options: Options) -> Pipeline {
        let mut stack = Stack::from_env().await.expect("local stack");
        if let Some(endpoint) = &options.dynamodb_endpoint {
            stack = stack.with_dynamodb_endpoint(endpoint);
        }
        let double = MturkDouble::start(Some(stack.sqs.clone()))
            .await
            .expect("start the MTurk double");
        Self::pool(stack, double, options, "Took part in our lab's studies").await
    }

    /// A second exclusion pool of the same lab: what deploying the template
    /// a second time gives (its own table, queues, qualification and
    /// handler, and a HIT type notifying its queue), on the same requester
    /// account (this pipeline's MTurk double) and the same local services.
    pub async fn another_pool(&self) -> Pipeline {
        // MTurk refuses a second qualification type of the same name.
        let name = format!(
            "Took part in another pool's studies ({})",
            unique_name("pool")
        );
        Self::pool(
            self.stack.clone(),
            self.double.clone(),
            Options::default(),
            &name,
        )
        .await
    }

    async fn pool(
        stack: Stack,
        double: MturkDouble,
        options: Options,
        qualification_name: &str,
    ) -> Pipeline {
        let table = stack.ledger_table().await.expect("ledger table");
        let queues = stack
            .queues(options.visibility_secs, options.max_receive_count)
            .await
            .expect("queues");
        let qualification =
            QualificationTypeId::parse(&double.create_qualification_type(qualification_name))
                .expect("double makes valid ids");
        // The handler as the Lambda's main builds it (Handler::from_config),
        // configured for this machine; only a test's own DynamoDB replaces
        // the SDK's client.
        let mut config = Config {
            table_name: table.clone(),
            qualification_type_id: qualification.clone(),
            mturk_environment: MturkEnvironment::Sandbox,
            mturk_endpoint: Some(double.endpoint()),
            mturk_max_rps: options.mturk_rps,
            // The tests' MTurk allows everything unless a test says otherwise:
            // start at the ceiling, so the tests' short visibility timeouts hold.
            mturk_start_rps: Some(options.mturk_rps),
            max_concurrency: None,
            queue_url: Some(queues.url.clone()),
            reject_unknown_senders: false,
            record_concurrency: 4,
            deadline_margin: Duration::from_secs(6),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(2),
            // Short, so that redeliveries a second apart are not held up
            // for long by a lease or window an outage kept from closing.
            assignment_lease: Duration::from_secs(2),
            grant_window: Duration::from_secs(6),
        };
        (options.configure)(&mut config);
        let sdk = aws::load(None, options.limits).await;
        let mut clients = Clients::from_sdk(&config, &sdk);
        if let Some(endpoint) = &options.dynamodb_endpoint {
            clients.dynamodb = aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(&sdk)
                    .endpoint_url(endpoint)
                    .build(),
            );
        }
        let ledger = Ledger::new(clients.dynamodb.clone(), &table);
        let mturk = clients.mturk.clone();
        let handler = Arc::new(Handler::with_clients(&config, clients.clone()));
        let pipeline = Pipeline {
            hit_type: double.new_hit_type_id(),
            stack,
            double,
            queues,
            ledger,
            qualification,
            handler,
            config,
            clients,
            mturk,
        };
        pipeline.subscribe(&pipeline.hit_type.clone()).await;
        pipeline
    }

    /// Points a HIT type's AssignmentSubmitted notifications at the queue, through MTurk's API.
    pub async fn subscribe(&self, hit_type: &str) {
        use aws_sdk_mturk::types::{EventType, NotificationSpecification, NotificationTransport};
        self.mturk
            .update_notification_settings()
            .hit_type_id(hit_type)
            .notification(
                NotificationSpecification::builder()
                    .destination(&self.queues.url)
                    .transport(NotificationTransport::Sqs)
                    .version("2014-08-15")
                    .event_types(EventType::AssignmentSubmitted)
                    .build()
                    .expect("complete specification"),
            )
            .active(true)
            .send()
            .await
            .expect("subscribe");
    }

    pub fn event_source(&self) -> EventSource {
        let mut source = EventSource::new(&self.queues.url, &self.queues.arn);
        source.sender_id_override = Some(MTURK_SENDER_ID.to_owned());
        source
    }

    /// The pipeline's handler with its configuration changed by `change`,
    /// built the same way on the same clients.
    pub fn handler_with(&self, change: impl FnOnce(&mut Config)) -> Arc<Handler> {
        let mut config = self.config.clone();
        change(&mut config);
        Arc::new(Handler::with_clients(&config, self.clients.clone()))
    }

    /// The in-process function, with a Lambda-like 60 s deadline per invocation.
    pub fn function(&self) -> impl Fn(SqsEvent) -> Invocation + Send + Sync + Clone + 'static {
        function_of(self.handler.clone())
    }

    /// Runs the event source until the queue is empty (bounded).
    pub async fn drain(&self) -> Totals {
        let (totals, drained) = self
            .event_source()
            .drain(&self.stack, self.function(), Duration::from_secs(60))
            .await;
        assert!(drained, "the queue did not drain within 60 s: {totals:?}");
        totals
    }

    pub async fn send(&self, body: &str) -> String {
        self.stack
            .sqs
            .send_message()
            .queue_url(&self.queues.url)
            .message_body(body)
            .send()
            .await
            .expect("send")
            .message_id
            .expect("message id")
    }

    /// Messages now in the dead-letter queue (removed from it).
    pub async fn dead_letters(&self) -> Vec<String> {
        self.stack
            .drain_bodies(&self.queues.dlq_url)
            .await
            .expect("read the DLQ")
    }

    /// What template.yaml sets in every function's environment, for this
    /// pipeline: its table, qualification and queue, the local endpoints,
    /// MTurk at the tests' rate from the first call, JSON logs. A function
    /// process's test adds its own variables.
    pub fn function_env(&self) -> Vec<(String, String)> {
        let endpoint =
            |var: &str| std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set"));
        [
            ("TABLE_NAME", self.ledger.table().to_owned()),
            (
                "QUALIFICATION_TYPE_ID",
                self.qualification.as_str().to_owned(),
            ),
            ("MTURK_ENVIRONMENT", "sandbox".to_owned()),
            ("AWS_ENDPOINT_URL_MTURK", self.double.endpoint()),
            (
                "AWS_ENDPOINT_URL_DYNAMODB",
                endpoint("AWS_ENDPOINT_URL_DYNAMODB"),
            ),
            ("AWS_ENDPOINT_URL_SQS", endpoint("AWS_ENDPOINT_URL_SQS")),
            ("MTURK_MAX_RPS", "100".to_owned()),
            ("MTURK_START_RPS", "100".to_owned()),
            ("QUEUE_URL", self.queues.url.clone()),
            // As template.yaml's LoggingConfig sets them.
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_owned()),
            ("AWS_LAMBDA_LOG_LEVEL", "INFO".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    pub fn granted(&self, worker: &str) -> bool {
        use mturk_double::GrantStatus;
        self.double
            .qualification(self.qualification.as_str(), worker)
            .is_some_and(|g| g.status == GrantStatus::Granted && g.integer_value == 1)
    }

    /// Every grant the double saw was silent.
    pub fn assert_every_grant_silent(&self) {
        for call in self.double.calls_to("AssociateQualificationWithWorker") {
            assert_eq!(
                call.request.get("SendNotification"),
                Some(&serde_json::Value::Bool(false)),
                "a grant without SendNotification=false: {:?}",
                call.request
            );
        }
    }
}

/// A notification document as MTurk writes it for the lab's own requester
/// (the double's account, whose CustomerId `subscribe` learns).
pub fn document(doc_id: &str, events: &[serde_json::Value]) -> String {
    document_from(
        mturk_double::CUSTOMER_ID,
        mturk_double::SOURCE_ACCOUNT,
        doc_id,
        events,
    )
}

/// Another requester's requester id and AWS account, for foreign documents.
pub const FOREIGN_CUSTOMER_ID: &str = "A3FOREIGNREQ9";
pub const FOREIGN_ACCOUNT: &str = "999988887777";

/// A notification document as MTurk writes it for another requester, who
/// pointed a HIT type at the lab's queue.
pub fn foreign_document(doc_id: &str, events: &[serde_json::Value]) -> String {
    document_from(FOREIGN_CUSTOMER_ID, FOREIGN_ACCOUNT, doc_id, events)
}

fn document_from(
    customer_id: &str,
    account: &str,
    doc_id: &str,
    events: &[serde_json::Value],
) -> String {
    serde_json::json!({
        "EventDocVersion": "2014-08-15",
        "EventDocId": doc_id,
        "CustomerId": customer_id,
        "SourceAccount": account,
        "Events": events,
    })
    .to_string()
}

/// The requirement a lab's HIT carries, in MTurk's JSON: the worker must
/// not hold `qualification`, which guards discovery, preview and accept.
pub fn does_not_exist(qualification: &str) -> serde_json::Value {
    serde_json::json!({
        "QualificationTypeId": qualification,
        "Comparator": "DoesNotExist",
        "ActionsGuarded": "DiscoverPreviewAndAccept",
    })
}

/// A Ping event stamped now, as in a test document.
pub fn ping_now() -> serde_json::Value {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    serde_json::json!({
        "EventType": "Ping",
        "EventTimestamp": now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "HITTypeId": "PLACEHOLDERHITTYPE",
        "HITId": "PLACEHOLDERHIT",
        "AssignmentId": "PLACEHOLDERASSIGNMENT",
    })
}

pub fn submitted(hit_type: &str, hit: &str, assignment: &str) -> serde_json::Value {
    serde_json::json!({
        "EventType": "AssignmentSubmitted",
        "EventTimestamp": "2026-03-02T17:04:11Z",
        "HITTypeId": hit_type,
        "HITId": hit,
        "AssignmentId": assignment,
    })
}

/// What one run of the `mturk-exclusion` binary came to.
#[derive(Debug)]
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    /// stdout as JSON (for `--json` runs).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl Pipeline {
    /// Runs a CLI binary (the test binary passes its
    /// `CARGO_BIN_EXE_mturk-exclusion`) against this pipeline's table,
    /// queues, qualification and MTurk double, with `args`; then `env` on
    /// top (`Some` sets a variable, `None` removes it, for example to make
    /// the CLI find a value by itself), and `stdin` as its input.
    pub async fn run_cli(
        &self,
        binary: &str,
        args: &[&str],
        env: &[(&str, Option<&str>)],
        stdin: Option<&str>,
    ) -> CliRun {
        use tokio::io::AsyncWriteExt;
        let mut cmd = tokio::process::Command::new(binary);
        cmd.args(args)
            .env("AWS_ENDPOINT_URL_MTURK", self.double.endpoint())
            .env("MTURK_EXCLUSION_TABLE", self.ledger.table())
            .env("MTURK_EXCLUSION_QUALIFICATION", self.qualification.as_str())
            .env("MTURK_EXCLUSION_QUEUE_URL", &self.queues.url)
            .env("MTURK_EXCLUSION_DLQ_URL", &self.queues.dlq_url)
            .env("MTURK_MAX_RPS", "100")
            .env_remove("AWS_PROFILE")
            .env_remove("MTURK_EXCLUSION_STACK")
            .env_remove("MTURK_EXCLUSION_PRODUCTION")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in env {
            match value {
                Some(v) => cmd.env(name, v),
                None => cmd.env_remove(name),
            };
        }
        let mut child = cmd.spawn().expect("run mturk-exclusion");
        if let Some(mut input) = child.stdin.take() {
            if let Some(text) = stdin {
                input.write_all(text.as_bytes()).await.expect("write stdin");
            }
            drop(input);
        }
        let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .expect("mturk-exclusion finished within 120 s")
            .expect("mturk-exclusion output");
        CliRun {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// An SQS record as Lambda hands it over, sent by MTurk's documented sender.
pub fn record(id: &str, body: &str) -> aws_lambda_events::event::sqs::SqsMessage {
    let mut m = aws_lambda_events::event::sqs::SqsMessage::default();
    m.message_id = Some(id.to_owned());
    m.body = Some(body.to_owned());
    m.attributes
        .insert("SenderId".into(), MTURK_SENDER_ID.into());
    m
}

/// `handler` as the event source's function, with a Lambda-like 60 s
/// deadline per invocation.
pub fn function_of(
    handler: Arc<Handler>,
) -> impl Fn(SqsEvent) -> Invocation + Send + Sync + Clone + 'static {
    move |event: SqsEvent| {
        let handler = handler.clone();
        Box::pin(async move {
            handler
                .process(event.records, Instant::now() + Duration::from_secs(60))
                .await
                .map(|r| r.response())
                .map_err(|e| e.to_string())
        })
    }
}
