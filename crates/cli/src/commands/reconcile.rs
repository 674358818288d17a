//! `reconcile`: the ledger and MTurk, compared both ways, and put back in
//! agreement on request.
//!
//! The ledger is read before MTurk. The Lambda grants before it records an
//! exclusion and `release` records before it revokes, so in that order a
//! worker excluded or released while reconcile runs cannot make the two
//! reads disagree for long; every difference is then read again, consistently,
//! before it is reported and again before it is fixed, which also covers the
//! lag of the ledger's `Excluded` index.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Args as ClapArgs;
use mturk_exclusion::ids;
use mturk_exclusion::ledger::stamp;
use mturk_exclusion::ops::reconcile::{self, Applied, Comparison, Kind};
use serde::Serialize;

use crate::context::{CliError, Context};
use crate::output;

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
/// --dry-run says so explicitly. With --apply the differences are shown
/// first and the fix asks for confirmation, like `release`; without a
/// terminal that is a no (exit 5), so scripts pass --yes. The report names
/// worker ids, which are personal data.
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
/// or MTurk cannot be read; 5 --apply not confirmed, nothing changed.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Fix every difference: grant (silently), record in the ledger, or
    /// revoke (without a reason, so no email).
    #[arg(long, conflicts_with = "dry_run")]
    pub apply: bool,
    /// Report only and change nothing (the default without --apply).
    #[arg(long)]
    pub dry_run: bool,
    /// With --apply: fix without asking first.
    #[arg(long, requires = "apply")]
    pub yes: bool,
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

pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode, CliError> {
    let lab = ctx.lab().await?;
    let json = ctx.global.json;
    let compared = reconcile::compare(&lab, &output::Bar::new(json))
        .await
        .map_err(|e| match e {
            reconcile::CompareError::Ledger(e) => CliError::from(e),
            reconcile::CompareError::Mturk(e) => CliError::from(e),
        })?;
    let mut report = report(ctx, lab.qualification.as_str(), &compared);
    let n = compared.differences.len();
    if args.apply && n > 0 && !args.yes {
        // The plan, where a person at the prompt reads it.
        eprint!("{}", render_text(&report));
        let question = format!("\nFix {}?", plural(n, "difference", "differences"));
        if !output::confirm(&question) {
            return Err(CliError::Aborted(
                "not confirmed: nothing was changed (pass --yes to fix without asking)".into(),
            ));
        }
    }
    if args.apply {
        report.applied =
            Some(reconcile::apply(&lab, &compared.differences, &output::Bar::new(json)).await);
    }
    if json {
        output::print_json(&report)?;
    } else {
        print!("{}", render_text(&report));
    }
    verdict(&report)
}

fn report(ctx: &Context, q: &str, c: &Comparison) -> Report {
    let of = |kind| c.differences.iter().filter(move |d| d.kind == kind);
    Report {
        qualification_type_id: q.to_owned(),
        environment: ctx.environment_name(),
        ledger_excluded: c.ledger_excluded,
        mturk_granted: c.mturk_granted,
        agree: c.agree,
        only_in_ledger: of(Kind::OnlyInLedger)
            .map(|d| OnlyInLedger {
                worker_id: d.worker.to_string(),
                excluded_at: d.exclusion.as_ref().and_then(|x| x.excluded_at.map(stamp)),
                excluded_because: d
                    .exclusion
                    .as_ref()
                    .and_then(|x| x.excluded_because.clone()),
            })
            .collect(),
        only_on_mturk: of(Kind::OnlyOnMturk)
            .map(|d| OnlyOnMturk {
                worker_id: d.worker.to_string(),
                ledger_participations: d.participations,
                waiting_participations: d.waiting,
            })
            .collect(),
        released_but_held: of(Kind::ReleasedButHeld)
            .map(|d| ReleasedButHeld {
                worker_id: d.worker.to_string(),
                released_at: d.exclusion.as_ref().and_then(|x| x.released_at.map(stamp)),
            })
            .collect(),
        odd_ids: c.odd_ids.clone(),
        applied: None,
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn render_text(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Qualification {} in MTurk {}: {} excluded in the ledger, {} holding it on MTurk.",
        r.qualification_type_id, r.environment, r.ledger_excluded, r.mturk_granted
    );
    let _ = writeln!(
        out,
        "The two sides agree on {}.",
        plural(r.agree, "worker", "workers")
    );
    if !r.only_in_ledger.is_empty() {
        let _ = writeln!(
            out,
            "\nExcluded in the ledger but not holding the qualification on MTurk ({}):",
            r.only_in_ledger.len()
        );
        let _ = writeln!(
            out,
            "  A grant was lost, or the qualification was revoked outside this tool."
        );
        let _ = writeln!(
            out,
            "  These workers can see the lab's HITs now. --apply grants again, silently."
        );
        for w in &r.only_in_ledger {
            let _ = writeln!(
                out,
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
        let _ = writeln!(
            out,
            "\nHolding the qualification on MTurk but not excluded in the ledger ({}):",
            r.only_on_mturk.len()
        );
        let _ = writeln!(
            out,
            "  Granted by an older script or by hand, or a grant the ledger never recorded."
        );
        let _ = writeln!(
            out,
            "  --apply records them in the ledger; MTurk is not called."
        );
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
            let _ = writeln!(out, "  {}  {known}", w.worker_id);
        }
    }
    if !r.released_but_held.is_empty() {
        let _ = writeln!(
            out,
            "\nReleased in the ledger but still holding the qualification on MTurk ({}):",
            r.released_but_held.len()
        );
        let _ = writeln!(
            out,
            "  The revoke after the release failed; they are still kept out of the lab's HITs."
        );
        let _ = writeln!(
            out,
            "  --apply revokes, without a reason, so MTurk sends no email."
        );
        for w in &r.released_but_held {
            let _ = writeln!(
                out,
                "  {}  released {}",
                w.worker_id,
                w.released_at.as_deref().unwrap_or("(no time recorded)")
            );
        }
    }
    if !r.odd_ids.is_empty() {
        let _ = writeln!(
            out,
            "\nIds MTurk listed as holding the qualification that are not worker ids ({}):",
            r.odd_ids.len()
        );
        let _ = writeln!(out, "  Not acted on; look them up on MTurk.");
        for raw in &r.odd_ids {
            let _ = writeln!(out, "  {}", ids::shown(raw));
        }
    }
    if let Some(a) = &r.applied {
        let _ = writeln!(out);
        for w in &a.granted {
            let _ = writeln!(out, "granted   {w} (SendNotification=false)");
        }
        for w in &a.recorded {
            let _ = writeln!(out, "recorded  {w} (ledger only)");
        }
        for w in &a.revoked {
            let _ = writeln!(out, "revoked   {w} (no reason, no email)");
        }
        for n in &a.skipped {
            let _ = writeln!(out, "skipped   {}: {}", n.worker_id, n.reason);
        }
        for n in &a.failed {
            let _ = writeln!(out, "FAILED    {}: {}", n.worker_id, n.reason);
        }
    }
    out
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
