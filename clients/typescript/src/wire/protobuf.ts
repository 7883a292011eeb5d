/**
 * A minimal, bounded protobuf reader: just enough of the wire format to decode the Biscuit
 * schema (`schema.ts`). Every length is checked against the bytes left, varints are at most ten
 * bytes, nesting is bounded by the callers, and any inconsistency throws `WireError`.
 */

/** The bytes are not a well-formed protobuf message. */
export class WireError extends Error {
  constructor(reason: string) {
    super(`malformed protobuf: ${reason}`);
    this.name = "WireError";
  }
}

/** Wire types of protobuf fields. */
const VARINT = 0;
const FIXED64 = 1;
const BYTES = 2;
const FIXED32 = 5;

/** One field as read from the wire: its number and its raw value (a varint or bytes). */
export type Field =
  | { readonly number: number; readonly kind: "varint"; readonly value: bigint }
  | { readonly number: number; readonly kind: "bytes" | "fixed"; readonly value: Uint8Array };

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Reads the fields of one message, in order. Groups (wire types 3 and 4) are refused. */
export function fields(bytes: Uint8Array): Field[] {
  const out: Field[] = [];
  let at = 0;
  const varint = (): bigint => {
    let result = 0n;
    for (let i = 0; i < 10; i++) {
      const byte = bytes[at];
      if (byte === undefined) throw new WireError("truncated varint");
      at++;
      result |= BigInt(byte & 0x7f) << BigInt(7 * i);
      if ((byte & 0x80) === 0) return BigInt.asUintN(64, result);
    }
    throw new WireError("varint longer than ten bytes");
  };
  const take = (length: number): Uint8Array => {
    if (length > bytes.length - at) throw new WireError("length past the end");
    const slice = bytes.subarray(at, at + length);
    at += length;
    return slice;
  };
  while (at < bytes.length) {
    const key = varint();
    const number = Number(key >> 3n);
    const type = Number(key & 7n);
    if (number === 0 || number > 536_870_911) throw new WireError("invalid field number");
    switch (type) {
      case VARINT:
        out.push({ number, kind: "varint", value: varint() });
        break;
      case BYTES: {
        const length = varint();
        if (length > BigInt(bytes.length)) throw new WireError("length past the end");
        out.push({ number, kind: "bytes", value: take(Number(length)) });
        break;
      }
      case FIXED64:
        out.push({ number, kind: "fixed", value: take(8) });
        break;
      case FIXED32:
        out.push({ number, kind: "fixed", value: take(4) });
        break;
      default:
        throw new WireError(`unsupported wire type ${type}`);
    }
  }
  return out;
}

/** The field's bytes, refusing any other wire type. */
export function bytesOf(field: Field): Uint8Array {
  if (field.kind !== "bytes") throw new WireError(`field ${field.number} is not length-delimited`);
  return field.value;
}

/** The field's varint, refusing any other wire type. */
export function varintOf(field: Field): bigint {
  if (field.kind !== "varint") throw new WireError(`field ${field.number} is not a varint`);
  return field.value;
}

/** A UTF-8 string field. */
export function stringOf(field: Field): string {
  try {
    return utf8.decode(bytesOf(field));
  } catch (error) {
    if (error instanceof WireError) throw error;
    throw new WireError("a string is not UTF-8");
  }
}

/** A `uint32` field (truncated to 32 bits, as protobuf decoders do). */
export function uint32Of(field: Field): number {
  return Number(BigInt.asUintN(32, varintOf(field)));
}

/** An `int32` or enum field. */
export function int32Of(field: Field): number {
  return Number(BigInt.asIntN(32, varintOf(field)));
}

/** An `int64` field. */
export function int64Of(field: Field): bigint {
  return BigInt.asIntN(64, varintOf(field));
}

/** A `uint64` field. */
export function uint64Of(field: Field): bigint {
  return varintOf(field);
}

/** A repeated `uint32` field, packed or not. */
export function packedUint32(field: Field): number[] {
  if (field.kind === "varint") return [uint32Of(field)];
  const packed = bytesOf(field);
  const values: number[] = [];
  let at = 0;
  while (at < packed.length) {
    let result = 0n;
    let done = false;
    for (let i = 0; i < 10 && !done; i++) {
      const byte = packed[at];
      if (byte === undefined) throw new WireError("truncated packed varint");
      at++;
      result |= BigInt(byte & 0x7f) << BigInt(7 * i);
      done = (byte & 0x80) === 0;
    }
    if (!done) throw new WireError("varint longer than ten bytes");
    values.push(Number(BigInt.asUintN(32, result)));
  }
  return values;
}
