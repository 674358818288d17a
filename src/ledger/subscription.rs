//! Subscriptions: which HIT types send their notifications to the queue.
//!
//! Items (pk / sk):
//! - `SUBSCRIPTION` / `<HIT type>`: a HIT type `subscribe` (or the watch, or
//!   `coverage --fix`) pointed at the queue, and when its path was last
//!   proven; `status` lists them. One made by the watch or a fix carries
//!   `subscribed_by` and `backfill_due` until its earlier submissions are
//!   excluded (`backfilled_at`); HITs moved into a subscribed type mark its
//!   backfill due again, and `due_generation` counts the marks. A record marked
//!   inactive is the lab's `unsubscribe`, which the watch never undoes.
//!   The lab's history: `history_left_out_hits` / `_submissions` what the
//!   last backfill left out as submitted before the pool's start, and
//!   `history_adopted_at` when the lab adopted it (`adopt`).

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use time::OffsetDateTime;

use super::{
    corrupt, get_n, get_s, get_time, n, s, sdk_error, stamp, unless_condition_failed, Item, Ledger,
    LedgerError, PK, SK,
};
use crate::ids::HitTypeId;

const SUBSCRIPTION_PK: &str = "SUBSCRIPTION";
const QUEUE_URL: &str = "queue_url";
/// The event types `subscribe` told MTurk to send for a HIT type.
const EVENT_TYPES: &str = "event_types";
const SUBSCRIBED_AT: &str = "subscribed_at";
const VERIFIED_AT: &str = "verified_at";
const ACTIVE: &str = "active";
const SUBSCRIBED_BY: &str = "subscribed_by";
const BACKFILL_DUE: &str = "backfill_due";
const BACKFILLED_AT: &str = "backfilled_at";
/// How many times a subscription's backfill was marked due. A backfill
/// records itself done only if the count is still what it read before it
/// listed the HITs: one marked due meanwhile (a HIT moved into the type)
/// stays due.
/// The backfill's generation: how often it was marked due. Stored as
/// `due_mark`, the attribute's name since the first version.
const DUE_GENERATION: &str = "due_mark";
/// The `due_generation` a covering subscription is recorded with.
const FIRST_DUE_GENERATION: u64 = 1;
/// What the last backfill left out: how many submissions, to how many HITs.
const LEFT_OUT_HITS: &str = "history_left_out_hits";
const LEFT_OUT_SUBMISSIONS: &str = "history_left_out_submissions";
const HISTORY_ADOPTED_AT: &str = "history_adopted_at";

/// Submissions a backfill left out as the lab's history (submitted before
/// the pool's start to HITs whose history is not the pool's), and how many
/// HITs they belong to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct HistoryLeftOut {
    pub hits: u64,
    pub submissions: u64,
}

impl HistoryLeftOut {
    pub fn is_empty(&self) -> bool {
        self.submissions == 0
    }

    pub fn add(&mut self, other: HistoryLeftOut) {
        self.hits += other.hits;
        self.submissions += other.submissions;
    }
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
    pub due_generation: Option<u64>,
    pub backfilled_at: Option<OffsetDateTime>,
    /// What the last finished backfill left out as the lab's history, and
    /// not adopted since (`adopt` empties it once it has adopted it all).
    pub history_left_out: HistoryLeftOut,
    /// When the lab adopted this HIT type's history: from then on every
    /// submission of it is the pool's.
    pub history_adopted_at: Option<OffsetDateTime>,
}

impl Ledger {
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
    /// ledger has no record of the HIT type: returns the `due_generation` written,
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
        let put = self
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
            .item(DUE_GENERATION, n(FIRST_DUE_GENERATION))
            .condition_expression(format!("attribute_not_exists({PK})"));
        let result = put.send().await;
        Ok(unless_condition_failed(OP, result)?.map(|_| FIRST_DUE_GENERATION))
    }

    /// Marks an active subscription's backfill due again: HITs with
    /// submissions of their own were moved into its HIT type (`coverage
    /// --fix`, the watch's guard), or HITs of it became the pool's (an
    /// earlier list carried over). Returns the new mark, or `None` when the
    /// ledger has no active record of the HIT type (nothing is written).
    pub async fn record_backfill_due(
        &self,
        hit_type: &HitTypeId,
    ) -> Result<Option<u64>, LedgerError> {
        self.mark_due("UpdateItem(subscription backfill due)", hit_type, None)
            .await
    }

    /// Marks an active subscription's backfill due again (a new generation),
    /// with the time the lab adopted its history if `adopted_at`.
    async fn mark_due(
        &self,
        op: &'static str,
        hit_type: &HitTypeId,
        adopted_at: Option<OffsetDateTime>,
    ) -> Result<Option<u64>, LedgerError> {
        let mut set = format!("SET {BACKFILL_DUE} = :due");
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(SUBSCRIPTION_PK))
            .key(SK, s(hit_type.as_str()));
        if let Some(at) = adopted_at {
            set.push_str(&format!(", {HISTORY_ADOPTED_AT} = :at"));
            update = update.expression_attribute_values(":at", s(stamp(at)));
        }
        let result = update
            .update_expression(format!("{set} ADD {DUE_GENERATION} :one"))
            .condition_expression(format!(
                "attribute_exists({PK}) AND (attribute_not_exists({ACTIVE}) OR {ACTIVE} = :due)"
            ))
            .expression_attribute_values(":due", AttributeValue::Bool(true))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        Ok(unless_condition_failed(op, result)?.and_then(|out| {
            out.attributes
                .as_ref()
                .and_then(|a| get_n(a, DUE_GENERATION))
        }))
    }

    /// Notes that a covering subscription's earlier submissions are all
    /// excluded: written only once they are, so a run stopped halfway leaves
    /// the backfill due for the next; and only if its backfill was not
    /// marked due again since the backfill read `due_generation` (before listing
    /// the HITs it went through), so a HIT moved in meanwhile is not passed
    /// over. `left_out` is what it left out as the lab's history. Returns
    /// whether it was recorded.
    pub async fn record_backfilled(
        &self,
        hit_type: &HitTypeId,
        due_generation: Option<u64>,
        left_out: HistoryLeftOut,
        now: OffsetDateTime,
    ) -> Result<bool, LedgerError> {
        const OP: &str = "UpdateItem(subscription backfilled)";
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(SUBSCRIPTION_PK))
            .key(SK, s(hit_type.as_str()))
            .update_expression(format!(
                "SET {BACKFILLED_AT} = :at, {LEFT_OUT_HITS} = :hits, \
                 {LEFT_OUT_SUBMISSIONS} = :submissions REMOVE {BACKFILL_DUE}"
            ))
            .expression_attribute_values(":at", s(stamp(now)))
            .expression_attribute_values(":hits", n(left_out.hits))
            .expression_attribute_values(":submissions", n(left_out.submissions));
        let update = match due_generation {
            Some(mark) => update
                .condition_expression(format!(
                    "attribute_exists({PK}) AND {DUE_GENERATION} = :mark"
                ))
                .expression_attribute_values(":mark", n(mark)),
            None => update.condition_expression(format!(
                "attribute_exists({PK}) AND attribute_not_exists({DUE_GENERATION})"
            )),
        };
        Ok(unless_condition_failed(OP, update.send().await)?.is_some())
    }

    /// Records that the lab adopted a HIT type's history: every submission
    /// of it is the pool's from now on, whenever it was made. Written before
    /// `adopt` excludes anything, with the backfill marked due again (a new
    /// generation): a watch run that read the record before cannot record
    /// its backfill done (nor its count of history left out), and the next
    /// run takes the whole history in, so an adoption that stops halfway is
    /// finished by the watch. Returns the new generation, or `None` when the
    /// ledger has no active record of the HIT type (nothing is written).
    pub async fn record_history_adopted(
        &self,
        hit_type: &HitTypeId,
        now: OffsetDateTime,
    ) -> Result<Option<u64>, LedgerError> {
        self.mark_due(
            "UpdateItem(subscription history adopted)",
            hit_type,
            Some(now),
        )
        .await
    }

    /// Empties a HIT type's count of history left out once `adopt` settled
    /// all of it, only if no one marked the backfill due again since the
    /// adoption's generation (what was marked since may be history the
    /// adoption never saw: its count stays for the watch to redo). Returns
    /// whether it was emptied.
    pub async fn record_history_settled(
        &self,
        hit_type: &HitTypeId,
        generation: u64,
    ) -> Result<bool, LedgerError> {
        const OP: &str = "UpdateItem(subscription history settled)";
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(SUBSCRIPTION_PK))
            .key(SK, s(hit_type.as_str()))
            .update_expression(format!("REMOVE {LEFT_OUT_HITS}, {LEFT_OUT_SUBMISSIONS}"))
            .condition_expression(format!(
                "attribute_exists({PK}) AND {DUE_GENERATION} = :mark"
            ))
            .expression_attribute_values(":mark", n(generation))
            .send()
            .await;
        Ok(unless_condition_failed(OP, result)?.is_some())
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
        due_generation: get_n(i, DUE_GENERATION),
        backfilled_at: get_time(op, i, BACKFILLED_AT)?,
        history_left_out: HistoryLeftOut {
            hits: get_n(i, LEFT_OUT_HITS).unwrap_or(0),
            submissions: get_n(i, LEFT_OUT_SUBMISSIONS).unwrap_or(0),
        },
        history_adopted_at: get_time(op, i, HISTORY_ADOPTED_AT)?,
    })
}
