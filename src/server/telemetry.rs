//! Logging: `tracing` to stderr as text or JSON lines, filtered by the `log` setting.

use tracing_subscriber::EnvFilter;

use super::config::{Config, LogFormat};

/// Installs the global subscriber. Call once, from the binary.
pub fn init(config: &Config) -> Result<(), String> {
    let filter = EnvFilter::try_new(&config.log).map_err(|e| e.to_string())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| e.to_string())
}
