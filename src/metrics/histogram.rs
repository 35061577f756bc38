//! A latency histogram whose observations take no lock.
//!
//! prometheus-client's `Histogram` keeps its buckets behind a mutex that every observation
//! takes; the server observes one duration per call from every worker thread, so that would be
//! a lock on every call's path. Here each bucket, the count and the sum are atomics: an
//! observation is three relaxed atomic adds. The exposition is the same (classic buckets, `le`
//! upper bounds, `+Inf`, `_sum` in seconds, `_count`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Cheap to clone: clones share the same buckets. Public only for `benches/infra.rs`, through
/// `vod_signer::testing` (the module itself is private to the crate otherwise).
#[derive(Clone, Debug)]
pub struct LatencyHistogram(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Upper bounds in seconds, ascending; the last bucket (`+Inf`) has none.
    bounds: Box<[f64]>,
    /// Observations per bucket (not cumulative), one more than `bounds`.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    /// A histogram with these upper bounds in seconds (ascending), plus `+Inf`.
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        let bounds: Box<[f64]> = bounds.into_iter().collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        LatencyHistogram(Arc::new(Inner {
            bounds,
            counts,
            sum_nanos: AtomicU64::new(0),
        }))
    }

    /// Counts one duration: three relaxed atomic adds, no lock.
    pub fn observe(&self, duration: Duration) {
        let inner = &*self.0;
        let seconds = duration.as_secs_f64();
        // The first bucket whose upper bound holds the value (`le` is inclusive).
        let bucket = inner.bounds.partition_point(|&bound| bound < seconds);
        inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.0;
        // A scrape during traffic may see a bucket and the sum a call apart; Prometheus
        // tolerates that, and the count is derived from the buckets so those two agree.
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(inner.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn exposition_matches_a_classic_histogram() {
        let histogram = LatencyHistogram::new([0.001, 0.01, 0.1]);
        for ms in [0.5, 1.0, 5.0, 10.0, 50.0, 2000.0] {
            histogram.observe(Duration::from_secs_f64(ms / 1000.0));
        }
        let mut registry = Registry::default();
        registry.register("latency", "test", histogram.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "# TYPE latency histogram",
            "latency_bucket{le=\"0.001\"} 2",
            "latency_bucket{le=\"0.01\"} 4",
            "latency_bucket{le=\"0.1\"} 5",
            "latency_bucket{le=\"+Inf\"} 6",
            "latency_count 6",
            "latency_sum 2.0665",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let histogram = LatencyHistogram::new([0.001]);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..10_000 {
                        histogram.observe(Duration::from_micros(10));
                    }
                });
            }
        });
        let counted: u64 = histogram
            .0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum();
        assert_eq!(counted, 40_000);
        assert_eq!(
            histogram.0.sum_nanos.load(Ordering::Relaxed),
            40_000 * 10_000
        );
    }
}
