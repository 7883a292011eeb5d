/**
 * The conformance vectors (`tests/vectors/mandate-v1.json`): every call of every case, in order
 * against one fresh verifier per case, reaches the recorded verdict, code and read-out.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { Verifier, VerificationError, parseJson } from "../src/index.js";
import { repoPath } from "./support.js";

interface VectorCall {
  tool: string;
  operation: string;
  resource: string | null;
  arguments: unknown;
  now: string;
  scheme: string;
  proof: string | null;
  method: string;
  url: string;
  expect: { verdict: "allow" | "deny"; error: string | null; verified: Record<string, unknown> | null };
}

interface Vectors {
  keys: unknown;
  agent_keys: unknown;
  revocations: { items: unknown[] };
  settings: Record<string, unknown>;
  cases: Array<{ name: string; description: string; token: string; calls: VectorCall[] }>;
}

// Parsed keeping `2.0` apart from `2`, as the Rust verifier reads the arguments.
const vectors = parseJson(readFileSync(repoPath("tests/vectors/mandate-v1.json"), "utf8")) as Vectors;

describe("conformance vectors", () => {
  it("cover the settings this verifier uses", () => {
    assert.deepEqual(vectors.settings, {
      clock_skew_seconds: 30, max_blocks: 16, max_token_bytes: 16384, proof_max_age_seconds: 60,
      proof_max_ahead_seconds: 30, run_limits: { max_facts: 1000, max_iterations: 100, max_time_ms: 20 },
    });
    assert.ok(vectors.cases.length >= 30, "the file holds the cases");
  });

  for (const vector of vectors.cases) {
    it(`${vector.name}: ${vector.description}`, async () => {
      let now = 0;
      const verifier = Verifier.fromDocuments(vectors.keys, vectors.agent_keys, {
        revocations: vectors.revocations,
        clock: { now: () => now, monotonic: () => now },
      });
      for (const [i, call] of vector.calls.entries()) {
        now = Date.parse(call.now);
        let got: { verdict: string; error: string | null; verified: unknown };
        try {
          const { right, ...readOut } = await verifier.verify(vector.token, {
            tool: call.tool, operation: call.operation, resource: call.resource, arguments: call.arguments,
            proof: call.proof, method: call.method, url: call.url,
          });
          assert.deepEqual(right, { tool: call.tool, operation: call.operation });
          got = { verdict: "allow", error: null, verified: readOut };
        } catch (error) {
          if (!(error instanceof VerificationError)) throw error;
          got = { verdict: "deny", error: error.code, verified: null };
        }
        assert.deepEqual(got, call.expect, `call ${i}`);
      }
    });
  }
});
