//! Storage failures, and how database errors map onto them.

/// Storage failures. Only [`StoreError::Conflict`] carries a message meant for clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or has no free connection (503).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The change contradicts what is stored (409).
    #[error("{0}")]
    Conflict(String),
    /// The row to change does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// A configured limit would be exceeded (409); the message says which.
    #[error("{0}")]
    LimitReached(String),
    /// An agent or tool the write depends on stopped being active meanwhile (409).
    #[error("{0}")]
    NoLongerActive(String),
    /// The write was decided on an inventory that has changed since (503 if it reaches a
    /// client: the decision is made again first).
    #[error("the inventory changed while the mandate was minted")]
    InventoryMoved,
    /// A stored value is not what mandate wrote (500).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The audit chain does not hold from event `seq` on (500): nothing is signed over it.
    #[error("stored data is corrupt: audit chain broken at event {seq}: {reason}; not signing it")]
    AuditBroken {
        /// The first event that does not hold.
        seq: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// Migrations could not be applied.
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// Any other database error (500).
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &error {
            if db.is_unique_violation() {
                return StoreError::Conflict("it already exists".to_owned());
            }
            if db.is_foreign_key_violation() {
                return StoreError::Conflict(
                    "it refers to something that does not exist".to_owned(),
                );
            }
            if db.code().is_some_and(|code| is_unavailable_state(&code)) {
                return StoreError::Unavailable(error);
            }
        }
        match error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(error),
            other => StoreError::Database(other),
        }
    }
}

/// Postgres SQLSTATEs meaning "not now" rather than "not this": a lost connection (class 08),
/// exhausted resources (53) and operator intervention (57: shutting down, starting up, restarted
/// after a crash), and 55000 (object not in prerequisite state: a database not accepting
/// connections, as during a restore). SQLite's numeric result codes never have five characters.
fn is_unavailable_state(code: &str) -> bool {
    code.len() == 5
        && (code == "55000"
            || ["08", "53", "57"]
                .iter()
                .any(|class| code.starts_with(class)))
}

#[cfg(test)]
mod tests {
    use super::is_unavailable_state;

    #[test]
    fn shutdown_restart_and_lost_connection_states_mean_unavailable_and_constraint_states_do_not() {
        for code in [
            "57P01", "57P02", "57P03", "08006", "08003", "53300", "55000",
        ] {
            assert!(is_unavailable_state(code), "{code}");
        }
        for code in [
            "23505", "23503", "42P01", "40001", "55006", "5", "517", "2067",
        ] {
            assert!(!is_unavailable_state(code), "{code}");
        }
    }
}
