//! The Lambda's work: one SQS batch in, one outcome per record out.
//!
//! Each record is parsed on its own, so a poison body fails only itself. A
//! record succeeds only if every event in it did. Failed records are reported
//! by their real message id (partial batch response); their redelivery is
//! spaced out with `ChangeMessageVisibility`: by the receive count for
//! transient faults, by the queue's backlog for records that wait for
//! MTurk's rate. A record that waits for the rate at one of its last two
//! receives before the dead-letter queue is sent back as a new message while MTurk
//! still accepts calls, so throttling never dead-letters it. Two failures of
//! the whole batch are deliberate: a record without a message id (it could
//! not be named, so nothing may be deleted), and a batch in which every
//! record was throttled (an error makes Lambda slow its polling).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use futures::StreamExt;
use time::OffsetDateTime;
use tokio::time::Instant;
use tracing::{field, info, info_span, warn, Instrument};

use crate::aws::Clients;
use crate::config::Config;
use crate::exclusion::Tally;
use crate::ids::shown;
use crate::ledger::{ClaimEnd, Ledger, Sender};
use crate::mturk::{counting_calls, retrying_throttles_until};
use crate::notification::{Event, Notification};
use crate::ops::Lab;
use crate::rate::RateLimiter;

/// The `SenderId` MTurk's documentation gives for its messages.
pub const MTURK_SENDER_ID: &str = "AIDAIXO4EZE6RHVSXIN4E";

/// Why one record failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("refused: SenderId {0} is not MTurk's (REJECT_UNKNOWN_SENDERS is on)")]
    UnknownSender(String),
    #[error("throttled by MTurk: {0}")]
    Throttled(String),
    #[error("transient: {0}")]
    Transient(String),
    /// Another attempt at the same worker or notification is under way (a
    /// grant in flight, another copy's lease): it usually ends within a
    /// second, so the record's first retry comes in seconds.
    #[error("transient: {0}")]
    UnderWay(String),
    #[error("refused by MTurk: {0}")]
    Rejected(String),
    #[error("not finished before the invocation's deadline")]
    Deadline,
}

impl Failure {
    /// Failures worth retrying later rather than sooner, by receive count
    /// (those that wait for MTurk's rate are spaced by the backlog instead).
    fn backs_off(&self) -> bool {
        matches!(self, Failure::Transient(_) | Failure::UnderWay(_))
    }

    /// Failures of a record that waits for MTurk's rate: throttled past the
    /// in-process retries, or not finished before the invocation's deadline
    /// (where calls waiting for their slot end up). They go back to the
    /// queue with a delay by the backlog, and are never dead-lettered while
    /// MTurk still accepts this instance's calls.
    fn waits_for_rate(&self) -> bool {
        matches!(self, Failure::Throttled(_) | Failure::Deadline)
    }
}

/// The message attribute a record this handler sent back to the queue
/// carries: the SenderId of the message it came from (SQS gives the copy
/// the handler's own), so the SenderId check still applies.
pub const SENDER_ATTRIBUTE: &str = "ExclusionOriginalSender";
/// The message attribute counting how often a record was sent back for
/// MTurk's rate.
pub const RATE_DEFERRALS_ATTRIBUTE: &str = "ExclusionRateDeferrals";
/// A record sent back this often for MTurk's rate is left to the redrive
/// policy: at the delays below, that is many hours of MTurk not taking it.
pub const MAX_RATE_DEFERRALS: u32 = 20;
/// When a record that found another attempt under way comes back, the first
/// time: a grant in flight takes a second or two; later receives back off.
pub const UNDER_WAY_RETRY: Duration = Duration::from_secs(3);
/// MTurk calls a record takes on average (GetAssignment, and a grant for a
/// worker's first submission: 1.36-1.39 in the burst benchmarks).
const CALLS_PER_RECORD: f64 = 1.5;
/// The shortest delay of a record deferred for MTurk's rate.
const RATE_DEFER_MIN: Duration = Duration::from_secs(5);
/// MTurk "still accepts calls" if it accepted one of this instance's within this.
const ACCEPTING_WITHIN: Duration = Duration::from_secs(120);
/// SQS's longest message delay.
const MAX_SEND_DELAY: Duration = Duration::from_secs(900);

/// What one record came to, event by event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Its AssignmentSubmitted events, by what they came to.
    pub settled: Tally,
    pub heartbeats: usize,
    /// Claims of the accept-time check ended by AssignmentReturned or AssignmentAbandoned.
    pub claims_ended: usize,
    pub ignored: usize,
    /// Documents from another requester's CustomerId, acknowledged unread:
    /// no MTurk call, no ledger write (the metric `ForeignDocuments`).
    pub foreign_documents: usize,
}

impl Summary {
    pub fn merge(&mut self, other: &Summary) {
        self.settled.merge(&other.settled);
        self.heartbeats += other.heartbeats;
        self.claims_ended += other.claims_ended;
        self.ignored += other.ignored;
        self.foreign_documents += other.foreign_documents;
    }
}

/// What one invocation did, for its metrics line (one EMF document, see
/// [`crate::metrics`]). `settled` counts every event settled, also in
/// records that failed afterwards: an exclusion granted before its record
/// failed is counted here, and its redelivery then finds it done (a
/// duplicate). The MTurk calls are this batch's own, also when batches
/// share the handler at once; the rate is the instance's limiter's after
/// the batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchMetrics {
    pub summary: Summary,
    /// Calls sent to MTurk (each attempt, throttled ones included).
    pub mturk_calls: u64,
    /// Calls MTurk throttled.
    pub mturk_throttled: u64,
    /// The adaptive rate after the batch, calls per second.
    pub mturk_rate: f64,
}

impl BatchMetrics {
    /// The invocation's EMF line(s), by the dimension `Pool` (template.yaml's
    /// alarms and dashboard read these names): one line, unless more than
    /// 100 exposure values need another. No ids of any kind.
    pub fn emf_lines(&self, pool: &str, timestamp_ms: u64) -> Vec<String> {
        use crate::metrics::{Document, Unit};
        let s = &self.summary.settled;
        let count = |n: usize| n as f64;
        Document::new(timestamp_ms)
            .dimension("Pool", pool)
            .group(&["Pool"])
            .value("SubmissionsSeen", Unit::Count, count(s.submissions()))
            .value("WorkersExcluded", Unit::Count, count(s.excluded))
            .value("Duplicates", Unit::Count, count(s.duplicates))
            .value("KeptReleased", Unit::Count, count(s.kept_released))
            .value(
                "ForeignDocuments",
                Unit::Count,
                count(self.summary.foreign_documents),
            )
            .value("MturkCalls", Unit::Count, self.mturk_calls as f64)
            .value("MturkThrottled", Unit::Count, self.mturk_throttled as f64)
            .value("MturkRate", Unit::CountPerSecond, self.mturk_rate)
            .values(
                "ExposureWindow",
                Unit::Seconds,
                s.exposure
                    .iter()
                    .map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0)
                    .collect(),
            )
            .lines()
    }
}

/// The whole batch failed, deliberately.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(
        "record {0} of the batch has no message id; failing the whole batch so nothing is lost"
    )]
    MissingMessageId(usize),
    #[error(
        "all {0} records were throttled by MTurk; failing the batch so Lambda slows its polling"
    )]
    AllThrottled(usize),
}

impl BatchError {
    /// The `errorType` Lambda shows for this failure.
    pub fn error_type(&self) -> &'static str {
        match self {
            BatchError::MissingMessageId(_) => "MissingMessageId",
            BatchError::AllThrottled(_) => "AllThrottled",
        }
    }
}

/// One batch's outcome, record by record, in the batch's order.
#[derive(Debug, Clone)]
pub struct BatchReport {
    pub records: Vec<(String, Result<Summary, Failure>)>,
}

impl BatchReport {
    pub fn response(&self) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = self
            .records
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(id, _)| {
                let mut f = BatchItemFailure::default();
                f.item_identifier = id.clone();
                f
            })
            .collect();
        response
    }
}

/// Where to space out redeliveries. Without it, failed records come back
/// after the queue's own visibility timeout.
#[derive(Clone)]
pub struct Redelivery {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
}

/// How long a read of the lab's CustomerId is trusted before a document
/// that it does not settle (one from a CustomerId other than the one known,
/// or any while none is known) reads it again. Bounds the extra reads to one
/// per interval per instance, whatever arrives.
pub const OWN_CUSTOMER_REREAD: Duration = Duration::from_secs(30);
/// After a failed read: try again this soon (meanwhile documents are
/// treated as the lab's own, as before anything was learned).
const OWN_CUSTOMER_RETRY: Duration = Duration::from_secs(5);

/// The lab's own CustomerId as this instance last read it from the ledger.
struct OwnCustomerCache {
    ledger: Ledger,
    state: tokio::sync::Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    known: Option<String>,
    /// No read before this (None: never read).
    next_read: Option<Instant>,
}

impl OwnCustomerCache {
    /// Whether a document from `customer_id` comes from another requester.
    /// Reads the ledger on the first document with a CustomerId, then only
    /// when the answer would be "unknown" or "foreign" and the last read is
    /// older than [`OWN_CUSTOMER_REREAD`]: the lab's own documents never
    /// cost a read once the id is known.
    async fn is_foreign(&self, customer_id: Option<&str>) -> bool {
        // A document without a CustomerId was not written by MTurk; it is
        // treated as before (a forged event can only name the lab's own
        // assignments, which GetAssignment checks).
        let Some(customer_id) = customer_id else {
            return false;
        };
        let mut state = self.state.lock().await;
        if state.known.as_deref() == Some(customer_id) {
            return false;
        }
        let now = Instant::now();
        if state.next_read.is_none_or(|at| now >= at) {
            match self.ledger.own_customer().await {
                Ok(own) => {
                    state.known = own.map(|o| o.customer_id);
                    state.next_read = Some(now + OWN_CUSTOMER_REREAD);
                }
                Err(e) => {
                    warn!(error = %e, "could not read the lab's CustomerId; treating documents as the lab's own for now");
                    state.next_read = Some(now + OWN_CUSTOMER_RETRY);
                }
            }
        }
        matches!(&state.known, Some(own) if own != customer_id)
    }
}

#[derive(Clone)]
pub struct Handler {
    /// The exclusion path, and the ledger for what is not an exclusion:
    /// heartbeats and ended claims.
    lab: Lab,
    /// The lab's MTurk limiter, read for the metrics and the pool's rate.
    limiter: Arc<RateLimiter>,
    own_customer: Arc<OwnCustomerCache>,
    redelivery: Option<Redelivery>,
    config: Arc<Config>,
    pool: Arc<PoolReport>,
    queue: Arc<QueueFacts>,
}

/// This instance's part in the pool's record of its MTurk rate (the
/// ledger's `PoolRate`): read once, before the first batch, to start at the
/// instance's share; written at most once per [`POOL_RATE_EVERY`].
struct PoolReport {
    /// A short id of this instance (its attribute in the ledger's item).
    instance: String,
    /// Whether the pool's rate was read yet (or is not to be: a start rate
    /// was configured).
    read: tokio::sync::Mutex<bool>,
    last_write: std::sync::Mutex<Option<Instant>>,
}

/// How often an instance reports its rate to the pool at most.
pub const POOL_RATE_EVERY: Duration = Duration::from_secs(60);

/// What the handler knows of its queue, for deferring records that wait
/// for MTurk's rate: its redrive policy's maxReceiveCount, read once.
#[derive(Default)]
struct QueueFacts {
    max_receive_count: tokio::sync::Mutex<Option<Option<u32>>>,
}

impl Handler {
    pub fn new(lab: Lab, redelivery: Option<Redelivery>, config: Arc<Config>) -> Self {
        Handler {
            own_customer: Arc::new(OwnCustomerCache {
                ledger: lab.ledger.clone(),
                state: Default::default(),
            }),
            limiter: lab.mturk.limiter().clone(),
            lab,
            redelivery,
            pool: Arc::new(PoolReport {
                instance: instance_id(),
                read: tokio::sync::Mutex::new(config.mturk_start_rps.is_some()),
                last_write: std::sync::Mutex::new(None),
            }),
            queue: Arc::default(),
            config,
        }
    }

    /// Builds the handler from its configuration and the loaded SDK config:
    /// what the Lambda's `main` does once per cold start.
    pub fn from_config(config: &Config, sdk: &aws_config::SdkConfig) -> Self {
        Self::with_clients(config, Clients::from_sdk(config, sdk))
    }

    /// [`Handler::from_config`] with the clients already built, so that tests
    /// can point one of them elsewhere and still assemble the rest as the
    /// Lambda does.
    pub fn with_clients(config: &Config, clients: Clients) -> Self {
        let lab = Lab::from_config(config, &clients);
        let redelivery = config.queue_url.as_ref().map(|url| Redelivery {
            sqs: clients.sqs,
            queue_url: url.clone(),
        });
        Handler::new(lab, redelivery, Arc::new(config.clone()))
    }

    /// Processes a batch that must be answered by `deadline`.
    pub async fn process(
        &self,
        records: Vec<SqsMessage>,
        deadline: Instant,
    ) -> Result<BatchReport, BatchError> {
        self.process_measured(records, deadline).await.0
    }

    /// [`Handler::process`], with what the batch did for the metrics, also
    /// when the whole batch failed (all throttled: the line that says so
    /// matters most).
    pub async fn process_measured(
        &self,
        records: Vec<SqsMessage>,
        deadline: Instant,
    ) -> (Result<BatchReport, BatchError>, BatchMetrics) {
        let share = self.pool_share().await;
        // Tells the limiter this batch's records are coming (a cold batch's
        // first call, answered before the others reach it, still grows slow
        // start), and where to start on the first.
        let batch = self.limiter.batch(records.len(), share);
        let mut settled = Summary::default();
        let (result, calls) = counting_calls(self.run_batch(records, deadline, &mut settled)).await;
        drop(batch);
        self.report_to_pool().await;
        let metrics = BatchMetrics {
            summary: settled,
            mturk_calls: calls.sent,
            mturk_throttled: calls.throttled,
            mturk_rate: self.limiter.snapshot().rate,
        };
        (result, metrics)
    }

    /// Before the first batch: this instance's share of the rate the pool
    /// recently sustained (the pool's rate ÷ the instances that reported
    /// it, at least `MAX_CONCURRENCY` of them), for the limiter to start at
    /// instead of slow start. One GetItem per cold start; `None` after the
    /// first batch, without history, or if it cannot be read.
    async fn pool_share(&self) -> Option<f64> {
        let mut read = self.pool.read.lock().await;
        if *read {
            return None;
        }
        *read = true;
        match self.lab.ledger.pool_rate(OffsetDateTime::now_utc()).await {
            Ok(Some(pool)) => {
                let instances = pool.instances.max(self.config.max_concurrency.unwrap_or(1));
                let share = pool.rate / instances as f64;
                info!(
                    pool_rate = pool.rate,
                    instances, share, "starting at this instance's share of the pool's MTurk rate"
                );
                Some(share)
            }
            Ok(None) => {
                info!(
                    rate = self.limiter.snapshot().rate,
                    "no recent MTurk rate in the ledger; starting in slow start"
                );
                None
            }
            Err(e) => {
                warn!(error = %e, "could not read the pool's MTurk rate; starting in slow start");
                None
            }
        }
    }

    /// After a batch: note this instance's recent MTurk rate in the ledger,
    /// at most once per [`POOL_RATE_EVERY`] and only if the limit held its
    /// calls back lately (otherwise the rate says nothing of MTurk's).
    async fn report_to_pool(&self) {
        let limiter = self.limiter.snapshot();
        let lately = |at: Instant| Instant::now().saturating_duration_since(at) <= POOL_RATE_EVERY;
        if !limiter.held_back.is_some_and(lately) {
            return;
        }
        let rate = limiter.rate;
        {
            let mut last = self
                .pool
                .last_write
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if last.is_some_and(|at| now.saturating_duration_since(at) < POOL_RATE_EVERY) {
                return;
            }
            *last = Some(now);
        }
        if let Err(e) = self
            .lab
            .ledger
            .record_pool_rate(&self.pool.instance, rate, OffsetDateTime::now_utc())
            .await
        {
            warn!(error = %e, "could not note this instance's MTurk rate in the ledger");
        }
    }

    async fn run_batch(
        &self,
        records: Vec<SqsMessage>,
        deadline: Instant,
        settled: &mut Summary,
    ) -> Result<BatchReport, BatchError> {
        let mut ids = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            match r.message_id.as_deref() {
                Some(id) if !id.is_empty() => ids.push(id.to_owned()),
                _ => {
                    let err = BatchError::MissingMessageId(i);
                    warn!(error = %err, "batch failed");
                    return Err(err);
                }
            }
        }
        // A started record is cut off shortly before the deadline, so the
        // batch is always answered in time; the cut-off record is retried.
        let hard_stop = deadline
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(deadline);
        // The futures are built up front (they do nothing until polled) so
        // the stream holds no closure over borrowed records, which keeps the
        // batch future `Send` for every caller.
        let pending: Vec<_> = records
            .iter()
            .zip(&ids)
            .enumerate()
            .map(|(i, (record, id))| self.run_record(i, record, id, deadline, hard_stop))
            .collect();
        let mut results: Vec<(usize, Result<Summary, Failure>, Summary)> =
            futures::stream::iter(pending)
                .buffer_unordered(self.config.record_concurrency)
                .collect()
                .await;
        results.sort_by_key(|(i, _, _)| *i);
        for (_, _, done) in &results {
            settled.merge(done);
        }
        let mut report = BatchReport {
            records: ids
                .into_iter()
                .zip(results.into_iter().map(|(_, r, _)| r))
                .collect(),
        };
        self.defer(&records, &mut report).await;
        let throttled = report
            .records
            .iter()
            .filter(|(_, r)| matches!(r, Err(Failure::Throttled(_))))
            .count();
        if throttled > 0 && throttled == report.records.len() {
            let err = BatchError::AllThrottled(throttled);
            warn!(error = %err, "batch failed");
            return Err(err);
        }
        Ok(report)
    }

    /// One record under the deadline, with its span and its one log line.
    /// Also returns what was settled, even if the record then failed.
    async fn run_record(
        &self,
        index: usize,
        record: &SqsMessage,
        id: &str,
        deadline: Instant,
        hard_stop: Instant,
    ) -> (usize, Result<Summary, Failure>, Summary) {
        if Instant::now() + self.config.deadline_margin >= deadline {
            warn!(message_id = %id, reason = %Failure::Deadline, "record not started");
            return (index, Err(Failure::Deadline), Summary::default());
        }
        let span = info_span!("record", message_id = %id, event_doc_id = field::Empty);
        let mut done = Summary::default();
        // Throttled MTurk calls wait in here for their next slot, until the margin.
        let work = retrying_throttles_until(
            deadline - self.config.deadline_margin,
            self.process_record(record, &mut done),
        );
        let result = tokio::time::timeout_at(hard_stop, work)
            .instrument(span.clone())
            .await
            .unwrap_or(Err(Failure::Deadline))
            .map(|()| done.clone());
        span.in_scope(|| match &result {
            Ok(s) => info!(
                excluded = s.settled.excluded,
                already_excluded = s.settled.already_excluded,
                duplicates = s.settled.duplicates,
                released = s.settled.kept_released,
                heartbeats = s.heartbeats,
                claims_ended = s.claims_ended,
                ignored = s.ignored,
                foreign_documents = s.foreign_documents,
                "record done"
            ),
            // The id is repeated here, not only on the span, so the line still
            // names its message when the log level filters INFO spans out.
            Err(f) => warn!(message_id = %id, reason = %f, "record failed"),
        });
        (index, result, done)
    }

    /// Settles the record's events into `summary` as they are done.
    async fn process_record(
        &self,
        record: &SqsMessage,
        summary: &mut Summary,
    ) -> Result<(), Failure> {
        self.check_sender(record)?;
        let body = record
            .body
            .as_deref()
            .ok_or_else(|| Failure::Malformed("the message has no body".into()))?;
        let notification =
            Notification::parse(body).map_err(|e| Failure::Malformed(e.to_string()))?;
        tracing::Span::current().record("event_doc_id", notification.doc_id.as_str());
        if self.is_foreign(&notification).await {
            summary.foreign_documents += 1;
            return Ok(());
        }
        let mut seen = HashSet::new();
        for event in &notification.events {
            if let Event::AssignmentSubmitted { assignment_id, .. } = event {
                if !seen.insert(assignment_id) {
                    summary.settled.duplicates += 1;
                    continue;
                }
            }
            self.settle_event(event, &notification, summary).await?;
        }
        for u in &notification.unreadable {
            warn!(
                index = u.index,
                event_type = u.event_type.as_deref().unwrap_or("(none)"),
                problem = %u.problem,
                "event could not be read; set aside"
            );
        }
        // Every readable event was done first: an unreadable submission
        // fails only its own record, never its neighbours' exclusions.
        if let Some(u) = notification.blocking_problem() {
            return Err(Failure::Malformed(u.problem.to_string()));
        }
        Ok(())
    }

    /// Refuses (with `REJECT_UNKNOWN_SENDERS`) or warns about a record that
    /// MTurk's documented sender did not send.
    fn check_sender(&self, record: &SqsMessage) -> Result<(), Failure> {
        let sender = original_sender(record);
        if sender == Some(MTURK_SENDER_ID) {
            return Ok(());
        }
        let shown_sender = sender.map(shown).unwrap_or_else(|| "(none)".to_owned());
        if self.config.reject_unknown_senders {
            return Err(Failure::UnknownSender(shown_sender));
        }
        warn!(sender = %shown_sender, "SenderId is not MTurk's documented sender; processing anyway");
        Ok(())
    }

    /// Another requester's document: its assignments are not the lab's, so
    /// looking them up would only spend the lab's MTurk rate and end in the
    /// dead-letter queue; its Ping proves nothing. Acknowledged unread.
    async fn is_foreign(&self, notification: &Notification) -> bool {
        let customer = notification.customer_id.as_deref();
        if !self.own_customer.is_foreign(customer).await {
            return false;
        }
        warn!(
            customer_id = %short(customer.unwrap_or_default()),
            events = notification.events.len() + notification.unreadable.len(),
            "document from another requester's CustomerId; acknowledged without calling MTurk"
        );
        true
    }

    /// One readable event of the lab's document, settled into `summary`.
    async fn settle_event(
        &self,
        event: &Event,
        notification: &Notification,
        summary: &mut Summary,
    ) -> Result<(), Failure> {
        let now = OffsetDateTime::now_utc();
        match event {
            Event::AssignmentSubmitted {
                assignment_id, at, ..
            } => {
                let settled = self
                    .lab
                    .excluder
                    .exclude_assignment(assignment_id, &notification.doc_id, *at)
                    .await
                    .map_err(|e| {
                        let text = format!("assignment {assignment_id}: {e}");
                        if e.is_throttling() {
                            Failure::Throttled(text)
                        } else if e.is_permanent() {
                            Failure::Rejected(text)
                        } else if e.is_under_way() {
                            Failure::UnderWay(text)
                        } else {
                            Failure::Transient(text)
                        }
                    })?;
                summary.settled.add_settled(settled);
            }
            Event::Ping {
                at,
                placeholder_hit_type_id,
            } => {
                let sender = Sender {
                    customer_id: notification.customer_id.as_deref(),
                    source_account: notification.source_account.as_deref(),
                };
                self.lab
                    .ledger
                    .record_heartbeat(
                        &notification.doc_id,
                        at.unwrap_or(now),
                        placeholder_hit_type_id.as_deref(),
                        sender,
                        now,
                    )
                    .await
                    .map_err(|e| Failure::Transient(e.to_string()))?;
                summary.heartbeats += 1;
            }
            // The worker gave the assignment up: the accept-time check's
            // claim on it ends. From the notification alone, without MTurk
            // (GetAssignment does not answer for these): one write of the
            // assignment's end marker, which the check reads.
            Event::AssignmentReturned { assignment_id }
            | Event::AssignmentAbandoned { assignment_id } => {
                let end = match event {
                    Event::AssignmentReturned { .. } => ClaimEnd::Returned,
                    _ => ClaimEnd::Abandoned,
                };
                self.lab
                    .ledger
                    .end_claim(assignment_id, end, now)
                    .await
                    .map_err(|e| Failure::Transient(format!("assignment {assignment_id}: {e}")))?;
                summary.claims_ended += 1;
            }
            Event::Other { event_type } => {
                info!(event_type = %event_type, "event acknowledged; nothing to do");
                summary.ignored += 1;
            }
        }
        Ok(())
    }

    /// Sends failed records back to the queue with a delay. A record that
    /// waits for MTurk's rate comes back when the backlog ahead of it
    /// should be done (the queue's visible messages and the records of this
    /// batch deferred before it, ÷ the pool's rate, estimated as this
    /// instance's × `MAX_CONCURRENCY`), not at once. If this receive is one
    /// of its last two before the dead-letter queue and MTurk
    /// still accepts this instance's calls, it is sent again as a new
    /// message (receive count 1) and this copy succeeds: throttling never
    /// dead-letters a record. Records that failed for a transient fault back
    /// off by receive count: base × 2^(receives − 1), capped, with a little
    /// jitter so a burst's failures do not all return at once.
    // Its two cases (waiting for the rate, backing off) share one pass over
    // the failed records and the queue's depth read once for both.
    #[allow(clippy::too_many_lines)]
    async fn defer(&self, records: &[SqsMessage], report: &mut BatchReport) {
        let Some(redelivery) = &self.redelivery else {
            return;
        };
        let waiting: Vec<usize> = report
            .records
            .iter()
            .enumerate()
            .filter(|(_, (_, r))| matches!(r, Err(f) if f.waits_for_rate()))
            .map(|(i, _)| i)
            .collect();
        let (backlog, max_receives) = if waiting.is_empty() {
            (0, None)
        } else {
            self.queue_facts(redelivery).await
        };
        // Calls per second the pool gets through, as far as this instance
        // knows, and whether MTurk still accepts this instance's calls.
        let limiter = self.limiter.snapshot();
        let pool_rate = limiter.rate * self.config.max_concurrency.unwrap_or(1).max(1) as f64;
        let accepting = limiter
            .last_accepted
            .is_some_and(|at| Instant::now().saturating_duration_since(at) <= ACCEPTING_WITHIN);
        let mut entries = Vec::new();
        let mut place = 0u64;
        for (i, record) in records.iter().enumerate() {
            let (id, result) = &report.records[i];
            let (Err(f), Some(handle)) = (result, record.receipt_handle.as_deref()) else {
                continue;
            };
            let receives = record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|c| c.parse::<u32>().ok())
                .unwrap_or(1);
            let delay = if f.waits_for_rate() {
                // Behind the backlog, and behind the records of this batch
                // deferred before it.
                place += 1;
                let ahead = (backlog + place) as f64 * CALLS_PER_RECORD;
                let delay = Duration::from_secs_f64(ahead / pool_rate.max(0.1))
                    .clamp(RATE_DEFER_MIN, self.config.backoff_max.max(RATE_DEFER_MIN));
                // One receive early: an invocation that dies on the last
                // receive (a timeout, a crash) can no longer send it back,
                // and SQS's receive count is approximate.
                if max_receives.is_some_and(|max| receives + 1 >= max) && accepting {
                    match self.send_back(redelivery, record, delay).await {
                        Ok(n) => {
                            info!(message_id = %id, receives, rate_deferrals = n, delay_s = delay.as_secs(), reason = %f,
                                "record waits for MTurk's rate at its last receive; sent back to the queue as a new message");
                            report.records[i].1 = Ok(Summary::default());
                            continue;
                        }
                        Err(why) => warn!(message_id = %id, receives, reason = %f, problem = %why,
                            "record waits for MTurk's rate at its last receive and could not be sent back; the redrive policy decides"),
                    }
                }
                delay
            } else if f.backs_off() {
                let usual = backoff(
                    self.config.backoff_base,
                    self.config.backoff_max,
                    receives,
                    id,
                );
                // A worker with two submissions in one burst: the second
                // found the first's grant in flight. Waiting out the whole
                // backoff (30 s by default) held a burst open for one worker.
                if matches!(f, Failure::UnderWay(_)) && receives <= 1 {
                    usual.min(UNDER_WAY_RETRY)
                } else {
                    usual
                }
            } else {
                continue;
            };
            let entry = aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(format!("r{}", entries.len()))
                .receipt_handle(handle)
                .visibility_timeout(delay.as_secs() as i32)
                .build();
            match entry {
                Ok(e) => entries.push(e),
                Err(e) => warn!(error = %e, "could not build a visibility change"),
            }
        }
        // SQS takes at most 10 entries a request and refuses a larger batch
        // whole, which would silently switch the backoff off for a BatchSize
        // over 10.
        for chunk in entries.chunks(10) {
            let result = redelivery
                .sqs
                .change_message_visibility_batch()
                .queue_url(&redelivery.queue_url)
                .set_entries(Some(chunk.to_vec()))
                .send()
                .await;
            // Not fatal: the records still fail and come back after the
            // queue's own visibility timeout.
            match result {
                Ok(out) if !out.failed.is_empty() => {
                    warn!(
                        failed = out.failed.len(),
                        "some visibility changes were refused"
                    )
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "could not space out redeliveries")
                }
            }
        }
    }

    /// The queue's visible backlog now, and its redrive policy's
    /// maxReceiveCount (read once per instance). One GetQueueAttributes per
    /// batch with records waiting for the rate; what cannot be read is
    /// taken as no backlog and no redrive policy known (no record is then
    /// sent back as new: the redrive policy decides, as before).
    async fn queue_facts(&self, redelivery: &Redelivery) -> (u64, Option<u32>) {
        use aws_sdk_sqs::types::QueueAttributeName;
        let mut known = self.queue.max_receive_count.lock().await;
        let mut ask = redelivery
            .sqs
            .get_queue_attributes()
            .queue_url(&redelivery.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages);
        if known.is_none() {
            ask = ask.attribute_names(QueueAttributeName::RedrivePolicy);
        }
        match ask.send().await {
            Ok(out) => {
                let attributes = out.attributes.unwrap_or_default();
                let backlog = attributes
                    .get(&QueueAttributeName::ApproximateNumberOfMessages)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if known.is_none() {
                    *known = Some(
                        attributes
                            .get(&QueueAttributeName::RedrivePolicy)
                            .and_then(|p| max_receive_count(p)),
                    );
                }
                (backlog, known.flatten())
            }
            Err(e) => {
                warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "could not read the queue's backlog");
                (0, known.flatten())
            }
        }
    }

    /// Sends a record back to the queue as a new message, delayed (at most
    /// SQS's 15 minutes), carrying its original SenderId and how often it
    /// was sent back. Returns that count, or why it was not sent.
    async fn send_back(
        &self,
        redelivery: &Redelivery,
        record: &SqsMessage,
        delay: Duration,
    ) -> Result<u32, String> {
        use aws_sdk_sqs::types::MessageAttributeValue;
        let deferrals = record
            .message_attributes
            .get(RATE_DEFERRALS_ATTRIBUTE)
            .and_then(|a| a.string_value.as_deref())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
            + 1;
        if deferrals > MAX_RATE_DEFERRALS {
            return Err(format!(
                "sent back {MAX_RATE_DEFERRALS} times already for MTurk's rate"
            ));
        }
        let body = record.body.as_deref().ok_or("no body")?;
        let sender = original_sender(record).map(str::to_owned);
        let string = |v: String| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| e.to_string())
        };
        let number = MessageAttributeValue::builder()
            .data_type("Number")
            .string_value(deferrals.to_string())
            .build()
            .map_err(|e| e.to_string())?;
        let mut send = redelivery
            .sqs
            .send_message()
            .queue_url(&redelivery.queue_url)
            .message_body(body)
            .delay_seconds(delay.min(MAX_SEND_DELAY).as_secs() as i32)
            .message_attributes(RATE_DEFERRALS_ATTRIBUTE, number);
        if let Some(sender) = sender {
            send = send.message_attributes(SENDER_ATTRIBUTE, string(sender)?);
        }
        send.send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())?;
        Ok(deferrals)
    }
}

/// Who sent the record: its SenderId, or for a copy this handler sent back
/// for MTurk's rate, the original's (only the lab's own principals and MTurk
/// may send to the queue).
fn original_sender(record: &SqsMessage) -> Option<&str> {
    record
        .message_attributes
        .get(SENDER_ATTRIBUTE)
        .and_then(|a| a.string_value.as_deref())
        .or_else(|| record.attributes.get("SenderId").map(String::as_str))
}

/// The maxReceiveCount of a queue's RedrivePolicy attribute (JSON, where
/// the count is a number or a string).
fn max_receive_count(policy: &str) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_str(policy).ok()?;
    match v.get("maxReceiveCount")? {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A short id for this instance, different from its siblings' (the
/// process id and the start time, mixed).
fn instance_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32);
    // SplitMix64's finaliser: neighbouring inputs, unrelated outputs.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("{:012x}", (x ^ (x >> 31)) >> 16)
}

/// A foreign CustomerId for the log: its first four characters only, enough
/// to tell two senders apart, too little to name one.
fn short(raw: &str) -> String {
    let head: String = raw.chars().take(4).flat_map(char::escape_debug).collect();
    format!("{head}\u{2026}")
}

/// Redelivery delay after `receives` receives: doubling from `base`, at most `max`,
/// plus up to 10% of jitter derived from the message id.
pub fn backoff(base: Duration, max: Duration, receives: u32, message_id: &str) -> Duration {
    let exponent = receives.saturating_sub(1).min(16);
    let delay = base.saturating_mul(1 << exponent).min(max);
    let hash = message_id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    let jitter = delay.mul_f64(f64::from(hash % 100) / 1000.0);
    (delay + jitter).min(max.max(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redrive_policy_is_read_either_way() {
        let arn = "arn:aws:sqs:us-east-1:1:dlq";
        assert_eq!(
            max_receive_count(&format!(
                r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":8}}"#
            )),
            Some(8)
        );
        assert_eq!(
            max_receive_count(&format!(
                r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"5"}}"#
            )),
            Some(5)
        );
        assert_eq!(max_receive_count("not json"), None);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_secs(30);
        let max = Duration::from_secs(900);
        let d1 = backoff(base, max, 1, "m");
        let d2 = backoff(base, max, 2, "m");
        let d9 = backoff(base, max, 9, "m");
        assert!(d1 >= base && d1 <= base.mul_f64(1.1));
        assert!(d2 >= 2 * base && d2 <= (2 * base).mul_f64(1.1));
        assert_eq!(d9, max);
        assert_eq!(backoff(base, max, u32::MAX, "m"), max);
        assert!(backoff(base, max, 0, "m") >= base);
    }

    #[test]
    fn failed_records_are_reported_by_their_own_ids() {
        let report = BatchReport {
            records: vec![
                ("a".into(), Ok(Summary::default())),
                ("b".into(), Err(Failure::Malformed("x".into()))),
                ("c".into(), Err(Failure::Deadline)),
            ],
        };
        let ids: Vec<_> = report
            .response()
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        assert_eq!(ids, ["b", "c"]);
    }
}
