//! `mturk-exclusion`: the lab's admin CLI.
//!
//! Thin: each command parses its arguments into ids at the boundary, then
//! calls the library's ledger, MTurk wrapper and `Excluder`, the same path
//! the Lambda takes. `main` returns an exit code scripts can trust; errors
//! print with their whole cause chain.

mod commands;
mod context;
mod output;
mod workers_csv;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use context::{CliError, Context, Global};

/// `--version`: the release and the commit it was built from (crates/cli/build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("MTURK_EXCLUSION_COMMIT"),
    ")"
);

/// Keep workers out of a lab's future studies: exclude, release, reconcile
/// and export the lab's ledger of who took part, and set up the MTurk
/// notifications that the exclusion Lambda acts on.
///
/// Exit codes: 0 done; 1 done in part (some items failed, each is named);
/// 2 bad input (nothing done); 3 environment problem (credentials, account,
/// missing table, queue or qualification); 4 a check failed (subscribe's
/// round trip, reconcile's differences); 5 aborted at a confirmation.
#[derive(Parser)]
#[command(
    name = "mturk-exclusion",
    version = VERSION,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Init(commands::init::Args),
    Try(commands::try_path::Args),
    Subscribe(commands::subscribe::Args),
    Unsubscribe(commands::subscribe::UnsubscribeArgs),
    Requirement(commands::requirement::Args),
    Exclude(commands::exclude::Args),
    Release(commands::release::Args),
    ClearClaim(commands::claims::Args),
    Status(commands::status::Args),
    Coverage(commands::coverage::Args),
    Adopt(commands::adopt::Args),
    Export(commands::export::Args),
    Report(commands::report::Args),
    Reconcile(commands::reconcile::Args),
    Redrive(commands::redrive::Args),
    Guard(commands::guard::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            output::print_error(&err);
            ExitCode::from(err.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    // `requirement` needs no AWS, or only the stack's outputs.
    if let Command::Requirement(args) = cli.command {
        return commands::requirement::run(&cli.global, args).await;
    }
    // `guard` reads at most the stack's CheckUrl output.
    if let Command::Guard(args) = cli.command {
        return commands::guard::run(&cli.global, args).await;
    }
    let ctx = Context::connect(cli.global).await?;
    match cli.command {
        Command::Init(args) => commands::init::run(&ctx, args).await,
        Command::Try(args) => commands::try_path::run(&ctx, args).await,
        Command::Subscribe(args) => commands::subscribe::run(&ctx, args).await,
        Command::Unsubscribe(args) => commands::subscribe::run_unsubscribe(&ctx, args).await,
        Command::Requirement(_) | Command::Guard(_) => unreachable!("handled above"),
        Command::Exclude(args) => commands::exclude::run(&ctx, args).await,
        Command::Release(args) => commands::release::run(&ctx, args).await,
        Command::ClearClaim(args) => commands::claims::run(&ctx, args).await,
        Command::Status(args) => commands::status::run(&ctx, args).await,
        Command::Coverage(args) => commands::coverage::run(&ctx, args).await,
        Command::Adopt(args) => commands::adopt::run(&ctx, args).await,
        Command::Export(args) => commands::export::run(&ctx, args).await,
        Command::Report(args) => commands::report::run(&ctx, args).await,
        Command::Reconcile(args) => commands::reconcile::run(&ctx, args).await,
        Command::Redrive(args) => commands::redrive::run(&ctx, args).await,
    }
}
