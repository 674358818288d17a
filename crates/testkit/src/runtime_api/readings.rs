//! CPU time and peak RSS of a process, from `/proc` (Linux only).

use std::sync::OnceLock;
use std::time::Duration;

/// Clock ticks per second for `/proc/<pid>/stat`, from the auxiliary vector
/// (`AT_CLKTCK`); 100, Linux's value everywhere, if it cannot be read.
pub fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        const AT_CLKTCK: u64 = 17;
        let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
            return 100;
        };
        auxv.chunks_exact(16)
            .map(|pair| {
                let k = u64::from_ne_bytes(pair[..8].try_into().expect("8 bytes"));
                let v = u64::from_ne_bytes(pair[8..].try_into().expect("8 bytes"));
                (k, v)
            })
            .find(|(k, _)| *k == AT_CLKTCK)
            .map(|(_, v)| v)
            .filter(|v| *v > 0)
            .unwrap_or(100)
    })
}

/// `VmHWM` (peak resident set) of a live process, in KiB.
pub fn peak_rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User plus system CPU time of a live process (`utime + stime`).
pub fn cpu_time_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = clock_ticks_per_second();
    Some(Duration::from_nanos(
        (utime + stime) * 1_000_000_000 / ticks,
    ))
}
