//! Turning per-request latencies into the figures a phase reports.

use serde::Serialize;
use std::time::Duration;

/// Request latency percentiles in milliseconds, by the nearest-rank method: each percentile
/// is a latency that was really observed, and p50 ≤ p95 ≤ p99 ≤ max always holds.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    pub fn from_samples(samples: &[Duration]) -> Latency {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let total: Duration = sorted.iter().sum();
        let mean = if sorted.is_empty() { 0.0 } else { millis(total) / sorted.len() as f64 };
        Latency {
            p50: percentile(&sorted, 50.0),
            p95: percentile(&sorted, 95.0),
            p99: percentile(&sorted, 99.0),
            max: sorted.last().map_or(0.0, |d| millis(*d)),
            mean,
        }
    }
}

/// The figures of one measured phase.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseResult {
    pub name: &'static str,
    pub concurrency: u32,
    pub messages: u32,
    pub elapsed_s: f64,
    pub messages_per_s: f64,
    pub latency_ms: Latency,
}

impl PhaseResult {
    pub fn new(name: &'static str, concurrency: u32, elapsed: Duration, samples: &[Duration]) -> PhaseResult {
        let elapsed_s = elapsed.as_secs_f64();
        let messages = u32::try_from(samples.len()).unwrap_or(u32::MAX);
        PhaseResult {
            name,
            concurrency,
            messages,
            elapsed_s,
            messages_per_s: if elapsed_s > 0.0 { f64::from(messages) / elapsed_s } else { 0.0 },
            latency_ms: Latency::from_samples(samples),
        }
    }
}

/// Nearest rank: the smallest sample with at least `p` percent of the samples at or below it.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    millis(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|v| Duration::from_millis(*v)).collect()
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples = ms(&(1..=100).rev().collect::<Vec<_>>());
        let latency = Latency::from_samples(&samples);
        assert_eq!((latency.p50, latency.p95, latency.p99, latency.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(latency.mean, 50.5);
    }

    #[test]
    fn few_samples_still_give_ordered_percentiles() {
        let latency = Latency::from_samples(&ms(&[7]));
        assert_eq!((latency.p50, latency.p99, latency.max), (7.0, 7.0, 7.0));
        let latency = Latency::from_samples(&ms(&[3, 1, 2]));
        assert!(latency.p50 <= latency.p95 && latency.p95 <= latency.p99 && latency.p99 <= latency.max);
        assert_eq!(Latency::from_samples(&[]).max, 0.0);
    }

    #[test]
    fn the_rate_is_messages_over_elapsed_time() {
        let phase = PhaseResult::new("sequential", 1, Duration::from_secs(2), &ms(&[1; 10]));
        assert_eq!((phase.messages, phase.messages_per_s), (10, 5.0));
    }
}
