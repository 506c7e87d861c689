//! Exponential backoff with full jitter: spread retries so a recovering API is not hit by a
//! synchronised wave.

use std::time::Duration;

use rand::Rng as _;

/// The delay before try `attempt + 1`: uniform in `[0, min(max, base * 2^(attempt-1))]`.
pub fn full_jitter(attempt: i32, base: Duration, max: Duration) -> Duration {
    let ceiling = ceiling(attempt, base, max);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

/// The upper bound of the jittered delay after `attempt` tries.
pub fn ceiling(attempt: i32, base: Duration, max: Duration) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    base.saturating_mul(1u32 << exponent).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_up_to_the_maximum() {
        let base = Duration::from_secs(5);
        let max = Duration::from_secs(60);
        assert_eq!(ceiling(1, base, max), Duration::from_secs(5));
        assert_eq!(ceiling(2, base, max), Duration::from_secs(10));
        assert_eq!(ceiling(4, base, max), Duration::from_secs(40));
        assert_eq!(ceiling(5, base, max), max);
        assert_eq!(ceiling(i32::MAX, base, max), max);
        assert_eq!(ceiling(0, base, max), base);
        assert_eq!(ceiling(-3, base, max), base);
    }

    #[test]
    fn jitter_stays_within_the_ceiling() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(8);
        for attempt in 1..10 {
            for _ in 0..50 {
                assert!(full_jitter(attempt, base, max) <= ceiling(attempt, base, max));
            }
        }
    }
}
