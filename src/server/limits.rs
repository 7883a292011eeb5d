//! Mint rate limits: each orchestrator, and each human principal, may mint at most so many
//! mandates a minute on each replica. A token bucket per caller holds up to a minute's worth and
//! refills continuously; an empty bucket answers 429 with `Retry-After`.
//!
//! Throttled requests are counted (`mandate_mints_total{outcome="rate_limited"}`) and logged,
//! not written to the audit trail: a flood must not turn into a flood of writes. The principal
//! is limited only once its token has been validated, so nobody can spend another's allowance.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Most callers tracked at once; idle (full) buckets are dropped first.
const MAX_TRACKED: usize = 100_000;

/// The mint limits of one replica.
#[derive(Debug)]
pub struct MintLimits {
    /// By orchestrator id.
    pub agents: RateLimiter,
    /// By principal (issuer URL and subject).
    pub principals: RateLimiter,
}

/// Token buckets by caller.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// At most `per_minute` a minute for each caller.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `caller`'s bucket at `now`, or says how long until one is there.
    pub fn take(&self, caller: &str, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(caller) {
            buckets.retain(|_, b| refilled(b, now, per_second, capacity) < capacity);
            if buckets.len() >= MAX_TRACKED {
                return Err(Duration::from_secs(1));
            }
        }
        let bucket = buckets.entry(caller.to_owned()).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        bucket.tokens = refilled(bucket, now, per_second, capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

fn refilled(bucket: &Bucket, now: Instant, per_second: f64, capacity: f64) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    (bucket.tokens + elapsed * per_second).min(capacity)
}

/// The whole seconds a client should wait, at least one.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_a_minutes_worth_then_waits_for_the_refill() {
        let limiter = RateLimiter::new(6);
        let start = crate::clock::Clock::instant(&crate::clock::SystemClock);
        for _ in 0..6 {
            assert_eq!(limiter.take("bot", start), Ok(()));
        }
        let Err(wait) = limiter.take("bot", start) else {
            panic!("a seventh mint within the minute went through")
        };
        assert_eq!(wait, Duration::from_secs(10), "6 a minute: one every 10 s");
        assert_eq!(retry_after_seconds(wait), 10);
        assert!(limiter.take("bot", start + Duration::from_secs(9)).is_err());
        assert_eq!(limiter.take("bot", start + Duration::from_secs(10)), Ok(()));
        assert_eq!(
            limiter.take("other", start),
            Ok(()),
            "each caller has its own bucket"
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(3)), 3);
    }
}
