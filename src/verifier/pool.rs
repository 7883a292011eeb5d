//! Where token work runs: off the async workers, a bounded number at a time, under a deadline.
//!
//! Checking a token's signatures and running its authorizer are synchronous CPU work. Done on a
//! tokio worker, a flood of tokens would hold the workers every other request needs. Here each
//! piece of work waits for one of a fixed number of permits (twice the cores), runs on the
//! blocking pool, and is refused with [`TokenError::Busy`] when it has not got its permit or
//! finished within the deadline. The block vocabulary already bounds what one token can cost;
//! the deadline is the second line.

use std::sync::LazyLock;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::token::TokenError;

/// How long one piece of token work may wait for its turn and then run.
pub const DEADLINE: Duration = Duration::from_millis(250);

static PERMITS: LazyLock<std::sync::Arc<Semaphore>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    std::sync::Arc::new(Semaphore::new(2 * cores))
});

/// Runs `work` on the blocking pool once a permit is free, and waits for it at most
/// [`DEADLINE`] in all. Work that overruns keeps its permit until it ends, so overruns cannot
/// pile up threads beyond the permits.
pub async fn run<T, F>(work: F) -> Result<T, TokenError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, TokenError> + Send + 'static,
{
    let waited = tokio::time::timeout(DEADLINE, async move {
        let permit = std::sync::Arc::clone(&PERMITS)
            .acquire_owned()
            .await
            .map_err(|_| TokenError::Busy)?;
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        });
        // A panic in the work is a refusal too.
        task.await.map_err(|_| TokenError::Busy)?
    });
    waited.await.map_err(|_| TokenError::Busy)?
}
