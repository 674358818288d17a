//! The ledger: who took part in what, who is excluded, and proof that the
//! notification path works. One DynamoDB table; this module is the only one
//! that knows its attribute names.
//!
//! Items (pk / sk):
//! - `A#<assignment>` / `P`: a participation learned from an assignment
//!   (a notification, a backfill or a CSV row). While a handler works on it,
//!   it also carries a lease (`lease_owner`, `lease_until`).
//! - `M#<worker>` / `P`: a participation the lab entered by hand, with no
//!   assignment (`exclude --worker`).
//! - `W#<worker>` / `X#<qualification>`: the worker's exclusion under one
//!   qualification; carries `excluded_q` only while excluded, which makes the
//!   `Excluded` index list exactly the excluded workers.
//! - `HEARTBEAT` / `<received_at>#<event doc id>`: a test event that made it
//!   through the queue and the handler; expires after 30 days.
//! - `SUBSCRIPTION` / `<HIT type>`: a HIT type `subscribe` (or the watch, or
//!   `coverage --fix`) pointed at the queue, and when its path was last
//!   proven; `status` lists them. One made by the watch or a fix carries
//!   `subscribed_by` and `backfill_due` until its earlier submissions are
//!   excluded (`backfilled_at`); HITs moved into a subscribed type mark its
//!   backfill due again, and `due_mark` counts the marks. A record marked
//!   inactive is the lab's
//!   `unsubscribe`, which the watch never undoes.
//! - `CONFIG` / `WATCH`: the watch's last run (when, what it counted, the
//!   live HITs it found unguarded), written once per run.
//! - `W#<worker>` / `C#<qualification>` and `CLAIMEND#<assignment>` / `E`:
//!   the accept-time check's claims and their ends (see [`claims`]).
//! - `CONFIG` / `OWN_CUSTOMER`: the lab's own MTurk `CustomerId`, learned by
//!   `subscribe` from a test event it proved to be its own; documents from
//!   any other CustomerId are foreign.
//! - `CONFIG` / `MTURK_RATE`: the rate of MTurk calls each handler instance
//!   recently sent while MTurk accepted them, one attribute per instance
//!   (rate and when), written at most once a minute per instance and pruned
//!   of instances silent for a day. A cold instance starts at its share of
//!   the pool's rate ([`PoolRate`]).
//!
//! Indexes (declared in template.yaml): `ByWorker` (worker_id, pk), `ByHit`
//! (hit_id, pk), `ByHitType` (hit_type_id, recorded_at), `Excluded`
//! (excluded_q, worker_id). An item is in an index only when it carries
//! both of the index's key attributes, and each write of an indexed item
//! also writes the index (a billed write unit each), so an item carries an
//! index's key only where a query needs it there:
//! - `ByWorker`: participations (`participations_of`: release, reconcile).
//!   The exclusion item is in it too, unread, because `Excluded` sorts on
//!   `worker_id` (leaving it needs a new `Excluded` index: README, upgrade notes).
//! - `ByHit`: participations from an assignment (`participations_in_hit`).
//! - `Excluded`: exclusion items while excluded (`excluded_workers`).
//! - `ByHitType`: nothing any more. New participations keep their HIT type
//!   in `hit_type`, not `hit_type_id`, so they stay out of it; `status`
//!   finds a HIT type's last participation in the scan it makes anyway.
//!   Participations recorded before keep `hit_type_id` (and their entry);
//!   the ledger reads either name.
//!
//! Times are stored as RFC 3339 UTC with milliseconds, so that string order
//! is time order.

use std::collections::HashMap;
use std::error::Error as StdError;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use time::{Duration, OffsetDateTime};

use crate::ids::{AssignmentId, HitId, HitTypeId, QualificationTypeId, WorkerId};

pub mod claims;
pub use claims::{Claim, ClaimEnd, ClaimEnded, Replaceable, Standing, StoredClaim};

// Attribute names.
const PK: &str = "pk";
const SK: &str = "sk";
const WORKER_ID: &str = "worker_id";
const ASSIGNMENT_ID: &str = "assignment_id";
const HIT_ID: &str = "hit_id";
/// Where participations recorded before `hit_type` kept their HIT type: the
/// `ByHitType` index's key, which nothing queries any more. Read, never written.
const HIT_TYPE_ID: &str = "hit_type_id";
/// A participation's HIT type (no index has it as a key).
const HIT_TYPE: &str = "hit_type";
const SUBMIT_TIME: &str = "submit_time";
const LEARNED_BY: &str = "learned_by";
const EVENT_DOC_ID: &str = "event_doc_id";
const RECORDED_AT: &str = "recorded_at";
const EXCLUDED_AT: &str = "excluded_at";
const RELEASED_AT: &str = "released_at";
const RELEASE_REASON: &str = "release_reason";
const QUALIFICATION_TYPE_ID: &str = "qualification_type_id";
const STATE: &str = "state";
const EXCLUDED_BECAUSE: &str = "excluded_because";
const EXCLUDED_Q: &str = "excluded_q";
const RECEIVED_AT: &str = "received_at";
const EVENT_AT: &str = "event_at";
const PLACEHOLDER_HIT_TYPE_ID: &str = "placeholder_hit_type_id";
const EXPIRES_AT: &str = "expires_at";

const PARTICIPATION_SK: &str = "P";
const HEARTBEAT_PK: &str = "HEARTBEAT";
const BY_WORKER: &str = "ByWorker";
const BY_HIT: &str = "ByHit";
const EXCLUDED: &str = "Excluded";
const SUBSCRIPTION_PK: &str = "SUBSCRIPTION";
const QUEUE_URL: &str = "queue_url";
/// The event types `subscribe` told MTurk to send for a HIT type.
const EVENT_TYPES: &str = "event_types";
const SUBSCRIBED_AT: &str = "subscribed_at";
const VERIFIED_AT: &str = "verified_at";
const ACTIVE: &str = "active";
const VERSION: &str = "version";
const GRANTING_UNTIL: &str = "granting_until";
const LEASE_OWNER: &str = "lease_owner";
const LEASE_UNTIL: &str = "lease_until";
const HEARTBEAT_TTL: Duration = Duration::days(30);
const CUSTOMER_ID: &str = "customer_id";
const SOURCE_ACCOUNT: &str = "source_account";
const LEARNED_AT: &str = "learned_at";
const CONFIG_PK: &str = "CONFIG";
const OWN_CUSTOMER_SK: &str = "OWN_CUSTOMER";
const WATCH_SK: &str = "WATCH";
const SUBSCRIBED_BY: &str = "subscribed_by";
const BACKFILL_DUE: &str = "backfill_due";
const BACKFILLED_AT: &str = "backfilled_at";
/// How many times a subscription's backfill was marked due. A backfill
/// records itself done only if the count is still what it read before it
/// listed the HITs: one marked due meanwhile (a HIT moved into the type)
/// stays due.
const DUE_MARK: &str = "due_mark";
/// The `due_mark` a covering subscription is recorded with.
const FIRST_DUE_MARK: u64 = 1;
const RAN_AT: &str = "ran_at";
const COUNTS: &str = "counts";
const UNGUARDED: &str = "unguarded";
const TITLE: &str = "title";
/// The watch's record lists at most this many unguarded HITs (the count is whole).
pub const WATCH_RUN_LISTED: usize = 100;
const MTURK_RATE_SK: &str = "MTURK_RATE";
/// An instance's attribute in the `MTURK_RATE` item: this prefix and its id.
const RATE_OF: &str = "rate_of_";
const RATE: &str = "rate";
const AT: &str = "at";

/// The release reason the ledger writes on a participation that arrived
/// after its worker's release and was submitted before it (kept released):
/// no release of its own, only the rule applied.
pub const KEPT_RELEASED_REASON: &str = "submitted before the worker was released: kept released";

/// How the ledger learned of a participation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Learned {
    /// From an MTurk notification, with the document's id.
    Notification { event_doc_id: String },
    /// From the CLI walking a HIT's assignments.
    Backfill,
    /// A worker id the lab gave the CLI (no assignment known).
    Manual,
    /// A worker found holding the qualification on MTurk that the ledger did not know.
    Reconcile,
}

impl Learned {
    /// The one name of each way, as stored and as exported.
    pub fn as_str(&self) -> &'static str {
        match self {
            Learned::Notification { .. } => "notification",
            Learned::Backfill => "backfill",
            Learned::Manual => "manual",
            Learned::Reconcile => "reconcile",
        }
    }

    /// Reads a stored `learned_by` back; a notification needs its document id.
    fn parse(name: &str, event_doc_id: Option<&str>) -> Option<Learned> {
        Some(match name {
            "notification" => Learned::Notification {
                event_doc_id: event_doc_id?.to_owned(),
            },
            "backfill" => Learned::Backfill,
            "manual" => Learned::Manual,
            "reconcile" => Learned::Reconcile,
            _ => return None,
        })
    }
}

/// A participation about to be recorded.
#[derive(Debug, Clone)]
pub struct NewParticipation {
    pub worker_id: WorkerId,
    pub assignment_id: AssignmentId,
    pub hit_id: HitId,
    pub hit_type_id: Option<HitTypeId>,
    pub submit_time: Option<OffsetDateTime>,
    pub learned: Learned,
}

/// A participation as the ledger holds it, read back typed.
///
/// Most participations come from an assignment. A worker the lab named by
/// hand (or found on MTurk by `reconcile`) has one participation without an
/// assignment or HIT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participation {
    pub worker_id: WorkerId,
    pub assignment_id: Option<AssignmentId>,
    pub hit_id: Option<HitId>,
    pub hit_type_id: Option<HitTypeId>,
    pub submit_time: Option<OffsetDateTime>,
    /// How the ledger first learned of it.
    pub learned: Learned,
    /// The notification that told of it, if one did (also when it was
    /// first learned another way).
    pub event_doc_id: Option<String>,
    pub recorded_at: OffsetDateTime,
    /// When the worker was known to be excluded because of (or despite) this participation.
    pub excluded_at: Option<OffsetDateTime>,
    /// When the lab released (un-excluded) the worker; a stale event for this
    /// participation must not exclude them again.
    pub released_at: Option<OffsetDateTime>,
    pub release_reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExclusionState {
    Excluded,
    Released,
}

impl ExclusionState {
    /// The one name of each state, wherever it is printed or exported.
    pub fn as_str(self) -> &'static str {
        match self {
            ExclusionState::Excluded => "excluded",
            ExclusionState::Released => "released",
        }
    }

    /// The name of a worker's standing, the ledger having none included.
    pub fn name_of(state: Option<ExclusionState>) -> &'static str {
        state.map_or("not_excluded", ExclusionState::as_str)
    }
}

/// A worker's standing under the lab's qualification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    pub worker_id: WorkerId,
    pub state: ExclusionState,
    pub excluded_at: Option<OffsetDateTime>,
    /// The assignment id, or how a participation without one was learned.
    pub excluded_because: Option<String>,
    pub released_at: Option<OffsetDateTime>,
    /// Raised by every write that changes the worker's standing: the handler
    /// and `release` condition their last writes on it, so the side that
    /// loses a race decides again.
    pub version: u64,
    /// Set while a grant may be in flight: no grant is sent after it. A
    /// release waits it out before revoking.
    pub granting_until: Option<OffsetDateTime>,
}

/// Who pointed a HIT type at the queue ("lab" or "watch" in JSON and text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscribedBy {
    /// `mturk-exclusion subscribe` or `coverage --fix`.
    Lab,
    /// The watch, finding a HIT type nobody had subscribed.
    Watch,
}

impl SubscribedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscribedBy::Lab => "lab",
            SubscribedBy::Watch => "watch",
        }
    }
}

impl std::fmt::Display for SubscribedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A live HIT without any DoesNotExist requirement: it admits workers the
/// lab excluded. As the watch saw it, and as `status` and `report` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnguardedHit {
    pub hit_id: String,
    pub hit_type_id: String,
    pub title: Option<String>,
}

/// What the watch's last run found (its one write of a run that found nothing new).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WatchRun {
    pub ran_at: Option<OffsetDateTime>,
    /// Counts by name (`unguarded_hits`, `hit_types_subscribed`, ...).
    pub counts: Vec<(String, u64)>,
    /// The live unguarded HITs, at most [`WATCH_RUN_LISTED`] of them.
    pub unguarded: Vec<UnguardedHit>,
}

impl WatchRun {
    pub fn count(&self, name: &str) -> Option<u64> {
        self.counts.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

/// A HIT type pointed at the queue (by `subscribe`, the watch, or `coverage --fix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub hit_type_id: HitTypeId,
    pub queue_url: String,
    pub subscribed_at: Option<OffsetDateTime>,
    /// When a test event was last seen coming through after subscribing.
    pub verified_at: Option<OffsetDateTime>,
    pub active: bool,
    /// The event types MTurk was told to send; `None` for records written
    /// before they were noted (AssignmentSubmitted only).
    pub event_types: Option<Vec<String>>,
    pub subscribed_by: SubscribedBy,
    /// Its submissions from before the subscription still wait to be
    /// excluded: the watch's next run does it.
    pub backfill_due: bool,
    /// How many times the backfill was marked due (`None` for records
    /// written before it was counted): what a backfill checks it is still
    /// current against when it records itself done.
    pub due_mark: Option<u64>,
    pub backfilled_at: Option<OffsetDateTime>,
}

/// A test event that made it through the queue and the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub event_doc_id: String,
    pub event_at: String,
    pub received_at: String,
    pub placeholder_hit_type_id: Option<String>,
    /// The document's `CustomerId` and `SourceAccount`, when it had them:
    /// what tells the lab's own test event from another requester's.
    pub customer_id: Option<String>,
    pub source_account: Option<String>,
}

/// Who sent a document: its `CustomerId` and `SourceAccount`, as given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sender<'a> {
    pub customer_id: Option<&'a str>,
    pub source_account: Option<&'a str>,
}

/// The lab's own requester, as learned from a proven test event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnCustomer {
    pub customer_id: String,
    pub source_account: Option<String>,
    /// The test event it was learned from.
    pub event_doc_id: String,
    pub learned_at: String,
}

/// The pool's recently accepted MTurk rate, as its instances last reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolRate {
    /// Calls per second the last instances to report sent together.
    pub rate: f64,
    /// How many instances that is: those that reported within
    /// [`POOL_RATE_TOGETHER`] of the last report.
    pub instances: usize,
    /// The last report.
    pub at: OffsetDateTime,
}

/// Reports this close to the last one count as the same spell of work.
pub const POOL_RATE_TOGETHER: Duration = Duration::minutes(2);
/// An instance silent this long is pruned from the item, and a pool rate
/// this old is not used: MTurk's rate for an account, and the lab's other
/// scripts, may have changed since.
pub const POOL_RATE_KEPT: Duration = Duration::days(1);

/// A worker's standing as its item records the last release (the item
/// keeps `released_at` after the worker is excluded again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastRelease {
    pub worker_id: WorkerId,
    /// The standing now: `Excluded` when excluded again since.
    pub state: ExclusionState,
    pub released_at: OffsetDateTime,
    /// The note of a release that had one (a later release without a note
    /// leaves an earlier note in place).
    pub reason: Option<String>,
}

/// Everything the ledger holds under one qualification that a report reads,
/// from one paged scan of the table ([`Ledger::snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every recorded participation (leases of assignments still being
    /// handled are left out), oldest recorded first.
    pub participations: Vec<Participation>,
    /// How many workers the ledger holds excluded now.
    pub excluded_now: usize,
    /// Every worker item with a release on it.
    pub releases: Vec<LastRelease>,
    /// The accept-time check's claims still stored (one per worker, the
    /// last; DynamoDB's TTL removes expired ones some time after expiry).
    pub claims: Vec<StoredClaim>,
    /// Assignments returned or abandoned in the last
    /// [`claims::END_MARKER_TTL`] (their markers expire after that).
    pub claim_ends: Vec<ClaimEnded>,
}

/// What went wrong with the ledger, in the terms a caller acts on.
/// Classified once, here, from the SDK's error: nobody downstream matches
/// on message text, which breaks silently when the SDK's wording changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerErrorKind {
    /// The table does not exist (wrong name, stack or region).
    TableMissing,
    /// DynamoDB could not be reached, or did not answer in time.
    Unreachable,
    /// DynamoDB is throttling: try again later.
    Throttled,
    /// The credentials were refused, or lack a permission.
    Denied,
    /// A conditional write found the item not as expected (another writer came first).
    ConditionFailed,
    /// An item the ledger holds is not what this version writes.
    Corrupt,
    /// Anything else DynamoDB refused.
    Other,
}

#[derive(Debug, thiserror::Error)]
#[error("ledger {operation}: {message}")]
pub struct LedgerError {
    pub operation: &'static str,
    pub kind: LedgerErrorKind,
    pub message: String,
    #[source]
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl LedgerError {
    /// True when trying again later may help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            LedgerErrorKind::Unreachable | LedgerErrorKind::Throttled
        )
    }
}

fn kind_of_code(code: &str) -> LedgerErrorKind {
    match code {
        "ResourceNotFoundException" => LedgerErrorKind::TableMissing,
        "ConditionalCheckFailedException" => LedgerErrorKind::ConditionFailed,
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "LimitExceededException" => LedgerErrorKind::Throttled,
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "AccessDeniedException"
        | "MissingAuthenticationTokenException"
        | "ExpiredTokenException" => LedgerErrorKind::Denied,
        "InternalServerError" | "ServiceUnavailable" => LedgerErrorKind::Unreachable,
        _ => LedgerErrorKind::Other,
    }
}

fn sdk_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> LedgerError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let (kind, message) = match &err {
        SdkError::ServiceError(ctx) => (
            kind_of_code(ctx.err().code().unwrap_or_default()),
            format!("{}", ctx.err()),
        ),
        SdkError::TimeoutError(_) => (LedgerErrorKind::Unreachable, "timed out".to_owned()),
        SdkError::DispatchFailure(_) => (
            LedgerErrorKind::Unreachable,
            "could not reach DynamoDB".to_owned(),
        ),
        SdkError::ResponseError(_) => (LedgerErrorKind::Unreachable, err.to_string()),
        other => (LedgerErrorKind::Other, other.to_string()),
    };
    LedgerError {
        operation,
        kind,
        message,
        source: Some(Box::new(err)),
    }
}

/// A conditional write's outcome: what it returned, or `None` when its
/// condition failed and nothing was written; any other failure is the error.
fn unless_condition_failed<T, E, R>(
    operation: &'static str,
    result: Result<T, SdkError<E, R>>,
) -> Result<Option<T>, LedgerError>
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e) => {
            let e = sdk_error(operation, e);
            if e.kind == LedgerErrorKind::ConditionFailed {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

fn corrupt(operation: &'static str, message: String) -> LedgerError {
    LedgerError {
        operation,
        kind: LedgerErrorKind::Corrupt,
        message,
        source: None,
    }
}

/// Reads a time the ledger stored.
pub fn parse_stamp(t: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
}

/// Formats a time the way the ledger stores it.
pub fn stamp(t: OffsetDateTime) -> String {
    // Fixed width, always three fraction digits and a Z, so that string
    // order is time order.
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_default()
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

type Item = HashMap<String, AttributeValue>;

fn get_s(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

fn get_n(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

/// One instance's report in the `MTURK_RATE` item: (rate, when), if the
/// attribute is one and reads as one.
fn rate_entry(name: &str, value: &AttributeValue) -> Option<(f64, OffsetDateTime)> {
    if !name.starts_with(RATE_OF) {
        return None;
    }
    let AttributeValue::M(entry) = value else {
        return None;
    };
    let rate = match entry.get(RATE) {
        Some(AttributeValue::N(v)) => v.parse::<f64>().ok()?,
        _ => return None,
    };
    let at = parse_stamp(&get_s(entry, AT)?)?;
    (rate.is_finite() && rate > 0.0).then_some((rate, at))
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The item a conditional write found instead of what it expected, when
/// DynamoDB returned it (ReturnValuesOnConditionCheckFailure).
fn condition_failed_item<R>(
    err: &SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError, R>,
) -> Option<Option<Item>> {
    match err {
        SdkError::ServiceError(ctx) => match ctx.err() {
            aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(e) => {
                Some(e.item().cloned())
            }
            _ => None,
        },
        _ => None,
    }
}

/// A new participation's item, as recorded (neither excluded nor released yet).
fn new_participation_item(p: &NewParticipation, now: OffsetDateTime) -> Item {
    let mut item: Item = participation_key(&p.assignment_id);
    item.insert(WORKER_ID.into(), s(p.worker_id.as_str()));
    item.insert(ASSIGNMENT_ID.into(), s(p.assignment_id.as_str()));
    item.insert(HIT_ID.into(), s(p.hit_id.as_str()));
    item.insert(LEARNED_BY.into(), s(p.learned.as_str()));
    item.insert(RECORDED_AT.into(), s(stamp(now)));
    if let Some(t) = &p.hit_type_id {
        item.insert(HIT_TYPE.into(), s(t.as_str()));
    }
    if let Some(t) = p.submit_time {
        item.insert(SUBMIT_TIME.into(), s(stamp(t)));
    }
    if let Learned::Notification { event_doc_id } = &p.learned {
        item.insert(EVENT_DOC_ID.into(), s(event_doc_id.as_str()));
    }
    item
}

/// A stored time, parsed; anything but RFC 3339 is a corrupt item.
fn get_time(
    operation: &'static str,
    item: &Item,
    name: &str,
) -> Result<Option<OffsetDateTime>, LedgerError> {
    get_s(item, name)
        .map(|t| {
            OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
                .map_err(|e| corrupt(operation, format!("{name} {t:?} is not a time: {e}")))
        })
        .transpose()
}

fn participation_key(assignment: &AssignmentId) -> Item {
    HashMap::from([
        (PK.to_owned(), s(format!("A#{assignment}"))),
        (SK.to_owned(), s(PARTICIPATION_SK)),
    ])
}

fn manual_key(worker: &WorkerId) -> Item {
    HashMap::from([
        (PK.to_owned(), s(format!("M#{worker}"))),
        (SK.to_owned(), s(PARTICIPATION_SK)),
    ])
}

impl Participation {
    /// Recorded, but neither excluded nor released yet: its grant failed or
    /// is still under way.
    pub fn is_pending(&self) -> bool {
        self.excluded_at.is_none() && self.released_at.is_none()
    }

    fn key(&self) -> Item {
        match &self.assignment_id {
            Some(a) => participation_key(a),
            None => manual_key(&self.worker_id),
        }
    }

    /// What the exclusion record names as its cause.
    pub fn cause(&self) -> String {
        match &self.assignment_id {
            Some(a) => a.to_string(),
            None => self.learned.as_str().to_owned(),
        }
    }

    /// How long the worker could still take the lab's other studies: from
    /// MTurk's submit time to the ledger recording them excluded. Only for
    /// participations learned from a notification, whose exclusion followed
    /// their submission (a backfill's or a hand entry's did not).
    pub fn exposure(&self) -> Option<Duration> {
        match (&self.learned, self.submit_time, self.excluded_at) {
            (Learned::Notification { .. }, Some(submitted), Some(excluded)) => {
                Some((excluded - submitted).max(Duration::ZERO))
            }
            _ => None,
        }
    }
}

fn exclusion_key(worker: &WorkerId, qualification: &QualificationTypeId) -> Item {
    HashMap::from([
        (PK.to_owned(), s(format!("W#{worker}"))),
        (SK.to_owned(), s(format!("X#{qualification}"))),
    ])
}

fn participation_from(operation: &'static str, item: &Item) -> Result<Participation, LedgerError> {
    let need = |name: &str| {
        get_s(item, name).ok_or_else(|| corrupt(operation, format!("participation without {name}")))
    };
    let bad = |e: crate::ids::InvalidId| corrupt(operation, format!("participation: {e}"));
    let time = |name| get_time(operation, item, name);
    let event_doc_id = get_s(item, EVENT_DOC_ID);
    let learned_by = need(LEARNED_BY)?;
    let learned = Learned::parse(&learned_by, event_doc_id.as_deref()).ok_or_else(|| {
        corrupt(
            operation,
            format!("participation learned by {learned_by:?}, or a notification without its id"),
        )
    })?;
    Ok(Participation {
        worker_id: WorkerId::parse(&need(WORKER_ID)?).map_err(bad)?,
        assignment_id: get_s(item, ASSIGNMENT_ID)
            .map(|a| AssignmentId::parse(&a))
            .transpose()
            .map_err(bad)?,
        hit_id: get_s(item, HIT_ID)
            .map(|h| HitId::parse(&h))
            .transpose()
            .map_err(bad)?,
        hit_type_id: get_s(item, HIT_TYPE)
            .or_else(|| get_s(item, HIT_TYPE_ID))
            .map(|t| HitTypeId::parse(&t))
            .transpose()
            .map_err(bad)?,
        submit_time: time(SUBMIT_TIME)?,
        learned,
        event_doc_id,
        recorded_at: time(RECORDED_AT)?
            .ok_or_else(|| corrupt(operation, format!("participation without {RECORDED_AT}")))?,
        excluded_at: time(EXCLUDED_AT)?,
        released_at: time(RELEASED_AT)?,
        release_reason: get_s(item, RELEASE_REASON),
    })
}

fn exclusion_from(operation: &'static str, item: &Item) -> Result<Exclusion, LedgerError> {
    let worker = get_s(item, WORKER_ID)
        .ok_or_else(|| corrupt(operation, "exclusion without worker_id".into()))?;
    let state = match get_s(item, STATE).as_deref() {
        Some("excluded") => ExclusionState::Excluded,
        Some("released") => ExclusionState::Released,
        other => {
            return Err(corrupt(
                operation,
                format!("exclusion in unknown state {other:?}"),
            ))
        }
    };
    Ok(Exclusion {
        worker_id: WorkerId::parse(&worker)
            .map_err(|e| corrupt(operation, format!("exclusion: {e}")))?,
        state,
        excluded_at: get_time(operation, item, EXCLUDED_AT)?,
        excluded_because: get_s(item, EXCLUDED_BECAUSE),
        released_at: get_time(operation, item, RELEASED_AT)?,
        version: get_n(item, VERSION).unwrap_or(0),
        granting_until: get_time(operation, item, GRANTING_UNTIL)?,
    })
}

/// What taking an assignment's lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This caller holds the assignment until the lease runs out.
    Taken,
    /// The ledger already has this participation.
    Known(Box<Participation>),
    /// Another caller holds a live lease on it: its copy is being handled.
    Busy,
}

/// Which released workers a new exclusion may exclude again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgainIf {
    /// Only for a submission known to come after the release.
    SubmittedAfterRelease(Option<OffsetDateTime>),
    /// Always: the lab asked explicitly.
    Always,
}

/// What starting an exclusion found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The ledger now says excluded (version `version`): grant before `until`.
    Grant { version: u64, until: OffsetDateTime },
    /// The worker is excluded already.
    AlreadyExcluded { version: u64 },
    /// Another attempt's grant window is open until `until`: try again after it.
    GrantInFlight { until: String },
    /// The worker was released after this participation: it grants nothing.
    KeptReleased {
        version: u64,
        released_at: Option<String>,
    },
}

/// How a participation settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Excluded; `granted` clears the grant window this caller opened.
    Excluded {
        granted: bool,
    },
    KeptReleased,
}

/// Which participation item a settlement writes.
pub enum Record<'a> {
    /// A participation the ledger does not have yet, written whole, held by
    /// this lease owner (or by nobody: the CLI's backfill).
    New {
        participation: &'a NewParticipation,
        lease_owner: Option<&'a str>,
    },
    /// A participation the ledger has (by hand, or recorded by an older version).
    Existing(&'a Participation),
}

/// What settling came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    Done,
    /// The worker's standing changed since it was read: decide again.
    WorkerChanged,
    /// Another writer recorded this participation first.
    ParticipationTaken,
}

/// What recording a release found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRecord {
    /// The ledger said released already (nothing changed on the worker's item).
    pub already_released: bool,
    /// The version the worker's item has now.
    pub version: u64,
    /// A grant may still be in flight until then: revoke only after it.
    pub grant_in_flight_until: Option<OffsetDateTime>,
    /// Participations newly marked released.
    pub participations: Vec<Participation>,
}

#[derive(Clone)]
pub struct Ledger {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl Ledger {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Ledger {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Every item under one key value, all pages: of the table
    /// (`index: None`) or of one of its indexes.
    async fn query_all(
        &self,
        operation: &'static str,
        index: Option<&str>,
        key: (&str, AttributeValue),
        filter_on_sk: Option<&str>,
    ) -> Result<Vec<Item>, LedgerError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(index.map(str::to_owned))
            .key_condition_expression("#key = :key")
            .expression_attribute_names("#key", key.0)
            .expression_attribute_values(":key", key.1)
            // Indexes can only be read eventually consistent.
            .consistent_read(index.is_none());
        if let Some(sk) = filter_on_sk {
            query = query
                .filter_expression(format!("{SK} = :sk"))
                .expression_attribute_values(":sk", s(sk));
        }
        query
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| sdk_error(operation, e))
    }

    /// The participation for an assignment, if the ledger has it. A lease
    /// alone (a copy of the notification still at work) is not one: `None`.
    pub async fn participation(
        &self,
        assignment: &AssignmentId,
    ) -> Result<Option<Participation>, LedgerError> {
        const OP: &str = "GetItem(participation)";
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(participation_key(assignment)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        // An item without a worker is only a lease: a copy of the
        // notification is still looking the assignment up, nothing is
        // recorded yet.
        out.item
            .as_ref()
            .filter(|i| i.contains_key(WORKER_ID))
            .map(|i| participation_from(OP, i))
            .transpose()
    }

    /// Records a participation, keeping what was recorded first (the first
    /// `recorded_at`, how it was first learned) so redelivery changes nothing.
    /// Returns the participation as stored, including any release.
    pub async fn record_participation(
        &self,
        p: &NewParticipation,
        now: OffsetDateTime,
    ) -> Result<Participation, LedgerError> {
        const OP: &str = "UpdateItem(participation)";
        let mut values: Item = HashMap::from([
            (":worker".to_owned(), s(p.worker_id.as_str())),
            (":assignment".to_owned(), s(p.assignment_id.as_str())),
            (":hit".to_owned(), s(p.hit_id.as_str())),
            (":learned".to_owned(), s(p.learned.as_str())),
            (":now".to_owned(), s(stamp(now))),
        ]);
        let mut sets = vec![
            format!("{WORKER_ID} = if_not_exists({WORKER_ID}, :worker)"),
            format!("{ASSIGNMENT_ID} = if_not_exists({ASSIGNMENT_ID}, :assignment)"),
            format!("{HIT_ID} = if_not_exists({HIT_ID}, :hit)"),
            format!("{LEARNED_BY} = if_not_exists({LEARNED_BY}, :learned)"),
            format!("{RECORDED_AT} = if_not_exists({RECORDED_AT}, :now)"),
        ];
        if let Some(t) = &p.hit_type_id {
            values.insert(":hit_type".into(), s(t.as_str()));
            sets.push(format!("{HIT_TYPE} = if_not_exists({HIT_TYPE}, :hit_type)"));
        }
        if let Some(t) = p.submit_time {
            values.insert(":submit".into(), s(stamp(t)));
            sets.push(format!(
                "{SUBMIT_TIME} = if_not_exists({SUBMIT_TIME}, :submit)"
            ));
        }
        if let Learned::Notification { event_doc_id } = &p.learned {
            values.insert(":doc".into(), s(event_doc_id.as_str()));
            sets.push(format!(
                "{EVENT_DOC_ID} = if_not_exists({EVENT_DOC_ID}, :doc)"
            ));
        }
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(participation_key(&p.assignment_id)))
            .update_expression(format!("SET {}", sets.join(", ")))
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        let item = out
            .attributes
            .ok_or_else(|| corrupt(OP, "no attributes returned".into()))?;
        participation_from(OP, &item)
    }

    /// Notes that the worker of this participation is excluded, keeping the first time.
    pub async fn mark_excluded(
        &self,
        participation: &Participation,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        const OP: &str = "UpdateItem(participation excluded)";
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(participation.key()))
            .update_expression(format!(
                "SET {EXCLUDED_AT} = if_not_exists({EXCLUDED_AT}, :now)"
            ))
            .condition_expression(format!("attribute_exists({PK})"))
            .expression_attribute_values(":now", s(stamp(now)))
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        Ok(())
    }

    /// The worker's exclusion under `qualification`, read consistently.
    pub async fn exclusion(
        &self,
        worker: &WorkerId,
        qualification: &QualificationTypeId,
    ) -> Result<Option<Exclusion>, LedgerError> {
        const OP: &str = "GetItem(exclusion)";
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(exclusion_key(worker, qualification)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        out.item.as_ref().map(|i| exclusion_from(OP, i)).transpose()
    }

    /// Records that MTurk granted the exclusion qualification to `worker`.
    pub async fn record_exclusion(
        &self,
        worker: &WorkerId,
        qualification: &QualificationTypeId,
        because: &str,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        const OP: &str = "UpdateItem(exclusion)";
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(exclusion_key(worker, qualification)))
            .update_expression(format!(
                "SET {WORKER_ID} = :worker, {QUALIFICATION_TYPE_ID} = :q, #state = :excluded, \
                 {EXCLUDED_Q} = :q, {EXCLUDED_AT} = :now, {EXCLUDED_BECAUSE} = :because, \
                 {VERSION} = if_not_exists({VERSION}, :zero) + :one REMOVE {GRANTING_UNTIL}"
            ))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_names("#state", STATE)
            .expression_attribute_values(":worker", s(worker.as_str()))
            .expression_attribute_values(":q", s(qualification.as_str()))
            .expression_attribute_values(":excluded", s(ExclusionState::Excluded.as_str()))
            .expression_attribute_values(":now", s(stamp(now)))
            .expression_attribute_values(":because", s(because))
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        Ok(())
    }

    /// Marks the worker released under `qualification` (the worker's item
    /// first: it is where the handler and a release serialise), then every
    /// participation of theirs the ByWorker index shows, so stale events do
    /// not exclude them again. A participation the index does not show yet
    /// is covered by the worker's `released_at`, which the handler checks.
    /// An already released worker keeps their first `released_at`.
    pub async fn record_release(
        &self,
        worker: &WorkerId,
        qualification: &QualificationTypeId,
        reason: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<ReleaseRecord, LedgerError> {
        const OP: &str = "UpdateItem(exclusion released)";
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(exclusion_key(worker, qualification)))
            .condition_expression(format!("attribute_not_exists({PK}) OR #state <> :released"))
            .expression_attribute_names("#state", STATE)
            .expression_attribute_values(":worker", s(worker.as_str()))
            .expression_attribute_values(":q", s(qualification.as_str()))
            .expression_attribute_values(":released", s(ExclusionState::Released.as_str()))
            .expression_attribute_values(":now", s(stamp(now)))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            );
        let set = format!(
            "SET {WORKER_ID} = :worker, {QUALIFICATION_TYPE_ID} = :q, #state = :released, \
             {RELEASED_AT} = :now, {VERSION} = if_not_exists({VERSION}, :zero) + :one"
        );
        update = match reason {
            Some(r) => update
                .update_expression(format!(
                    "{set}, {RELEASE_REASON} = :reason REMOVE {EXCLUDED_Q}, {GRANTING_UNTIL}"
                ))
                .expression_attribute_values(":reason", s(r)),
            None => {
                update.update_expression(format!("{set} REMOVE {EXCLUDED_Q}, {GRANTING_UNTIL}"))
            }
        };
        let (already_released, version, grant_in_flight_until) = match update.send().await {
            Ok(out) => {
                let old = out.attributes.unwrap_or_default();
                let until = get_s(&old, GRANTING_UNTIL).and_then(|t| parse_stamp(&t));
                (false, get_n(&old, VERSION).unwrap_or(0) + 1, until)
            }
            Err(e) => match condition_failed_item(&e) {
                Some(old) => {
                    let old = old.unwrap_or_default();
                    (true, get_n(&old, VERSION).unwrap_or(0), None)
                }
                None => return Err(sdk_error(OP, e)),
            },
        };
        let mut released = Vec::new();
        for p in self.participations_of(worker).await? {
            if p.released_at.is_some() {
                continue;
            }
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(p.key()))
                .expression_attribute_values(":now", s(stamp(now)));
            update = match reason {
                Some(r) => update
                    .update_expression(format!(
                        "SET {RELEASED_AT} = :now, {RELEASE_REASON} = :reason"
                    ))
                    .expression_attribute_values(":reason", s(r)),
                None => update.update_expression(format!("SET {RELEASED_AT} = :now")),
            };
            update
                .send()
                .await
                .map_err(|e| sdk_error("UpdateItem(participation released)", e))?;
            released.push(p);
        }
        Ok(ReleaseRecord {
            already_released,
            version,
            grant_in_flight_until,
            participations: released,
        })
    }

    /// Takes the lease on a submitted assignment before any MTurk call, so
    /// that copies of one notification handled at once by two instances
    /// cost one look-up and one grant, not two. One conditional write that
    /// also tells, in the same round trip, whether the participation is
    /// known already. An expired lease is taken over, so a crash loses nothing.
    pub async fn lease_assignment(
        &self,
        assignment: &AssignmentId,
        owner: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Lease, LedgerError> {
        const OP: &str = "UpdateItem(assignment lease)";
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(participation_key(assignment)))
            .update_expression(format!(
                "SET {LEASE_OWNER} = :owner, {LEASE_UNTIL} = :until"
            ))
            .condition_expression(format!(
                "attribute_not_exists({PK}) OR \
                 (attribute_not_exists({WORKER_ID}) AND {LEASE_UNTIL} < :now)"
            ))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", s(stamp(now + lease)))
            .expression_attribute_values(":now", s(stamp(now)))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(Lease::Taken),
            Err(e) => match condition_failed_item(&e) {
                Some(Some(item)) if item.contains_key(WORKER_ID) => {
                    Ok(Lease::Known(Box::new(participation_from(OP, &item)?)))
                }
                Some(_) => Ok(Lease::Busy),
                None => Err(sdk_error(OP, e)),
            },
        }
    }

    /// Gives a lease back early (after a failure), so the redelivery need
    /// not wait for it to run out. Best effort: a lease someone else took
    /// over, or a participation recorded meanwhile, is left alone.
    pub async fn release_lease(
        &self,
        assignment: &AssignmentId,
        owner: &str,
    ) -> Result<(), LedgerError> {
        const OP: &str = "DeleteItem(assignment lease)";
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(participation_key(assignment)))
            .condition_expression(format!(
                "{LEASE_OWNER} = :owner AND attribute_not_exists({WORKER_ID})"
            ))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        unless_condition_failed(OP, result)?;
        Ok(())
    }

    /// Starts excluding a worker: records them as excluded *before* any
    /// grant (ledger first), and opens a grant window, in one conditional
    /// write that also applies the release rule. A worker the lab released
    /// is excluded again only when `again` says so; otherwise the answer is
    /// `KeptReleased` and nothing is written.
    pub async fn begin_exclusion(
        &self,
        worker: &WorkerId,
        qualification: &QualificationTypeId,
        again: AgainIf,
        because: &str,
        now: OffsetDateTime,
        window: Duration,
    ) -> Result<Begin, LedgerError> {
        const OP: &str = "UpdateItem(exclusion begun)";
        let until = now + window;
        // Never excluded; or a grant window that ran out unfinished (its
        // caller crashed or failed): take it over.
        let mut condition = format!(
            "attribute_not_exists({PK}) OR (#state = :excluded AND {GRANTING_UNTIL} < :now)"
        );
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(exclusion_key(worker, qualification)))
            .update_expression(format!(
                "SET {WORKER_ID} = :worker, {QUALIFICATION_TYPE_ID} = :q, #state = :excluded, \
                 {EXCLUDED_Q} = :q, {EXCLUDED_AT} = :now, {EXCLUDED_BECAUSE} = :because, \
                 {VERSION} = if_not_exists({VERSION}, :zero) + :one, {GRANTING_UNTIL} = :until"
            ))
            .expression_attribute_names("#state", STATE)
            .expression_attribute_values(":worker", s(worker.as_str()))
            .expression_attribute_values(":q", s(qualification.as_str()))
            .expression_attribute_values(":excluded", s(ExclusionState::Excluded.as_str()))
            .expression_attribute_values(":now", s(stamp(now)))
            .expression_attribute_values(":until", s(stamp(until)))
            .expression_attribute_values(":because", s(because))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            );
        match again {
            AgainIf::Always => {
                condition.push_str(" OR #state = :released");
                update = update
                    .expression_attribute_values(":released", s(ExclusionState::Released.as_str()));
            }
            AgainIf::SubmittedAfterRelease(Some(submitted)) => {
                condition.push_str(&format!(
                    " OR (#state = :released AND {RELEASED_AT} < :submitted)"
                ));
                update = update
                    .expression_attribute_values(":released", s(ExclusionState::Released.as_str()))
                    .expression_attribute_values(":submitted", s(stamp(submitted)));
            }
            // Submitted at an unknown time: a release stands.
            AgainIf::SubmittedAfterRelease(None) => {}
        }
        match update.condition_expression(condition).send().await {
            Ok(out) => {
                let new = out.attributes.unwrap_or_default();
                Ok(Begin::Grant {
                    version: get_n(&new, VERSION).unwrap_or(0),
                    until,
                })
            }
            Err(e) => match condition_failed_item(&e) {
                Some(old) => {
                    let old = old.unwrap_or_default();
                    let version = get_n(&old, VERSION).unwrap_or(0);
                    match (get_s(&old, STATE).as_deref(), get_s(&old, GRANTING_UNTIL)) {
                        (Some("released"), _) => Ok(Begin::KeptReleased {
                            version,
                            released_at: get_s(&old, RELEASED_AT),
                        }),
                        // Open and not run out (else the condition took it over).
                        (_, Some(until)) => Ok(Begin::GrantInFlight { until }),
                        _ => Ok(Begin::AlreadyExcluded { version }),
                    }
                }
                None => Err(sdk_error(OP, e)),
            },
        }
    }

    /// Closes a grant window whose grant failed, so that the next attempt
    /// takes it over at once instead of waiting for it to run out. Only the
    /// window this caller opened (`version`) is closed.
    pub async fn close_grant_window(
        &self,
        worker: &WorkerId,
        qualification: &QualificationTypeId,
        version: u64,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        const OP: &str = "UpdateItem(grant window closed)";
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(exclusion_key(worker, qualification)))
            // Long past, so that the next attempt's "ran out" test holds at once.
            .update_expression(format!("SET {GRANTING_UNTIL} = :closed"))
            .condition_expression(format!(
                "{VERSION} = :v AND attribute_exists({GRANTING_UNTIL})"
            ))
            .expression_attribute_values(":v", n(version))
            .expression_attribute_values(":closed", s(stamp(now - Duration::days(1))))
            .send()
            .await;
        match result.map_err(|e| sdk_error(OP, e)) {
            Err(e) if e.kind != LedgerErrorKind::ConditionFailed => Err(e),
            _ => Ok(()),
        }
    }

    /// Records a participation whose worker is known but whose exclusion
    /// failed (throttled, MTurk down), in place of the lease: its redelivery
    /// then needs no MTurk look-up, and `status` shows it waiting.
    pub async fn record_pending(
        &self,
        p: &NewParticipation,
        lease_owner: &str,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        const OP: &str = "PutItem(participation pending)";
        let item = new_participation_item(p, now);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(format!(
                "attribute_not_exists({WORKER_ID}) AND {LEASE_OWNER} = :owner"
            ))
            .expression_attribute_values(":owner", s(lease_owner))
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        Ok(())
    }

    /// Settles a participation in one transaction: the participation is
    /// written (excluded, or kept released) and the worker's grant window is
    /// closed, both only if the worker's item still has `version`. If a
    /// release came in between, nothing is written and the caller decides
    /// again.
    pub async fn finish_exclusion(
        &self,
        record: Record<'_>,
        qualification: &QualificationTypeId,
        version: u64,
        settled: Settled,
        released_at: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Finished, LedgerError> {
        use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem, Update};
        const OP: &str = "TransactWriteItems(exclusion settled)";
        let build = |e: aws_sdk_dynamodb::error::BuildError| corrupt(OP, e.to_string());
        let worker = match &record {
            Record::New { participation, .. } => &participation.worker_id,
            Record::Existing(p) => &p.worker_id,
        };
        let worker_key = exclusion_key(worker, qualification);
        let worker_item = match settled {
            Settled::Excluded { granted: true } => TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(worker_key))
                        .update_expression(format!("REMOVE {GRANTING_UNTIL}"))
                        .condition_expression(format!("{VERSION} = :v"))
                        .expression_attribute_values(":v", n(version))
                        .build()
                        .map_err(build)?,
                )
                .build(),
            _ => TransactWriteItem::builder()
                .condition_check(
                    ConditionCheck::builder()
                        .table_name(&self.table)
                        .set_key(Some(worker_key))
                        .condition_expression(format!(
                            "{VERSION} = :v OR (attribute_not_exists({VERSION}) AND :v = :zero)"
                        ))
                        .expression_attribute_values(":v", n(version))
                        .expression_attribute_values(":zero", n(0))
                        .build()
                        .map_err(build)?,
                )
                .build(),
        };
        let stamp_now = stamp(now);
        let participation_item = match record {
            Record::New {
                participation: p,
                lease_owner,
            } => {
                let mut item = new_participation_item(p, now);
                match settled {
                    Settled::Excluded { .. } => {
                        item.insert(EXCLUDED_AT.into(), s(stamp_now.clone()));
                    }
                    Settled::KeptReleased => {
                        item.insert(RELEASED_AT.into(), s(released_at.unwrap_or(&stamp_now)));
                        item.insert(RELEASE_REASON.into(), s(KEPT_RELEASED_REASON));
                    }
                }
                let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
                put = match lease_owner {
                    Some(owner) => put
                        .condition_expression(format!(
                            "attribute_not_exists({WORKER_ID}) AND \
                             (attribute_not_exists({PK}) OR {LEASE_OWNER} = :owner)"
                        ))
                        .expression_attribute_values(":owner", s(owner)),
                    None => put.condition_expression(format!(
                        "attribute_not_exists({WORKER_ID}) AND attribute_not_exists({LEASE_OWNER})"
                    )),
                };
                TransactWriteItem::builder()
                    .put(put.build().map_err(build)?)
                    .build()
            }
            Record::Existing(p) => {
                let update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(p.key()))
                    .condition_expression(format!("attribute_exists({WORKER_ID})"))
                    .expression_attribute_values(":now", s(stamp_now.clone()));
                let update = match settled {
                    // Excluded again (the lab overrode its release): no longer released.
                    Settled::Excluded { .. } => update.update_expression(format!(
                        "SET {EXCLUDED_AT} = if_not_exists({EXCLUDED_AT}, :now) \
                         REMOVE {RELEASED_AT}, {RELEASE_REASON}"
                    )),
                    Settled::KeptReleased => update
                        .update_expression(format!("SET {RELEASED_AT} = :released"))
                        .expression_attribute_values(
                            ":released",
                            s(released_at.unwrap_or(&stamp_now)),
                        ),
                };
                TransactWriteItem::builder()
                    .update(update.build().map_err(build)?)
                    .build()
            }
        };
        let result = self
            .client
            .transact_write_items()
            .transact_items(worker_item)
            .transact_items(participation_item)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Finished::Done),
            Err(e) => {
                use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
                if let SdkError::ServiceError(ctx) = &e {
                    if let TransactWriteItemsError::TransactionCanceledException(c) = ctx.err() {
                        let failed = |i: usize| {
                            c.cancellation_reasons()
                                .get(i)
                                .and_then(|r| r.code())
                                .is_some_and(|code| code == "ConditionalCheckFailed")
                        };
                        if failed(0) {
                            return Ok(Finished::WorkerChanged);
                        }
                        if failed(1) {
                            return Ok(Finished::ParticipationTaken);
                        }
                    }
                }
                Err(sdk_error(OP, e))
            }
        }
    }

    /// Every participation of a worker (through the ByWorker index).
    pub async fn participations_of(
        &self,
        worker: &WorkerId,
    ) -> Result<Vec<Participation>, LedgerError> {
        const OP: &str = "Query(ByWorker)";
        let items = self
            .query_all(
                OP,
                Some(BY_WORKER),
                (WORKER_ID, s(worker.as_str())),
                Some(PARTICIPATION_SK),
            )
            .await?;
        items.iter().map(|i| participation_from(OP, i)).collect()
    }

    /// Records that a test event came through, for `subscribe` to find.
    pub async fn record_heartbeat(
        &self,
        event_doc_id: &str,
        event_at: OffsetDateTime,
        placeholder_hit_type_id: Option<&str>,
        sender: Sender<'_>,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        const OP: &str = "PutItem(heartbeat)";
        let received_at = stamp(now);
        let mut item: Item = HashMap::from([
            (PK.to_owned(), s(HEARTBEAT_PK)),
            (SK.to_owned(), s(format!("{received_at}#{event_doc_id}"))),
            (EVENT_DOC_ID.to_owned(), s(event_doc_id)),
            (EVENT_AT.to_owned(), s(stamp(event_at))),
            (RECEIVED_AT.to_owned(), s(received_at)),
            (
                EXPIRES_AT.to_owned(),
                AttributeValue::N((now + HEARTBEAT_TTL).unix_timestamp().to_string()),
            ),
        ]);
        if let Some(t) = placeholder_hit_type_id {
            item.insert(PLACEHOLDER_HIT_TYPE_ID.to_owned(), s(t));
        }
        if let Some(c) = sender.customer_id {
            item.insert(CUSTOMER_ID.to_owned(), s(c));
        }
        if let Some(a) = sender.source_account {
            item.insert(SOURCE_ACCOUNT.to_owned(), s(a));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        Ok(())
    }

    /// Heartbeats received after `since`, oldest first.
    pub async fn heartbeats_since(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<Heartbeat>, LedgerError> {
        const OP: &str = "Query(heartbeats)";
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(format!("{PK} = :pk AND {SK} > :since"))
            .expression_attribute_values(":pk", s(HEARTBEAT_PK))
            .expression_attribute_values(":since", s(stamp(since)))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        items
            .iter()
            .map(|i| {
                let need = |n: &str| {
                    get_s(i, n).ok_or_else(|| corrupt(OP, format!("heartbeat without {n}")))
                };
                Ok(Heartbeat {
                    event_doc_id: need(EVENT_DOC_ID)?,
                    event_at: need(EVENT_AT)?,
                    received_at: need(RECEIVED_AT)?,
                    placeholder_hit_type_id: get_s(i, PLACEHOLDER_HIT_TYPE_ID),
                    customer_id: get_s(i, CUSTOMER_ID),
                    source_account: get_s(i, SOURCE_ACCOUNT),
                })
            })
            .collect()
    }

    /// The lab's own CustomerId, if `subscribe` has learned it. One strongly
    /// consistent GetItem: the handler reads it once per cold start and
    /// caches it.
    pub async fn own_customer(&self) -> Result<Option<OwnCustomer>, LedgerError> {
        const OP: &str = "GetItem(own customer)";
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(CONFIG_PK))
            .key(SK, s(OWN_CUSTOMER_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let need = |n: &str| {
            get_s(&item, n).ok_or_else(|| corrupt(OP, format!("own customer without {n}")))
        };
        Ok(Some(OwnCustomer {
            customer_id: need(CUSTOMER_ID)?,
            source_account: get_s(&item, SOURCE_ACCOUNT),
            event_doc_id: need(EVENT_DOC_ID)?,
            learned_at: need(LEARNED_AT)?,
        }))
    }

    /// Keeps the lab's own CustomerId, learned from the test event `beat`.
    /// The first one learned stays: a requester's CustomerId never changes,
    /// so a different one is refused and the one kept is returned (the
    /// caller says so).
    pub async fn learn_own_customer(
        &self,
        beat: &Heartbeat,
        now: OffsetDateTime,
    ) -> Result<OwnCustomer, LedgerError> {
        const OP: &str = "PutItem(own customer)";
        let customer_id = beat
            .customer_id
            .clone()
            .ok_or_else(|| corrupt(OP, "the heartbeat has no CustomerId".into()))?;
        let learned = OwnCustomer {
            customer_id,
            source_account: beat.source_account.clone(),
            event_doc_id: beat.event_doc_id.clone(),
            learned_at: stamp(now),
        };
        let mut item: Item = HashMap::from([
            (PK.to_owned(), s(CONFIG_PK)),
            (SK.to_owned(), s(OWN_CUSTOMER_SK)),
            (CUSTOMER_ID.to_owned(), s(&learned.customer_id)),
            (EVENT_DOC_ID.to_owned(), s(&learned.event_doc_id)),
            (LEARNED_AT.to_owned(), s(&learned.learned_at)),
        ]);
        if let Some(a) = &learned.source_account {
            item.insert(SOURCE_ACCOUNT.to_owned(), s(a));
        }
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(format!("attribute_not_exists({PK})"))
            .send()
            .await;
        match put {
            Ok(_) => Ok(learned),
            Err(e) => {
                let e = sdk_error(OP, e);
                if e.kind != LedgerErrorKind::ConditionFailed {
                    return Err(e);
                }
                self.own_customer()
                    .await?
                    .ok_or_else(|| corrupt(OP, "own customer vanished".into()))
            }
        }
    }

    /// Notes the rate this instance (`instance`, any short id of its own)
    /// recently sent MTurk calls at while MTurk accepted them. One UpdateItem
    /// of its own attribute; the caller writes at most about once a minute.
    /// Instances silent for [`POOL_RATE_KEPT`] are pruned in passing (a
    /// second UpdateItem, only when there are any).
    pub async fn record_pool_rate(
        &self,
        instance: &str,
        rate: f64,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        const OP: &str = "UpdateItem(pool rate)";
        let entry = AttributeValue::M(HashMap::from([
            (RATE.to_owned(), AttributeValue::N(format!("{rate:.3}"))),
            (AT.to_owned(), s(stamp(now))),
        ]));
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(CONFIG_PK))
            .key(SK, s(MTURK_RATE_SK))
            .update_expression("SET #i = :v")
            .expression_attribute_names("#i", format!("{RATE_OF}{instance}"))
            .expression_attribute_values(":v", entry)
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        let stale: Vec<String> = out
            .attributes
            .unwrap_or_default()
            .iter()
            .filter_map(|(name, value)| {
                let (_, at) = rate_entry(name, value)?;
                (now - at > POOL_RATE_KEPT).then(|| name.clone())
            })
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        let mut prune = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(CONFIG_PK))
            .key(SK, s(MTURK_RATE_SK));
        let mut names = Vec::new();
        for (n, name) in stale.iter().enumerate() {
            let placeholder = format!("#s{n}");
            prune = prune.expression_attribute_names(&placeholder, name);
            names.push(placeholder);
        }
        prune
            .update_expression(format!("REMOVE {}", names.join(", ")))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem(pool rate pruned)", e))?;
        Ok(())
    }

    /// The pool's recently accepted MTurk rate: the sum of the rates of the
    /// instances that reported within [`POOL_RATE_TOGETHER`] of the last
    /// report, unless that is older than [`POOL_RATE_KEPT`]. One GetItem;
    /// the handler reads it once per cold start.
    pub async fn pool_rate(&self, now: OffsetDateTime) -> Result<Option<PoolRate>, LedgerError> {
        const OP: &str = "GetItem(pool rate)";
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(CONFIG_PK))
            .key(SK, s(MTURK_RATE_SK))
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        let entries: Vec<(f64, OffsetDateTime)> = out
            .item
            .unwrap_or_default()
            .iter()
            .filter_map(|(name, value)| rate_entry(name, value))
            .collect();
        let Some(last) = entries.iter().map(|(_, at)| *at).max() else {
            return Ok(None);
        };
        if now - last > POOL_RATE_KEPT {
            return Ok(None);
        }
        let together: Vec<f64> = entries
            .iter()
            .filter(|(_, at)| last - *at <= POOL_RATE_TOGETHER)
            .map(|(rate, _)| *rate)
            .collect();
        Ok(Some(PoolRate {
            rate: together.iter().sum(),
            instances: together.len(),
            at: last,
        }))
    }

    /// Records (or re-affirms) a participation for a worker named without an
    /// assignment. Naming a worker again after a release excludes them again:
    /// an explicit request from the lab is never stale.
    pub async fn record_manual_participation(
        &self,
        worker: &WorkerId,
        learned: &Learned,
        now: OffsetDateTime,
    ) -> Result<Participation, LedgerError> {
        const OP: &str = "UpdateItem(manual participation)";
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(manual_key(worker)))
            .update_expression(format!(
                "SET {WORKER_ID} = :worker, {LEARNED_BY} = if_not_exists({LEARNED_BY}, :learned), \
                 {RECORDED_AT} = if_not_exists({RECORDED_AT}, :now) \
                 REMOVE {RELEASED_AT}, {RELEASE_REASON}, {EXCLUDED_AT}"
            ))
            .expression_attribute_values(":worker", s(worker.as_str()))
            .expression_attribute_values(":learned", s(learned.as_str()))
            .expression_attribute_values(":now", s(stamp(now)))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        let item = out
            .attributes
            .ok_or_else(|| corrupt(OP, "no attributes returned".into()))?;
        participation_from(OP, &item)
    }

    /// Every participation recorded for a HIT (through the ByHit index), so a
    /// study can be found long after MTurk disposed of the HIT.
    pub async fn participations_in_hit(
        &self,
        hit: &HitId,
    ) -> Result<Vec<Participation>, LedgerError> {
        const OP: &str = "Query(ByHit)";
        let items = self
            .query_all(OP, Some(BY_HIT), (HIT_ID, s(hit.as_str())), None)
            .await?;
        items.iter().map(|i| participation_from(OP, i)).collect()
    }

    /// Every worker the ledger holds excluded under `qualification`.
    pub async fn excluded_workers(
        &self,
        qualification: &QualificationTypeId,
    ) -> Result<Vec<Exclusion>, LedgerError> {
        const OP: &str = "Query(Excluded)";
        let items = self
            .query_all(
                OP,
                Some(EXCLUDED),
                (EXCLUDED_Q, s(qualification.as_str())),
                None,
            )
            .await?;
        items.iter().map(|i| exclusion_from(OP, i)).collect()
    }

    /// Reads the whole table once, in pages, and keeps what a report needs
    /// about `qualification`: participations, exclusions and releases, the
    /// check's claims and their end markers. A full scan (every item is
    /// read once): for reports, never for the per-event path.
    pub async fn snapshot(
        &self,
        qualification: &QualificationTypeId,
    ) -> Result<Snapshot, LedgerError> {
        const OP: &str = "Scan(snapshot)";
        let exclusion_sk = format!("X#{qualification}");
        let claim_sk = format!("C#{qualification}");
        let mut snapshot = Snapshot::default();
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.try_next().await.map_err(|e| sdk_error(OP, e))? {
            let (Some(pk), Some(sk)) = (get_s(&item, PK), get_s(&item, SK)) else {
                continue;
            };
            if sk == PARTICIPATION_SK {
                // Without a worker: a lease, its assignment still being handled.
                if item.contains_key(WORKER_ID) {
                    snapshot.participations.push(participation_from(OP, &item)?);
                }
            } else if pk.starts_with("W#") && sk == exclusion_sk {
                let x = exclusion_from(OP, &item)?;
                if x.state == ExclusionState::Excluded {
                    snapshot.excluded_now += 1;
                }
                if let Some(released_at) = x.released_at {
                    snapshot.releases.push(LastRelease {
                        worker_id: x.worker_id,
                        state: x.state,
                        released_at,
                        reason: get_s(&item, RELEASE_REASON),
                    });
                }
            } else if pk.starts_with("W#") && sk == claim_sk {
                snapshot.claims.extend(claims::stored_claim(OP, &item)?);
            } else if let Some(ended) = claims::claim_ended_from(OP, &pk, &item)? {
                snapshot.claim_ends.push(ended);
            }
        }
        snapshot.participations.sort_by_key(|p| p.recorded_at);
        Ok(snapshot)
    }

    /// Every participation, optionally only those recorded at or after `since`.
    /// A full scan: for exports and status, not for the per-event path.
    pub async fn all_participations(
        &self,
        since: Option<OffsetDateTime>,
    ) -> Result<Vec<Participation>, LedgerError> {
        const OP: &str = "Scan(participations)";
        let mut scan = self
            .client
            .scan()
            .table_name(&self.table)
            .expression_attribute_values(":p", s(PARTICIPATION_SK));
        // A lease (an assignment still being looked up) has the same key
        // shape but no worker yet: not a participation.
        let participations = format!("{SK} = :p AND attribute_exists({WORKER_ID})");
        scan = match since {
            Some(t) => scan
                .filter_expression(format!("{participations} AND {RECORDED_AT} >= :since"))
                .expression_attribute_values(":since", s(stamp(t))),
            None => scan.filter_expression(participations),
        };
        let items = scan
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        let mut all = items
            .iter()
            .map(|i| participation_from(OP, i))
            .collect::<Result<Vec<_>, _>>()?;
        all.sort_by_key(|a| a.recorded_at);
        Ok(all)
    }

    /// The most recent heartbeat, if any.
    pub async fn last_heartbeat(&self) -> Result<Option<String>, LedgerError> {
        const OP: &str = "Query(last heartbeat)";
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(format!("{PK} = :pk"))
            .expression_attribute_values(":pk", s(HEARTBEAT_PK))
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        Ok(out
            .items
            .unwrap_or_default()
            .first()
            .and_then(|i| get_s(i, RECEIVED_AT)))
    }

    /// Records that a HIT type's notifications now go to `queue_url`, for
    /// `event_types` (UpdateNotificationSettings replaces the whole setting,
    /// so these are all it now holds). `None` writes a record as they were
    /// before the event types were noted (AssignmentSubmitted only).
    ///
    /// The lab's own subscription: it replaces what the record said (active
    /// again, not yet verified, the lab's), except a backfill still due,
    /// which the watch must not lose.
    pub async fn record_subscription(
        &self,
        hit_type: &HitTypeId,
        queue_url: &str,
        event_types: Option<&[&str]>,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        let mut set = format!("SET {QUEUE_URL} = :q, {SUBSCRIBED_AT} = :at, {ACTIVE} = :yes");
        let mut remove = format!(" REMOVE {VERIFIED_AT}, {SUBSCRIBED_BY}");
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(SUBSCRIPTION_PK))
            .key(SK, s(hit_type.as_str()))
            .expression_attribute_values(":q", s(queue_url))
            .expression_attribute_values(":at", s(stamp(now)))
            .expression_attribute_values(":yes", AttributeValue::Bool(true));
        match event_types {
            Some(types) => {
                set.push_str(&format!(", {EVENT_TYPES} = :events"));
                update = update.expression_attribute_values(
                    ":events",
                    AttributeValue::L(types.iter().map(|e| s(*e)).collect()),
                );
            }
            None => remove.push_str(&format!(", {EVENT_TYPES}")),
        }
        update
            .update_expression(format!("{set}{remove}"))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem(subscription)", e))?;
        Ok(())
    }

    /// Records a subscription that covers a HIT type nobody had subscribed
    /// (the watch, `coverage --fix`), with its backfill due. Only where the
    /// ledger has no record of the HIT type: returns the `due_mark` written,
    /// or `None` when it had one (the lab subscribed or unsubscribed it
    /// meanwhile), and nothing is written.
    pub async fn record_covering_subscription(
        &self,
        hit_type: &HitTypeId,
        queue_url: &str,
        event_types: &[&str],
        by: SubscribedBy,
        now: OffsetDateTime,
    ) -> Result<Option<u64>, LedgerError> {
        const OP: &str = "PutItem(covering subscription)";
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(SUBSCRIPTION_PK))
            .item(SK, s(hit_type.as_str()))
            .item(QUEUE_URL, s(queue_url))
            .item(SUBSCRIBED_AT, s(stamp(now)))
            .item(ACTIVE, AttributeValue::Bool(true))
            .item(
                EVENT_TYPES,
                AttributeValue::L(event_types.iter().map(|e| s(*e)).collect()),
            )
            .item(SUBSCRIBED_BY, s(by.as_str()))
            .item(BACKFILL_DUE, AttributeValue::Bool(true))
            .item(DUE_MARK, n(FIRST_DUE_MARK))
            .condition_expression(format!("attribute_not_exists({PK})"))
            .send()
            .await;
        Ok(unless_condition_failed(OP, result)?.map(|_| FIRST_DUE_MARK))
    }

    /// Marks an active subscription's backfill due again: HITs with
    /// submissions of their own were moved into its HIT type (`coverage
    /// --fix`, the watch's guard). Returns the new mark, or `None` when the
    /// ledger has no active record of the HIT type (nothing is written).
    pub async fn record_backfill_due(
        &self,
        hit_type: &HitTypeId,
    ) -> Result<Option<u64>, LedgerError> {
        const OP: &str = "UpdateItem(subscription backfill due)";
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(SUBSCRIPTION_PK))
            .key(SK, s(hit_type.as_str()))
            .update_expression(format!("SET {BACKFILL_DUE} = :due ADD {DUE_MARK} :one"))
            .condition_expression(format!(
                "attribute_exists({PK}) AND (attribute_not_exists({ACTIVE}) OR {ACTIVE} = :due)"
            ))
            .expression_attribute_values(":due", AttributeValue::Bool(true))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        Ok(unless_condition_failed(OP, result)?
            .and_then(|out| out.attributes.as_ref().and_then(|a| get_n(a, DUE_MARK))))
    }

    /// Notes that a covering subscription's earlier submissions are all
    /// excluded: written only once they are, so a run stopped halfway leaves
    /// the backfill due for the next; and only if its backfill was not
    /// marked due again since the backfill read `due_mark` (before listing
    /// the HITs it went through), so a HIT moved in meanwhile is not passed
    /// over. Returns whether it was recorded.
    pub async fn record_backfilled(
        &self,
        hit_type: &HitTypeId,
        due_mark: Option<u64>,
        now: OffsetDateTime,
    ) -> Result<bool, LedgerError> {
        const OP: &str = "UpdateItem(subscription backfilled)";
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(SUBSCRIPTION_PK))
            .key(SK, s(hit_type.as_str()))
            .update_expression(format!("SET {BACKFILLED_AT} = :at REMOVE {BACKFILL_DUE}"))
            .expression_attribute_values(":at", s(stamp(now)));
        let update = match due_mark {
            Some(mark) => update
                .condition_expression(format!("attribute_exists({PK}) AND {DUE_MARK} = :mark"))
                .expression_attribute_values(":mark", n(mark)),
            None => update.condition_expression(format!(
                "attribute_exists({PK}) AND attribute_not_exists({DUE_MARK})"
            )),
        };
        Ok(unless_condition_failed(OP, update.send().await)?.is_some())
    }

    /// One HIT type's subscription record, read consistently.
    pub async fn subscription(
        &self,
        hit_type: &HitTypeId,
    ) -> Result<Option<Subscription>, LedgerError> {
        const OP: &str = "GetItem(subscription)";
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(SUBSCRIPTION_PK))
            .key(SK, s(hit_type.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        out.item.map(|i| subscription_from(OP, &i)).transpose()
    }

    /// Replaces the record of the watch's last run: its one write when it
    /// finds nothing new.
    pub async fn record_watch_run(&self, run: &WatchRun) -> Result<(), LedgerError> {
        let counts = run
            .counts
            .iter()
            .map(|(name, v)| (name.clone(), n(*v)))
            .collect();
        let unguarded = run
            .unguarded
            .iter()
            .take(WATCH_RUN_LISTED)
            .map(|h| {
                let mut m = HashMap::from([
                    (HIT_ID.to_owned(), s(h.hit_id.as_str())),
                    (HIT_TYPE.to_owned(), s(h.hit_type_id.as_str())),
                ]);
                if let Some(t) = &h.title {
                    m.insert(TITLE.to_owned(), s(t.as_str()));
                }
                AttributeValue::M(m)
            })
            .collect();
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(CONFIG_PK))
            .item(SK, s(WATCH_SK))
            .item(
                RAN_AT,
                s(stamp(run.ran_at.unwrap_or_else(OffsetDateTime::now_utc))),
            )
            .item(COUNTS, AttributeValue::M(counts))
            .item(UNGUARDED, AttributeValue::L(unguarded))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem(watch run)", e))?;
        Ok(())
    }

    /// The watch's last run, if it ever ran.
    pub async fn last_watch_run(&self) -> Result<Option<WatchRun>, LedgerError> {
        const OP: &str = "GetItem(watch run)";
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(CONFIG_PK))
            .key(SK, s(WATCH_SK))
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let mut counts: Vec<(String, u64)> = match item.get(COUNTS) {
            Some(AttributeValue::M(m)) => m
                .iter()
                .filter_map(|(k, v)| match v {
                    AttributeValue::N(x) => x.parse().ok().map(|x| (k.clone(), x)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        counts.sort();
        let unguarded = match item.get(UNGUARDED) {
            Some(AttributeValue::L(list)) => list
                .iter()
                .filter_map(|v| match v {
                    AttributeValue::M(m) => Some(UnguardedHit {
                        hit_id: get_s(m, HIT_ID)?,
                        hit_type_id: get_s(m, HIT_TYPE)?,
                        title: get_s(m, TITLE),
                    }),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(Some(WatchRun {
            ran_at: get_time(OP, &item, RAN_AT)?,
            counts,
            unguarded,
        }))
    }

    /// Notes that a test event came through after these HIT types were subscribed.
    pub async fn record_verified(&self, hit_type: &HitTypeId, at: &str) -> Result<(), LedgerError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(SUBSCRIPTION_PK))
            .key(SK, s(hit_type.as_str()))
            .update_expression(format!("SET {VERIFIED_AT} = :at"))
            .condition_expression(format!("attribute_exists({PK})"))
            .expression_attribute_values(":at", s(at))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem(subscription verified)", e))?;
        Ok(())
    }

    /// Marks a HIT type's subscription inactive (kept, for the record).
    pub async fn record_unsubscribed(&self, hit_type: &HitTypeId) -> Result<(), LedgerError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(SUBSCRIPTION_PK))
            .key(SK, s(hit_type.as_str()))
            .update_expression(format!("SET {ACTIVE} = :no"))
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem(subscription inactive)", e))?;
        Ok(())
    }

    /// Every HIT type subscribed (by the lab or the watch), or unsubscribed.
    pub async fn subscriptions(&self) -> Result<Vec<Subscription>, LedgerError> {
        const OP: &str = "Query(subscriptions)";
        let items = self
            .query_all(OP, None, (PK, s(SUBSCRIPTION_PK)), None)
            .await?;
        items.iter().map(|i| subscription_from(OP, i)).collect()
    }
}

fn subscription_from(op: &'static str, i: &Item) -> Result<Subscription, LedgerError> {
    let hit_type = get_s(i, SK).ok_or_else(|| corrupt(op, "subscription without sk".into()))?;
    Ok(Subscription {
        hit_type_id: HitTypeId::parse(&hit_type)
            .map_err(|e| corrupt(op, format!("subscription: {e}")))?,
        queue_url: get_s(i, QUEUE_URL).unwrap_or_default(),
        subscribed_at: get_time(op, i, SUBSCRIBED_AT)?,
        verified_at: get_time(op, i, VERIFIED_AT)?,
        active: !matches!(i.get(ACTIVE), Some(AttributeValue::Bool(false))),
        event_types: match i.get(EVENT_TYPES) {
            Some(AttributeValue::L(list)) => {
                Some(list.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
            }
            _ => None,
        },
        subscribed_by: match get_s(i, SUBSCRIBED_BY).as_deref() {
            Some("watch") => SubscribedBy::Watch,
            _ => SubscribedBy::Lab,
        },
        backfill_due: matches!(i.get(BACKFILL_DUE), Some(AttributeValue::Bool(true))),
        due_mark: get_n(i, DUE_MARK),
        backfilled_at: get_time(op, i, BACKFILLED_AT)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn stamps_sort_as_times() {
        assert_eq!(
            stamp(datetime!(2026-03-02 17:04:11 UTC)),
            "2026-03-02T17:04:11.000Z"
        );
        assert_eq!(
            stamp(datetime!(2026-03-02 17:04:11.5 UTC)),
            "2026-03-02T17:04:11.500Z"
        );
        assert_eq!(
            stamp(datetime!(2026-03-02 17:04:11.123456 UTC)),
            "2026-03-02T17:04:11.123Z"
        );
        assert_eq!(
            stamp(datetime!(2026-03-02 18:04:11 +01:00)),
            "2026-03-02T17:04:11.000Z"
        );
        assert!(
            stamp(datetime!(2026-03-02 17:04:11.9 UTC)) < stamp(datetime!(2026-03-02 17:04:12 UTC))
        );
    }
}
