/**
 * The downstream verifier (`src/verifier/mod.rs`, `cache.rs`): keeps mandate's published root
 * and agent keys and verifies mandates offline, one call at a time.
 *
 * Keys are fetched on first use, refetched when older than 5 minutes, and on an unknown kid or
 * attesting key at most once per 30 s; after an hour without a successful fetch every
 * verification fails closed (and the keys are asked for at most once per 30 s) until a fetch
 * succeeds. Each fetch times out after 5 s. A token's signature and attestation checks are
 * remembered (10,000 tokens, by SHA-256) until it expires or the keys are refetched; revocation,
 * the holder's proof and the authorizer run on every call.
 */

import { createHash } from "node:crypto";

import { ProofRefused, RevocationsStale, TooLarge, UnknownKey } from "./errors.js";
import { parseJson } from "./json.js";
import { tokenHash } from "./pop/proof.js";
import { Proofs, type ProofSettings } from "./pop/replay.js";
import { RUN_LIMITS, ed25519PublicKey, wasmHeapBytes, type RunLimits } from "./token/biscuit.js";
import type { AgentKeys } from "./token/chain.js";
import { MAX_TOKEN_BYTES, checkToken, type Checked, type KeySet, type ReadOut, type Verified, type VerifyOptions } from "./token/verify.js";
import { read } from "./token/vocabulary.js";

/** Tells whether a revocation id is revoked (filled by a revocation feed). */
export interface RevocationCheck {
  /** Whether `id` (a block's revocation id, hex) is revoked. */
  isRevoked(id: string): boolean;
  /** Why the list is too old to rely on, or `undefined` when it is current. */
  stale?(): string | undefined;
}

/** Wall-clock and monotonic time, both in milliseconds (injected in tests). */
export interface Clock {
  now(): number;
  monotonic(): number;
}

/** The system clock. */
export const SYSTEM_CLOCK: Clock = { now: () => Date.now(), monotonic: () => performance.now() };

/** How a verifier fetches keys and verifies. Every field but `baseUrl` has the Rust default. */
export interface VerifierOptions {
  /** mandate's base URL, e.g. `https://mandate.internal`. */
  baseUrl: string;
  /** Clock skew tolerated on expiry (30 s). */
  skewSeconds?: number;
  /** Largest token parsed (16 KiB). */
  maxBytes?: number;
  /** Most blocks accepted, the authority included (16). */
  maxBlocks?: number;
  /** Authorizer run limits (1,000 facts, 100 iterations, 20 ms). */
  limits?: RunLimits;
  /** An unknown kid or attesting key refetches at most once per this (30 s). */
  refetchIntervalMs?: number;
  /** Keys are refetched this often anyway (5 min). */
  keyTtlMs?: number;
  /** Keys older than this are no longer trusted (1 h). */
  maxKeyAgeMs?: number;
  /** Timeout of each key fetch (5 s). */
  fetchTimeoutMs?: number;
  /** Most checked tokens remembered (10,000; 0: none). */
  cacheCapacity?: number;
  /** How proofs of possession are checked. */
  proofs?: Partial<ProofSettings>;
  /** The revocation list (default: nothing is revoked). */
  revocations?: RevocationCheck;
  clock?: Clock;
}

/** One call to verify: what it does, and how it presented the mandate. */
export interface Call {
  /** The tool (this service's id in mandate). */
  tool: string;
  operation: string;
  /** The resource, when the service names one. */
  resource?: string | null;
  /** The call's JSON arguments, checked against the token's argument constraints. */
  arguments?: unknown;
  /** The `DPoP` header, when the call uses the DPoP scheme (absent for Bearer). */
  proof?: string | null;
  /** The call's method (for the proof). */
  method?: string;
  /** The call's URL as the client addressed it (for the proof). */
  url?: string;
}

/** The published key documents, as mandate serves them. */
export interface KeysDocument {
  keys: Array<{ kid: number; algorithm: string; public_key: string; status: "active" | "verify_only"; created_at: string }>;
}
export interface AgentKeysDocument {
  agents: Array<{ agent: string; public_keys: string[] }>;
}

/** A key document is not what mandate publishes. */
export class KeyDocumentError extends Error {
  constructor(reason: string) {
    super(`not a valid key document: ${reason}`);
    this.name = "KeyDocumentError";
  }
}

function publicKeyHex(text: unknown): string {
  if (typeof text !== "string" || !/^ed25519\/[0-9a-fA-F]{64}$/.test(text)) {
    throw new KeyDocumentError("public key must be `ed25519/<64 hex digits>`");
  }
  const hex = text.slice(8).toLowerCase();
  try {
    ed25519PublicKey(hex);
  } catch {
    throw new KeyDocumentError("public key must be `ed25519/<64 hex digits>`");
  }
  return hex;
}

/**
 * `value` as a JSON object with exactly the members `names` (the Rust documents deny unknown
 * fields, and none of these members is optional).
 */
function members(value: unknown, names: readonly string[], what: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new KeyDocumentError(`${what} is a JSON object`);
  const object = value as Record<string, unknown>;
  for (const name of Object.keys(object)) {
    if (!names.includes(name)) throw new KeyDocumentError(`${what} has an unknown field \`${name}\``);
  }
  for (const name of names) {
    if (!Object.hasOwn(object, name)) throw new KeyDocumentError(`${what} has no \`${name}\``);
  }
  return object;
}

/** An RFC 3339 date and time as chrono reads one (`2026-01-02T03:04:05Z`, an offset, a fraction). */
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/** Whether `text` is an RFC 3339 timestamp naming a real date and time. */
export function isRfc3339(text: unknown): text is string {
  const match = typeof text === "string" ? RFC3339.exec(text) : null;
  if (match === null) return false;
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const days = new Date(Date.UTC(year, month, 0)).getUTCDate();
  return month >= 1 && month <= 12 && day >= 1 && day <= days && hour <= 23 && minute <= 59 && second <= 60;
}

/** The statuses of a published root key. */
const KEY_STATUSES = ["active", "verify_only"];

/**
 * The verification keys of a `/.well-known/mandate-keys` document, read as the Rust
 * `KeysDocument`: exactly `keys`, each key exactly `kid` (32-bit), `algorithm` (`ed25519`),
 * `public_key`, `status` (`active` or `verify_only`) and `created_at` (RFC 3339); kids unique.
 */
export function keySet(document: unknown): KeySet {
  const { keys } = members(document, ["keys"], "a keys document");
  if (!Array.isArray(keys)) throw new KeyDocumentError("`keys` is a list");
  const set: KeySet = new Map();
  for (const entry of keys) {
    const key = members(entry, ["kid", "algorithm", "public_key", "status", "created_at"], "a key");
    const kid = key.kid;
    if (typeof kid !== "number" || !Number.isInteger(kid) || kid < 0 || kid > 0xffffffff) throw new KeyDocumentError("a kid is a 32-bit integer");
    if (key.algorithm !== "ed25519") throw new KeyDocumentError(`kid ${kid}: unsupported algorithm (only ed25519)`);
    if (typeof key.status !== "string" || !KEY_STATUSES.includes(key.status)) {
      throw new KeyDocumentError(`kid ${kid}: status is \`active\` or \`verify_only\``);
    }
    if (!isRfc3339(key.created_at)) throw new KeyDocumentError(`kid ${kid}: created_at is an RFC 3339 time`);
    const hex = publicKeyHex(key.public_key);
    if (set.has(kid)) throw new KeyDocumentError(`kid ${kid} is published twice`);
    set.set(kid, hex);
  }
  return set;
}

/**
 * The agents' keys of a `/.well-known/mandate-agent-keys` document, read as the Rust
 * `AgentKeysDocument`: exactly `agents`, each exactly `agent` and `public_keys`.
 */
export function agentKeys(document: unknown): AgentKeys {
  const { agents } = members(document, ["agents"], "an agent keys document");
  if (!Array.isArray(agents)) throw new KeyDocumentError("`agents` is a list");
  const map: AgentKeys = new Map();
  for (const item of agents) {
    const entry = members(item, ["agent", "public_keys"], "an agent");
    if (typeof entry.agent !== "string" || !Array.isArray(entry.public_keys)) throw new KeyDocumentError("an agent has an id and keys");
    const keys = map.get(entry.agent) ?? new Set<string>();
    for (const key of entry.public_keys) keys.add(publicKeyHex(key));
    map.set(entry.agent, keys);
  }
  return map;
}

/** A revocation list read once from a `GET /v1/revocations` page (offline use and tests). */
export function revocationList(page: unknown): RevocationCheck {
  const items = (page as { items?: Array<{ revocation_id?: unknown }> } | undefined)?.items;
  if (!Array.isArray(items)) throw new KeyDocumentError("a revocation page has `items`");
  const ids = new Set(items.map((i) => String(i.revocation_id).toLowerCase()));
  return { isRevoked: (id) => ids.has(id.toLowerCase()) };
}

interface Entry {
  checked: Checked;
  generation: number;
  ath: string;
}

/** A token as one request presented it, checked (`Verifier.present`), not yet authorized. */
export class Presentation {
  /** @internal */
  constructor(readonly entry: Entry, readonly proven: string | undefined) {}

  /** Who the token speaks for (before any operation is authorized). */
  get readOut(): ReadOut {
    return structuredClone(this.entry.checked.readOut);
  }
}

/** Verifies mandates offline with mandate's published keys. */
export class Verifier {
  private readonly options: Required<Omit<VerifierOptions, "proofs" | "revocations" | "clock">>;
  private readonly verifyOptions: VerifyOptions;
  private readonly proofs: Proofs;
  private readonly revocations: RevocationCheck;
  private readonly clock: Clock;
  private keys: KeySet = new Map();
  private agents: AgentKeys = new Map();
  private lastFetch: number | undefined;
  private lastSuccess: number | undefined;
  private generation = 0;
  private fetching: Promise<void> | undefined;
  /** Keys given once (`fromDocuments`): never fetched. */
  private fixed = false;
  private readonly tokens = new Map<string, Entry>();

  constructor(options: VerifierOptions) {
    this.options = {
      baseUrl: options.baseUrl,
      skewSeconds: options.skewSeconds ?? 30,
      maxBytes: options.maxBytes ?? MAX_TOKEN_BYTES,
      maxBlocks: options.maxBlocks ?? 16,
      limits: options.limits ?? RUN_LIMITS,
      refetchIntervalMs: options.refetchIntervalMs ?? 30_000,
      keyTtlMs: options.keyTtlMs ?? 300_000,
      maxKeyAgeMs: options.maxKeyAgeMs ?? 3_600_000,
      fetchTimeoutMs: options.fetchTimeoutMs ?? 5_000,
      cacheCapacity: options.cacheCapacity ?? 10_000,
    };
    this.verifyOptions = {
      maxBytes: this.options.maxBytes, maxBlocks: this.options.maxBlocks,
      skewSeconds: this.options.skewSeconds, limits: this.options.limits,
    };
    this.proofs = new Proofs(options.proofs);
    this.revocations = options.revocations ?? { isRevoked: () => false };
    this.clock = options.clock ?? SYSTEM_CLOCK;
  }

  /**
   * A verifier trusting these documents (`/.well-known/mandate-keys` and
   * `/.well-known/mandate-agent-keys` as JSON), never fetching: for offline use and tests.
   * `revocations` is a `GET /v1/revocations` page or a `RevocationCheck`.
   */
  static fromDocuments(
    keys: unknown,
    agentKeyDocument: unknown,
    options: Omit<Partial<VerifierOptions>, "revocations"> & { revocations?: RevocationCheck | { items: unknown[] } } = {},
  ): Verifier {
    const revocations = options.revocations === undefined || "isRevoked" in options.revocations
      ? options.revocations as RevocationCheck | undefined
      : revocationList(options.revocations);
    const { revocations: _page, ...rest } = options;
    const verifier = new Verifier({ ...rest, baseUrl: options.baseUrl ?? "", ...(revocations ? { revocations } : {}) });
    verifier.keys = keySet(keys);
    verifier.agents = agentKeys(agentKeyDocument);
    verifier.fixed = true;
    verifier.generation = 1;
    return verifier;
  }

  /**
   * Verifies one call: the token's checks (remembered per token), then revocation and expiry,
   * the holder's proof for a bound mandate, and the authorizer with the call's facts. Returns
   * who acts and the right used; throws a `VerificationError` whose `code` says why not.
   */
  async verify(token: string, call: Call): Promise<Verified> {
    const entry = await this.checked(token);
    try {
      this.alive(entry);
      return this.authorize(new Presentation(entry, this.prove(entry, call)), call);
    } finally {
      // With caching off this call is the token's only holder: free its wasm memory now.
      if (this.options.cacheCapacity === 0) entry.checked.free();
    }
  }

  /**
   * The checks of one presentation of a token, as an HTTP layer makes them once per request:
   * the token's checks, revocation and expiry, and the proof for a bound mandate (a proof is
   * accepted once). Each operation the request performs is then `authorize`d.
   */
  async present(token: string, how: Pick<Call, "proof" | "method" | "url">): Promise<Presentation> {
    const entry = await this.checked(token);
    this.alive(entry);
    return new Presentation(entry, this.prove(entry, how));
  }

  /** Authorizes one operation of a presented token now. */
  authorize(presentation: Presentation, call: Omit<Call, "proof" | "method" | "url">): Verified {
    this.fresh();
    return presentation.entry.checked.authorizeHeld((id) => this.revocations.isRevoked(id), {
      tool: call.tool,
      operation: call.operation,
      resource: call.resource ?? undefined,
      arguments: call.arguments ?? undefined,
      now: this.clock.now() / 1000,
    }, presentation.proven, this.verifyOptions);
  }

  /** A nonce for the `DPoP-Nonce` header (proofs must carry one with `requireNonce`). */
  nonce(): string {
    return this.proofs.nonce(Math.floor(this.clock.now() / 1000));
  }

  /**
   * The size in bytes of biscuit-wasm's heap, shared by every verifier in this process (or
   * `undefined` where it cannot be reached). It grows with every verification and never
   * shrinks: watch it, and recycle the process or worker before it nears 4 GiB (README, "Limits").
   */
  static wasmHeapBytes(): number | undefined {
    return wasmHeapBytes();
  }

  /** How many checked tokens are remembered. */
  get cachedTokens(): number {
    return this.tokens.size;
  }

  /** Fetches the root and agent keys now. */
  async refresh(): Promise<void> {
    const base = this.options.baseUrl.replace(/\/+$/, "");
    const get = async (path: string): Promise<unknown> => {
      const response = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(this.options.fetchTimeoutMs) });
      if (!response.ok) throw new KeyDocumentError(`${path} answered ${response.status}`);
      // Read as serde_json does: `1.0` is not a kid.
      return parseJson(await response.text());
    };
    const keys = keySet(await get("/.well-known/mandate-keys"));
    const agents = agentKeys(await get("/.well-known/mandate-agent-keys"));
    const at = this.clock.monotonic();
    this.keys = keys;
    this.agents = agents;
    this.lastFetch = at;
    this.lastSuccess = at;
    this.generation++;
    this.tokens.clear();
  }

  private fresh(): void {
    const stale = this.revocations.stale?.();
    if (stale !== undefined) throw new RevocationsStale(stale);
  }

  private alive(entry: Entry): void {
    this.fresh();
    entry.checked.alive((id) => this.revocations.isRevoked(id), this.clock.now() / 1000, this.verifyOptions);
  }

  private prove(entry: Entry, call: Pick<Call, "proof" | "method" | "url">): string | undefined {
    const holder = entry.checked.readOut.holder_key;
    const proof = call.proof ?? undefined;
    if (holder === undefined && proof === undefined) return undefined;
    if (holder === undefined) {
      throw new ProofRefused("unbound", "the mandate is not bound to a key: present it as `Authorization: Bearer`");
    }
    if (proof === undefined) {
      throw new ProofRefused("missing", "the mandate is bound to a key: present it as `Authorization: DPoP` with a `DPoP` proof");
    }
    return this.proofs.check(proof, {
      method: call.method ?? "",
      url: call.url ?? "",
      ath: entry.ath,
      holder,
      now: Math.floor(this.clock.now() / 1000),
      maxAgeSeconds: this.proofs.settings.maxAgeSeconds,
      maxAheadSeconds: this.proofs.settings.maxAheadSeconds,
    }).jkt;
  }

  /** The checks of a token that hold until the keys change, remembered per token. */
  private async checked(token: string): Promise<Entry> {
    if (Buffer.byteLength(token) > this.options.maxBytes) throw new TooLarge(this.options.maxBytes);
    this.fresh();
    const digest = createHash("sha256").update(token).digest("hex");
    await this.refreshIfDue(false);
    const cached = this.tokens.get(digest);
    if (cached !== undefined) {
      // Dropped once the expiry instant is reached, as the Rust cache drops it (`expires_at <=
      // now`; in whole seconds the same, `expiresAt` being whole): only a cache rule, the call's
      // expiry with skew is `alive`'s and the authorizer's.
      if (cached.generation === this.generation && cached.checked.expiresAt * 1000 > this.clock.now()) return cached;
      this.tokens.delete(digest);
    }
    const decoded = read(token, this.options.maxBlocks);
    const kidUnknown = decoded.rootKeyId === undefined || !this.keys.has(decoded.rootKeyId);
    const attesting = decoded.blocks.flatMap((b, i) => {
      const key = decoded.externalKeys[i];
      return b.type === "attestation" && key !== undefined ? [Buffer.from(key.key).toString("hex")] : [];
    });
    const keyUnknown = attesting.some((k) => ![...this.agents.values()].some((keys) => keys.has(k)));
    await this.refreshIfDue(kidUnknown || keyUnknown);
    const generation = this.generation;
    const checked = checkToken(token, { keys: this.keys, agentKeys: this.agents }, this.verifyOptions);
    const entry: Entry = { checked, generation, ath: tokenHash(token) };
    this.remember(digest, entry);
    return entry;
  }

  private remember(digest: string, entry: Entry): void {
    if (this.options.cacheCapacity === 0) return;
    this.tokens.delete(digest);
    this.tokens.set(digest, entry);
    while (this.tokens.size > this.options.cacheCapacity) {
      const oldest = this.tokens.keys().next().value;
      if (oldest === undefined) break;
      this.tokens.delete(oldest);
    }
  }

  /** Whether the keys were last fetched longer than the maximum key age ago (or never). */
  private keysTooOld(now: number): boolean {
    return this.lastSuccess === undefined || now - this.lastSuccess > this.options.maxKeyAgeMs;
  }

  /**
   * Refreshes keys older than the TTL, or on an unknown key (or keys past the maximum age) at most
   * once per refetch interval; then refuses, on every call, keys older than the maximum age,
   * whether or not a fetch was due.
   */
  private async refreshIfDue(unknown: boolean): Promise<void> {
    if (this.fixed) return;
    const now = this.clock.monotonic();
    const age = this.lastFetch === undefined ? undefined : now - this.lastFetch;
    const due = age === undefined || age >= this.options.keyTtlMs
      || ((unknown || this.keysTooOld(now)) && age >= this.options.refetchIntervalMs);
    if (due) {
      this.fetching ??= this.refresh().finally(() => {
        this.fetching = undefined;
      });
      try {
        await this.fetching;
      } catch {
        // Count the attempt, so an unreachable mandate is not asked on every request.
        this.lastFetch = now;
      }
    }
    if (this.keysTooOld(this.clock.monotonic())) throw new UnknownKey();
  }
}
