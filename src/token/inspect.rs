//! Reading a mandate's chain without verifying it: what each block states. Use it to show a
//! token; trust only what [`super::verify`] returns.

use biscuit_auth::builder::Term;
use biscuit_auth::{BlockBuilder, PublicKey, UnverifiedBiscuit};
use serde::{Deserialize, Serialize};

use super::TokenError;

/// One block of a mandate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockInfo {
    /// Position: 0 is the authority block.
    pub index: usize,
    /// `authority`, `attenuation` or `attestation` (a third-party block).
    pub kind: BlockKind,
    /// The key that signed a third-party block, `ed25519/<hex>`.
    pub external_key: Option<String>,
    /// The holder this block names (`delegate($agent)`), if any.
    pub delegate: Option<String>,
    /// The agent this block attests (`hop($agent)`), if any.
    pub hop: Option<String>,
    /// The block's revocation id, hex.
    pub revocation_id: String,
    /// The block's Datalog.
    pub source: String,
}

/// What kind of block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// Signed by mandate's root key.
    Authority,
    /// Appended by a holder to narrow the token.
    Attenuation,
    /// Signed by an agent's own key.
    Attestation,
}

/// A mandate's chain, unverified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// The root key id the token names.
    pub root_key_id: Option<u32>,
    /// Every block, in order.
    pub blocks: Vec<BlockInfo>,
}

/// The only string argument of the first fact named `name`.
fn single_string(block: &BlockBuilder, name: &str) -> Result<Option<String>, TokenError> {
    let mut found = block.facts.iter().filter(|f| f.predicate.name == name);
    let Some(fact) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err(TokenError::MissingFact("one delegate or hop per block"));
    }
    match fact.predicate.terms.as_slice() {
        [Term::Str(value)] => Ok(Some(value.clone())),
        _ => Err(TokenError::Malformed),
    }
}

pub(crate) fn chain_of(
    block_count: usize,
    source: impl Fn(usize) -> Result<String, TokenError>,
    external_keys: &[Option<PublicKey>],
    revocation_ids: &[Vec<u8>],
    root_key_id: Option<u32>,
) -> Result<Chain, TokenError> {
    let mut blocks = Vec::with_capacity(block_count);
    for index in 0..block_count {
        let text = source(index)?;
        // The library prints strings without escaping them, so printed source does not always
        // parse back. The authority block (principal, task) is read through the authorizer
        // instead and never parsed here; a later block that does not parse back exactly, or
        // that states more than one delegate or hop, refuses the whole token.
        let parsed = if index == 0 {
            BlockBuilder::new()
        } else {
            BlockBuilder::new()
                .code(&text)
                .map_err(|_| TokenError::Malformed)?
        };
        let external = external_keys.get(index).copied().flatten();
        let kind = match (index, external) {
            (0, _) => BlockKind::Authority,
            (_, Some(_)) => BlockKind::Attestation,
            (_, None) => BlockKind::Attenuation,
        };
        blocks.push(BlockInfo {
            index,
            kind,
            external_key: external.map(|k| k.print()),
            delegate: single_string(&parsed, "delegate")?,
            hop: single_string(&parsed, "hop")?,
            revocation_id: revocation_ids
                .get(index)
                .map(hex::encode)
                .unwrap_or_default(),
            source: text,
        });
    }
    Ok(Chain {
        root_key_id,
        blocks,
    })
}

/// Reads `token`'s chain without checking any signature.
pub fn inspect(token: &str) -> Result<Chain, TokenError> {
    if token.len() > super::MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let token = UnverifiedBiscuit::from_base64(token)?;
    chain_of(
        token.block_count(),
        |i| Ok(token.print_block_source(i)?),
        &token.external_public_keys(),
        &token.revocation_identifiers(),
        token.root_key_id(),
    )
}
