//! Reading a mandate's chain without verifying it: what each block states. Use it to show a
//! token; trust only what [`super::verify`] returns.

use biscuit_auth::UnverifiedBiscuit;
use serde::{Deserialize, Serialize};

use super::vocabulary::{self, Stated};
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
    /// The thumbprint of the key this block binds the token to (`holder_key($jkt)`: the
    /// authority's binding, or a rebinding the previous holder signed), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_key: Option<String>,
    /// The argument constraints this block adds (a holder's block; the authority's are in its
    /// source).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<super::constraints::ArgConstraint>,
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
    /// Signed by the holder's key, moving the binding to another key.
    Rebinding,
}

/// A mandate's chain, unverified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// The root key id the token names.
    pub root_key_id: Option<u32>,
    /// Every block, in order.
    pub blocks: Vec<BlockInfo>,
    /// The thumbprint of the key the last binding names (the current holder), if bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_key: Option<String>,
}

/// Reads `token`'s chain without checking any signature. A block that is not a mandate/v1
/// shape refuses the whole token, as a verifier would.
pub fn inspect(token: &str) -> Result<Chain, TokenError> {
    if token.len() > super::MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let decoded = vocabulary::read(token, usize::MAX)?;
    let token = UnverifiedBiscuit::from_base64(token.trim())?;
    let external_keys = token.external_public_keys();
    let revocation_ids = token.revocation_identifiers();
    let stated = std::iter::once(None).chain(decoded.blocks.iter().map(Some));
    let mut blocks = Vec::with_capacity(token.block_count());
    for (index, stated) in stated.enumerate() {
        let external = external_keys.get(index).copied().flatten();
        let mut holder_key = None;
        let (kind, delegate, hop, constraints) = match stated {
            None => {
                holder_key = super::authority::read(&decoded.authority)
                    .ok()
                    .and_then(|a| a.holder_key);
                (BlockKind::Authority, None, None, Vec::new())
            }
            Some(Stated::Narrowing(n)) => (
                BlockKind::Attenuation,
                n.delegate.clone(),
                None,
                n.constraints.clone(),
            ),
            Some(Stated::Attestation { agent }) => (
                BlockKind::Attestation,
                None,
                Some(agent.clone()),
                Vec::new(),
            ),
            Some(Stated::Rebind { holder_key: jkt }) => {
                holder_key = Some(jkt.clone());
                (BlockKind::Rebinding, None, None, Vec::new())
            }
        };
        blocks.push(BlockInfo {
            index,
            kind,
            external_key: external.map(|k| k.print()),
            delegate,
            hop,
            holder_key,
            constraints,
            revocation_id: revocation_ids
                .get(index)
                .map(hex::encode)
                .unwrap_or_default(),
            source: token.print_block_source(index)?,
        });
    }
    Ok(Chain {
        root_key_id: token.root_key_id(),
        holder_key: blocks.iter().rev().find_map(|b| b.holder_key.clone()),
        blocks,
    })
}
