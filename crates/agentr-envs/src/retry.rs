//! Waits between the attempts of a retried request, shared by agentr's HTTP clients (the
//! AgentGym client here, the OpenAI-compatible one in agentr-train): exponential, capped, with
//! "equal jitter" (`d = min(max, base · 2^(k-1))`, then a uniform draw from `[d/2, d]`), so
//! that clients that failed together do not retry in lockstep yet still wait at least half
//! the nominal delay.

use std::sync::Mutex;
use std::time::Duration;

use crate::rng::Rng;

/// The backoff of one client: its delays and its jitter generator.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    jitter: Mutex<Rng>,
}

impl Backoff {
    /// Delays from `base` doubling up to `max`; the jitter is drawn from `seed`, or, for
    /// `None`, from the clock, the process id and a per-process counter (two clients started
    /// at once still draw differently).
    pub fn new(base: Duration, max: Duration, seed: Option<u64>) -> Self {
        Backoff {
            base,
            max,
            jitter: Mutex::new(Rng::new(seed.unwrap_or_else(clock_seed))),
        }
    }

    /// The wait before attempt `attempt + 1` (attempts count from 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        let unit = self
            .jitter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unit_f64();
        delay(self.base, self.max, attempt, unit)
    }
}

/// `min(max, base · 2^(attempt-1))`, then scaled into `[d/2, d]` by `unit` in `[0, 1]`.
pub fn delay(base: Duration, max: Duration, attempt: u32, unit: f64) -> Duration {
    let factor = 2f64.powi(attempt.saturating_sub(1).min(62) as i32);
    let full = (base.as_secs_f64() * factor).min(max.as_secs_f64());
    Duration::from_secs_f64(full * (0.5 + 0.5 * unit.clamp(0.0, 1.0)))
}

fn clock_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Rng::from_parts(&[
        nanos,
        u64::from(std::process::id()),
        COUNTER.fetch_add(1, Ordering::Relaxed),
    ])
    .next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_delay_doubles_is_capped_and_jittered() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(delay(base, max, 1, 1.0), base);
        assert_eq!(delay(base, max, 1, 0.0), base / 2);
        assert_eq!(delay(base, max, 3, 1.0), base * 4);
        assert_eq!(delay(base, max, 10, 1.0), max);
        assert_eq!(delay(base, max, u32::MAX, 0.0), max / 2);
        let seeded = |seed| {
            let backoff = Backoff::new(base, max, Some(seed));
            (1..10).map(|a| backoff.delay(a)).collect::<Vec<_>>()
        };
        assert_eq!(seeded(3), seeded(3));
        assert_ne!(seeded(3), seeded(4));
    }

    proptest! {
        #[test]
        fn delays_stay_within_half_and_all_of_the_capped_doubling(
            attempt in 0u32..100,
            seed in any::<u64>(),
        ) {
            let (base, max) = (Duration::from_millis(10), Duration::from_secs(2));
            let wait = Backoff::new(base, max, Some(seed)).delay(attempt);
            let full = delay(base, max, attempt, 1.0);
            prop_assert!(wait <= full && wait >= full / 2, "{wait:?} vs {full:?}");
            prop_assert!(full <= max);
        }
    }
}
