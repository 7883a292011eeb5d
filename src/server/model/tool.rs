//! Tools: the downstream APIs, MCP servers and tools agents act on, each with an accountable
//! owner and the operations it offers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{nullable, text_enum, Invalid, Validation};

/// What kind of thing a tool is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolKind {
    /// An HTTP API.
    Api,
    /// A Model Context Protocol server.
    McpServer,
    /// Any other tool.
    Tool,
}
text_enum!(ToolKind { Api => "api", McpServer => "mcp_server", Tool => "tool" });

/// Whether a tool can be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolStatus {
    /// Grantable.
    Active,
    /// Temporarily not grantable.
    Disabled,
    /// Permanently withdrawn.
    Retired,
}
text_enum!(ToolStatus { Active => "active", Disabled => "disabled", Retired => "retired" });

/// A registered tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Tool {
    /// Slug id.
    #[schema(example = "github")]
    pub id: String,
    /// Human-readable name.
    pub display_name: String,
    /// API, MCP server or tool.
    pub kind: ToolKind,
    /// The accountable human.
    pub owner: String,
    /// What it is.
    pub description: Option<String>,
    /// Operations it offers.
    #[schema(example = json!(["issues.read", "issues.create"]))]
    pub operations: Vec<String>,
    /// Lifecycle state.
    pub status: ToolStatus,
    /// Increases with every change.
    pub version: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// `POST /v1/admin/tools`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTool {
    /// Slug id.
    #[schema(example = "github")]
    pub id: String,
    /// Human-readable name.
    pub display_name: String,
    /// API, MCP server or tool.
    pub kind: ToolKind,
    /// The accountable human; required.
    pub owner: String,
    /// What it is.
    #[serde(default)]
    pub description: Option<String>,
    /// Operations it offers (slugs, at least one).
    pub operations: Vec<String>,
}

/// `PATCH /v1/admin/tools/{id}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolPatch {
    /// New display name.
    pub display_name: Option<String>,
    /// New owner.
    pub owner: Option<String>,
    /// New description, or `null` to clear.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// New operations (replaces the list; removing one that a policy or ceiling uses is refused).
    pub operations: Option<Vec<String>>,
}

fn check_operations(check: &mut Validation, operations: &[String]) {
    if operations.is_empty() {
        check.fail("operations", "must name at least one operation");
    }
    check.ids("operations", operations);
}

impl NewTool {
    /// Field checks.
    pub fn check(&self) -> Result<(), Invalid> {
        let mut check = Validation::new();
        check.id("id", &self.id);
        check.text("display_name", &self.display_name, 128, true);
        check.text("owner", &self.owner, 256, true);
        check.optional_text("description", self.description.as_deref(), 2048);
        check_operations(&mut check, &self.operations);
        check.finish()
    }

    /// The tool this request registers.
    pub fn into_tool(self, now: DateTime<Utc>) -> Tool {
        Tool {
            id: self.id,
            display_name: self.display_name,
            kind: self.kind,
            owner: self.owner,
            description: self.description,
            operations: self.operations,
            status: ToolStatus::Active,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }
}

impl ToolPatch {
    /// Field checks.
    pub fn check(&self) -> Result<(), Invalid> {
        let mut check = Validation::new();
        if let Some(name) = &self.display_name {
            check.text("display_name", name, 128, true);
        }
        if let Some(owner) = &self.owner {
            check.text("owner", owner, 256, true);
        }
        if let Some(description) = &self.description {
            check.optional_text("description", description.as_deref(), 2048);
        }
        if let Some(operations) = &self.operations {
            check_operations(&mut check, operations);
        }
        check.finish()
    }

    /// `tool` with this patch applied.
    pub fn apply(self, mut tool: Tool) -> Tool {
        if let Some(v) = self.display_name {
            tool.display_name = v;
        }
        if let Some(v) = self.owner {
            tool.owner = v;
        }
        if let Some(v) = self.description {
            tool.description = v;
        }
        if let Some(v) = self.operations {
            tool.operations = v;
        }
        tool
    }
}
