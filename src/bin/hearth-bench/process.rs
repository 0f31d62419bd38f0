//! What `/proc` and the process's limits say: a server's memory, a process's open-file
//! limit, this process's open sockets.

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use serde::Serialize;

/// Resident memory of a process, from `/proc/<pid>/status`, in KiB.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Memory {
    /// Resident set now (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set so far (`VmHWM`).
    pub hwm_kib: u64,
}

pub fn memory_of(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {path}: is {pid} the id of a running server process on this machine?"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("{path} has no readable {name} line (a kernel thread or a zombie?)"))
    };
    Ok(Memory { rss_kib: field("VmRSS:")?, hwm_kib: field("VmHWM:")? })
}

/// CPU time (user + system) a process and every process below it have used so far, in
/// milliseconds: the process tree rooted at `pid`, read from `/proc/*/stat`. Hearth's embedded
/// PostgreSQL runs below Hearth, so one tree holds both; an external server's postmaster is a
/// tree of its own. Children that have ended count through their parent's `cutime`/`cstime`
/// (the postmaster waits for every backend it started).
pub fn cpu_ms_of_tree(pid: u32) -> Result<f64> {
    let stats = all_process_stats();
    if !stats.iter().any(|stat| stat.pid == pid) {
        bail!("no process {pid} on this machine (read from /proc)");
    }
    let mut tree = vec![pid];
    let mut ticks = 0u64;
    while let Some(parent) = tree.pop() {
        for stat in &stats {
            if stat.pid == parent {
                ticks += stat.ticks;
            }
            if stat.parent == parent {
                tree.push(stat.pid);
            }
        }
    }
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = if per_second > 0 { per_second as f64 } else { 100.0 };
    Ok(ticks as f64 * 1000.0 / per_second)
}

/// One process as `/proc/<pid>/stat` describes it: its parent and its CPU clock ticks (its
/// own and those of its waited-for children).
struct ProcessStat {
    pid: u32,
    parent: u32,
    ticks: u64,
}

fn all_process_stats() -> Vec<ProcessStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| parse_stat(pid, &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?))
        .collect()
}

fn parse_stat(pid: u32, stat: &str) -> Option<ProcessStat> {
    // The command name (2nd field) is in parentheses and may hold spaces and parentheses of
    // its own: the fields are counted from the last ')'.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    // After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
    let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
    let parent = u32::try_from(field(4)?).ok()?;
    Some(ProcessStat { pid, parent, ticks: field(14)? + field(15)? + field(16)? + field(17)? })
}

/// The soft "Max open files" limit of a process, from `/proc/<pid>/limits`; `None` if it
/// cannot be read or is unlimited.
pub fn open_file_limit_of(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

/// Descriptors this process needs besides the connections it holds (runtime, stdio, set-up).
pub const SPARE_FILES: u64 = 256;

/// Raises this process's open-file limit to its hard limit, which must allow `needed`
/// descriptors: every long-poll holds a socket, and the usual soft limit (1024) is below a
/// few thousand of them.
pub fn raise_open_file_limit(needed: u64) -> Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("cannot read the open-file limit")?;
    if hard < needed {
        bail!(
            "{needed} open files are needed but this process may open at most {hard} (hard limit); \
             raise it (e.g. `ulimit -Hn {needed}` as root) or ask for fewer connections"
        );
    }
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
            .with_context(|| format!("cannot raise the open-file limit from {soft} to {hard}"))?;
    }
    Ok(hard)
}

/// Sockets this process holds open, counted in `/proc/self/fd`: with one connection per
/// long-poll, this says how many have really been opened.
pub fn open_sockets() -> usize {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return 0 };
    entries
        .flatten()
        .filter(|entry| {
            std::fs::read_link(entry.path()).is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_tree_has_used_cpu() {
        // Burn a little CPU so that at least a clock tick is counted.
        let started = std::time::Instant::now();
        let mut spin = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(50) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        assert!(cpu_ms_of_tree(std::process::id()).expect("own stat") > 0.0);
    }

    #[test]
    fn a_command_name_with_parentheses_and_spaces_is_skipped() {
        let stat = "42 (a (b) c) S 7 42 42 0 -1 4194560 1 0 0 0 11 22 33 44 20 0 1 0 5 1 1";
        let parsed = parse_stat(42, stat).expect("parsed");
        assert_eq!((parsed.parent, parsed.ticks), (7, 11 + 22 + 33 + 44));
    }

    #[test]
    fn this_process_has_a_resident_set() {
        let memory = memory_of(std::process::id()).expect("own status");
        assert!(memory.rss_kib > 0 && memory.hwm_kib >= memory.rss_kib);
        assert!(memory_of(u32::MAX).is_err());
    }
}
