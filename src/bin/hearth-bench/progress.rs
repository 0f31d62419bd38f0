//! Progress of a long phase on stderr. Quiet for phases that end within a second, so short
//! runs (and tests) print only their result.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

const FIRST_REPORT_AFTER: Duration = Duration::from_secs(1);
/// A terminal line is rewritten in place often; a log file gets a line now and then.
const TERMINAL_INTERVAL: Duration = Duration::from_millis(250);
const LOG_INTERVAL: Duration = Duration::from_secs(5);

pub struct Progress {
    done: Arc<AtomicU64>,
    /// Set once a line has been left open on a terminal, to be cleared at the end.
    line_open: Arc<AtomicBool>,
    reporter: JoinHandle<()>,
}

impl Progress {
    pub fn start(label: String, total: u64) -> Progress {
        Progress::counting(label, total, "messages")
    }

    /// Progress counted in `unit`s (users, rooms, connections…).
    pub fn counting(label: String, total: u64, unit: &'static str) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        let line_open = Arc::new(AtomicBool::new(false));
        let (counter, open) = (done.clone(), line_open.clone());
        let reporter = tokio::spawn(async move {
            let terminal = std::io::stderr().is_terminal();
            tokio::time::sleep(FIRST_REPORT_AFTER).await;
            loop {
                let line = format!("{label}: {}/{total} {unit}", counter.load(Ordering::Relaxed));
                // Progress is a courtesy: a closed stderr must not fail the measurement.
                if terminal {
                    let _ = write!(std::io::stderr(), "\r\x1b[2K{line}");
                    open.store(true, Ordering::Relaxed);
                } else {
                    let _ = writeln!(std::io::stderr(), "{line}");
                }
                tokio::time::sleep(if terminal { TERMINAL_INTERVAL } else { LOG_INTERVAL }).await;
            }
        });
        Progress { done, line_open, reporter }
    }

    /// A handle for tasks that advance the count concurrently.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.done.clone()
    }

    pub fn advance(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops reporting and clears a line left open on a terminal. The reporter is awaited
    /// after the abort, so that it cannot write after the line is cleared.
    pub async fn finish(mut self) {
        self.reporter.abort();
        let _ = (&mut self.reporter).await;
        if self.line_open.load(Ordering::Relaxed) {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

impl Drop for Progress {
    /// A phase that fails stops its reporter too.
    fn drop(&mut self) {
        self.reporter.abort();
    }
}
