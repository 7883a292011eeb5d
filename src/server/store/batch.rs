//! Group commit: concurrent writes of one kind share a transaction.
//!
//! A [`Batcher`] owns a few writer tasks. Callers [`submit`](Batcher::submit) an item and wait;
//! a free writer takes every item waiting at that moment (up to a bound), commits them in one
//! transaction, and only then answers each caller. While batches commit, the next gathers, so
//! under load a commit (and its fsync and audit-chain lock) is paid once per batch rather than
//! once per request, and with one caller nothing waits for company.
//!
//! Nothing is answered before its rows are durable. A batch that fails on a database refusal
//! (say, one item's conflict) is retried item by item, so each caller gets its own item's
//! outcome; a batch that fails because the database is unavailable fails every caller at once.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::core_store::NewAuditEvent;
use super::error::StoreError;
use super::handle::SharedStore;
use super::mandates::{NewMandate, Receipt};

/// Most items one transaction takes.
pub const MAX_BATCH: usize = 256;

/// Writer tasks per kind. While one batch holds the audit chain's lock through its commit, the
/// other inserts its rows and queues for the lock, so the lock is never idle while work waits.
/// More writers only split the waiting work into smaller batches, each paying the lock and
/// the commit: on the benchmark host four writers minted 1,600/s where two minted 2,500/s
/// (see BENCHMARKS.md).
pub const WRITERS: usize = 2;

/// How items of one kind are committed together.
#[async_trait]
pub trait Commit<T>: Send + Sync + 'static {
    /// Commits `items` in one transaction: all or none.
    async fn commit(&self, items: &[T]) -> Result<(), StoreError>;
}

/// Issuances with their audit events, and the most live mandates one agent may hold.
pub struct Mandates(pub SharedStore, pub u32);

#[async_trait]
impl Commit<NewMandate> for Mandates {
    async fn commit(&self, items: &[NewMandate]) -> Result<(), StoreError> {
        self.0.insert_mandates(items, Some(self.1)).await
    }
}

/// Receipt reports with their audit events.
pub struct Receipts(pub SharedStore);

#[async_trait]
impl Commit<(Vec<Receipt>, NewAuditEvent)> for Receipts {
    async fn commit(&self, items: &[(Vec<Receipt>, NewAuditEvent)]) -> Result<(), StoreError> {
        self.0.insert_receipt_batches(items).await
    }
}

/// The service's group-committing writers.
#[derive(Debug)]
pub struct Writers {
    /// Issuances and their audit events.
    pub mandates: Batcher<NewMandate>,
    /// Receipt reports and their audit events.
    pub receipts: Batcher<(Vec<Receipt>, NewAuditEvent)>,
}

impl Writers {
    /// Starts the writer tasks of each kind, on `store`; no agent may hold more than
    /// `live_cap` live mandates.
    pub fn spawn(store: &SharedStore, live_cap: u32) -> Self {
        Self {
            mandates: Batcher::spawn(Mandates(Arc::clone(store), live_cap)),
            receipts: Batcher::spawn(Receipts(Arc::clone(store))),
        }
    }
}

struct Job<T> {
    item: T,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The handle callers submit to; the writer task ends when every handle is dropped.
pub struct Batcher<T> {
    jobs: mpsc::Sender<Job<T>>,
}

impl<T> std::fmt::Debug for Batcher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> Batcher<T> {
    /// Starts [`WRITERS`] writer tasks, committing through `commit`.
    pub fn spawn(commit: impl Commit<T>) -> Self {
        let (jobs, queue) = mpsc::channel(MAX_BATCH * 4);
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        let commit: Arc<dyn Commit<T>> = Arc::new(commit);
        for _ in 0..WRITERS {
            tokio::spawn(write(Arc::clone(&queue), Arc::clone(&commit)));
        }
        Self { jobs }
    }

    /// Commits `item` (with whatever else is waiting) and returns once it is durable.
    pub async fn submit(&self, item: T) -> Result<(), StoreError> {
        let (done, outcome) = oneshot::channel();
        self.jobs
            .send(Job { item, done })
            .await
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable(sqlx::Error::PoolClosed)
}

/// An error for each caller of a failed batch (the originals cannot be cloned).
fn for_each_caller(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(_) => stopped(),
        StoreError::Conflict(message) => StoreError::Conflict(message.clone()),
        StoreError::LimitReached(message) => StoreError::LimitReached(message.clone()),
        StoreError::NoLongerActive(message) => StoreError::NoLongerActive(message.clone()),
        StoreError::InventoryMoved => StoreError::InventoryMoved,
        StoreError::NotFound(message) => StoreError::NotFound(message.clone()),
        other => StoreError::Corrupt(format!("a group commit failed: {other}")),
    }
}

async fn write<T: Send + Sync + 'static>(
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Job<T>>>>,
    commit: Arc<dyn Commit<T>>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    // One writer at a time takes what is waiting; the others commit meanwhile.
    while queue.lock().await.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let (items, waiting): (Vec<T>, Vec<_>) =
            jobs.drain(..).map(|job| (job.item, job.done)).unzip();
        match commit.commit(&items).await {
            Ok(()) => {
                for done in waiting {
                    let _ = done.send(Ok(()));
                }
            }
            Err(error @ StoreError::Unavailable(_)) => {
                tracing::warn!(%error, batch = items.len(), "group commit failed");
                for done in waiting {
                    let _ = done.send(Err(for_each_caller(&error)));
                }
            }
            Err(error) if items.len() == 1 => {
                if let Some(done) = waiting.into_iter().next() {
                    let _ = done.send(Err(error));
                }
            }
            Err(error) => {
                tracing::debug!(%error, batch = items.len(), "group commit refused; committing one by one");
                for (item, done) in items.iter().zip(waiting) {
                    let _ = done.send(commit.commit(std::slice::from_ref(item)).await);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records each transaction's items; refuses any batch holding a negative number.
    #[derive(Default, Clone)]
    struct Recorder(Arc<Mutex<Vec<Vec<i32>>>>);

    #[async_trait]
    impl Commit<i32> for Recorder {
        async fn commit(&self, items: &[i32]) -> Result<(), StoreError> {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if items.iter().any(|i| *i < 0) {
                return Err(StoreError::Conflict(format!("refused {items:?}")));
            }
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(items.to_vec());
            Ok(())
        }
    }

    #[tokio::test]
    async fn concurrent_submissions_share_transactions_and_each_waits_for_its_own() {
        let recorder = Recorder::default();
        let batcher = Arc::new(Batcher::spawn(recorder.clone()));
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let batcher = Arc::clone(&batcher);
                tokio::spawn(async move { batcher.submit(i).await })
            })
            .collect();
        for task in tasks {
            assert!(task.await.is_ok_and(|r| r.is_ok()));
        }
        let batches = recorder
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut all: Vec<i32> = batches.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<_>>(), "each item committed once");
        assert!(
            batches.len() < 50,
            "50 concurrent items took {} transactions",
            batches.len()
        );
    }

    #[tokio::test]
    async fn one_refused_item_fails_alone() {
        let recorder = Recorder::default();
        let batcher = Arc::new(Batcher::spawn(recorder.clone()));
        let tasks: Vec<_> = [1, 2, -3, 4, 5]
            .into_iter()
            .map(|i| {
                let batcher = Arc::clone(&batcher);
                tokio::spawn(async move { (i, batcher.submit(i).await) })
            })
            .collect();
        for task in tasks {
            let Ok((i, outcome)) = task.await else {
                panic!("a submitter panicked")
            };
            assert_eq!(outcome.is_ok(), i > 0, "item {i}: {outcome:?}");
        }
        let mut committed: Vec<i32> = recorder
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .flatten()
            .copied()
            .collect();
        committed.sort_unstable();
        assert_eq!(committed, vec![1, 2, 4, 5]);
    }
}
