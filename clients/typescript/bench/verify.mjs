// Time per `verify` call for the 2-block token of vector `narrowed`: cold (a token-cache miss
// every call: caching disabled) and cached (the same token again), each measured in a process of
// its own, so neither runs on a wasm heap the other grew.
//
//   node … bench/verify.mjs cold     prints {"cold_us": …, "iterations": …, "refused": N}
//   node … bench/verify.mjs cached   prints {"cached_us": …, "iterations": …, "refused": N}
//   node … bench/verify.mjs          runs both in child processes and prints
//                                    {"cold_us": …, "cached_us": …, "iterations": …, "refused": N}
//
// A call the authorizer's 20 ms run limit refuses (`authorizer run limits reached`, which CPU
// contention can cause) is counted in `refused`, not fatal: it is what a verifier under that load
// answers (it fails closed). Any other refusal is a fault of the bench, and ends it. Run with
// `npm run bench` (it compiles first); the last line printed is the JSON line.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const ITERATIONS = Number(process.env.ITERATIONS ?? 2000);
const RUN_LIMIT = "authorizer run limits reached";

async function measure(mode) {
  const { Verifier, parseJson } = await import("../dist/src/index.js");
  const path = fileURLToPath(new URL("../../../tests/vectors/mandate-v1.json", import.meta.url));
  const vectors = parseJson(readFileSync(path, "utf8"));
  const vector = vectors.cases.find((c) => c.name === "narrowed");
  const call = vector.calls[0];
  const now = Date.parse(call.now);
  const clock = { now: () => now, monotonic: () => 0 };
  const request = { tool: call.tool, operation: call.operation, resource: call.resource };
  const options = { revocations: vectors.revocations, clock, ...(mode === "cold" ? { cacheCapacity: 0 } : {}) };
  const verifier = Verifier.fromDocuments(vectors.keys, vectors.agent_keys, options);

  let refused = 0;
  const once = async () => {
    try {
      await verifier.verify(vector.token, request);
    } catch (error) {
      if (error?.code !== "not_authorized" || !String(error?.message).endsWith(RUN_LIMIT)) throw error;
      refused++;
    }
  };
  for (let i = 0; i < 100; i++) await once();
  refused = 0; // counted over the timed calls only
  const start = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) await once();
  const us = Number(process.hrtime.bigint() - start) / 1000 / ITERATIONS;
  return { [`${mode}_us`]: Math.round(us), iterations: ITERATIONS, refused };
}

function child(mode) {
  const script = fileURLToPath(import.meta.url);
  const out = execFileSync(process.execPath, [...process.execArgv, script, mode], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  const last = out.trim().split("\n").pop();
  return JSON.parse(last);
}

const mode = process.argv[2];
if (mode === "cold" || mode === "cached") {
  console.log(JSON.stringify(await measure(mode)));
} else if (mode === undefined) {
  const cold = child("cold");
  const cached = child("cached");
  console.log(JSON.stringify({
    cold_us: cold.cold_us, cached_us: cached.cached_us, iterations: ITERATIONS, refused: cold.refused + cached.refused,
  }));
} else {
  console.error(`usage: bench/verify.mjs [cold|cached] (got ${mode})`);
  process.exit(2);
}
