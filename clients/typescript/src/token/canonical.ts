/**
 * RFC 8785 (JCS) canonical JSON, and the SHA-256 of a call's arguments in it (mandate's
 * `src/token/canonical.rs`): what an approval bound to exact arguments carries
 * (`approval_arguments`), checked through the `arguments_sha256` fact the verifier states.
 */

import { createHash } from "node:crypto";

import { JsonFloat } from "../json.js";

/** Deepest nesting of arrays and objects written (serde_json's default recursion limit). */
export const MAX_CANONICAL_DEPTH = 128;

/** A value that has no canonical JSON form. */
export class CanonicalJsonError extends Error {
  constructor(reason: string) {
    super(`no canonical JSON: ${reason}`);
    this.name = "CanonicalJsonError";
  }
}

/**
 * RFC 8785 canonical JSON of `value`: members sorted by their UTF-16 code units, no whitespace,
 * numbers as ECMAScript writes them (a `JsonFloat` by its value), strings with the minimal
 * escapes. Members whose value is `undefined` are left out, as `JSON.stringify` does. Throws
 * `CanonicalJsonError` for what has no JSON form: `NaN`, infinities, a lone surrogate, a bigint,
 * a function, an object other than a plain one or an array, nesting deeper than
 * `MAX_CANONICAL_DEPTH`.
 */
export function canonicalJson(value: unknown): string {
  return write(value, 0);
}

/** SHA-256, lowercase hex, of the canonical JSON of a call's arguments. */
export function argumentsSha256(value: unknown): string {
  return createHash("sha256").update(canonicalJson(value), "utf8").digest("hex");
}

function write(value: unknown, depth: number): string {
  if (value === null) return "null";
  if (value === true) return "true";
  if (value === false) return "false";
  if (value instanceof JsonFloat) return number(value.value);
  if (typeof value === "number") return number(value);
  if (typeof value === "string") return string(value);
  if (typeof value !== "object") throw new CanonicalJsonError(`a ${typeof value} is not a JSON value`);
  if (depth >= MAX_CANONICAL_DEPTH) throw new CanonicalJsonError(`nested deeper than ${MAX_CANONICAL_DEPTH}`);
  if (Array.isArray(value)) return `[${value.map((item: unknown) => write(item, depth + 1)).join(",")}]`;
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) throw new CanonicalJsonError("only plain objects and arrays are JSON");
  const members = value as Record<string, unknown>;
  // The default sort compares UTF-16 code units, as RFC 8785 orders member names.
  const names = Object.keys(members).filter((name) => members[name] !== undefined).sort();
  return `{${names.map((name) => `${string(name)}:${write(members[name], depth + 1)}`).join(",")}}`;
}

function number(value: number): string {
  if (!Number.isFinite(value)) throw new CanonicalJsonError("NaN and infinities are not JSON");
  // ECMAScript's Number-to-string is RFC 8785's number form (-0 is written `0`).
  return JSON.stringify(value);
}

function string(text: string): string {
  // Well-formed JSON.stringify escapes exactly `"`, `\`, and the control characters (`\b`, `\f`,
  // `\n`, `\r`, `\t`, else `\u00xx` in lowercase), as RFC 8785 does; it writes a lone surrogate
  // as an escape, which RFC 8785 refuses.
  if (/\p{Surrogate}/u.test(text)) throw new CanonicalJsonError("a string holds a lone surrogate");
  return JSON.stringify(text);
}
