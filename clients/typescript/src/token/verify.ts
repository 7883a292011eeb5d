/**
 * Verifying a mandate offline (`src/token/verify.rs`): the checks that hold while the keys stay
 * the same (`checkToken`: size, block vocabulary, signatures, authority, hops, binding), and the
 * per-call ones (`Checked.authorizeHeld`: revocation, expiry with clock skew, the holder's proof,
 * the authorizer with the call's facts and explicit run limits, and naming the approval bound to
 * other arguments, or else the constraint, a refused call breaks).
 */

import type * as wasm from "@biscuit-auth/biscuit-wasm";

import { ArgumentNotAllowed, ArgumentsNotApproved, Expired, Malformed, NotAuthorized, ProofRefused, Revoked, TooLarge, UnknownKey, VerificationError } from "../errors.js";
import { constantTimeEqual } from "../encoding.js";
import { approvalReadOut, type Approval } from "./approval.js";
import { readAuthority, type Authority } from "./authority.js";
import { CanonicalJsonError, argumentsSha256 } from "./canonical.js";
import { RUN_LIMITS, authorize, ed25519PublicKey, revocationIds, verifySignatures, type RunLimits } from "./biscuit.js";
import { hops, holder, type AgentKeys, type Hop } from "./chain.js";
import { allows, argumentsFromJson, describe, type ArgConstraint, type ArgValue } from "./constraints.js";
import { read, type Decoded, type Right, type Stated } from "./vocabulary.js";

/** The largest token a verifier parses. */
export const MAX_TOKEN_BYTES = 16 * 1024;

/** Bounds and tolerances of verification. */
export interface VerifyOptions {
  maxBytes: number;
  maxBlocks: number;
  /** Clock skew tolerated on expiry, in seconds. */
  skewSeconds: number;
  limits: RunLimits;
}

/** 16 KiB, 16 blocks, no skew, mandate's run limits. */
export const DEFAULT_OPTIONS: VerifyOptions = { maxBytes: MAX_TOKEN_BYTES, maxBlocks: 16, skewSeconds: 0, limits: RUN_LIMITS };

/** Who a verified mandate speaks for, as the conformance vectors state it. */
export interface ReadOut {
  mandate_id: string;
  principal_subject: string;
  principal_issuer: string;
  agent_id: string;
  task_id: string;
  /** Every hop after the orchestrator, in order. */
  hops: Hop[];
  /** The rights the mandate granted (later blocks may narrow what is usable). */
  rights: Right[];
  /** When this token stops working (RFC 3339, `Z`). */
  expires_at: string;
  /** Every block's revocation id, hex, authority first. */
  revocation_ids: string[];
  /** Every argument constraint, the authority's and each later block's. */
  constraints: ArgConstraint[];
  /** The thumbprint of the key the token is bound to now; absent for a bearer mandate. */
  holder_key?: string;
  /**
   * The human approvals of the rights a policy gates behind approval, by tool and operation:
   * who approved and when, and for a one-call approval the arguments' digest. Absent when none.
   */
  approvals?: Approval[];
}

/** A verified call: who acts, and the right it used. */
export interface Verified extends ReadOut {
  right: Right;
}

/** Root keys by kid (64 hex digits each). */
export type KeySet = Map<number, string>;

/** Formats seconds since the epoch as chrono does: `2026-06-01T12:02:00Z`. */
export function rfc3339(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.000Z$/, "Z");
}

/** What one call asks. */
export interface CallRequest {
  tool: string;
  operation: string;
  resource: string | undefined;
  /** The call's JSON arguments (absent: none are stated, and a constrained operation is refused). */
  arguments: unknown;
  /** The verifier's time, seconds. */
  now: number;
}

/** A token whose signatures, vocabulary, hops and binding have been checked. */
export class Checked {
  constructor(
    private readonly biscuit: wasm.Biscuit,
    readonly authority: Authority,
    readonly blocks: Stated[],
    readonly readOut: ReadOut,
    /** Seconds since the epoch. */
    readonly expiresAt: number,
  ) {}

  /**
   * Frees the parsed token's wasm memory now (biscuit-wasm's allocator reuses memory poorly, so
   * waiting for the finalizer lets its heap grow). Only for a token nothing else holds: it can
   * no longer be authorized.
   */
  free(): void {
    this.biscuit.free();
  }

  /**
   * Refuses a token that is revoked, or expired at `now` less the skew, in whole seconds as the
   * Rust verifier compares: expired once `floor(now - skew) > expiresAt`.
   */
  alive(isRevoked: (id: string) => boolean, now: number, options: VerifyOptions): void {
    if (this.readOut.revocation_ids.some(isRevoked)) throw new Revoked();
    if (expiredAt(now, options.skewSeconds, this.expiresAt)) throw new Expired();
  }

  /** The rights still usable: the mandate's, less what any later block leaves out. */
  usableRights(): Right[] {
    let rights = this.readOut.rights;
    for (const block of this.blocks) {
      const kept = block.type === "narrowing" ? block.narrowing.rights : undefined;
      if (kept !== undefined) rights = rights.filter((r) => kept.some((k) => k.tool === r.tool && k.operation === r.operation));
    }
    return rights;
  }

  /** The constraints on the arguments of `operation` of `tool`. */
  constraintsOn(tool: string, operation: string): ArgConstraint[] {
    return this.readOut.constraints.filter((c) => c.tool === tool && c.operation === operation);
  }

  /**
   * Authorizes a call for a caller that proved it holds the key with thumbprint `proven` (the
   * proof is checked before): a bound token needs its holder's proof; an unbound one takes none.
   */
  authorizeHeld(isRevoked: (id: string) => boolean, request: CallRequest, proven: string | undefined, options: VerifyOptions): Verified {
    const bound = this.readOut.holder_key;
    if (bound === undefined && proven !== undefined) throw unbound();
    if (bound !== undefined && proven === undefined) throw missing();
    if (bound !== undefined && proven !== undefined && !constantTimeEqual(bound, proven)) {
      throw new ProofRefused("wrong_key", "the proof is signed by a key other than the mandate's holder");
    }
    const wanted = new Set(this.constraintsOn(request.tool, request.operation).map((c) => c.argument));
    const given = request.arguments !== undefined && request.arguments !== null;
    const stated = given && wanted.size > 0
      ? argumentsFromJson(request.arguments, wanted)
      : new Map<string, ArgValue>();
    const approved = this.approvedArguments(request.tool, request.operation);
    // The digest is computed only for an operation whose approval is bound to arguments.
    const digest = approved !== undefined && given ? digestOf(request.arguments) : undefined;
    try {
      return this.run(isRevoked, request, stated, digest, proven, options);
    } catch (error) {
      if (error instanceof NotAuthorized || (error instanceof VerificationError && error.code === "invalid")) {
        throw this.explain(request, stated, approved, digest) ?? error;
      }
      throw error;
    }
  }

  /** The digest of the arguments the approval of `operation` of `tool` is bound to, if it is. */
  approvedArguments(tool: string, operation: string): string | undefined {
    return this.authority.approvals.find((a) => a.tool === tool && a.operation === operation)?.argumentsSha256;
  }

  /**
   * The approval bound to other arguments than the call's, or the first constraint on the call's
   * operation its arguments break, as a refusal.
   */
  private explain(
    request: CallRequest, stated: Map<string, ArgValue>, approved: string | undefined, digest: string | undefined,
  ): ArgumentNotAllowed | ArgumentsNotApproved | undefined {
    const usable = this.usableRights().some((r) => r.tool === request.tool && r.operation === request.operation);
    if (!usable) return undefined;
    if (approved !== undefined && approved !== digest) return new ArgumentsNotApproved(request.tool, request.operation);
    for (const c of this.constraintsOn(request.tool, request.operation)) {
      const value = stated.get(c.argument);
      if (value === undefined) return new ArgumentNotAllowed(c.argument, `${describe(c.constraint)} (the call does not give it)`);
      if (!allows(c.constraint, value)) return new ArgumentNotAllowed(c.argument, describe(c.constraint));
    }
    return undefined;
  }

  private run(
    isRevoked: (id: string) => boolean, request: CallRequest, args: Map<string, ArgValue>, argumentsSha256: string | undefined,
    proven: string | undefined, options: VerifyOptions,
  ): Verified {
    if (this.readOut.revocation_ids.some(isRevoked)) throw new Revoked();
    // Whole seconds, as Biscuit dates are.
    const now = Math.floor(request.now - options.skewSeconds);
    if (expiredAt(request.now, options.skewSeconds, this.expiresAt)) throw new Expired();
    if (now < 0) throw new Malformed("time out of range");
    authorize(this.biscuit, {
      time: now, tool: request.tool, operation: request.operation, resource: request.resource, holderProof: proven, args,
      argumentsSha256,
    }, options.limits);
    return { ...structuredClone(this.readOut), right: { tool: request.tool, operation: request.operation } };
  }
}

/**
 * Whether a token expiring at `expiresAt` (whole seconds) is expired at `now` (seconds, maybe
 * fractional) less `skewSeconds`: the Rust verifier's rule, `floor(now - skew) > expiresAt`, so a
 * token works until the second after `expiresAt + skew` begins.
 */
export function expiredAt(now: number, skewSeconds: number, expiresAt: number): boolean {
  return Math.floor(now - skewSeconds) > expiresAt;
}

/** The SHA-256 of a call's arguments; `undefined` (no fact stated) for arguments with no canonical form. */
function digestOf(args: unknown): string | undefined {
  try {
    return argumentsSha256(args);
  } catch (error) {
    if (error instanceof CanonicalJsonError) return undefined;
    throw error;
  }
}

const unbound = () => new ProofRefused("unbound", "the mandate is not bound to a key: present it as `Authorization: Bearer`");
const missing = () => new ProofRefused("missing", "the mandate is bound to a key: present it as `Authorization: DPoP` with a `DPoP` proof");

/** What a verifier trusts for the checks that do not depend on the call. */
export interface Trust {
  keys: KeySet;
  agentKeys: AgentKeys;
}

/**
 * Checks `token`: its size, every block after the authority a mandate/v1 shape (before any
 * Datalog), every signature under the root key of its kid, the authority's facts, the hops and
 * the binding. Nothing is authorized.
 */
export function checkToken(token: string, trust: Trust, options: VerifyOptions = DEFAULT_OPTIONS): Checked {
  if (Buffer.byteLength(token) > options.maxBytes) throw new TooLarge(options.maxBytes);
  const decoded = read(token, options.maxBlocks);
  const rootHex = decoded.rootKeyId === undefined ? undefined : trust.keys.get(decoded.rootKeyId);
  if (rootHex === undefined) throw new UnknownKey();
  const biscuit = verifySignatures(token, ed25519PublicKey(rootHex));
  try {
    return checked(biscuit, decoded, trust);
  } catch (error) {
    // Refused: free the parsed token's wasm memory now, not whenever a finalizer runs.
    biscuit.free();
    throw error;
  }
}

function checked(biscuit: wasm.Biscuit, decoded: Decoded, trust: Trust): Checked {
  if (biscuit.countBlocks() !== decoded.blocks.length + 1) throw new Malformed();
  const authority = readAuthority(decoded.authority);
  const ids = revocationIds(biscuit);
  const chain = hops(decoded.blocks, decoded.externalKeys, trust.agentKeys);
  const holderKey = holder(authority.holderKey, decoded.blocks, decoded.externalKeys);
  const constraints = [...authority.constraints];
  let expiresAt = authority.expiresAt;
  for (const block of decoded.blocks) {
    if (block.type !== "narrowing") continue;
    constraints.push(...block.narrowing.constraints);
    if (block.narrowing.expiresAt !== undefined) expiresAt = Math.min(expiresAt, block.narrowing.expiresAt);
  }
  const readOut: ReadOut = {
    mandate_id: authority.mandateId,
    principal_subject: authority.principalSubject,
    principal_issuer: authority.principalIssuer,
    agent_id: authority.agentId,
    task_id: authority.taskId,
    hops: chain,
    rights: authority.rights,
    expires_at: rfc3339(expiresAt),
    revocation_ids: ids,
    constraints,
  };
  if (holderKey !== undefined) readOut.holder_key = holderKey;
  if (authority.approvals.length > 0) readOut.approvals = authority.approvals.map((a) => approvalReadOut(a, rfc3339));
  return new Checked(biscuit, authority, decoded.blocks, readOut, expiresAt);
}
