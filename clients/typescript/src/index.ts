/**
 * `@mandate/client`: verify, narrow and present mandate/v1 tokens from TypeScript.
 *
 * - `Verifier`: offline verification with mandate's published keys (`verifier.ts`).
 * - `attenuate`, `attest`, `rebind`: holder operations (`holder.ts`).
 * - `HolderSecret`, `HolderKey`, `createProof`: proof of possession (`pop/`).
 * - `RevocationFollower`: follows mandate's revocation feed (`revocations.ts`).
 * - `MandateMcp`: verifying mandates in an MCP server (`mcp.ts`).
 * - `canonicalJson`, `argumentsSha256`: RFC 8785 JSON and the digest a one-call approval binds (`token/canonical.ts`).
 * - Errors: `VerificationError` and its subclasses carry mandate's reason codes (`errors.ts`).
 */

export * from "./errors.js";
export { Verifier, Presentation, keySet, agentKeys, revocationList, SYSTEM_CLOCK, KeyDocumentError } from "./verifier.js";
export type { Call, Clock, RevocationCheck, VerifierOptions, KeysDocument, AgentKeysDocument } from "./verifier.js";
export type { Verified, ReadOut } from "./token/verify.js";
export type { Approval, Approver } from "./token/approval.js";
export { canonicalJson, argumentsSha256, CanonicalJsonError } from "./token/canonical.js";
export type { Right } from "./token/vocabulary.js";
export type { Hop } from "./token/chain.js";
export type { ArgConstraint, Constraint, Scalar } from "./token/constraints.js";
export { HolderKey, HolderSecret, JwkError, isThumbprint } from "./pop/keys.js";
export type { Algorithm, Jwk } from "./pop/keys.js";
export { createProof, checkProof, normalizeUrl, tokenHash } from "./pop/proof.js";
export type { ProofRequest, Expected } from "./pop/proof.js";
export { Proofs, DEFAULT_PROOF_SETTINGS } from "./pop/replay.js";
export type { ProofSettings } from "./pop/replay.js";
export { attenuate, attest, rebind } from "./holder.js";
export type { Attenuation, AgentKey, RootKeys } from "./holder.js";
export { parseJson, JsonFloat, JsonError } from "./json.js";
export { RevocationFollower } from "./revocations.js";
export type { FollowerOptions } from "./revocations.js";
export { MandateMcp } from "./mcp.js";
export type { MandateMcpOptions } from "./mcp.js";
