/**
 * The one place this package touches biscuit-wasm: verifying a token's signatures under a root
 * key, running the authorizer with explicit run limits, and mapping the library's errors to
 * mandate's reason codes (as `map_biscuit` in `src/token/verify.rs`).
 *
 * biscuit-wasm is built for bundlers; Node 20 loads it with `--experimental-wasm-modules`. Its
 * first authorizations compile the module's code and take tens of milliseconds, more than the
 * 20 ms run limit, so loading this module first authorizes a throwaway token using every
 * operator the vocabulary allows.
 * Every value reaches Datalog as a parameter, never spliced into source text.
 */

import * as wasm from "@biscuit-auth/biscuit-wasm";

import { BadSignature, Expired, Invalid, Malformed, NotAuthorized, UnknownKey, type VerificationError } from "../errors.js";
import type { ArgValue, Scalar } from "./constraints.js";

export { wasm };

/** Bounds on one authorization. */
export interface RunLimits {
  maxFacts: number;
  maxIterations: number;
  maxTimeMs: number;
}

/** mandate's verifier: at most 1,000 facts, 100 iterations, 20 ms. */
export const RUN_LIMITS: RunLimits = { maxFacts: 1000, maxIterations: 100, maxTimeMs: 20 };

/** An Ed25519 public key from its 64 hex digits. */
export function ed25519PublicKey(hex: string): wasm.PublicKey {
  return wasm.PublicKey.fromString(hex, wasm.SignatureAlgorithm.Ed25519);
}

/** Verifies every signature of `token` under `root`; the caller has checked its kid. */
export function verifySignatures(token: string, root: wasm.PublicKey): wasm.Biscuit {
  try {
    // The provider never throws: a throw inside the wasm call aborts the module.
    return wasm.Biscuit.fromBase64WithProvider(token.trim(), () => root);
  } catch (error) {
    throw mapBiscuit(error);
  }
}

/** Every block's revocation id, hex, authority first. */
export function revocationIds(token: wasm.Biscuit): string[] {
  return token.getRevocationIdentifiers().map((id: unknown) => String(id));
}

/** The facts a verifier states for one call. */
export interface CallFacts {
  /** The verifier's time less the skew, whole seconds. */
  time: number;
  tool: string;
  operation: string;
  resource: string | undefined;
  /** The thumbprint of the key whose proof was checked. */
  holderProof: string | undefined;
  args: Map<string, ArgValue>;
}

const term = (value: ArgValue): unknown => ("scalar" in value ? value.scalar : { set: value.list.map((v: Scalar) => v) });

/** Runs the authorizer on `token` with the call's facts and the one policy, within `limits`. */
export function authorize(token: wasm.Biscuit, facts: CallFacts, limits: RunLimits): void {
  const params: Record<string, unknown> = {
    time: { date: new Date(facts.time * 1000).toISOString() },
    tool: facts.tool,
    operation: facts.operation,
  };
  let source = "time({time});\ntool({tool});\noperation({operation});\n";
  if (facts.resource !== undefined) {
    source += "resource({resource});\n";
    params.resource = facts.resource;
  }
  if (facts.holderProof !== undefined) {
    source += "holder_proof({holder_proof});\n";
    params.holder_proof = facts.holderProof;
  }
  let i = 0;
  for (const [path, value] of facts.args) {
    source += `arg({path${i}}, {value${i}});\n`;
    params[`path${i}`] = path;
    params[`value${i}`] = term(value);
    i++;
  }
  source += "allow if mandate_schema(1), right({tool}, {operation});";
  let authorizer: wasm.Authorizer | undefined;
  try {
    const builder = new wasm.AuthorizerBuilder();
    builder.addCodeWithParameters(source, params, {});
    authorizer = builder.buildAuthenticated(token);
    const run = {
      max_facts: limits.maxFacts,
      max_iterations: limits.maxIterations,
      max_time_micro: limits.maxTimeMs * 1000,
    };
    try {
      authorizer.authorizeWithLimits(run);
    } catch (error) {
      // A pause of this process (garbage collection, a busy machine) can cost one run its
      // time budget: a timeout is run once more, and refused if it times out again. Facts and
      // iterations are deterministic and never retried.
      if (inner(error, "RunLimit") !== "Timeout") throw error;
      authorizer.free();
      authorizer = undefined;
      const again = new wasm.AuthorizerBuilder();
      again.addCodeWithParameters(source, params, {});
      authorizer = again.buildAuthenticated(token);
      authorizer.authorizeWithLimits(run);
    }
  } catch (error) {
    throw mapBiscuit(error);
  } finally {
    authorizer?.free();
  }
}

function key(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (typeof value === "object" && value !== null) return Object.keys(value)[0];
  return undefined;
}

function inner(value: unknown, name: string): unknown {
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>)[name] : undefined;
}

/** Maps a biscuit-wasm error (a plain object such as `{"Format": {"Signature": …}}`) to a refusal. */
export function mapBiscuit(error: unknown): VerificationError {
  const kind = key(error);
  if (kind === "Format") {
    const format = key(inner(error, "Format"));
    if (format === "UnknownPublicKey") return new UnknownKey();
    if (format === "Signature" || format === "InvalidSignatureSize") return new BadSignature();
    return new Malformed();
  }
  if (kind === "Base64") return new Malformed();
  if (kind === "FailedLogic") {
    const logic = inner(error, "FailedLogic");
    const reason = key(logic);
    if (reason === "Unauthorized" || reason === "NoMatchingPolicy") {
      const checks = inner(inner(logic, reason), "checks");
      const failed = (Array.isArray(checks) ? checks : []).map((c: unknown) => {
        const rule = inner(inner(c, "Block") ?? inner(c, "Authorizer"), "rule");
        return typeof rule === "string" ? rule : "";
      });
      if (failed.some((rule) => rule.includes("time($time)"))) return new Expired();
      if (failed.length === 0) return new NotAuthorized("no right for this tool and operation");
      return new NotAuthorized(failed.join("; "));
    }
  }
  if (kind === "RunLimit") return new NotAuthorized("authorizer run limits reached");
  return new Invalid(kind ?? "an unexpected error");
}

/**
 * Authorizations of a throwaway token using every operator the vocabulary allows, so the first
 * real ones are not slowed past the run limit by compiling the module's code.
 */
function warmUp(): void {
  const pair = new wasm.KeyPair(wasm.SignatureAlgorithm.Ed25519);
  const builder = wasm.Biscuit.builder();
  builder.addCodeWithParameters(`mandate_schema(1); right({t}, {o}); constraint({t}, {o}, "a", "glob", "x*");
check if time($time), $time <= {e};
check if tool($tool), operation($operation), ($tool == {t} && $operation == {o}) || ($tool === "y" && $operation == "z");
check if resource($r), {"r", "s"}.contains($r);
check if tool($tool), operation($operation), !($tool == {t} && $operation == {o}) or arg("a", $v), $v.matches("(?s)^x[.].*$");
check if tool($tool), operation($operation), !($tool == "n" && $operation == "n") or arg("b", $v), $v.starts_with("x");
check if arg("n", $v), $v >= 1, $v <= 9, $v == 5;
check if arg("l", $v), {"p", "q"}.contains($v), $v.length() <= 3;
check if arg("a", $v), $v.length() <= 9;
check if holder_proof($k);`, { t: "a", o: "b", e: { date: "2100-01-01T00:00:00Z" } }, {});
  const token = builder.build(pair.getPrivateKey());
  const parsed = wasm.Biscuit.fromBase64WithProvider(token.toBase64(), () => pair.getPublicKey());
  const args = new Map<string, ArgValue>([["a", { scalar: "x.y" }], ["b", { scalar: "xz" }], ["n", { scalar: 5 }], ["l", { list: ["p"] }]]);
  for (let i = 0; i < 5; i++) {
    authorize(parsed, { time: 0, tool: "a", operation: "b", resource: "r", holderProof: "k", args },
      { maxFacts: 1000, maxIterations: 100, maxTimeMs: 10_000 });
  }
}

warmUp();
