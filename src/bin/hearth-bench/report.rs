//! What a run hands back: the table on stdout, the JSON file, and the ratios between two
//! servers for `--compare`.

use crate::scenarios::paired::{PairedParameters, PairedRun};
use crate::scenarios::send::{SendParameters, SendRun};
use crate::stats::PhaseResult;
use anyhow::{Context, Result};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Serialize)]
pub struct SendReport {
    pub tool: &'static str,
    pub version: &'static str,
    pub scenario: &'static str,
    /// When the run started, RFC 3339 in UTC.
    pub timestamp: String,
    pub parameters: SendParameters,
    /// The measured servers in order: the `--homeserver`, then the `--compare` server.
    pub servers: Vec<SendRun>,
    /// Second server's figure over the first's, per phase; absent without `--compare`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratios: Option<Vec<PhaseRatios>>,
}

/// Second / first for each figure of a phase: above 1 the second server is faster for
/// `messages_per_s`, slower for the latencies. `null` where the first figure is zero.
#[derive(Debug, Serialize)]
pub struct PhaseRatios {
    pub name: &'static str,
    pub messages_per_s: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl SendReport {
    pub fn new(timestamp: String, parameters: SendParameters, servers: Vec<SendRun>) -> SendReport {
        let ratios = match servers.as_slice() {
            [first, second] => Some(first.phases.iter().zip(&second.phases).map(|(a, b)| phase_ratios(a, b)).collect()),
            _ => None,
        };
        SendReport {
            tool: "hearth-bench",
            version: env!("CARGO_PKG_VERSION"),
            scenario: "send",
            timestamp,
            parameters,
            servers,
            ratios,
        }
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let p = &self.parameters;
        let _ = writeln!(
            out,
            "send: {} messages per phase, {} concurrent senders in the concurrent phase\n",
            p.messages, p.concurrency
        );
        for server in &self.servers {
            let _ = writeln!(out, "{}", server.homeserver);
            let _ = writeln!(
                out,
                "  {:<12}{:>8}{:>10}{:>10}{:>10}{:>9}{:>9}{:>9}{:>9}",
                "phase", "senders", "messages", "seconds", "msg/s", "p50 ms", "p95 ms", "p99 ms", "max ms"
            );
            for phase in &server.phases {
                let l = &phase.latency_ms;
                let _ = writeln!(
                    out,
                    "  {:<12}{:>8}{:>10}{:>10.2}{:>10.1}{:>9.2}{:>9.2}{:>9.2}{:>9.2}",
                    phase.name,
                    phase.concurrency,
                    phase.messages,
                    phase.elapsed_s,
                    phase.messages_per_s,
                    l.p50,
                    l.p95,
                    l.p99,
                    l.max
                );
            }
            let _ = writeln!(out);
        }
        if let (Some(ratios), [first, second]) = (&self.ratios, self.servers.as_slice()) {
            let _ = writeln!(out, "ratios: {} / {}", second.homeserver, first.homeserver);
            let _ = writeln!(out, "  {:<12}{:>10}{:>9}{:>9}{:>9}{:>9}", "phase", "msg/s", "p50", "p95", "p99", "max");
            for r in ratios {
                let _ = writeln!(
                    out,
                    "  {:<12}{:>10}{:>9}{:>9}{:>9}{:>9}",
                    r.name,
                    ratio_text(r.messages_per_s),
                    ratio_text(r.p50),
                    ratio_text(r.p95),
                    ratio_text(r.p99),
                    ratio_text(r.max)
                );
            }
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).context("cannot serialise the report")?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("cannot write the JSON report to {}", path.display()))
    }
}

#[derive(Debug, Serialize)]
pub struct PairedReport {
    pub tool: &'static str,
    pub version: &'static str,
    pub scenario: &'static str,
    /// When the run started, RFC 3339 in UTC.
    pub timestamp: String,
    pub parameters: PairedParameters,
    /// True when the validity check passed on every measured server.
    pub valid: bool,
    /// The measured servers in order: the `--homeserver`, then the `--compare` server.
    pub servers: Vec<PairedRun>,
    /// Second server's figures over the first's; absent without `--compare`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratios: Option<PhaseRatios>,
}

impl PairedReport {
    pub fn new(timestamp: String, parameters: PairedParameters, servers: Vec<PairedRun>) -> PairedReport {
        let ratios = match servers.as_slice() {
            [first, second] => Some(phase_ratios(&first.phase, &second.phase)),
            _ => None,
        };
        PairedReport {
            tool: "hearth-bench",
            version: env!("CARGO_PKG_VERSION"),
            scenario: "paired",
            timestamp,
            parameters,
            valid: servers.iter().all(|server| server.validity.valid),
            servers,
            ratios,
        }
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let p = &self.parameters;
        let _ = writeln!(
            out,
            "paired: {} pairs, {} messages per user, {} ms between a sender's messages; \
             latency = send start -> partner's /sync returned\n",
            p.pairs, p.messages, p.interval_ms
        );
        for server in &self.servers {
            let (phase, validity) = (&server.phase, &server.validity);
            let l = &phase.latency_ms;
            let _ = writeln!(out, "{}", server.homeserver);
            let _ = writeln!(
                out,
                "  {:>8}{:>11}{:>10}{:>10}{:>9}{:>9}{:>9}{:>9}  valid",
                "users", "delivered", "seconds", "msg/s", "p50 ms", "p95 ms", "p99 ms", "max ms"
            );
            let _ = writeln!(
                out,
                "  {:>8}{:>11}{:>10.2}{:>10.1}{:>9.2}{:>9.2}{:>9.2}{:>9.2}  {}",
                phase.concurrency,
                format!("{}/{}", validity.delivered, validity.expected),
                phase.elapsed_s,
                phase.messages_per_s,
                l.p50,
                l.p95,
                l.p99,
                l.max,
                if validity.valid { "yes" } else { "NO" }
            );
            if !validity.valid {
                let _ = writeln!(
                    out,
                    "  missing {}, duplicates {}, out of order {}, altered {}",
                    validity.missing, validity.duplicates, validity.out_of_order, validity.altered
                );
                for problem in &validity.problems {
                    let _ = writeln!(out, "    {problem}");
                }
            }
            let _ = writeln!(out);
        }
        if let (Some(r), [first, second]) = (&self.ratios, self.servers.as_slice()) {
            let _ = writeln!(out, "ratios: {} / {}", second.homeserver, first.homeserver);
            let _ = writeln!(out, "  {:>10}{:>9}{:>9}{:>9}{:>9}", "msg/s", "p50", "p95", "p99", "max");
            let _ = writeln!(
                out,
                "  {:>10}{:>9}{:>9}{:>9}{:>9}",
                ratio_text(r.messages_per_s),
                ratio_text(r.p50),
                ratio_text(r.p95),
                ratio_text(r.p99),
                ratio_text(r.max)
            );
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).context("cannot serialise the report")?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("cannot write the JSON report to {}", path.display()))
    }
}

fn phase_ratios(first: &PhaseResult, second: &PhaseResult) -> PhaseRatios {
    let (a, b) = (&first.latency_ms, &second.latency_ms);
    PhaseRatios {
        name: first.name,
        messages_per_s: ratio(second.messages_per_s, first.messages_per_s),
        p50: ratio(b.p50, a.p50),
        p95: ratio(b.p95, a.p95),
        p99: ratio(b.p99, a.p99),
        max: ratio(b.max, a.max),
    }
}

fn ratio(second: f64, first: f64) -> Option<f64> {
    (first > 0.0).then(|| second / first)
}

fn ratio_text(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x"))
}

/// The current time as RFC 3339 in UTC, e.g. `2026-11-22T09:30:00Z`; a clock before 1970
/// counts as 1970.
pub fn now_rfc3339() -> String {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    rfc3339(seconds)
}

fn rfc3339(unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let second_of_day = unix_seconds % 86_400;
    let (year, month, day) = civil_date(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// The Gregorian date `days` after 1970-01-01: counted in 400-year eras (146,097 days each)
/// from 0000-03-01, so that the leap day falls at the end of each counted year.
fn civil_date(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_339_845), "2026-11-22T09:30:45Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn ratios_are_second_over_first_and_absent_for_zero() {
        assert_eq!(ratio(2.0, 4.0), Some(0.5));
        assert_eq!(ratio(2.0, 0.0), None);
        assert_eq!(ratio_text(None), "-");
        assert_eq!(ratio_text(Some(1.234)), "1.23x");
    }
}
