//! `coverage`: which of the lab's live HITs keep excluded workers out, and
//! whether their HIT types reach the queue; `--fix` guards the unguarded.

use std::process::ExitCode;

use clap::Args as ClapArgs;
use mturk_exclusion::ledger::SubscribedBy;
use mturk_exclusion::ops::coverage::{
    self, Class, FixPlan, FixReport, PoolLists, Survey, SurveyError,
};
use mturk_exclusion::ops::history;
use serde::Serialize;

use crate::context::{CliError, Context};
use crate::output;

/// List every live HIT: ours, another list's or unguarded, and subscribed or not
///
/// Each live (Assignable) HIT of the account is sorted by its qualification
/// requirements against this pool's qualification:
///   ours            it requires this pool's qualification with DoesNotExist:
///                   the workers this pool excluded cannot find it;
///   another list's  it requires another qualification with DoesNotExist
///                   (another pool's, say): left alone;
///   unguarded       no DoesNotExist requirement at all: workers this pool
///                   excluded CAN take it.
/// Its HIT type is shown subscribed (by the lab's `subscribe` or by the
/// watch, and when) or not. The watch (the stack's exclusion-watch function)
/// subscribes missing HIT types every WatchMinutes by itself; HIT types you
/// unsubscribed stay unsubscribed.
///
/// Subscribing takes over a HIT type's notification destination from any
/// other tool of the lab that uses MTurk notifications (MTurk keeps one per
/// HIT type and cannot show it). To keep another tool's: `mturk-exclusion
/// unsubscribe HIT_TYPE_ID`, or deploy with CoverUnguardedHits=false.
///
/// --fix guards the live unguarded HITs: for each of their HIT types it makes
/// one with the same title, description, reward, durations, keywords and
/// requirements plus this pool's qualification with DoesNotExist
/// (DiscoverPreviewAndAccept), moves each HIT to it (UpdateHITTypeOfHIT:
/// workers already holding an assignment keep it) and subscribes the new
/// HIT type, whose earlier submissions the watch then excludes. It shows the
/// plan first and asks; without a terminal that is a no (exit 5), so
/// scripts pass --yes. --fix --dry-run shows the plan and changes nothing.
/// A HIT's earlier submissions stay the lab's history when the requirement
/// is added later (see `adopt`).
///
/// History: the watch excludes the workers of every HIT type it covers from
/// the pool's start on, and earlier ones only of HITs this pool's qualification
/// guarded; it leaves the rest for `adopt`. Each HIT type's history left
/// out is shown with its subscription.
///
/// --first-run, before the first deploy (no stack or table needed, only
/// --qualification from `init`): what the watch's first run will do if the
/// stack is deployed now: which HIT types it subscribes, how many earlier
/// workers it excludes, and what history it leaves out. Give it the
/// CoverUnguardedHits and GuardUnguardedHits you will deploy with. It reads
/// MTurk (every HIT's submissions) and writes nothing.
///
/// Examples:
///   mturk-exclusion --stack mturk-exclusion coverage
///   mturk-exclusion --stack mturk-exclusion coverage --fix
///   mturk-exclusion --stack mturk-exclusion coverage --fix --yes --json
///   mturk-exclusion --production --qualification 3QUALID coverage --first-run
///
/// Exit codes: 0 every live HIT is guarded (or --fix guarded them all;
/// --first-run: predicted); 1 some live HITs are unguarded (listed), or
/// --fix failed for some (named), or --first-run could not list some HITs;
/// 3 environment; 5 --fix not confirmed, nothing changed.
#[derive(ClapArgs, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Add this pool's requirement to the live unguarded HITs (asks first).
    #[arg(long)]
    pub fix: bool,
    /// With --fix: show the plan, change nothing.
    #[arg(long, requires = "fix")]
    pub dry_run: bool,
    /// With --fix: do not ask.
    #[arg(long, requires = "fix")]
    pub yes: bool,
    /// Before the first deploy: predict the watch's first run (writes nothing).
    #[arg(long, conflicts_with = "fix")]
    pub first_run: bool,
    /// With --first-run: the CoverUnguardedHits you will deploy with.
    #[arg(long, value_name = "BOOL", default_value_t = true, requires = "first_run",
          action = clap::ArgAction::Set)]
    pub cover_unguarded: bool,
    /// With --first-run: the GuardUnguardedHits you will deploy with.
    #[arg(long, value_name = "BOOL", default_value_t = false, requires = "first_run",
          action = clap::ArgAction::Set)]
    pub guard_unguarded: bool,
}

#[derive(Serialize)]
struct Output<'a> {
    #[serde(flatten)]
    survey: &'a Survey,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<&'a FixPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fixed: Option<&'a FixReport>,
    dry_run: bool,
}

pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode, CliError> {
    if args.first_run {
        return first_run(ctx, &args).await;
    }
    let json = ctx.global.json;
    let lab = ctx.lab().await?;
    let survey = coverage::survey(&lab.mturk, &lab.ledger, &lab.qualification)
        .await
        .map_err(|e| match e {
            SurveyError::Mturk(e) => CliError::from(e),
            SurveyError::Ledger(e) => CliError::from(e),
        })?;
    let unguarded = survey.counts.live_unguarded;
    if !args.fix {
        if json {
            output::print_json(&Output {
                survey: &survey,
                plan: None,
                fixed: None,
                dry_run: false,
            })?;
        } else {
            print_survey(&survey);
        }
        return if unguarded > 0 {
            Err(CliError::Partial(format!(
                "{unguarded} live HIT(s) are unguarded: `coverage --fix` adds this pool's requirement to them"
            )))
        } else {
            Ok(ExitCode::SUCCESS)
        };
    }

    let queue_url = ctx.queue_url()?.to_owned();
    let plan = coverage::plan_fix(survey.live.iter().map(|l| &l.hit), &survey.lists);
    if !json {
        print_survey(&survey);
        print_plan(&plan, lab.qualification.as_str());
    }
    if plan.hit_types.is_empty() || args.dry_run {
        if json {
            output::print_json(&Output {
                survey: &survey,
                plan: Some(&plan),
                fixed: None,
                dry_run: args.dry_run,
            })?;
        } else if args.dry_run {
            println!("\nDry run: nothing was changed.");
        }
        return if plan.cannot.is_empty() {
            Ok(ExitCode::SUCCESS)
        } else {
            Err(CliError::Partial(format!(
                "{} live HIT(s) cannot be guarded this way (each is named above)",
                plan.cannot.len()
            )))
        };
    }
    if !args.yes {
        let question = format!(
            "Change {} live HIT(s) of {} HIT type(s) to require this pool's qualification?",
            plan.hits(),
            plan.hit_types.len()
        );
        if !output::confirm(&question) {
            return Err(CliError::Aborted(
                "not confirmed: nothing was changed (run with --dry-run to see the plan, and pass --yes to fix without asking)".into(),
            ));
        }
    }
    let fixed = coverage::fix(
        &lab.mturk,
        &lab.ledger,
        &lab.qualification,
        &plan,
        &queue_url,
        SubscribedBy::Lab,
    )
    .await?;
    if json {
        output::print_json(&Output {
            survey: &survey,
            plan: Some(&plan),
            fixed: Some(&fixed),
            dry_run: false,
        })?;
    } else {
        print_fixed(&fixed);
    }
    let failed = fixed.failed() + plan.cannot.len();
    if failed > 0 {
        return Err(CliError::Partial(format!(
            "{failed} HIT(s) or HIT type(s) were not fixed (each is named above); running the same command again retries them"
        )));
    }
    Ok(ExitCode::SUCCESS)
}

/// `--first-run`: the watch's first run, predicted on an empty ledger with
/// the start now.
async fn first_run(ctx: &Context, args: &Args) -> Result<ExitCode, CliError> {
    if ctx.global.stack.is_some() {
        return Err(CliError::Usage(
            "--first-run predicts a pool not deployed yet (its start is now, its ledger empty); \
             for the stack's pool, `coverage` and `status` show what the watch did"
                .into(),
        ));
    }
    let json = ctx.global.json;
    let pool = ctx.checked_qualification().await?;
    let covering = history::Covering {
        cover_unguarded: args.cover_unguarded,
        guard_unguarded: args.guard_unguarded,
    };
    let bar = output::Bar::new(json);
    let predicted = history::first_run(
        &ctx.mturk,
        &PoolLists::own(pool),
        covering,
        time::OffsetDateTime::now_utc(),
        &bar,
    )
    .await?;
    if json {
        output::print_json(&predicted)?;
    } else {
        print_first_run(&predicted, covering);
    }
    if predicted.failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(CliError::Partial(format!(
            "the submissions of {} HIT(s) could not be listed (each is named above): the prediction leaves them out",
            predicted.failures.len()
        )))
    }
}

/// What the first run does with one HIT type, in words.
fn first_run_line(t: &history::FirstRunType) -> String {
    let mut parts = Vec::new();
    if t.covered {
        parts.push("subscribed".to_owned());
    }
    if t.guarded_hits > 0 {
        parts.push(format!(
            "guards {} live HIT(s) into a new HIT type, subscribed",
            t.guarded_hits
        ));
    }
    if parts.is_empty() {
        return match t.class {
            Class::OtherList => "left alone (another list's)".to_owned(),
            _ => "not covered (CoverUnguardedHits=false)".to_owned(),
        };
    }
    parts.push(format!(
        "excludes {} worker(s) of {} earlier submission(s)",
        t.workers, t.submissions
    ));
    if !t.left_out.is_empty() {
        parts.push(format!(
            "leaves out {} submission(s) to {} HIT(s) as history",
            t.left_out.submissions, t.left_out.hits
        ));
    }
    parts.join("; ")
}

fn print_first_run(p: &history::FirstRun, covering: history::Covering) {
    println!(
        "The watch's first run, if the stack is deployed now (CoverUnguardedHits={}, GuardUnguardedHits={}):",
        covering.cover_unguarded, covering.guard_unguarded
    );
    for t in &p.hit_types {
        let what = first_run_line(t);
        println!(
            "  {:<15} type {}  {} HIT(s)  \"{}\": {what}",
            t.class.label(),
            t.hit_type_id,
            t.hits,
            t.title.as_deref().unwrap_or("")
        );
    }
    for f in &p.failures {
        println!(
            "  could not list HIT {}: {}",
            f.hit_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            f.reason
        );
    }
    println!(
        "\nIn all: subscribes {} HIT type(s); excludes {} worker(s) of {} submission(s); leaves out {} submission(s) to {} HIT(s), which `adopt` can take in later.",
        p.subscribed, p.workers, p.submissions, p.left_out.submissions, p.left_out.hits
    );
}

fn print_survey(s: &Survey) {
    let c = &s.counts;
    println!(
        "{} HIT(s) listed: {} ours, {} another list's, {} unguarded ({} of them live).",
        c.hits, c.ours, c.other_list, c.unguarded, c.live_unguarded
    );
    if !s.carried_lists.is_empty() {
        println!(
            "Earlier lists carried into this pool (HITs they guard count as ours): {}",
            super::exclude::joined(&s.carried_lists, ", ")
        );
    }
    if !s.history_left_out.is_empty() {
        println!(
            "History left out by the watch: {} submission(s) to {} HIT(s), from before the pool's start (`adopt --dry-run` shows them).",
            s.history_left_out.submissions, s.history_left_out.hits
        );
    }
    if c.odd_requirements > 0 {
        println!(
            "{} requirement(s) on {} HIT(s) hold odd values (unknown comparators, missing values, locales); they are sorted like the rest.",
            c.odd_requirements, c.hits_with_odd_requirements
        );
    }
    if s.live.is_empty() {
        println!("No live HIT.");
        return;
    }
    println!(
        "\nLive HITs (pool qualification {}):",
        s.qualification_type_id
    );
    for l in &s.live {
        let sub = match &l.subscription {
            None => "not subscribed".to_owned(),
            Some(sub) if !sub.active => "unsubscribed by the lab".to_owned(),
            Some(sub) => format!(
                "subscribed by the {}{}{}",
                sub.by,
                sub.subscribed_at
                    .as_deref()
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default(),
                if sub.backfill_due {
                    ", backfill due".to_owned()
                } else if !sub.history_left_out.is_empty() {
                    format!(
                        ", history left out: {} submission(s)",
                        sub.history_left_out.submissions
                    )
                } else {
                    String::new()
                }
            ),
        };
        println!(
            "  {:<15} HIT {}  type {}  {}  \"{}\"",
            l.class.label(),
            l.hit_id,
            l.hit_type_id,
            sub,
            l.title.as_deref().unwrap_or("")
        );
    }
    if s.live.iter().any(|l| l.class == Class::Unguarded) {
        println!(
            "\nUnguarded HITs admit workers this pool excluded. `coverage --fix` adds the requirement \
             (shows the plan, asks first); or add it where the HIT was made. Subscribing a HIT type \
             takes over its notifications from any other tool: `unsubscribe HIT_TYPE_ID` gives them back."
        );
    }
}

fn print_plan(plan: &FixPlan, qualification: &str) {
    println!();
    if plan.hit_types.is_empty() && plan.cannot.is_empty() {
        println!("Nothing to fix: no live HIT is unguarded.");
        return;
    }
    for t in &plan.hit_types {
        println!(
            "Plan: HIT type {} (\"{}\"): a new HIT type with the same properties plus {qualification} DoesNotExist (DiscoverPreviewAndAccept); move HIT {} to it; subscribe it.",
            t.hit_type_id,
            t.title.as_deref().unwrap_or(""),
            super::exclude::joined(&t.hit_ids, ", HIT ")
        );
    }
    for c in &plan.cannot {
        println!(
            "Cannot fix HIT {} (type {}): {}",
            c.hit_id, c.hit_type_id, c.reason
        );
    }
}

fn print_fixed(fixed: &FixReport) {
    for h in &fixed.hits {
        match (&h.error, &h.new_hit_type_id) {
            (None, Some(t)) => println!("Guarded HIT {}: now HIT type {t}", h.hit_id),
            (Some(e), _) => println!("Failed: HIT {}: {e}", h.hit_id),
            (None, None) => {}
        }
    }
    for s in &fixed.subscribed {
        match &s.error {
            None => println!("Subscribed HIT type {}", s.hit_type_id),
            Some(e) => println!("Failed to subscribe HIT type {}: {e}", s.hit_type_id),
        }
    }
    for m in &fixed.marked_due {
        println!(
            "HIT type {} was subscribed already: its backfill is due again, for the moved HITs' earlier submissions (the watch's next run does it)",
            m.hit_type_id
        );
    }
    println!(
        "\nGuarded {} HIT(s); {} failure(s).",
        fixed.guarded(),
        fixed.failed()
    );
}
