/**
 * Proof of possession: holder keys as JWKs and their thumbprints, proofs checked in the Rust
 * order, and the bounded replay cache.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { HolderKey, HolderSecret, JwkError, Proofs, checkProof, createProof, normalizeUrl, parseJson, tokenHash } from "../src/index.js";
import { repoPath } from "./support.js";

const vectors = parseJson(readFileSync(repoPath("tests/vectors/mandate-v1.json"), "utf8")) as {
  holders: Record<string, unknown>;
  cases: Array<{ name: string; calls: Array<{ expect: { verified: { holder_key?: string } | null } }> }>;
};
const url = "https://crm.example.com/v1/tickets";

/** The order of the Ed25519 base point. */
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const littleEndian = (bytes: Uint8Array): bigint => BigInt(`0x${Buffer.from(bytes).reverse().toString("hex") || "0"}`);
const bytes32 = (value: bigint): Buffer => Buffer.from(value.toString(16).padStart(64, "0"), "hex").reverse();

/**
 * An Ed25519 signature of `message` by `secret` whose R is the identity (a point of small
 * order): S = k·a, so [S]B = R + [k]A holds and a cofactorless check accepts it; ed25519-dalek's
 * `verify_strict` does not.
 */
function smallOrderSignature(secret: HolderSecret, message: Uint8Array): Buffer {
  const digest = createHash("sha512").update(secret.privateBytes()).digest();
  const clamped = Buffer.from(digest.subarray(0, 32));
  clamped[0] = (clamped[0] as number) & 248;
  clamped[31] = ((clamped[31] as number) & 127) | 64;
  const a = littleEndian(clamped);
  const publicKey = Buffer.from(String(secret.publicKey.toJwk().x), "base64url");
  const r = Buffer.alloc(32);
  r[0] = 1;
  const k = littleEndian(createHash("sha512").update(Buffer.concat([r, publicKey, message])).digest()) % L;
  return Buffer.concat([r, bytes32((k * a) % L)]);
}
const NOW = 1_800_000_000;

describe("holder keys", () => {
  it("compute the thumbprints the vectors bind mandates to", () => {
    const bound = vectors.cases.find((c) => c.name === "bound")?.calls[0]?.expect.verified?.holder_key;
    const p256 = vectors.cases.find((c) => c.name === "bound_p256")?.calls[0]?.expect.verified?.holder_key;
    const thumbprints = Object.values(vectors.holders).map((jwk) => HolderSecret.fromJwk(jwk).thumbprint());
    assert.ok(bound !== undefined && thumbprints.includes(bound));
    assert.ok(p256 !== undefined && thumbprints.includes(p256));
  });

  it("round-trip a private JWK and refuse one whose d is another key's", () => {
    for (const alg of ["EdDSA", "ES256"] as const) {
      const secret = HolderSecret.generate(alg);
      assert.equal(HolderSecret.fromJwk(secret.toJwk()).thumbprint(), secret.thumbprint());
      const other = HolderSecret.generate(alg).toJwk();
      assert.throws(() => HolderSecret.fromJwk({ ...secret.toJwk(), d: other.d }), JwkError);
      assert.doesNotMatch(String(secret), new RegExp(String(secret.toJwk().d)), "no key material when printed");
    }
  });

  it("refuse private members, weak Ed25519 points and points off P-256", () => {
    const secret = HolderSecret.generate("EdDSA");
    assert.throws(() => HolderKey.fromJwk(secret.toJwk()), /private key/);
    const identity = Buffer.alloc(32);
    identity[0] = 1;
    assert.throws(() => HolderKey.fromJwk({ kty: "OKP", crv: "Ed25519", x: identity.toString("base64url") }), /weak/);
    const p256 = HolderSecret.generate("ES256").publicKey.toJwk();
    assert.throws(() => HolderKey.fromJwk({ ...p256, y: p256.x }), /P-256/);
    assert.throws(() => HolderKey.fromJwk({ kty: "RSA", n: "x", e: "AQAB" }), /only Ed25519/);
  });
});

describe("Ed25519 signatures", () => {
  it("are checked strictly: no small-order R, no unreduced S", () => {
    const secret = HolderSecret.generate("EdDSA");
    const message = Buffer.from("a message");
    const good = secret.sign(message);
    assert.ok(secret.publicKey.verifies(message, good));
    assert.equal(secret.publicKey.verifies(message, smallOrderSignature(secret, message)), false, "small-order R");
    const unreduced = Buffer.concat([good.subarray(0, 32), bytes32(littleEndian(good.subarray(32)) + L)]);
    assert.equal(secret.publicKey.verifies(message, unreduced), false, "S + L");

    // A proof signed so is refused as an unverified signature.
    const header = Buffer.from(JSON.stringify({ typ: "dpop+jwt", alg: "EdDSA", jwk: secret.publicKey.toJwk() })).toString("base64url");
    const claims = Buffer.from(JSON.stringify({ jti: "j", htm: "POST", htu: url, iat: NOW })).toString("base64url");
    const input = `${header}.${claims}`;
    const jwt = `${input}.${smallOrderSignature(secret, Buffer.from(input)).toString("base64url")}`;
    const expected = { method: "POST", url, ath: undefined, holder: undefined, now: NOW, maxAgeSeconds: 60, maxAheadSeconds: 30 };
    assert.throws(() => checkProof(jwt, expected), { problem: "signature" });
    assert.equal(checkProof(`${input}.${secret.sign(Buffer.from(input)).toString("base64url")}`, expected).jti, "j");
  });
});

describe("proofs", () => {
  const holder = HolderSecret.generate("EdDSA");
  const token = "mandate-token";
  const expected = { method: "POST", url, ath: tokenHash(token), holder: holder.thumbprint(), now: NOW, maxAgeSeconds: 60, maxAheadSeconds: 30 };
  const proof = (over: Partial<Parameters<typeof createProof>[1]> = {}) =>
    createProof(holder, { method: "POST", url, token, now: new Date(NOW * 1000), ...over });

  it("are checked in order: key, method, URL, window, token hash", () => {
    assert.equal(checkProof(proof(), expected).jkt, holder.thumbprint());
    const problem = (jwt: string, exp = expected) => {
      try {
        checkProof(jwt, exp);
        return "accepted";
      } catch (error) {
        return (error as { problem: string }).problem;
      }
    };
    assert.equal(problem(createProof(HolderSecret.generate(), { method: "GET", url, token })), "wrong_key");
    assert.equal(problem(proof({ method: "GET" })), "method");
    assert.equal(problem(proof({ url: "https://other.example.com/v1/tickets" })), "url");
    assert.equal(problem(proof({ url: "HTTPS://CRM.example.com:443/v1/tickets?x=1" })), "accepted");
    assert.equal(problem(proof({ now: new Date((NOW - 61) * 1000) })), "stale");
    assert.equal(problem(proof({ now: new Date((NOW + 31) * 1000) })), "stale");
    assert.equal(problem(proof({ token: "another" })), "token_hash");
    const [h, p, s] = proof().split(".") as [string, string, string];
    assert.equal(problem(`${h}.${p}.${s.slice(0, -4)}AAAA`), "signature");
    assert.equal(problem("x".repeat(4097)), "malformed");
    assert.equal(normalizeUrl("ftp://x/"), undefined);
  });

  it("are remembered until they leave the window, and a full cache refuses rather than forgets", () => {
    const proofs = new Proofs({ replayCapacity: 2 });
    const [a, b, c] = [proof(), proof(), proof()] as [string, string, string];
    proofs.check(a, expected);
    proofs.check(b, expected);
    assert.throws(() => proofs.check(c, expected), { problem: "busy" });
    assert.throws(() => proofs.check(a, expected), { problem: "replayed" });
    const later = { ...expected, now: NOW + 61 };
    const fresh = proof({ now: new Date((NOW + 61) * 1000) });
    proofs.check(fresh, later);
    assert.equal(proofs.remembered, 1, "the proofs out of the window were dropped");
  });

  it("carry the server's nonce when one is required", () => {
    const proofs = new Proofs({ requireNonce: true });
    assert.throws(() => proofs.check(proof(), expected), { code: "use_dpop_nonce" });
    const nonce = proofs.nonce(NOW);
    assert.equal(proofs.check(proof({ nonce }), expected).nonce, nonce);
    assert.throws(() => proofs.check(proof({ nonce: new Proofs().nonce(NOW) }), expected), { code: "use_dpop_nonce" });
  });
});
