//! Puts the commit the CLI is built from into `--version`
//! (`mturk-exclusion 0.2.0 (0123456789ab)`).
//!
//! `MTURK_EXCLUSION_COMMIT` wins when set (scripts/release.sh sets it, and a
//! build from a source archive can); otherwise `git rev-parse` in the source
//! tree; "unknown" outside git. Cargo reruns this only when HEAD moves (the
//! HEAD file, the branch's ref, packed-refs) or the variable changes, so
//! ordinary edits do not rebuild the CLI for it.

use std::path::{Path, PathBuf};
use std::process::Command;

const VAR: &str = "MTURK_EXCLUSION_COMMIT";

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// A path git printed, relative to `dir` unless absolute.
fn git_path(dir: &Path, args: &[&str]) -> Option<PathBuf> {
    let p = PathBuf::from(git(dir, args)?);
    Some(if p.is_absolute() { p } else { dir.join(p) })
}

fn main() {
    println!("cargo:rerun-if-env-changed={VAR}");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));

    let commit = match std::env::var(VAR) {
        Ok(c) if !c.trim().is_empty() => c.trim().chars().take(12).collect(),
        _ => from_git(&dir).unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env={VAR}={commit}");
}

fn from_git(dir: &Path) -> Option<String> {
    let commit = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    // Watch what moves HEAD: the HEAD file (a checkout), the branch's ref
    // (a commit) and packed-refs (after `git gc`). Only existing files:
    // cargo treats a missing one as changed on every build.
    let git_dir = git_path(dir, &["rev-parse", "--git-dir"]);
    let common = git_path(dir, &["rev-parse", "--git-common-dir"]);
    let mut watched = Vec::new();
    if let Some(g) = &git_dir {
        watched.push(g.join("HEAD"));
    }
    if let Some(c) = &common {
        watched.push(c.join("packed-refs"));
        if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
            watched.push(c.join(branch));
        }
    }
    for path in watched.iter().filter(|p| p.is_file()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    Some(commit)
}
