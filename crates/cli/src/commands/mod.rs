//! One module per command: its arguments (with the `--help` that teaches
//! it) and its `run`.

pub mod adopt;
pub mod claims;
pub mod coverage;
pub mod exclude;
pub mod export;
pub mod guard;
pub mod init;
pub mod reconcile;
pub mod redrive;
pub mod release;
pub mod report;
pub mod requirement;
pub mod status;
pub mod subscribe;
pub mod try_path;
