/**
 * DPoP proofs (RFC 9449; `src/token/pop/proof.rs`): a compact JWS with header `typ: dpop+jwt`,
 * `alg` and the signer's public `jwk`, and claims `jti`, `htm`, `htu`, `iat`, `ath` (the SHA-256
 * of the token presented) and, when the server asked for one, `nonce`.
 *
 * `parseProof` bounds and reads a proof and checks its signature with its own key; `checkProof`
 * adds, in the Rust order, what the call must match: the holder's key, the method, the URL, an
 * `iat` window and the token's hash. Replays and nonces need state (`replay.ts`).
 */

import { createHash, randomUUID } from "node:crypto";

import { ProofRefused } from "../errors.js";
import { constantTimeEqual, decodeBase64Url, encodeBase64Url } from "../encoding.js";
import { ALGORITHMS, HolderKey, JwkError, type HolderSecret } from "./keys.js";

/** The largest proof parsed, in bytes. */
export const MAX_PROOF_BYTES = 4096;
/** The longest `jti`, `nonce` and `htu` accepted. */
const MAX_CLAIM = 2048;

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A proof whose signature verifies with the key in its header. */
export interface Proof {
  key: HolderKey;
  /** The RFC 7638 thumbprint of `key`. */
  jkt: string;
  jti: string;
  htm: string;
  htu: string;
  /** Whole seconds. */
  iat: number;
  ath: string | undefined;
  nonce: string | undefined;
}

/** What a call's proof must match. */
export interface Expected {
  method: string;
  /** The request's URL as the client addressed it. */
  url: string;
  /** The `ath` the proof must state (`tokenHash` of the token presented); absent at a token endpoint. */
  ath: string | undefined;
  /** The thumbprint of the key the token is bound to. */
  holder: string | undefined;
  /** The verifier's time, in seconds. */
  now: number;
  maxAgeSeconds: number;
  maxAheadSeconds: number;
}

const malformed = (reason: string) => new ProofRefused("malformed", `malformed proof: ${reason}`);

function part(text: string): unknown {
  let bytes: Buffer;
  try {
    bytes = decodeBase64Url(text);
  } catch {
    throw malformed("a part is not base64url");
  }
  try {
    return JSON.parse(utf8.decode(bytes));
  } catch {
    throw malformed("a part is not JSON");
  }
}

function member(value: unknown, name: string): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  return Object.hasOwn(value, name) ? (value as Record<string, unknown>)[name] : undefined;
}

function claim(claims: unknown, name: string): string | undefined {
  const value = member(claims, name);
  if (value === undefined) return undefined;
  if (typeof value === "string" && value.length > 0 && Buffer.byteLength(value) <= MAX_CLAIM) return value;
  throw malformed("jti, htm, htu, ath and nonce are strings of 1 to 2048 bytes");
}

/** Reads a JWK as a holder key, with its thumbprint (a cache may stand in for it). */
export type KeyReader = (jwk: unknown) => { key: HolderKey; jkt: string };

/** Reads a public JWK as `HolderKey.fromJwk` does, and computes its thumbprint. */
export function readKey(jwk: unknown): { key: HolderKey; jkt: string } {
  try {
    const key = HolderKey.fromJwk(jwk);
    return { key, jkt: key.thumbprint() };
  } catch (error) {
    if (error instanceof JwkError) throw malformed(error.message);
    throw error;
  }
}

/**
 * Reads `jwt`: at most 4096 bytes, header `typ` `dpop+jwt`, `alg` `EdDSA` or `ES256` matching a
 * public `jwk`, no `crit`, a signature that verifies with that key, claims `jti`, `htm`, `htu`, `iat`.
 */
export function parseProof(jwt: string, read: KeyReader = readKey): Proof {
  if (Buffer.byteLength(jwt) > MAX_PROOF_BYTES) throw malformed("longer than 4096 bytes");
  const parts = jwt.split(".");
  if (parts.length !== 3) throw malformed("a JWT has three parts");
  const [header, payload, signature] = parts as [string, string, string];
  const head = part(header);
  if (member(head, "typ") !== "dpop+jwt") throw malformed("typ must be dpop+jwt");
  if (member(head, "crit") !== undefined) throw malformed("no crit extensions are understood");
  const alg = member(head, "alg");
  if (typeof alg !== "string" || !(ALGORITHMS as readonly string[]).includes(alg)) {
    throw malformed("alg must be EdDSA or ES256");
  }
  const jwk = member(head, "jwk");
  if (jwk === undefined) throw malformed("the header carries no jwk");
  const { key, jkt } = read(jwk);
  if (key.algorithm !== alg) throw malformed("alg does not match the jwk");
  let signatureBytes: Buffer;
  try {
    signatureBytes = decodeBase64Url(signature);
  } catch {
    throw malformed("the signature is not base64url");
  }
  const signed = Buffer.from(`${header}.${payload}`);
  if (!key.verifies(signed, signatureBytes)) {
    throw new ProofRefused("signature", "the proof's signature does not verify");
  }
  const claims = part(payload);
  const iat = member(claims, "iat");
  if (typeof iat !== "number" || !Number.isFinite(iat) || Math.abs(iat) >= 1e12) {
    throw malformed("iat is a number of seconds");
  }
  const required = (name: string): string => {
    const value = claim(claims, name);
    if (value === undefined) throw malformed("jti, htm, htu and iat are required");
    return value;
  };
  return {
    key, jkt,
    jti: required("jti"),
    htm: required("htm"),
    htu: required("htu"),
    // Whole seconds; a fraction never moves a proof into the window.
    iat: Math.floor(iat),
    ath: claim(claims, "ath"),
    nonce: claim(claims, "nonce"),
  };
}

/**
 * `url` without query and fragment, scheme and host lowercased and a default port dropped
 * (RFC 3986 section 6). `undefined` unless it is an absolute `http` or `https` URL.
 */
export function normalizeUrl(url: string): string | undefined {
  const base = url.split(/[?#]/)[0] ?? "";
  const at = base.indexOf("://");
  if (at < 0) return undefined;
  const scheme = base.slice(0, at).toLowerCase();
  const rest = base.slice(at + 3);
  const defaultPort = scheme === "https" ? ":443" : scheme === "http" ? ":80" : undefined;
  if (defaultPort === undefined) return undefined;
  const slash = rest.indexOf("/");
  const authority = (slash < 0 ? rest : rest.slice(0, slash)).toLowerCase();
  const path = slash < 0 ? "/" : rest.slice(slash);
  if (authority.length === 0 || authority.includes("@")) return undefined;
  const host = authority.endsWith(defaultPort) ? authority.slice(0, -defaultPort.length) : authority;
  return `${scheme}://${host}${path}`;
}

/** The `ath` of a token: base64url of the SHA-256 of its text. */
export function tokenHash(token: string): string {
  return encodeBase64Url(createHash("sha256").update(token.trim()).digest());
}

/** Parses `jwt` and checks it against `expected`, in the Rust order. Nonces and replays are the caller's. */
export function checkProof(jwt: string, expected: Expected, read: KeyReader = readKey): Proof {
  const proof = parseProof(jwt, read);
  if (expected.holder !== undefined && !constantTimeEqual(proof.jkt, expected.holder)) {
    throw new ProofRefused("wrong_key", "the proof is signed by a key other than the mandate's holder");
  }
  if (proof.htm !== expected.method) throw new ProofRefused("method", "the proof is for another method");
  const claimed = normalizeUrl(proof.htu);
  const actual = normalizeUrl(expected.url);
  if (claimed === undefined || actual === undefined || claimed !== actual) {
    throw new ProofRefused("url", "the proof is for another URL");
  }
  if (proof.iat < expected.now - expected.maxAgeSeconds || proof.iat > expected.now + expected.maxAheadSeconds) {
    throw new ProofRefused("stale", "the proof's iat is outside the accepted window");
  }
  if (expected.ath !== undefined && !(proof.ath !== undefined && constantTimeEqual(proof.ath, expected.ath))) {
    throw new ProofRefused("token_hash", "the proof's ath is not the hash of the mandate presented");
  }
  return proof;
}

/** What a proof is for. */
export interface ProofRequest {
  method: string;
  /** The request's URL as the client addresses it (query and fragment are dropped). */
  url: string;
  /** The mandate presented with the proof (absent at a token endpoint). */
  token?: string;
  /** The server's last `DPoP-Nonce`, when it requires one. */
  nonce?: string;
  /** When the proof is made (default: now). */
  now?: Date;
}

/** A DPoP proof for one call, signed by `holder`. */
export function createProof(holder: HolderSecret, request: ProofRequest): string {
  const header = { typ: "dpop+jwt", alg: holder.algorithm, jwk: holder.publicKey.toJwk() };
  const claims: Record<string, unknown> = {
    jti: randomUUID(),
    htm: request.method,
    htu: request.url.split(/[?#]/)[0] ?? request.url,
    iat: Math.floor((request.now ?? new Date()).getTime() / 1000),
  };
  if (request.token !== undefined) claims.ath = tokenHash(request.token);
  if (request.nonce !== undefined) claims.nonce = request.nonce;
  const input = `${encodeBase64Url(JSON.stringify(header))}.${encodeBase64Url(JSON.stringify(claims))}`;
  return `${input}.${encodeBase64Url(holder.sign(Buffer.from(input)))}`;
}
