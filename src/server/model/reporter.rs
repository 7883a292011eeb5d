//! Reporters: registered verifiers and gateways, each with an accountable owner and a
//! credential (`mnd_rep_…`, shown once, stored as a hash). Only a reporter may post receipts,
//! and every receipt records which one reported it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{text_enum, Invalid, Validation};

/// What reports the calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReporterKind {
    /// A service verifying mandates itself (the library, the tower layer).
    Verifier,
    /// A gateway in front of tools.
    Gateway,
}
text_enum!(ReporterKind { Verifier => "verifier", Gateway => "gateway" });

/// Whether its credential is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReporterStatus {
    /// Its receipts are accepted.
    Active,
    /// Its credential is refused.
    Disabled,
}
text_enum!(ReporterStatus { Active => "active", Disabled => "disabled" });

/// A registered reporter (never its credential).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reporter {
    /// Slug id; receipts and attribution name it.
    #[schema(example = "crm-api")]
    pub id: String,
    /// Human-readable name.
    pub display_name: String,
    /// Verifier or gateway.
    pub kind: ReporterKind,
    /// The accountable human (subject or email).
    pub owner: String,
    /// Active or disabled.
    pub status: ReporterStatus,
    /// Increases with every change.
    pub version: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed (its credential included).
    pub updated_at: DateTime<Utc>,
}

/// `POST /v1/admin/reporters`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReporter {
    /// Slug id.
    pub id: String,
    /// Human-readable name.
    pub display_name: String,
    /// Verifier or gateway.
    pub kind: ReporterKind,
    /// The accountable human.
    pub owner: String,
}

impl NewReporter {
    /// Field checks.
    pub fn check(&self) -> Result<(), Invalid> {
        let mut check = Validation::new();
        check.id("id", &self.id);
        check.text("display_name", &self.display_name, 128, true);
        check.text("owner", &self.owner, 256, true);
        check.finish()
    }

    /// The reporter this request registers.
    pub fn into_reporter(self, now: DateTime<Utc>) -> Reporter {
        Reporter {
            id: self.id,
            display_name: self.display_name,
            kind: self.kind,
            owner: self.owner,
            status: ReporterStatus::Active,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }
}

/// A reporter with its new credential, shown this once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedReporter {
    /// The reporter.
    pub reporter: Reporter,
    /// Its credential (`mnd_rep_…`): send it as `Authorization: Bearer` with receipts and
    /// revocation streams.
    pub secret: String,
}
