//! The accept-time check: a HIT page asks, right after the worker accepted,
//! whether this worker may go on. The rules live here; `crates/check` is
//! only the Lambda around them (a Function URL, `lambda_http`).
//!
//! `GET ?workerId=…&assignmentId=…&hitId=…` answers
//! `200 {"eligible": bool, "reason": R}`, with R one of
//!
//! - `preview`: assignmentId is `ASSIGNMENT_ID_NOT_AVAILABLE`, or there is
//!   no workerId. Nothing is read and nothing is written, whatever else the
//!   request carries (MTurk's previews carry no workerId; one that does was
//!   not sent by MTurk, and a preview must not tell anyone about a worker).
//! - `unknown_hit`: the hitId is not a HIT of the lab, or could not be
//!   verified now (the check's `GetHIT` budget is spent, or MTurk did not
//!   answer). Eligible (the page goes on, as it does when the check fails),
//!   the same for every worker, and nothing about the worker is read or
//!   written: only the lab's own HITs get an answer about a worker. A HIT
//!   is the lab's when the ledger remembers it (verified before, by this
//!   check or the watch's listing) or when `GetHIT` answers for it (MTurk
//!   answers only for the caller's own HITs; at most
//!   `HIT_LOOKUPS_PER_MINUTE` calls per instance and minute).
//! - `took_part`: the worker's exclusion is `excluded` (a participation the
//!   lab has not released). Wins over any claim. Nothing is written.
//! - `same_assignment`: the worker's claim is for this very assignment
//!   (a reload). Eligible; the claim is not extended, not even once it has
//!   expired.
//! - `busy`: an open claim on another assignment. Not eligible.
//! - `new`: free; the worker is now claimed for this assignment. Eligible.
//!
//! A claim is open until it expires (the shorter of `CLAIM_MINUTES` and the
//! HIT's `AssignmentDurationInSeconds`: never longer than the assignment
//! can stay open, and never extended by a later check), its assignment is
//! returned or abandoned (marker written by the SQS handler), or the lab
//! releases the worker (a claim made at or before the release no longer
//! counts). Once the submission is recorded the worker "took part", which
//! wins over the claim.
//!
//! Errors: `400 {"error": …}` naming the parameter (missing, malformed,
//! repeated) or the oversized part, with nothing read or written; `405` for
//! any method but GET; `503` when the ledger cannot be reached. The answer
//! says nothing about other workers, studies, dates or counts, and nothing
//! here logs a worker id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use serde_json::json;
use time::{Duration, OffsetDateTime};
use tokio::time::Instant;

use crate::ids::{AssignmentId, HitId, InvalidId, QualificationTypeId, WorkerId};
use crate::ledger::claims::MAX_CLAIM;
use crate::ledger::{Ledger, LedgerError, Replaceable, Standing, VerifiedBy, VerifiedHit};
use crate::mturk::{Mturk, MturkEnvironment, MturkErrorKind};

/// The assignment id MTurk puts on a HIT page in preview.
pub const PREVIEW_ASSIGNMENT: &str = "ASSIGNMENT_ID_NOT_AVAILABLE";
/// The longest query string taken (three ids of at most 255 bytes, their
/// names, and room for the other parameters MTurk appends).
pub const MAX_QUERY_BYTES: usize = 2048;
/// The largest body taken: a GET has none.
pub const MAX_BODY_BYTES: usize = 1024;
/// The event types `subscribe` asks MTurk for (the same list as
/// [`crate::mturk::Mturk::subscribe`] sends): submissions exclude,
/// returns and abandons end claims.
pub const NOTIFIED_EVENT_TYPES: &[&str] = &[
    "AssignmentSubmitted",
    "AssignmentReturned",
    "AssignmentAbandoned",
];
/// How often a lost race is read again before giving up (503).
const ATTEMPTS: usize = 3;
/// `HIT_LOOKUPS_PER_MINUTE` unless set: a study posted as 20 new HITs is
/// verified by one instance within its first minute, while a flood of
/// made-up HIT ids costs MTurk at most 20 calls a minute per instance (100
/// at the default reserved concurrency of 5).
pub const DEFAULT_HIT_LOOKUPS_PER_MINUTE: u32 = 20;
/// The longest a check waits for `GetHIT` before answering `unknown_hit`
/// (the page gives up after 4 s).
const HIT_LOOKUP_TIMEOUT: StdDuration = StdDuration::from_millis(1500);
/// Verified HITs one instance keeps in memory (forgotten all at once when
/// full; the ledger still knows them).
const KNOWN_HITS_KEPT: usize = 4096;

/// The answer's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Preview,
    New,
    SameAssignment,
    Busy,
    TookPart,
    /// The HIT is not the lab's.
    UnknownHit,
    /// The HIT could not be verified now (budget spent, MTurk slow): the
    /// same answer as [`Reason::UnknownHit`], another metric.
    HitUnverified,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Preview => "preview",
            Reason::New => "new",
            Reason::SameAssignment => "same_assignment",
            Reason::Busy => "busy",
            Reason::TookPart => "took_part",
            Reason::UnknownHit | Reason::HitUnverified => "unknown_hit",
        }
    }

    /// The `Reason` dimension of the metrics.
    pub fn metric(self) -> &'static str {
        match self {
            Reason::HitUnverified => "hit_unverified",
            other => other.as_str(),
        }
    }

    pub fn eligible(self) -> bool {
        matches!(
            self,
            Reason::Preview
                | Reason::New
                | Reason::SameAssignment
                | Reason::UnknownHit
                | Reason::HitUnverified
        )
    }
}

/// The check's settings, read once at cold start.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// `TABLE_NAME`
    pub table_name: String,
    /// `QUALIFICATION_TYPE_ID`
    pub qualification_type_id: QualificationTypeId,
    /// `CLAIM_MINUTES` (1 to 10080, default 60)
    pub claim: Duration,
    /// `METRICS_POOL`: the `Pool` dimension of the metrics (default `default`).
    pub pool: String,
    /// `MTURK_ENVIRONMENT`: `sandbox` or `production` (default `sandbox`),
    /// where `GetHIT` verifies a HIT.
    pub mturk_environment: MturkEnvironment,
    /// `AWS_ENDPOINT_URL_MTURK`: overrides the environment's endpoint (tests).
    pub mturk_endpoint: Option<String>,
    /// `HIT_LOOKUPS_PER_MINUTE` (0 to 600, default 20): the most `GetHIT`
    /// calls one instance makes in a minute to verify HIT ids it does not
    /// know. 0: only HITs the ledger already knows (the watch's listing)
    /// get an answer about a worker.
    pub hit_lookups_per_minute: u32,
}

pub use crate::config::ConfigError;

impl CheckConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = crate::config::Env::new(lookup);
        let table_name = env.required("TABLE_NAME")?;
        let qualification_type_id = env.qualification()?;
        let claim = env
            .in_range(
                "CLAIM_MINUTES",
                "a whole number of minutes",
                1..=MAX_CLAIM.whole_minutes(),
            )?
            .map_or(Duration::minutes(60), Duration::minutes);
        let mturk_environment = match env.get("MTURK_ENVIRONMENT").as_deref().map(str::trim) {
            None | Some("sandbox") => MturkEnvironment::Sandbox,
            Some("production") => MturkEnvironment::Production,
            Some(other) => {
                return Err(ConfigError {
                    variable: "MTURK_ENVIRONMENT",
                    problem: format!("{other:?} is neither sandbox nor production"),
                })
            }
        };
        let hit_lookups_per_minute = env
            .in_range("HIT_LOOKUPS_PER_MINUTE", "a whole number", 0..=600)?
            .unwrap_or(DEFAULT_HIT_LOOKUPS_PER_MINUTE);
        Ok(CheckConfig {
            table_name,
            qualification_type_id,
            claim,
            mturk_endpoint: env.get("AWS_ENDPOINT_URL_MTURK"),
            mturk_environment,
            hit_lookups_per_minute,
            pool: crate::metrics::pool(|v| env.get(v)),
        })
    }
}

/// A request the check will answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckRequest {
    /// Preview: nothing is read or written. A worker id, if one came, is
    /// parsed and otherwise ignored.
    Preview {
        worker: Option<WorkerId>,
        hit: HitId,
    },
    /// After accept.
    Accepted {
        worker: WorkerId,
        assignment: AssignmentId,
        hit: HitId,
    },
}

/// Why a request is refused before the ledger is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 405
    Method,
    /// 400, with the message naming the parameter or part.
    Bad(String),
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `application/x-www-form-urlencoded` decoding; a bad escape is kept as
/// it is (the id check then refuses it).
fn decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of one parameter: absent, or present once.
fn single(pairs: &[(String, String)], name: &str) -> Result<Option<String>, Refusal> {
    let mut found = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
    let first = found.next().cloned();
    if found.next().is_some() {
        return Err(Refusal::Bad(format!("{name} is given more than once")));
    }
    Ok(first)
}

fn id<T>(
    name: &str,
    raw: &str,
    parse: impl Fn(&str) -> Result<T, InvalidId>,
) -> Result<T, Refusal> {
    parse(raw).map_err(|e| Refusal::Bad(format!("{name}: {}", e.problem)))
}

impl CheckRequest {
    /// Reads a request: its method, raw query string and body size.
    pub fn parse(method: &str, query: Option<&str>, body_len: usize) -> Result<Self, Refusal> {
        if method != "GET" {
            return Err(Refusal::Method);
        }
        let query = query.unwrap_or("");
        if query.len() > MAX_QUERY_BYTES {
            return Err(Refusal::Bad(format!(
                "the query string is longer than {MAX_QUERY_BYTES} bytes"
            )));
        }
        if body_len > MAX_BODY_BYTES {
            return Err(Refusal::Bad(format!(
                "the body is longer than {MAX_BODY_BYTES} bytes (send a GET without one)"
            )));
        }
        let pairs: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (decode(k), decode(v)),
                None => (decode(p), String::new()),
            })
            .collect();
        let worker = single(&pairs, "workerId")?;
        let assignment = single(&pairs, "assignmentId")?;
        let hit = single(&pairs, "hitId")?;
        let assignment =
            assignment.ok_or_else(|| Refusal::Bad("assignmentId is missing".into()))?;
        let hit = hit.ok_or_else(|| Refusal::Bad("hitId is missing".into()))?;
        let hit = id("hitId", &hit, HitId::parse)?;
        let worker = worker
            .map(|w| id("workerId", &w, WorkerId::parse))
            .transpose()?;
        if assignment == PREVIEW_ASSIGNMENT {
            return Ok(CheckRequest::Preview { worker, hit });
        }
        let assignment = id("assignmentId", &assignment, AssignmentId::parse)?;
        Ok(match worker {
            None => CheckRequest::Preview { worker: None, hit },
            Some(worker) => CheckRequest::Accepted {
                worker,
                assignment,
                hit,
            },
        })
    }
}

/// What the ledger says about this worker and this assignment, before
/// any end marker is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assessment {
    TookPart,
    SameAssignment,
    /// A live claim on another assignment (unless its marker says it ended).
    Busy {
        assignment: String,
    },
    /// No claim that counts: claim it.
    Free,
}

/// The rules, on one read of the worker's standing.
pub fn assess(standing: &Standing, assignment: &str, now: OffsetDateTime) -> Assessment {
    if standing.took_part {
        return Assessment::TookPart;
    }
    let Some(claim) = &standing.claim else {
        return Assessment::Free;
    };
    let expired = claim.expires_at <= now.unix_timestamp();
    let before_release = standing
        .released_at
        .as_deref()
        .is_some_and(|r| claim.claimed_at.as_str() <= r);
    if before_release {
        Assessment::Free
    } else if claim.assignment_id == assignment {
        // Even once expired: the assignment it names is over by then, and
        // claiming it again would extend a claim past its assignment.
        Assessment::SameAssignment
    } else if expired {
        Assessment::Free
    } else {
        Assessment::Busy {
            assignment: claim.assignment_id.clone(),
        }
    }
}

/// At most `per_minute` calls in each minute, counted per instance in
/// fixed windows (a window starts with its first call).
#[derive(Debug)]
pub struct LookupBudget {
    per_minute: u32,
    window: Mutex<(Option<Instant>, u32)>,
}

impl LookupBudget {
    pub fn per_minute(per_minute: u32) -> Self {
        LookupBudget {
            per_minute,
            window: Mutex::new((None, 0)),
        }
    }

    /// Takes one call from this minute's budget, if any is left.
    pub fn take(&self) -> bool {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if window
            .0
            .is_none_or(|start| now.duration_since(start) >= StdDuration::from_secs(60))
        {
            *window = (Some(now), 0);
        }
        if window.1 < self.per_minute {
            window.1 += 1;
            true
        } else {
            false
        }
    }
}

/// Whether a HIT id is one of the lab's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HitCheck {
    Lab(VerifiedHit),
    /// MTurk says it is not the lab's (or no source could say it is).
    NotLab,
    /// Not known, and not verifiable now (budget spent, MTurk slow or down).
    Unverified,
}

/// How the check learns which HIT ids are the lab's: memory, then the
/// ledger, then (within the budget) `GetHIT`.
struct Hits {
    known: Mutex<HashMap<HitId, VerifiedHit>>,
    lookup: Option<(Mturk, LookupBudget)>,
}

impl Hits {
    fn remembered(&self, hit: &HitId) -> Option<VerifiedHit> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.get(hit).cloned()
    }

    fn remember(&self, hit: &HitId, verified: &VerifiedHit) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= KNOWN_HITS_KEPT {
            known.clear();
        }
        known.insert(hit.clone(), verified.clone());
    }

    async fn verify(
        &self,
        ledger: &Ledger,
        hit: &HitId,
        now: OffsetDateTime,
    ) -> Result<HitCheck, LedgerError> {
        if let Some(v) = self.remembered(hit) {
            return Ok(HitCheck::Lab(v));
        }
        if let Some(v) = ledger.verified_hit(hit).await? {
            self.remember(hit, &v);
            return Ok(HitCheck::Lab(v));
        }
        let Some((mturk, budget)) = &self.lookup else {
            return Ok(HitCheck::NotLab);
        };
        if !budget.take() {
            return Ok(HitCheck::Unverified);
        }
        let deadline = Instant::now() + HIT_LOOKUP_TIMEOUT;
        let call = crate::mturk::retrying_throttles_until(
            deadline,
            tokio::time::timeout_at(deadline, mturk.hit(hit)),
        );
        let found = match call.await {
            Ok(Ok(found)) if &found.hit_id == hit => found,
            Ok(Ok(_)) => return Ok(HitCheck::NotLab),
            Ok(Err(e)) if matches!(e.kind, MturkErrorKind::Rejected { .. }) => {
                // GetHIT refuses another requester's HIT (HITDoesNotExist or
                // similar). A refusal of another kind (the role lacking
                // GetHIT) is logged: it makes every new HIT unknown.
                if !e
                    .turk_error_code()
                    .is_some_and(|c| c.contains("DoesNotExist"))
                {
                    tracing::warn!(error = %e, "GetHIT refused; the HIT counts as not the lab's");
                }
                return Ok(HitCheck::NotLab);
            }
            Ok(Err(e)) => {
                // The error names the HIT and the operation, never a worker.
                tracing::warn!(error = %e, "GetHIT failed; the HIT stays unverified");
                return Ok(HitCheck::Unverified);
            }
            Err(_) => return Ok(HitCheck::Unverified),
        };
        let verified = VerifiedHit {
            hit_type_id: found.hit_type_id.clone(),
            assignment_duration_secs: found
                .properties
                .as_ref()
                .map(|p| p.assignment_duration_secs),
        };
        ledger
            .record_verified_hit(
                hit,
                &found.hit_type_id,
                verified.assignment_duration_secs,
                VerifiedBy::Check,
                now,
            )
            .await?;
        self.remember(hit, &verified);
        Ok(HitCheck::Lab(verified))
    }
}

/// The check against the ledger.
#[derive(Clone)]
pub struct Checker {
    ledger: Ledger,
    qualification: QualificationTypeId,
    claim: Duration,
    hits: Arc<Hits>,
}

impl Checker {
    /// A check that knows the HITs the ledger knows, and looks up no other
    /// ([`Checker::with_hit_lookups`] adds `GetHIT`).
    pub fn new(ledger: Ledger, qualification: QualificationTypeId, claim: Duration) -> Self {
        Checker {
            ledger,
            qualification,
            claim,
            hits: Arc::new(Hits {
                known: Mutex::new(HashMap::new()),
                lookup: None,
            }),
        }
    }

    /// Verifies HIT ids the ledger does not know with `GetHIT`, at most
    /// `per_minute` calls a minute (0: never).
    pub fn with_hit_lookups(mut self, mturk: Mturk, per_minute: u32) -> Self {
        self.hits = Arc::new(Hits {
            known: Mutex::new(HashMap::new()),
            lookup: (per_minute > 0).then(|| (mturk, LookupBudget::per_minute(per_minute))),
        });
        self
    }

    pub fn from_config(config: &CheckConfig, sdk: &aws_config::SdkConfig) -> Self {
        // The budget is the real cap; the limiter only spaces out a burst
        // of lookups so that they do not reach MTurk all at once.
        let mturk = Mturk::new(
            crate::aws::mturk_client(
                sdk,
                config.mturk_environment,
                config.mturk_endpoint.as_deref(),
            ),
            Arc::new(crate::rate::RateLimiter::fixed(10.0)),
        );
        Checker::new(
            Ledger::new(aws_sdk_dynamodb::Client::new(sdk), &config.table_name),
            config.qualification_type_id.clone(),
            config.claim,
        )
        .with_hit_lookups(mturk, config.hit_lookups_per_minute)
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Whether `hit` is the lab's, as the check decides it (memory, ledger,
    /// then `GetHIT` within the budget).
    pub async fn verify_hit(
        &self,
        hit: &HitId,
        now: OffsetDateTime,
    ) -> Result<HitCheck, LedgerError> {
        self.hits.verify(&self.ledger, hit, now).await
    }

    /// How long a claim on this HIT lasts: `CLAIM_MINUTES`, or the HIT's
    /// assignment duration if shorter.
    pub fn claim_for(&self, hit: &VerifiedHit) -> Duration {
        match hit.assignment_duration_secs {
            Some(secs) => self.claim.min(Duration::seconds(secs.max(1))),
            None => self.claim,
        }
    }

    /// Decides, and claims the worker when free.
    pub async fn check(
        &self,
        request: &CheckRequest,
        now: OffsetDateTime,
    ) -> Result<Reason, CheckFailure> {
        let (worker, assignment, hit) = match request {
            // Nothing read: a preview says nothing about any worker.
            CheckRequest::Preview { .. } => return Ok(Reason::Preview),
            CheckRequest::Accepted {
                worker,
                assignment,
                hit,
            } => (worker, assignment, hit),
        };
        let verified = match self.verify_hit(hit, now).await? {
            HitCheck::Lab(v) => v,
            HitCheck::NotLab => return Ok(Reason::UnknownHit),
            HitCheck::Unverified => return Ok(Reason::HitUnverified),
        };
        let duration = self.claim_for(&verified);
        for _ in 0..ATTEMPTS {
            let standing = self.ledger.standing(worker, &self.qualification).await?;
            if let Some(legacy) = &standing.legacy_claim {
                // A claim of the old layout, read-only: it holds the worker
                // until it ends, and no new claim is made meanwhile.
                let old = Standing {
                    claim: Some(legacy.clone()),
                    legacy_claim: None,
                    ..standing.clone()
                };
                match assess(&old, assignment.as_str(), now) {
                    Assessment::TookPart => return Ok(Reason::TookPart),
                    Assessment::SameAssignment => return Ok(Reason::SameAssignment),
                    Assessment::Busy { assignment: other } => {
                        if !self.ledger.claim_ended(&other).await? {
                            return Ok(Reason::Busy);
                        }
                    }
                    Assessment::Free => {}
                }
            }
            let mut ended = None;
            match assess(&standing, assignment.as_str(), now) {
                Assessment::TookPart => return Ok(Reason::TookPart),
                Assessment::SameAssignment => return Ok(Reason::SameAssignment),
                Assessment::Busy { assignment: other } => {
                    if !self.ledger.claim_ended(&other).await? {
                        return Ok(Reason::Busy);
                    }
                    ended = Some(other);
                }
                Assessment::Free => {}
            }
            let won = self
                .ledger
                .try_claim(
                    worker,
                    &self.qualification,
                    assignment,
                    hit,
                    now,
                    duration,
                    Replaceable {
                        released_at: standing.released_at.as_deref(),
                        ended_assignment: ended.as_deref(),
                    },
                )
                .await?;
            if won {
                return Ok(Reason::New);
            }
            // Another check wrote first: read again and answer from its claim.
        }
        Err(CheckFailure::Contention)
    }
}

/// Why the check could not answer (503).
#[derive(Debug, thiserror::Error)]
pub enum CheckFailure {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("the claim changed under every attempt")]
    Contention,
}

/// An HTTP answer, before the Lambda wraps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// A JSON document.
    pub body: String,
    /// The `Reason` dimension of the metrics: a reason, `invalid` or `unavailable`.
    pub metric_reason: &'static str,
}

impl Response {
    fn answer(reason: Reason) -> Self {
        Response {
            status: 200,
            body: json!({"eligible": reason.eligible(), "reason": reason.as_str()}).to_string(),
            metric_reason: reason.metric(),
        }
    }

    fn error(status: u16, message: &str, metric_reason: &'static str) -> Self {
        Response {
            status,
            body: json!({ "error": message }).to_string(),
            metric_reason,
        }
    }
}

/// One request, start to end: parse, decide, answer. Never panics on input.
pub async fn respond(
    checker: &Checker,
    method: &str,
    query: Option<&str>,
    body_len: usize,
    now: OffsetDateTime,
) -> Response {
    let request = match CheckRequest::parse(method, query, body_len) {
        Ok(r) => r,
        Err(Refusal::Method) => {
            return Response::error(405, "only GET is allowed", "invalid");
        }
        Err(Refusal::Bad(message)) => return Response::error(400, &message, "invalid"),
    };
    match checker.check(&request, now).await {
        Ok(reason) => Response::answer(reason),
        Err(e) => {
            // The error names no worker: ledger errors carry the operation
            // and DynamoDB's message only.
            tracing::warn!(error = %e, "check unavailable");
            Response::error(
                503,
                "the ledger cannot be reached; try again",
                "unavailable",
            )
        }
    }
}

/// The check's log filter for the level Lambda passes
/// (`AWS_LAMBDA_LOG_LEVEL`, the template's `LogLevel`): this crate's and
/// the binary's own events at that level, everything else (the Lambda
/// runtime, which logs the raw event with its query string at DEBUG and
/// TRACE, and the SDKs, which log request bodies at TRACE) at INFO at most.
/// The check's own events name no worker, so no level a lab can set puts a
/// worker id in its logs.
pub fn log_filter(level: Option<&str>) -> String {
    let level = match level.map(|l| l.trim().to_ascii_lowercase()).as_deref() {
        Some(l @ ("trace" | "debug" | "info" | "warn" | "error")) => l.to_owned(),
        Some("fatal") => "error".to_owned(),
        _ => "info".to_owned(),
    };
    let others = match level.as_str() {
        "trace" | "debug" => "info",
        l => l,
    };
    format!("{others},mturk_exclusion={level},exclusion_check={level}")
}

/// One CloudWatch Embedded Metric Format document for one request: `Checks`
/// (Count) by `[Pool, Reason]` and `CheckLatency` (Milliseconds) by `[Pool]`.
pub fn emf_line(pool: &str, reason: &str, latency: StdDuration, timestamp_ms: u64) -> String {
    use crate::metrics::{Document, Unit};
    let latency_ms = (latency.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
    Document::new(timestamp_ms)
        .dimension("Pool", pool)
        .dimension("Reason", reason)
        .group(&["Pool", "Reason"])
        .value("Checks", Unit::Count, 1.0)
        .group(&["Pool"])
        .value("CheckLatency", Unit::Milliseconds, latency_ms)
        .lines()
        .concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Claim;
    use time::macros::datetime;

    const W: &str = "A1B2C3D4E5F6G7";
    const A: &str = "3X4JMASXCM8FCX94IM0KEMYGMD5B0E";
    const H: &str = "3ZC62PVYDIVS0QE7NFAMN5S6YNQXXN";

    fn q(s: &str) -> Result<CheckRequest, Refusal> {
        CheckRequest::parse("GET", Some(s), 0)
    }

    fn bad(r: Result<CheckRequest, Refusal>) -> String {
        match r {
            Err(Refusal::Bad(m)) => m,
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_three_ids() {
        let r = q(&format!(
            "workerId={W}&assignmentId={A}&hitId={H}&turkSubmitTo=https%3A%2F%2Fx"
        ))
        .unwrap();
        assert!(matches!(r, CheckRequest::Accepted { .. }));
        let r = q(&format!("assignmentId={PREVIEW_ASSIGNMENT}&hitId={H}")).unwrap();
        assert_eq!(
            r,
            CheckRequest::Preview {
                worker: None,
                hit: HitId::parse(H).unwrap()
            }
        );
        let r = q(&format!("assignmentId={A}&hitId={H}")).unwrap();
        assert!(matches!(r, CheckRequest::Preview { worker: None, .. }));
        let r = q(&format!(
            "workerId={W}&assignmentId={PREVIEW_ASSIGNMENT}&hitId={H}"
        ))
        .unwrap();
        assert!(matches!(
            r,
            CheckRequest::Preview {
                worker: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn refusals_name_the_parameter() {
        assert!(bad(q(&format!("workerId={W}&hitId={H}"))).contains("assignmentId"));
        assert!(bad(q(&format!("workerId={W}&assignmentId={A}"))).contains("hitId"));
        assert!(
            bad(q(&format!("workerId=A1%20B&assignmentId={A}&hitId={H}"))).starts_with("workerId")
        );
        assert!(bad(q(&format!("workerId=&assignmentId={A}&hitId={H}"))).starts_with("workerId"));
        assert!(
            bad(q(&format!("workerId={W}&assignmentId=x-y&hitId={H}"))).starts_with("assignmentId")
        );
        assert!(bad(q(&format!(
            "workerId={W}&assignmentId={A}&hitId={H}&hitId={H}"
        )))
        .contains("hitId"));
        let long = "A".repeat(256);
        assert!(
            bad(q(&format!("workerId={long}&assignmentId={A}&hitId={H}"))).starts_with("workerId")
        );
        let huge = "A".repeat(MAX_QUERY_BYTES);
        assert!(bad(q(&format!("x={huge}"))).contains("query string"));
        assert!(bad(CheckRequest::parse("GET", None, MAX_BODY_BYTES + 1)).contains("body"));
        assert_eq!(CheckRequest::parse("POST", None, 0), Err(Refusal::Method));
        assert_eq!(
            CheckRequest::parse("OPTIONS", None, 0),
            Err(Refusal::Method)
        );
    }

    #[test]
    fn decodes_form_encoding() {
        assert_eq!(decode("a%41b+c"), "aAb c");
        assert_eq!(decode("%4"), "%4");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%"), "%");
    }

    fn claim(assignment: &str, claimed_at: &str, expires_at: i64) -> Option<Claim> {
        Some(Claim {
            assignment_id: assignment.into(),
            hit_id: H.into(),
            claimed_at: claimed_at.into(),
            expires_at,
        })
    }

    #[test]
    fn the_rules() {
        let now = datetime!(2026-03-02 17:00:00 UTC);
        let later = now.unix_timestamp() + 60;
        let free = Standing::default();
        assert_eq!(assess(&free, A, now), Assessment::Free);
        let took = Standing {
            took_part: true,
            claim: claim(A, "2026-03-02T16:59:00.000Z", later),
            ..Default::default()
        };
        assert_eq!(
            assess(&took, A, now),
            Assessment::TookPart,
            "took part wins over a claim"
        );
        let mine = Standing {
            claim: claim(A, "2026-03-02T16:59:00.000Z", later),
            ..Default::default()
        };
        assert_eq!(assess(&mine, A, now), Assessment::SameAssignment);
        assert_eq!(
            assess(&mine, "OTHER", now),
            Assessment::Busy {
                assignment: A.into()
            }
        );
        let expired = Standing {
            claim: claim(A, "2026-03-02T15:59:00.000Z", now.unix_timestamp()),
            ..Default::default()
        };
        assert_eq!(assess(&expired, "OTHER", now), Assessment::Free);
        assert_eq!(
            assess(&expired, A, now),
            Assessment::SameAssignment,
            "an expired claim is not renewed by its own assignment"
        );
        let released = Standing {
            released_at: Some("2026-03-02T16:59:30.000Z".into()),
            claim: claim(A, "2026-03-02T16:59:00.000Z", later),
            ..Default::default()
        };
        assert_eq!(
            assess(&released, "OTHER", now),
            Assessment::Free,
            "a claim from before the release"
        );
        let after = Standing {
            released_at: Some("2026-03-02T16:58:00.000Z".into()),
            claim: claim(A, "2026-03-02T16:59:00.000Z", later),
            ..Default::default()
        };
        assert_eq!(
            assess(&after, "OTHER", now),
            Assessment::Busy {
                assignment: A.into()
            }
        );
    }

    #[test]
    fn answers_are_a_flag_and_a_reason() {
        let r = Response::answer(Reason::Busy);
        assert_eq!(r.body, r#"{"eligible":false,"reason":"busy"}"#);
        let r = Response::answer(Reason::SameAssignment);
        assert_eq!(r.body, r#"{"eligible":true,"reason":"same_assignment"}"#);
    }

    #[test]
    fn the_runtime_and_the_sdks_never_log_below_info() {
        assert_eq!(
            log_filter(Some("TRACE")),
            "info,mturk_exclusion=trace,exclusion_check=trace"
        );
        assert_eq!(
            log_filter(Some("debug")),
            "info,mturk_exclusion=debug,exclusion_check=debug"
        );
        assert_eq!(
            log_filter(Some("WARN")),
            "warn,mturk_exclusion=warn,exclusion_check=warn"
        );
        assert_eq!(log_filter(None), log_filter(Some("INFO")));
        assert_eq!(log_filter(Some("lambda_runtime=trace")), log_filter(None));
    }

    #[tokio::test(start_paused = true)]
    async fn the_lookup_budget_is_per_minute() {
        let budget = LookupBudget::per_minute(3);
        assert_eq!((0..5).filter(|_| budget.take()).count(), 3);
        tokio::time::advance(StdDuration::from_secs(59)).await;
        assert!(!budget.take());
        tokio::time::advance(StdDuration::from_secs(1)).await;
        assert_eq!((0..5).filter(|_| budget.take()).count(), 3);
        assert!(!LookupBudget::per_minute(0).take());
    }

    #[test]
    fn hit_lookups_per_minute_are_bounded() {
        let with = |v: &'static str| {
            move |k: &str| match k {
                "TABLE_NAME" => Some("t".to_owned()),
                "QUALIFICATION_TYPE_ID" => Some("3LB30G6JHY4JQ4T5QRCEBZ6B9YDKQD".to_owned()),
                "HIT_LOOKUPS_PER_MINUTE" => Some(v.to_owned()),
                "MTURK_ENVIRONMENT" => Some("production".to_owned()),
                _ => None,
            }
        };
        let c = CheckConfig::from_lookup(with("0")).unwrap();
        assert_eq!(c.hit_lookups_per_minute, 0);
        assert_eq!(c.mturk_environment, MturkEnvironment::Production);
        assert_eq!(
            CheckConfig::from_lookup(with(""))
                .unwrap()
                .hit_lookups_per_minute,
            DEFAULT_HIT_LOOKUPS_PER_MINUTE
        );
        for bad in ["601", "-1", "many"] {
            assert_eq!(
                CheckConfig::from_lookup(with(bad)).unwrap_err().variable,
                "HIT_LOOKUPS_PER_MINUTE"
            );
        }
    }

    #[test]
    fn a_claim_lasts_no_longer_than_its_hits_assignments() {
        let hit = |secs| VerifiedHit {
            hit_type_id: crate::ids::HitTypeId::parse("3T").unwrap(),
            assignment_duration_secs: secs,
        };
        let client = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
                .build(),
        );
        let c = Checker::new(
            Ledger::new(client, "t"),
            QualificationTypeId::parse("3LB30G6JHY4JQ4T5QRCEBZ6B9YDKQD").unwrap(),
            Duration::minutes(60),
        );
        assert_eq!(c.claim_for(&hit(Some(30))), Duration::seconds(30));
        assert_eq!(c.claim_for(&hit(Some(7200))), Duration::minutes(60));
        assert_eq!(c.claim_for(&hit(None)), Duration::minutes(60));
    }

    #[test]
    fn claim_minutes_are_bounded() {
        let base = |m: &'static str| {
            move |k: &str| match k {
                "TABLE_NAME" => Some("t".to_owned()),
                "QUALIFICATION_TYPE_ID" => Some("3LB30G6JHY4JQ4T5QRCEBZ6B9YDKQD".to_owned()),
                "CLAIM_MINUTES" => Some(m.to_owned()),
                _ => None,
            }
        };
        assert_eq!(
            CheckConfig::from_lookup(base("90")).unwrap().claim,
            Duration::minutes(90)
        );
        assert_eq!(
            CheckConfig::from_lookup(base("")).unwrap().claim,
            Duration::minutes(60)
        );
        assert_eq!(
            CheckConfig::from_lookup(base("0")).unwrap_err().variable,
            "CLAIM_MINUTES"
        );
        assert_eq!(
            CheckConfig::from_lookup(base("10081"))
                .unwrap_err()
                .variable,
            "CLAIM_MINUTES"
        );
        assert_eq!(CheckConfig::from_lookup(base("1")).unwrap().pool, "default");
    }
}
