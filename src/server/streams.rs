//! Places for revocation streams (`/v1/revocations/stream`): each open stream re-reads the feed
//! on every commit, so they are bounded in all, and per caller so that one caller (anyone, as
//! the feed is public) cannot take every place. A caller is a registered reporter by its
//! credential, or else the address the connection comes from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most streams one caller holds open at once.
pub const STREAMS_PER_CALLER: usize = 4;

/// The places, in all and per caller.
#[derive(Debug)]
pub struct StreamSlots {
    total: Arc<Semaphore>,
    per_caller: usize,
    held: Mutex<HashMap<String, usize>>,
}

/// One open stream's place; freed when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    _permit: OwnedSemaphorePermit,
    caller: String,
    slots: Arc<StreamSlots>,
}

/// Why no place was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// Every place is taken.
    Full,
    /// This caller holds its most.
    CallerFull,
}

impl StreamSlots {
    /// `total` places, at most `per_caller` (capped at `total`) for any one caller.
    pub fn new(total: usize, per_caller: usize) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(total)),
            per_caller: per_caller.min(total),
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A place for `caller`, if one is free for it.
    pub fn take(self: &Arc<Self>, caller: String) -> Result<StreamSlot, NoSlot> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.get(&caller).copied().unwrap_or(0);
        if count >= self.per_caller {
            return Err(NoSlot::CallerFull);
        }
        let permit = Arc::clone(&self.total)
            .try_acquire_owned()
            .map_err(|_| NoSlot::Full)?;
        held.insert(caller.clone(), count + 1);
        Ok(StreamSlot {
            _permit: permit,
            caller,
            slots: Arc::clone(self),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut held = self
            .slots
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_caller_cannot_take_every_place_and_a_dropped_place_is_free_again() {
        let slots = StreamSlots::new(5, 2);
        let a1 = slots.take("a".into()).unwrap();
        let _a2 = slots.take("a".into()).unwrap();
        assert_eq!(slots.take("a".into()).unwrap_err(), NoSlot::CallerFull);
        let _b: Vec<_> = (0..2).map(|_| slots.take("b".into()).unwrap()).collect();
        let _c = slots.take("c".into()).unwrap();
        assert_eq!(slots.take("d".into()).unwrap_err(), NoSlot::Full);
        drop(a1);
        assert!(slots.take("a".into()).is_ok(), "its place is free again");
    }
}
