//! Admin tokens: bearer tokens for the admin API, each with a name (to which every request is
//! attributed) and a role.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{text_enum, Invalid, Validation};

/// What an admin token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads and changes everything.
    Admin,
    /// Reads everything, changes nothing.
    Auditor,
}
text_enum!(Role { Admin => "admin", Auditor => "auditor" });

/// An admin token's metadata (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AdminToken {
    /// Token id.
    pub id: Uuid,
    /// Unique name; admin requests are attributed to it.
    #[schema(example = "iam-oncall")]
    pub name: String,
    /// Admin or auditor.
    pub role: Role,
    /// Who created it.
    pub created_by: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `POST /v1/admin/tokens`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAdminToken {
    /// Unique name (slug).
    #[schema(example = "iam-oncall")]
    pub name: String,
    /// Admin or auditor.
    pub role: Role,
}

impl NewAdminToken {
    /// Field checks.
    pub fn check(&self) -> Result<(), Invalid> {
        let mut check = Validation::new();
        check.id("name", &self.name);
        check.finish()
    }
}

/// A new admin token, shown once.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct IssuedAdminToken {
    /// Its metadata.
    #[serde(flatten)]
    pub info: AdminToken,
    /// `mnd_adm_…`: store it now; mandate keeps only its hash.
    pub token: String,
}

impl std::fmt::Debug for IssuedAdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedAdminToken")
            .field("token", &"[redacted]")
            .finish_non_exhaustive()
    }
}
