//! What every request and background task can reach: the store, keys, clock, configuration,
//! identity verification, metrics and the shared limits. Built once by `startup`; the router,
//! mint and revocation take it from here.

use std::sync::Arc;

use super::audit;
use super::config::Config;
use super::dev::DevIdp;
use super::idp::IdentityVerifier;
use super::keys::KeyRing;
use super::limits::MintLimits;
use super::secrets::SecretHash;
use super::store::batch::Writers;
use super::store::snapshot::InventoryCache;
use super::store::SharedStore;
use super::streams::StreamSlots;
use super::telemetry::Metrics;
use crate::clock::SharedClock;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Where records live.
    pub store: SharedStore,
    /// The root keys.
    pub keys: Arc<KeyRing>,
    /// The source of time.
    pub clock: SharedClock,
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Hash of the configured admin token, if any (compared in constant time, never stored).
    pub bootstrap_admin: Option<SecretHash>,
    /// Validates human principals' tokens against the trusted issuers.
    pub idp: Arc<IdentityVerifier>,
    /// The built-in identity provider (development mode only).
    pub dev_idp: Option<Arc<DevIdp>>,
    /// Bounds the revocation streams open at once (each reads the feed on every commit).
    pub streams: Arc<StreamSlots>,
    /// The service's metrics.
    pub metrics: Arc<Metrics>,
    /// Group-committing writers for issuances and receipts.
    pub writers: Arc<Writers>,
    /// The inventory mints read, kept between changes.
    pub inventory: Arc<InventoryCache>,
    /// Mint rate limits.
    pub limits: Arc<MintLimits>,
    /// This replica's walks of the audit chain, and what the last one found.
    pub audit: Arc<audit::Replica>,
    /// The DPoP proofs the token endpoint has accepted (replays are refused).
    pub proofs: Arc<crate::token::pop::replay::Proofs>,
}
