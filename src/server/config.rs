//! Typed configuration: defaults, then an optional TOML file, then `MANDATE_*` environment
//! variables. Every setting is documented in `docs/configuration.md`; unknown keys and unknown
//! `MANDATE_*` variables are refused so a typo never silently falls back to a default.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use sqlx::postgres::PgConnectOptions;

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
}

/// The store mandate uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// SQLite in the data directory (no `MANDATE_DATABASE_URL`).
    Embedded,
    /// SQLite at an explicit path (`sqlite://PATH`).
    Sqlite(PathBuf),
    /// Postgres (`postgres://` or `postgresql://`).
    Postgres(DatabaseUrl),
}

impl Database {
    /// The store a `MANDATE_DATABASE_URL` value selects (`postgres://…` or `sqlite://PATH`).
    pub fn from_url(url: &str) -> Result<Database, ConfigError> {
        parse_database_url(url)
    }

    /// The SQLite file this configuration uses, if any.
    pub fn sqlite_path(&self, data_dir: &Path) -> Option<PathBuf> {
        match self {
            Database::Embedded => Some(data_dir.join("mandate.db")),
            Database::Sqlite(path) => Some(path.clone()),
            Database::Postgres(_) => None,
        }
    }
}

/// A database URL whose password never appears in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The full URL, password included; only for opening connections.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut url) => {
                if url.password().is_some() {
                    // set_password only fails for URLs that cannot carry credentials.
                    let _ = url.set_password(Some("***"));
                }
                // Passwords can also ride in the query string (`?password=`).
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k.eq_ignore_ascii_case("password") {
                            "***".to_owned()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                if !pairs.is_empty() {
                    url.query_pairs_mut().clear().extend_pairs(pairs);
                }
                url.to_string()
            }
            Err(_) => "***".to_owned(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
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

/// Why the configuration was refused. Each message is one line naming the setting.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The configuration file is not valid TOML for mandate (unknown keys included).
    #[error("config file {path}, line {line}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A `MANDATE_*` variable that mandate does not know.
    #[error("unknown environment variable {0} (known: see docs/configuration.md)")]
    UnknownEnv(String),
    /// A setting has a value mandate cannot use.
    #[error("{setting}: {message}")]
    Invalid {
        /// The setting (file key or environment variable).
        setting: String,
        /// What is wrong, without echoing secrets.
        message: String,
    },
}

fn invalid(setting: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.to_owned(),
        message: message.into(),
    }
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

    let database_max_connections = s.database_max_connections.unwrap_or(16);
    if !(1..=1000).contains(&database_max_connections) {
        return Err(invalid(
            "database_max_connections",
            "must be between 1 and 1000",
        ));
    }

    let root_keys = s.root_keys.unwrap_or_default();
    for (i, key) in root_keys.iter().enumerate() {
        if root_keys[..i].iter().any(|k| k.kid == key.kid) {
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
    if let Some(kid) = s.active_kid {
        if !root_keys.iter().any(|k| k.kid == kid) {
            return Err(invalid(
                "active_kid",
                format!("kid {kid} is not among root_keys"),
            ));
        }
    }

    let request_body_limit = s.request_body_limit.unwrap_or(64 * 1024);
    if !(1024..=16 * 1024 * 1024).contains(&request_body_limit) {
        return Err(invalid(
            "request_body_limit",
            "must be between 1024 and 16777216 bytes",
        ));
    }
    let timeout_ms = s.request_timeout_ms.unwrap_or(10_000);
    if !(100..=300_000).contains(&timeout_ms) {
        return Err(invalid(
            "request_timeout_ms",
            "must be between 100 and 300000",
        ));
    }

    let log = s.log.unwrap_or_else(|| "info".to_owned());
    tracing_subscriber::EnvFilter::try_new(&log)
        .map_err(|e| invalid("log", format!("not a log filter: {e}")))?;
    let log_format = match s.log_format.as_deref().unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(invalid(
                "log_format",
                format!("`{other}` is not `text` or `json`"),
            ))
        }
    };

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
    })
}

/// Parses a database URL without ever echoing it (it may hold a password).
fn parse_database_url(text: &str) -> Result<Database, ConfigError> {
    const KEY: &str = "database_url";
    let url = url::Url::parse(text).map_err(|e| invalid(KEY, format!("not a valid URL ({e})")))?;
    match url.scheme() {
        "postgres" | "postgresql" => {
            if url.host_str().is_none_or(str::is_empty) && !text.contains("host=") {
                return Err(invalid(KEY, "a postgres URL needs a host"));
            }
            PgConnectOptions::from_str(text).map_err(|e| {
                invalid(
                    KEY,
                    format!("not a valid postgres URL ({})", first_line(&e.to_string())),
                )
            })?;
            Ok(Database::Postgres(DatabaseUrl(text.to_owned())))
        }
        "sqlite" => {
            let path = text
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" {
                return Err(invalid(
                    KEY,
                    "a sqlite URL must name a file (sqlite://PATH)",
                ));
            }
            Ok(Database::Sqlite(PathBuf::from(path)))
        }
        other => Err(invalid(
            KEY,
            format!("unsupported scheme `{other}` (use postgres:// or sqlite://)"),
        )),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(None, env(pairs))
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn defaults_listen_on_loopback_with_the_embedded_store() {
        let config = load(&[]).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.database, Database::Embedded);
        assert_eq!(config.data_dir, PathBuf::from("./mandate-data"));
        assert_eq!(config.request_body_limit, 65536);
        assert_eq!(config.request_timeout, Duration::from_secs(10));
        assert!(config.root_keys.is_empty());
    }

    #[test]
    fn environment_variables_override_the_file() {
        let file = write("listen = \"127.0.0.1:9000\"\ndata_dir = \"/var/lib/mandate\"\n");
        let config = Config::load(
            Some(file.path()),
            env(&[("MANDATE_LISTEN", "0.0.0.0:7000"), ("PATH", "/bin")]),
        )
        .unwrap();
        assert_eq!(config.listen, "0.0.0.0:7000".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/mandate"));
    }

    #[test]
    fn the_config_file_can_be_named_by_mandate_config() {
        let file = write("request_timeout_ms = 2500\n");
        let path = file.path().to_str().unwrap();
        let config = load(&[("MANDATE_CONFIG", path)]).unwrap();
        assert_eq!(config.request_timeout, Duration::from_millis(2500));
    }

    #[test]
    fn an_unknown_file_key_is_refused_with_its_line() {
        let file = write("listen = \"127.0.0.1:9000\"\nlisten_adress = \"x\"\n");
        let err = Config::load(Some(file.path()), env(&[])).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ConfigError::File { line: 2, .. }), "{text}");
        assert!(text.contains("unknown field `listen_adress`"), "{text}");
        assert!(!text.contains('\n'));
    }

    #[test]
    fn an_unknown_mandate_environment_variable_is_refused() {
        let err = load(&[("MANDATE_LISTN", "127.0.0.1:1")]).unwrap_err();
        assert_eq!(err, ConfigError::UnknownEnv("MANDATE_LISTN".into()));
    }

    #[test]
    fn root_keys_parse_from_the_environment_and_the_highest_kid_signs_by_default() {
        let config = load(&[("MANDATE_ROOT_KEYS", "1=/k/one.pem, 2=/k/two.pem")]).unwrap();
        assert_eq!(
            config.root_keys,
            vec![
                RootKeyFile {
                    kid: 1,
                    path: "/k/one.pem".into()
                },
                RootKeyFile {
                    kid: 2,
                    path: "/k/two.pem".into()
                },
            ]
        );
        assert_eq!(config.signing_kid(), Some(2));
        let config = load(&[
            ("MANDATE_ROOT_KEYS", "1=/k/one.pem,2=/k/two.pem"),
            ("MANDATE_ACTIVE_KID", "1"),
        ])
        .unwrap();
        assert_eq!(config.signing_kid(), Some(1));
    }

    #[test]
    fn root_keys_in_the_file_are_tables() {
        let file = write("active_kid = 3\n[[root_keys]]\nkid = 3\npath = \"/k/3.pem\"\n");
        let config = Config::load(Some(file.path()), env(&[])).unwrap();
        assert_eq!(config.root_keys[0].kid, 3);
        assert_eq!(config.signing_kid(), Some(3));
    }

    #[test]
    fn bad_root_key_settings_are_refused() {
        for (value, expect) in [
            ("1=/a,1=/b", "kid 1 is listed twice"),
            ("one=/a", "is not a kid"),
            ("/a", "is not KID=PATH"),
            ("1=", "empty path"),
        ] {
            let err = load(&[("MANDATE_ROOT_KEYS", value)])
                .unwrap_err()
                .to_string();
            assert!(err.contains(expect), "{value}: {err}");
        }
        let err = load(&[("MANDATE_ROOT_KEYS", "1=/a"), ("MANDATE_ACTIVE_KID", "2")])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "active_kid: kid 2 is not among root_keys");
    }

    #[test]
    fn database_urls_select_the_store() {
        let pg = load(&[(
            "MANDATE_DATABASE_URL",
            "postgres://mandate:hunter2@db:5432/mandate",
        )])
        .unwrap();
        assert!(matches!(pg.database, Database::Postgres(_)));
        let lite = load(&[("MANDATE_DATABASE_URL", "sqlite:///var/lib/m.db")]).unwrap();
        assert_eq!(lite.database, Database::Sqlite("/var/lib/m.db".into()));
    }

    #[test]
    fn malformed_database_urls_are_refused_without_echoing_them() {
        for url in [
            "postgres//mandate:hunter2@db",
            "mysql://mandate:hunter2@db/m",
            "postgres://mandate:hunter2@db:notaport/m",
            "sqlite://",
        ] {
            let err = load(&[("MANDATE_DATABASE_URL", url)])
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("database_url: "), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{url}: {err}");
        }
    }

    #[test]
    fn the_database_password_never_appears_in_debug_output() {
        let config = load(&[(
            "MANDATE_DATABASE_URL",
            "postgres://mandate:hunter2@db:5432/mandate?password=hunter3",
        )])
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("hunter3"), "{debug}");
        assert!(debug.contains("db:5432/mandate"), "{debug}");
    }

    #[test]
    fn out_of_range_numbers_are_refused() {
        for (key, value, expect) in [
            ("MANDATE_REQUEST_BODY_LIMIT", "10", "request_body_limit"),
            ("MANDATE_REQUEST_TIMEOUT_MS", "0", "request_timeout_ms"),
            (
                "MANDATE_DATABASE_MAX_CONNECTIONS",
                "0",
                "database_max_connections",
            ),
            ("MANDATE_LISTEN", "localhost", "listen"),
            ("MANDATE_LOG_FORMAT", "xml", "log_format"),
            (
                "MANDATE_REQUEST_TIMEOUT_MS",
                "-5",
                "MANDATE_REQUEST_TIMEOUT_MS",
            ),
        ] {
            let err = load(&[(key, value)]).unwrap_err().to_string();
            assert!(err.starts_with(expect), "{key}={value}: {err}");
        }
    }
}
