//! Time as a parameter: every component asks an injected [`Clock`], so expiry logic, key ages
//! and staleness are tested without sleeping. Nothing else reads the wall clock or the monotonic
//! clock (`clippy.toml` bans `Utc::now`, `SystemTime::now` and `Instant::now` elsewhere).

use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use chrono::{DateTime, Duration, SubsecRound, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + Debug {
    /// The current time in UTC.
    fn now(&self) -> DateTime<Utc>;

    /// The current monotonic instant: what ages and timeouts are measured with (it never runs
    /// backwards, whatever the wall clock does).
    fn instant(&self) -> Instant;
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's wall clock, at microsecond resolution: the precision both stores
/// keep, so a value returned at creation equals the value read back later.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "the one place that reads the wall clock"
    )]
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "the one place that reads the monotonic clock"
    )]
    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to, for tests. Its monotonic instant moves forward with
/// the wall time and stays put when the wall time is set back, as a real one does.
#[derive(Debug)]
pub struct ManualClock {
    state: Mutex<Manual>,
}

#[derive(Debug)]
struct Manual {
    now: DateTime<Utc>,
    instant: Instant,
}

impl ManualClock {
    /// A clock stopped at `start`.
    #[expect(
        clippy::disallowed_methods,
        reason = "a manual clock's instants start from a real one"
    )]
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            state: Mutex::new(Manual {
                now: start,
                instant: Instant::now(),
            }),
        }
    }

    /// Moves the clock forward (or the wall time backward, with a negative duration).
    pub fn advance(&self, by: Duration) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let to = state.now + by;
        state.move_to(to);
    }

    /// Sets the wall time to `to`.
    pub fn set(&self, to: DateTime<Utc>) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .move_to(to);
    }
}

impl Manual {
    fn move_to(&mut self, to: DateTime<Utc>) {
        if let Ok(forward) = (to - self.now).to_std() {
            self.instant += forward;
        }
        self.now = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .now
    }

    fn instant(&self) -> Instant {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .instant
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::seconds(90));
        assert_eq!(clock.now(), start + Duration::seconds(90));
        clock.set(start);
        assert_eq!(clock.now(), start);
    }

    #[test]
    fn manual_instants_move_forward_with_the_wall_time_and_never_back() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let clock = ManualClock::new(start);
        let first = clock.instant();
        clock.advance(Duration::seconds(90));
        let later = clock.instant();
        assert_eq!(later - first, std::time::Duration::from_secs(90));
        clock.advance(Duration::seconds(-60));
        assert_eq!(
            clock.instant(),
            later,
            "setting the wall time back keeps the instant"
        );
        clock.set(start + Duration::seconds(100));
        assert_eq!(clock.instant() - later, std::time::Duration::from_secs(70));
    }
}
