// Time per `verify` call for the 2-block token of vector `narrowed`: cold (a token-cache miss
// every call: caching disabled) and cached (the same token again). Prints
// {"cold_us": …, "cached_us": …}. Run with `npm run bench` (it compiles first).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { Verifier, parseJson } from "../dist/src/index.js";

const ITERATIONS = Number(process.env.ITERATIONS ?? 2000);
const path = fileURLToPath(new URL("../../../tests/vectors/mandate-v1.json", import.meta.url));
const vectors = parseJson(readFileSync(path, "utf8"));
const vector = vectors.cases.find((c) => c.name === "narrowed");
const call = vector.calls[0];
const now = Date.parse(call.now);
const clock = { now: () => now, monotonic: () => 0 };
const request = { tool: call.tool, operation: call.operation, resource: call.resource };

async function time(verifier) {
  for (let i = 0; i < 100; i++) await verifier.verify(vector.token, request);
  const start = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) await verifier.verify(vector.token, request);
  return Number(process.hrtime.bigint() - start) / 1000 / ITERATIONS;
}

const options = { revocations: vectors.revocations, clock };
const cold = await time(Verifier.fromDocuments(vectors.keys, vectors.agent_keys, { ...options, cacheCapacity: 0 }));
const cached = await time(Verifier.fromDocuments(vectors.keys, vectors.agent_keys, options));
console.log(JSON.stringify({ cold_us: Math.round(cold), cached_us: Math.round(cached), iterations: ITERATIONS }));
