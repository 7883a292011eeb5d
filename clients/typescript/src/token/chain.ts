/**
 * Who holds a token (`src/token/chain.rs`), read from its blocks after the authority and the
 * keys that signed them: the delegation hops (claimed, or attested by the agent's registered
 * key), and the key the token is bound to (moved only by blocks its holder so far signed). The
 * external key of each third-party block is read from the token's protobuf.
 */

import { ForgedAttestation, ForgedBinding, Malformed } from "../errors.js";
import { HolderKey } from "../pop/keys.js";
import type { PublicKeyProto } from "../wire/schema.js";
import type { Stated } from "./vocabulary.js";

/** One step of the delegation chain after the orchestrator. */
export interface Hop {
  agent: string;
  /** Whether that agent signed its hop with its registered key. */
  attested: boolean;
}

/** Registered agents' Ed25519 public keys (64 hex digits), by agent id. */
export type AgentKeys = Map<string, Set<string>>;

/** An Ed25519 external key as hex, the form agent keys are compared in. */
function ed25519Hex(key: PublicKeyProto): string | undefined {
  return key.algorithm === 0 ? Buffer.from(key.key).toString("hex") : undefined;
}

/**
 * The hops of a token's later blocks: each `delegate` names a claimed hop; an attestation turns
 * the last hop into an attested one if the key that signed it is registered for that agent.
 */
export function hops(blocks: Stated[], signers: Array<PublicKeyProto | undefined>, agentKeys: AgentKeys): Hop[] {
  const out: Hop[] = [];
  blocks.forEach((block, i) => {
    const signer = signers[i];
    if (block.type === "attestation" && signer !== undefined) {
      const last = out[out.length - 1];
      if (last === undefined || last.agent !== block.agent || last.attested) {
        throw new ForgedAttestation(`\`${block.agent}\` attests a hop the token was not delegated to it for`);
      }
      const hex = ed25519Hex(signer);
      if (hex === undefined || !(agentKeys.get(block.agent)?.has(hex) ?? false)) {
        throw new ForgedAttestation(`the attestation of \`${block.agent}\` is not signed by a key registered for it`);
      }
      last.attested = true;
    } else if (block.type === "rebind" && signer !== undefined) {
      // Checked by `holder`.
    } else if (block.type === "narrowing" && signer === undefined) {
      if (block.narrowing.delegate !== undefined) out.push({ agent: block.narrowing.delegate, attested: false });
    } else {
      throw new Malformed();
    }
  });
  return out;
}

/**
 * The key a token is bound to after its last block: the authority's binding, moved by each
 * rebinding block, which the key bound so far must have signed.
 */
export function holder(bound: string | undefined, blocks: Stated[], signers: Array<PublicKeyProto | undefined>): string | undefined {
  let current = bound;
  blocks.forEach((block, i) => {
    if (block.type !== "rebind") return;
    if (current === undefined) throw new ForgedBinding("a mandate bound to no key cannot be bound offline");
    const signer = signers[i];
    const signedBy = signer === undefined ? undefined : HolderKey.fromBiscuit(signer)?.thumbprint();
    if (signedBy !== current) throw new ForgedBinding("the binding is moved by a block the holder's key did not sign");
    current = block.holderKey;
  });
  return current;
}
