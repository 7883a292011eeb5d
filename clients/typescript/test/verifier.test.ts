/**
 * The verifier's key cache (with a controllable clock and a key server that goes down), the
 * key documents it accepts, the authorizer's single run, and the holder's block bound.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { after, before, describe, it } from "node:test";

import { InvalidInput, KeyDocumentError, VerificationError, Verifier, agentKeys, attenuate, keySet, parseJson } from "../src/index.js";
import { wasm } from "../src/token/biscuit.js";
import { read } from "../src/token/vocabulary.js";
import { freePort, repoPath } from "./support.js";

interface Vectors {
  keys: { keys: Array<Record<string, unknown>> };
  agent_keys: unknown;
  cases: Array<{ name: string; token: string; calls: Array<{ now: string; tool: string; operation: string; resource: string | null }> }>;
}

const vectors = parseJson(readFileSync(repoPath("tests/vectors/mandate-v1.json"), "utf8")) as Vectors;
const vector = (name: string) => {
  const found = vectors.cases.find((c) => c.name === name);
  assert.ok(found !== undefined, `vector ${name}`);
  return found;
};

describe("key cache", () => {
  let server: Server;
  let baseUrl: string;
  let down = false;
  let fetches = 0;
  before(async () => {
    server = createServer((req, res) => {
      fetches++;
      if (down) {
        res.writeHead(503).end();
        return;
      }
      const body = req.url === "/.well-known/mandate-keys" ? vectors.keys : vectors.agent_keys;
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
    });
    const port = await freePort();
    await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
    baseUrl = `http://127.0.0.1:${port}`;
  });
  after(async () => new Promise((r) => server?.close(r)));

  it("fails closed on every call once the keys are older than the maximum age, until a fetch succeeds", async () => {
    const { token, calls } = vector("valid");
    const call = calls[0];
    assert.ok(call !== undefined);
    let monotonic = 0;
    const verifier = new Verifier({ baseUrl, clock: { now: () => Date.parse(call.now), monotonic: () => monotonic } });
    const request = { tool: call.tool, operation: call.operation };
    down = false;
    fetches = 0;
    assert.ok(await verifier.verify(token, request));
    assert.equal(fetches, 2, "both documents fetched");

    down = true;
    monotonic = 3_600_000;
    assert.ok(await verifier.verify(token, request), "an hour old: a failed refresh keeps the keys");
    const attempts = fetches;
    monotonic = 3_600_001;
    await assert.rejects(verifier.verify(token, request), { code: "unknown_key" }, "past the maximum age");
    // The failed attempt counts as a fetch: no refresh is due by the TTL, yet the keys stay too old.
    monotonic = 3_600_002;
    await assert.rejects(verifier.verify(token, request), { code: "unknown_key" }, "still past the maximum age");
    monotonic = 3_600_000 + 20_000;
    await assert.rejects(verifier.verify(token, request), { code: "unknown_key" });
    assert.equal(fetches, attempts, "mandate is not asked again within the refetch interval");

    down = false;
    monotonic = 3_600_000 + 31_000;
    assert.ok(await verifier.verify(token, request), "asked again after the refetch interval, and trusted again");
  });
});

describe("expiry with clock skew", () => {
  // The Rust verifier's rule: expired once floor(now - skew) > expires_at, in whole seconds.
  const { token, calls } = vector("valid");
  const call = calls[0];
  assert.ok(call !== undefined);
  const expires = Date.parse("2026-06-01T12:05:00Z");
  const request = { tool: call.tool, operation: call.operation };
  const points: Array<[number, "allow" | "expired"]> = [[30_000, "allow"], [30_500, "allow"], [30_999, "allow"], [31_000, "expired"]];

  for (const cacheCapacity of [10_000, 0]) {
    it(`allows at expiry + 30 s and + 30.5 s, refuses at + 31 s (cache capacity ${cacheCapacity})`, async () => {
      let now = Date.parse(call.now);
      const verifier = Verifier.fromDocuments(vectors.keys, vectors.agent_keys, {
        clock: { now: () => now, monotonic: () => 0 }, cacheCapacity,
      });
      assert.ok(await verifier.verify(token, request), "cached before expiry");
      for (const [after, want] of points) {
        now = expires + after;
        const what = `at expiry + ${after / 1000} s`;
        if (want === "allow") {
          assert.ok(await verifier.verify(token, request), what);
          const presented = await verifier.present(token, {});
          assert.ok(verifier.authorize(presented, request), `${what}, presented`);
        } else {
          await assert.rejects(verifier.verify(token, request), { code: "expired" }, what);
          await assert.rejects(verifier.present(token, {}), { code: "expired" }, `${what}, presented`);
        }
      }
    });
  }

  it("refuses at + 31 s a presentation checked before", async () => {
    let now = expires + 30_500;
    const verifier = Verifier.fromDocuments(vectors.keys, vectors.agent_keys, { clock: { now: () => now, monotonic: () => 0 } });
    const presented = await verifier.present(token, {});
    now = expires + 31_000;
    assert.throws(() => verifier.authorize(presented, request), { code: "expired" });
  });
});

describe("key documents", () => {
  const key = vectors.keys.keys[0] as Record<string, unknown>;
  const document = (over: Record<string, unknown>, drop: string[] = []) => {
    const entry: Record<string, unknown> = { ...key, ...over };
    for (const name of drop) delete entry[name];
    return { keys: [entry] };
  };

  it("accept what mandate publishes", () => {
    assert.equal(keySet(vectors.keys).size, 1);
    assert.equal(keySet(document({ status: "verify_only", created_at: "2026-01-02T03:04:05.123+01:00" })).size, 1);
    assert.equal(agentKeys(vectors.agent_keys).size, 2);
  });

  it("refuse what the Rust KeysDocument refuses", () => {
    const refused: Array<[string, unknown]> = [
      ["an unknown status", document({ status: "retired" })],
      ["a status that is not a string", document({ status: 1 })],
      ["no status", document({}, ["status"])],
      ["no created_at", document({}, ["created_at"])],
      ["a created_at that is not a time", document({ created_at: "yesterday" })],
      ["a created_at on no real day", document({ created_at: "2026-02-30T00:00:00Z" })],
      ["an unknown field of a key", document({ comment: "x" })],
      ["an unknown field of the document", { ...document({}), extra: true }],
      ["a kid that is not an integer", parseJson(JSON.stringify(document({})).replace('"kid":1', '"kid":1.0'))],
      ["a document that is a list", [document({})]],
    ];
    for (const [what, doc] of refused) assert.throws(() => keySet(doc), KeyDocumentError, what);
    const agents = vectors.agent_keys as { agents: Array<Record<string, unknown>> };
    assert.throws(() => agentKeys({ ...agents, extra: 1 }), KeyDocumentError, "an unknown field of the agent keys document");
    assert.throws(() => agentKeys({ agents: [{ ...agents.agents[0], note: "x" }] }), KeyDocumentError, "an unknown field of an agent");
  });
});

describe("authorizer", () => {
  it("runs once: a run that times out is refused, not run again", async () => {
    const { token, calls } = vector("valid");
    const call = calls[0];
    assert.ok(call !== undefined);
    const verifier = Verifier.fromDocuments(vectors.keys, vectors.agent_keys, {
      clock: { now: () => Date.parse(call.now), monotonic: () => 0 },
    });
    const request = { tool: call.tool, operation: call.operation };
    assert.ok(await verifier.verify(token, request));
    const prototype = wasm.Authorizer.prototype as { authorizeWithLimits: (limits: unknown) => number };
    const original = prototype.authorizeWithLimits;
    let runs = 0;
    prototype.authorizeWithLimits = function timedOut(): number {
      runs++;
      // What biscuit-wasm throws when a run passes its time limit.
      throw { RunLimit: "Timeout" };
    };
    try {
      await assert.rejects(verifier.verify(token, request), { code: "not_authorized" });
    } finally {
      prototype.authorizeWithLimits = original;
    }
    assert.equal(runs, 1, "one run per call");
    assert.ok(await verifier.verify(token, request));
  });
});

describe("holder block bound", () => {
  it("refuses to append a block past the sixteen a verifier accepts", () => {
    let token = vector("narrowed").token;
    while (read(token, 16).blocks.length + 1 < 16) token = attenuate(token, { delegate: "helper" }, vectors.keys);
    assert.equal(read(token, 16).blocks.length + 1, 16);
    assert.throws(() => attenuate(token, { delegate: "helper" }, vectors.keys), InvalidInput, "a 17th block");
    assert.throws(() => attenuate(vector("too_many_blocks").token, { delegate: "helper" }, vectors.keys), InvalidInput, "a token of 17 blocks");
  });
});

describe("wasm heap", () => {
  it("is exposed, and grows with verifications (biscuit-wasm's allocator; README, Limits)", async () => {
    const { token, calls } = vector("narrowed");
    const call = calls[0];
    assert.ok(call !== undefined);
    const verifier = Verifier.fromDocuments(vectors.keys, vectors.agent_keys, {
      clock: { now: () => Date.parse(call.now), monotonic: () => 0 },
    });
    const start = Verifier.wasmHeapBytes();
    assert.ok(typeof start === "number" && start > 0, "the heap size is reachable");
    const request = { tool: call.tool, operation: call.operation, resource: call.resource };
    let refused = 0;
    for (let i = 0; i < 1000; i++) {
      try {
        await verifier.verify(token, request);
      } catch (error) {
        // Under CPU contention a run can reach the 20 ms limit and be refused (README, Limits):
        // that call's authorizer grew the heap all the same.
        if (!(error instanceof VerificationError && error.message.endsWith("authorizer run limits reached"))) throw error;
        refused++;
      }
    }
    assert.ok(refused < 100, `${refused} of 1000 calls refused by the run limit`);
    // About 19 KB a call for this token: if this stops holding, update the README's Limits.
    assert.ok((Verifier.wasmHeapBytes() ?? 0) > start, "the heap read is the live one");
  });
});
