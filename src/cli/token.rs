//! `mandate token …`: attenuate, attest, inspect and verify mandates offline. Tokens are read
//! from a file (`--in`) or standard input, never from the command line, where they would land
//! in shell history and process lists.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use chrono::{DateTime, Duration, Utc};
use clap::Subcommand;
use mandate::clock::{Clock, ManualClock, SystemClock};
use mandate::token::attenuate::{attenuate, Attenuation};
use mandate::token::attest::attest;
use mandate::token::attest::rebind;
use mandate::token::constraints::{valid_path, ArgConstraint, Constraint};
use mandate::token::inspect::inspect;
use mandate::token::keys::{AgentKeysDocument, KeysDocument};
use mandate::token::pop::proof::{self, create, Expected};
use mandate::token::pop::{HolderKey, HolderSecret};
use mandate::token::verify::{check, AccessRequest, AgentKeys, Trust, VerifyOptions};
use mandate::token::Right;
use mandate::verifier::revocations::{RevocationSync, SyncSettings};
use mandate::verifier::{Access, NoRevocations, Presentation, Verifier, VerifierSettings};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Narrow a mandate: fewer rights, resources, an earlier expiry, a named delegate.
    Attenuate {
        /// Read the token from this file instead of standard input.
        #[arg(long = "in")]
        input: Option<PathBuf>,
        /// Keep only this right, `tool:operation` (repeatable).
        #[arg(long = "right")]
        rights: Vec<String>,
        /// Allow only calls on this resource (repeatable).
        #[arg(long = "resource")]
        resources: Vec<String>,
        /// Expire this many seconds from now.
        #[arg(long)]
        expires_in: Option<i64>,
        /// The agent that will hold the derived token.
        #[arg(long)]
        delegate: Option<String>,
        /// Constrain an argument, `tool:operation:argument=CONSTRAINT` with the constraint as
        /// JSON, e.g. `github:issues.create:repo={"prefix":"acme/web"}` (repeatable).
        #[arg(long = "constrain")]
        constraints: Vec<String>,
        #[command(flatten)]
        rebind: Rebind,
    },
    /// Attest a hop: sign it with the agent's registered Ed25519 key (PKCS#8 PEM).
    Attest {
        /// Read the token from this file instead of standard input.
        #[arg(long = "in")]
        input: Option<PathBuf>,
        /// The agent now holding the token.
        #[arg(long)]
        agent: String,
        /// The agent's private key file (owner-only).
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        rebind: Rebind,
    },
    /// Make a holder key (a private JWK, written owner-only) and print its public JWK.
    Keygen {
        /// `EdDSA` (Ed25519) or `ES256` (P-256).
        #[arg(long, default_value = "EdDSA")]
        alg: String,
        /// Where to write the private JWK.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a DPoP proof (RFC 9449) for one call with a bound mandate.
    Proof {
        /// Read the token from this file instead of standard input.
        #[arg(long = "in")]
        input: Option<PathBuf>,
        /// A proof for mandate's token endpoint: no token is presented with it.
        #[arg(long, conflicts_with = "input")]
        no_token: bool,
        /// The holder's private JWK.
        #[arg(long)]
        key: PathBuf,
        /// The call's method.
        #[arg(long)]
        method: String,
        /// The call's URL.
        #[arg(long)]
        url: String,
        /// The server's `DPoP-Nonce`, if it gave one.
        #[arg(long)]
        nonce: Option<String>,
    },
    /// Print a mandate's chain as JSON (unverified).
    Inspect {
        /// Read the token from this file instead of standard input.
        #[arg(long = "in")]
        input: Option<PathBuf>,
    },
    /// Verify a mandate for one call and print who acts, for whom, through which hops.
    Verify {
        /// Read the token from this file instead of standard input.
        #[arg(long = "in")]
        input: Option<PathBuf>,
        /// mandate's base URL, to fetch its published keys.
        #[arg(long, conflicts_with = "keys")]
        mandate: Option<String>,
        /// A saved `/.well-known/mandate-keys` document instead.
        #[arg(long)]
        keys: Option<PathBuf>,
        /// A saved `/.well-known/mandate-agent-keys` document (with --keys).
        #[arg(long)]
        agent_keys: Option<PathBuf>,
        /// The tool called.
        #[arg(long)]
        tool: String,
        /// The operation performed.
        #[arg(long)]
        operation: String,
        /// The resource, if the call names one.
        #[arg(long)]
        resource: Option<String>,
        /// Verify as of this time (RFC 3339) instead of now.
        #[arg(long)]
        at: Option<DateTime<Utc>>,
        /// With --mandate: do not read its revocation feed (a revoked token then verifies).
        #[arg(long)]
        no_revocations: bool,
        /// A bound mandate's DPoP proof, read from this file.
        #[arg(long, requires_all = ["method", "url"])]
        proof: Option<PathBuf>,
        /// The method the proof must be for.
        #[arg(long)]
        method: Option<String>,
        /// The URL the proof must be for.
        #[arg(long)]
        url: Option<String>,
    },
}

/// Moving a bound mandate's binding to the next holder's key.
#[derive(Debug, clap::Args)]
pub struct Rebind {
    /// The current holder's private JWK: signs the block that moves the binding.
    #[arg(long, requires = "bind_to")]
    holder_key: Option<PathBuf>,
    /// The next holder's JWK (public or private): the binding moves to it.
    #[arg(long, requires = "holder_key")]
    bind_to: Option<PathBuf>,
}

impl Rebind {
    /// `token` with its binding moved, if asked.
    fn apply(&self, token: String) -> anyhow::Result<String> {
        let (Some(holder), Some(next)) = (&self.holder_key, &self.bind_to) else {
            return Ok(token);
        };
        let holder = read_secret(holder)?;
        let next_jwk: serde_json::Value = read_json(next)?;
        let next = match HolderSecret::from_jwk(&next_jwk) {
            Ok(secret) => secret.public().clone(),
            Err(_) => HolderKey::from_jwk(&next_jwk)
                .with_context(|| format!("{} is not a holder key", next.display()))?,
        };
        Ok(rebind(&token, &holder, &next.thumbprint())?)
    }
}

fn read_secret(path: &PathBuf) -> anyhow::Result<HolderSecret> {
    let jwk: serde_json::Value = read_json(path)?;
    HolderSecret::from_jwk(&jwk)
        .with_context(|| format!("{} is not a private holder key (JWK)", path.display()))
}

fn read_token(input: Option<&PathBuf>) -> anyhow::Result<String> {
    let mut text = String::new();
    match input {
        Some(path) => {
            text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?
        }
        None => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the token from standard input")?;
        }
    }
    let token = text.trim().to_owned();
    if token.is_empty() {
        bail!("no token given (pipe it in, or use --in FILE)");
    }
    Ok(token)
}

fn parse_right(text: &str) -> anyhow::Result<Right> {
    let (tool, operation) = text
        .split_once(':')
        .with_context(|| format!("`{text}` is not tool:operation"))?;
    Ok(Right {
        tool: tool.to_owned(),
        operation: operation.to_owned(),
    })
}

/// `tool:operation:argument={"prefix":"acme/"}`.
fn parse_constraint(text: &str) -> anyhow::Result<ArgConstraint> {
    let usage = || format!("`{text}` is not `tool:operation:argument=CONSTRAINT`");
    let (target, constraint) = text.split_once('=').with_context(usage)?;
    let mut parts = target.splitn(3, ':');
    let (Some(tool), Some(operation), Some(argument)) = (parts.next(), parts.next(), parts.next())
    else {
        bail!(usage());
    };
    let constraint: Constraint = serde_json::from_str(constraint).with_context(|| {
        format!(
            "`{constraint}` is not a constraint: one of {{\"equals\":V}}, {{\"one_of\":[…]}}, \
             {{\"prefix\":S}}, {{\"glob\":S}}, {{\"range\":{{\"min\":N,\"max\":N}}}}, \
             {{\"max_length\":N}}"
        )
    })?;
    if !valid_path(argument) {
        bail!("`{argument}` is not an argument path (dot-joined segments of [A-Za-z0-9_-])");
    }
    if let Some(problem) = constraint.problem() {
        bail!("the constraint on `{argument}`: {problem}");
    }
    Ok(ArgConstraint {
        tool: tool.to_owned(),
        operation: operation.to_owned(),
        argument: argument.to_owned(),
        constraint,
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &PathBuf) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a key document", path.display()))
}

/// Runs a `mandate token` command.
pub fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Attenuate {
            input,
            rights,
            resources,
            expires_in,
            delegate,
            constraints,
            rebind,
        } => {
            let token = read_token(input.as_ref())?;
            let attenuation = Attenuation {
                rights: if rights.is_empty() {
                    None
                } else {
                    Some(
                        rights
                            .iter()
                            .map(|r| parse_right(r))
                            .collect::<Result<_, _>>()?,
                    )
                },
                resources: (!resources.is_empty()).then_some(resources),
                expires_at: expires_in.map(|s| SystemClock.now() + Duration::seconds(s)),
                delegate,
                constraints: constraints
                    .iter()
                    .map(|c| parse_constraint(c))
                    .collect::<Result<_, _>>()?,
            };
            println!("{}", rebind.apply(attenuate(&token, &attenuation)?)?);
        }
        TokenCommand::Attest {
            input,
            agent,
            key,
            rebind,
        } => {
            // The binding moves first, so the agent's attestation covers it.
            let token = rebind.apply(read_token(input.as_ref())?)?;
            let key = mandate::server::keys::load_key_file(&key)?;
            println!("{}", attest(&token, &agent, &key)?);
        }
        TokenCommand::Keygen { alg, out } => {
            let secret = HolderSecret::generate(&alg)?;
            mandate::server::keys::write_new_private(&out, secret.to_jwk().to_string().as_bytes())
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("{}", secret.public().to_jwk());
        }
        TokenCommand::Proof {
            input,
            no_token,
            key,
            method,
            url,
            nonce,
        } => {
            let token = if no_token {
                None
            } else {
                Some(read_token(input.as_ref())?)
            };
            let holder = read_secret(&key)?;
            let now = SystemClock.now();
            let proof = create(
                &holder,
                &method,
                &url,
                token.as_deref(),
                nonce.as_deref(),
                now,
            );
            println!("{proof}");
        }
        TokenCommand::Inspect { input } => {
            let token = read_token(input.as_ref())?;
            println!("{}", serde_json::to_string_pretty(&inspect(&token)?)?);
        }
        TokenCommand::Verify {
            input,
            mandate,
            keys,
            agent_keys,
            tool,
            operation,
            resource,
            at,
            no_revocations,
            proof,
            method,
            url,
        } => {
            let token = read_token(input.as_ref())?;
            let now = at.unwrap_or_else(|| SystemClock.now());
            let proof = match &proof {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?
                        .trim()
                        .to_owned(),
                ),
                None => None,
            };
            let call = proof.as_deref().map(|proof| Presentation {
                token: &token,
                proof: Some(proof),
                method: method.as_deref().unwrap_or_default(),
                url: url.as_deref().unwrap_or_default(),
            });
            let verified = match (mandate, keys) {
                (Some(base), None) => {
                    let runtime = tokio::runtime::Runtime::new()?;
                    runtime.block_on(async {
                        let clock: mandate::clock::SharedClock = Arc::new(ManualClock::new(now));
                        // The feed is read once, so a revoked token is refused; without it the
                        // answer says so.
                        let revocations: Arc<dyn mandate::verifier::RevocationCheck> =
                            if no_revocations {
                                eprintln!(
                                    "not reading the revocation feed: a revoked token verifies"
                                );
                                Arc::new(NoRevocations)
                            } else {
                                let sync = RevocationSync::new(
                                    SyncSettings::new(base.clone()),
                                    clock.clone(),
                                )?;
                                sync.sync_once().await.with_context(|| {
                                    format!(
                                        "cannot read the revocation feed of {base}; \
                                         pass --no-revocations to verify without it"
                                    )
                                })?;
                                sync
                            };
                        let verifier =
                            Verifier::new(VerifierSettings::new(base), revocations, clock)?;
                        verifier.refresh().await?;
                        let access = Access {
                            tool,
                            operation,
                            resource,
                        };
                        let bearer = Presentation {
                            token: &token,
                            proof: None,
                            method: "",
                            url: "",
                        };
                        let presented = call.unwrap_or(bearer);
                        anyhow::Ok(verifier.verify_presented(&presented, &access, None).await?)
                    })?
                }
                (None, Some(keys)) => {
                    let keys = read_json::<KeysDocument>(&keys)?.key_set()?;
                    let agents: AgentKeys = match agent_keys {
                        Some(path) => read_json::<AgentKeysDocument>(&path)?.agent_keys()?,
                        None => AgentKeys::new(),
                    };
                    let trust = Trust {
                        keys: &keys,
                        agent_keys: &agents,
                        is_revoked: &|_| false,
                    };
                    let request = AccessRequest {
                        tool,
                        operation,
                        now,
                    };
                    let options = VerifyOptions::default();
                    let checked = check(&token, &trust, &options)?;
                    let proven = match &call {
                        Some(call) => {
                            let holder = checked.verified().holder_key.as_deref();
                            let expected = Expected {
                                method: call.method,
                                url: call.url,
                                ath: Some(&proof::token_hash(&token)),
                                holder: Some(holder.context(
                                    "the mandate is not bound to a key: verify it without --proof",
                                )?),
                                now,
                                max_age: chrono::Duration::seconds(60),
                                max_ahead: chrono::Duration::seconds(30),
                            };
                            Some(proof::check(call.proof.unwrap_or_default(), &expected)?.jkt)
                        }
                        None => None,
                    };
                    let resource = resource.as_deref();
                    let proven = proven.as_deref();
                    checked.authorize_held(
                        &|_| false,
                        &request,
                        resource,
                        None,
                        proven,
                        &options,
                    )?
                }
                _ => bail!("give --mandate URL or --keys FILE"),
            };
            println!("{}", serde_json::to_string_pretty(&verified)?);
        }
    }
    Ok(())
}
