/**
 * What checking proofs needs beyond the proof itself (`src/token/pop/replay.rs`): the proofs
 * already seen, in a bounded replay cache, and server nonces (`DPoP-Nonce`).
 *
 * A proof (its key's thumbprint and `jti`) is remembered until its `iat` leaves the window; a
 * full cache refuses new proofs (`busy`) and never forgets a live one. A nonce is
 * `period || HMAC-SHA256(key, period)[..16]`, base64url: replicas given the same key accept each
 * other's nonces, each in its period and the next.
 */

import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";

import { ProofRefused } from "../errors.js";
import { decodeBase64Url, encodeBase64Url } from "../encoding.js";
import { checkProof, readKey, type Expected, type Proof } from "./proof.js";
import type { HolderKey } from "./keys.js";

/** Most holder keys kept decoded. */
const KEY_CACHE = 4096;

/** How proofs are checked. */
export interface ProofSettings {
  /** How old a proof may be, in seconds (default 60). */
  maxAgeSeconds: number;
  /** How far ahead of this clock a proof may be dated, in seconds (default 30). */
  maxAheadSeconds: number;
  /** Whether every proof must carry a nonce this verifier issued (default false). */
  requireNonce: boolean;
  /** How long a nonce period lasts, in seconds (default 300). */
  noncePeriodSeconds: number;
  /** Most proofs remembered at once (default 100,000). */
  replayCapacity: number;
  /** The 32-byte nonce key shared by replicas (default: random per process). */
  nonceKey?: Uint8Array;
}

/** The defaults of the Rust verifier. */
export const DEFAULT_PROOF_SETTINGS: ProofSettings = {
  maxAgeSeconds: 60,
  maxAheadSeconds: 30,
  requireNonce: false,
  noncePeriodSeconds: 300,
  replayCapacity: 100_000,
};

/** Checks proofs and remembers them. */
export class Proofs {
  readonly settings: ProofSettings;
  private readonly nonceKey: Uint8Array;
  /** Each remembered proof's deadline, by id. */
  private readonly until = new Map<string, number>();
  /** Ids in the order they came, with their deadlines. */
  private order: Array<[string, number]> = [];
  private head = 0;
  private sweptAt = Number.NEGATIVE_INFINITY;
  private readonly keys = new Map<string, { key: HolderKey; jkt: string }>();

  constructor(settings: Partial<ProofSettings> = {}) {
    this.settings = { ...DEFAULT_PROOF_SETTINGS, ...settings };
    this.nonceKey = settings.nonceKey ?? randomBytes(32);
  }

  private period(now: number): bigint {
    return BigInt(Math.floor(now / Math.max(1, this.settings.noncePeriodSeconds)));
  }

  private mac(period: bigint): Buffer {
    const bytes = Buffer.alloc(8);
    bytes.writeBigInt64BE(period);
    return createHmac("sha256", this.nonceKey).update(bytes).digest().subarray(0, 16);
  }

  /** A nonce for clients to put in their next proofs (`now` in seconds). */
  nonce(now: number): string {
    const period = this.period(now);
    const bytes = Buffer.alloc(8);
    bytes.writeBigInt64BE(period);
    return encodeBase64Url(Buffer.concat([bytes, this.mac(period)]));
  }

  /** Whether `nonce` was issued by this checker (or one sharing its key) in this period or the last. */
  nonceCurrent(nonce: string, now: number): boolean {
    let bytes: Buffer;
    try {
      bytes = decodeBase64Url(nonce);
    } catch {
      return false;
    }
    if (bytes.length < 8) return false;
    const period = bytes.readBigInt64BE(0);
    const current = this.period(now);
    const mac = this.mac(period);
    const given = bytes.subarray(8);
    return (period === current || period === current - 1n) && given.length === mac.length && timingSafeEqual(given, mac);
  }

  /**
   * Checks `proof` against `expected` (its window replaced by the settings'), then its nonce when
   * one is required, then that it was not seen before; a proof that passes is remembered.
   */
  check(proof: string, expected: Expected): Proof {
    const bounded = { ...expected, maxAgeSeconds: this.settings.maxAgeSeconds, maxAheadSeconds: this.settings.maxAheadSeconds };
    const checked = checkProof(proof, bounded, (jwk) => this.key(jwk));
    if (this.settings.requireNonce && !(checked.nonce !== undefined && this.nonceCurrent(checked.nonce, expected.now))) {
      throw new ProofRefused("nonce", "the proof must carry the nonce the server provides (DPoP-Nonce)");
    }
    this.remember(checked, checked.iat + this.settings.maxAgeSeconds + 1, expected.now);
    return checked;
  }

  /** How many proofs are remembered. */
  get remembered(): number {
    return this.until.size;
  }

  /** A JWK as a holder key, decoded once while among the last few thousand keys. */
  private key(jwk: unknown): { key: HolderKey; jkt: string } {
    const m = (name: string) => {
      const v = typeof jwk === "object" && jwk !== null ? (jwk as Record<string, unknown>)[name] : undefined;
      return typeof v === "string" ? v : undefined;
    };
    const isPrivate = typeof jwk === "object" && jwk !== null && Object.hasOwn(jwk, "d");
    const [kty, crv, x, y] = [m("kty"), m("crv"), m("x"), m("y")];
    if (isPrivate || kty === undefined || crv === undefined || x === undefined) return readKey(jwk);
    const id = `${kty} ${crv} ${x} ${y ?? ""}`;
    const known = this.keys.get(id);
    if (known !== undefined) return known;
    const read = readKey(jwk);
    if (this.keys.size >= KEY_CACHE) this.keys.clear();
    this.keys.set(id, read);
    return read;
  }

  private remember(proof: Proof, until: number, now: number): void {
    const id = createHash("sha256").update(proof.jkt).update(Buffer.from([0])).update(proof.jti).digest("hex");
    // Entries leave in the order they came; scan forward while the front is dead.
    while (this.head < this.order.length) {
      const [front, deadline] = this.order[this.head] as [string, number];
      if (deadline > now) break;
      this.head++;
      if (this.until.get(front) === deadline) this.until.delete(front);
    }
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
    const seen = this.until.get(id);
    if (seen !== undefined && seen > now) throw new ProofRefused("replayed", "the proof was already used");
    if (this.until.size >= this.settings.replayCapacity && this.sweptAt < now) {
      // Dead entries may sit behind a live one: sweep them all, at most once a second.
      this.sweptAt = now;
      for (const [key, deadline] of this.until) if (deadline <= now) this.until.delete(key);
      this.order = this.order.slice(this.head).filter(([key, deadline]) => this.until.get(key) === deadline);
      this.head = 0;
    }
    if (this.until.size >= this.settings.replayCapacity) {
      throw new ProofRefused("busy", "too many proofs in flight; retry shortly");
    }
    this.until.set(id, until);
    this.order.push([id, until]);
  }
}
