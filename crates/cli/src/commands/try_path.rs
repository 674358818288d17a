//! `try`: a first sandbox study, to see the path work from an empty account.
//! What it posts is `ops::sandbox`'s; this refuses production and prints.

use std::process::ExitCode;

use clap::Args as ClapArgs;
use mturk_exclusion::mturk::MturkEnvironment;
use mturk_exclusion::ops::sandbox::{self, SandboxError};

use crate::context::{CliError, Context};
use crate::output;

/// Post a sandbox HIT that carries the pool's requirement, to try the path before a first study.
///
/// The HIT's type is subscribed too. Open the printed link as a sandbox
/// worker, accept and submit the HIT, then run `mturk-exclusion status` a
/// few seconds later: your worker id is excluded, and the HIT is no longer
/// offered to you.
///
/// Sandbox only (`--sandbox`, or a stack whose MTurkEnvironment is sandbox):
/// sandbox workers are paid nothing. The HIT stays up a day, for up to 9
/// sandbox workers, and asks one question. Each run posts a new HIT.
///
/// Exit codes: 0 posted and subscribed; 1 posted, but its HIT type could not
/// be subscribed (the watch subscribes it within WatchMinutes); 2 production
/// (refused, nothing posted); 3 environment (credentials, table, queue or
/// qualification not found).
#[derive(ClapArgs, Debug)]
pub struct Args {}

pub async fn run(ctx: &Context, _args: Args) -> Result<ExitCode, CliError> {
    if ctx.environment != MturkEnvironment::Sandbox {
        return Err(CliError::Usage(
            "`try` posts a HIT for sandbox workers only; run it with --sandbox (or against a \
             sandbox stack)"
                .into(),
        ));
    }
    let lab = ctx.lab().await?;
    let queue_url = ctx.queue_url()?.to_owned();
    let study = sandbox::post_study(&lab, &queue_url)
        .await
        .map_err(|e| match e {
            SandboxError::Mturk(e) => CliError::from(e),
            SandboxError::Ledger(e) => CliError::from(e),
        })?;
    if ctx.global.json {
        output::print_json(&study)?;
    } else {
        println!(
            "Posted sandbox HIT {} (HIT type {}).",
            study.hit_id, study.hit_type_id
        );
        println!("Take it as a sandbox worker: {}", study.worker_link);
        println!("Then, a few seconds after you submit: mturk-exclusion status");
    }
    match study.subscribe_error {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => Err(CliError::Partial(format!(
            "the HIT is up, but MTurk refused to subscribe its HIT type ({e}); the watch \
             subscribes it within WatchMinutes, or run `mturk-exclusion subscribe {}`",
            study.hit_type_id
        ))),
    }
}
