//! The watch: every few minutes (the `exclusion-watch` Lambda, on a
//! schedule), make sure no HIT of the lab slips past the pipeline.
//!
//! One run:
//! 1. lists the lab's HITs, every page, through the one MTurk limiter;
//! 2. sorts each by its requirements ([`coverage`]): ours, another list's,
//!    unguarded; with `guard_unguarded` it first adds the pool's requirement
//!    to live unguarded HITs ([`coverage::fix`]);
//! 3. subscribes the HIT types of "ours" HITs (and of unguarded ones with
//!    `cover_unguarded`) that the ledger has no record of, with the same
//!    call and event types as `subscribe`, recorded as the watch's with
//!    their backfill due. A HIT type the lab unsubscribed has a record
//!    (inactive): it is never subscribed again;
//! 4. backfills each subscription whose backfill is due: every submitted,
//!    approved or rejected assignment of its HITs that is the pool's goes
//!    through the one exclusion path (silent grants, a release stands,
//!    exclusion wins, a duplicate costs no second grant). Submissions from
//!    before the pool's start to HITs the pool's lists did not guard are
//!    the lab's history ([`history`]): left out, and counted on the HIT
//!    type's subscription for `status`, the report and `adopt`. "Backfill
//!    done" is written only once all of a HIT type's assignments are
//!    settled, so a run stopped by an outage or its deadline leaves the rest
//!    due for the next run;
//! 5. until the pool knows the lab's CustomerId, proves the notification
//!    path as `subscribe` does, without waiting: it asks MTurk for a test
//!    event (again an hour later if none came through) and, on a later run,
//!    learns the CustomerId from the heartbeat the handler recorded, so the
//!    handler can tell other requesters' documents from the lab's even if
//!    nobody ever runs `subscribe`;
//! 6. writes its one heartbeat (what it counted, the live unguarded HITs).
//!
//! A run that finds nothing new makes only the ListHITs calls, one
//! `DescribeTable` (the pool's start), three ledger reads (the
//! subscriptions, the pool's lists, its CustomerId), one read per open HIT
//! (is it known to the accept-time check?) and the heartbeat write.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::config::{ConfigError, Env};
use crate::exclusion::Releases;
use crate::ids::HitTypeId;
use crate::ledger::{
    HistoryLeftOut, SubscribedBy, Subscription, UnguardedHit, WatchCounts, WatchRun,
};
use crate::metrics::{Document, Unit};
use crate::mturk::{counting_calls, retrying_throttles_until, Hit};
use crate::ops::backfill;
use crate::ops::backfill::engine::{self, Gathered, Listed, NotStarted};
use crate::ops::coverage::{self, Class, Counts, PoolLists, Sorted};
use crate::ops::{history, subscribe, Lab, Quiet};

/// What a run is told (the function's environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `QUEUE_URL`: where subscribed HIT types notify (the stack's queue).
    pub queue_url: String,
    /// `COVER_UNGUARDED_HITS` (default true): also subscribe the HIT types
    /// of HITs with no DoesNotExist requirement.
    pub cover_unguarded: bool,
    /// `GUARD_UNGUARDED_HITS` (default false): add the pool's requirement to
    /// live unguarded HITs (CreateHITType + UpdateHITTypeOfHIT).
    pub guard_unguarded: bool,
    /// Workers backfilled at once (MTurk calls stay within the limiter).
    pub concurrency: usize,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        let queue_url = env.get("QUEUE_URL").ok_or(ConfigError {
            variable: "QUEUE_URL",
            problem: "is not set: the watch subscribes HIT types to this queue".into(),
        })?;
        Ok(Settings {
            queue_url,
            cover_unguarded: env.flag("COVER_UNGUARDED_HITS", true)?,
            guard_unguarded: env.flag("GUARD_UNGUARDED_HITS", false)?,
            concurrency: 4,
        })
    }
}

/// What one run did and found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Every HIT listed, by class (live unguarded after any guarding).
    pub counts: Counts,
    pub live_unguarded: Vec<UnguardedHit>,
    /// HIT types this run pointed at the queue.
    pub hit_types_subscribed: Vec<String>,
    /// HIT types left alone because the lab unsubscribed them.
    pub left_unsubscribed: Vec<String>,
    /// HIT types of unguarded HITs not subscribed (CoverUnguardedHits=false).
    pub unguarded_not_covered: Vec<String>,
    /// HIT types whose backfill this run finished.
    pub backfilled_hit_types: Vec<String>,
    /// HIT types whose backfill is still due (stopped, failed, or marked due
    /// again while it ran): the next run goes on.
    pub backfill_left: Vec<String>,
    /// Submissions newly recorded by backfilling (not ones the ledger had).
    pub submissions_backfilled: usize,
    /// Of those, workers granted the qualification just now.
    pub newly_excluded: usize,
    /// Of those, kept released (submitted before the worker's release).
    pub kept_released: usize,
    /// What the backfills this run finished left out as the lab's history,
    /// by HIT type (only HIT types with some).
    pub history_left_out: Vec<HistoryLine>,
    /// What guarding unguarded HITs came to (GuardUnguardedHits=true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guarded: Option<coverage::FixReport>,
    pub errors: Vec<String>,
    /// The run stopped before its deadline with work left.
    pub stopped_at_deadline: bool,
    /// MTurk calls sent, throttled retries included.
    pub mturk_calls: u64,
    /// The run asked MTurk for a test event (the pool has no CustomerId yet).
    pub test_event_sent: bool,
    /// The run learned the lab's CustomerId from its earlier test event.
    pub customer_id_learned: bool,
}

impl Report {
    /// The run's one EMF line: namespace and `Pool` dimension as the other
    /// functions', counts only (no ids).
    pub fn emf_lines(&self, pool: &str, timestamp_ms: u64) -> Vec<String> {
        Document::new(timestamp_ms)
            .dimension("Pool", pool)
            .group(&["Pool"])
            .value(
                "UnguardedHits",
                Unit::Count,
                self.counts.live_unguarded as f64,
            )
            .value(
                "HitTypesSubscribed",
                Unit::Count,
                self.hit_types_subscribed.len() as f64,
            )
            .value(
                "SubmissionsBackfilled",
                Unit::Count,
                self.submissions_backfilled as f64,
            )
            .value("WatchErrors", Unit::Count, self.errors.len() as f64)
            .lines()
    }
}

/// One HIT type's history left out by a run.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryLine {
    pub hit_type_id: HitTypeId,
    #[serde(flatten)]
    pub left_out: HistoryLeftOut,
}

/// One run, which starts no work after `deadline` (give the caller's
/// margin before the Lambda's own). Never fails: what went wrong is in
/// `errors`, and what is left is left for the next run.
pub async fn run(lab: &Lab, settings: &Settings, deadline: Instant) -> Report {
    let (mut report, calls) = counting_calls(retrying_throttles_until(
        deadline,
        run_once(lab, settings, deadline),
    ))
    .await;
    report.mturk_calls = calls.sent;
    report
}

fn unguarded_lines(sorted: &[(Hit, Sorted)]) -> Vec<UnguardedHit> {
    sorted
        .iter()
        .filter(|(h, s)| s.class.admits_excluded() && h.status.is_offered())
        .map(|(h, _)| UnguardedHit {
            hit_id: h.hit_id.clone(),
            title: h.title.clone(),
            hit_type_id: h.hit_type_id.clone(),
        })
        .collect()
}

async fn run_once(lab: &Lab, settings: &Settings, deadline: Instant) -> Report {
    let mut report = Report::default();
    // Read before the HITs are listed: a backfill goes through the HITs
    // this run listed, so one marked due after that (a HIT moved into its
    // type by `coverage --fix`) must not record itself done. Each backfill's
    // generation is checked against this read, or against this run's own
    // writes (its subscriptions and guard).
    let Some(subscriptions) = read_subscriptions(lab, &mut report).await else {
        return report;
    };
    let mut generations: Generations = subscriptions
        .iter()
        .map(|(t, s)| (t.clone(), s.due_generation))
        .collect();
    let hits = match lab.mturk.hits().await {
        Ok(hits) => hits,
        Err(e) => {
            report.errors.push(format!("listing the lab's HITs: {e}"));
            return report;
        }
    };
    // The accept-time check answers only for the lab's own HITs: these are
    // (ListHITs lists no other requester's), so it need not ask MTurk.
    if let Err(e) = lab
        .ledger
        .record_listed_hits(&hits, OffsetDateTime::now_utc())
        .await
    {
        report
            .errors
            .push(format!("remembering the listed HITs for the check: {e}"));
    }
    // Read after the listing: a guard records a HIT as moved before it
    // moves it, so every HIT listed in its new HIT type is known as moved.
    let Some((lists, start)) = read_pool(lab, &mut report).await else {
        return report;
    };
    let sorted = coverage::sort_hits(hits, &lists).0;
    let Some((sorted, subscriptions, lists)) = guard_and_sort(
        lab,
        settings,
        Read {
            sorted,
            subscriptions,
            lists,
        },
        &mut generations,
        &mut report,
    )
    .await
    else {
        return report;
    };
    let cover = Cover {
        lab,
        settings,
        deadline,
        start,
        lists: &lists,
    };
    if let Some(due) = cover
        .subscribe_new(&sorted, &subscriptions, &mut generations, &mut report)
        .await
    {
        cover
            .backfill_due(&sorted, &due, &subscriptions, &generations, &mut report)
            .await;
    }
    prove_path(lab, settings, &mut report).await;
    record_run(lab, report).await
}

/// What a run read before it covers: the HITs sorted, the subscriptions,
/// the pool's lists.
struct Read {
    sorted: Vec<(Hit, Sorted)>,
    subscriptions: HashMap<HitTypeId, Subscription>,
    lists: PoolLists,
}

/// With `GuardUnguardedHits`, guards the live unguarded HITs and reads again
/// what the guard changed (subscriptions, moved HITs); then counts the HITs
/// as sorted last. `None` when the run must stop (noted in the report).
async fn guard_and_sort(
    lab: &Lab,
    settings: &Settings,
    read: Read,
    generations: &mut Generations,
    report: &mut Report,
) -> Option<(
    Vec<(Hit, Sorted)>,
    HashMap<HitTypeId, Subscription>,
    PoolLists,
)> {
    let Read {
        mut sorted,
        mut subscriptions,
        mut lists,
    } = read;
    let live = sorted
        .iter()
        .any(|(h, s)| s.class.admits_excluded() && h.status.is_offered());
    let mut stop = None;
    if settings.guard_unguarded && live {
        let guarded = guard(lab, settings, &lists, &mut sorted, report).await;
        if let Some(fixed) = &report.guarded {
            own_generations(generations, fixed);
            // Read again: the guard subscribed, marked and moved.
            subscriptions = read_subscriptions(lab, report).await?;
            lists = read_pool(lab, report).await?.0;
        }
        stop = guarded.err();
    }
    // What moved is sorted again: it now requires the pool's qualification.
    let hits = sorted.into_iter().map(|(h, _)| h).collect();
    let (sorted, counts) = coverage::sort_hits(hits, &lists);
    report.counts = counts;
    report.live_unguarded = unguarded_lines(&sorted);
    if let Some(e) = stop {
        report.errors.push(e);
        return None;
    }
    Some((sorted, subscriptions, lists))
}

/// Each HIT type's backfill generation as this run knows it: read before
/// the HITs were listed, or written by the run itself.
type Generations = HashMap<HitTypeId, Option<u64>>;

/// What one run covers with: the lab, the function's settings, the time
/// after which it starts no work, and the pool's start.
struct Cover<'a> {
    lab: &'a Lab,
    settings: &'a Settings,
    deadline: Instant,
    start: OffsetDateTime,
    lists: &'a PoolLists,
}

impl Cover<'_> {
    /// Subscribes the HIT types the ledger has no record of, in the order
    /// MTurk listed their HITs, and returns every HIT type whose backfill is
    /// due; `None` when a subscription could not be recorded (the run stops).
    async fn subscribe_new(
        &self,
        sorted: &[(Hit, Sorted)],
        subscriptions: &HashMap<HitTypeId, Subscription>,
        generations: &mut Generations,
        report: &mut Report,
    ) -> Option<Vec<HitTypeId>> {
        let mut seen = HashSet::new();
        let mut due: Vec<HitTypeId> = Vec::new();
        for (hit, s) in sorted {
            let t = &hit.hit_type_id;
            if !seen.insert(t.clone()) {
                continue;
            }
            match s.class {
                Class::OtherList => continue,
                Class::Unguarded if !self.settings.cover_unguarded => {
                    report.unguarded_not_covered.push(t.to_string());
                    continue;
                }
                // An earlier list's HITs are the lab's: covered as ours.
                Class::Ours | Class::Carried | Class::Unguarded => {}
            }
            match subscriptions.get(t) {
                // The lab's `unsubscribe` stands.
                Some(sub) if !sub.active => report.left_unsubscribed.push(t.to_string()),
                Some(sub) if sub.backfill_due => due.push(t.clone()),
                Some(_) => {}
                None if Instant::now() >= self.deadline => {
                    report.stopped_at_deadline = true;
                    break;
                }
                None => {
                    if !self.subscribe(t, generations, &mut due, report).await {
                        return None;
                    }
                }
            }
        }
        // Backfills still due for HIT types with no HIT listed any more (or
        // not covered now): nothing MTurk can list is left of them but their record.
        for sub in subscriptions.values() {
            if sub.active && sub.backfill_due && !seen.contains(&sub.hit_type_id) {
                due.push(sub.hit_type_id.clone());
            }
        }
        Some(due)
    }

    /// Subscribes one HIT type nobody subscribed, its backfill due; false
    /// when MTurk took it but the ledger did not record it.
    async fn subscribe(
        &self,
        t: &HitTypeId,
        generations: &mut Generations,
        due: &mut Vec<HitTypeId>,
        report: &mut Report,
    ) -> bool {
        let lab = self.lab;
        match subscribe::subscribe_covering(
            &lab.mturk,
            &lab.ledger,
            t,
            &self.settings.queue_url,
            SubscribedBy::Watch,
        )
        .await
        {
            Ok(outcome) if outcome.subscribed => {
                if let Some(generation) = outcome.due_generation {
                    generations.insert(t.clone(), Some(generation));
                }
                report.hit_types_subscribed.push(t.to_string());
                due.push(t.clone());
                true
            }
            Ok(outcome) => {
                report.errors.push(format!(
                    "subscribing HIT type {t}: {}",
                    outcome.error.unwrap_or_default()
                ));
                true
            }
            Err(e) => {
                // Subscribed on MTurk but not recorded: the next run finds
                // no record and subscribes (harmlessly) again.
                report.errors.push(format!("recording HIT type {t}: {e}"));
                false
            }
        }
    }

    /// Backfills each HIT type in `due`, and records as done each one all
    /// of whose submissions are settled, unless marked due again since.
    async fn backfill_due(
        &self,
        sorted: &[(Hit, Sorted)],
        due: &[HitTypeId],
        subscriptions: &HashMap<HitTypeId, Subscription>,
        generations: &Generations,
        report: &mut Report,
    ) {
        let mut hits_of: HashMap<&HitTypeId, Vec<(&Hit, Sorted)>> = HashMap::new();
        for (hit, s) in sorted {
            hits_of.entry(&hit.hit_type_id).or_default().push((hit, *s));
        }
        for (i, t) in due.iter().enumerate() {
            if Instant::now() >= self.deadline {
                report.stopped_at_deadline = true;
                report
                    .backfill_left
                    .extend(due[i..].iter().map(ToString::to_string));
                return;
            }
            let hits = hits_of.get(t).cloned().unwrap_or_default();
            let Some(left_out) = self
                .backfill_type(t, &hits, subscriptions.get(t), report)
                .await
            else {
                report.backfill_left.push(t.to_string());
                continue;
            };
            let generation = generations.get(t).copied().flatten();
            match self
                .lab
                .ledger
                .record_backfilled(t, generation, left_out, OffsetDateTime::now_utc())
                .await
            {
                Ok(true) => {
                    report.backfilled_hit_types.push(t.to_string());
                    if !left_out.is_empty() {
                        report.history_left_out.push(HistoryLine {
                            hit_type_id: t.clone(),
                            left_out,
                        });
                    }
                }
                // Marked due again since this run listed its HITs.
                Ok(false) => report.backfill_left.push(t.to_string()),
                Err(e) => {
                    report
                        .errors
                        .push(format!("recording HIT type {t}'s backfill as done: {e}"));
                    report
                        .backfill_left
                        .extend(due[i..].iter().map(ToString::to_string));
                    return;
                }
            }
        }
    }

    /// Excludes the workers of one HIT type's HITs through the backfill
    /// engine, the lab's history left out. What was left out when every
    /// other assignment MTurk listed is settled (recorded, excluded or kept
    /// released), so the backfill may be recorded as done; else `None`.
    async fn backfill_type(
        &self,
        hit_type: &HitTypeId,
        hits: &[(&Hit, Sorted)],
        subscription: Option<&Subscription>,
        report: &mut Report,
    ) -> Option<HistoryLeftOut> {
        let lab = self.lab;
        let mut gathered = Gathered::new();
        let mut listed = HashMap::new();
        let mut left_out = HistoryLeftOut::default();
        for (hit, sorted) in hits {
            if Instant::now() >= self.deadline {
                report.stopped_at_deadline = true;
                return None;
            }
            match engine::submissions_of(&lab.mturk, hit, |_| {}).await {
                Ok(Listed::Assignments(assignments)) => {
                    let pools = history::history_is_pools(hit, *sorted, subscription, self.lists);
                    let (pool, lab_history) = history::split(assignments, pools, self.start);
                    left_out.add(history::left_out(&lab_history));
                    engine::add_listed(&mut gathered, &mut listed, pool);
                }
                Ok(Listed::Gone) => {}
                Err(e) => {
                    report.errors.push(format!(
                        "listing the assignments of HIT {} (HIT type {hit_type}): {e}",
                        hit.hit_id
                    ));
                    return None;
                }
            }
        }
        let options = backfill::Options {
            dry_run: false,
            releases: Releases::Respect,
            concurrency: self.settings.concurrency,
            deadline: Some(self.deadline),
        };
        let results = engine::exclude_all(lab, gathered, options, &Quiet).await;
        let tally = engine::tally(&results);
        report.submissions_backfilled += tally.recorded();
        report.newly_excluded += tally.excluded;
        report.kept_released += tally.kept_released;
        let mut done = true;
        let mut failures: BTreeMap<String, usize> = BTreeMap::new();
        for r in results {
            if r.not_started == Some(NotStarted::Deadline) {
                // Not a failure: the next run goes on.
                report.stopped_at_deadline = true;
                done = false;
                continue;
            }
            if !r.failures.is_empty() {
                done = false;
                for f in r.failures {
                    // Worker ids stay out of the function's logs.
                    let reason = f.reason.replace(r.worker.as_str(), "<worker>");
                    *failures.entry(reason).or_default() += 1;
                }
            }
        }
        for (reason, n) in failures {
            report.errors.push(format!(
                "backfilling HIT type {hit_type}: {n} submission(s) not settled: {reason}"
            ));
        }
        done.then_some(left_out)
    }
}

/// Takes the generations a guard wrote as current: a HIT type it subscribed
/// (recorded with the first generation), and one it marked due again, when
/// no one else marked it since this run read its generation (else the read
/// one stays, and the backfill is left due for the next run).
fn own_generations(generations: &mut Generations, fixed: &coverage::FixReport) {
    for s in &fixed.subscribed {
        if let Some(generation) = s.due_generation {
            generations.insert(s.hit_type_id.clone(), Some(generation));
        }
    }
    for m in &fixed.marked_due {
        let read = generations
            .get(&m.hit_type_id)
            .copied()
            .flatten()
            .unwrap_or(0);
        if m.due_generation == read + 1 {
            generations.insert(m.hit_type_id.clone(), Some(m.due_generation));
        }
    }
}

/// A test event the watch asked for and never saw is asked for again after this.
const TEST_EVENT_AGAIN_AFTER: time::Duration = time::Duration::hours(1);

/// Until the pool knows the lab's CustomerId: learns it from the test event
/// an earlier run asked for, or asks for one. One ledger read once it is known.
async fn prove_path(lab: &Lab, settings: &Settings, report: &mut Report) {
    let now = OffsetDateTime::now_utc();
    let known = async {
        if lab.ledger.own_customer().await?.is_some() {
            return Ok(true);
        }
        let Some(sent_at) = lab.ledger.watch_test_event().await? else {
            return Ok(false);
        };
        let learned =
            subscribe::learn_from_test_event(&lab.ledger, &settings.queue_url, sent_at, now)
                .await?;
        report.customer_id_learned = learned.is_some();
        // Still on its way: not asked for again yet.
        Ok(learned.is_some() || now - sent_at < TEST_EVENT_AGAIN_AFTER)
    };
    match known.await {
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => {
            let e: crate::ledger::LedgerError = e;
            report
                .errors
                .push(format!("proving the notification path: {e}"));
            return;
        }
    }
    if let Err(e) = lab.mturk.send_test_event(&settings.queue_url).await {
        report
            .errors
            .push(format!("asking MTurk for a test event: {e}"));
        return;
    }
    match lab.ledger.record_watch_test_event(now).await {
        Ok(()) => report.test_event_sent = true,
        Err(e) => report
            .errors
            .push(format!("recording the test event asked for: {e}")),
    }
}

/// The lists that guard for the pool and the pool's start; `None` (noted in
/// the report) if they cannot be read: without the start no history can be
/// told from the pool's, so the run stops.
async fn read_pool(lab: &Lab, report: &mut Report) -> Option<(PoolLists, OffsetDateTime)> {
    let read = async {
        let lists = PoolLists::read(&lab.ledger, &lab.qualification).await?;
        Ok::<_, crate::ledger::LedgerError>((lists, lab.ledger.pool_start().await?))
    };
    match read.await {
        Ok(pool) => Some(pool),
        Err(e) => {
            report
                .errors
                .push(format!("reading the pool's lists and start: {e}"));
            None
        }
    }
}

/// The ledger's subscriptions by HIT type; `None` (noted in the report)
/// if they cannot be read.
async fn read_subscriptions(
    lab: &Lab,
    report: &mut Report,
) -> Option<HashMap<HitTypeId, Subscription>> {
    match lab.ledger.subscriptions().await {
        Ok(subs) => Some(
            subs.into_iter()
                .map(|s| (s.hit_type_id.clone(), s))
                .collect(),
        ),
        Err(e) => {
            report
                .errors
                .push(format!("reading the subscriptions: {e}"));
            None
        }
    }
}

/// Adds the pool's requirement to the live unguarded HITs (as `coverage
/// --fix` does) and moves each guarded HIT of `sorted` to its new HIT type,
/// for the caller to sort again. The error is the ledger failing.
async fn guard(
    lab: &Lab,
    settings: &Settings,
    lists: &PoolLists,
    sorted: &mut [(Hit, Sorted)],
    report: &mut Report,
) -> Result<(), String> {
    let plan = coverage::plan_fix(sorted.iter().map(|(h, _)| h), lists);
    for c in &plan.cannot {
        report.errors.push(format!(
            "guarding HIT {} (HIT type {}): {}",
            c.hit_id, c.hit_type_id, c.reason
        ));
    }
    if plan.hit_types.is_empty() {
        return Ok(());
    }
    let fixed = coverage::fix(
        &lab.mturk,
        &lab.ledger,
        &lab.qualification,
        &plan,
        &settings.queue_url,
        SubscribedBy::Watch,
    )
    .await
    .map_err(|e| format!("guarding unguarded HITs: {e}"))?;
    for f in &fixed.hits {
        if let Some(e) = &f.error {
            report
                .errors
                .push(format!("guarding HIT {}: {e}", f.hit_id));
        }
        let Some(new_type) = f.new_hit_type_id.as_ref().filter(|_| f.guarded) else {
            continue;
        };
        if let Some((hit, _)) = sorted.iter_mut().find(|(h, _)| h.hit_id == f.hit_id) {
            hit.hit_type_id = new_type.clone();
            hit.requirements
                .push(coverage::pool_requirement(&lab.qualification));
        }
    }
    for s in &fixed.subscribed {
        if s.subscribed {
            report.hit_types_subscribed.push(s.hit_type_id.to_string());
        } else if let Some(e) = &s.error {
            report
                .errors
                .push(format!("subscribing HIT type {}: {e}", s.hit_type_id));
        }
    }
    report.guarded = Some(fixed);
    Ok(())
}

/// Writes the run's record (its heartbeat): what it counted and the live
/// unguarded HITs.
async fn record_run(lab: &Lab, mut report: Report) -> Report {
    let run = WatchRun {
        ran_at: Some(OffsetDateTime::now_utc()),
        counts: WatchCounts {
            hits: report.counts.hits as u64,
            ours: report.counts.ours as u64,
            other_list: report.counts.other_list as u64,
            unguarded: report.counts.unguarded as u64,
            live_unguarded: report.counts.live_unguarded as u64,
            odd_requirements: report.counts.odd_requirements as u64,
            hit_types_subscribed: report.hit_types_subscribed.len() as u64,
            submissions_backfilled: report.submissions_backfilled as u64,
            backfill_left: report.backfill_left.len() as u64,
            history_left_out: report
                .history_left_out
                .iter()
                .map(|l| l.left_out.submissions)
                .sum(),
            errors: report.errors.len() as u64,
        },
        unguarded: report.live_unguarded.clone(),
    };
    if let Err(e) = lab.ledger.record_watch_run(&run).await {
        report.errors.push(format!("recording the run: {e}"));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_need_the_queue_and_default_to_covering_without_guarding() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let missing = Settings::from_lookup(env(&[])).unwrap_err();
        assert_eq!(missing.variable, "QUEUE_URL");
        let s = Settings::from_lookup(env(&[("QUEUE_URL", "https://q")])).unwrap();
        assert!(s.cover_unguarded);
        assert!(!s.guard_unguarded);
        let s = Settings::from_lookup(env(&[
            ("QUEUE_URL", "https://q"),
            ("COVER_UNGUARDED_HITS", "false"),
            ("GUARD_UNGUARDED_HITS", "true"),
        ]))
        .unwrap();
        assert!(!s.cover_unguarded);
        assert!(s.guard_unguarded);
        let bad = Settings::from_lookup(env(&[
            ("QUEUE_URL", "https://q"),
            ("GUARD_UNGUARDED_HITS", "yes"),
        ]))
        .unwrap_err();
        assert_eq!(bad.variable, "GUARD_UNGUARDED_HITS");
    }

    #[test]
    fn one_emf_line_with_the_four_counts_and_no_ids() {
        let report = Report {
            counts: Counts {
                live_unguarded: 2,
                ..Counts::default()
            },
            live_unguarded: vec![UnguardedHit {
                hit_id: crate::ids::HitId::parse("3HITSECRET").unwrap(),
                title: None,
                hit_type_id: HitTypeId::parse("3TYPESECRET").unwrap(),
            }],
            hit_types_subscribed: vec!["3TYPESECRET".into()],
            submissions_backfilled: 7,
            errors: vec!["x".into()],
            ..Report::default()
        };
        let lines = report.emf_lines("lab", 1);
        assert_eq!(lines.len(), 1);
        let doc: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(doc["UnguardedHits"], 2);
        assert_eq!(doc["HitTypesSubscribed"], 1);
        assert_eq!(doc["SubmissionsBackfilled"], 7);
        assert_eq!(doc["WatchErrors"], 1);
        assert_eq!(doc["Pool"], "lab");
        assert!(!lines[0].contains("SECRET"));
    }
}
