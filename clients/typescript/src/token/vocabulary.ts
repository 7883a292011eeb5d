/**
 * The mandate/v1 block vocabulary (`src/token/vocabulary.rs`, `docs/token-schema.md`): what a
 * block after the authority may state. Anyone holding a Biscuit can append any block, and one
 * hostile rule can make a single Datalog step run for seconds, so every later block is read from
 * its serialized form and the token refused unless each block is one of these shapes, before any
 * Datalog runs.
 *
 * A first-party block states, each at most once and at least one of: `delegate($agent)`; a rights
 * check `check if tool($t), operation($o), ($t == T && $o == O) || …` (1 to 64 pairs) or
 * `check if false`; `check if resource($r), {R, …}.contains($r)` (0 to 64); `check if time($t),
 * $t <= DATE`; up to 64 `constraint(…)` facts each with exactly the check it compiles to. A
 * third-party block states exactly `hop($agent)` or `holder_key($jkt)`.
 */

import { Malformed, NotMandateBlock, TooManyBlocks } from "../errors.js";
import { WireError } from "../wire/protobuf.js";
import {
  decodeBiscuit, decodeBlock, type BlockProto, type CheckProto, type OpProto, type PredicateProto,
  type PublicKeyProto, type TermProto,
} from "../wire/schema.js";
import { SymbolOverlap, SymbolTable } from "../wire/symbols.js";
import {
  ConstraintRefusal, MAX_CONSTRAINTS, MAX_ONE_OF, MAX_STRING, expectedCheck, printable, readFact,
  sameCheck, type ArgConstraint, type Kind,
} from "./constraints.js";
import { isThumbprint } from "../pop/keys.js";
import { decodeBase64Url } from "../encoding.js";

/** Most (tool, operation) pairs one block may narrow to. */
export const MAX_RIGHTS = 64;
/** Most resources one block may allow. */
export const MAX_RESOURCES = 64;
/** Most symbols a later block may add. */
const MAX_SYMBOLS = 2 * MAX_RIGHTS + MAX_RESOURCES + MAX_CONSTRAINTS * (6 + MAX_ONE_OF) + 16;
/** The latest second chrono (and so the Rust verifier) can represent. */
const MAX_TIMESTAMP = 8_210_266_876_799n;

/** One granted right: an operation of a tool. */
export interface Right {
  tool: string;
  operation: string;
}

/** What a holder's block narrows (each part absent when the block does not narrow it). */
export interface Narrowing {
  rights?: Right[];
  resources?: string[];
  /** Seconds since the epoch. */
  expiresAt?: number;
  delegate?: string;
  constraints: ArgConstraint[];
}

/** What one block after the authority states. */
export type Stated =
  | { type: "narrowing"; narrowing: Narrowing }
  | { type: "attestation"; agent: string }
  | { type: "rebind"; holderKey: string };

/** A token's blocks as serialized, decoded but not yet verified. */
export interface Decoded {
  rootKeyId: number | undefined;
  /** The authority block: trust it only once the signatures verify. */
  authority: BlockProto;
  /** What each later block states, in order. */
  blocks: Stated[];
  /** The external signature's key of each later block (third-party blocks only). */
  externalKeys: Array<PublicKeyProto | undefined>;
}

/** Why a block is not a mandate/v1 shape. */
class Refusal extends Error {}

/**
 * Decodes `token` and reads every block after the authority as a mandate/v1 shape. Nothing is
 * verified: a token that passes still needs its signatures checked.
 */
export function read(token: string, maxBlocks: number): Decoded {
  let bytes: Uint8Array;
  try {
    bytes = decodeBase64Url(token.trim(), "indifferent");
  } catch {
    throw new Malformed();
  }
  const container = wire(() => decodeBiscuit(bytes));
  if (container.blocks.length + 1 > maxBlocks) throw new TooManyBlocks();
  const authority = wire(() => decodeBlock(container.authority?.block ?? new Uint8Array()));
  const later = container.blocks.map((b) => wire(() => decodeBlock(b.block)));
  const table = overlapIsMalformed(() => SymbolTable.from(authority.symbols));
  // First-party blocks resolve symbols against the defaults, the authority's and every
  // first-party block's, in order; a third-party block has a table of its own.
  later.forEach((block, i) => {
    if (container.blocks[i]?.externalSignature === undefined) {
      const own = refused(i + 1, () => boundedSymbols(block));
      overlapIsMalformed(() => table.extend(own));
    }
  });
  const blocks = later.map((block, i) =>
    refused(i + 1, () =>
      container.blocks[i]?.externalSignature !== undefined
        ? signedStatement(block, boundedSymbols(block))
        : narrowing(block, table),
    ),
  );
  return {
    rootKeyId: container.rootKeyId,
    authority,
    blocks,
    externalKeys: container.blocks.map((b) => b.externalSignature?.publicKey),
  };
}

function wire<T>(decode: () => T): T {
  try {
    return decode();
  } catch (error) {
    if (error instanceof WireError) throw new Malformed();
    throw error;
  }
}

function overlapIsMalformed<T>(run: () => T): T {
  try {
    return run();
  } catch (error) {
    if (error instanceof SymbolOverlap) throw new Malformed();
    throw error;
  }
}

function refused<T>(index: number, run: () => T): T {
  try {
    return run();
  } catch (error) {
    if (error instanceof Refusal || error instanceof ConstraintRefusal || error instanceof SymbolOverlap) {
      throw new NotMandateBlock(index, error.message);
    }
    throw error;
  }
}

/** The symbols a later block adds, bounded in number and length. */
function boundedSymbols(block: BlockProto): SymbolTable {
  if (block.symbols.length > MAX_SYMBOLS || block.symbols.some((s) => Buffer.byteLength(s) > MAX_STRING)) {
    throw new Refusal("a block states too many strings, or too long a one");
  }
  return SymbolTable.from(block.symbols);
}

/** The parts no mandate/v1 block has. */
function plain(block: BlockProto): void {
  if (block.rules > 0) throw new Refusal("a block may not carry rules");
  if (block.scope > 0 || block.publicKeys > 0) throw new Refusal("a block may not change what it trusts");
}

/** A third-party block: an attested hop or a moved binding. */
function signedStatement(block: BlockProto, table: SymbolTable): Stated {
  const ONE_FACT = "a signed block states exactly one `hop($agent)` or `holder_key($jkt)`, and nothing else";
  plain(block);
  const [fact, ...more] = block.facts;
  if (block.checks.length > 0 || fact === undefined || more.length > 0) throw new Refusal(ONE_FACT);
  const name = table.get(fact.name);
  const [term, ...extra] = fact.terms;
  if (term === undefined || extra.length > 0) throw new Refusal(ONE_FACT);
  if (name === "hop") return { type: "attestation", agent: string(term, table) };
  if (name === "holder_key") {
    const jkt = string(term, table);
    if (!isThumbprint(jkt)) throw new Refusal("a holder key is an RFC 7638 thumbprint (43 base64url characters)");
    return { type: "rebind", holderKey: jkt };
  }
  throw new Refusal(ONE_FACT);
}

function narrowing(block: BlockProto, table: SymbolTable): Stated {
  plain(block);
  const narrowed: Narrowing = { constraints: [] };
  const stated: Array<[ArgConstraint, Kind]> = [];
  for (const fact of block.facts) {
    const name = table.get(fact.name);
    if (name === "delegate" && fact.terms.length === 1) {
      if (narrowed.delegate !== undefined) throw new Refusal("a block names at most one delegate");
      narrowed.delegate = string(fact.terms[0], table);
    } else if (name === "constraint") {
      if (stated.length === MAX_CONSTRAINTS) throw new Refusal("too many constraints in one block");
      stated.push(readFact(fact.terms, (t) => string(t, table)));
    } else if (name === "hop") {
      throw new Refusal("a hop claimed without a signature of its own");
    } else if (name === "holder_key") {
      throw new Refusal("a binding moved without the holder's signature");
    } else {
      throw new Refusal("the only facts a holder may state are `delegate($agent)` and `constraint(…)`");
    }
  }
  if (block.checks.length > 3 + stated.length) throw new Refusal("too many checks");
  const constraintChecks: CheckProto[] = [];
  for (const check of block.checks) {
    if (check.queries.length === 2) {
      constraintChecks.push(check);
      continue;
    }
    narrowOnce(narrowed, check, table);
  }
  // Each `constraint` fact comes with exactly the check it compiles to, in the same order.
  if (constraintChecks.length !== stated.length) {
    throw new Refusal("each constraint fact comes with its check, and only those");
  }
  const version = block.version ?? 0;
  stated.forEach(([constraint, kind], i) => {
    const expected = expectedCheck(constraint, kind, table);
    const same = sameCheck(constraintChecks[i] as CheckProto, expected, version);
    if (same === "unreadable") throw new Refusal("a constraint's check is not readable");
    if (!same) throw new Refusal("a constraint's check is not the one its fact states");
  });
  narrowed.constraints = stated.map(([c]) => c);
  if (narrowed.rights === undefined && narrowed.resources === undefined && narrowed.expiresAt === undefined
    && narrowed.delegate === undefined && narrowed.constraints.length === 0) {
    throw new Refusal("a block must narrow something or name a delegate");
  }
  return { type: "narrowing", narrowing: narrowed };
}

/** Reads one single-query check into `narrowed`: rights, resources or expiry, each at most once. */
function narrowOnce(narrowed: Narrowing, check: CheckProto, table: SymbolTable): void {
  const [query, ...more] = check.queries;
  if (query === undefined || more.length > 0) throw new Refusal("a check has exactly one query");
  if ((check.kind ?? 0) !== 0) throw new Refusal("only `check if` narrows");
  if (query.head.terms.length > 0 || query.scope > 0) throw new Refusal("a check has no head terms and no scope");
  const [ops, ...others] = query.expressions;
  if (ops === undefined || others.length > 0) throw new Refusal("a check has exactly one expression");
  const body = query.body.map((p) => predicate(p, table));
  const once = (present: unknown): void => {
    if (present !== undefined) throw new Refusal("a block narrows each of rights, resources and expiry at most once");
  };
  const [first, second, ...rest] = body;
  if (first === undefined) {
    const found = never(ops);
    once(narrowed.rights);
    narrowed.rights = found;
  } else if (first.name === "tool" && second?.name === "operation" && rest.length === 0
    && first.terms.length === 1 && second.terms.length === 1) {
    const vars: [number, number] = [variable(first.terms[0]), variable(second.terms[0])];
    const found = rights(ops, vars, table);
    once(narrowed.rights);
    narrowed.rights = found;
  } else if (first.name === "resource" && second === undefined && first.terms.length === 1) {
    const found = resources(ops, variable(first.terms[0]), table);
    once(narrowed.resources);
    narrowed.resources = found;
  } else if (first.name === "time" && second === undefined && first.terms.length === 1) {
    const found = expiry(ops, variable(first.terms[0]));
    once(narrowed.expiresAt);
    narrowed.expiresAt = found;
  } else {
    throw new Refusal("not a mandate/v1 check");
  }
}

function predicate(p: PredicateProto, table: SymbolTable): { name: string; terms: TermProto[] } {
  const name = table.get(p.name);
  if (name === undefined) throw new Refusal("unknown symbol");
  return { name, terms: p.terms };
}

function string(term: TermProto | undefined, table: SymbolTable): string {
  if (term?.kind !== "string") throw new Refusal("expected a string");
  const value = table.get(term.value);
  if (value === undefined) throw new Refusal("unknown symbol");
  if (!printable(value)) throw new Refusal("a string must be 1 to 256 bytes, without quotes, backslashes or controls");
  return value;
}

function variable(term: TermProto | undefined): number {
  if (term?.kind !== "variable") throw new Refusal("expected a variable");
  return term.value;
}

function valueOf(op: OpProto | undefined): TermProto | undefined {
  return op?.kind === "value" ? op.term : undefined;
}

function isBinary(op: OpProto | undefined, kind: number): boolean {
  return op?.kind === "binary" && op.op === kind && op.ffiName === undefined;
}

function isParens(op: OpProto | undefined): boolean {
  return op?.kind === "unary" && op.op === 1 && op.ffiName === undefined;
}

/** The ops of a closure without parameters (the right side of `&&` and `||`). */
function closure(op: OpProto | undefined): OpProto[] | undefined {
  return op?.kind === "closure" && op.params.length === 0 ? op.ops : undefined;
}

const LESS_OR_EQUAL = 2;
const EQUAL = 4;
const CONTAINS = 5;
const HETEROGENEOUS_EQUAL = 21;
const LAZY_AND = 23;
const LAZY_OR = 24;

/** `check if false`. */
function never(ops: OpProto[]): Right[] {
  const term = valueOf(ops[0]);
  if (ops.length === 1 && term?.kind === "bool" && term.value === false) return [];
  throw new Refusal("a check without predicates is `check if false`");
}

const RIGHT = "a right is `($tool == T && $operation == O)`";

/** `$v == "string"` (or `===`): the string. */
function equals(ops: OpProto[], v: number, table: SymbolTable): string {
  const [left, right, eq] = ops;
  const subject = valueOf(left);
  if (ops.length === 3 && (isBinary(eq, HETEROGENEOUS_EQUAL) || isBinary(eq, EQUAL))
    && subject?.kind === "variable" && subject.value === v) {
    return string(valueOf(right), table);
  }
  throw new Refusal(RIGHT);
}

/** `($t == T && $o == O)`, parentheses optional. */
function pair(ops: OpProto[], [t, o]: [number, number], table: SymbolTable): Right {
  const inner = ops.length > 0 && isParens(ops[ops.length - 1]) ? ops.slice(0, -1) : ops;
  if (inner.length === 5 && isBinary(inner[4], LAZY_AND)) {
    const second = closure(inner[3]);
    if (second === undefined) throw new Refusal(RIGHT);
    return { tool: equals(inner.slice(0, 3), t, table), operation: equals(second, o, table) };
  }
  throw new Refusal(RIGHT);
}

/** `pair || pair || …`, left to right: the first pair's ops, then per pair a closure and `||`. */
function rights(ops: OpProto[], vars: [number, number], table: SymbolTable): Right[] {
  if (vars[0] === vars[1]) throw new Refusal("tool and operation need their own variables");
  const firstLength = isParens(ops[5]) ? 6 : 5;
  const found = [pair(ops.slice(0, Math.min(firstLength, ops.length)), vars, table)];
  let rest = ops.slice(Math.min(firstLength, ops.length));
  while (rest.length >= 2) {
    if (!isBinary(rest[1], LAZY_OR)) throw new Refusal("rights are joined with `||`");
    if (found.length === MAX_RIGHTS) throw new Refusal("too many rights in one block");
    const next = closure(rest[0]);
    if (next === undefined) throw new Refusal(RIGHT);
    found.push(pair(next, vars, table));
    rest = rest.slice(2);
  }
  if (rest.length > 0) throw new Refusal("rights are joined with `||`");
  return found;
}

/** `{R1, …}.contains($r)`. */
function resources(ops: OpProto[], v: number, table: SymbolTable): string[] {
  const SHAPE = "a resource check is `{R1, …}.contains($resource)`";
  const set = valueOf(ops[0]);
  const subject = valueOf(ops[1]);
  if (ops.length !== 3 || set?.kind !== "set" || subject?.kind !== "variable") throw new Refusal(SHAPE);
  if (subject.value !== v || !isBinary(ops[2], CONTAINS)) throw new Refusal(SHAPE);
  if (set.items.length > MAX_RESOURCES) throw new Refusal("a resource check names at most 64 resources");
  return set.items.map((term) => string(term, table));
}

/** `$t <= DATE`: seconds since the epoch. */
function expiry(ops: OpProto[], v: number): number {
  const SHAPE = "an expiry is `$time <= DATE`";
  if (ops.length !== 3 || !isBinary(ops[2], LESS_OR_EQUAL)) throw new Refusal(SHAPE);
  const subject = valueOf(ops[0]);
  const date = valueOf(ops[1]);
  if (subject?.kind !== "variable" || date?.kind !== "date" || subject.value !== v) throw new Refusal(SHAPE);
  if (date.value > MAX_TIMESTAMP) throw new Refusal("an expiry out of range");
  return Number(date.value);
}
