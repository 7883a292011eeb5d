/**
 * Holder operations against the real service and the Rust CLI: a token narrowed, attested and
 * rebound here is read and verified by `mandate token inspect` / `token verify` and by this
 * package's verifier; bad input is refused naming the field, and nothing is appended.
 */

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import * as wasm from "@biscuit-auth/biscuit-wasm";

import { HolderSecret, InvalidInput, Verifier, attenuate, attest, rebind, createProof } from "../src/index.js";
import { Service } from "./support.js";

describe("holder operations", () => {
  let service: Service;
  let documents: { keys: unknown; agentKeys: unknown };
  before(async () => {
    service = await Service.start();
    documents = await service.documents();
  });
  after(async () => service?.stop());

  const saveDocuments = () => {
    writeFileSync(join(service.dir, "keys.json"), JSON.stringify(documents.keys));
    writeFileSync(join(service.dir, "agent-keys.json"), JSON.stringify(documents.agentKeys));
  };

  it("narrows a mandate in shapes the Rust verifier reads the same way", async () => {
    const { token } = await service.mint([{ tool: "crm", operations: ["read", "write"] }]);
    const expiresAt = new Date(Date.now() + 120_000);
    const narrowed = attenuate(token, {
      rights: [{ tool: "crm", operation: "read" }, { tool: "crm", operation: "write" }],
      resources: ["acme/api"],
      expiresAt,
      delegate: "helper",
      constraints: [
        { tool: "crm", operation: "write", argument: "path", constraint: { glob: "docs/*.md" } },
        { tool: "crm", operation: "write", argument: "n", constraint: { range: { min: 1, max: 5 } } },
        { tool: "crm", operation: "write", argument: "labels", constraint: { one_of: ["bug", "triage"] } },
      ],
    }, documents.keys);
    assert.notEqual(narrowed, token);

    const inspected = JSON.parse(service.cli(["token", "inspect"], narrowed)) as Record<string, unknown>;
    assert.match(JSON.stringify(inspected), /"helper"/);
    saveDocuments();
    const rust = JSON.parse(service.cli(["token", "verify", "--keys", "keys.json", "--agent-keys", "agent-keys.json",
      "--tool", "crm", "--operation", "read", "--resource", "acme/api"], narrowed)) as Record<string, unknown>;
    assert.deepEqual(rust.hops, [{ agent: "helper", attested: false }]);
    assert.equal(rust.expires_at, expiresAt.toISOString().replace(/\.\d{3}Z$/, "Z"));
    assert.throws(() => service.cli(["token", "verify", "--keys", "keys.json", "--tool", "crm", "--operation", "read",
      "--resource", "acme/billing"], narrowed), "the Rust verifier refuses another resource");

    const verifier = new Verifier({ baseUrl: service.baseUrl });
    const read = await verifier.verify(narrowed, { tool: "crm", operation: "read", resource: "acme/api" });
    assert.deepEqual(read.hops, [{ agent: "helper", attested: false }]);
    assert.equal(read.constraints.length, 4, "a range with both bounds is two facts");
    const good = { path: "docs/a.md", n: 3, labels: ["bug"] };
    assert.equal((await verifier.verify(narrowed, { tool: "crm", operation: "write", resource: "acme/api", arguments: good })).right.operation, "write");
    await assert.rejects(verifier.verify(narrowed, { tool: "crm", operation: "write", resource: "acme/api", arguments: { ...good, n: 9 } }),
      { code: "argument_not_allowed", argument: "n" });
    await assert.rejects(verifier.verify(narrowed, { tool: "crm", operation: "write", resource: "acme/api", arguments: { ...good, path: "src/a.rs" } }),
      { code: "argument_not_allowed", argument: "path" });
  });

  it("refuses bad input naming the field, appending nothing", async () => {
    const { token } = await service.mint([{ tool: "crm", operations: ["read"] }]);
    const cases: Array<[Parameters<typeof attenuate>[1], string]> = [
      [{}, "attenuation"],
      [{ delegate: 'he"lper' }, "delegate"],
      [{ rights: [{ tool: "crm", operation: "" }] }, "rights[0].operation"],
      [{ resources: Array.from({ length: 65 }, (_, i) => `r${i}`) }, "resources"],
      [{ expiresAt: new Date(Number.NaN) }, "expiresAt"],
      [{ constraints: [{ tool: "crm", operation: "read", argument: "a b", constraint: { prefix: "x" } }] }, "constraints[0].argument"],
      [{ constraints: [{ tool: "crm", operation: "read", argument: "p", constraint: { glob: "[a]" } }] }, "constraints[0].constraint"],
      [{ constraints: [{ tool: "crm", operation: "read", argument: "p", constraint: { range: { min: 5, max: 1 } } }] }, "constraints[0].constraint"],
    ];
    for (const [attenuation, field] of cases) {
      assert.throws(() => attenuate(token, attenuation, documents.keys), (e: unknown) => e instanceof InvalidInput && e.field === field, field);
    }
    assert.throws(() => attenuate(token.slice(0, -8), { delegate: "x" }, documents.keys), { field: "token" });
    assert.throws(() => rebind(token, HolderSecret.generate(), "short", documents.keys), { field: "nextJkt" });
    assert.throws(() => attest(token, "dev-orchestrator", "not a key", documents.keys), { field: "agentKey" });
  });

  it("attests a hop with the agent's registered key", async () => {
    const pair = new wasm.KeyPair(wasm.SignatureAlgorithm.Ed25519);
    const admin = service.cli(["admin-token", "create", "--name", "tests", "--role", "admin"]).trim();
    const registered = await fetch(`${service.baseUrl}/v1/admin/agents/dev-orchestrator/keys`, {
      method: "POST",
      headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
      body: JSON.stringify({ public_key: pair.getPublicKey().toString() }),
    });
    assert.equal(registered.status, 201);
    documents = await service.documents();
    const { token } = await service.mint([{ tool: "crm", operations: ["read"] }]);
    const delegated = attenuate(token, { delegate: "dev-orchestrator" }, documents.keys);
    const attested = attest(delegated, "dev-orchestrator", pair.getPrivateKey().toString(), documents.keys);
    saveDocuments();
    const rust = JSON.parse(service.cli(["token", "verify", "--keys", "keys.json", "--agent-keys", "agent-keys.json",
      "--tool", "crm", "--operation", "read"], attested)) as { hops: unknown };
    assert.deepEqual(rust.hops, [{ agent: "dev-orchestrator", attested: true }]);
    const verifier = Verifier.fromDocuments(documents.keys, documents.agentKeys);
    assert.deepEqual((await verifier.verify(attested, { tool: "crm", operation: "read" })).hops, [{ agent: "dev-orchestrator", attested: true }]);
    // Signed by a key not registered for the agent: forged.
    const stranger = new wasm.KeyPair(wasm.SignatureAlgorithm.Ed25519);
    const forged = attest(delegated, "dev-orchestrator", stranger.getPrivateKey().toString(), documents.keys);
    await assert.rejects(verifier.verify(forged, { tool: "crm", operation: "read" }), { code: "forged_attestation" });
  });

  for (const algorithm of ["EdDSA", "ES256"] as const) {
    it(`moves a bound mandate to the next holder's key (${algorithm})`, async () => {
      const holder = HolderSecret.generate(algorithm);
      const next = HolderSecret.generate("ES256");
      const { token } = await service.mint([{ tool: "crm", operations: ["read"] }], { holder_key: holder.publicKey.toJwk() });
      const moved = rebind(token, holder, next.thumbprint(), documents.keys);
      const url = "https://crm.example.com/v1/tickets";
      const verifier = Verifier.fromDocuments(documents.keys, documents.agentKeys);
      const proof = createProof(next, { method: "POST", url, token: moved });
      const verified = await verifier.verify(moved, { tool: "crm", operation: "read", proof, method: "POST", url });
      assert.equal(verified.holder_key, next.thumbprint());
      const old = createProof(holder, { method: "POST", url, token: moved });
      await assert.rejects(verifier.verify(moved, { tool: "crm", operation: "read", proof: old, method: "POST", url }), { code: "invalid_dpop_proof" });
      // Moved by a key that does not hold it: forged.
      const forged = rebind(token, next, holder.thumbprint(), documents.keys);
      await assert.rejects(verifier.verify(forged, { tool: "crm", operation: "read", proof: createProof(holder, { method: "POST", url, token: forged }), method: "POST", url }),
        { code: "forged_binding" });
      // The Rust verifier agrees, given the next holder's proof.
      saveDocuments();
      writeFileSync(join(service.dir, "proof.txt"), createProof(next, { method: "POST", url, token: moved }));
      const rust = JSON.parse(service.cli(["token", "verify", "--keys", "keys.json", "--tool", "crm", "--operation", "read",
        "--proof", "proof.txt", "--method", "POST", "--url", url], moved)) as { holder_key?: string };
      assert.equal(rust.holder_key, next.thumbprint());
    });
  }
});
