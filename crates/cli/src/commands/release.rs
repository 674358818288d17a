//! `release`: un-exclude workers. The ledger is marked first, so that no
//! stale notification can exclude them again, then MTurk revokes the
//! qualification, silently unless the lab wrote a reason.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args as ClapArgs;
use futures::stream::{self, StreamExt};
use mturk_exclusion::exclusion::Excluder;
use mturk_exclusion::ids::{HitId, WorkerId};
use mturk_exclusion::ledger::{ExclusionState, Participation};
use mturk_exclusion::mturk::Revoked;
use serde::Serialize;

use crate::context::{CliError, Context};
use crate::output;
use crate::workers_csv;

/// Release (un-exclude) workers, so they can take the lab's studies again
///
/// What to name (each flag repeats, and takes comma-separated ids):
///   --worker ID     released entirely: every participation the ledger holds for them.
///   --from-csv FILE the same, for each worker in the file (MTurk's batch-results CSV, a CSV
///                   with a WorkerId column, or one worker id per line; "-" reads stdin).
///   --hit ID        the workers of a HIT, found in the ledger, so this works long after MTurk
///                   disposed of the HIT. A worker who also took part in another HIT, or was
///                   excluded by hand, stays excluded (exclusion wins); the output names who was
///                   kept and why. Name several HITs at once to release them together.
///
/// The ledger is changed first (when, and why: --note or --reason, on the exclusion and on
/// every participation), then MTurk revokes the qualification. A stale redelivery of an old
/// notification does not exclude a released worker again; a new submission, or
/// `exclude --worker`, does.
///
/// No email: without --reason, MTurk revokes silently. With --reason, MTurk emails that text to
/// each released worker. --note records why in the ledger only, never sent to anyone.
///
/// All input is checked before anything is done: an invalid id, an unreadable file or a bad CSV
/// row stops the command (exit 2). Releasing more than --confirm-above workers asks first;
/// without a terminal that is a no (exit 5), so scripts pass --yes.
///
/// Exit codes: 0 done; 1 done in part (a failure, or an id the ledger does not know; each is
/// named, and running again retries only what is missing); 2 bad input, nothing done;
/// 3 environment; 5 not confirmed, nothing done.
#[derive(ClapArgs, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// A worker to release entirely (repeatable; comma-separated ids allowed).
    #[arg(long = "worker", value_name = "ID", value_delimiter = ',')]
    pub workers: Vec<String>,
    /// A HIT whose workers to release, unless they are excluded for another reason.
    #[arg(long = "hit", value_name = "ID", value_delimiter = ',')]
    pub hits: Vec<String>,
    /// A file of workers to release entirely ("-": stdin).
    #[arg(long = "from-csv", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Text MTurk EMAILS to each released worker. Leave it out to release silently.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Why, for the lab's own record: kept in the ledger, never sent.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
    /// Report who would be released and who kept; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask, however many workers are released.
    #[arg(long)]
    pub yes: bool,
    /// Ask before releasing more than this many workers.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub confirm_above: usize,
    /// Workers released at once (MTurk calls stay within --max-rps whatever this is).
    #[arg(long, default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=32))]
    pub concurrency: u16,
}

struct Input {
    /// Named directly (flags and files): released entirely.
    workers: Vec<WorkerId>,
    hits: Vec<HitId>,
}

impl Input {
    fn read(args: &Args) -> Result<Input, CliError> {
        let mut problems = Vec::new();
        let mut workers =
            workers_csv::parse_ids("--worker", &args.workers, WorkerId::parse, &mut problems);
        let hits = workers_csv::parse_ids("--hit", &args.hits, HitId::parse, &mut problems);
        for (flag, text) in [("--reason", &args.reason), ("--note", &args.note)] {
            if text.as_deref().is_some_and(|t| t.trim().is_empty()) {
                problems.push(format!("{flag} is empty: leave it out, or write the text"));
            }
        }
        let mut seen: HashSet<WorkerId> = workers.iter().cloned().collect();
        for path in &args.files {
            let file = workers_csv::read(path)?;
            for bad in file.bad {
                problems.push(format!("{} line {}: {}", bad.file, bad.line, bad.problem));
            }
            if file.rows.is_empty() {
                problems.push(format!("{}: no worker id in the file", file.name));
            }
            for row in file.rows {
                if seen.insert(row.worker.clone()) {
                    workers.push(row.worker);
                }
            }
        }
        if !problems.is_empty() {
            return Err(CliError::Usage(format!(
                "nothing was done; fix these and run again:\n  {}",
                problems.join("\n  ")
            )));
        }
        if workers.is_empty() && hits.is_empty() {
            return Err(CliError::Usage(
                "name whom to release: --worker, --hit or --from-csv (see --help)".into(),
            ));
        }
        Ok(Input { workers, hits })
    }
}

/// A worker about to be released.
struct Target {
    worker: WorkerId,
    /// Empty when named directly; else the released HITs they took part in.
    via_hits: Vec<HitId>,
    participations: usize,
    /// The ledger already says released: only MTurk's side is redone.
    already_released: bool,
}

#[derive(Debug, Serialize)]
struct Released {
    worker_id: String,
    /// "worker" (named, or in a file) or "hit".
    named_by: &'static str,
    hit_ids: Vec<String>,
    participations: usize,
    /// The ledger said released before this run; MTurk's side was redone.
    already_released: bool,
    /// "revoked", "not_held" (MTurk had no grant to revoke), or null in a dry run.
    mturk: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct Because {
    hit_id: Option<String>,
    assignment_id: Option<String>,
    learned_by: String,
    recorded_at: String,
}

#[derive(Debug, Serialize)]
struct Kept {
    worker_id: String,
    /// The released HITs they took part in.
    hit_ids: Vec<String>,
    reason: String,
    /// Participations, outside the released HITs, that still exclude them.
    still_excluded_by: Vec<Because>,
}

#[derive(Debug, Serialize)]
struct NotFound {
    /// "worker" or "hit".
    kind: &'static str,
    id: String,
    reason: String,
}

#[derive(Debug, Serialize)]
struct Failed {
    worker_id: String,
    /// "ledger" (nothing changed for this worker) or "mturk" (the ledger
    /// says released, MTurk still has the grant).
    step: &'static str,
    reason: String,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    released: usize,
    kept: usize,
    not_found: usize,
    failed: usize,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    dry_run: bool,
    /// Whether MTurk emails the reason to the released workers.
    reason_emailed: bool,
    summary: Summary,
    released: Vec<Released>,
    kept: Vec<Kept>,
    not_found: Vec<NotFound>,
    failed: Vec<Failed>,
}

pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode, CliError> {
    let input = Input::read(&args)?;
    let json = ctx.global.json;
    let excluder = ctx.excluder().await?;
    if let Some(reason) = &args.reason {
        let tense = if args.dry_run {
            "would email"
        } else {
            "emails"
        };
        // In full: this is exactly what workers will read.
        eprintln!(
            "warning: with --reason, MTurk {tense} this text to each released worker: \"{}\"",
            reason.escape_debug()
        );
    }
    let mut report = Report {
        dry_run: args.dry_run,
        reason_emailed: args.reason.is_some(),
        ..Report::default()
    };
    let targets = plan(&excluder, &input, &mut report).await?;

    if !args.dry_run && !args.yes && targets.len() > args.confirm_above {
        eprintln!(
            "About to release {} (more than --confirm-above {}); {} kept excluded.",
            workers(targets.len()),
            args.confirm_above,
            report.kept.len()
        );
        let question = format!(
            "Release {}{}?",
            workers(targets.len()),
            if args.reason.is_some() {
                " and email each of them the reason"
            } else {
                ""
            }
        );
        if !output::confirm(&question) {
            return Err(CliError::Aborted(format!(
                "not confirmed: nothing was changed (run with --dry-run to see the list, and pass \
                 --yes to release {} without asking)",
                workers(targets.len())
            )));
        }
    }

    let ledger_reason = match (&args.note, &args.reason) {
        (Some(note), Some(reason)) => Some(format!("{note} (worker was emailed: {reason})")),
        (Some(note), None) => Some(note.clone()),
        (None, Some(reason)) => Some(reason.clone()),
        (None, None) => None,
    };
    let bar = output::progress(targets.len() as u64, "releasing", json || args.dry_run);
    let done = stream::iter(targets)
        .map(|t| {
            let (excluder, bar) = (&excluder, &bar);
            let (ledger_reason, reason) = (ledger_reason.as_deref(), args.reason.as_deref());
            async move {
                // Without a note, a HIT's release still says why in the ledger.
                let why = match ledger_reason {
                    Some(r) => Some(r.to_owned()),
                    None if !t.via_hits.is_empty() => Some(format!(
                        "released with HIT {}",
                        t.via_hits
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", HIT ")
                    )),
                    None => None,
                };
                let result = if args.dry_run {
                    Ok(None)
                } else {
                    release(excluder, &t, why.as_deref(), reason)
                        .await
                        .map(Some)
                };
                bar.inc(1);
                (t, result)
            }
        })
        .buffer_unordered(usize::from(args.concurrency))
        .collect::<Vec<_>>()
        .await;
    bar.finish_and_clear();
    for (t, result) in done {
        match result {
            Ok(mturk) => report.released.push(Released {
                worker_id: t.worker.to_string(),
                named_by: if t.via_hits.is_empty() {
                    "worker"
                } else {
                    "hit"
                },
                hit_ids: t.via_hits.iter().map(ToString::to_string).collect(),
                participations: t.participations,
                already_released: t.already_released,
                mturk: mturk.map(|r| match r {
                    Revoked::Now => "revoked",
                    Revoked::NotHeld => "not_held",
                }),
            }),
            Err(f) => report.failed.push(f),
        }
    }
    report
        .released
        .sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
    report.failed.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
    report.summary = Summary {
        released: report.released.len(),
        kept: report.kept.len(),
        not_found: report.not_found.len(),
        failed: report.failed.len(),
    };
    print(&report, json)?;
    let s = &report.summary;
    let problems: Vec<String> = [(s.failed, "failed"), (s.not_found, "not found")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    if !problems.is_empty() {
        return Err(CliError::Partial(format!(
            "{} (each named above); the rest was {}",
            problems.join(", "),
            if args.dry_run {
                "checked"
            } else {
                "done, and running the same command again retries only what is missing"
            }
        )));
    }
    Ok(ExitCode::SUCCESS)
}

/// Decides, from the ledger alone and before changing anything, whom to
/// release and whom to keep. A ledger that cannot be read stops the command.
async fn plan(
    excluder: &Excluder,
    input: &Input,
    report: &mut Report,
) -> Result<Vec<Target>, CliError> {
    let ledger = excluder.ledger();
    let mut targets = Vec::new();
    let named: HashSet<&WorkerId> = input.workers.iter().collect();
    for worker in &input.workers {
        let participations = ledger.participations_of(worker).await?;
        let standing = ledger.exclusion(worker, excluder.qualification()).await?;
        if participations.is_empty() && standing.is_none() {
            report.not_found.push(NotFound {
                kind: "worker",
                id: worker.to_string(),
                reason: "the ledger has no record of this worker: never excluded through it \
                         (check the id; if an older script granted the qualification, run \
                         `reconcile` so the ledger learns of them, then release again)"
                    .into(),
            });
            continue;
        }
        targets.push(target(
            worker.clone(),
            Vec::new(),
            &participations,
            standing.map(|s| s.state),
        ));
    }

    let released_hits: HashSet<&HitId> = input.hits.iter().collect();
    // Worker → the released HITs they took part in.
    let mut from_hits: BTreeMap<WorkerId, BTreeSet<HitId>> = BTreeMap::new();
    for hit in &input.hits {
        let in_hit = ledger.participations_in_hit(hit).await?;
        if in_hit.is_empty() {
            report.not_found.push(NotFound {
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
        let participations = ledger.participations_of(&worker).await?;
        let others: Vec<&Participation> = participations
            .iter()
            .filter(|p| p.released_at.is_none())
            .filter(|p| p.hit_id.as_ref().is_none_or(|h| !released_hits.contains(h)))
            .collect();
        if others.is_empty() {
            let standing = ledger.exclusion(&worker, excluder.qualification()).await?;
            targets.push(target(
                worker,
                hits.into_iter().collect(),
                &participations,
                standing.map(|s| s.state),
            ));
        } else {
            report.kept.push(Kept {
                worker_id: worker.to_string(),
                hit_ids: hits.iter().map(ToString::to_string).collect(),
                reason: others
                    .iter()
                    .map(|p| why_kept(p))
                    .collect::<Vec<_>>()
                    .join("; "),
                still_excluded_by: others
                    .iter()
                    .map(|p| Because {
                        hit_id: p.hit_id.as_ref().map(ToString::to_string),
                        assignment_id: p.assignment_id.as_ref().map(ToString::to_string),
                        learned_by: p.learned_by.clone(),
                        recorded_at: p.recorded_at.clone(),
                    })
                    .collect(),
            });
        }
    }
    Ok(targets)
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

fn why_kept(p: &Participation) -> String {
    match (&p.hit_id, &p.assignment_id, p.learned_by.as_str()) {
        (Some(hit), Some(a), _) => format!("also took part in HIT {hit} (assignment {a})"),
        (_, _, "manual") => format!("excluded by hand (exclude --worker) at {}", p.recorded_at),
        (_, _, "reconcile") => format!(
            "found holding the qualification on MTurk by reconcile at {}",
            p.recorded_at
        ),
        (_, _, other) => format!(
            "another participation (learned by {other}) at {}",
            p.recorded_at
        ),
    }
}

/// Ledger first, so no stale event re-grants; then MTurk. A ledger already
/// saying released only has MTurk's side redone, which repairs an earlier
/// run whose revoke failed.
async fn release(
    excluder: &Excluder,
    t: &Target,
    ledger_reason: Option<&str>,
    reason: Option<&str>,
) -> Result<Revoked, Failed> {
    let failed = |step, reason: String| Failed {
        worker_id: t.worker.to_string(),
        step,
        reason,
    };
    if !t.already_released {
        excluder
            .record_release(&t.worker, ledger_reason)
            .await
            .map_err(|e| {
                failed(
                    "ledger",
                    format!("{e}; nothing was changed for this worker"),
                )
            })?;
    }
    excluder
        .mturk()
        .release(&t.worker, excluder.qualification(), reason)
        .await
        .map_err(|e| {
            failed(
                "mturk",
                format!(
                    "{e}; the ledger records the release, but MTurk may still hold the \
                     qualification: run the same release again (it retries only the revoke), or \
                     `reconcile` to see"
                ),
            )
        })
}

fn workers(n: usize) -> String {
    if n == 1 {
        "1 worker".into()
    } else {
        format!("{n} workers")
    }
}

fn print(report: &Report, json: bool) -> Result<(), CliError> {
    if json {
        return output::print_json(report);
    }
    let verb = if report.dry_run {
        "Would release"
    } else {
        "Released"
    };
    for r in &report.released {
        let how = if r.hit_ids.is_empty() {
            "named".to_owned()
        } else {
            format!("only took part in HIT {}", r.hit_ids.join(", HIT "))
        };
        let mturk = match r.mturk {
            Some("revoked") if report.reason_emailed => "; MTurk revoked, reason emailed",
            Some("revoked") => "; MTurk revoked, no email",
            Some(_) => "; MTurk had no grant to revoke",
            None => "",
        };
        let already = if r.already_released {
            "; the ledger already said released"
        } else {
            ""
        };
        println!("{verb} {} ({how}{already}{mturk})", r.worker_id);
    }
    for k in &report.kept {
        println!("Kept {} excluded: {}", k.worker_id, k.reason);
    }
    for n in &report.not_found {
        let kind = if n.kind == "hit" { "HIT" } else { "worker" };
        println!("Not found: {kind} {}: {}", n.id, n.reason);
    }
    for f in &report.failed {
        println!(
            "Failed: {} at the {} step: {}",
            f.worker_id, f.step, f.reason
        );
    }
    let s = &report.summary;
    println!();
    if report.dry_run {
        println!("Dry run: nothing was changed.");
    }
    println!(
        "{}: {}; kept excluded: {}; not found: {}; failed: {}.",
        verb,
        workers(s.released),
        s.kept,
        s.not_found,
        s.failed
    );
    Ok(())
}
