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
    fn this_process_has_a_resident_set() {
        let memory = memory_of(std::process::id()).expect("own status");
        assert!(memory.rss_kib > 0 && memory.hwm_kib >= memory.rss_kib);
        assert!(memory_of(u32::MAX).is_err());
    }
}
