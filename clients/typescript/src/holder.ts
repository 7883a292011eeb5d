/**
 * Holder operations, offline (`src/token/attenuate.rs`, `attest.rs`): narrowing a mandate with
 * a first-party block in exactly the shapes of `docs/token-schema.md`, attesting a hop with an
 * agent's Ed25519 key, and moving a bound mandate's binding to the next holder's key.
 *
 * biscuit-wasm appends only to a token whose signatures it verified, so each operation takes
 * mandate's published root keys (the `/.well-known/mandate-keys` document). Every input is
 * checked before anything is built: bad input throws `InvalidInput` naming the field, and the
 * token given is never changed (a new token is returned).
 */

import { InvalidInput, VerificationError } from "./errors.js";
import { HolderSecret, isThumbprint } from "./pop/keys.js";
import { ed25519PublicKey, wasm } from "./token/biscuit.js";
import {
  MAX_CONSTRAINTS, constraintProblem, factsOf, globRegex, printable, validPath, type ArgConstraint, type Kind, type Scalar,
} from "./token/constraints.js";
import { DEFAULT_OPTIONS, MAX_TOKEN_BYTES, type KeySet } from "./token/verify.js";
import { MAX_RESOURCES, MAX_RIGHTS, read, type Right } from "./token/vocabulary.js";
import { keySet } from "./verifier.js";

/** How to narrow a mandate. Every part is optional; at least one must be given. */
export interface Attenuation {
  /** Only these (tool, operation) pairs stay usable (empty: none). */
  rights?: Right[];
  /** Only calls naming one of these resources stay allowed (empty: none). */
  resources?: string[];
  /** The derived token stops working at this time (or earlier, if the parent does). */
  expiresAt?: Date;
  /** The agent that will hold the derived token. */
  delegate?: string;
  /** Further constraints on the arguments of calls. */
  constraints?: ArgConstraint[];
}

/** The most blocks (the authority included) a verifier accepts: a holder appends none past it. */
const MAX_BLOCKS = DEFAULT_OPTIONS.maxBlocks;

/** mandate's root keys: the `/.well-known/mandate-keys` document, or keys by kid. */
export type RootKeys = unknown;

/** The token, parsed under its root key (its signatures verified). */
function parent(token: string, keys: RootKeys): wasm.Biscuit {
  if (typeof token !== "string" || token.trim().length === 0) throw new InvalidInput("token", "a token is a base64url string");
  if (Buffer.byteLength(token) > MAX_TOKEN_BYTES) throw new InvalidInput("token", `larger than ${MAX_TOKEN_BYTES} bytes`);
  const set: KeySet = keys instanceof Map ? (keys as KeySet) : keySet(keys);
  let kid: number | undefined;
  let blocks: number;
  try {
    // Reads the token's kid (and refuses hostile blocks, and more blocks than a verifier
    // accepts) before biscuit-wasm parses it.
    const decoded = read(token, MAX_BLOCKS);
    kid = decoded.rootKeyId;
    blocks = decoded.blocks.length + 1;
  } catch (error) {
    if (error instanceof VerificationError) throw new InvalidInput("token", `${error.code}: ${error.message}`);
    throw error;
  }
  if (blocks >= MAX_BLOCKS) {
    throw new InvalidInput("token", `it has ${blocks} blocks, the most a verifier accepts: no block can be appended`);
  }
  const root = kid === undefined ? undefined : set.get(kid);
  if (root === undefined) throw new InvalidInput("token", "signed with an unknown root key");
  try {
    return wasm.Biscuit.fromBase64WithProvider(token.trim(), () => ed25519PublicKey(root));
  } catch {
    throw new InvalidInput("token", "its signatures do not verify under mandate's root key");
  }
}

function text(field: string, value: unknown): string {
  if (typeof value !== "string" || !printable(value)) {
    throw new InvalidInput(field, "a string of 1 to 256 bytes, without quotes, backslashes or controls");
  }
  return value;
}

const param = (v: Scalar | Scalar[]): unknown => (Array.isArray(v) ? { set: v } : v);

/** The checks' expressions by constraint kind. */
const EXPRESSIONS: Record<Kind, string> = {
  equals: "$value == {check_value}",
  one_of: "{check_value}.contains($value)",
  prefix: "$value.starts_with({check_value})",
  glob: "$value.matches({check_value})",
  min: "$value >= {check_value}",
  max: "$value <= {check_value}",
  max_length: "$value.length() <= {check_value}",
};

/** Validates `attenuation` and writes its block's Datalog, every value a parameter. */
function attenuationBlock(attenuation: Attenuation): wasm.BlockBuilder {
  if (typeof attenuation !== "object" || attenuation === null) throw new InvalidInput("attenuation", "an object");
  const { rights, resources, expiresAt, delegate } = attenuation;
  const constraints = attenuation.constraints ?? [];
  let source = "";
  const params: Record<string, unknown> = {};
  if (delegate !== undefined) {
    params.delegate = text("delegate", delegate);
    source += "delegate({delegate});\n";
  }
  if (rights !== undefined) {
    if (!Array.isArray(rights) || rights.length > MAX_RIGHTS) throw new InvalidInput("rights", `a list of at most ${MAX_RIGHTS} rights`);
    if (rights.length === 0) source += "check if false;\n";
    else {
      const pairs = rights.map((r, i) => {
        params[`tool${i}`] = text(`rights[${i}].tool`, r?.tool);
        params[`operation${i}`] = text(`rights[${i}].operation`, r?.operation);
        return `($tool == {tool${i}} && $operation == {operation${i}})`;
      });
      source += `check if tool($tool), operation($operation), ${pairs.join(" || ")};\n`;
    }
  }
  if (resources !== undefined) {
    if (!Array.isArray(resources) || resources.length > MAX_RESOURCES) {
      throw new InvalidInput("resources", `a list of at most ${MAX_RESOURCES} resources`);
    }
    params.resources = { set: resources.map((r, i) => text(`resources[${i}]`, r)) };
    source += "check if resource($resource), {resources}.contains($resource);\n";
  }
  if (expiresAt !== undefined) {
    const ms = expiresAt instanceof Date ? expiresAt.getTime() : Number.NaN;
    if (!Number.isFinite(ms) || ms < 0) throw new InvalidInput("expiresAt", "a valid date after 1970");
    params.expires = { date: new Date(Math.floor(ms / 1000) * 1000).toISOString() };
    source += "check if time($time), $time <= {expires};\n";
  }
  if (!Array.isArray(constraints)) throw new InvalidInput("constraints", "a list of argument constraints");
  if (source.length === 0 && constraints.length === 0) {
    throw new InvalidInput("attenuation", "an attenuation must restrict something or name a delegate");
  }
  const compiled = constraints.flatMap((c, i) => compile(c, `constraints[${i}]`));
  if (compiled.length > MAX_CONSTRAINTS) throw new InvalidInput("constraints", `at most ${MAX_CONSTRAINTS} constraint facts`);
  const block = new wasm.BlockBuilder();
  if (source.length > 0) block.addCodeWithParameters(source, params, {});
  for (const c of compiled) block.addCodeWithParameters(c.source, c.params, {});
  return block;
}

/** One constraint's facts and checks (a range with both bounds is two). */
function compile(c: ArgConstraint, field: string): Array<{ source: string; params: Record<string, unknown> }> {
  if (typeof c !== "object" || c === null) throw new InvalidInput(field, "an argument constraint");
  const tool = text(`${field}.tool`, c.tool);
  const operation = text(`${field}.operation`, c.operation);
  const argument = text(`${field}.argument`, c.argument);
  if (!validPath(argument)) throw new InvalidInput(`${field}.argument`, "dot-joined segments of `[A-Za-z0-9_-]`, at most 128 bytes");
  const problem = typeof c.constraint === "object" && c.constraint !== null ? constraintProblem(c.constraint) : "an object";
  if (problem !== undefined) throw new InvalidInput(`${field}.constraint`, problem);
  return factsOf(c.constraint).map(([kind, value]) => ({
    source: `constraint({tool}, {operation}, {argument}, {kind}, {fact_value});\n`
      + `check if tool($tool), operation($operation), !($tool == {tool} && $operation == {operation}) `
      + `or arg({argument}, $value), ${EXPRESSIONS[kind]};`,
    params: {
      tool, operation, argument, kind,
      fact_value: param(value),
      check_value: kind === "glob" ? globRegex(value as string) : param(value),
    },
  }));
}

/** Appends a narrowing block to `token` and returns the derived token. */
export function attenuate(token: string, attenuation: Attenuation, keys: RootKeys): string {
  const block = attenuationBlock(attenuation);
  return parent(token, keys).appendBlock(block).toBase64();
}

/** An agent's Ed25519 private key: `ed25519-private/<hex>`, 64 hex digits, or 32 bytes. */
export type AgentKey = string | Uint8Array;

function agentPrivateKey(key: AgentKey): wasm.PrivateKey {
  try {
    if (key instanceof Uint8Array && key.length === 32) return wasm.PrivateKey.fromBytes(key, wasm.SignatureAlgorithm.Ed25519);
    if (typeof key === "string" && /^(ed25519-private\/)?[0-9a-fA-F]{64}$/.test(key)) {
      return wasm.PrivateKey.fromBytes(Buffer.from(key.slice(-64), "hex"), wasm.SignatureAlgorithm.Ed25519);
    }
  } catch {
    // Refused below.
  }
  throw new InvalidInput("agentKey", "an Ed25519 private key: `ed25519-private/<64 hex digits>` or 32 bytes");
}

/** Appends a third-party block stating `statement`, signed by `key`, requested for `token`. */
function signed(token: string, keys: RootKeys, source: string, params: Record<string, unknown>, key: wasm.PrivateKey): string {
  const biscuit = parent(token, keys);
  const request = biscuit.getThirdPartyRequest();
  const block = new wasm.BlockBuilder();
  block.addCodeWithParameters(source, params, {});
  const signedBlock = request.createBlock(key, block);
  const publicKey = wasm.KeyPair.fromPrivateKey(key).getPublicKey();
  return biscuit.appendThirdPartyBlock(publicKey, signedBlock).toBase64();
}

/** Attests that `agentId`, holding its registered key `agentKey`, now holds `token`. */
export function attest(token: string, agentId: string, agentKey: AgentKey, keys: RootKeys): string {
  const agent = text("agentId", agentId);
  const key = agentPrivateKey(agentKey);
  return signed(token, keys, "hop({agent});", { agent }, key);
}

/**
 * Moves the binding of `token`, held by `holder`, to the key whose RFC 7638 thumbprint is
 * `nextJkt`: a third-party block stating `holder_key(nextJkt)`, signed by `holder`.
 */
export function rebind(token: string, holder: HolderSecret, nextJkt: string, keys: RootKeys): string {
  if (!(holder instanceof HolderSecret)) throw new InvalidInput("holder", "a HolderSecret");
  if (typeof nextJkt !== "string" || !isThumbprint(nextJkt)) {
    throw new InvalidInput("nextJkt", "an RFC 7638 thumbprint (43 base64url characters)");
  }
  const algorithm = holder.algorithm === "EdDSA" ? wasm.SignatureAlgorithm.Ed25519 : wasm.SignatureAlgorithm.Secp256r1;
  const key = wasm.PrivateKey.fromBytes(holder.privateBytes(), algorithm);
  return signed(token, keys, "holder_key({jkt});", { jkt: nextJkt }, key);
}
