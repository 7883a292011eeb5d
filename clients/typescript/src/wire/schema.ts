/**
 * The Biscuit protobuf schema (biscuit-auth 6, `format/schema.proto`), decoded into plain
 * objects: the token container, its signed blocks, and each block's symbols, facts, rules,
 * checks and expressions. Only what a mandate verifier reads is kept; unknown fields are
 * skipped as protobuf requires, and nesting is bounded.
 *
 * A singular field (scalar, message, or a member of a oneof) that occurs twice in one message is
 * refused: prost, which biscuit-wasm decodes with, merges two occurrences of an embedded message
 * (or of the same oneof member) where a decoder keeping the last would read something else, and a
 * correct serializer never writes one twice. Two members of one oneof are refused alike.
 */

import {
  WireError, bytesOf, fields, int32Of, int64Of, packedUint32, stringOf, uint32Of, uint64Of,
  type Field,
} from "./protobuf.js";

/** Deepest nesting of terms and closures read. */
const MAX_DEPTH = 16;

/** A public key as the schema states it: algorithm 0 is Ed25519, 1 is P-256 (secp256r1). */
export interface PublicKeyProto {
  algorithm: number;
  key: Uint8Array;
}

/** One block as signed in the container. */
export interface SignedBlockProto {
  block: Uint8Array;
  nextKey: PublicKeyProto | undefined;
  signature: Uint8Array;
  /** Present for a third-party block: the key that signed its contents. */
  externalSignature: { signature: Uint8Array; publicKey: PublicKeyProto | undefined } | undefined;
  version: number | undefined;
}

/** The token container. */
export interface BiscuitProto {
  rootKeyId: number | undefined;
  authority: SignedBlockProto | undefined;
  blocks: SignedBlockProto[];
}

/** A Datalog term. Symbol ids (strings, variables) are kept as numbers. */
export type TermProto =
  | { kind: "variable"; value: number }
  | { kind: "integer"; value: bigint }
  | { kind: "string"; value: number }
  | { kind: "date"; value: bigint }
  | { kind: "bytes"; value: Uint8Array }
  | { kind: "bool"; value: boolean }
  | { kind: "set"; items: TermProto[] }
  | { kind: "null" }
  | { kind: "array"; items: TermProto[] }
  | { kind: "map"; entries: number }
  | { kind: "none" };

/** One operation of an expression (postfix). */
export type OpProto =
  | { kind: "value"; term: TermProto }
  | { kind: "unary"; op: number; ffiName: bigint | undefined }
  | { kind: "binary"; op: number; ffiName: bigint | undefined }
  | { kind: "closure"; params: number[]; ops: OpProto[] }
  | { kind: "none" };

export interface PredicateProto {
  name: number;
  terms: TermProto[];
}

export interface RuleProto {
  head: PredicateProto;
  body: PredicateProto[];
  expressions: OpProto[][];
  scope: number;
}

export interface CheckProto {
  queries: RuleProto[];
  kind: number | undefined;
}

/** A decoded block. `scope` and `publicKeys` are only counted: no mandate block has any. */
export interface BlockProto {
  symbols: string[];
  version: number | undefined;
  facts: PredicateProto[];
  rules: number;
  checks: CheckProto[];
  scope: number;
  publicKeys: number;
}

function each(bytes: Uint8Array, read: (field: Field) => void): void {
  for (const field of fields(bytes)) read(field);
}

/** A oneof's key in `Singular`: every member of the oneof counts as the same field. */
const ONEOF = -1;

/** The singular fields seen so far in one message: a second occurrence is refused. */
class Singular {
  private readonly seen = new Set<number>();

  /** Marks `key` (a field number, or `ONEOF`) as read, refusing it if it was read before. */
  once(key: number): void {
    if (this.seen.has(key)) {
      throw new WireError(key === ONEOF ? "a oneof is set twice" : `singular field ${key} occurs twice`);
    }
    this.seen.add(key);
  }
}

function publicKey(bytes: Uint8Array): PublicKeyProto {
  const key: PublicKeyProto = { algorithm: 0, key: new Uint8Array() };
  const single = new Singular();
  each(bytes, (f) => {
    if (f.number === 1) {
      single.once(1);
      key.algorithm = int32Of(f);
    } else if (f.number === 2) {
      single.once(2);
      key.key = bytesOf(f);
    }
  });
  return key;
}

function signedBlock(bytes: Uint8Array): SignedBlockProto {
  const block: SignedBlockProto = {
    block: new Uint8Array(), nextKey: undefined, signature: new Uint8Array(),
    externalSignature: undefined, version: undefined,
  };
  const single = new Singular();
  each(bytes, (f) => {
    if (f.number >= 1 && f.number <= 5) single.once(f.number);
    switch (f.number) {
      case 1: block.block = bytesOf(f); break;
      case 2: block.nextKey = publicKey(bytesOf(f)); break;
      case 3: block.signature = bytesOf(f); break;
      case 4: {
        const external: { signature: Uint8Array; publicKey: PublicKeyProto | undefined } = {
          signature: new Uint8Array(), publicKey: undefined,
        };
        const inner = new Singular();
        each(bytesOf(f), (g) => {
          if (g.number === 1) {
            inner.once(1);
            external.signature = bytesOf(g);
          } else if (g.number === 2) {
            inner.once(2);
            external.publicKey = publicKey(bytesOf(g));
          }
        });
        block.externalSignature = external;
        break;
      }
      case 5: block.version = uint32Of(f); break;
    }
  });
  return block;
}

/** Decodes the token container. */
export function decodeBiscuit(bytes: Uint8Array): BiscuitProto {
  const token: BiscuitProto = { rootKeyId: undefined, authority: undefined, blocks: [] };
  let proof = false;
  const single = new Singular();
  each(bytes, (f) => {
    if (f.number === 1 || f.number === 2 || f.number === 4) single.once(f.number);
    switch (f.number) {
      case 1: token.rootKeyId = uint32Of(f); break;
      case 2: token.authority = signedBlock(bytesOf(f)); break;
      case 3: token.blocks.push(signedBlock(bytesOf(f))); break;
      case 4: proofOf(bytesOf(f)); proof = true; break;
    }
  });
  if (token.authority === undefined || !proof) throw new WireError("a token has an authority block and a proof");
  return token;
}

/** The token's proof: a oneof of the next secret and the final signature, each bytes. */
function proofOf(bytes: Uint8Array): void {
  const single = new Singular();
  each(bytes, (f) => {
    if (f.number === 1 || f.number === 2) {
      single.once(ONEOF);
      bytesOf(f);
    }
  });
}

/** A `Scope`: a oneof of a scope type and a public key index. Only its shape is checked. */
function scopeOf(bytes: Uint8Array): void {
  const single = new Singular();
  each(bytes, (f) => {
    if (f.number === 1 || f.number === 2) {
      single.once(ONEOF);
      int64Of(f);
    }
  });
}

function term(bytes: Uint8Array, depth: number): TermProto {
  if (depth > MAX_DEPTH) throw new WireError("terms nested too deep");
  let out: TermProto = { kind: "none" };
  const single = new Singular();
  each(bytes, (f) => {
    if (f.number >= 1 && f.number <= 10) single.once(ONEOF);
    switch (f.number) {
      case 1: out = { kind: "variable", value: uint32Of(f) }; break;
      case 2: out = { kind: "integer", value: int64Of(f) }; break;
      case 3: out = { kind: "string", value: symbolId(uint64Of(f)) }; break;
      case 4: out = { kind: "date", value: uint64Of(f) }; break;
      case 5: out = { kind: "bytes", value: bytesOf(f) }; break;
      case 6: out = { kind: "bool", value: uint64Of(f) !== 0n }; break;
      case 7: out = { kind: "set", items: repeatedTerms(bytesOf(f), depth) }; break;
      case 8: bytesOf(f); out = { kind: "null" }; break;
      case 9: out = { kind: "array", items: repeatedTerms(bytesOf(f), depth) }; break;
      case 10: out = { kind: "map", entries: fields(bytesOf(f)).length }; break;
    }
  });
  return out;
}

/** A symbol id: ids past 2^53 name no symbol, and read as -1. */
function symbolId(id: bigint): number {
  return id <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(id) : -1;
}

function repeatedTerms(bytes: Uint8Array, depth: number): TermProto[] {
  const items: TermProto[] = [];
  each(bytes, (f) => {
    if (f.number === 1) items.push(term(bytesOf(f), depth + 1));
  });
  return items;
}

function operator(bytes: Uint8Array): { op: number; ffiName: bigint | undefined } {
  const out = { op: 0, ffiName: undefined as bigint | undefined };
  const single = new Singular();
  each(bytes, (f) => {
    if (f.number === 1) {
      single.once(1);
      out.op = int32Of(f);
    } else if (f.number === 2) {
      single.once(2);
      out.ffiName = uint64Of(f);
    }
  });
  return out;
}

function op(bytes: Uint8Array, depth: number): OpProto {
  if (depth > MAX_DEPTH) throw new WireError("closures nested too deep");
  let out: OpProto = { kind: "none" };
  const single = new Singular();
  each(bytes, (f) => {
    if (f.number >= 1 && f.number <= 4) single.once(ONEOF);
    switch (f.number) {
      case 1: out = { kind: "value", term: term(bytesOf(f), depth + 1) }; break;
      case 2: out = { kind: "unary", ...operator(bytesOf(f)) }; break;
      case 3: out = { kind: "binary", ...operator(bytesOf(f)) }; break;
      case 4: {
        const params: number[] = [];
        const ops: OpProto[] = [];
        each(bytesOf(f), (g) => {
          if (g.number === 1) params.push(...packedUint32(g));
          else if (g.number === 2) ops.push(op(bytesOf(g), depth + 1));
        });
        out = { kind: "closure", params, ops };
        break;
      }
    }
  });
  return out;
}

function predicate(bytes: Uint8Array): PredicateProto {
  const out: PredicateProto = { name: -1, terms: [] };
  const single = new Singular();
  each(bytes, (f) => {
    if (f.number === 1) {
      single.once(1);
      out.name = symbolId(uint64Of(f));
    } else if (f.number === 2) out.terms.push(term(bytesOf(f), 0));
  });
  return out;
}

function rule(bytes: Uint8Array): RuleProto {
  const out: RuleProto = { head: { name: -1, terms: [] }, body: [], expressions: [], scope: 0 };
  const single = new Singular();
  each(bytes, (f) => {
    switch (f.number) {
      case 1: single.once(1); out.head = predicate(bytesOf(f)); break;
      case 2: out.body.push(predicate(bytesOf(f))); break;
      case 3: {
        const ops: OpProto[] = [];
        each(bytesOf(f), (g) => {
          if (g.number === 1) ops.push(op(bytesOf(g), 0));
        });
        out.expressions.push(ops);
        break;
      }
      case 4: scopeOf(bytesOf(f)); out.scope++; break;
    }
  });
  return out;
}

/** Decodes one block's contents. */
export function decodeBlock(bytes: Uint8Array): BlockProto {
  const block: BlockProto = {
    symbols: [], version: undefined, facts: [], rules: 0, checks: [], scope: 0, publicKeys: 0,
  };
  const single = new Singular();
  each(bytes, (f) => {
    switch (f.number) {
      case 1: block.symbols.push(stringOf(f)); break;
      case 2: single.once(2); stringOf(f); break;
      case 3: single.once(3); block.version = uint32Of(f); break;
      case 4: {
        let fact: PredicateProto | undefined;
        const inner = new Singular();
        each(bytesOf(f), (g) => {
          if (g.number === 1) {
            inner.once(1);
            fact = predicate(bytesOf(g));
          }
        });
        if (fact === undefined) throw new WireError("a fact has a predicate");
        block.facts.push(fact);
        break;
      }
      case 5: rule(bytesOf(f)); block.rules++; break;
      case 6: {
        const check: CheckProto = { queries: [], kind: undefined };
        const inner = new Singular();
        each(bytesOf(f), (g) => {
          if (g.number === 1) check.queries.push(rule(bytesOf(g)));
          else if (g.number === 2) {
            inner.once(2);
            check.kind = int32Of(g);
          }
        });
        block.checks.push(check);
        break;
      }
      case 7: scopeOf(bytesOf(f)); block.scope++; break;
      case 8: publicKey(bytesOf(f)); block.publicKeys++; break;
    }
  });
  return block;
}
