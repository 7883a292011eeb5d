//! Typed configuration: defaults, then an optional TOML file, then `MANDATE_*` environment
//! variables. Every setting is documented in `docs/configuration.md`; unknown keys and unknown
//! `MANDATE_*` variables are refused so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::server::secrets::Secret;

mod database;
mod error;

use database::parse_database_url;
pub use database::{Database, DatabaseUrl};
use error::invalid;
pub use error::ConfigError;

/// The environment variables mandate reads, each matching one setting.
pub const ENV_VARS: &[&str] = &[
    "MANDATE_CONFIG",
    "MANDATE_LISTEN",
    "MANDATE_DATABASE_URL",
    "MANDATE_DATABASE_MAX_CONNECTIONS",
    "MANDATE_DATA_DIR",
    "MANDATE_ROOT_KEYS",
    "MANDATE_ACTIVE_KID",
    "MANDATE_REQUEST_BODY_LIMIT",
    "MANDATE_REQUEST_TIMEOUT_MS",
    "MANDATE_MAX_TTL_SECONDS",
    "MANDATE_MINT_RATE_PER_AGENT",
    "MANDATE_MINT_RATE_PER_PRINCIPAL",
    "MANDATE_MAX_REVOCATION_STREAMS",
    "MANDATE_MAX_LIVE_MANDATES_PER_AGENT",
    "MANDATE_ADMIN_TOKEN",
    "MANDATE_ADMIN_TOKEN_FILE",
    "MANDATE_LOG",
    "MANDATE_LOG_FORMAT",
];

/// Validated service configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Where mandate keeps its records.
    pub database: Database,
    /// Upper bound of the database connection pool.
    pub database_max_connections: u32,
    /// Directory for the embedded database and development keys.
    pub data_dir: PathBuf,
    /// Root key files (PKCS#8 PEM, Ed25519) by kid.
    pub root_keys: Vec<RootKeyFile>,
    /// The kid that signs new mandates; the others only verify.
    pub active_kid: Option<u32>,
    /// Largest accepted request body, in bytes.
    pub request_body_limit: usize,
    /// Longest time a request may take before it is answered 408.
    pub request_timeout: Duration,
    /// Log filter (tracing `EnvFilter` syntax).
    pub log: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// The longest mandate any policy or agent may allow, in seconds.
    pub max_ttl_seconds: u32,
    /// Where the first admin token comes from, if configured.
    pub admin_token: Option<AdminTokenSource>,
    /// Most mints a minute per orchestrator, on each replica.
    pub mint_rate_per_agent: u32,
    /// Most mints a minute per human principal, on each replica.
    pub mint_rate_per_principal: u32,
    /// Most revocation streams (`/v1/revocations/stream`) one replica serves at once.
    pub max_revocation_streams: usize,
    /// Most unexpired, unrevoked mandates one orchestrator may hold.
    pub max_live_mandates_per_agent: u32,
}

/// The configured admin token: given directly (environment only) or read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminTokenSource {
    /// `MANDATE_ADMIN_TOKEN`.
    Value(Secret),
    /// `admin_token_file` / `MANDATE_ADMIN_TOKEN_FILE`: an owner-only file holding the token.
    File(PathBuf),
}

/// One root key file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootKeyFile {
    /// Key id published with the key and written into each token as `root_key_id`.
    pub kid: u32,
    /// Path of the PKCS#8 PEM file.
    pub path: PathBuf,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The settings as written in the file or environment, before validation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    listen: Option<String>,
    database_url: Option<String>,
    database_max_connections: Option<u32>,
    data_dir: Option<PathBuf>,
    root_keys: Option<Vec<RootKeyFile>>,
    active_kid: Option<u32>,
    request_body_limit: Option<usize>,
    request_timeout_ms: Option<u64>,
    max_ttl_seconds: Option<u32>,
    mint_rate_per_agent: Option<u32>,
    mint_rate_per_principal: Option<u32>,
    max_revocation_streams: Option<usize>,
    max_live_mandates_per_agent: Option<u32>,
    admin_token_file: Option<PathBuf>,
    // Environment only: a secret does not belong in a configuration file.
    #[serde(skip)]
    admin_token: Option<Secret>,
    log: Option<String>,
    log_format: Option<String>,
}

impl Config {
    /// Loads the configuration from the process environment and an optional file; an explicit
    /// `file` wins over `MANDATE_CONFIG`.
    pub fn from_env(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load(file, std::env::vars())
    }

    /// Loads the configuration from the given environment and an optional file.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("MANDATE_"))
            .collect();
        for (key, _) in &env {
            if !ENV_VARS.contains(&key.as_str()) {
                return Err(ConfigError::UnknownEnv(key.clone()));
            }
        }
        let env_file = env
            .iter()
            .find(|(k, _)| k == "MANDATE_CONFIG")
            .map(|(_, v)| PathBuf::from(v));
        let mut settings = match file.map(Path::to_path_buf).or(env_file) {
            Some(path) => read_file(&path)?,
            None => Settings::default(),
        };
        for (key, value) in &env {
            apply_env(&mut settings, key, value)?;
        }
        validate(settings)
    }

    /// A configuration with every default, for tests and embedding.
    pub fn defaults() -> Config {
        // The defaults are constants that validate; an empty settings value cannot fail.
        match validate(Settings::default()) {
            Ok(config) => config,
            Err(e) => unreachable!("default configuration is invalid: {e}"),
        }
    }

    /// The kid that signs, given the configured key files: `active_kid`, else the highest kid.
    pub fn signing_kid(&self) -> Option<u32> {
        self.active_kid
            .or_else(|| self.root_keys.iter().map(|k| k.kid).max())
    }
}

fn read_file(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        line: e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(1),
        message: e.message().replace('\n', " "),
    })
}

fn parse_env<T: FromStr>(key: &str, value: &str, what: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(key, format!("`{value}` is not {what}")))
}

fn apply_env(settings: &mut Settings, key: &str, value: &str) -> Result<(), ConfigError> {
    match key {
        "MANDATE_CONFIG" => {}
        "MANDATE_LISTEN" => settings.listen = Some(value.to_owned()),
        "MANDATE_DATABASE_URL" => settings.database_url = Some(value.to_owned()),
        "MANDATE_DATABASE_MAX_CONNECTIONS" => {
            settings.database_max_connections = Some(parse_env(key, value, "a whole number")?)
        }
        "MANDATE_DATA_DIR" => settings.data_dir = Some(PathBuf::from(value)),
        "MANDATE_ROOT_KEYS" => settings.root_keys = Some(parse_root_keys(value)?),
        "MANDATE_ACTIVE_KID" => settings.active_kid = Some(parse_env(key, value, "a kid")?),
        "MANDATE_REQUEST_BODY_LIMIT" => {
            settings.request_body_limit = Some(parse_env(key, value, "a size in bytes")?)
        }
        "MANDATE_REQUEST_TIMEOUT_MS" => {
            settings.request_timeout_ms = Some(parse_env(key, value, "a whole number")?)
        }
        "MANDATE_MAX_TTL_SECONDS" => {
            settings.max_ttl_seconds = Some(parse_env(key, value, "a whole number")?)
        }
        "MANDATE_MINT_RATE_PER_AGENT" => {
            settings.mint_rate_per_agent = Some(parse_env(key, value, "a whole number")?)
        }
        "MANDATE_MINT_RATE_PER_PRINCIPAL" => {
            settings.mint_rate_per_principal = Some(parse_env(key, value, "a whole number")?)
        }
        "MANDATE_MAX_REVOCATION_STREAMS" => {
            settings.max_revocation_streams = Some(parse_env(key, value, "a whole number")?)
        }
        "MANDATE_MAX_LIVE_MANDATES_PER_AGENT" => {
            settings.max_live_mandates_per_agent = Some(parse_env(key, value, "a whole number")?)
        }
        "MANDATE_ADMIN_TOKEN" => settings.admin_token = Some(Secret::new(value.to_owned())),
        "MANDATE_ADMIN_TOKEN_FILE" => settings.admin_token_file = Some(PathBuf::from(value)),
        "MANDATE_LOG" => settings.log = Some(value.to_owned()),
        "MANDATE_LOG_FORMAT" => settings.log_format = Some(value.to_owned()),
        other => return Err(ConfigError::UnknownEnv(other.to_owned())),
    }
    Ok(())
}

/// Parses `KID=PATH[,KID=PATH…]`.
fn parse_root_keys(value: &str) -> Result<Vec<RootKeyFile>, ConfigError> {
    const KEY: &str = "MANDATE_ROOT_KEYS";
    value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (kid, path) = entry
                .split_once('=')
                .ok_or_else(|| invalid(KEY, format!("`{entry}` is not KID=PATH")))?;
            Ok(RootKeyFile {
                kid: parse_env(KEY, kid, "a kid (0 to 4294967295)")?,
                path: PathBuf::from(path.trim()),
            })
        })
        .collect()
}

fn validate(s: Settings) -> Result<Config, ConfigError> {
    let listen_text = s.listen.as_deref().unwrap_or("127.0.0.1:8080");
    let listen = listen_text.parse().map_err(|_| {
        invalid(
            "listen",
            format!("`{listen_text}` is not an address such as 127.0.0.1:8080"),
        )
    })?;
    let database = match s.database_url.as_deref() {
        None | Some("") => Database::Embedded,
        Some(url) => parse_database_url(url)?,
    };
    // Checked in this order: with several wrong, the first is the one reported.
    let database_max_connections = bounded(
        "database_max_connections",
        s.database_max_connections,
        16,
        1..=1000,
        "",
    )?;
    let root_keys = root_keys(s.root_keys.unwrap_or_default(), s.active_kid)?;
    let request_body_limit = bounded(
        "request_body_limit",
        s.request_body_limit,
        64 * 1024,
        1024..=16 * 1024 * 1024,
        " bytes",
    )?;
    let timeout_ms = bounded(
        "request_timeout_ms",
        s.request_timeout_ms,
        10_000,
        100..=300_000,
        "",
    )?;
    let max_ttl_seconds = bounded("max_ttl_seconds", s.max_ttl_seconds, 3600, 60..=86_400, "")?;
    let per_minute = " mints a minute";
    let mint_rate_per_agent = bounded(
        "mint_rate_per_agent",
        s.mint_rate_per_agent,
        600,
        1..=1_000_000,
        per_minute,
    )?;
    let mint_rate_per_principal = bounded(
        "mint_rate_per_principal",
        s.mint_rate_per_principal,
        120,
        1..=1_000_000,
        per_minute,
    )?;
    let max_revocation_streams = bounded(
        "max_revocation_streams",
        s.max_revocation_streams,
        1024,
        1..=100_000,
        "",
    )?;
    let max_live_mandates_per_agent = bounded(
        "max_live_mandates_per_agent",
        s.max_live_mandates_per_agent,
        10_000,
        1..=10_000_000,
        "",
    )?;
    let admin_token = admin_token(s.admin_token, s.admin_token_file)?;
    let (log, log_format) = logging(s.log, s.log_format.as_deref())?;
    Ok(Config {
        listen,
        database,
        database_max_connections,
        data_dir: s
            .data_dir
            .unwrap_or_else(|| PathBuf::from("./mandate-data")),
        root_keys,
        active_kid: s.active_kid,
        request_body_limit,
        request_timeout: Duration::from_millis(timeout_ms),
        log,
        log_format,
        max_ttl_seconds,
        admin_token,
        mint_rate_per_agent,
        mint_rate_per_principal,
        max_revocation_streams,
        max_live_mandates_per_agent,
    })
}

/// `value`, or `default` when it is unset; either way within `range` (the message names the
/// bounds, then `unit`).
fn bounded<T: PartialOrd + Copy + std::fmt::Display>(
    setting: &str,
    value: Option<T>,
    default: T,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
) -> Result<T, ConfigError> {
    let value = value.unwrap_or(default);
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            setting,
            format!(
                "must be between {} and {}{unit}",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// The root key files: each kid once, each with a path, the active kid among them.
fn root_keys(
    keys: Vec<RootKeyFile>,
    active_kid: Option<u32>,
) -> Result<Vec<RootKeyFile>, ConfigError> {
    for (i, key) in keys.iter().enumerate() {
        if keys[..i].iter().any(|k| k.kid == key.kid) {
            return Err(invalid(
                "root_keys",
                format!("kid {} is listed twice", key.kid),
            ));
        }
        if key.path.as_os_str().is_empty() {
            return Err(invalid(
                "root_keys",
                format!("kid {} has an empty path", key.kid),
            ));
        }
    }
    if let Some(kid) = active_kid {
        if !keys.iter().any(|k| k.kid == kid) {
            return Err(invalid(
                "active_kid",
                format!("kid {kid} is not among root_keys"),
            ));
        }
    }
    Ok(keys)
}

/// The bootstrap admin token: a strong value or a file, not both.
fn admin_token(
    value: Option<Secret>,
    file: Option<PathBuf>,
) -> Result<Option<AdminTokenSource>, ConfigError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(invalid(
            "admin_token",
            "set MANDATE_ADMIN_TOKEN or admin_token_file, not both",
        )),
        (Some(token), None) if !is_strong_admin_token(token.expose()) => {
            Err(invalid("MANDATE_ADMIN_TOKEN", ADMIN_TOKEN_SHAPE))
        }
        (Some(token), None) => Ok(Some(AdminTokenSource::Value(token))),
        (None, Some(path)) => Ok(Some(AdminTokenSource::File(path))),
        (None, None) => Ok(None),
    }
}

/// The log filter (it must parse) and format.
fn logging(log: Option<String>, format: Option<&str>) -> Result<(String, LogFormat), ConfigError> {
    let log = log.unwrap_or_else(|| "info".to_owned());
    tracing_subscriber::EnvFilter::try_new(&log)
        .map_err(|e| invalid("log", format!("not a log filter: {e}")))?;
    let format = match format.unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(invalid(
                "log_format",
                format!("`{other}` is not `text` or `json`"),
            ))
        }
    };
    Ok((log, format))
}

/// What a configured admin token must look like.
pub const ADMIN_TOKEN_SHAPE: &str =
    "must be mnd_adm_ followed by at least 32 characters of [A-Za-z0-9_-]";

/// Whether a configured admin token is prefixed and long enough to be unguessable.
pub fn is_strong_admin_token(token: &str) -> bool {
    token
        .strip_prefix(crate::server::secrets::ADMIN_TOKEN_PREFIX)
        .is_some_and(|rest| {
            rest.len() >= 32
                && rest.len() <= 256
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests;
