//! What a run hands back, the same for every scenario: the table on stdout, the JSON file,
//! the validity verdict and, for `--compare`, the ratios between the two servers.

use crate::stats::PhaseResult;
use anyhow::{Context, Result};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// What one server's figures must offer to the shared report.
pub trait ServerRun: Serialize {
    fn homeserver(&self) -> &str;

    /// False when the scenario's validity check failed on this server.
    fn valid(&self) -> bool {
        true
    }

    /// This server's section of the table, indented by two spaces.
    fn write_table(&self, out: &mut String);

    /// The figures `--compare` divides, as rows (a phase, a measurement) of named figures.
    fn comparable(&self) -> Vec<FigureRow>;
}

/// One row of comparable figures, e.g. a phase with its rate and latency percentiles.
pub struct FigureRow {
    pub name: String,
    pub figures: Vec<(&'static str, f64)>,
}

impl FigureRow {
    /// A phase's rate and latency percentiles, the figures most scenarios compare.
    pub fn of_phase(phase: &PhaseResult) -> FigureRow {
        let l = &phase.latency_ms;
        FigureRow {
            name: phase.name.to_owned(),
            figures: vec![
                ("messages_per_s", phase.messages_per_s),
                ("p50", l.p50),
                ("p95", l.p95),
                ("p99", l.p99),
                ("max", l.max),
            ],
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report<'a, P: Serialize, R: Serialize> {
    pub tool: &'static str,
    pub version: &'static str,
    pub scenario: &'static str,
    /// When the run started, RFC 3339 in UTC.
    pub timestamp: String,
    pub parameters: &'a P,
    /// True when the validity check passed on every measured server (scenarios without a
    /// check are always valid).
    pub valid: bool,
    /// The measured servers in order: the `--homeserver`, then the `--compare` servers.
    pub servers: Vec<R>,
    /// Each `--compare` server's figure over the first server's, one object per row with the
    /// row's `name` and the compared server's `homeserver`, the servers in order; `null` where
    /// the first figure is zero. Absent without `--compare`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratios: Option<Vec<RatioRow>>,
    #[serde(skip)]
    headline: String,
}

impl<'a, P: Serialize, R: ServerRun> Report<'a, P, R> {
    pub fn new(
        scenario: &'static str,
        headline: String,
        timestamp: String,
        parameters: &'a P,
        servers: Vec<R>,
    ) -> Report<'a, P, R> {
        let ratios = match servers.as_slice() {
            [first, others @ ..] if !others.is_empty() => {
                let first_rows = first.comparable();
                Some(others.iter().flat_map(|other| ratio_rows(&first_rows, other)).collect())
            }
            _ => None,
        };
        Report {
            tool: "hearth-bench",
            version: env!("CARGO_PKG_VERSION"),
            scenario,
            timestamp,
            parameters,
            valid: servers.iter().all(ServerRun::valid),
            servers,
            ratios,
            headline,
        }
    }

    pub fn table(&self) -> String {
        let mut out = format!("{}\n\n", self.headline);
        for server in &self.servers {
            let _ = writeln!(out, "{}", server.homeserver());
            server.write_table(&mut out);
            let _ = writeln!(out);
        }
        if let [first, others @ ..] = self.servers.as_slice() {
            // Recomputed per server rather than picked from `ratios` by name: `--compare` may
            // name the same server twice.
            let first_rows = first.comparable();
            for other in others {
                let _ = writeln!(out, "ratios: {} / {}", other.homeserver(), first.homeserver());
                write_ratio_table(&mut out, &ratio_rows(&first_rows, other));
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

/// Compared / first for each figure of a row, in the row's order; `None` where the first
/// figure is zero.
#[derive(Debug)]
pub struct RatioRow {
    pub name: String,
    /// The compared server (the divisor is always the first server).
    pub homeserver: String,
    pub ratios: Vec<(&'static str, Option<f64>)>,
}

/// A flat object, `{"name": …, "homeserver": …, "<figure>": ratio, …}`, in the figures' order.
impl Serialize for RatioRow {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.ratios.len() + 2))?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("homeserver", &self.homeserver)?;
        for (figure, ratio) in &self.ratios {
            map.serialize_entry(figure, ratio)?;
        }
        map.end()
    }
}

/// Rows are matched by name, so a row one server lacks is left out rather than mispaired.
fn ratio_rows(first: &[FigureRow], other: &impl ServerRun) -> Vec<RatioRow> {
    let second = other.comparable();
    first
        .iter()
        .filter_map(|a| {
            let b = second.iter().find(|b| b.name == a.name)?;
            let ratios = a
                .figures
                .iter()
                .filter_map(|(figure, value)| {
                    let (_, other) = b.figures.iter().find(|(name, _)| name == figure)?;
                    Some((*figure, ratio(*other, *value)))
                })
                .collect();
            Some(RatioRow { name: a.name.clone(), homeserver: other.homeserver().to_owned(), ratios })
        })
        .collect()
}

fn write_ratio_table(out: &mut String, rows: &[RatioRow]) {
    let Some(first) = rows.first() else { return };
    let width = |name: &str| name.len().max(7) + 2;
    let _ = write!(out, "  {:<16}", "");
    for (column, _) in &first.ratios {
        let _ = write!(out, "{:>w$}", column, w = width(column));
    }
    let _ = writeln!(out);
    for row in rows {
        let _ = write!(out, "  {:<16}", row.name);
        for (column, value) in &row.ratios {
            let _ = write!(out, "{:>w$}", ratio_text(*value), w = width(column));
        }
        let _ = writeln!(out);
    }
}

fn ratio(second: f64, first: f64) -> Option<f64> {
    (first > 0.0).then(|| second / first)
}

fn ratio_text(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x"))
}

/// The usual latency columns of a table: header and one row.
pub const LATENCY_HEADER: &str = "   p50 ms   p95 ms   p99 ms   max ms";

pub fn latency_columns(l: &crate::stats::Latency) -> String {
    format!("{:>9.2}{:>9.2}{:>9.2}{:>9.2}", l.p50, l.p95, l.p99, l.max)
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
