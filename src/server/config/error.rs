//! Why a configuration was refused.

use std::path::PathBuf;

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

pub(super) fn invalid(setting: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.to_owned(),
        message: message.into(),
    }
}
