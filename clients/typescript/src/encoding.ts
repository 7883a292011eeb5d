/**
 * Strict base64url decoding, constant-time comparison and Rust's string order, shared by the
 * token reader and the proof checker. A strict decoder refuses what Node's lenient one would skip: characters outside
 * the alphabet, wrong padding, and non-zero trailing bits (a second spelling of the same bytes).
 */

import { timingSafeEqual } from "node:crypto";

/** The text is not base64url. */
export class EncodingError extends Error {}

/** Decodes base64url; padding is refused unless `padding` is "indifferent" (then optional). */
export function decodeBase64Url(text: string, padding: "none" | "indifferent" = "none"): Buffer {
  const unpadded = padding === "indifferent" ? text.replace(/={1,2}$/, "") : text;
  if (unpadded.length !== text.length && text.length % 4 !== 0) throw new EncodingError("bad padding");
  if (!/^[A-Za-z0-9_-]*$/.test(unpadded) || unpadded.length % 4 === 1) throw new EncodingError("not base64url");
  const bytes = Buffer.from(unpadded, "base64url");
  if (bytes.toString("base64url") !== unpadded) throw new EncodingError("non-canonical base64url");
  return bytes;
}

/** base64url without padding. */
export function encodeBase64Url(bytes: Uint8Array | string): string {
  return Buffer.from(bytes).toString("base64url");
}

/** Whether `a` and `b` are equal, in time that depends only on their lengths. */
export function constantTimeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Orders strings bytewise (their UTF-8), as Rust orders `String`s. */
export function compareText(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
