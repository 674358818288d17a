//! The ledger: who took part in what, who is excluded, and proof that the
//! notification path works. One DynamoDB table; this module and its files
//! are the only code that knows its attribute names.
//!
//! One file per kind of item it keeps (pk / sk), each with its attribute
//! names, its types and its own `impl Ledger`:
//! - [`participation`]: `A#<assignment>` / `P`, a participation learned from
//!   an assignment (a notification, a backfill or a CSV row), and
//!   `M#<worker>` / `P`, one the lab entered by hand, with no assignment
//!   (`exclude --worker`). Also the report's one scan of the whole table
//!   ([`Ledger::snapshot`]).
//! - [`exclusion`]: the protocol that excludes a worker, across two item
//!   kinds: `W#<worker>` / `X#<qualification>`, the worker's exclusion under
//!   one qualification (it carries `excluded_q` only while excluded, which
//!   makes the `Excluded` index list exactly the excluded workers), and the
//!   participation item, which carries a lease (`lease_owner`,
//!   `lease_until`) while a handler works on it. Lease, begin, close a grant
//!   window, pending, finish; release.
//! - [`subscription`]: `SUBSCRIPTION` / `<HIT type>`, a HIT type `subscribe`
//!   (or the watch, or `coverage --fix`) pointed at the queue, and when its
//!   path was last proven; `status` lists them. One made by the watch or a
//!   fix carries `subscribed_by` and `backfill_due` until its earlier
//!   submissions are excluded (`backfilled_at`); HITs moved into a
//!   subscribed type mark its backfill due again, and `due_generation` counts the
//!   marks. A record marked inactive is the lab's `unsubscribe`, which the
//!   watch never undoes.
//! - [`heartbeat`]: `HEARTBEAT` / `<received_at>#<event doc id>`, a test
//!   event that made it through the queue and the handler; expires after 30
//!   days.
//! - [`config`]: the `CONFIG` partition, one item each:
//!   - `CONFIG` / `OWN_CUSTOMER`: the lab's own MTurk `CustomerId`, learned
//!     by `subscribe` from a test event it proved to be its own; documents
//!     from any other CustomerId are foreign.
//!   - `CONFIG` / `MTURK_RATE`: the rate of MTurk calls each handler
//!     instance recently sent while MTurk accepted them, one attribute per
//!     instance (rate and when), written at most once a minute per instance
//!     and pruned of instances silent for a day. A cold instance starts at
//!     its share of the pool's rate ([`PoolRate`]).
//!   - `CONFIG` / `WATCH`: the watch's last run (when, what it counted, the
//!     live HITs it found unguarded), written once per run.
//! - [`claims`]: `WC#<worker>` / `C#<qualification>` (and, from releases up
//!   to 0.2.0, `W#<worker>` / `C#<qualification>`) and
//!   `CLAIMEND#<assignment>` / `E`, the accept-time check's claims and their
//!   ends.
//! - [`verified`]: `HIT#<hit>` / `V`, a HIT verified as the lab's (by the
//!   check's `GetHIT` or the watch's listing).
//!
//! This file keeps what they share: the [`Ledger`] itself, its error
//! ([`LedgerError`]), the codecs (attribute values, stored times) and the
//! key schema below.
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
use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

pub mod claims;
pub mod config;
pub mod exclusion;
pub mod heartbeat;
pub mod participation;
pub mod subscription;
pub mod verified;

pub use claims::{Claim, ClaimEnd, ClaimEnded, Replaceable, Standing, StoredClaim};
pub use config::{
    Lists, OwnCustomer, PoolRate, UnguardedHit, WatchCounts, WatchRun, POOL_RATE_KEPT,
    POOL_RATE_TOGETHER, WATCH_RUN_LISTED,
};
pub use exclusion::{
    AgainIf, Begin, Exclusion, ExclusionState, Finished, LastRelease, Lease, ReleaseRecord,
    Settled, ToSettle, KEPT_RELEASED_REASON,
};
pub use heartbeat::{Heartbeat, Sender};
pub use participation::{Learned, LedgerContents, NewParticipation, Participation};
pub use subscription::{HistoryLeftOut, SubscribedBy, Subscription};
pub use verified::{VerifiedBy, VerifiedHit};

// The key schema: the table's keys, its indexes and their key attributes
// (declared in template.yaml), and the attributes more than one item kind
// carries. Each item kind's own attributes are in its file.
const PK: &str = "pk";
const SK: &str = "sk";
const BY_WORKER: &str = "ByWorker";
const BY_HIT: &str = "ByHit";
const EXCLUDED: &str = "Excluded";
/// `ByWorker`'s and `Excluded`'s key: on participations and exclusion items.
const WORKER_ID: &str = "worker_id";
/// `ByHit`'s key: on participations from an assignment; also in the watch
/// run's list of unguarded HITs.
const HIT_ID: &str = "hit_id";
/// Where participations recorded before `hit_type` kept their HIT type: the
/// `ByHitType` index's key, which nothing queries any more. Read, never written.
const HIT_TYPE_ID: &str = "hit_type_id";
/// A participation's HIT type (no index has it as a key).
const HIT_TYPE: &str = "hit_type";
/// `Excluded`'s key: on an exclusion item while the worker is excluded.
const EXCLUDED_Q: &str = "excluded_q";
/// The table's TTL attribute (epoch seconds): heartbeats and claims.
const EXPIRES_AT: &str = "expires_at";
// On participations and exclusion items.
const EXCLUDED_AT: &str = "excluded_at";
const RELEASED_AT: &str = "released_at";
const RELEASE_REASON: &str = "release_reason";
/// The notification's document: on participations, heartbeats and the
/// lab's own customer.
const EVENT_DOC_ID: &str = "event_doc_id";
// On heartbeats and the lab's own customer.
const CUSTOMER_ID: &str = "customer_id";
const SOURCE_ACCOUNT: &str = "source_account";

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

#[derive(Clone)]
pub struct Ledger {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl Ledger {
    /// Writes a whole item, whatever was there: the records whose newest
    /// copy is simply the truth (a heartbeat, a verified HIT).
    async fn put(&self, operation: &'static str, item: Item) -> Result<(), LedgerError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error(operation, e))?;
        Ok(())
    }

    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Ledger {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// When the pool started: its ledger table's `CreationDateTime`, to the
    /// whole second below. Durable and exact: CloudFormation keeps the table
    /// across stack updates (and retains it when the stack is deleted), and
    /// no item can change it. Submissions from before it are the lab's
    /// history, which the watch leaves for the lab to adopt.
    pub async fn pool_start(&self) -> Result<OffsetDateTime, LedgerError> {
        const OP: &str = "DescribeTable";
        let out = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        let created = out
            .table
            .and_then(|t| t.creation_date_time)
            .ok_or_else(|| corrupt(OP, "the table has no CreationDateTime".into()))?;
        OffsetDateTime::from_unix_timestamp(created.secs())
            .map_err(|e| corrupt(OP, format!("CreationDateTime {created}: {e}")))
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
