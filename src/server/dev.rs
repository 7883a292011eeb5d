//! Development mode only (`serve --dev`): a built-in identity provider whose keys mandate
//! serves, `mandate dev login` to sign a human's token with it, and a seed inventory (an
//! orchestrator with its secret, two tools, one policy) so that a newcomer mints a real mandate
//! within a minute of starting the service.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use super::keys::{self, KeyError};
use super::model::agent::{AgentKind, AgentSecretInfo, NewAgent};
use super::model::approval::{ApprovalRule, Approvers, NamedApprovers, DEFAULT_VALID_SECONDS};
use super::model::issuer::NewIssuer;
use super::model::policy::{AgentScope, NewPolicy};
use super::model::tool::{NewTool, ToolKind};
use super::model::Grant;
use super::secrets::{self, AGENT_SECRET_PREFIX};
use super::store::{
    change_event, new_id, NewAuditEvent, NewSecret, SecretChange, Store, StoreError,
};

/// The dev issuer's id.
pub const DEV_ISSUER: &str = "dev-idp";
/// The seeded orchestrator.
pub const DEV_AGENT: &str = "dev-orchestrator";
/// The key id of the dev issuer's only key.
const DEV_KID: &str = "dev-1";
/// Who the seed's audit events name.
const SEED_ACTOR: &str = "system:dev-seed";

/// Where the dev issuer's signing key lives.
pub fn dev_idp_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("dev-idp-key.pem")
}

/// Where the seeded orchestrator's secret is written (mode 0600) on first start.
pub fn dev_secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join("dev-orchestrator.secret")
}

/// Where a development service writes its issuer URL at start, for `mandate dev login` to sign
/// for the service that runs (whatever port it was given).
pub fn dev_issuer_path(data_dir: &Path) -> PathBuf {
    data_dir.join("dev-idp.issuer")
}

/// The URL a local client reaches a service listening on `listen` at.
fn service_url(listen: SocketAddr) -> String {
    let host = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(host, listen.port()))
}

/// The dev issuer's URL for a service listening on `listen`.
pub fn issuer_url(listen: SocketAddr) -> String {
    format!("{}/dev/idp", service_url(listen))
}

/// The built-in identity provider.
#[derive(Debug)]
pub struct DevIdp {
    public_key: Vec<u8>,
    issuer: String,
    /// Where the service that serves it listens, as bound (never port 0).
    service: String,
}

impl DevIdp {
    /// Loads (or creates) the dev issuer's key in `data_dir`.
    pub fn load_or_create(data_dir: &Path, listen: SocketAddr) -> Result<Self, KeyError> {
        let path = dev_idp_key_path(data_dir);
        let key = if path.exists() {
            keys::load_key_file(&path)?
        } else {
            keys::generate_key_file(&path)?
        };
        let issuer = issuer_url(listen);
        let written = dev_issuer_path(data_dir);
        std::fs::write(&written, format!("{issuer}\n")).map_err(|reason| KeyError::Write {
            path: written.clone(),
            reason,
        })?;
        Ok(Self {
            public_key: key.public().to_bytes(),
            issuer,
            service: service_url(listen),
        })
    }

    /// The JWKS the issuer publishes.
    pub fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": DEV_KID,
            "x": URL_SAFE_NO_PAD.encode(&self.public_key),
        }]})
    }

    /// Its issuer URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

/// Why `mandate dev login` failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The dev issuer's key is missing or unusable.
    #[error("{0} (start `mandate serve --dev` once to create it)")]
    Key(#[from] KeyError),
    /// Signing failed.
    #[error("cannot sign the token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// The issuer `dev login` signs as: the one the last development service started in
/// `data_dir` wrote, else the one a service on `listen` would have.
pub fn login_issuer(data_dir: &Path, listen: SocketAddr) -> String {
    std::fs::read_to_string(dev_issuer_path(data_dir))
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|url| url.starts_with("http://") && url.len() < 256)
        .unwrap_or_else(|| issuer_url(listen))
}

/// A human's token from the dev issuer, valid for `ttl`.
pub fn login(
    data_dir: &Path,
    listen: SocketAddr,
    subject: &str,
    groups: &[String],
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<String, LoginError> {
    let pem = keys::read_private_file(&dev_idp_key_path(data_dir), "dev issuer key")?;
    let key = jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes())?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(DEV_KID.to_owned());
    let claims = json!({
        "iss": login_issuer(data_dir, listen), "sub": subject, "aud": "mandate", "groups": groups,
        "iat": now.timestamp(), "nbf": now.timestamp(), "exp": (now + ttl).timestamp(),
    });
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}

/// Seeds the dev inventory once, and keeps the dev issuer pointing at this service. Returns
/// the walkthrough to print when it seeded.
pub async fn seed(
    store: &dyn Store,
    idp: &DevIdp,
    data_dir: &Path,
    now: DateTime<Utc>,
    cap: u32,
) -> Result<Option<String>, StoreError> {
    trust_dev_issuer(store, idp, now).await?;
    if store.agent(DEV_AGENT).await?.is_some() {
        return Ok(None);
    }
    seed_tools(store, now).await?;
    seed_orchestrator(store, cap, now).await?;
    seed_policy(store, cap, now).await?;
    let secret_path = issue_dev_secret(store, data_dir, now).await?;
    Ok(Some(walkthrough(&secret_path, &idp.service)))
}

/// A seeded grant.
fn grant(tool: &str, operations: &[&str]) -> Grant {
    Grant {
        tool: tool.to_owned(),
        operations: operations.iter().map(|o| o.to_string()).collect(),
        constraints: Default::default(),
        approval: None,
        arguments: None,
    }
}

/// Trusts the development issuer, at the address this service listens on now.
async fn trust_dev_issuer(
    store: &dyn Store,
    idp: &DevIdp,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let jwks_uri = format!("{}/jwks.json", idp.issuer);
    match store.issuer(DEV_ISSUER).await? {
        Some(mut issuer) if issuer.issuer_url != idp.issuer => {
            let before = serde_json::to_value(&issuer).ok();
            issuer.issuer_url = idp.issuer.clone();
            issuer.jwks_uri = Some(jwks_uri);
            issuer.version += 1;
            issuer.updated_at = now;
            let audit = change_event(
                now,
                SEED_ACTOR,
                "issuer.updated",
                format!("issuer:{DEV_ISSUER}"),
                before,
                serde_json::to_value(&issuer).ok(),
            );
            store
                .update_issuer(&issuer, store.inventory_guard().await?, &audit)
                .await?;
        }
        Some(_) => {}
        None => {
            let issuer = NewIssuer {
                id: DEV_ISSUER.to_owned(),
                issuer_url: idp.issuer.clone(),
                audiences: vec!["mandate".to_owned()],
                jwks_uri: Some(jwks_uri),
                discovery: false,
                allowed_algorithms: vec!["EdDSA".to_owned()],
                subject_claim: None,
                groups_claim: Some("groups".to_owned()),
                client_claim: None,
                single_use_tokens: false,
            }
            .into_issuer(now);
            let audit = created("issuer", DEV_ISSUER, &issuer, now);
            store
                .insert_issuer(&issuer, store.inventory_guard().await?, &audit)
                .await?;
        }
    }
    Ok(())
}

/// The tools `crm` (`read`, `write`, `delete`) and `calendar` (`read`, `write`).
async fn seed_tools(store: &dyn Store, now: DateTime<Utc>) -> Result<(), StoreError> {
    for (id, name, kind) in [
        ("crm", "CRM API", ToolKind::Api),
        ("calendar", "Calendar MCP server", ToolKind::McpServer),
    ] {
        let tool = NewTool {
            id: id.to_owned(),
            display_name: name.to_owned(),
            kind,
            owner: "dev@localhost".to_owned(),
            description: Some("Seeded by serve --dev".to_owned()),
            operations: match id {
                "crm" => vec!["read".to_owned(), "write".to_owned(), "delete".to_owned()],
                _ => vec!["read".to_owned(), "write".to_owned()],
            },
        }
        .into_tool(now);
        if store.tool(id).await?.is_none() {
            let audit = created("tool", id, &tool, now);
            store
                .insert_tool(&tool, store.inventory_guard().await?, &audit)
                .await?;
        }
    }
    Ok(())
}

/// The orchestrator `dev-orchestrator`, with a ceiling of CRM reads, writes and deletions and
/// calendar reads.
async fn seed_orchestrator(
    store: &dyn Store,
    cap: u32,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let agent = NewAgent {
        id: DEV_AGENT.to_owned(),
        display_name: "Dev orchestrator".to_owned(),
        kind: AgentKind::Orchestrator,
        owner: "dev@localhost".to_owned(),
        team: None,
        description: Some("Seeded by serve --dev".to_owned()),
        ceiling: vec![
            grant("crm", &["read", "write", "delete"]),
            grant("calendar", &["read"]),
        ],
        max_ttl_seconds: None,
        require_binding: false,
    }
    .into_agent(cap, now);
    let audit = created("agent", DEV_AGENT, &agent, now);
    store
        .insert_agent(&agent, store.inventory_guard().await?, &audit)
        .await?;
    Ok(())
}

/// The policy `dev-staff`: group `staff` delegates the orchestrator's ceiling to it, CRM
/// deletions each once bob has approved that one call.
async fn seed_policy(store: &dyn Store, cap: u32, now: DateTime<Utc>) -> Result<(), StoreError> {
    let policy = NewPolicy {
        id: "dev-staff".to_owned(),
        name: Some(
            "Staff may delegate CRM reads and writes, calendar reads, and CRM deletions bob \
             approves"
                .to_owned(),
        ),
        description: None,
        issuer: DEV_ISSUER.to_owned(),
        subjects: vec![],
        groups: vec!["staff".to_owned()],
        agents: AgentScope::Listed(vec![DEV_AGENT.to_owned()]),
        grants: vec![
            grant("crm", &["read", "write"]),
            grant("calendar", &["read"]),
            Grant {
                approval: Some(ApprovalRule {
                    approvers: Approvers::Named(NamedApprovers {
                        issuer: None,
                        subjects: vec!["bob".to_owned()],
                        groups: vec![],
                    }),
                    required: 1,
                    principal_counts: false,
                    valid_seconds: DEFAULT_VALID_SECONDS,
                    bind_arguments: true,
                    webhook: None,
                }),
                ..grant("crm", &["delete"])
            },
        ],
        max_ttl_seconds: i64::from(900.min(cap)),
        require_binding: false,
        enabled: Some(true),
    }
    .into_policy(cap, now)
    .map_err(|e| StoreError::Conflict(e.to_string()))?;
    let audit = created("policy", &policy.id, &policy, now);
    store
        .insert_policy(&policy, store.inventory_guard().await?, &audit)
        .await?;
    Ok(())
}

/// The orchestrator's secret, recorded as its hash and written to the data directory (mode
/// 0600); returns where.
async fn issue_dev_secret(
    store: &dyn Store,
    data_dir: &Path,
    now: DateTime<Utc>,
) -> Result<PathBuf, StoreError> {
    let secret =
        secrets::generate(AGENT_SECRET_PREFIX).map_err(|e| StoreError::Conflict(e.to_string()))?;
    let info = AgentSecretInfo {
        id: new_id(now),
        created_by: SEED_ACTOR.to_owned(),
        created_at: now,
    };
    let audit = change_event(
        now,
        SEED_ACTOR,
        "agent.secret_issued",
        format!("agent:{DEV_AGENT}"),
        None,
        serde_json::to_value(&info).ok(),
    );
    let change = SecretChange::Issue(NewSecret {
        info,
        hash: secret.hash(),
    });
    store
        .change_agent_secret(DEV_AGENT, &change, now, &audit)
        .await?;
    let secret_path = dev_secret_path(data_dir);
    write_secret(&secret_path, secret.expose()).map_err(|e| {
        StoreError::Conflict(format!("cannot write {}: {e}", secret_path.display()))
    })?;
    Ok(secret_path)
}

/// The audit event of one seeded row.
fn created<T: serde::Serialize>(
    kind: &str,
    id: &str,
    value: &T,
    now: DateTime<Utc>,
) -> NewAuditEvent {
    change_event(
        now,
        SEED_ACTOR,
        &format!("{kind}.created"),
        format!("{kind}:{id}"),
        None,
        serde_json::to_value(value).ok(),
    )
}

fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // A file that existed keeps its old mode through open(): make it owner-only again.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")
}

/// What to do next, printed once when the dev inventory is seeded.
fn walkthrough(secret_path: &Path, service: &str) -> String {
    format!(
        "\nmandate is running in development mode on {service}\n\
         Seeded: issuer {DEV_ISSUER}, tools crm and calendar, orchestrator {DEV_AGENT}, policy dev-staff\n\
         (group \"staff\" may delegate crm read/write and calendar read, and crm delete once bob\n\
         approves the call). The orchestrator's secret\n\
         is in {secret} (shown nowhere else). Mint a mandate:\n\n\
         \x20 SECRET=$(cat {secret})\n\
         \x20 TOKEN=$(cargo run -q --release -- dev login alice --group staff)\n\
         \x20 curl -s -X POST {service}/v1/mandates -H \"Authorization: Bearer $SECRET\" \\\n\
         \x20   -H 'content-type: application/json' \\\n\
         \x20   -d '{{\"subject_token\":\"'$TOKEN'\",\"task\":{{\"description\":\"Summarise open CRM tickets\"}},\"scope\":[{{\"tool\":\"crm\",\"operations\":[\"read\"]}}]}}'\n",
        secret = secret_path.display(),
    )
}
