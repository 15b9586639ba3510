//! A log-linear histogram of durations in nanoseconds, for the percentiles of [`Summary`].
//!
//! Values below 32 ns have a bucket each; above, every power of two `[2^e, 2^(e+1))` is split
//! into 32 buckets of equal width `2^(e-5)`. A bucket is thus at most 1/32 of its lower bound
//! wide, and a percentile, read as the middle of its bucket, is within 1/64 of the recorded
//! value it stands for (and exact below 32 ns). The whole `u64` range of nanoseconds (584
//! years) takes 1,920 buckets; the vector only grows as far as the largest value recorded
//! (about 830 buckets, 6.6 KiB, for values up to a second), so memory stays bounded however
//! long the pool lives. Durations beyond `u64::MAX` nanoseconds count as `u64::MAX`.
//! Recording is a few instructions: a bit scan, a shift, an increment.

use std::time::Duration;

use super::Summary;

/// Buckets per power of two, as a number of bits.
const SUB_BITS: u32 = 5;
/// Buckets per power of two; also the count of exact buckets below it.
const SUB: u64 = 1 << SUB_BITS;

/// Counts of durations by bucket, with their exact count, minimum, maximum and sum.
#[derive(Clone, Debug, Default)]
pub(crate) struct Histogram {
    /// `counts[bucket(v)]`: how many recorded values fell in that bucket; only as long as the
    /// highest bucket used.
    counts: Vec<u64>,
    count: u64,
    min: u64,
    max: u64,
    sum: u128,
}

/// A duration in whole nanoseconds, saturated at `u64::MAX`.
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The bucket of `value`.
fn bucket(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    // The position of the highest bit set, at least SUB_BITS here.
    let exponent = 63 - value.leading_zeros();
    let shift = exponent - SUB_BITS;
    // The SUB_BITS bits below the highest: which of the power's 32 buckets.
    let sub = (value >> shift) - SUB;
    (SUB + u64::from(shift) * SUB + sub) as usize
}

/// The lowest and highest values of bucket `index`.
fn bounds(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < SUB {
        return (index, index);
    }
    let shift = (index - SUB) / SUB;
    let sub = (index - SUB) % SUB;
    let low = (SUB + sub) << shift;
    // At the very top, `low + width` is 2^64: the highest value is `low + (width - 1)`.
    (low, low + ((1u64 << shift) - 1))
}

impl Histogram {
    pub(crate) fn record(&mut self, value: Duration) {
        let value = nanos(value);
        let index = bucket(value);
        if index >= self.counts.len() {
            self.counts.resize(index + 1, 0);
        }
        self.counts[index] += 1;
        if self.count == 0 || value < self.min {
            self.min = value;
        }
        self.max = self.max.max(value);
        self.count += 1;
        self.sum += u128::from(value);
    }

    /// Adds what `other` recorded.
    pub(crate) fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.min = if self.count == 0 {
            other.min
        } else {
            self.min.min(other.min)
        };
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.sum += other.sum;
    }

    /// The value below or at which `per_mille`/1000 of the recorded values lie (the nearest
    /// rank), as the middle of its bucket, kept within the exact minimum and maximum.
    fn quantile(&self, per_mille: u64) -> u64 {
        let rank = (u128::from(self.count) * u128::from(per_mille)).div_ceil(1000);
        let rank = u64::try_from(rank).unwrap_or(u64::MAX).max(1);
        let mut seen = 0u64;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, high) = bounds(index);
                return (low + (high - low) / 2).clamp(self.min, self.max);
            }
        }
        self.max
    }

    pub(crate) fn summary(&self) -> Summary {
        if self.count == 0 {
            return Summary::default();
        }
        let mean = u64::try_from(self.sum / u128::from(self.count)).unwrap_or(u64::MAX);
        let at = Duration::from_nanos;
        Summary {
            count: self.count,
            min: at(self.min),
            mean: at(mean),
            p50: at(self.quantile(500)),
            p90: at(self.quantile(900)),
            p99: at(self.quantile(990)),
            max: at(self.max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(values: impl IntoIterator<Item = u64>) -> Histogram {
        let mut histogram = Histogram::default();
        for value in values {
            histogram.record(Duration::from_nanos(value));
        }
        histogram
    }

    /// Whether `got` is within 1/64 of `exact`.
    fn close(got: Duration, exact: u64) -> bool {
        let got = nanos(got);
        got.abs_diff(exact) <= exact / 64
    }

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut previous_high = None;
        for index in 0..bucket(u64::MAX) + 1 {
            let (low, high) = bounds(index);
            assert!(low <= high);
            if let Some(previous) = previous_high {
                assert_eq!(low, previous + 1, "bucket {index} follows the one before");
            }
            assert_eq!(bucket(low), index);
            assert_eq!(bucket(high), index);
            // At most 1/32 of its lower bound wide.
            assert!((high - low) <= low / SUB, "bucket {index}");
            previous_high = Some(high);
        }
        assert_eq!(previous_high, Some(u64::MAX));
        assert_eq!(bucket(u64::MAX) + 1, 1920);
    }

    #[test]
    fn percentiles_of_a_uniform_run_are_within_one_64th() {
        // 1 µs to 100 ms in steps of 1 µs: the nearest-rank p50 is 50 ms, and so on.
        let histogram = of((1..=100_000u64).map(|n| n * 1000));
        let summary = histogram.summary();
        assert_eq!(summary.count, 100_000);
        assert_eq!(summary.min, Duration::from_micros(1));
        assert_eq!(summary.max, Duration::from_millis(100));
        assert_eq!(summary.mean, Duration::from_nanos(50_000_500));
        assert!(close(summary.p50, 50_000_000), "{:?}", summary.p50);
        assert!(close(summary.p90, 90_000_000), "{:?}", summary.p90);
        assert!(close(summary.p99, 99_000_000), "{:?}", summary.p99);
    }

    #[test]
    fn percentiles_of_a_skewed_run_find_the_tail() {
        // 980 fast values and 20 slow ones: p50 and p90 are fast, p99 is slow.
        let fast = std::iter::repeat_n(200u64, 980);
        let slow = std::iter::repeat_n(3_000_000u64, 20);
        let summary = of(fast.chain(slow)).summary();
        assert!(close(summary.p50, 200));
        assert!(close(summary.p90, 200));
        assert!(close(summary.p99, 3_000_000), "{:?}", summary.p99);
        assert!(summary.min <= summary.p50 && summary.p99 <= summary.max);
    }

    #[test]
    fn small_values_are_exact() {
        let summary = of([0, 1, 2, 3, 31]).summary();
        assert_eq!(summary.min, Duration::ZERO);
        assert_eq!(summary.p50, Duration::from_nanos(2));
        assert_eq!(summary.p99, Duration::from_nanos(31));
        assert_eq!(summary.max, Duration::from_nanos(31));
    }

    #[test]
    fn extremes_saturate_without_panicking() {
        let mut histogram = Histogram::default();
        histogram.record(Duration::ZERO);
        histogram.record(Duration::MAX);
        histogram.record(Duration::from_nanos(u64::MAX));
        let summary = histogram.summary();
        assert_eq!(summary.count, 3);
        assert_eq!(summary.min, Duration::ZERO);
        assert_eq!(summary.max, Duration::from_nanos(u64::MAX));
        assert!(close(summary.p99, u64::MAX), "{:?}", summary.p99);
        assert!(summary.p50 <= summary.max);
        // The mean of three values, two of them u64::MAX, does not overflow.
        assert_eq!(summary.mean, Duration::from_nanos(u64::MAX / 3 * 2));
    }

    #[test]
    fn an_empty_histogram_summarizes_to_zeros() {
        let summary = Histogram::default().summary();
        assert_eq!(summary.count, 0);
        assert_eq!(summary.max, Duration::ZERO);
        assert_eq!(summary.p50, Duration::ZERO);
    }

    #[test]
    fn merging_equals_recording_into_one() {
        let evens = of((0..1000u64).map(|n| n * 2_000));
        let odds = of((0..1000u64).map(|n| n * 2_000 + 1_000));
        let mut merged = Histogram::default();
        merged.merge(&evens);
        merged.merge(&Histogram::default());
        merged.merge(&odds);
        let whole = of((0..2000u64).map(|n| n * 1_000));
        assert_eq!(merged.summary(), whole.summary());
        assert_eq!(merged.counts, whole.counts);
    }
}
