/**
 * The protobuf decoder reads the Datalog biscuit-wasm (prost) runs, or refuses the token: a
 * singular field written twice is merged by prost (two `closure`s of an Op, two `set`s of a
 * term) where a decoder keeping the last occurrence reads something else, so any singular
 * field, message or oneof member occurring twice in one message is malformed. The tokens here
 * are conformance vector tokens with one message rewritten (the decoder runs before any
 * signature is checked, so they need no new signatures).
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { parseJson } from "../src/index.js";
import { decodeBase64Url, encodeBase64Url } from "../src/encoding.js";
import { read } from "../src/token/vocabulary.js";
import { fields, type Field } from "../src/wire/protobuf.js";
import { repoPath } from "./support.js";

const vectors = parseJson(readFileSync(repoPath("tests/vectors/mandate-v1.json"), "utf8")) as {
  cases: Array<{ name: string; token: string }>;
};
const tokenOf = (name: string): string => {
  const found = vectors.cases.find((c) => c.name === name);
  assert.ok(found !== undefined, `vector ${name}`);
  return found.token;
};

function varint(value: bigint): number[] {
  const out: number[] = [];
  let v = BigInt.asUintN(64, value);
  do {
    const byte = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v === 0n ? byte : byte | 0x80);
  } while (v !== 0n);
  return out;
}

/** Writes fields back in order, as a protobuf serializer would. */
function encode(list: Field[]): Uint8Array {
  const out: number[] = [];
  for (const f of list) {
    if (f.kind === "varint") {
      out.push(...varint(BigInt(f.number << 3)), ...varint(f.value));
    } else if (f.kind === "bytes") {
      out.push(...varint(BigInt((f.number << 3) | 2)), ...varint(BigInt(f.value.length)), ...f.value);
    } else {
      out.push(...varint(BigInt((f.number << 3) | (f.value.length === 8 ? 1 : 5))), ...f.value);
    }
  }
  return Uint8Array.from(out);
}

/** Applies `edit` to every message reached by `path` (field numbers of embedded messages). */
function rewrite(bytes: Uint8Array, path: number[], edit: (message: Field[]) => Field[]): Uint8Array {
  const list = fields(bytes);
  if (path.length === 0) return encode(edit(list));
  const [head, ...rest] = path;
  return encode(list.map((f) => (f.number === head && f.kind === "bytes" ? { ...f, value: rewrite(f.value, rest, edit) } : f)));
}

/** The token with `edit` applied at `path` of its container; fails unless `edit` changed something. */
function crafted(name: string, path: number[], edit: (message: Field[]) => Field[] | undefined): string {
  let changed = 0;
  const bytes = rewrite(decodeBase64Url(tokenOf(name), "indifferent"), path, (message) => {
    const edited = edit(message);
    if (edited === undefined) return message;
    changed++;
    return edited;
  });
  assert.ok(changed > 0, `${name}: nothing at ${path.join(".")} to rewrite`);
  return encodeBase64Url(bytes);
}

/** The message with its first field `number` written twice (the copy right after it). */
const twice = (number: number) => (message: Field[]): Field[] | undefined => {
  const at = message.findIndex((f) => f.number === number);
  if (at < 0) return undefined;
  return [...message.slice(0, at + 1), message[at] as Field, ...message.slice(at + 1)];
};

/** `field` inserted before the first field `before` of the message. */
const inserted = (before: number, field: Field) => (message: Field[]): Field[] | undefined => {
  const at = message.findIndex((f) => f.number === before);
  if (at < 0) return undefined;
  return [...message.slice(0, at), field, ...message.slice(at)];
};

const bytesField = (number: number, value: number[] | Uint8Array): Field => ({ number, kind: "bytes", value: Uint8Array.from(value) });
const malformed = (token: string, what: string) =>
  assert.throws(() => read(token, 16), { code: "malformed" }, what);

// Paths from the container: blocks (3), a signed block's bytes (1), then in a block checks (6),
// a check's queries (1), a rule's expressions (3), an expression's ops (1).
const BLOCK = [3, 1];
const OPS = [...BLOCK, 6, 1, 3, 1];

describe("protobuf decoder", () => {
  it("reads a rewritten token unchanged when nothing is duplicated", () => {
    const same = crafted("narrowed", OPS, (message) => [...message]);
    const stated = read(same, 16).blocks[0];
    assert.equal(stated?.type, "narrowing");
    assert.deepEqual(stated?.type === "narrowing" ? stated.narrowing.rights : undefined, [{ tool: "crm", operation: "read" }]);
  });

  it("refuses an op with two closures (prost runs both closures' ops merged)", () => {
    // A hostile closure before the real one: a last-wins reader sees `rights: [crm/read]`.
    const hostile = bytesField(4, [0x12, 0x04, 0x0a, 0x02, 0x30, 0x01]);
    malformed(crafted("narrowed", OPS, inserted(4, hostile)), "two closures");
  });

  it("refuses a term with two sets (prost unions them)", () => {
    // In `{"acme/api", "acme/web"}.contains($resource)`: a second set naming another string id.
    const extra = bytesField(7, [0x0a, 0x02, 0x18, 0x00]);
    malformed(crafted("narrowed", [...OPS, 1], inserted(7, extra)), "two sets");
  });

  it("refuses two members of one oneof", () => {
    // A term that is a string and a bool; an op that is a value and a binary operator.
    malformed(crafted("narrowed", [...OPS, 1], inserted(7, { number: 6, kind: "varint", value: 1n })), "term oneof");
    malformed(crafted("narrowed", OPS, inserted(1, bytesField(3, [0x08, 0x04]))), "op oneof");
  });

  it("refuses every other singular field written twice", () => {
    const cases: Array<[string, string, number[], number]> = [
      ["narrowed", "the container's root key id", [], 1],
      ["narrowed", "the container's authority", [], 2],
      ["narrowed", "the container's proof", [], 4],
      ["narrowed", "a signed block's contents", [3], 1],
      ["narrowed", "a signed block's next key", [3], 2],
      ["narrowed", "a signed block's signature", [3], 3],
      ["narrowed", "a signed block's version", [3], 5],
      ["narrowed", "a public key's algorithm", [3, 2], 1],
      ["narrowed", "a public key's bytes", [3, 2], 2],
      ["attested", "a block's external signature", [3], 4],
      ["attested", "an external signature's signature", [3, 4], 1],
      ["attested", "an external signature's key", [3, 4], 2],
      ["narrowed", "a block's version", BLOCK, 3],
      ["narrowed", "a fact's predicate", [...BLOCK, 4], 1],
      ["narrowed", "a predicate's name", [...BLOCK, 4, 1], 1],
      ["narrowed", "a rule's head", [...BLOCK, 6, 1], 1],
      ["narrowed", "a term", [...OPS, 1], 3],
      ["narrowed", "an op's value", OPS, 1],
      ["narrowed", "an op's binary operator", OPS, 3],
      ["narrowed", "a binary operator's kind", [...OPS, 3], 1],
      ["narrowed", "a closure", OPS, 4],
      ["narrowed", "a set", [...OPS, 1], 7],
    ];
    for (const [name, what, path, number] of cases) malformed(crafted(name, path, twice(number)), what);
  });
});
