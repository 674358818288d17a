//! The release binary's size, with the profile it was built with.

use serde_json::json;

use crate::common::{self, print_result, target_dir, Args};

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let repo = common::repo(args)?;
    let binary = common::binary(args, &repo)?;
    let manifest = std::fs::read_to_string(repo.join("Cargo.toml"))?;
    let profile: Vec<String> = manifest
        .lines()
        .skip_while(|l| l.trim() != "[profile.release]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let mut artifacts = Vec::new();
    let target = target_dir(&repo);
    for (label, path) in [
        ("host release (--binary)", binary.clone()),
        (
            "arm64 Lambda bootstrap (cargo lambda build --release --arm64)",
            target.join("lambda/exclusion-handler/bootstrap"),
        ),
    ] {
        let Ok(meta) = std::fs::metadata(&path) else {
            println!("{label}: {} not present", path.display());
            continue;
        };
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        let bytes = meta.len();
        let when = modified.map(utc).unwrap_or_default();
        println!(
            "{label}: {} = {bytes} bytes ({:.2} MiB, {:.2} MB), modified {when}",
            path.display(),
            bytes as f64 / 1048576.0,
            bytes as f64 / 1e6,
        );
        artifacts.push(json!({"what": label, "path": path.display().to_string(), "bytes": bytes, "modified_utc": when}));
    }
    println!("[profile.release]: {}", profile.join("; "));
    print_result(
        "size",
        json!({"artifacts": artifacts, "profile_release": profile}),
    );
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SSZ` from epoch seconds (days to civil date after
/// Howard Hinnant's algorithm), to avoid a date dependency.
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(1_795_367_290), "2026-11-22T17:08:10Z");
    }
}
