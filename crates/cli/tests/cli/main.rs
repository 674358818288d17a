//! The admin CLI, the real binary, against DynamoDB Local, the SQS stand-in,
//! the MTurk double and the in-process handler. One test binary; the rules
//! the commands call are tested without the binary in the library's tests.

mod exclude;
mod export;
mod reconcile;
mod redrive;
mod release;
mod report;
mod setup;
mod status;
mod subscribe;

use testkit::pipeline::{CliRun, Pipeline};

const BINARY: &str = env!("CARGO_BIN_EXE_mturk-exclusion");

/// Runs this crate's `mturk-exclusion` binary against a pipeline.
pub(crate) trait CliExt {
    async fn cli(&self, args: &[&str]) -> CliRun;
    async fn cli_with_env(&self, args: &[&str], env: &[(&str, Option<&str>)]) -> CliRun;
    async fn cli_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> CliRun;
}

impl CliExt for Pipeline {
    async fn cli(&self, args: &[&str]) -> CliRun {
        self.run_cli(BINARY, args, &[], None).await
    }
    async fn cli_with_env(&self, args: &[&str], env: &[(&str, Option<&str>)]) -> CliRun {
        self.run_cli(BINARY, args, env, None).await
    }
    async fn cli_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> CliRun {
        self.run_cli(BINARY, args, &[], stdin).await
    }
}
