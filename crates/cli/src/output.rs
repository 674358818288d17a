//! Printing: text for people, JSON for scripts, progress on stderr.

use std::io::{IsTerminal, Write as _};
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use mturk_exclusion::ops::Progress;

use crate::context::CliError;

/// Prints an error with its whole cause chain and, if it has one, a hint.
pub fn print_error(err: &CliError) {
    eprint!("{}", render_error(err));
}

/// The error, its causes and its hint, one line each. A cause that says
/// what the line above already said is left out: a headline is often its
/// source's own message, and printing it twice reads as two failures.
pub fn render_error(err: &CliError) -> String {
    let mut text = format!("error: {err}\n");
    let mut shown = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let line = cause.to_string();
        if line != shown {
            text.push_str(&format!("  caused by: {line}\n"));
            shown = line;
        }
        source = cause.source();
    }
    if let Some(hint) = err.hint() {
        text.push_str(&format!("  what to do: {hint}\n"));
    }
    text
}

/// Prints `value` as JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Usage(format!("could not render JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// A progress bar on stderr when a person is watching, nothing otherwise.
pub fn progress(len: u64, what: &str, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// [`progress`] as the library's operations report it: each `start` puts
/// up a new bar.
pub struct Bar {
    bar: std::sync::Mutex<ProgressBar>,
    quiet: bool,
}

impl Bar {
    /// `quiet`: no bar at all (JSON output, dry runs).
    pub fn new(quiet: bool) -> Bar {
        Bar {
            bar: std::sync::Mutex::new(ProgressBar::hidden()),
            quiet,
        }
    }

    fn current(&self) -> ProgressBar {
        // A handle: cloning it shares the bar.
        self.bar.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Progress for Bar {
    fn start(&self, len: u64, what: &str) {
        *self.bar.lock().unwrap_or_else(|p| p.into_inner()) = progress(len, what, self.quiet);
    }
    fn inc(&self) {
        self.current().inc(1);
    }
    fn message(&self, text: String) {
        self.current().set_message(text);
    }
    fn finish(&self) {
        self.current().finish_and_clear();
    }
}

/// Asks a yes/no question on the terminal. Without a terminal, the answer
/// is no: a script must say `--yes`.
pub fn confirm(question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
}

pub fn exists(path: &Path) -> CliError {
    CliError::Usage(format!(
        "{} already exists; nothing was written (pass --force to overwrite it)",
        path.display()
    ))
}

/// Writes a new file readable by its owner only. With `force`, the new file
/// is written beside `path` and renamed over it: the old file's mode, and
/// whatever a symlink at `path` points to, are left alone.
pub fn write_private(path: &Path, bytes: &[u8], force: bool) -> Result<(), CliError> {
    let failed = |e: std::io::Error| CliError::Environment {
        message: format!("could not write {}: {e}", path.display()),
        hint: Some("check that the directory exists and is writable".into()),
        source: Some(Box::new(e)),
    };
    if !force {
        return match create_private(path) {
            Ok(file) => fill(file, bytes).map_err(failed),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists(path)),
            Err(e) => Err(failed(e)),
        };
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = create_private(&temp)
        .and_then(|file| fill(file, bytes))
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(failed(e));
    }
    Ok(())
}

/// A new file (never an existing one, never through a symlink), mode 0600
/// whatever the umask: exports and reports may hold personal data.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn fill(mut file: std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
    file.write_all(bytes).and_then(|()| file.sync_all())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_that_repeats_the_headline_is_printed_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("ledger GetItem(exclusion): could not reach DynamoDB")]
        struct Headline(#[source] std::io::Error);
        let err = CliError::Environment {
            message: "ledger GetItem(exclusion): could not reach DynamoDB".into(),
            hint: Some("check the network".into()),
            source: Some(Box::new(Headline(std::io::Error::other(
                "connection refused",
            )))),
        };
        let text = render_error(&err);
        assert_eq!(
            text,
            "error: ledger GetItem(exclusion): could not reach DynamoDB\n  \
             caused by: connection refused\n  what to do: check the network\n"
        );
    }
}
