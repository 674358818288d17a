//! `report`: one self-contained HTML page about the ledger, for the lab and
//! its IRB file. [`gather`] reads the ledger once ([`Ledger::snapshot`]) and
//! [`aggregate`] turns it into a plain [`Report`]; [`html::render`] draws it
//! (inline CSS and SVG, no script, nothing fetched). Writing the file is the
//! CLI's.
//!
//! Worker ids identify people: a [`Report`] holds none unless
//! [`Options::with_worker_ids`] asks for them, and release notes (text the
//! lab wrote) have every worker id the ledger knows replaced by
//! `[worker id]`, so the page cannot leak one by accident.

pub mod html;

use std::collections::{BTreeMap, HashMap, HashSet};

use time::{Date, Duration, OffsetDateTime};

use crate::ids::QualificationTypeId;
use crate::ledger::{ExclusionState, Ledger, LedgerContents, LedgerError, KEPT_RELEASED_REASON};

/// What a release note shows in place of a worker id.
pub const REDACTED: &str = "[worker id]";
/// At most this many studies get a series of their own; the rest are summed.
pub const MAX_SERIES: usize = 7;
/// Longer ranges are counted per week instead of per day.
const MAX_DAYS: i64 = 92;

/// What the page says about where its data came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The stack (pool) the table belongs to, when the CLI was given one.
    pub stack: Option<String>,
    pub table: String,
    pub qualification: String,
    /// `sandbox` or `production`.
    pub environment: String,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Leave out everything before this time.
    pub since: Option<OffsetDateTime>,
    /// Put worker ids on the page (releases, repeat workers).
    pub with_worker_ids: bool,
    pub now: OffsetDateTime,
}

/// How the charts count time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Day,
    /// Weeks starting on Monday.
    Week,
}

impl Bucket {
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Day => "day",
            Bucket::Week => "week",
        }
    }

    fn start(self, d: Date) -> Date {
        match self {
            Bucket::Day => d,
            Bucket::Week => d - Duration::days(d.weekday().number_days_from_monday() as i64),
        }
    }

    fn step(self) -> Duration {
        match self {
            Bucket::Day => Duration::days(1),
            Bucket::Week => Duration::weeks(1),
        }
    }
}

/// Counts over the report's buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub name: String,
    pub counts: Vec<u64>,
}

impl Series {
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// One study (HIT type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Study {
    /// The HIT type id; `None` for participations recorded without one.
    pub hit_type: Option<String>,
    pub participations: u64,
    pub workers: u64,
    pub first: OffsetDateTime,
    pub last: OffsetDateTime,
}

/// The exposure window: MTurk's submit time to the ledger's `excluded_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    /// Participations measured (learned from a notification, with both times).
    pub measured: u64,
    /// Participations left out: learned another way (backfill, by hand,
    /// reconcile), kept released, or still waiting.
    pub not_measured: u64,
    /// (label, upper bound, count); the last bin has no bound.
    pub bins: Vec<(&'static str, Option<Duration>, u64)>,
    pub p50: Option<Duration>,
    pub p90: Option<Duration>,
    pub p99: Option<Duration>,
    pub max: Option<Duration>,
}

/// What the ledger can show about the accept-time check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Claims still stored, by the day they were made.
    pub claims: Series,
    /// Claims whose time has not run out.
    pub claims_open: u64,
    /// Claims whose time ran out with no word from MTurk about their
    /// assignment: no submission, return or abandon. A worker who simply
    /// ran out of time looks so, and so does a claim a stranger made on a
    /// made-up assignment (docs/security.md); many of them are worth a look.
    pub claims_unnotified: u64,
    pub returned: Series,
    pub abandoned: Series,
    /// Participations by a worker who already had one: repeats that were
    /// not stopped.
    pub repeats: Series,
    pub repeat_workers: u64,
    /// With worker ids only: each repeat worker and their participations.
    pub repeat_list: Vec<(String, u64)>,
}

/// One release of one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub at: OffsetDateTime,
    /// The lab's note, worker ids replaced unless asked for.
    pub reason: Option<String>,
    /// Participations it released.
    pub participations: u64,
    /// Excluded again since.
    pub excluded_again: bool,
    /// With worker ids only.
    pub worker_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Releases {
    pub per_bucket: Series,
    /// Newest first.
    pub list: Vec<Release>,
    /// Participations recorded after their worker's release and submitted
    /// before it (kept released by the rule, not by a release of their own).
    pub kept_released: u64,
}

/// Everything the page shows: no worker id unless asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub source: Source,
    pub generated_at: OffsetDateTime,
    pub since: Option<OffsetDateTime>,
    /// The earliest and latest time of anything counted.
    pub covered: Option<(OffsetDateTime, OffsetDateTime)>,
    pub with_worker_ids: bool,
    pub bucket: Bucket,
    /// The first day of each bucket.
    pub buckets: Vec<Date>,
    pub participations: u64,
    pub workers: u64,
    pub excluded_now: u64,
    /// Workers named by hand or found by `reconcile` (no assignment, no study).
    pub without_study: u64,
    pub studies: Vec<Study>,
    /// Per bucket: the largest studies, then "other studies".
    pub study_series: Vec<Series>,
    pub exposure: Exposure,
    pub check: Check,
    pub releases: Releases,
    /// What the watch last found, and the HIT types it subscribed; `None`
    /// when the watch never ran and subscribed nothing.
    pub coverage: Option<Coverage>,
}

/// Coverage, from the watch's last run and the subscription records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Coverage {
    pub last_run_at: Option<OffsetDateTime>,
    pub live_unguarded: u64,
    /// The live unguarded HITs listed.
    pub unguarded: Vec<crate::ledger::UnguardedHit>,
    /// (HIT type id, when the watch subscribed it, backfill still due).
    pub subscribed_by_watch: Vec<(String, Option<OffsetDateTime>, bool)>,
    /// Each HIT type's history the watch left out (submitted before the
    /// pool's start to HITs its list did not guard), not adopted yet.
    pub history_left_out: Vec<(String, crate::ledger::HistoryLeftOut)>,
}

/// Reads the subscriptions and the watch's last run (two small reads).
pub async fn coverage(ledger: &Ledger) -> Result<Option<Coverage>, LedgerError> {
    let run = ledger.last_watch_run().await?;
    let subscriptions = ledger.subscriptions().await?;
    let history_left_out: Vec<_> = subscriptions
        .iter()
        .filter(|s| !s.history_left_out.is_empty())
        .map(|s| (s.hit_type_id.to_string(), s.history_left_out))
        .collect();
    let mut subscribed_by_watch: Vec<_> = subscriptions
        .into_iter()
        .filter(|s| s.subscribed_by == crate::ledger::SubscribedBy::Watch)
        .map(|s| {
            (
                s.hit_type_id.to_string(),
                s.subscribed_at,
                s.active && s.backfill_due,
            )
        })
        .collect();
    if run.is_none() && subscribed_by_watch.is_empty() {
        return Ok(None);
    }
    subscribed_by_watch.sort_by_key(|(_, at, _)| std::cmp::Reverse(*at));
    let run = run.unwrap_or_default();
    Ok(Some(Coverage {
        last_run_at: run.ran_at,
        live_unguarded: run.counts.live_unguarded,
        unguarded: run.unguarded,
        subscribed_by_watch,
        history_left_out,
    }))
}

/// Reads the ledger once and aggregates it.
pub async fn gather(
    ledger: &Ledger,
    qualification: &QualificationTypeId,
    source: Source,
    options: &Options,
) -> Result<Report, LedgerError> {
    let snapshot = ledger.snapshot(qualification).await?;
    let mut report = aggregate(&snapshot, source, options);
    report.coverage = coverage(ledger).await?;
    Ok(report)
}

/// The nearest-rank `p`th percentile (0–100) of sorted values.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

const EXPOSURE_BINS: [(&str, Option<Duration>); 13] = [
    ("< 1 s", Some(Duration::seconds(1))),
    ("1–2 s", Some(Duration::seconds(2))),
    ("2–5 s", Some(Duration::seconds(5))),
    ("5–10 s", Some(Duration::seconds(10))),
    ("10–30 s", Some(Duration::seconds(30))),
    ("30–60 s", Some(Duration::minutes(1))),
    ("1–2 min", Some(Duration::minutes(2))),
    ("2–5 min", Some(Duration::minutes(5))),
    ("5–15 min", Some(Duration::minutes(15))),
    ("15–60 min", Some(Duration::hours(1))),
    ("1–6 h", Some(Duration::hours(6))),
    ("6–24 h", Some(Duration::days(1))),
    ("≥ 1 day", None),
];

fn exposure_of(windows: Vec<Duration>, not_measured: u64) -> Exposure {
    let mut sorted = windows;
    sorted.sort();
    let mut bins: Vec<(&'static str, Option<Duration>, u64)> =
        EXPOSURE_BINS.iter().map(|(l, b)| (*l, *b, 0)).collect();
    for w in &sorted {
        let i = bins
            .iter()
            .position(|(_, bound, _)| bound.is_none_or(|b| *w < b))
            .unwrap_or(bins.len() - 1);
        bins[i].2 += 1;
    }
    Exposure {
        measured: sorted.len() as u64,
        not_measured,
        bins,
        p50: percentile(&sorted, 50.0),
        p90: percentile(&sorted, 90.0),
        p99: percentile(&sorted, 99.0),
        max: sorted.last().copied(),
    }
}

/// Replaces every known worker id in `text` (longest first, so that one id
/// inside another is not left half shown).
fn redact(text: &str, ids: &[&str]) -> String {
    let mut out = text.to_owned();
    for id in ids {
        if out.contains(id) {
            out = out.replace(id, REDACTED);
        }
    }
    out
}

/// Turns a ledger snapshot into the report's numbers. Pure: the tests feed
/// it snapshots directly.
pub fn aggregate(snapshot: &LedgerContents, source: Source, options: &Options) -> Report {
    let since = options.since;
    let keep = |t: OffsetDateTime| since.is_none_or(|s| t >= s);
    let with_ids = options.with_worker_ids;
    // When each participation happened: MTurk's submit time, else when the
    // ledger learned of it.
    let participations: Vec<Dated> = snapshot
        .participations
        .iter()
        .map(|p| (p.submit_time.unwrap_or(p.recorded_at), p))
        .filter(|(t, _)| keep(*t))
        .collect();
    let studied: Vec<Dated> = participations
        .iter()
        .filter(|(_, p)| p.assignment_id.is_some())
        .copied()
        .collect();
    let (release_list, kept_released) = releases_of(snapshot, &keep, with_ids);
    let claims: Vec<&crate::ledger::StoredClaim> = snapshot
        .claims
        .iter()
        .filter(|c| keep(c.claimed_at))
        .collect();
    let ends: Vec<(OffsetDateTime, &str)> = snapshot
        .claim_ends
        .iter()
        .filter_map(|e| Some((e.ended_at?, e.ended_by.as_str())))
        .filter(|(t, _)| keep(*t))
        .collect();
    // The time covered, and the buckets over it.
    let times = participations
        .iter()
        .map(|(t, _)| *t)
        .chain(release_list.iter().map(|r| r.at))
        .chain(claims.iter().map(|c| c.claimed_at))
        .chain(ends.iter().map(|(t, _)| *t));
    let covered = times.fold(None, |acc: Option<(OffsetDateTime, OffsetDateTime)>, t| {
        Some(match acc {
            None => (t, t),
            Some((a, b)) => (a.min(t), b.max(t)),
        })
    });
    let timeline = Timeline::over(covered);
    let (studies, study_series) = studies_of(&studied, &timeline);
    // Exposure: notification-learned participations with both times.
    let windows: Vec<Duration> = studied.iter().filter_map(|(_, p)| p.exposure()).collect();
    let not_measured = (studied.len() - windows.len()) as u64;
    let mut check = check_of(snapshot, &claims, &ends, &timeline, options.now);
    (check.repeats, check.repeat_workers, check.repeat_list) =
        repeats_of(snapshot, &keep, &timeline, with_ids);
    let mut per_bucket = timeline.empty("releases");
    for r in &release_list {
        per_bucket.counts[timeline.index(r.at)] += 1;
    }
    Report {
        source,
        generated_at: options.now,
        since,
        covered,
        with_worker_ids: with_ids,
        participations: studied.len() as u64,
        workers: studied
            .iter()
            .map(|(_, p)| p.worker_id.as_str())
            .collect::<HashSet<_>>()
            .len() as u64,
        excluded_now: snapshot.excluded_now as u64,
        without_study: participations.len() as u64 - studied.len() as u64,
        studies,
        study_series,
        exposure: exposure_of(windows, not_measured),
        check,
        releases: Releases {
            per_bucket,
            list: release_list,
            kept_released,
        },
        coverage: None,
        bucket: timeline.bucket,
        buckets: timeline.buckets,
    }
}

/// A participation with the time it counts at.
type Dated<'a> = (OffsetDateTime, &'a crate::ledger::Participation);

/// The report's buckets (days, or weeks over a long span) over the time covered.
struct Timeline {
    bucket: Bucket,
    buckets: Vec<Date>,
}

impl Timeline {
    fn over(covered: Option<(OffsetDateTime, OffsetDateTime)>) -> Timeline {
        let Some((first, last)) = covered else {
            return Timeline {
                bucket: Bucket::Day,
                buckets: Vec::new(),
            };
        };
        let (first, last) = (utc_date(first), utc_date(last));
        let bucket = if (last - first).whole_days() < MAX_DAYS {
            Bucket::Day
        } else {
            Bucket::Week
        };
        let mut buckets = Vec::new();
        let mut d = bucket.start(first);
        while d <= last {
            buckets.push(d);
            d += bucket.step();
        }
        Timeline { bucket, buckets }
    }

    fn index(&self, t: OffsetDateTime) -> usize {
        let start = self.bucket.start(utc_date(t));
        self.buckets.binary_search(&start).unwrap_or(0)
    }

    fn empty(&self, name: &str) -> Series {
        Series {
            name: name.to_owned(),
            counts: vec![0; self.buckets.len()],
        }
    }
}

fn utc_date(t: OffsetDateTime) -> Date {
    t.to_offset(time::UtcOffset::UTC).date()
}

/// Releases, newest first: one per worker and release time, from the
/// participations it released, completed by the workers' items (a worker
/// released with no participation, or excluded again since, whose
/// participations no longer say so). Also the participations kept released.
fn releases_of(
    snapshot: &LedgerContents,
    keep: &dyn Fn(OffsetDateTime) -> bool,
    with_ids: bool,
) -> (Vec<Release>, u64) {
    let mut known_ids: Vec<&str> = snapshot
        .participations
        .iter()
        .map(|p| p.worker_id.as_str())
        .chain(snapshot.releases.iter().map(|r| r.worker_id.as_str()))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    known_ids.sort_by_key(|id| std::cmp::Reverse(id.len()));
    let note = |text: &str| {
        if with_ids {
            text.to_owned()
        } else {
            redact(text, &known_ids)
        }
    };
    let release = |at, reason: Option<&str>| Release {
        at,
        reason: reason.map(note),
        participations: 0,
        excluded_again: false,
        worker_id: None,
    };
    let mut releases: BTreeMap<(String, OffsetDateTime), Release> = BTreeMap::new();
    let mut kept_released = 0;
    for p in &snapshot.participations {
        let Some(at) = p.released_at else { continue };
        if p.release_reason.as_deref() == Some(KEPT_RELEASED_REASON) {
            if keep(p.submit_time.unwrap_or(p.recorded_at)) {
                kept_released += 1;
            }
            continue;
        }
        releases
            .entry((p.worker_id.as_str().to_owned(), at))
            .or_insert_with(|| release(at, p.release_reason.as_deref()))
            .participations += 1;
    }
    for last in &snapshot.releases {
        releases
            .entry((last.worker_id.as_str().to_owned(), last.released_at))
            .or_insert_with(|| release(last.released_at, last.reason.as_deref()))
            .excluded_again = last.state == ExclusionState::Excluded;
    }
    let mut list: Vec<Release> = releases
        .into_iter()
        .filter(|((_, at), _)| keep(*at))
        .map(|((worker, _), mut r)| {
            if with_ids {
                r.worker_id = Some(worker);
            }
            r
        })
        .collect();
    list.sort_by_key(|r| std::cmp::Reverse(r.at));
    (list, kept_released)
}

/// The studies by HIT type, most participations first, and their series
/// (the smallest folded into one "other studies" series).
fn studies_of(studied: &[Dated], timeline: &Timeline) -> (Vec<Study>, Vec<Series>) {
    struct Acc<'a> {
        count: u64,
        workers: HashSet<&'a str>,
        first: OffsetDateTime,
        last: OffsetDateTime,
        counts: Vec<u64>,
    }
    let mut by_type: HashMap<Option<&str>, Acc> = HashMap::new();
    for (t, p) in studied {
        let a = by_type
            .entry(p.hit_type_id.as_ref().map(|h| h.as_str()))
            .or_insert_with(|| Acc {
                count: 0,
                workers: HashSet::new(),
                first: *t,
                last: *t,
                counts: vec![0; timeline.buckets.len()],
            });
        a.count += 1;
        a.workers.insert(p.worker_id.as_str());
        a.first = a.first.min(*t);
        a.last = a.last.max(*t);
        a.counts[timeline.index(*t)] += 1;
    }
    let mut types: Vec<(Option<&str>, Acc)> = by_type.into_iter().collect();
    types.sort_by(|(a, x), (b, y)| y.count.cmp(&x.count).then(a.cmp(b)));
    let studies = types
        .iter()
        .map(|(t, a)| Study {
            hit_type: t.map(str::to_owned),
            participations: a.count,
            workers: a.workers.len() as u64,
            first: a.first,
            last: a.last,
        })
        .collect();
    let split = if types.len() > MAX_SERIES {
        MAX_SERIES - 1
    } else {
        types.len()
    };
    let mut series: Vec<Series> = types[..split]
        .iter()
        .map(|(t, a)| Series {
            name: t.unwrap_or("(no HIT type recorded)").to_owned(),
            counts: a.counts.clone(),
        })
        .collect();
    if split < types.len() {
        let mut other = timeline.empty(&format!("{} other studies", types.len() - split));
        for (_, a) in &types[split..] {
            for (o, c) in other.counts.iter_mut().zip(&a.counts) {
                *o += c;
            }
        }
        series.push(other);
    }
    (studies, series)
}

/// The accept-time check's claims and their ends; the repeats are filled in
/// by [`repeats_of`].
fn check_of(
    snapshot: &LedgerContents,
    claims: &[&crate::ledger::StoredClaim],
    ends: &[(OffsetDateTime, &str)],
    timeline: &Timeline,
    now: OffsetDateTime,
) -> Check {
    // The assignments MTurk said something about: submitted (a
    // participation), returned or abandoned.
    let heard: HashSet<&str> = snapshot
        .claim_ends
        .iter()
        .map(|e| e.assignment_id.as_str())
        .chain(
            snapshot
                .participations
                .iter()
                .filter_map(|p| p.assignment_id.as_ref().map(|a| a.as_str())),
        )
        .collect();
    let mut claim_series = timeline.empty("claims made (still stored)");
    let mut claims_open = 0;
    let mut claims_unnotified = 0;
    for c in claims {
        claim_series.counts[timeline.index(c.claimed_at)] += 1;
        if c.expires_at > now.unix_timestamp() {
            claims_open += 1;
        } else if !heard.contains(c.assignment_id.as_str()) {
            claims_unnotified += 1;
        }
    }
    let mut returned = timeline.empty("returned");
    let mut abandoned = timeline.empty("abandoned");
    for (t, by) in ends {
        match *by {
            "abandoned" => abandoned.counts[timeline.index(*t)] += 1,
            _ => returned.counts[timeline.index(*t)] += 1,
        }
    }
    Check {
        claims: claim_series,
        claims_open,
        claims_unnotified,
        returned,
        abandoned,
        repeats: timeline.empty(""),
        repeat_workers: 0,
        repeat_list: Vec::new(),
    }
}

/// Repeats: a worker's participations after their first (in any study, over
/// the whole ledger, so a --since does not make a repeat look new); how many
/// workers repeated, and (with worker ids only) who, with their counts.
fn repeats_of(
    snapshot: &LedgerContents,
    keep: &dyn Fn(OffsetDateTime) -> bool,
    timeline: &Timeline,
    with_ids: bool,
) -> (Series, u64, Vec<(String, u64)>) {
    let mut all_studied: Vec<Dated> = snapshot
        .participations
        .iter()
        .filter(|p| p.assignment_id.is_some())
        .map(|p| (p.submit_time.unwrap_or(p.recorded_at), p))
        .collect();
    all_studied.sort_by_key(|(t, p)| (*t, p.assignment_id.clone()));
    let mut seen: HashMap<&str, u64> = HashMap::new();
    let mut repeated: HashSet<&str> = HashSet::new();
    let mut repeats = timeline.empty("participations by a worker who had taken part before");
    for (t, p) in &all_studied {
        let n = seen.entry(p.worker_id.as_str()).or_insert(0);
        *n += 1;
        if *n > 1 && keep(*t) {
            repeats.counts[timeline.index(*t)] += 1;
            repeated.insert(p.worker_id.as_str());
        }
    }
    let mut list: Vec<(String, u64)> = repeated.iter().map(|w| (w.to_string(), seen[w])).collect();
    let workers = list.len() as u64;
    list.sort_by(|(a, x), (b, y)| y.cmp(x).then(a.cmp(b)));
    if !with_ids {
        list.clear();
    }
    (repeats, workers, list)
}

#[cfg(test)]
mod coverage_tests {
    use super::*;

    #[test]
    fn the_page_shows_unguarded_hits_and_what_the_watch_subscribed_escaped() {
        let snapshot = LedgerContents::default();
        let source = Source {
            stack: None,
            table: "ledger".into(),
            qualification: "3Q".into(),
            environment: "sandbox".into(),
        };
        let options = Options {
            since: None,
            with_worker_ids: false,
            now: time::macros::datetime!(2026-03-10 12:00 UTC),
        };
        let mut r = aggregate(&snapshot, source, &options);
        r.coverage = Some(Coverage {
            last_run_at: Some(time::macros::datetime!(2026-03-10 12:00 UTC)),
            live_unguarded: 1,
            unguarded: vec![crate::ledger::UnguardedHit {
                hit_id: crate::ids::HitId::parse("3HITOPEN").unwrap(),
                hit_type_id: crate::ids::HitTypeId::parse("3TYPEOPEN").unwrap(),
                title: Some("<b>Study</b>".into()),
            }],
            subscribed_by_watch: vec![("3TYPEWATCHED".into(), None, true)],
            history_left_out: vec![(
                "3TYPEPILOT".into(),
                crate::ledger::HistoryLeftOut {
                    hits: 2,
                    submissions: 17,
                },
            )],
        });
        let page = html::render(&r);
        assert!(page.contains(r#"id="coverage""#));
        assert!(page.contains("3TYPEPILOT"), "the history left out is shown");
        assert!(page.contains("<td>2</td><td>17</td>"));
        assert!(page.contains("mturk-exclusion adopt"));
        assert!(page.contains("3HITOPEN"));
        assert!(page.contains("&lt;b&gt;Study&lt;/b&gt;"));
        assert!(page.contains("3TYPEWATCHED"));
        assert!(page.contains("backfill due"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AssignmentId, HitId, HitTypeId, WorkerId};
    use crate::ledger::{ClaimEnded, LastRelease, Learned, Participation, StoredClaim};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-10 12:00 UTC);
    const STUDY_A: &str = "3TYPEAAAAAAAAAAAAAAAAAAAAAAAAA";
    const STUDY_B: &str = "3TYPEBBBBBBBBBBBBBBBBBBBBBBBBB";

    fn source() -> Source {
        Source {
            stack: Some("lab-stack".into()),
            table: "lab-ledger".into(),
            qualification: "3QUALIFICATION0000000000000000".into(),
            environment: "sandbox".into(),
        }
    }

    fn options(with_worker_ids: bool) -> Options {
        Options {
            since: None,
            with_worker_ids,
            now: NOW,
        }
    }

    /// A participation learned from a notification, excluded `exposure` after it was submitted.
    fn took_part(
        worker: &str,
        assignment: &str,
        study: &str,
        submitted: OffsetDateTime,
        exposure: Duration,
    ) -> Participation {
        Participation {
            worker_id: WorkerId::parse(worker).unwrap(),
            assignment_id: Some(AssignmentId::parse(assignment).unwrap()),
            hit_id: Some(HitId::parse(&format!("3HIT{study}")[..20]).unwrap()),
            hit_type_id: Some(HitTypeId::parse(study).unwrap()),
            submit_time: Some(submitted),
            learned: Learned::Notification {
                event_doc_id: format!("doc-{assignment}"),
            },
            event_doc_id: Some(format!("doc-{assignment}")),
            recorded_at: submitted + exposure / 2,
            excluded_at: Some(submitted + exposure),
            released_at: None,
            release_reason: None,
        }
    }

    // One fixture, item by item: the ledger every aggregate test reads.
    #[allow(clippy::too_many_lines)]
    fn snapshot() -> LedgerContents {
        let mut released = took_part(
            "A1RELEASED",
            "3ASSIGN03",
            STUDY_B,
            datetime!(2026-03-03 09:00 UTC),
            Duration::seconds(40),
        );
        released.released_at = Some(datetime!(2026-03-05 10:00 UTC));
        released.release_reason =
            Some("<script>alert('A1RELEASED')</script> & \"pilot\" tester".into());
        let mut kept = took_part(
            "A1RELEASED",
            "3ASSIGN04",
            STUDY_A,
            datetime!(2026-03-05 09:59 UTC),
            Duration::ZERO,
        );
        kept.excluded_at = None;
        kept.released_at = Some(datetime!(2026-03-05 10:00 UTC));
        kept.release_reason = Some(KEPT_RELEASED_REASON.into());
        let mut backfilled = took_part(
            "A1OLDSTUDY",
            "3ASSIGN05",
            STUDY_A,
            datetime!(2026-03-01 08:00 UTC),
            Duration::days(3),
        );
        backfilled.learned = Learned::Backfill;
        backfilled.event_doc_id = None;
        let by_hand = Participation {
            worker_id: WorkerId::parse("A1BYHAND").unwrap(),
            assignment_id: None,
            hit_id: None,
            hit_type_id: None,
            submit_time: None,
            learned: Learned::Manual,
            event_doc_id: None,
            recorded_at: datetime!(2026-03-02 08:00 UTC),
            excluded_at: Some(datetime!(2026-03-02 08:00 UTC)),
            released_at: None,
            release_reason: None,
        };
        LedgerContents {
            participations: vec![
                took_part(
                    "A1ALPHA",
                    "3ASSIGN01",
                    STUDY_A,
                    datetime!(2026-03-02 10:00 UTC),
                    Duration::seconds(2),
                ),
                took_part(
                    "A1BRAVO",
                    "3ASSIGN02",
                    STUDY_A,
                    datetime!(2026-03-02 11:00 UTC),
                    Duration::milliseconds(800),
                ),
                // A repeat: A1ALPHA again, in the other study.
                took_part(
                    "A1ALPHA",
                    "3ASSIGN06",
                    STUDY_B,
                    datetime!(2026-03-04 10:00 UTC),
                    Duration::seconds(7),
                ),
                released,
                kept,
                backfilled,
                by_hand,
            ],
            excluded_now: 4,
            releases: vec![
                LastRelease {
                    worker_id: WorkerId::parse("A1RELEASED").unwrap(),
                    state: ExclusionState::Released,
                    released_at: datetime!(2026-03-05 10:00 UTC),
                    reason: Some("ignored: the participation says it".into()),
                },
                // Released with no participation released (and excluded again since).
                LastRelease {
                    worker_id: WorkerId::parse("A1AGAIN").unwrap(),
                    state: ExclusionState::Excluded,
                    released_at: datetime!(2026-03-06 10:00 UTC),
                    reason: None,
                },
            ],
            claims: vec![
                StoredClaim {
                    assignment_id: "3ASGOPEN".into(),
                    hit_id: "3HIT".into(),
                    claimed_at: datetime!(2026-03-09 10:00 UTC),
                    expires_at: (NOW + Duration::minutes(30)).unix_timestamp(),
                },
                StoredClaim {
                    assignment_id: "3ASGEXPIRED".into(),
                    hit_id: "3HIT".into(),
                    claimed_at: datetime!(2026-03-08 10:00 UTC),
                    expires_at: (NOW - Duration::days(1)).unix_timestamp(),
                },
            ],
            claim_ends: vec![
                ClaimEnded {
                    assignment_id: "3ASGOPEN".into(),
                    ended_by: "returned".into(),
                    ended_at: Some(datetime!(2026-03-09 11:00 UTC)),
                },
                ClaimEnded {
                    assignment_id: "3ASGOTHER".into(),
                    ended_by: "abandoned".into(),
                    ended_at: Some(datetime!(2026-03-08 11:00 UTC)),
                },
            ],
        }
    }

    const WORKERS: [&str; 6] = [
        "A1ALPHA",
        "A1BRAVO",
        "A1RELEASED",
        "A1OLDSTUDY",
        "A1BYHAND",
        "A1AGAIN",
    ];

    #[test]
    fn counts_per_day_and_study_exposure_repeats_claims_and_releases() {
        let r = aggregate(&snapshot(), source(), &options(false));
        assert_eq!(r.bucket, Bucket::Day);
        assert_eq!(
            r.buckets.first(),
            Some(&datetime!(2026-03-01 0:00 UTC).date())
        );
        assert_eq!(
            r.buckets.last(),
            Some(&datetime!(2026-03-09 0:00 UTC).date())
        );
        assert_eq!(r.buckets.len(), 9);
        assert_eq!(r.participations, 6);
        assert_eq!(r.workers, 4);
        assert_eq!(r.without_study, 1);
        assert_eq!(r.excluded_now, 4);

        assert_eq!(r.studies.len(), 2);
        assert_eq!(r.studies[0].hit_type.as_deref(), Some(STUDY_A));
        assert_eq!((r.studies[0].participations, r.studies[0].workers), (4, 4));
        assert_eq!((r.studies[1].participations, r.studies[1].workers), (2, 2));
        let a = &r.study_series[0];
        assert_eq!(a.name, STUDY_A);
        assert_eq!(a.counts, [1, 2, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(r.study_series[1].counts, [0, 0, 1, 1, 0, 0, 0, 0, 0]);

        // Measured: 0.8 s, 2 s, 7 s, 40 s; the backfill and the kept one are not.
        let e = &r.exposure;
        assert_eq!((e.measured, e.not_measured), (4, 2));
        assert_eq!(e.p50, Some(Duration::seconds(2)));
        assert_eq!(e.p90, Some(Duration::seconds(40)));
        assert_eq!(e.max, Some(Duration::seconds(40)));
        let count = |label: &str| e.bins.iter().find(|b| b.0 == label).unwrap().2;
        assert_eq!(
            (
                count("< 1 s"),
                count("2–5 s"),
                count("5–10 s"),
                count("30–60 s")
            ),
            (1, 1, 1, 1)
        );

        // A1ALPHA's second study, and A1RELEASED's second (kept) participation.
        assert_eq!(r.check.repeats.total(), 2);
        assert_eq!(r.check.repeat_workers, 2);
        assert!(r.check.repeat_list.is_empty(), "no ids unless asked");
        assert_eq!((r.check.claims.total(), r.check.claims_open), (2, 1));
        assert_eq!(
            r.check.claims_unnotified, 1,
            "the expired claim, of which MTurk said nothing"
        );
        assert_eq!(
            (r.check.returned.total(), r.check.abandoned.total()),
            (1, 1)
        );
        assert_eq!(r.check.returned.counts[8], 1);

        let rel = &r.releases;
        assert_eq!(rel.kept_released, 1);
        assert_eq!(rel.list.len(), 2);
        assert_eq!(rel.list[0].at, datetime!(2026-03-06 10:00 UTC));
        assert!(rel.list[0].excluded_again && rel.list[0].reason.is_none());
        assert_eq!(rel.list[1].participations, 1);
        assert_eq!(
            rel.list[1].reason.as_deref(),
            Some("<script>alert('[worker id]')</script> & \"pilot\" tester")
        );
        assert!(rel.list.iter().all(|x| x.worker_id.is_none()));
        assert_eq!(rel.per_bucket.counts[4] + rel.per_bucket.counts[5], 2);
    }

    #[test]
    fn an_expired_claim_is_flagged_unless_mturk_said_how_its_assignment_ended() {
        let mut s = snapshot();
        s.claim_ends[1].assignment_id = "3ASGEXPIRED".into();
        let r = aggregate(&s, source(), &options(false));
        assert_eq!(r.check.claims_unnotified, 0, "abandoned: MTurk said so");
        let mut s = snapshot();
        s.claims[1].assignment_id = s.participations[0]
            .assignment_id
            .as_ref()
            .expect("a participation from an assignment")
            .to_string();
        let r = aggregate(&s, source(), &options(false));
        assert_eq!(r.check.claims_unnotified, 0, "submitted");
    }

    #[test]
    fn since_leaves_out_what_came_before_but_a_repeat_stays_a_repeat() {
        let mut o = options(false);
        o.since = Some(datetime!(2026-03-04 00:00 UTC));
        let r = aggregate(&snapshot(), source(), &o);
        assert_eq!(
            r.buckets.first(),
            Some(&datetime!(2026-03-04 0:00 UTC).date())
        );
        assert_eq!(r.participations, 2);
        assert_eq!(r.check.repeats.total(), 2);
        assert_eq!(r.releases.list.len(), 2);
        o.since = Some(datetime!(2026-03-07 00:00 UTC));
        let r = aggregate(&snapshot(), source(), &o);
        assert_eq!(r.participations, 0);
        assert!(r.releases.list.is_empty());
        assert_eq!(r.check.claims.total(), 2);
    }

    #[test]
    fn long_ranges_count_per_week_from_monday() {
        let mut s = snapshot();
        s.participations[0].submit_time = Some(datetime!(2025-10-01 10:00 UTC));
        let r = aggregate(&s, source(), &options(false));
        assert_eq!(r.bucket, Bucket::Week);
        assert!(r
            .buckets
            .iter()
            .all(|d| d.weekday() == time::Weekday::Monday));
        assert_eq!(r.study_series.iter().map(Series::total).sum::<u64>(), 6);
    }

    #[test]
    fn more_studies_than_colours_are_summed_as_other_studies() {
        let mut s = LedgerContents::default();
        for i in 0..10 {
            let study = format!("3TYPE{i:025}");
            s.participations.push(took_part(
                &format!("A1W{i}"),
                &format!("3ASSIGN{i:02}"),
                &study,
                datetime!(2026-03-02 10:00 UTC),
                Duration::seconds(1),
            ));
        }
        let r = aggregate(&s, source(), &options(false));
        assert_eq!(r.studies.len(), 10);
        assert_eq!(r.study_series.len(), MAX_SERIES);
        assert_eq!(r.study_series.last().unwrap().name, "4 other studies");
        assert_eq!(r.study_series.last().unwrap().total(), 4);
    }

    #[test]
    fn the_page_has_no_worker_id_unless_asked() {
        let page = html::render(&aggregate(&snapshot(), source(), &options(false)));
        assert!(!page.contains(r#"id="coverage""#), "no watch, no section");
        for w in WORKERS {
            assert!(!page.contains(w), "{w} is on the page");
        }
        assert!(page.contains("[worker id]"));
        let page = html::render(&aggregate(&snapshot(), source(), &options(true)));
        for w in ["A1RELEASED", "A1AGAIN", "A1ALPHA"] {
            assert!(page.contains(w), "{w} asked for but missing");
        }
    }

    #[test]
    fn text_from_outside_is_escaped() {
        let mut src = source();
        src.stack = Some("<b>lab</b>".into());
        let page = html::render(&aggregate(&snapshot(), src, &options(true)));
        assert!(!page.contains("<script>"), "a note ran as a script");
        assert!(!page.contains("<b>lab</b>"));
        assert!(page.contains("&lt;b&gt;lab&lt;/b&gt;"));
        assert!(page.contains(
            "&lt;script&gt;alert(&#39;A1RELEASED&#39;)&lt;/script&gt; &amp; &quot;pilot&quot; tester"
        ));
        assert_eq!(html::escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn the_page_loads_nothing_and_draws_every_chart() {
        let page = html::render(&aggregate(&snapshot(), source(), &options(false)));
        for banned in [
            "<script", "src=", "href=", "url(", "@import", "<link", "<img",
        ] {
            assert!(!page.contains(banned), "{banned} in the page");
        }
        for chart in [
            "chart-participations",
            "chart-exposure",
            "chart-check",
            "chart-releases",
        ] {
            assert!(page.contains(&format!(r#"<svg id="{chart}""#)), "{chart}");
        }
        assert!(page.contains("How to read this"));
        assert!(page.contains("lab-ledger") && page.contains("3QUALIFICATION0000000000000000"));
        assert!(page.contains(r#"class="bar" data-count="2""#));
        assert!(page.contains("p50"));
    }

    #[test]
    fn an_empty_ledger_renders_a_sensible_page() {
        let r = aggregate(&LedgerContents::default(), source(), &options(false));
        assert!(r.covered.is_none() && r.buckets.is_empty());
        let page = html::render(&r);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.ends_with("</html>\n"));
        assert!(page.contains("nothing recorded in this range"));
        assert!(page.contains("No participation in this range."));
        assert!(page.contains("No release in this range."));
        assert!(!page.contains("<svg"));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::seconds).collect();
        assert_eq!(percentile(&v, 50.0), Some(Duration::seconds(50)));
        assert_eq!(percentile(&v, 99.0), Some(Duration::seconds(99)));
        assert_eq!(percentile(&v[..1], 99.0), Some(Duration::seconds(1)));
        assert_eq!(percentile::<Duration>(&[], 50.0), None);
        assert_eq!(html::span(Duration::milliseconds(850)), "850 ms");
        assert_eq!(html::span(Duration::seconds(190)), "3 min 10 s");
    }
}
