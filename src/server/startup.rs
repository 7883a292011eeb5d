//! Start-up: everything that can be checked is checked before anything is created, so bad
//! configuration stops the process with one line and leaves no data directory, database or key
//! behind. Order: key files → listening socket → Postgres → data directory → development key →
//! SQLite → migrations → key registration.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;

use super::app::{self, AppState};
use super::audit_seal::AuditSeal;
use super::config::{is_strong_admin_token, AdminTokenSource, Config, Database, ADMIN_TOKEN_SHAPE};
use super::dev::{self, DevIdp};
use super::idp::{IdentityVerifier, IdpSettings};
use super::keys::{self, KeyError, KeyRing, KeyRingError, RootKey, DEV_KID};
use super::limits::{MintLimits, RateLimiter};
use super::secrets::{self, SecretHash};
use super::store::batch::Writers;
use super::store::{self, MigrationReport, NewRootKey, SharedStore, StoreError};
use super::telemetry::{otlp, Metrics};
use crate::clock::SharedClock;
use crate::token::keys::KeySet;

/// How the service was asked to start.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Development mode: generate a root key into the data directory when none is configured,
    /// and run the built-in identity provider.
    pub dev: bool,
    /// In development mode, also seed the walkthrough's inventory (`serve --dev` does; tests
    /// that need an empty inventory do not).
    pub dev_seed: bool,
}

/// Why the service did not start. Each message is one line naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A root key file is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The admin token file does not hold a well-formed token.
    #[error("admin token file {path}: the token {}", ADMIN_TOKEN_SHAPE)]
    AdminTokenFile {
        /// The file.
        path: PathBuf,
    },
    /// Production (Postgres without `--dev`) needs configured root keys.
    #[error("no root signing key configured: set MANDATE_ROOT_KEYS=KID=PATH (see docs/configuration.md), or run `mandate serve --dev`")]
    NoRootKey,
    /// `mandate audit verify` has no root key to check checkpoints with.
    #[error("no root key to check the audit checkpoints with: set MANDATE_ROOT_KEYS=KID=PATH to the service's key files, or restore the development key at {}", path.display())]
    NoAuditKey {
        /// Where the development key was looked for.
        path: PathBuf,
    },
    /// The listening address cannot be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        reason: std::io::Error,
    },
    /// The data directory cannot be created.
    #[error("cannot create data directory {path}: {reason}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The operating system's reason.
        reason: std::io::Error,
    },
    /// The store could not be opened, migrated or written.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The HTTP client for issuers' keys could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    /// Telemetry export is misconfigured (an `OTEL_*` variable mandate cannot honour).
    #[error("telemetry: {0}")]
    Telemetry(String),
    /// The key ring is inconsistent.
    #[error(transparent)]
    KeyRing(#[from] KeyRingError),
}

/// Where the root keys come from.
enum KeySource {
    /// Configured files, already loaded.
    Files(Vec<(u32, biscuit_auth::KeyPair)>),
    /// The development key, generated on first start.
    Dev(PathBuf),
}

/// A service that has bound its socket, opened its store and loaded its keys.
pub struct Server {
    listener: TcpListener,
    state: AppState,
    walkthrough: Option<String>,
}

impl Server {
    /// Validates, binds and opens everything `config` names.
    pub async fn prepare(
        config: Config,
        options: Options,
        clock: SharedClock,
    ) -> Result<Server, StartupError> {
        let source = load_configured_keys(&config, options)?;
        let bootstrap_admin = load_admin_token(&config)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|reason| StartupError::Listen {
                    addr: config.listen,
                    reason,
                })?;
        // Development mode keeps its identity provider's key in the data directory too.
        let store = open_store(&config, options.dev || matches!(source, KeySource::Dev(_))).await?;
        let report = store.migrate().await?;
        tracing::info!(applied = report.applied, known = report.known, "migrations");
        let keys = match source {
            KeySource::Files(keys) => keys,
            KeySource::Dev(path) => vec![(DEV_KID, load_or_generate_dev_key(&path)?)],
        };
        let active_kid = config.signing_kid().unwrap_or(DEV_KID);
        // Sealed before anything is recorded, registering the keys included.
        store.seal_audit(Arc::new(AuditSeal::from_keys(&keys, active_kid)));
        let ring = register_keys(&store, keys, active_kid, &clock).await?;
        let local = listener
            .local_addr()
            .map_err(|reason| StartupError::Listen {
                addr: config.listen,
                reason,
            })?;
        let dev_idp = if options.dev {
            Some(Arc::new(DevIdp::load_or_create(&config.data_dir, local)?))
        } else {
            None
        };
        tracing::info!(listen = %local, store = ?store.backend(), active_kid, "mandate is ready");
        let data_dir = config.data_dir.clone();
        let metrics = Metrics::new(
            &store,
            Arc::clone(&clock),
            otlp::metric_exporter().map_err(StartupError::Telemetry)?,
        )
        .map_err(StartupError::Telemetry)?;
        let limits = MintLimits {
            agents: RateLimiter::new(config.mint_rate_per_agent),
            principals: RateLimiter::new(config.mint_rate_per_principal),
        };
        let streams = crate::server::streams::StreamSlots::new(
            config.max_revocation_streams,
            crate::server::streams::STREAMS_PER_CALLER,
        );
        let state = AppState {
            writers: Arc::new(Writers::spawn(&store, config.max_live_mandates_per_agent)),
            store,
            keys: Arc::new(ring),
            clock,
            config: Arc::new(config),
            bootstrap_admin,
            idp: Arc::new(
                IdentityVerifier::new(IdpSettings::default())
                    .map_err(|e| StartupError::Http(e.to_string()))?,
            ),
            dev_idp,
            streams,
            metrics: Arc::new(metrics),
            inventory: Arc::default(),
            limits: Arc::new(limits),
            audit: Arc::default(),
            proofs: Arc::new(crate::token::pop::replay::Proofs::from_settings(
                Default::default(),
            )),
        };
        let walkthrough = match (&state.dev_idp, options.dev_seed) {
            (Some(idp), true) => {
                dev::seed(
                    state.store.as_ref(),
                    idp,
                    &data_dir,
                    state.clock.now(),
                    state.config.max_ttl_seconds,
                )
                .await?
            }
            _ => None,
        };
        Ok(Server {
            listener,
            state,
            walkthrough,
        })
    }

    /// What to print after the development inventory was seeded, if it just was.
    pub fn walkthrough(&self) -> Option<&str> {
        self.walkthrough.as_deref()
    }

    /// The bound address (useful when the configuration asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The state handlers see.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, drains in-flight requests, then closes the store.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let store = Arc::clone(&self.state.store);
        let metrics = Arc::clone(&self.state.metrics);
        let audit = tokio::spawn(audit_periodically(self.state.clone()));
        let reconciler = tokio::spawn(reconcile_periodically(self.state.clone()));
        let result = app::serve(
            self.listener,
            app::router(self.state.clone()),
            self.state.config.request_timeout,
            shutdown,
        )
        .await;
        audit.abort();
        reconciler.abort();
        store.close().await;
        // The exporter blocks while it pushes the last metrics.
        let _ = tokio::task::spawn_blocking(move || metrics.shutdown()).await;
        result
    }
}

/// How often the live mandates that a status no longer allows are looked for.
const RECONCILE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Finishes, at start and every [`RECONCILE_INTERVAL`], any sweep a status change left undone
/// ([`crate::server::revoke::reconcile`]).
async fn reconcile_periodically(state: AppState) {
    let mut interval = tokio::time::interval(RECONCILE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match crate::server::revoke::reconcile(&state).await {
            Ok(0) => {}
            Ok(revoked) => {
                tracing::warn!(revoked, "revoked live mandates a status no longer allows")
            }
            Err(error) => tracing::warn!(?error, "cannot reconcile live mandates with statuses"),
        }
    }
}

/// How often the audit events appended since the last look are recomputed.
const VERIFY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// How often the verified head of the audit chain is signed.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Recomputes the audit chain's new events every [`VERIFY_INTERVAL`], so that the work is
/// spread out rather than done all at once; signs the verified head with the active root key
/// at start and every [`CHECKPOINT_INTERVAL`] while the chain holds, and then forgets the
/// issuance counts of past minutes. A broken chain is logged once, and never signed.
async fn audit_periodically(state: AppState) {
    use crate::server::audit;
    let mut interval = tokio::time::interval(VERIFY_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut broken: Option<String> = None;
    let mut signed_at: Option<std::time::Instant> = None;
    loop {
        interval.tick().await;
        // A failed walk leaves the replica at the last intact event, and resumes from there.
        let walked = state
            .audit
            .walk(state.store.as_ref(), &state.keys, state.clock.now())
            .await;
        state.metrics.audit_walked(&state.audit.status());
        let verified = match walked {
            Ok(verified) => {
                if broken.take().is_some() {
                    tracing::info!("the audit trail verifies again");
                }
                verified
            }
            Err(error) => {
                let message = error.to_string();
                if broken.as_deref() != Some(message.as_str()) {
                    tracing::error!(%error, "cannot verify the audit trail");
                }
                broken = Some(message);
                None
            }
        };
        // Ticks are VERIFY_INTERVAL apart: sign at the one nearest each interval's end.
        let now = state.clock.instant();
        let since = |at| now.saturating_duration_since(at);
        if signed_at.is_some_and(|at| since(at) + VERIFY_INTERVAL / 2 < CHECKPOINT_INTERVAL) {
            continue;
        }
        signed_at = Some(now);
        if let Err(error) = state.store.prune_issuance_counts(state.clock.now()).await {
            tracing::warn!(%error, "cannot prune the issuance counts");
        }
        let Some(verified) = verified else {
            continue;
        };
        let now = state.clock.now();
        if let Err(error) =
            audit::sign_checkpoint(state.store.as_ref(), &state.keys, &verified, now).await
        {
            tracing::warn!(%error, "cannot checkpoint the audit trail");
        }
    }
}

/// Opens the configured store with its migrations applied (for commands other than `serve`).
/// The store seals the audit events it writes with the configured root keys (or the
/// development key, generated as `serve --dev` would), so what a command records verifies.
pub async fn open_migrated_store(config: &Config) -> Result<SharedStore, StartupError> {
    let dev = config.root_keys.is_empty();
    let store = open_store(config, dev).await?;
    let keys = if dev {
        let path = keys::dev_key_path(&config.data_dir);
        vec![(DEV_KID, load_or_generate_dev_key(&path)?)]
    } else {
        load_key_files(config)?
    };
    store.migrate().await?;
    let active = config.signing_kid().unwrap_or(DEV_KID);
    store.seal_audit(Arc::new(AuditSeal::from_keys(&keys, active)));
    Ok(store)
}

/// Opens the configured store and applies pending migrations (`mandate migrate`).
pub async fn migrate(config: &Config) -> Result<MigrationReport, StartupError> {
    let store = open_store(config, false).await?;
    let report = store.migrate().await;
    store.close().await;
    Ok(report?)
}

/// The configured root key files, loaded and checked, by kid.
fn load_key_files(config: &Config) -> Result<Vec<(u32, biscuit_auth::KeyPair)>, KeyError> {
    config
        .root_keys
        .iter()
        .map(|file| Ok((file.kid, keys::load_key_file(&file.path)?)))
        .collect()
}

fn load_configured_keys(config: &Config, options: Options) -> Result<KeySource, StartupError> {
    if !config.root_keys.is_empty() {
        return Ok(KeySource::Files(load_key_files(config)?));
    }
    if !options.dev && matches!(config.database, Database::Postgres(_)) {
        return Err(StartupError::NoRootKey);
    }
    let path = keys::dev_key_path(&config.data_dir);
    // An existing development key must pass the same checks as a configured one, before
    // anything is created.
    if path.exists() {
        keys::load_key_file(&path)?;
    }
    Ok(KeySource::Dev(path))
}

/// The root public keys `mandate audit verify` checks checkpoints against, and the MAC keys it
/// checks events with: the ones this configuration loads (its key files, else the development key in the data directory), as
/// the service's own verification does. Never the keys on record in the database: whoever can
/// rewrite the trail there can rewrite that record too, and sign over the rewrite.
pub fn audit_keys(config: &Config) -> Result<(KeySet, AuditSeal), StartupError> {
    let keys = if config.root_keys.is_empty() {
        let path = keys::dev_key_path(&config.data_dir);
        if !path.exists() {
            return Err(StartupError::NoAuditKey { path });
        }
        vec![(DEV_KID, keys::load_key_file(&path)?)]
    } else {
        load_key_files(config)?
    };
    let seal = AuditSeal::from_keys(&keys, config.signing_kid().unwrap_or(DEV_KID));
    let public = keys
        .into_iter()
        .map(|(kid, key)| (kid, key.public()))
        .collect();
    Ok((public, seal))
}

/// The hash of the configured admin token, read (and checked) before anything is created.
fn load_admin_token(config: &Config) -> Result<Option<SecretHash>, StartupError> {
    match &config.admin_token {
        None => Ok(None),
        Some(AdminTokenSource::Value(token)) => Ok(Some(token.hash())),
        Some(AdminTokenSource::File(path)) => {
            let text = keys::read_private_file(path, "admin token file")?;
            let token = text.trim();
            if !is_strong_admin_token(token) {
                return Err(StartupError::AdminTokenFile { path: path.clone() });
            }
            Ok(Some(secrets::hash(token)))
        }
    }
}

fn load_or_generate_dev_key(path: &Path) -> Result<biscuit_auth::KeyPair, StartupError> {
    if path.exists() {
        return Ok(keys::load_key_file(path)?);
    }
    let key = keys::generate_key_file(path)?;
    tracing::warn!(path = %path.display(), "generated a development root key; configure MANDATE_ROOT_KEYS in production");
    Ok(key)
}

/// Opens the store (without migrating), creating the data directory first when something will
/// live in it.
async fn open_store(config: &Config, dev_key: bool) -> Result<SharedStore, StartupError> {
    let connect = || {
        store::connect(
            &config.database,
            &config.data_dir,
            config.database_max_connections,
        )
    };
    match &config.database {
        Database::Postgres(url) => {
            // Reach Postgres before creating anything locally.
            let store = connect().await?;
            tracing::info!(database = %url, "connected to postgres");
            if dev_key {
                create_data_dir(&config.data_dir)?;
            }
            Ok(store)
        }
        Database::Embedded => {
            create_data_dir(&config.data_dir)?;
            Ok(connect().await?)
        }
        Database::Sqlite(_) => {
            if dev_key {
                create_data_dir(&config.data_dir)?;
            }
            Ok(connect().await?)
        }
    }
}

fn create_data_dir(path: &Path) -> Result<(), StartupError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|reason| StartupError::DataDir {
            path: path.to_path_buf(),
            reason,
        })
}

async fn register_keys(
    store: &SharedStore,
    keys: Vec<(u32, biscuit_auth::KeyPair)>,
    active_kid: u32,
    clock: &SharedClock,
) -> Result<KeyRing, StartupError> {
    let mut ring = Vec::with_capacity(keys.len());
    for (kid, keypair) in keys {
        let public_key = crate::token::keys::format_public_key(&keypair.public());
        let record = store
            .register_root_key(&NewRootKey { kid, public_key }, clock.now())
            .await?;
        ring.push(RootKey::new(kid, keypair, record.created_at));
    }
    Ok(KeyRing::new(ring, active_kid)?)
}
