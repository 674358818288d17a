//! `reconcile`: the ledger and MTurk, compared both ways, and put back in
//! agreement on request.
//!
//! The ledger is read before MTurk. The Lambda grants before it records an
//! exclusion and `release` records before it revokes, so in that order a
//! worker excluded or released while reconcile runs cannot make the two
//! reads disagree for long; every difference is then read again, consistently,
//! before it is reported and again before it is fixed, which also covers the
//! lag of the ledger's `Excluded` index.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use clap::Args as ClapArgs;
use futures::stream::{self, StreamExt};
use mturk_exclusion::exclusion::Excluder;
use mturk_exclusion::ids::{self, WorkerId};
use mturk_exclusion::ledger::{Exclusion, ExclusionState};
use mturk_exclusion::mturk::Revoked;
use serde::Serialize;

use crate::context::{CliError, Context};
use crate::output;

/// Ledger reads and ledger-only fixes in flight at once. MTurk calls among
/// them still wait their turn under --max-rps.
const CONCURRENCY: usize = 8;

/// Compare the ledger with who holds the exclusion qualification on MTurk;
/// with --apply, fix the differences.
///
/// Reads every worker the ledger holds excluded, then every worker MTurk
/// lists as holding the lab's qualification (ListWorkersWithQualificationType,
/// status Granted, all pages), and reports:
///
/// - Excluded in the ledger but not holding it on MTurk: a grant that was
///   lost, or a revoke done outside this tool (on MTurk's website or by
///   another script). These workers can see the lab's HITs now. --apply
///   grants the qualification again, silently (SendNotification=false).
///
/// - Holding it on MTurk but not excluded in the ledger: granted by an older
///   batch script or by hand, or a grant whose ledger update never happened.
///   --apply records them in the ledger as excluded (learned by "reconcile");
///   MTurk is not called, they already hold the qualification.
///
/// - Released in the ledger but still holding it on MTurk: a release whose
///   revoke failed, so the worker is still kept out. Recording them would undo
///   the lab's release; --apply revokes instead, without a reason, so MTurk
///   sends the worker no email.
///
/// - Ids MTurk listed that are not worker ids: shown, never acted on.
///
/// Without --apply nothing is changed: reporting only is the default, and
/// --dry-run says so explicitly. The report names worker ids, which are
/// personal data.
///
/// With --json the report is one object: {qualification_type_id, environment,
/// ledger_excluded, mturk_granted, agree, only_in_ledger: [{worker_id,
/// excluded_at, excluded_because}], only_on_mturk: [{worker_id,
/// ledger_participations, waiting_participations}], released_but_held:
/// [{worker_id, released_at}], odd_ids: [...]} and, with --apply, applied:
/// {granted: [ids], recorded: [ids], revoked: [ids], skipped: [{worker_id,
/// reason}], failed: [{worker_id, reason}]}. "skipped" are differences that
/// resolved themselves between the report and the fix.
///
/// Exit codes: without --apply, 0 when the two sides agree and 4 when they
/// differ (or MTurk listed odd ids), so a scheduled run can alert; with
/// --apply, 0 when every difference was fixed and 1 when some were not (each
/// is named with the reason; running again retries them); 3 when the ledger
/// or MTurk cannot be read.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Fix every difference: grant (silently), record in the ledger, or
    /// revoke (without a reason, so no email).
    #[arg(long, conflicts_with = "dry_run")]
    pub apply: bool,
    /// Report only and change nothing (the default without --apply).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OnlyInLedger,
    OnlyOnMturk,
    ReleasedButHeld,
}

struct Difference {
    worker: WorkerId,
    kind: Kind,
    /// The ledger's standing for the worker when it was classified; a fix
    /// only goes ahead if it is still the same.
    seen: Option<ExclusionState>,
    exclusion: Option<Exclusion>,
    participations: usize,
    waiting: usize,
}

enum Fix {
    Granted,
    Recorded,
    Revoked,
    Skipped(String),
    Failed(String),
}

#[derive(Serialize)]
struct Report {
    qualification_type_id: String,
    environment: &'static str,
    ledger_excluded: usize,
    mturk_granted: usize,
    agree: usize,
    only_in_ledger: Vec<OnlyInLedger>,
    only_on_mturk: Vec<OnlyOnMturk>,
    released_but_held: Vec<ReleasedButHeld>,
    odd_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<Applied>,
}

#[derive(Serialize)]
struct OnlyInLedger {
    worker_id: String,
    excluded_at: Option<String>,
    excluded_because: Option<String>,
}

#[derive(Serialize)]
struct OnlyOnMturk {
    worker_id: String,
    /// Participations the ledger has for the worker (0: unknown to it).
    ledger_participations: usize,
    /// Of those, the ones recorded but never marked excluded or released.
    waiting_participations: usize,
}

#[derive(Serialize)]
struct ReleasedButHeld {
    worker_id: String,
    released_at: Option<String>,
}

#[derive(Serialize, Default)]
struct Applied {
    granted: Vec<String>,
    recorded: Vec<String>,
    revoked: Vec<String>,
    skipped: Vec<Note>,
    failed: Vec<Note>,
}

#[derive(Serialize)]
struct Note {
    worker_id: String,
    reason: String,
}

pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode, CliError> {
    let excluder = ctx.excluder().await?;
    let q = excluder.qualification().clone();

    let mut in_ledger: BTreeMap<WorkerId, Exclusion> = BTreeMap::new();
    for x in excluder.ledger().excluded_workers(&q).await? {
        in_ledger.insert(x.worker_id.clone(), x);
    }
    let (held, mut odd_ids) = excluder.mturk().workers_with(&q).await?;
    let on_mturk: BTreeSet<WorkerId> = held.into_iter().collect();
    odd_ids.sort();
    odd_ids.dedup();

    let both = in_ledger.keys().filter(|w| on_mturk.contains(*w)).count();
    let candidates: Vec<(WorkerId, bool)> = in_ledger
        .keys()
        .filter(|w| !on_mturk.contains(*w))
        .map(|w| (w.clone(), false))
        .chain(
            on_mturk
                .iter()
                .filter(|w| !in_ledger.contains_key(*w))
                .map(|w| (w.clone(), true)),
        )
        .collect();

    let bar = output::progress(
        candidates.len() as u64,
        "checking differences",
        ctx.global.json,
    );
    let checked: Vec<Result<Option<Difference>, CliError>> = stream::iter(candidates.iter())
        .map(|(worker, held)| {
            let excluder = &excluder;
            let bar = &bar;
            async move {
                let found = classify(excluder, worker, *held).await;
                bar.inc(1);
                found
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    bar.finish_and_clear();
    let mut differences = Vec::new();
    for found in checked {
        if let Some(d) = found? {
            differences.push(d);
        }
    }
    differences.sort_by(|a, b| a.worker.cmp(&b.worker));
    let agree = both + candidates.len() - differences.len();

    let applied = if args.apply {
        Some(apply(&excluder, &differences, ctx.global.json).await)
    } else {
        None
    };

    let report = Report {
        qualification_type_id: q.to_string(),
        environment: ctx.environment_name(),
        ledger_excluded: in_ledger.len(),
        mturk_granted: on_mturk.len(),
        agree,
        only_in_ledger: differences
            .iter()
            .filter(|d| d.kind == Kind::OnlyInLedger)
            .map(|d| OnlyInLedger {
                worker_id: d.worker.to_string(),
                excluded_at: d.exclusion.as_ref().and_then(|x| x.excluded_at.clone()),
                excluded_because: d
                    .exclusion
                    .as_ref()
                    .and_then(|x| x.excluded_because.clone()),
            })
            .collect(),
        only_on_mturk: differences
            .iter()
            .filter(|d| d.kind == Kind::OnlyOnMturk)
            .map(|d| OnlyOnMturk {
                worker_id: d.worker.to_string(),
                ledger_participations: d.participations,
                waiting_participations: d.waiting,
            })
            .collect(),
        released_but_held: differences
            .iter()
            .filter(|d| d.kind == Kind::ReleasedButHeld)
            .map(|d| ReleasedButHeld {
                worker_id: d.worker.to_string(),
                released_at: d.exclusion.as_ref().and_then(|x| x.released_at.clone()),
            })
            .collect(),
        odd_ids,
        applied,
    };

    if ctx.global.json {
        output::print_json(&report)?;
    } else {
        print_text(&report);
    }
    verdict(&report)
}

/// Reads the ledger's standing for one worker on whom the two first reads
/// disagree. `None` when a consistent read shows they agree after all.
async fn classify(
    excluder: &Excluder,
    worker: &WorkerId,
    held: bool,
) -> Result<Option<Difference>, CliError> {
    let ledger = excluder.ledger();
    let exclusion = ledger.exclusion(worker, excluder.qualification()).await?;
    let seen = exclusion.as_ref().map(|x| x.state);
    let mut d = Difference {
        worker: worker.clone(),
        kind: Kind::OnlyInLedger,
        seen,
        exclusion,
        participations: 0,
        waiting: 0,
    };
    if !held {
        return Ok((seen == Some(ExclusionState::Excluded)).then_some(d));
    }
    if seen == Some(ExclusionState::Excluded) {
        return Ok(None);
    }
    let participations = ledger.participations_of(worker).await?;
    d.participations = participations.len();
    d.waiting = participations
        .iter()
        .filter(|p| p.excluded_at.is_none() && p.released_at.is_none())
        .count();
    // A worker released and then seen submitting again is being excluded
    // anew, not waiting for a revoke.
    d.kind = if seen == Some(ExclusionState::Released) && d.waiting == 0 {
        Kind::ReleasedButHeld
    } else {
        Kind::OnlyOnMturk
    };
    Ok(Some(d))
}

async fn apply(excluder: &Excluder, differences: &[Difference], json: bool) -> Applied {
    let bar = output::progress(differences.len() as u64, "fixing", json);
    let fixes: Vec<(&Difference, Fix)> = stream::iter(differences.iter())
        .map(|d| {
            let bar = &bar;
            async move {
                let fix = fix(excluder, d).await;
                bar.inc(1);
                (d, fix)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    bar.finish_and_clear();
    let mut applied = Applied::default();
    for (d, fix) in fixes {
        let worker_id = d.worker.to_string();
        match fix {
            Fix::Granted => applied.granted.push(worker_id),
            Fix::Recorded => applied.recorded.push(worker_id),
            Fix::Revoked => applied.revoked.push(worker_id),
            Fix::Skipped(reason) => applied.skipped.push(Note { worker_id, reason }),
            Fix::Failed(reason) => applied.failed.push(Note { worker_id, reason }),
        }
    }
    applied.granted.sort();
    applied.recorded.sort();
    applied.revoked.sort();
    applied
        .skipped
        .sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
    applied.failed.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
    applied
}

fn state_name(state: Option<ExclusionState>) -> &'static str {
    match state {
        Some(ExclusionState::Excluded) => "excluded",
        Some(ExclusionState::Released) => "released",
        None => "unknown",
    }
}

async fn fix(excluder: &Excluder, d: &Difference) -> Fix {
    let q = excluder.qualification();
    // The Lambda, `exclude` or `release` may have run since the report was read.
    let now = match excluder.ledger().exclusion(&d.worker, q).await {
        Ok(x) => x.map(|x| x.state),
        Err(e) => return Fix::Failed(e.to_string()),
    };
    if now != d.seen {
        let agrees = match d.kind {
            Kind::OnlyInLedger => now != Some(ExclusionState::Excluded),
            Kind::OnlyOnMturk | Kind::ReleasedButHeld => now == Some(ExclusionState::Excluded),
        };
        return if agrees {
            Fix::Skipped(format!(
                "the ledger now has the worker {}, which agrees with MTurk",
                state_name(now)
            ))
        } else {
            Fix::Failed(format!(
                "the ledger changed while reconciling (was {}, now {}); run reconcile again",
                state_name(d.seen),
                state_name(now)
            ))
        };
    }
    let done = match d.kind {
        Kind::OnlyInLedger => excluder
            .mturk()
            .exclude(&d.worker, q)
            .await
            .map(|()| Fix::Granted)
            .map_err(|e| e.to_string()),
        Kind::OnlyOnMturk => excluder
            .record_held(&d.worker)
            .await
            .map(|()| Fix::Recorded)
            .map_err(|e| e.to_string()),
        // No reason: MTurk emails the reason to the worker, and there is none to send.
        Kind::ReleasedButHeld => match excluder.mturk().release(&d.worker, q, None).await {
            Ok(Revoked::Now) => Ok(Fix::Revoked),
            Ok(Revoked::NotHeld) => Ok(Fix::Skipped(
                "MTurk no longer shows the worker holding the qualification".into(),
            )),
            Err(e) => Err(e.to_string()),
        },
    };
    done.unwrap_or_else(Fix::Failed)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn print_text(r: &Report) {
    println!(
        "Qualification {} in MTurk {}: {} excluded in the ledger, {} holding it on MTurk.",
        r.qualification_type_id, r.environment, r.ledger_excluded, r.mturk_granted
    );
    println!(
        "The two sides agree on {}.",
        plural(r.agree, "worker", "workers")
    );
    if !r.only_in_ledger.is_empty() {
        println!(
            "\nExcluded in the ledger but not holding the qualification on MTurk ({}):",
            r.only_in_ledger.len()
        );
        println!("  A grant was lost, or the qualification was revoked outside this tool.");
        println!("  These workers can see the lab's HITs now. --apply grants again, silently.");
        for w in &r.only_in_ledger {
            println!(
                "  {}  excluded {} because of {}",
                w.worker_id,
                w.excluded_at.as_deref().unwrap_or("(no time recorded)"),
                w.excluded_because
                    .as_deref()
                    .unwrap_or("(no cause recorded)")
            );
        }
    }
    if !r.only_on_mturk.is_empty() {
        println!(
            "\nHolding the qualification on MTurk but not excluded in the ledger ({}):",
            r.only_on_mturk.len()
        );
        println!("  Granted by an older script or by hand, or a grant the ledger never recorded.");
        println!("  --apply records them in the ledger; MTurk is not called.");
        for w in &r.only_on_mturk {
            let known = if w.ledger_participations == 0 {
                "unknown to the ledger".to_owned()
            } else {
                format!(
                    "{} in the ledger, {} waiting for its exclusion",
                    plural(w.ledger_participations, "participation", "participations"),
                    w.waiting_participations
                )
            };
            println!("  {}  {known}", w.worker_id);
        }
    }
    if !r.released_but_held.is_empty() {
        println!(
            "\nReleased in the ledger but still holding the qualification on MTurk ({}):",
            r.released_but_held.len()
        );
        println!(
            "  The revoke after the release failed; they are still kept out of the lab's HITs."
        );
        println!("  --apply revokes, without a reason, so MTurk sends no email.");
        for w in &r.released_but_held {
            println!(
                "  {}  released {}",
                w.worker_id,
                w.released_at.as_deref().unwrap_or("(no time recorded)")
            );
        }
    }
    if !r.odd_ids.is_empty() {
        println!(
            "\nIds MTurk listed as holding the qualification that are not worker ids ({}):",
            r.odd_ids.len()
        );
        println!("  Not acted on; look them up on MTurk.");
        for raw in &r.odd_ids {
            println!("  {}", ids::shown(raw));
        }
    }
    if let Some(a) = &r.applied {
        println!();
        for w in &a.granted {
            println!("granted   {w} (SendNotification=false)");
        }
        for w in &a.recorded {
            println!("recorded  {w} (ledger only)");
        }
        for w in &a.revoked {
            println!("revoked   {w} (no reason, no email)");
        }
        for n in &a.skipped {
            println!("skipped   {}: {}", n.worker_id, n.reason);
        }
        for n in &a.failed {
            println!("FAILED    {}: {}", n.worker_id, n.reason);
        }
    }
}

fn verdict(r: &Report) -> Result<ExitCode, CliError> {
    let differences = r.only_in_ledger.len() + r.only_on_mturk.len() + r.released_but_held.len();
    let odd = (!r.odd_ids.is_empty()).then(|| {
        format!(
            "MTurk listed {} as holding the qualification that reconcile cannot act on (look them up on MTurk)",
            plural(r.odd_ids.len(), "id", "ids")
        )
    });
    let failed = r.applied.as_ref().map_or(0, |a| a.failed.len());
    let problem = match (&r.applied, differences, failed, odd) {
        (None, 0, _, None) | (Some(_), _, 0, None) => return Ok(ExitCode::SUCCESS),
        (None, 0, _, Some(odd)) => CliError::CheckFailed(odd),
        (None, n, _, odd) => CliError::CheckFailed(format!(
            "the ledger and MTurk differ on {}{}; `mturk-exclusion reconcile --apply` fixes the differences",
            plural(n, "worker", "workers"),
            odd.map(|o| format!("; {o}")).unwrap_or_default()
        )),
        (Some(_), _, 0, Some(odd)) => {
            CliError::Partial(format!("every difference was fixed, but {odd}"))
        }
        (Some(_), n, failed, odd) => CliError::Partial(format!(
            "{failed} of {} not fixed (each is named in the report, with its reason){}; running again retries them",
            plural(n, "difference", "differences"),
            odd.map(|o| format!("; {o}")).unwrap_or_default()
        )),
    };
    Err(problem)
}
