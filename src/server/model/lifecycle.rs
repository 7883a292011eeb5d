//! How administered records change: each status is a small state machine, and every change of a
//! record is its next version. The admin API asks these before it writes anything.

use chrono::{DateTime, Utc};

use super::agent::{Agent, AgentStatus};
use super::issuer::{Issuer, IssuerStatus};
use super::policy::Policy;
use super::reporter::{Reporter, ReporterStatus};
use super::tool::{Tool, ToolStatus};

/// A status an administrator moves a record through.
pub trait Status: Copy + PartialEq {
    /// What the record is called in messages: `agent`, `tool`, …
    const KIND: &'static str;

    /// The wire name of the status.
    fn name(self) -> &'static str;

    /// Whether a record in this status may be moved to `to`.
    fn may_become(self, to: Self) -> bool;

    /// Whether this status revokes the live mandates that depend on the record: asking for it
    /// again, once reached, re-runs that sweep (after one that failed) and changes nothing.
    fn revokes(self) -> bool;
}

/// What asking a record to move to a status comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Change the status.
    Move,
    /// The record is already there and the status revokes: change nothing, sweep again.
    Again,
}

/// A status change the record's state machine refuses (409 at the edge).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StatusConflict(pub String);

/// Whether the record `id`, in `from`, may be asked to become `to`.
pub fn step<S: Status>(id: &str, from: S, to: S) -> Result<Step, StatusConflict> {
    let kind = S::KIND;
    if from == to {
        return if to.revokes() {
            Ok(Step::Again)
        } else {
            Err(StatusConflict(format!(
                "{kind} `{id}` is already {}",
                to.name()
            )))
        };
    }
    if from.may_become(to) {
        Ok(Step::Move)
    } else {
        Err(StatusConflict(format!(
            "{kind} `{id}` is {}; it cannot become {}",
            from.name(),
            to.name()
        )))
    }
}

impl Status for AgentStatus {
    const KIND: &'static str = "agent";
    fn name(self) -> &'static str {
        self.as_str()
    }
    fn may_become(self, to: Self) -> bool {
        use AgentStatus::{Active, Retired, Suspended};
        matches!(
            (self, to),
            (Active, Suspended) | (Suspended, Active) | (Active | Suspended, Retired)
        )
    }
    fn revokes(self) -> bool {
        self != AgentStatus::Active
    }
}

impl Status for ToolStatus {
    const KIND: &'static str = "tool";
    fn name(self) -> &'static str {
        self.as_str()
    }
    fn may_become(self, to: Self) -> bool {
        use ToolStatus::{Active, Disabled, Retired};
        matches!(
            (self, to),
            (Active, Disabled) | (Disabled, Active) | (Active | Disabled, Retired)
        )
    }
    fn revokes(self) -> bool {
        self != ToolStatus::Active
    }
}

impl Status for IssuerStatus {
    const KIND: &'static str = "issuer";
    fn name(self) -> &'static str {
        self.as_str()
    }
    fn may_become(self, _to: Self) -> bool {
        true
    }
    fn revokes(self) -> bool {
        self == IssuerStatus::Disabled
    }
}

impl Status for ReporterStatus {
    const KIND: &'static str = "reporter";
    fn name(self) -> &'static str {
        self.as_str()
    }
    fn may_become(self, _to: Self) -> bool {
        true
    }
    /// A disabled reporter's receipts are refused; nothing it reported is revoked.
    fn revokes(self) -> bool {
        false
    }
}

/// A record every change of which is a new version, stamped with when it was made.
pub trait Versioned {
    /// The record's id.
    fn id(&self) -> &str;

    /// Makes this the version after `before`, changed at `now`.
    fn follow(&mut self, before: &Self, now: DateTime<Utc>);
}

macro_rules! versioned {
    ($($ty:ty),+) => {$(
        impl Versioned for $ty {
            fn id(&self) -> &str {
                &self.id
            }
            fn follow(&mut self, before: &Self, now: DateTime<Utc>) {
                self.version = before.version + 1;
                self.updated_at = now;
            }
        }
    )+};
}
versioned!(Agent, Tool, Issuer, Reporter, Policy);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (from, to) pair of a machine, and what `step` answers.
    fn table<S: Status>(all: &[S]) -> Vec<(&'static str, &'static str, String)> {
        let mut rows = Vec::new();
        for &from in all {
            for &to in all {
                let answer = match step("x", from, to) {
                    Ok(Step::Move) => "move".to_owned(),
                    Ok(Step::Again) => "again".to_owned(),
                    Err(StatusConflict(message)) => message,
                };
                rows.push((from.name(), to.name(), answer));
            }
        }
        rows
    }

    #[test]
    fn agents_suspend_resume_and_retire_for_good() {
        use AgentStatus::{Active, Retired, Suspended};
        let rows = table(&[Active, Suspended, Retired]);
        let answer = |from: &str, to: &str| {
            rows.iter()
                .find(|r| r.0 == from && r.1 == to)
                .map(|r| r.2.clone())
                .unwrap()
        };
        assert_eq!(answer("active", "suspended"), "move");
        assert_eq!(answer("suspended", "active"), "move");
        assert_eq!(answer("active", "retired"), "move");
        assert_eq!(answer("suspended", "retired"), "move");
        assert_eq!(answer("suspended", "suspended"), "again");
        assert_eq!(answer("retired", "retired"), "again");
        assert_eq!(answer("active", "active"), "agent `x` is already active");
        assert_eq!(
            answer("retired", "active"),
            "agent `x` is retired; it cannot become active"
        );
        assert_eq!(
            answer("retired", "suspended"),
            "agent `x` is retired; it cannot become suspended"
        );
    }

    #[test]
    fn tools_disable_enable_and_retire_for_good() {
        use ToolStatus::{Active, Disabled, Retired};
        assert_eq!(step("t", Active, Disabled), Ok(Step::Move));
        assert_eq!(step("t", Disabled, Active), Ok(Step::Move));
        assert_eq!(step("t", Disabled, Retired), Ok(Step::Move));
        assert_eq!(step("t", Disabled, Disabled), Ok(Step::Again));
        assert_eq!(step("t", Retired, Retired), Ok(Step::Again));
        assert!(step("t", Retired, Active).is_err());
        assert!(step("t", Retired, Disabled).is_err());
        assert!(step("t", Active, Active).is_err());
    }

    #[test]
    fn issuers_and_reporters_toggle_and_only_a_disabled_issuer_sweeps_again() {
        assert_eq!(
            step("i", IssuerStatus::Active, IssuerStatus::Disabled),
            Ok(Step::Move)
        );
        assert_eq!(
            step("i", IssuerStatus::Disabled, IssuerStatus::Disabled),
            Ok(Step::Again)
        );
        assert_eq!(
            step("i", IssuerStatus::Active, IssuerStatus::Active),
            Err(StatusConflict("issuer `i` is already active".into()))
        );
        assert_eq!(
            step("r", ReporterStatus::Disabled, ReporterStatus::Disabled),
            Err(StatusConflict("reporter `r` is already disabled".into()))
        );
        assert_eq!(
            step("r", ReporterStatus::Disabled, ReporterStatus::Active),
            Ok(Step::Move)
        );
    }

    #[test]
    fn a_change_is_the_next_version_at_its_time() {
        let before = crate::server::model::reporter::NewReporter {
            id: "gw".into(),
            display_name: "Gateway".into(),
            kind: crate::server::model::reporter::ReporterKind::Gateway,
            owner: "o".into(),
        }
        .into_reporter(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
        let mut after = before.clone();
        let now = DateTime::from_timestamp(1_800_000_060, 0).unwrap();
        after.follow(&before, now);
        assert_eq!(after.version, before.version + 1);
        assert_eq!(after.updated_at, now);
        assert_eq!(after.id(), "gw");
    }
}
