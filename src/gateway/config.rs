//! The gateway's configuration: one TOML file, every key known, every problem named in one
//! line before anything starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::scan::{Action, Scanner, Scanners};

/// Why the configuration cannot be used: one line, naming the key or the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

/// Where one route's MCP server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// An MCP server speaking Streamable HTTP at this URL.
    Http(String),
    /// An MCP server the gateway spawns and speaks stdio to (program, then arguments).
    Stdio(Vec<String>),
}

/// One MCP route: a path, the registered tool it is, and its upstream.
#[derive(Debug, Clone)]
pub struct Route {
    /// The path clients post to, e.g. `/mcp/crm`.
    pub path: String,
    /// The tool's id in mandate; its operations are the MCP tool names.
    pub tool: String,
    /// The MCP server behind it.
    pub upstream: Upstream,
}

/// One proxy check: requests under `prefix` are calls of `tool`, the operation chosen by the
/// HTTP method.
#[derive(Debug, Clone)]
pub struct Check {
    /// The path prefix, e.g. `/crm/`.
    pub prefix: String,
    /// The tool's id in mandate.
    pub tool: String,
    /// The operation each HTTP method performs (`GET = "read"`); other methods are refused.
    pub operations: BTreeMap<String, String>,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where the gateway listens.
    pub listen: SocketAddr,
    /// The URL clients reach the gateway at (default `http://{listen}`), for metadata.
    pub public_url: String,
    /// mandate's base URL, as the gateway reaches it.
    pub mandate_url: String,
    /// mandate's URL as clients reach it (default `mandate_url`), named in the metadata.
    pub mandate_public_url: String,
    /// The gateway's reporter credential (`mnd_rep_…`).
    pub credential: zeroize::Zeroizing<String>,
    /// The Ed25519 key (PKCS#8 PEM, mode 0600) assertions are signed with.
    pub assertion_key_file: PathBuf,
    /// How long an assertion to an upstream is valid.
    pub assertion_ttl: Duration,
    /// Longer than this without a revocation sync, every call is refused.
    pub max_revocation_age: Duration,
    /// Largest request body accepted, and largest upstream answer read.
    pub max_body_bytes: usize,
    /// How long an upstream may take to answer.
    pub upstream_timeout: Duration,
    /// Browser origins allowed to call (a request with any other `Origin` is refused).
    pub allowed_origins: Vec<String>,
    /// The MCP routes.
    pub routes: Vec<Route>,
    /// The proxy checks (Envoy ext_authz, nginx auth_request).
    pub checks: Vec<Check>,
    /// The output scanners.
    pub scanners: Scanners,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<String>,
    public_url: Option<String>,
    mandate_url: Option<String>,
    mandate_public_url: Option<String>,
    credential_file: Option<PathBuf>,
    assertion_key_file: Option<PathBuf>,
    assertion_ttl_seconds: Option<u64>,
    max_revocation_age_seconds: Option<u64>,
    max_body_bytes: Option<usize>,
    upstream_timeout_seconds: Option<u64>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    route: Vec<RouteFile>,
    #[serde(default)]
    check: Vec<CheckFile>,
    scan: Option<ScanFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    path: String,
    tool: String,
    upstream: Option<String>,
    command: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckFile {
    prefix: String,
    tool: String,
    operations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanFile {
    /// What the built-in credential scanners do: `redact` (default), `block` or `off`.
    credentials: Option<String>,
    #[serde(default)]
    pattern: Vec<PatternFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternFile {
    name: String,
    regex: String,
    action: String,
}

/// The environment variable that may hold the credential instead of `credential_file`.
pub const CREDENTIAL_ENV: &str = "MANDATE_GATEWAY_CREDENTIAL";

impl GatewayConfig {
    /// Reads and checks `path`; the credential comes from `credential_file` or, failing that,
    /// from `MANDATE_GATEWAY_CREDENTIAL`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
        let env = std::env::var(CREDENTIAL_ENV).ok();
        Self::parse(&text, env.as_deref())
    }

    /// Checks a configuration's text (`credential`: the environment's, if any).
    pub fn parse(text: &str, credential: Option<&str>) -> Result<Self, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| {
            let message = e.message().to_owned();
            invalid(format!("gateway config: {}", message.trim()))
        })?;
        let listen_text = file.listen.as_deref().unwrap_or("127.0.0.1:8090");
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(format!(
                "listen: `{listen_text}` is not an address such as 127.0.0.1:8090"
            ))
        })?;
        let mandate_url = file
            .mandate_url
            .ok_or_else(|| invalid("mandate_url: required (mandate's base URL)"))?;
        http_url("mandate_url", &mandate_url)?;
        let public_url = file
            .public_url
            .unwrap_or_else(|| format!("http://{listen}"));
        http_url("public_url", &public_url)?;
        let mandate_public_url = file
            .mandate_public_url
            .unwrap_or_else(|| mandate_url.clone());
        http_url("mandate_public_url", &mandate_public_url)?;
        let credential = match (&file.credential_file, credential) {
            (Some(path), _) => crate::server::keys::read_private_file(path, "credential file")
                .map(|text| zeroize::Zeroizing::new(text.trim().to_owned()))
                .map_err(|e| invalid(format!("credential_file: {e}")))?,
            (None, Some(value)) => zeroize::Zeroizing::new(value.trim().to_owned()),
            (None, None) => {
                return Err(invalid(format!(
                    "credential_file: required, or set {CREDENTIAL_ENV} (the gateway's reporter credential)"
                )))
            }
        };
        if !credential.starts_with("mnd_rep_") {
            return Err(invalid(
                "credential: not a reporter credential (`mnd_rep_…`); register the gateway with \
                 POST /v1/admin/reporters, kind gateway",
            ));
        }
        let assertion_key_file = file
            .assertion_key_file
            .ok_or_else(|| invalid("assertion_key_file: required (created if absent)"))?;
        let seconds = |key: &str, value: Option<u64>, default: u64, max: u64| {
            let value = value.unwrap_or(default);
            if value == 0 || value > max {
                return Err(invalid(format!("{key}: must be 1 to {max} seconds")));
            }
            Ok(Duration::from_secs(value))
        };
        let max_body_bytes = file.max_body_bytes.unwrap_or(1024 * 1024);
        if !(1024..=64 * 1024 * 1024).contains(&max_body_bytes) {
            return Err(invalid("max_body_bytes: must be 1 KiB to 64 MiB"));
        }
        let routes = routes(file.route)?;
        let checks = checks(file.check)?;
        if routes.is_empty() && checks.is_empty() {
            return Err(invalid(
                "route: at least one [[route]] or [[check]] is required",
            ));
        }
        Ok(GatewayConfig {
            listen,
            public_url: public_url.trim_end_matches('/').to_owned(),
            mandate_url: mandate_url.trim_end_matches('/').to_owned(),
            mandate_public_url: mandate_public_url.trim_end_matches('/').to_owned(),
            credential,
            assertion_key_file,
            assertion_ttl: seconds("assertion_ttl_seconds", file.assertion_ttl_seconds, 60, 300)?,
            max_revocation_age: seconds(
                "max_revocation_age_seconds",
                file.max_revocation_age_seconds,
                30,
                3600,
            )?,
            max_body_bytes,
            upstream_timeout: seconds(
                "upstream_timeout_seconds",
                file.upstream_timeout_seconds,
                30,
                600,
            )?,
            allowed_origins: file.allowed_origins,
            routes,
            checks,
            scanners: scanners(file.scan)?,
        })
    }

    /// Every tool the routes and checks name.
    pub fn tools(&self) -> Vec<(&str, &str)> {
        self.routes
            .iter()
            .map(|r| (r.path.as_str(), r.tool.as_str()))
            .chain(
                self.checks
                    .iter()
                    .map(|c| (c.prefix.as_str(), c.tool.as_str())),
            )
            .collect()
    }
}

fn http_url(key: &str, value: &str) -> Result<(), ConfigError> {
    match url::Url::parse(value) {
        Ok(url) if ["http", "https"].contains(&url.scheme()) && url.host().is_some() => Ok(()),
        _ => Err(invalid(format!("{key}: `{value}` is not an http(s) URL"))),
    }
}

fn path_like(key: &str, value: &str) -> Result<(), ConfigError> {
    let ok = value.starts_with('/')
        && value.len() > 1
        && value.len() <= 200
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c))
        && !value.contains("//")
        && !value.starts_with("/.well-known");
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{key}: `{value}` is not a path such as /mcp/crm"
        )))
    }
}

fn routes(files: Vec<RouteFile>) -> Result<Vec<Route>, ConfigError> {
    let mut routes: Vec<Route> = Vec::new();
    for (i, r) in files.into_iter().enumerate() {
        let key = format!("route[{i}]");
        path_like(&format!("{key}.path"), &r.path)?;
        crate::server::model::check_id(&r.tool).map_err(|e| invalid(format!("{key}.tool: {e}")))?;
        let upstream = match (r.upstream, r.command) {
            (Some(url), None) => {
                http_url(&format!("{key}.upstream"), &url)?;
                Upstream::Http(url)
            }
            (None, Some(command)) if !command.is_empty() && !command[0].is_empty() => {
                Upstream::Stdio(command)
            }
            _ => {
                return Err(invalid(format!(
                    "{key}: give exactly one of `upstream` (a URL) and `command` (a program and its arguments)"
                )))
            }
        };
        let path = r.path.trim_end_matches('/').to_owned();
        if routes.iter().any(|other| other.path == path) {
            return Err(invalid(format!("{key}.path: `{path}` is routed twice")));
        }
        routes.push(Route {
            path,
            tool: r.tool,
            upstream,
        });
    }
    Ok(routes)
}

fn checks(files: Vec<CheckFile>) -> Result<Vec<Check>, ConfigError> {
    let mut checks = Vec::new();
    for (i, c) in files.into_iter().enumerate() {
        let key = format!("check[{i}]");
        path_like(&format!("{key}.prefix"), &c.prefix)?;
        crate::server::model::check_id(&c.tool).map_err(|e| invalid(format!("{key}.tool: {e}")))?;
        if c.operations.is_empty() {
            return Err(invalid(format!(
                "{key}.operations: map at least one HTTP method to an operation"
            )));
        }
        let mut operations = BTreeMap::new();
        for (method, operation) in c.operations {
            let upper = method.to_ascii_uppercase();
            if !["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"].contains(&upper.as_str()) {
                return Err(invalid(format!(
                    "{key}.operations: `{method}` is not an HTTP method"
                )));
            }
            crate::server::model::check_id(&operation)
                .map_err(|e| invalid(format!("{key}.operations.{method}: {e}")))?;
            operations.insert(upper, operation);
        }
        checks.push(Check {
            prefix: c.prefix,
            tool: c.tool,
            operations,
        });
    }
    Ok(checks)
}

fn action(key: &str, value: &str) -> Result<Action, ConfigError> {
    match value {
        "redact" => Ok(Action::Redact),
        "block" => Ok(Action::Block),
        _ => Err(invalid(format!("{key}: must be redact or block"))),
    }
}

fn scanners(file: Option<ScanFile>) -> Result<Scanners, ConfigError> {
    let (credentials, patterns) = match file {
        Some(scan) => (scan.credentials, scan.pattern),
        None => (None, Vec::new()),
    };
    let mut all = match credentials.as_deref() {
        None | Some("redact") => Scanner::credentials(Action::Redact),
        Some("block") => Scanner::credentials(Action::Block),
        Some("off") => Vec::new(),
        Some(_) => return Err(invalid("scan.credentials: must be redact, block or off")),
    };
    for (i, p) in patterns.into_iter().enumerate() {
        let key = format!("scan.pattern[{i}]");
        crate::server::model::check_id(&p.name).map_err(|e| invalid(format!("{key}.name: {e}")))?;
        let action = action(&format!("{key}.action"), &p.action)?;
        let scanner = Scanner::pattern(&p.name, &p.regex, action)
            .map_err(|e| invalid(format!("{key}.regex: {e}")))?;
        all.push(scanner);
    }
    Ok(Scanners(all))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        mandate_url = "http://127.0.0.1:8080"
        assertion_key_file = "gateway.pem"
        [[route]]
        path = "/mcp/github"
        tool = "github"
        upstream = "http://127.0.0.1:9000/mcp"
    "#;

    fn parse(text: &str) -> Result<GatewayConfig, String> {
        GatewayConfig::parse(text, Some("mnd_rep_x")).map_err(|e| e.0)
    }

    #[test]
    fn a_minimal_config_gets_strict_defaults() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8090");
        assert_eq!(config.public_url, "http://127.0.0.1:8090");
        assert_eq!(config.max_revocation_age, Duration::from_secs(30));
        assert_eq!(config.assertion_ttl, Duration::from_secs(60));
        assert!(config.allowed_origins.is_empty());
        assert!(
            !config.scanners.0.is_empty(),
            "credential scanners are on by default"
        );
    }

    #[test]
    fn each_bad_config_is_named_in_one_line() {
        for (text, named) in [
            (format!("{GOOD}\nsurprise = 1"), "unknown field `surprise`"),
            (GOOD.replace("mandate_url", "#"), "mandate_url: required"),
            (
                GOOD.replace("http://127.0.0.1:8080", "ftp://x"),
                "mandate_url: `ftp://x`",
            ),
            (GOOD.replace("/mcp/github", "mcp"), "route[0].path"),
            (GOOD.replace("\"github\"", "\"Git Hub\""), "route[0].tool"),
            (
                GOOD.replace("upstream = ", "command = [\"x\"]\nupstream = "),
                "give exactly one of",
            ),
            (
                format!("{GOOD}\n[scan]\ncredentials = \"maybe\""),
                "scan.credentials",
            ),
            (
                format!(
                    "{GOOD}\n[[scan.pattern]]\nname = \"t\"\nregex = \"(\"\naction = \"block\""
                ),
                "scan.pattern[0].regex",
            ),
        ] {
            let error = parse(&text).unwrap_err();
            assert!(error.contains(named), "{error} should name {named}");
            assert!(!error.contains('\n'), "one line: {error}");
        }
        let error = GatewayConfig::parse(GOOD, None).unwrap_err().0;
        assert!(error.contains(CREDENTIAL_ENV), "{error}");
        let error = GatewayConfig::parse(GOOD, Some("hunter2")).unwrap_err().0;
        assert!(error.contains("not a reporter credential"), "{error}");
        assert!(!error.contains("hunter2"), "the credential is never echoed");
    }
}
