//! The database setting: which store, and a URL whose password never leaks.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use super::error::{invalid, ConfigError};

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

/// Parses a database URL without ever echoing it (it may hold a password).
pub(super) fn parse_database_url(text: &str) -> Result<Database, ConfigError> {
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
