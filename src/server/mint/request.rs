//! What an orchestrator asks a mint for, and the checks of its fields.

use crate::server::model::{Grant, Invalid, Validation};
use crate::token::pop::HolderKey;

/// Longest task description, in bytes.
pub const MAX_TASK_BYTES: usize = 4096;
/// Most tool entries in one requested scope.
pub const MAX_SCOPE_TOOLS: usize = 64;

/// What an orchestrator asks for.
#[derive(Debug, Clone)]
pub struct MintRequest {
    /// The human principal's JWT.
    pub subject_token: String,
    /// What the task is, verbatim.
    pub task_description: String,
    /// The caller's own id for the task, if any.
    pub task_ref: Option<String>,
    /// The tool operations wanted.
    pub scope: Vec<Grant>,
    /// Wanted lifetime in seconds (default 15 minutes).
    pub ttl_seconds: Option<i64>,
    /// The key to bind the mandate to, if the orchestrator wants it bound.
    pub holder_key: Option<HolderKey>,
}

impl MintRequest {
    pub(super) fn check(&self, cap: u32) -> Result<(), Invalid> {
        let mut check = Validation::new();
        if self.subject_token.is_empty() {
            check.fail("subject_token", "must not be empty");
        }
        if self.task_description.trim().is_empty() {
            check.fail("task.description", "must not be empty");
        } else if self.task_description.len() > MAX_TASK_BYTES {
            check.fail(
                "task.description",
                format!("must be at most {MAX_TASK_BYTES} bytes"),
            );
        } else if self.task_description.contains('\0') {
            check.fail("task.description", "must not contain NUL characters");
        }
        if let Some(task_ref) = &self.task_ref {
            check.text("task.ref", task_ref, 128, true);
        }
        if self.scope.is_empty() {
            check.fail("scope", "must request at least one tool operation");
        } else if self.scope.len() > MAX_SCOPE_TOOLS {
            check.fail(
                "scope",
                format!("must name at most {MAX_SCOPE_TOOLS} tools"),
            );
        } else {
            check.grants(
                "scope",
                &self.scope,
                crate::server::model::GrantsOf::Request,
            );
        }
        if let Some(ttl) = self.ttl_seconds {
            check.ttl("ttl_seconds", ttl, cap);
        }
        check.finish()
    }
}
