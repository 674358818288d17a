//! The `CONFIG` partition: what the deployment learns about itself and
//! keeps, one item each.
//!
//! Items (pk / sk):
//! - `CONFIG` / `OWN_CUSTOMER`: the lab's own MTurk `CustomerId`, learned by
//!   `subscribe` from a test event it proved to be its own; documents from
//!   any other CustomerId are foreign.
//! - `CONFIG` / `MTURK_RATE`: the rate of MTurk calls each handler instance
//!   recently sent while MTurk accepted them, one attribute per instance
//!   (rate and when), written at most once a minute per instance and pruned
//!   of instances silent for a day. A cold instance starts at its share of
//!   the pool's rate ([`PoolRate`]).
//! - `CONFIG` / `WATCH`: the watch's last run (when, what it counted, the
//!   live HITs it found unguarded), written once per run.
//! - `CONFIG` / `WATCH_TEST_EVENT`: when the watch last asked MTurk for a
//!   test event, to learn the lab's CustomerId from it on a later run
//!   (`sent_at`).
//! - `CONFIG` / `LISTS`: the lab's earlier exclusion qualifications whose
//!   holders `adopt --from-qualification` carried into the pool (a string
//!   set, `carried`): the earlier submissions of HITs that require one of
//!   them with DoesNotExist are the pool's; and the HITs a guard (`coverage
//!   --fix`, the watch's) moved under the pool's requirement (`moved`),
//!   written before each move: theirs are not.

use std::collections::HashMap;

use crate::ids::{HitId, HitTypeId, QualificationTypeId};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use time::{Duration, OffsetDateTime};

use super::heartbeat::Heartbeat;
use super::{
    corrupt, get_s, get_time, n, parse_stamp, s, sdk_error, stamp, Item, Ledger, LedgerError,
    LedgerErrorKind, CUSTOMER_ID, EVENT_DOC_ID, HIT_ID, HIT_TYPE, PK, SK, SOURCE_ACCOUNT,
};

const CONFIG_PK: &str = "CONFIG";
const OWN_CUSTOMER_SK: &str = "OWN_CUSTOMER";
const LEARNED_AT: &str = "learned_at";
const WATCH_SK: &str = "WATCH";
const RAN_AT: &str = "ran_at";
const COUNTS: &str = "counts";
const UNGUARDED: &str = "unguarded";
const TITLE: &str = "title";
/// The watch's record lists at most this many unguarded HITs (the count is whole).
pub const WATCH_RUN_LISTED: usize = 100;
const WATCH_TEST_EVENT_SK: &str = "WATCH_TEST_EVENT";
const SENT_AT: &str = "sent_at";
const LISTS_SK: &str = "LISTS";
const CARRIED: &str = "carried";
const MOVED: &str = "moved";
const MTURK_RATE_SK: &str = "MTURK_RATE";
/// An instance's attribute in the `MTURK_RATE` item: this prefix and its id.
const RATE_OF: &str = "rate_of_";
const RATE: &str = "rate";
const AT: &str = "at";

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

/// What the `LISTS` item holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lists {
    /// Earlier exclusion qualifications carried into the pool, sorted.
    pub carried: Vec<QualificationTypeId>,
    /// HITs a guard moved under the pool's requirement.
    pub moved: std::collections::BTreeSet<HitId>,
}

/// A live HIT without any DoesNotExist requirement: it admits workers the
/// lab excluded. As the watch saw it, and as `status` and `report` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnguardedHit {
    pub hit_id: HitId,
    pub hit_type_id: HitTypeId,
    pub title: Option<String>,
}

/// What the watch's last run found (its one write of a run that found nothing new).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WatchRun {
    pub ran_at: Option<OffsetDateTime>,
    pub counts: WatchCounts,
    /// The live unguarded HITs, at most [`WATCH_RUN_LISTED`] of them.
    pub unguarded: Vec<UnguardedHit>,
}

/// What a watch run counted. Stored as a map under these names; a count a
/// record lacks (written by an older version) reads as 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WatchCounts {
    /// HITs listed, and of them: the pool's, another list's, unguarded.
    pub hits: u64,
    pub ours: u64,
    pub other_list: u64,
    pub unguarded: u64,
    /// Unguarded and offered to workers now.
    pub live_unguarded: u64,
    pub odd_requirements: u64,
    pub hit_types_subscribed: u64,
    pub submissions_backfilled: u64,
    pub backfill_left: u64,
    /// Submissions the backfills finished by the run left out as the
    /// lab's history (each HIT type's count is on its subscription).
    pub history_left_out: u64,
    pub errors: u64,
}

impl WatchCounts {
    /// Each count with its name in the ledger.
    fn named(&self) -> [(&'static str, u64); 11] {
        [
            ("hits", self.hits),
            ("ours", self.ours),
            ("other_list", self.other_list),
            ("unguarded", self.unguarded),
            ("live_unguarded", self.live_unguarded),
            ("odd_requirements", self.odd_requirements),
            ("hit_types_subscribed", self.hit_types_subscribed),
            ("submissions_backfilled", self.submissions_backfilled),
            ("backfill_left", self.backfill_left),
            ("history_left_out", self.history_left_out),
            ("errors", self.errors),
        ]
    }

    fn read(m: &HashMap<String, AttributeValue>) -> WatchCounts {
        let get = |name: &str| match m.get(name) {
            Some(AttributeValue::N(x)) => x.parse().unwrap_or(0),
            _ => 0,
        };
        WatchCounts {
            hits: get("hits"),
            ours: get("ours"),
            other_list: get("other_list"),
            unguarded: get("unguarded"),
            live_unguarded: get("live_unguarded"),
            odd_requirements: get("odd_requirements"),
            hit_types_subscribed: get("hit_types_subscribed"),
            submissions_backfilled: get("submissions_backfilled"),
            backfill_left: get("backfill_left"),
            history_left_out: get("history_left_out"),
            errors: get("errors"),
        }
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

impl Ledger {
    /// One item of the `CONFIG` partition, if it exists.
    async fn config_item(
        &self,
        operation: &'static str,
        sk: &str,
        consistent: bool,
    ) -> Result<Option<Item>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(CONFIG_PK))
            .key(SK, s(sk))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| sdk_error(operation, e))?;
        Ok(out.item)
    }

    /// When the watch last asked MTurk for a test event, if it ever did.
    pub async fn watch_test_event(&self) -> Result<Option<OffsetDateTime>, LedgerError> {
        const OP: &str = "GetItem(watch test event)";
        let item = self.config_item(OP, WATCH_TEST_EVENT_SK, true).await?;
        match item {
            Some(item) => get_time(OP, &item, SENT_AT),
            None => Ok(None),
        }
    }

    /// Notes that the watch asked MTurk for a test event at `sent_at`.
    pub async fn record_watch_test_event(
        &self,
        sent_at: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        let item: Item = HashMap::from([
            (PK.to_owned(), s(CONFIG_PK)),
            (SK.to_owned(), s(WATCH_TEST_EVENT_SK)),
            (SENT_AT.to_owned(), s(stamp(sent_at))),
        ]);
        self.put("PutItem(watch test event)", item).await
    }

    /// The earlier exclusion qualifications the lab carried into the pool,
    /// and the HITs guards moved under the pool's requirement.
    pub async fn lists(&self) -> Result<Lists, LedgerError> {
        const OP: &str = "GetItem(lists)";
        let item = self.config_item(OP, LISTS_SK, true).await?;
        let set = |name: &str| match item.as_ref().and_then(|i| i.get(name)) {
            Some(AttributeValue::Ss(ids)) => ids.clone(),
            _ => Vec::new(),
        };
        let mut carried = set(CARRIED)
            .iter()
            .map(|q| {
                QualificationTypeId::parse(q)
                    .map_err(|e| corrupt(OP, format!("carried list {q:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        carried.sort();
        let moved = set(MOVED)
            .iter()
            .map(|h| HitId::parse(h).map_err(|e| corrupt(OP, format!("moved HIT {h:?}: {e}"))))
            .collect::<Result<_, _>>()?;
        Ok(Lists { carried, moved })
    }

    /// Adds an earlier exclusion qualification to the lists carried into
    /// the pool (idempotent: a set).
    pub async fn record_carried_list(&self, q: &QualificationTypeId) -> Result<(), LedgerError> {
        self.add_to_lists(CARRIED, vec![q.to_string()]).await
    }

    /// Notes HITs a guard is about to move under the pool's requirement,
    /// before it moves them: a HIT listed in its new HIT type is then
    /// always known as moved, whatever fails after the move.
    pub async fn record_moved_hits(&self, hits: &[HitId]) -> Result<(), LedgerError> {
        if hits.is_empty() {
            return Ok(());
        }
        self.add_to_lists(MOVED, hits.iter().map(ToString::to_string).collect())
            .await
    }

    async fn add_to_lists(&self, set: &str, values: Vec<String>) -> Result<(), LedgerError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(CONFIG_PK))
            .key(SK, s(LISTS_SK))
            .update_expression("ADD #set :values")
            .expression_attribute_names("#set", set)
            .expression_attribute_values(":values", AttributeValue::Ss(values))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem(lists)", e))?;
        Ok(())
    }

    /// The lab's own CustomerId, if `subscribe` has learned it. One strongly
    /// consistent GetItem: the handler reads it once per cold start and
    /// caches it.
    pub async fn own_customer(&self) -> Result<Option<OwnCustomer>, LedgerError> {
        const OP: &str = "GetItem(own customer)";
        let item = self.config_item(OP, OWN_CUSTOMER_SK, true).await?;
        let Some(item) = item else {
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
        let item = self.config_item(OP, MTURK_RATE_SK, false).await?;
        let entries: Vec<(f64, OffsetDateTime)> = item
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

    /// Replaces the record of the watch's last run: its one write when it
    /// finds nothing new.
    pub async fn record_watch_run(&self, run: &WatchRun) -> Result<(), LedgerError> {
        let counts = run
            .counts
            .named()
            .into_iter()
            .map(|(name, v)| (name.to_owned(), n(v)))
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
        let item = self.config_item(OP, WATCH_SK, false).await?;
        let Some(item) = item else {
            return Ok(None);
        };
        let counts = match item.get(COUNTS) {
            Some(AttributeValue::M(m)) => WatchCounts::read(m),
            _ => WatchCounts::default(),
        };
        let unguarded = match item.get(UNGUARDED) {
            Some(AttributeValue::L(list)) => list
                .iter()
                .filter_map(|v| match v {
                    // One the ledger cannot read as ids is left out, as one
                    // missing them always was.
                    AttributeValue::M(m) => Some(UnguardedHit {
                        hit_id: HitId::parse(&get_s(m, HIT_ID)?).ok()?,
                        hit_type_id: HitTypeId::parse(&get_s(m, HIT_TYPE)?).ok()?,
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
}
