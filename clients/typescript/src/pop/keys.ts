/**
 * Holder keys (`src/token/pop/mod.rs`): Ed25519 (`EdDSA`) and P-256 (`ES256`) keys as JWKs,
 * their RFC 7638 thumbprints, JWS signatures, and the same key material as a biscuit-wasm
 * `PrivateKey` (to sign a rebinding block). A public JWK carrying `d` is refused, and so is an
 * Ed25519 point of small order (it verifies signatures nobody made).
 */

import {
  createECDH, createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject,
} from "node:crypto";

import { InvalidInput } from "../errors.js";
import { EncodingError, decodeBase64Url, encodeBase64Url } from "../encoding.js";
import type { PublicKeyProto } from "../wire/schema.js";

/** The JWS algorithms a proof may be signed with. */
export const ALGORITHMS = ["EdDSA", "ES256"] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

/** A JWK as JSON. */
export type Jwk = Record<string, unknown>;

/** Why a JWK is not a holder key. */
export class JwkError extends Error {
  constructor(reason: string) {
    super(`not a holder key: ${reason}`);
    this.name = "JwkError";
  }
}

/** Whether `text` has the form of a thumbprint: 43 base64url characters (a SHA-256). */
export function isThumbprint(text: string): boolean {
  return text.length === 43 && /^[A-Za-z0-9_-]+$/.test(text);
}

function coordinate(jwk: Jwk, name: string): Buffer {
  const text = jwk[name];
  if (typeof text !== "string") throw new JwkError("a coordinate is missing");
  let bytes: Buffer;
  try {
    bytes = decodeBase64Url(text);
  } catch (error) {
    if (error instanceof EncodingError) throw new JwkError("a coordinate is not base64url");
    throw error;
  }
  if (bytes.length !== 32) throw new JwkError("a coordinate is not 32 bytes");
  return bytes;
}

// Ed25519 point arithmetic, just enough to tell whether 32 bytes decompress to a point and
// whether that point has small order (as ed25519-dalek's `from_bytes` and `is_weak`).
const P = 2n ** 255n - 19n;
const D = (-121665n * inverse(121666n)) % P + P;

function power(base: bigint, exponent: bigint): bigint {
  let result = 1n;
  let b = ((base % P) + P) % P;
  let e = exponent;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
    e >>= 1n;
  }
  return result;
}

function inverse(value: bigint): bigint {
  return power(value, P - 2n);
}

/** Whether the encoding names a point of the curve (its y has a matching x). */
function decompresses(bytes: Uint8Array): boolean {
  const copy = Buffer.from(bytes);
  copy[31] = (copy[31] ?? 0) & 0x7f;
  const y = BigInt(`0x${Buffer.from(copy).reverse().toString("hex")}`) % P;
  const u = (y * y - 1n + P) % P;
  const v = (D * y * y + 1n) % P;
  const x2 = (u * inverse(v)) % P;
  if (x2 === 0n) return true;
  // Euler's criterion: x2 is a square mod P.
  return power(x2, (P - 1n) / 2n) === 1n;
}

/** Encodings (sign bit ignored) of the points of order 1, 2, 4 and 8, canonical or not. */
const SMALL_ORDER = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];

function smallOrder(bytes: Uint8Array): boolean {
  const copy = Buffer.from(bytes);
  copy[31] = (copy[31] ?? 0) & 0x7f;
  return SMALL_ORDER.includes(copy.toString("hex"));
}

/** The order of the Ed25519 base point. */
const L = 2n ** 252n + 27742317777372353535851937790883648493n;

/** Whether an Ed25519 signature's R is not of small order and its S is reduced (`verify_strict`). */
function strictlyShaped(signature: Uint8Array): boolean {
  const r = signature.subarray(0, 32);
  const s = BigInt(`0x${Buffer.from(signature.subarray(32, 64)).reverse().toString("hex")}`);
  return !smallOrder(r) && s < L;
}

/** A holder's public key. */
export class HolderKey {
  private constructor(
    readonly algorithm: Algorithm,
    private readonly key: KeyObject,
    private readonly members: { crv: string; kty: string; x: string; y?: string },
  ) {}

  /** Reads a public JWK; one carrying a private key (`d`) is refused. */
  static fromJwk(jwk: unknown): HolderKey {
    if (typeof jwk !== "object" || jwk === null || Array.isArray(jwk)) throw new JwkError("a JWK is a JSON object");
    if (Object.hasOwn(jwk, "d")) throw new JwkError("it carries a private key (`d`); send the public key only");
    return HolderKey.publicOf(jwk as Jwk);
  }

  /** The public members of a JWK (private or public) as a holder key. */
  static publicOf(jwk: Jwk): HolderKey {
    if (jwk.kty === "OKP" && jwk.crv === "Ed25519") return HolderKey.ed25519(coordinate(jwk, "x"));
    if (jwk.kty === "EC" && jwk.crv === "P-256") {
      const x = encodeBase64Url(coordinate(jwk, "x"));
      const y = encodeBase64Url(coordinate(jwk, "y"));
      let key: KeyObject;
      try {
        key = createPublicKey({ key: { kty: "EC", crv: "P-256", x, y }, format: "jwk" });
      } catch {
        throw new JwkError("not a point of P-256");
      }
      return new HolderKey("ES256", key, { crv: "P-256", kty: "EC", x, y });
    }
    throw new JwkError("only Ed25519 (kty OKP) and P-256 (kty EC) keys are accepted");
  }

  private static ed25519(bytes: Uint8Array, refuseWeak = true): HolderKey {
    if (!decompresses(bytes)) throw new JwkError("not an Ed25519 public key");
    if (refuseWeak && smallOrder(bytes)) throw new JwkError("a weak Ed25519 key (a point of small order)");
    const x = encodeBase64Url(bytes);
    let key: KeyObject;
    try {
      key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x }, format: "jwk" });
    } catch {
      throw new JwkError("not an Ed25519 public key");
    }
    return new HolderKey("EdDSA", key, { crv: "Ed25519", kty: "OKP", x });
  }

  /** The key that signed a third-party block (from the token's protobuf), if it is one. */
  static fromBiscuit(key: PublicKeyProto): HolderKey | undefined {
    try {
      if (key.algorithm === 0) return key.key.length === 32 ? HolderKey.ed25519(key.key, false) : undefined;
      if (key.algorithm === 1) {
        const header = key.key.length === 33
          ? "3039301306072a8648ce3d020106082a8648ce3d030107032200"
          : "3059301306072a8648ce3d020106082a8648ce3d030107034200";
        const der = Buffer.concat([Buffer.from(header, "hex"), key.key]);
        const jwk = createPublicKey({ key: der, format: "der", type: "spki" }).export({ format: "jwk" });
        return HolderKey.publicOf(jwk as Jwk);
      }
    } catch {
      return undefined;
    }
    return undefined;
  }

  /** The public JWK, with only the members RFC 7638 hashes. */
  toJwk(): Jwk {
    return { ...this.members };
  }

  /** The RFC 7638 thumbprint: base64url SHA-256 of the required members, sorted, no whitespace. */
  thumbprint(): string {
    const { crv, kty, x, y } = this.members;
    const canonical = y === undefined ? JSON.stringify({ crv, kty, x }) : JSON.stringify({ crv, kty, x, y });
    return encodeBase64Url(createHash("sha256").update(canonical).digest());
  }

  /**
   * Whether `signature` (JWS form, 64 bytes) signs `message`. An Ed25519 signature is checked as
   * ed25519-dalek's `verify_strict` (mandate's): one whose R is a point of small order, or whose
   * S is not reduced (S >= L), is refused before Node's cofactorless check, which accepts a
   * small-order R.
   */
  verifies(message: Uint8Array, signature: Uint8Array): boolean {
    if (signature.length !== 64) return false;
    try {
      if (this.algorithm === "EdDSA") return strictlyShaped(signature) && verify(null, message, this.key, signature);
      return verify("sha256", message, { key: this.key, dsaEncoding: "ieee-p1363" }, signature);
    } catch {
      return false;
    }
  }
}

/** A holder's key pair: signs proofs, and rebinds the mandate it holds to another key. */
export class HolderSecret {
  private constructor(private readonly secret: KeyObject, readonly publicKey: HolderKey, private readonly d: Buffer) {}

  /** A new key of `algorithm` (`EdDSA` or `ES256`). */
  static generate(algorithm: Algorithm = "EdDSA"): HolderSecret {
    const { privateKey } = algorithm === "EdDSA"
      ? generateKeyPairSync("ed25519")
      : algorithm === "ES256"
        ? generateKeyPairSync("ec", { namedCurve: "P-256" })
        : (() => { throw new InvalidInput("algorithm", "the algorithm is EdDSA or ES256"); })();
    return HolderSecret.fromJwk(privateKey.export({ format: "jwk" }));
  }

  /** Reads a private JWK: `d` beside the public members, which must agree with it. */
  static fromJwk(jwk: unknown): HolderSecret {
    if (typeof jwk !== "object" || jwk === null || Array.isArray(jwk)) throw new JwkError("a JWK is a JSON object");
    const members = jwk as Jwk;
    const publicKey = HolderKey.publicOf(members);
    let d: Buffer;
    try {
      d = coordinate(members, "d");
    } catch {
      throw new JwkError("a private JWK has a 32-byte `d`");
    }
    // The public key derived from `d` alone must be the one the JWK names.
    let secret: KeyObject;
    let derived: HolderKey;
    try {
      if (publicKey.algorithm === "EdDSA") {
        const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), d]);
        secret = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
        derived = HolderKey.publicOf(createPublicKey(secret).export({ format: "jwk" }) as Jwk);
      } else {
        const ecdh = createECDH("prime256v1");
        ecdh.setPrivateKey(d);
        const point = ecdh.getPublicKey();
        const jwk = { kty: "EC", crv: "P-256", x: encodeBase64Url(point.subarray(1, 33)), y: encodeBase64Url(point.subarray(33, 65)) };
        derived = HolderKey.publicOf(jwk);
        secret = createPrivateKey({ key: { ...jwk, d: encodeBase64Url(d) }, format: "jwk" });
      }
    } catch {
      throw new JwkError("`d` is not a private key of this curve");
    }
    if (derived.thumbprint() !== publicKey.thumbprint()) throw new JwkError("`d` is not the private key of `x` (and `y`)");
    return new HolderSecret(secret, publicKey, d);
  }

  /** The private JWK: keep it where only the holder reads it. */
  toJwk(): Jwk {
    return { ...this.publicKey.toJwk(), d: encodeBase64Url(this.d) };
  }

  /** The JWS algorithm this key signs with. */
  get algorithm(): Algorithm {
    return this.publicKey.algorithm;
  }

  /** The RFC 7638 thumbprint of the public key. */
  thumbprint(): string {
    return this.publicKey.thumbprint();
  }

  /** A JWS signature (64 bytes) of `message`. */
  sign(message: Uint8Array): Buffer {
    if (this.algorithm === "EdDSA") return sign(null, message, this.secret);
    return sign("sha256", message, { key: this.secret, dsaEncoding: "ieee-p1363" });
  }

  /** The raw private scalar (32 bytes), for a biscuit-wasm `PrivateKey`. */
  privateBytes(): Uint8Array {
    return Uint8Array.from(this.d);
  }

  /** Never print key material. */
  toString(): string {
    return `HolderSecret(${this.thumbprint()})`;
  }

  toJSON(): string {
    return this.toString();
  }
}
