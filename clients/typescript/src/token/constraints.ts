/**
 * Argument constraints (mandate/v1, `src/token/constraints.rs`): what the arguments of one
 * operation may be. Each constraint is a `constraint($tool, $operation, $argument, $kind, $value)`
 * fact and the one check it compiles to:
 *
 * ```text
 * check if tool($tool), operation($operation), !($tool == TOOL && $operation == OPERATION)
 *       or arg(ARGUMENT, $value), EXPRESSION;
 * ```
 *
 * This module reads the facts, builds the exact check each one must come with (as biscuit-auth
 * compiles it, op by op, so a block's check can be compared with it before any Datalog runs),
 * decides whether a value is allowed (to name the broken constraint in a refusal), and turns a
 * call's JSON arguments into the `arg(path, value)` facts a verifier states (arguments parsed
 * with `parseJson` keep `2.0` apart from `2`, as the Rust verifier does).
 */

import { JsonFloat } from "../json.js";
import type { CheckProto, OpProto, RuleProto, TermProto } from "../wire/schema.js";
import type { SymbolTable } from "../wire/symbols.js";

/** Most `constraint` facts one block may state. */
export const MAX_CONSTRAINTS = 64;
/** Most values one `one_of` may list. */
export const MAX_ONE_OF = 32;
/** Longest glob. */
export const MAX_GLOB = 64;
/** Longest argument path. */
export const MAX_PATH = 128;
/** Most argument facts a verifier states for one call. */
export const MAX_ARGUMENT_FACTS = 64;
/** Deepest nesting followed into a call's arguments. */
export const MAX_DEPTH = 4;
/** Longest string a block may state. */
export const MAX_STRING = 256;

/** A scalar value: a string, an integer (a safe JavaScript integer) or a boolean. */
export type Scalar = string | number | boolean;

/** What one argument's values may be (the JSON shape of a grant and of the read-out). */
export type Constraint =
  | { equals: Scalar }
  | { one_of: Scalar[] }
  | { prefix: string }
  | { glob: string }
  | { range: { min?: number; max?: number } }
  | { max_length: number };

/** One constraint on one argument of one operation of one tool. */
export interface ArgConstraint {
  tool: string;
  operation: string;
  argument: string;
  constraint: Constraint;
}

/** A call's argument value as a verifier states it: a scalar, or a list of scalars of one type. */
export type ArgValue = { scalar: Scalar } | { list: Scalar[] };

/** The constraint kinds, as the fact names them. */
export const KINDS = ["equals", "one_of", "prefix", "glob", "min", "max", "max_length"] as const;
export type Kind = (typeof KINDS)[number];

/** Why a fact is not a constraint. */
export class ConstraintRefusal extends Error {}

/** Whether a string can be stated in a block: 1 to 256 bytes, no quotes, backslashes or controls. */
export function printable(value: string): boolean {
  if (value.length === 0 || Buffer.byteLength(value, "utf8") > MAX_STRING) return false;
  // `char::is_control`: the Unicode Cc category.
  return !/["\\\u0000-\u001f\u007f-\u009f]/u.test(value);
}

/** Whether an argument path is dot-joined segments of `[A-Za-z0-9_-]`, at most 128 bytes. */
export function validPath(path: string): boolean {
  return path.length <= MAX_PATH && path.split(".").every((s) => /^[A-Za-z0-9_-]+$/.test(s));
}

/** A scalar's type, as Biscuit sets require one per set. */
export function kindOf(value: Scalar): number {
  return typeof value === "boolean" ? 0 : typeof value === "number" ? 1 : 2;
}

/** Orders scalars as the Rust `Scalar` derives it: booleans, then integers, then strings (bytewise). */
export function compareScalars(a: Scalar, b: Scalar): number {
  const ka = kindOf(a);
  const kb = kindOf(b);
  if (ka !== kb) return ka - kb;
  if (typeof a === "string" && typeof b === "string") return Buffer.compare(Buffer.from(a), Buffer.from(b));
  return Number(a) - Number(b);
}

/** Why a glob is not one a constraint may state, if it is not. */
export function globProblem(glob: string): string | undefined {
  if (glob.length === 0 || Buffer.byteLength(glob) > MAX_GLOB) return `a glob is 1 to ${MAX_GLOB} bytes`;
  if (!printable(glob) || /[[\]^]/.test(glob)) {
    return "a glob has `*` and `?` and no `[`, `]`, `^`, quotes, backslashes or controls";
  }
  return undefined;
}

/** The regex a glob compiles to: `(?s)^…$`, metacharacters as one-character classes. */
export function globRegex(glob: string): string {
  let regex = "(?s)^";
  for (const c of glob) {
    if (c === "*") regex += ".*";
    else if (c === "?") regex += ".";
    else if (".+()|{}$#&-~".includes(c)) regex += `[${c}]`;
    else regex += c;
  }
  return regex + "$";
}

/** Whether `value` matches `glob` (`*`: any run of characters, `?`: one character). */
function globMatches(glob: string, value: string): boolean {
  const pattern = [...glob];
  const text = [...value];
  let p = 0;
  let t = 0;
  let star: [number, number] | undefined;
  while (t < text.length) {
    const c = pattern[p];
    if (c === "*") {
      star = [p, t];
      p++;
    } else if (c !== undefined && (c === "?" || c === text[t])) {
      p++;
      t++;
    } else if (star !== undefined) {
      p = star[0] + 1;
      t = star[1] + 1;
      star = [star[0], star[1] + 1];
    } else {
      return false;
    }
  }
  return pattern.slice(p).every((c) => c === "*");
}

const sameScalar = (a: Scalar, b: Scalar): boolean => compareScalars(a, b) === 0;

/** Whether `value` satisfies `constraint`, as the token's check decides it. */
export function allows(constraint: Constraint, value: ArgValue): boolean {
  if ("equals" in constraint) return "scalar" in value && sameScalar(constraint.equals, value.scalar);
  if ("one_of" in constraint) {
    const items = "scalar" in value ? [value.scalar] : value.list;
    return items.every((v) => constraint.one_of.some((w) => sameScalar(v, w)));
  }
  if ("prefix" in constraint) {
    return "scalar" in value && typeof value.scalar === "string" && value.scalar.startsWith(constraint.prefix);
  }
  if ("glob" in constraint) {
    return "scalar" in value && typeof value.scalar === "string" && globMatches(constraint.glob, value.scalar);
  }
  if ("range" in constraint) {
    if (!("scalar" in value) || typeof value.scalar !== "number") return false;
    const { min, max } = constraint.range;
    return (min === undefined || value.scalar >= min) && (max === undefined || value.scalar <= max);
  }
  if ("scalar" in value) {
    return typeof value.scalar === "string" && Buffer.byteLength(value.scalar) <= constraint.max_length;
  }
  // Biscuit sets hold each value once.
  const distinct = value.list.filter((v, i) => value.list.findIndex((w) => sameScalar(v, w)) === i);
  return distinct.length <= constraint.max_length;
}

function showScalar(v: Scalar): string {
  return typeof v === "string" ? `\`${v}\`` : String(v);
}

/** What a constraint requires, as a refusal names it: "must start with `acme/`". */
export function describe(constraint: Constraint): string {
  if ("equals" in constraint) return `must equal ${showScalar(constraint.equals)}`;
  if ("one_of" in constraint) return `must be one of ${constraint.one_of.map(showScalar).join(", ")}`;
  if ("prefix" in constraint) return `must start with \`${constraint.prefix}\``;
  if ("glob" in constraint) return `must match \`${constraint.glob}\``;
  if ("range" in constraint) {
    const { min, max } = constraint.range;
    if (min !== undefined && max !== undefined) return `must be an integer from ${min} to ${max}`;
    if (min !== undefined) return `must be an integer of at least ${min}`;
    if (max !== undefined) return `must be an integer of at most ${max}`;
    return "must be an integer";
  }
  return `must be at most ${constraint.max_length} long`;
}

/** The facts a constraint states: one per kind (a range with both bounds is two). */
export function factsOf(constraint: Constraint): Array<[Kind, Scalar | Scalar[]]> {
  if ("equals" in constraint) return [["equals", constraint.equals]];
  if ("one_of" in constraint) return [["one_of", constraint.one_of]];
  if ("prefix" in constraint) return [["prefix", constraint.prefix]];
  if ("glob" in constraint) return [["glob", constraint.glob]];
  if ("range" in constraint) {
    const out: Array<[Kind, Scalar]> = [];
    if (constraint.range.min !== undefined) out.push(["min", constraint.range.min]);
    if (constraint.range.max !== undefined) out.push(["max", constraint.range.max]);
    return out;
  }
  return [["max_length", constraint.max_length]];
}

/** Why a constraint is not well-formed, if it is not (as `Constraint::problem`). */
export function constraintProblem(constraint: Constraint): string | undefined {
  const text = (s: string) => (printable(s) ? undefined : "strings must be 1 to 256 bytes, without quotes, backslashes or controls");
  const integer = (n: unknown) => typeof n === "number" && Number.isSafeInteger(n);
  const scalar = (v: unknown) => typeof v === "boolean" || typeof v === "string" || integer(v);
  if ("equals" in constraint) {
    if (!scalar(constraint.equals)) return "`equals` is a string, an integer or a boolean";
    return typeof constraint.equals === "string" ? text(constraint.equals) : undefined;
  }
  if ("one_of" in constraint) {
    const values = constraint.one_of;
    if (!Array.isArray(values) || values.length === 0 || values.length > MAX_ONE_OF) {
      return `\`one_of\` lists 1 to ${MAX_ONE_OF} values`;
    }
    if (!values.every(scalar)) return "`one_of` lists strings, integers or booleans";
    const first = values[0] as Scalar;
    if (values.some((v) => kindOf(v) !== kindOf(first))) return "`one_of` lists values of one type";
    for (const v of values) if (typeof v === "string" && text(v)) return text(v);
    return undefined;
  }
  if ("prefix" in constraint) return typeof constraint.prefix === "string" ? text(constraint.prefix) : "`prefix` is a string";
  if ("glob" in constraint) return typeof constraint.glob === "string" ? globProblem(constraint.glob) : "`glob` is a string";
  if ("range" in constraint) {
    const { min, max } = constraint.range ?? {};
    if (min === undefined && max === undefined) return "a range needs `min`, `max` or both";
    if ((min !== undefined && !integer(min)) || (max !== undefined && !integer(max))) return "a range's bounds are integers";
    if (min !== undefined && max !== undefined && min > max) return "a range's `min` exceeds its `max`";
    return undefined;
  }
  if ("max_length" in constraint) {
    const n = constraint.max_length;
    return integer(n) && n >= 0 && n <= 0xffffffff ? undefined : "`max_length` is an integer from 0 to 2^32-1";
  }
  return "a constraint is one of equals, one_of, prefix, glob, range or max_length";
}

/** Reads one `constraint(…)` fact's terms; `text` resolves a string term as the block requires. */
export function readFact(terms: TermProto[], text: (term: TermProto | undefined) => string): [ArgConstraint, Kind] {
  if (terms.length !== 5) {
    throw new ConstraintRefusal("a constraint is `constraint($tool, $operation, $argument, $kind, $value)`");
  }
  const [toolTerm, operationTerm, argumentTerm, kindTerm, valueTerm] = terms as [TermProto, TermProto, TermProto, TermProto, TermProto];
  const tool = text(toolTerm);
  const operation = text(operationTerm);
  const argument = text(argumentTerm);
  if (!validPath(argument)) throw new ConstraintRefusal("an argument path is dot-joined segments of `[A-Za-z0-9_-]`");
  const kind = KINDS.find((k) => {
    try {
      return text(kindTerm) === k;
    } catch {
      return false;
    }
  });
  if (kind === undefined) throw new ConstraintRefusal("unknown constraint kind");
  const integer = (t: TermProto): number => {
    if (t.kind !== "integer") throw new ConstraintRefusal("this constraint's value is an integer");
    return safe(t.value);
  };
  const scalar = (t: TermProto): Scalar => {
    if (t.kind === "bool") return t.value;
    if (t.kind === "integer") return safe(t.value);
    if (t.kind === "string") return text(t);
    throw new ConstraintRefusal("a constraint's value is a string, an integer or a boolean");
  };
  let constraint: Constraint;
  switch (kind) {
    case "equals": constraint = { equals: scalar(valueTerm) }; break;
    case "one_of": {
      if (valueTerm.kind !== "set" || valueTerm.items.length === 0 || valueTerm.items.length > MAX_ONE_OF) {
        throw new ConstraintRefusal("`one_of` is a set of 1 to 32 values");
      }
      constraint = { one_of: valueTerm.items.map(scalar).sort(compareScalars) };
      break;
    }
    case "prefix": constraint = { prefix: text(valueTerm) }; break;
    case "glob": {
      const glob = text(valueTerm);
      if (globProblem(glob) !== undefined) throw new ConstraintRefusal("not a glob");
      constraint = { glob };
      break;
    }
    case "min": constraint = { range: { min: integer(valueTerm) } }; break;
    case "max": constraint = { range: { max: integer(valueTerm) } }; break;
    case "max_length": {
      const n = integer(valueTerm);
      if (n < 0 || n > 0xffffffff) throw new ConstraintRefusal("`max_length` is 0 to 2^32-1");
      constraint = { max_length: n };
      break;
    }
  }
  return [{ tool, operation, argument, constraint }, kind];
}

/** An integer term as a JavaScript number; integers past 2^53 are refused (fail closed). */
function safe(value: bigint): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new ConstraintRefusal("an integer beyond ±2^53 is not supported");
  }
  return Number(value);
}

// Op codes of the Biscuit schema.
const NEGATE = 0;
const PARENS = 1;
const LENGTH = 2;
const LESS_OR_EQUAL = 2;
const GREATER_OR_EQUAL = 3;
const CONTAINS = 5;
const PREFIX = 6;
const REGEX = 8;
const HETEROGENEOUS_EQUAL = 21;
const LAZY_AND = 23;

/**
 * The check a `constraint` fact of `kind` must come with, as biscuit-auth compiles it into a
 * block whose symbols are `table` (new symbols interned in order, as its compiler does).
 */
export function expectedCheck(c: ArgConstraint, kind: Kind, table: SymbolTable): CheckProto {
  const found = factsOf(c.constraint).find(([k]) => k === kind);
  if (found === undefined) throw new ConstraintRefusal("a constraint that cannot be checked");
  const value = kind === "glob" ? globRegex(found[1] as string) : found[1];
  const intern = table.scratch();
  const str = (s: string): TermProto => ({ kind: "string", value: intern(s) });
  const variable = (s: string): TermProto => ({ kind: "variable", value: intern(s) });
  const val = (t: TermProto): OpProto => ({ kind: "value", term: t });
  const bin = (op: number): OpProto => ({ kind: "binary", op, ffiName: undefined });
  const un = (op: number): OpProto => ({ kind: "unary", op, ffiName: undefined });
  const scalarTerm = (v: Scalar): TermProto =>
    typeof v === "boolean" ? { kind: "bool", value: v } : typeof v === "number" ? { kind: "integer", value: BigInt(v) } : str(v);

  const head1 = { name: intern("query"), terms: [] };
  const body1 = [
    { name: intern("tool"), terms: [variable("tool")] },
    { name: intern("operation"), terms: [variable("operation")] },
  ];
  const guard: OpProto[] = [
    val(variable("tool")), val(str(c.tool)), bin(HETEROGENEOUS_EQUAL),
    { kind: "closure", params: [], ops: [val(variable("operation")), val(str(c.operation)), bin(HETEROGENEOUS_EQUAL)] },
    bin(LAZY_AND), un(PARENS), un(NEGATE),
  ];
  const head2 = { name: intern("query"), terms: [] };
  const body2 = [{ name: intern("arg"), terms: [str(c.argument), variable("value")] }];
  let expression: OpProto[];
  switch (kind) {
    case "equals": expression = [val(variable("value")), val(scalarTerm(value as Scalar)), bin(HETEROGENEOUS_EQUAL)]; break;
    case "one_of": {
      const items = (value as Scalar[]).map(scalarTerm);
      expression = [val({ kind: "set", items }), val(variable("value")), bin(CONTAINS)];
      break;
    }
    case "prefix": expression = [val(variable("value")), val(str(value as string)), bin(PREFIX)]; break;
    case "glob": expression = [val(variable("value")), val(str(value as string)), bin(REGEX)]; break;
    case "min": expression = [val(variable("value")), val(scalarTerm(value as number)), bin(GREATER_OR_EQUAL)]; break;
    case "max": expression = [val(variable("value")), val(scalarTerm(value as number)), bin(LESS_OR_EQUAL)]; break;
    case "max_length": expression = [val(variable("value")), un(LENGTH), val(scalarTerm(value as number)), bin(LESS_OR_EQUAL)]; break;
  }
  const rule = (head: RuleProto["head"], body: RuleProto["body"], ops: OpProto[]): RuleProto => ({
    head, body, expressions: [ops], scope: 0,
  });
  return { queries: [rule(head1, body1, guard), rule(head2, body2, expression)], kind: 0 };
}

/** A check is not readable as biscuit-auth reads one (`proto_check_to_token_check`). */
class Unreadable extends Error {}

/**
 * A check in a canonical text form: what biscuit-auth's conversion of the serialized check
 * yields, with sets as sets. Two checks are equal exactly when their canonical forms are.
 * Throws when biscuit-auth would refuse to read the check.
 */
export function canonicalCheck(check: CheckProto, version: number): string {
  const kind = check.kind ?? 0;
  if (kind < 0 || kind > 2) throw new Unreadable();
  return JSON.stringify({ kind, queries: check.queries.map((q) => canonicalRule(q, version)) });
}

/** Whether `actual` (as serialized in a block of `version`) is the `expected` check. */
export function sameCheck(actual: CheckProto, expected: CheckProto, version: number): boolean | "unreadable" {
  let canonical: string;
  try {
    canonical = canonicalCheck(actual, version);
  } catch {
    return "unreadable";
  }
  return canonical === canonicalCheck(expected, version);
}

function canonicalRule(rule: RuleProto, version: number): unknown {
  // Datalog 3.1 (block version 4) introduced scopes.
  if (version < 4 && rule.scope > 0) throw new Unreadable();
  const predicate = (p: RuleProto["head"]) => [p.name, p.terms.map(canonicalTerm)];
  return {
    head: predicate(rule.head),
    body: rule.body.map(predicate),
    expressions: rule.expressions.map((ops) => ops.map(canonicalOp)),
    scope: rule.scope,
  };
}

const SET_KINDS: Record<string, number> = { integer: 2, string: 3, date: 4, bytes: 5, bool: 6, null: 8, array: 9, map: 10 };

function canonicalTerm(term: TermProto): string {
  switch (term.kind) {
    case "none": throw new Unreadable();
    case "variable": return `var:${term.value}`;
    case "integer": return `int:${term.value}`;
    case "string": return `str:${term.value}`;
    case "date": return `date:${term.value}`;
    case "bytes": return `bytes:${Buffer.from(term.value).toString("hex")}`;
    case "bool": return `bool:${term.value}`;
    case "null": return "null";
    case "array": return `array:[${term.items.map(canonicalTerm).join(",")}]`;
    // Maps never occur in a mandate check: any map differs from every expected term.
    case "map": return `map:${term.entries}`;
    case "set": {
      let kind: number | undefined;
      const items = new Set<string>();
      for (const item of term.items) {
        const k = SET_KINDS[item.kind];
        if (k === undefined) throw new Unreadable();
        if (kind !== undefined && kind !== k) throw new Unreadable();
        kind = k;
        items.add(canonicalTerm(item));
      }
      return `set:{${[...items].sort().join(",")}}`;
    }
  }
}

function canonicalOp(op: OpProto): string {
  switch (op.kind) {
    case "none": throw new Unreadable();
    case "value": return `value(${canonicalTerm(op.term)})`;
    case "unary": {
      // Unary kinds: Negate, Parens, Length, TypeOf, and 4 (Ffi) with a name.
      if (op.op < 0 || op.op > 4) throw new Unreadable();
      if ((op.op === 4) !== (op.ffiName !== undefined)) throw new Unreadable();
      return `unary(${op.op},${op.ffiName ?? ""})`;
    }
    case "binary": {
      // Binary kinds 0..29; 28 (Ffi) carries a name.
      if (op.op < 0 || op.op > 29) throw new Unreadable();
      if ((op.op === 28) !== (op.ffiName !== undefined)) throw new Unreadable();
      return `binary(${op.op},${op.ffiName ?? ""})`;
    }
    case "closure": return `closure([${op.params.join(",")}],[${op.ops.map(canonicalOp).join(",")}])`;
  }
}

/**
 * The arguments of a call, read from its JSON object: strings, integers and booleans by their
 * path (`options.owner`), arrays of scalars of one type as lists. Floats, nulls, other arrays and
 * anything deeper than {@link MAX_DEPTH} are not stated. Only paths in `wanted` are kept (at most
 * {@link MAX_ARGUMENT_FACTS}, in sorted order as the Rust verifier takes them).
 */
export function argumentsFromJson(args: unknown, wanted: Iterable<string>): Map<string, ArgValue> {
  const found = new Map<string, ArgValue>();
  if (!isObject(args)) return found;
  const paths = [...new Set(wanted)].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  for (const path of paths.slice(0, MAX_ARGUMENT_FACTS)) {
    const value = lookup(args, path);
    const stated = value === undefined ? undefined : argValue(value);
    if (stated !== undefined) found.set(path, stated);
  }
  return found;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof JsonFloat);
}

function lookup(members: Record<string, unknown>, path: string): unknown {
  const segments = path.split(".");
  const own = (o: Record<string, unknown>, k: string) => (Object.hasOwn(o, k) ? o[k] : undefined);
  let value = own(members, segments[0] ?? "");
  for (let depth = 0; depth < segments.length - 1; depth++) {
    if (depth + 1 >= MAX_DEPTH || !isObject(value)) return undefined;
    value = own(value, segments[depth + 1] ?? "");
  }
  return value;
}

function scalarOf(value: unknown): Scalar | undefined {
  if (typeof value === "boolean" || typeof value === "string") return value;
  // A JSON integer (no float; JavaScript cannot tell `2.0` from `2`).
  if (typeof value === "number" && Number.isSafeInteger(value)) return value;
  return undefined;
}

function argValue(value: unknown): ArgValue | undefined {
  if (Array.isArray(value)) {
    const list = value.map(scalarOf);
    if (list.some((v) => v === undefined)) return undefined;
    const scalars = list as Scalar[];
    const first = scalars[0];
    if (first !== undefined && scalars.some((v) => kindOf(v) !== kindOf(first))) return undefined;
    return { list: scalars };
  }
  const scalar = scalarOf(value);
  return scalar === undefined ? undefined : { scalar };
}
