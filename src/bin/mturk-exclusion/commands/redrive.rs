//! `redrive`: being written.

use std::process::ExitCode;

use clap::Args as ClapArgs;

use crate::context::{CliError, Context};

/// (being written)
#[derive(ClapArgs, Debug)]
pub struct Args {}

pub async fn run(_ctx: &Context, _args: Args) -> Result<ExitCode, CliError> {
    Err(CliError::Usage("not written yet".into()))
}
