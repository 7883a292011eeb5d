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

/**
 * biscuit-wasm's linear memory, reached by importing the module's `.wasm` file (the instance
 * biscuit-wasm itself imported: ES modules are instantiated once per URL), or `undefined` where
 * the loader does not allow that.
 */
const memory: { readonly buffer: ArrayBuffer } | undefined = await (async () => {
  try {
    const url = new URL("./biscuit_bg.wasm", import.meta.resolve("@biscuit-auth/biscuit-wasm"));
    const instance = (await import(url.href)) as { memory?: unknown };
    // The WebAssembly global, typed here as this package's `lib` does not declare it.
    const Memory = (globalThis as unknown as { WebAssembly: { Memory: new () => { readonly buffer: ArrayBuffer } } }).WebAssembly.Memory;
    return instance.memory instanceof Memory ? instance.memory : undefined;
  } catch {
    return undefined;
  }
})();

/**
 * The size of biscuit-wasm's heap in bytes (`undefined` if it cannot be reached). biscuit-wasm
 * 0.6.0 allocates with `wee_alloc`, which reuses freed memory poorly: the heap grows with every
 * authorization (about 19 KB per `verify` call) and never shrinks, and the module aborts near
 * 4 GiB. See "Limits" in the README.
 */
export function wasmHeapBytes(): number | undefined {
  return memory?.buffer.byteLength;
}

/** Past this heap size a process warning says to recycle the process. */
const HEAP_WARNING_BYTES = 1 << 30;
let warned = false;

function warnOnHeap(): void {
  if (warned || memory === undefined || memory.buffer.byteLength < HEAP_WARNING_BYTES) return;
  warned = true;
  process.emitWarning(
    `biscuit-wasm's heap is ${Math.round(memory.buffer.byteLength / 2 ** 20)} MiB and only grows (about 19 KB per verification); `
    + "it aborts near 4 GiB: recycle this process or worker (see Limits in @mandate/client's README)",
    { code: "MANDATE_WASM_HEAP" },
  );
}

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
  /** The SHA-256 of the call's arguments, for an operation whose approval is bound to them. */
  argumentsSha256?: string | undefined;
}

const term = (value: ArgValue): unknown => ("scalar" in value ? value.scalar : { set: value.list.map((v: Scalar) => v) });

/**
 * The verifier's Datalog, parsed once. Parsing the source text anew took about a fifth of a
 * cached call; a parsed fact or policy takes its parameters with `set` and is copied into the
 * builder by `addFact` / `addPolicy`, so one of each serves every call. Every parameter of a
 * template is set before each use (a fact or policy with an unset parameter is refused), and
 * calls never interleave (all of this is synchronous), so no call sees another's values.
 */
interface Templates {
  time: wasm.Fact;
  tool: wasm.Fact;
  operation: wasm.Fact;
  resource: wasm.Fact;
  holderProof: wasm.Fact;
  arg: wasm.Fact;
  argumentsSha256: wasm.Fact;
  allow: wasm.Policy;
}

let parsed: Templates | undefined;

function templates(): Templates {
  parsed ??= {
    time: wasm.Fact.fromString("time({time})"),
    tool: wasm.Fact.fromString("tool({tool})"),
    operation: wasm.Fact.fromString("operation({operation})"),
    resource: wasm.Fact.fromString("resource({resource})"),
    holderProof: wasm.Fact.fromString("holder_proof({holder_proof})"),
    arg: wasm.Fact.fromString("arg({path}, {value})"),
    argumentsSha256: wasm.Fact.fromString("arguments_sha256({sha256})"),
    allow: wasm.Policy.fromString("allow if mandate_schema(1), right({tool}, {operation})"),
  };
  return parsed;
}

/** An authorizer for `token` with the call's facts and the one policy. */
function build(token: wasm.Biscuit, facts: CallFacts): wasm.Authorizer {
  const t = templates();
  const builder = new wasm.AuthorizerBuilder();
  try {
    t.time.set("time", { date: new Date(facts.time * 1000).toISOString() });
    builder.addFact(t.time);
    t.tool.set("tool", facts.tool);
    builder.addFact(t.tool);
    t.operation.set("operation", facts.operation);
    builder.addFact(t.operation);
    if (facts.resource !== undefined) {
      t.resource.set("resource", facts.resource);
      builder.addFact(t.resource);
    }
    if (facts.holderProof !== undefined) {
      t.holderProof.set("holder_proof", facts.holderProof);
      builder.addFact(t.holderProof);
    }
    for (const [path, value] of facts.args) {
      t.arg.set("path", path);
      t.arg.set("value", term(value));
      builder.addFact(t.arg);
    }
    if (facts.argumentsSha256 !== undefined) {
      t.argumentsSha256.set("sha256", facts.argumentsSha256);
      builder.addFact(t.argumentsSha256);
    }
    t.allow.set("tool", facts.tool);
    t.allow.set("operation", facts.operation);
    builder.addPolicy(t.allow);
  } catch (error) {
    builder.free();
    throw error;
  }
  // Consumes the builder.
  return builder.buildAuthenticated(token);
}

/**
 * Runs the authorizer on `token` with the call's facts and the one policy, within `limits`, once:
 * a run that reaches a limit (time included) is refused, never run again with a fresh budget.
 */
export function authorize(token: wasm.Biscuit, facts: CallFacts, limits: RunLimits): void {
  const run = {
    max_facts: limits.maxFacts,
    max_iterations: limits.maxIterations,
    max_time_micro: limits.maxTimeMs * 1000,
  };
  let authorizer: wasm.Authorizer | undefined;
  try {
    authorizer = build(token, facts);
    authorizer.authorizeWithLimits(run);
  } catch (error) {
    throw mapBiscuit(error);
  } finally {
    authorizer?.free();
    warnOnHeap();
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
check if holder_proof($k);
check if tool($tool), operation($operation), !($tool == {t} && $operation == {o}) or arguments_sha256("d");`, { t: "a", o: "b", e: { date: "2100-01-01T00:00:00Z" } }, {});
  const token = builder.build(pair.getPrivateKey());
  const parsed = wasm.Biscuit.fromBase64WithProvider(token.toBase64(), () => pair.getPublicKey());
  const args = new Map<string, ArgValue>([["a", { scalar: "x.y" }], ["b", { scalar: "xz" }], ["n", { scalar: 5 }], ["l", { list: ["p"] }]]);
  for (let i = 0; i < 5; i++) {
    authorize(parsed, { time: 0, tool: "a", operation: "b", resource: "r", holderProof: "k", args, argumentsSha256: "d" },
      { maxFacts: 1000, maxIterations: 100, maxTimeMs: 10_000 });
  }
}

warmUp();
