//! Releasing workers: whom to release, whom to keep, and the release itself.
//!
//! Exclusion wins: releasing a HIT releases only the workers with no other
//! participation that still excludes them. A worker named directly is
//! released entirely. The plan is read once, shown, and then acted on as
//! shown: only the planned workers are released, and each worker named
//! through a HIT is checked again just before the release, since a
//! submission may have arrived while the lab read the plan.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::exclusion::ReleaseError;
use crate::ids::{HitId, WorkerId};
use crate::ledger::{stamp, ExclusionState, Learned, LedgerError, Participation};
use crate::mturk::Revoked;

use super::{Lab, Progress};

/// Whom the lab asked to release.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Named directly (flags and files): released entirely.
    pub workers: Vec<WorkerId>,
    /// Their workers are released unless excluded for another reason.
    pub hits: Vec<HitId>,
}

/// A worker the plan releases.
#[derive(Debug, Clone)]
pub struct Target {
    pub worker: WorkerId,
    /// Empty when named directly; else the released HITs they took part in.
    pub via_hits: Vec<HitId>,
    /// Participations the ledger held for the worker when planned.
    pub participations: usize,
    /// The ledger already said released: only MTurk's side is redone.
    pub already_released: bool,
}

impl Target {
    pub fn named_by(&self) -> &'static str {
        if self.via_hits.is_empty() {
            "worker"
        } else {
            "hit"
        }
    }
}

/// A participation that keeps a worker excluded.
#[derive(Debug, Clone, Serialize)]
pub struct Because {
    pub hit_id: Option<String>,
    pub assignment_id: Option<String>,
    pub learned_by: String,
    pub recorded_at: String,
}

/// A worker of a released HIT who stays excluded.
#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub worker_id: String,
    /// The released HITs they took part in.
    pub hit_ids: Vec<String>,
    pub reason: String,
    /// Participations, outside the released HITs, that still exclude them.
    pub still_excluded_by: Vec<Because>,
    /// Planned for release, but a participation arrived after the plan was
    /// read: kept, and nothing was changed for them.
    pub changed_since_plan: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotFound {
    /// "worker" or "hit".
    pub kind: &'static str,
    pub id: String,
    pub reason: String,
}

/// What the lab is shown before anything changes.
#[derive(Debug, Default)]
pub struct Plan {
    pub targets: Vec<Target>,
    pub kept: Vec<Kept>,
    pub not_found: Vec<NotFound>,
    /// The HITs released together (a participation in one of them does not
    /// keep a worker of another).
    pub hits: Vec<HitId>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Released {
    pub worker_id: String,
    /// "worker" (named, or in a file) or "hit".
    pub named_by: &'static str,
    pub hit_ids: Vec<String>,
    pub participations: usize,
    /// The ledger said released before this run; MTurk's side was redone.
    pub already_released: bool,
    /// "revoked", "not_held" (MTurk had no grant to revoke), or null in a dry run.
    pub mturk: Option<&'static str>,
    /// Set when the worker's standing changed while the release ran (for
    /// example a new submission excluded them again): "excluded" or "released".
    pub changed_since: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failed {
    pub worker_id: String,
    /// "ledger" (nothing changed for this worker) or "mturk" (the ledger
    /// says released, MTurk may still hold the grant).
    pub step: &'static str,
    pub reason: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub released: usize,
    pub kept: usize,
    pub changed_since_plan: usize,
    pub not_found: usize,
    pub failed: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub dry_run: bool,
    /// Whether MTurk emails the reason to the released workers.
    pub reason_emailed: bool,
    pub summary: Summary,
    pub released: Vec<Released>,
    pub kept: Vec<Kept>,
    pub not_found: Vec<NotFound>,
    pub failed: Vec<Failed>,
}

/// What the lab wrote: `note` stays in the ledger, `email_reason` is emailed
/// by MTurk to each released worker (and recorded too).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub note: Option<String>,
    pub email_reason: Option<String>,
    pub dry_run: bool,
    /// Workers released at once (MTurk calls stay within the rate limit).
    pub concurrency: usize,
}

impl Options {
    /// What the ledger records as the reason for one target's release.
    pub fn ledger_note(&self, target: &Target) -> Option<String> {
        match (&self.note, &self.email_reason) {
            (Some(note), Some(reason)) => Some(format!("{note} (worker was emailed: {reason})")),
            (Some(note), None) => Some(note.clone()),
            (None, Some(reason)) => Some(reason.clone()),
            // Without a note, a HIT's release still says why in the ledger.
            (None, None) if !target.via_hits.is_empty() => Some(format!(
                "released with HIT {}",
                join(&target.via_hits, ", HIT ")
            )),
            (None, None) => None,
        }
    }
}

fn join(ids: &[HitId], sep: &str) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(sep)
}

/// Decides, from the ledger alone and before changing anything, whom to
/// release and whom to keep. A ledger that cannot be read stops here.
pub async fn plan(lab: &Lab, request: &Request) -> Result<Plan, LedgerError> {
    let ledger = &lab.ledger;
    let mut plan = Plan {
        hits: request.hits.clone(),
        ..Plan::default()
    };
    let named: HashSet<&WorkerId> = request.workers.iter().collect();
    for worker in &request.workers {
        let participations = ledger.participations_of(worker).await?;
        let standing = ledger.exclusion(worker, &lab.qualification).await?;
        if participations.is_empty() && standing.is_none() {
            plan.not_found.push(NotFound {
                kind: "worker",
                id: worker.to_string(),
                reason: "the ledger has no record of this worker: never excluded through it \
                         (check the id; if an older script granted the qualification, run \
                         `reconcile` so the ledger learns of them, then release again)"
                    .into(),
            });
            continue;
        }
        plan.targets.push(target(
            worker.clone(),
            Vec::new(),
            &participations,
            standing.map(|s| s.state),
        ));
    }

    // Worker → the released HITs they took part in.
    let mut from_hits: BTreeMap<WorkerId, BTreeSet<HitId>> = BTreeMap::new();
    for hit in &request.hits {
        let in_hit = ledger.participations_in_hit(hit).await?;
        if in_hit.is_empty() {
            plan.not_found.push(NotFound {
                kind: "hit",
                id: hit.to_string(),
                reason: "the ledger has no participation in this HIT (check the id; a HIT from \
                         before notifications were set up is known only after `exclude --hit` \
                         or `exclude --from-csv` recorded it)"
                    .into(),
            });
        }
        for p in in_hit {
            if !named.contains(&p.worker_id) {
                from_hits
                    .entry(p.worker_id)
                    .or_default()
                    .insert(hit.clone());
            }
        }
    }
    for (worker, hits) in from_hits {
        let hits: Vec<HitId> = hits.into_iter().collect();
        let participations = ledger.participations_of(&worker).await?;
        let others = still_excluding(&participations, &plan.hits);
        if others.is_empty() {
            let standing = ledger.exclusion(&worker, &lab.qualification).await?;
            plan.targets.push(target(
                worker,
                hits,
                &participations,
                standing.map(|s| s.state),
            ));
        } else {
            plan.kept.push(kept(&worker, &hits, &others, false));
        }
    }
    Ok(plan)
}

/// The participations that keep a worker excluded whatever happens to
/// `released_hits`: not released, and outside those HITs (a participation
/// without a HIT, an exclusion by hand or by reconcile, counts).
pub fn still_excluding<'a>(
    participations: &'a [Participation],
    released_hits: &[HitId],
) -> Vec<&'a Participation> {
    participations
        .iter()
        .filter(|p| p.released_at.is_none())
        .filter(|p| p.hit_id.as_ref().is_none_or(|h| !released_hits.contains(h)))
        .collect()
}

fn target(
    worker: WorkerId,
    via_hits: Vec<HitId>,
    participations: &[Participation],
    standing: Option<ExclusionState>,
) -> Target {
    Target {
        worker,
        via_hits,
        participations: participations.len(),
        already_released: standing == Some(ExclusionState::Released)
            && participations.iter().all(|p| p.released_at.is_some()),
    }
}

fn kept(worker: &WorkerId, hits: &[HitId], others: &[&Participation], changed: bool) -> Kept {
    let mut reason = others
        .iter()
        .map(|p| why_kept(p))
        .collect::<Vec<_>>()
        .join("; ");
    if changed {
        reason = format!("changed since the plan: {reason}");
    }
    Kept {
        worker_id: worker.to_string(),
        hit_ids: hits.iter().map(ToString::to_string).collect(),
        reason,
        still_excluded_by: others
            .iter()
            .map(|p| Because {
                hit_id: p.hit_id.as_ref().map(ToString::to_string),
                assignment_id: p.assignment_id.as_ref().map(ToString::to_string),
                learned_by: p.learned.as_str().to_owned(),
                recorded_at: stamp(p.recorded_at),
            })
            .collect(),
        changed_since_plan: changed,
    }
}

/// Why one participation keeps its worker excluded, in words.
pub fn why_kept(p: &Participation) -> String {
    let at = stamp(p.recorded_at);
    match (&p.hit_id, &p.assignment_id, &p.learned) {
        (Some(hit), Some(a), _) => format!("also took part in HIT {hit} (assignment {a})"),
        (_, _, Learned::Manual) => format!("excluded by hand (exclude --worker) at {at}"),
        (_, _, Learned::Reconcile) => {
            format!("found holding the qualification on MTurk by reconcile at {at}")
        }
        (_, _, other) => format!(
            "another participation (learned by {}) at {at}",
            other.as_str()
        ),
    }
}

/// What acting on one target came to.
#[derive(Debug)]
pub enum Acted {
    Released(Released),
    /// A participation arrived since the plan: kept, nothing changed.
    Kept(Kept),
    Failed(Failed),
}

/// Releases one planned worker, through [`crate::exclusion::Excluder::release_worker`]
/// only (ledger first, then MTurk). A worker planned through a HIT is read
/// again first: if another participation still excludes them now, they
/// are kept.
pub async fn act(lab: &Lab, plan: &Plan, t: &Target, options: &Options) -> Acted {
    let failed = |step, reason: String| {
        Acted::Failed(Failed {
            worker_id: t.worker.to_string(),
            step,
            reason,
        })
    };
    if !t.via_hits.is_empty() {
        let now = match lab.ledger.participations_of(&t.worker).await {
            Ok(now) => now,
            Err(e) => {
                return failed(
                    "ledger",
                    format!("{e}; nothing was changed for this worker"),
                )
            }
        };
        let others = still_excluding(&now, &plan.hits);
        if !others.is_empty() {
            return Acted::Kept(kept(&t.worker, &t.via_hits, &others, true));
        }
    }
    let note = options.ledger_note(t);
    let released = lab
        .excluder
        .release_worker(&t.worker, note.as_deref(), options.email_reason.as_deref())
        .await;
    match released {
        Ok(r) => Acted::Released(Released {
            already_released: r.already_released,
            mturk: Some(match r.mturk {
                Revoked::Now => "revoked",
                Revoked::NotHeld => "not_held",
            }),
            changed_since: r.changed_since.map(|s| s.as_str()),
            ..released_line(t)
        }),
        Err(ReleaseError::Ledger(e)) => failed(
            "ledger",
            format!("{e}; nothing was changed for this worker"),
        ),
        Err(ReleaseError::Mturk(e)) => failed(
            "mturk",
            format!(
                "{e}; the ledger records the release, but MTurk may still hold the \
                 qualification: run the same release again (it retries only the revoke), or \
                 `reconcile` to see"
            ),
        ),
    }
}

fn released_line(t: &Target) -> Released {
    Released {
        worker_id: t.worker.to_string(),
        named_by: t.named_by(),
        hit_ids: t.via_hits.iter().map(ToString::to_string).collect(),
        participations: t.participations,
        already_released: t.already_released,
        mturk: None,
        changed_since: None,
    }
}

/// Acts on the plan (or, in a dry run, only reports it): the planned
/// targets, never anyone the ledger shows after the plan was read.
pub async fn execute(lab: &Lab, plan: Plan, options: &Options, progress: &dyn Progress) -> Report {
    let mut report = Report {
        dry_run: options.dry_run,
        reason_emailed: options.email_reason.is_some(),
        kept: plan.kept.clone(),
        not_found: plan.not_found.clone(),
        ..Report::default()
    };
    if options.dry_run {
        report.released = plan.targets.iter().map(released_line).collect();
    } else {
        progress.start(plan.targets.len() as u64, "releasing");
        let acted: Vec<Acted> = stream::iter(plan.targets.iter())
            .map(|t| {
                let plan = &plan;
                async move {
                    let acted = act(lab, plan, t, options).await;
                    progress.inc();
                    acted
                }
            })
            .buffer_unordered(options.concurrency.max(1))
            .collect()
            .await;
        progress.finish();
        for a in acted {
            match a {
                Acted::Released(r) => report.released.push(r),
                Acted::Kept(k) => report.kept.push(k),
                Acted::Failed(f) => report.failed.push(f),
            }
        }
    }
    report
        .released
        .sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
    report.kept.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
    report.failed.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
    report.summary = Summary {
        released: report.released.len(),
        kept: report.kept.len(),
        changed_since_plan: report.kept.iter().filter(|k| k.changed_since_plan).count(),
        not_found: report.not_found.len(),
        failed: report.failed.len(),
    };
    report
}
