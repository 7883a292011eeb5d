//! The `mandate` command line: run the service, apply migrations, manage root keys and admin
//! tokens, verify the audit trail, and work with mandates offline ([`token`]).

mod token;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use mandate::clock::{Clock, SystemClock};
use mandate::server::admin_tokens::issue_admin_token;
use mandate::server::audit_witness::{self, Witnessed};
use mandate::server::config::Config;
use mandate::server::model::admin_token::{NewAdminToken, Role};
use mandate::server::startup::{self, Options, Server};
use mandate::server::{api, keys, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "mandate",
    version,
    about = "Task-scoped credentials for AI agents"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve {
        /// TOML configuration file (overrides MANDATE_CONFIG).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Development mode: generate a root key into the data directory if none is configured.
        #[arg(long)]
        dev: bool,
    },
    /// Run an MCP gateway (and Envoy/nginx proxy checks) enforcing mandates at the tool
    /// boundary; see docs/gateway.md.
    Gateway {
        /// The gateway's TOML configuration.
        #[arg(long)]
        config: PathBuf,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        /// TOML configuration file (overrides MANDATE_CONFIG).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Manage root keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage admin API tokens.
    AdminToken {
        #[command(subcommand)]
        command: AdminTokenCommand,
    },
    /// Print the OpenAPI description of the HTTP API as JSON.
    Openapi,
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Work with mandates offline: attenuate, attest, inspect, verify.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Development helpers (for a service started with `serve --dev`).
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the audit chain and its signed checkpoints, checked against the root keys
    /// the configuration loads; exits non-zero and names the first bad event when the trail
    /// was altered.
    Verify {
        /// TOML configuration file (overrides MANDATE_CONFIG).
        #[arg(long)]
        config: Option<PathBuf>,
        /// A copy of the checkpoints kept outside the database (`audit checkpoints export`):
        /// every checkpoint it holds must still be in the database, unchanged.
        #[arg(long)]
        witness: Option<PathBuf>,
    },
    /// The signed checkpoints of the audit chain.
    Checkpoints {
        #[command(subcommand)]
        command: CheckpointsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CheckpointsCommand {
    /// Print every checkpoint as JSON lines, or append to FILE those after its last one.
    Export {
        /// TOML configuration file (overrides MANDATE_CONFIG).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The witness file to bring up to date.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Print a human principal's token signed by the built-in development identity provider.
    Login {
        /// The principal's subject.
        subject: String,
        /// A group the principal belongs to (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Lifetime of the token in seconds.
        #[arg(long, default_value_t = 600)]
        ttl: i64,
        /// TOML configuration file (overrides MANDATE_CONFIG).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Roles as command-line values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    Admin,
    Auditor,
}

#[derive(Debug, Subcommand)]
enum AdminTokenCommand {
    /// Create an admin token in the database and print it once.
    Create {
        /// Unique name; admin requests are attributed to it.
        #[arg(long)]
        name: String,
        /// `admin` (may change) or `auditor` (may only read).
        #[arg(long, value_enum)]
        role: RoleArg,
        /// TOML configuration file (overrides MANDATE_CONFIG).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Write a new Ed25519 root key (PKCS#8 PEM, mode 0600); never overwrites.
    Generate {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config, dev } => serve(config, dev),
        Command::Gateway { config } => gateway(&config),
        Command::Migrate { config } => {
            let (config, _telemetry) = configured(config)?;
            let report = runtime()?.block_on(startup::migrate(&config))?;
            println!(
                "migrations: {} applied now, {} known",
                report.applied, report.known
            );
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Generate { out },
        } => {
            let key = keys::generate_key_file(&out)?;
            println!(
                "wrote {} (public key {})",
                out.display(),
                mandate::token::keys::format_public_key(&key.public())
            );
            Ok(())
        }
        Command::AdminToken {
            command: AdminTokenCommand::Create { name, role, config },
        } => create_admin_token(config, name, role),
        Command::Dev {
            command:
                DevCommand::Login {
                    subject,
                    groups,
                    ttl,
                    config,
                },
        } => {
            let config = Config::from_env(config.as_deref())?;
            let token = mandate::server::dev::login(
                &config.data_dir,
                config.listen,
                &subject,
                &groups,
                SystemClock.now(),
                chrono::Duration::seconds(ttl.clamp(1, 86_400)),
            )?;
            println!("{token}");
            Ok(())
        }
        Command::Token { command } => token::run(command),
        Command::Audit {
            command: AuditCommand::Verify { config, witness },
        } => audit_verify(config, witness),
        Command::Audit {
            command:
                AuditCommand::Checkpoints {
                    command: CheckpointsCommand::Export { config, out },
                },
        } => export_checkpoints(config, out),
        Command::Openapi => {
            println!("{}", api::openapi().to_pretty_json()?);
            Ok(())
        }
    }
}

/// The configuration from `path` and the environment, with logs and traces set up by it (they
/// stop when the returned guard is dropped).
fn configured(path: Option<PathBuf>) -> anyhow::Result<(Config, telemetry::Telemetry)> {
    let config = Config::from_env(path.as_deref())?;
    let telemetry = telemetry::init(&config).map_err(anyhow::Error::msg)?;
    Ok((config, telemetry))
}

/// `mandate gateway`: checks everything it needs, then serves until SIGTERM or SIGINT.
fn gateway(path: &std::path::Path) -> anyhow::Result<()> {
    use mandate::gateway::{config::GatewayConfig, serve};
    let config = GatewayConfig::load(path)?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("MANDATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    runtime()?.block_on(async {
        let shutdown = shutdown_signal().context("cannot listen for SIGTERM and SIGINT")?;
        let listen = config.listen;
        let gateway = serve::prepare(config, Arc::new(SystemClock)).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listen: cannot bind {listen}"))?;
        println!("mandate gateway listening on http://{listen}");
        serve::run(gateway, listener, shutdown)
            .await
            .context("gateway")?;
        Ok(())
    })
}

/// `mandate serve`: runs until SIGTERM or SIGINT, then finishes in-flight requests.
fn serve(path: Option<PathBuf>, dev: bool) -> anyhow::Result<()> {
    let (config, _telemetry) = configured(path)?;
    tracing::debug!(?config, "configuration");
    runtime()?.block_on(async {
        // Before the socket is bound: a SIGTERM that arrives once /healthz answers must find
        // its handler, or it would kill the process mid-request.
        let mut shutdown =
            Box::pin(shutdown_signal().context("cannot listen for SIGTERM and SIGINT")?);
        let options = Options { dev, dev_seed: dev };
        // A stop during start-up (waiting for Postgres, say) ends it there.
        let server = tokio::select! {
            server = Server::prepare(config, options, Arc::new(SystemClock)) => server?,
            () = &mut shutdown => {
                tracing::info!("stopped during start-up");
                return Ok(());
            }
        };
        if let Some(walkthrough) = server.walkthrough() {
            println!("{walkthrough}");
        }
        server.run(shutdown).await.context("server")?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// `mandate admin-token create`: prints the token once, on standard output.
fn create_admin_token(path: Option<PathBuf>, name: String, role: RoleArg) -> anyhow::Result<()> {
    let (config, _telemetry) = configured(path)?;
    let request = NewAdminToken {
        name,
        role: match role {
            RoleArg::Admin => Role::Admin,
            RoleArg::Auditor => Role::Auditor,
        },
    };
    let issued = with_store(&config, async |store| {
        Ok(issue_admin_token(store, request, "cli", SystemClock.now()).await?)
    })?;
    println!("{}", issued.token);
    eprintln!(
        "created admin token `{}` (role {}); it is shown only this once",
        issued.info.name,
        issued.info.role.as_str()
    );
    Ok(())
}

/// `mandate audit verify`: prints the report; fails when the trail was altered.
fn audit_verify(path: Option<PathBuf>, witness: Option<PathBuf>) -> anyhow::Result<()> {
    let (config, _telemetry) = configured(path)?;
    let (keys, seal) = startup::audit_keys(&config)?;
    let report = with_store(&config, async |store| {
        verify_audit(store, &keys, &seal, witness.as_deref()).await
    })?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    match report.first_bad {
        None => Ok(()),
        Some(bad) => anyhow::bail!("audit trail altered at event {}: {}", bad.seq, bad.reason),
    }
}

/// `mandate audit checkpoints export`: appends to `out`, or prints one JSON line each.
fn export_checkpoints(path: Option<PathBuf>, out: Option<PathBuf>) -> anyhow::Result<()> {
    let (config, _telemetry) = configured(path)?;
    let checkpoints = with_store(&config, async |store| Ok(store.audit_checkpoints().await?))?;
    match out {
        Some(out) => {
            let appended = audit_witness::append(&out, &checkpoints)?;
            eprintln!("appended {appended} checkpoints to {}", out.display());
        }
        None => {
            for checkpoint in &checkpoints {
                println!("{}", serde_json::to_string(&Witnessed::from(checkpoint))?);
            }
        }
    }
    Ok(())
}

/// Verifies the audit trail with the configured keys, and against `witness` when given.
async fn verify_audit(
    store: &dyn mandate::server::store::Store,
    keys: &mandate::token::keys::KeySet,
    seal: &mandate::server::audit_seal::AuditSeal,
    witness: Option<&std::path::Path>,
) -> anyhow::Result<mandate::server::audit::AuditReport> {
    let mut report = mandate::server::audit::verify(store, keys, seal).await?;
    if let Some(path) = witness {
        let witnessed = audit_witness::read(path)?;
        let stored = store.audit_checkpoints().await?;
        if let Some(bad) = audit_witness::check(&witnessed, &stored, keys) {
            report.intact = false;
            if report
                .first_bad
                .as_ref()
                .is_none_or(|first| bad.seq < first.seq)
            {
                report.first_bad = Some(bad);
            }
        }
    }
    Ok(report)
}

/// Runs `work` on the configured store, migrated, and closes the store after it, whatever
/// `work` answered.
fn with_store<T>(
    config: &Config,
    work: impl AsyncFnOnce(&dyn mandate::server::store::Store) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    runtime()?.block_on(async {
        let store = startup::open_migrated_store(config).await?;
        let result = work(store.as_ref()).await;
        store.close().await;
        result
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Installs the SIGINT and SIGTERM handlers now, and returns what resolves on either.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("shutting down: finishing in-flight requests");
    })
}
