/**
 * A JSON parser that keeps what `JSON.parse` loses and mandate's argument constraints depend
 * on: whether a number was written as an integer. `2` is a number; `2.0`, `1.5` and `1e3` are
 * `JsonFloat`s, which no constraint accepts, exactly as the Rust verifier (serde_json) reads
 * them. Integers beyond ±2^53 are kept as `JsonFloat` too: they are not stated (fail closed).
 * Depth and size are bounded.
 */

/** A JSON number that is not an integer (written with a fraction or an exponent, or too large). */
export class JsonFloat {
  constructor(readonly value: number, readonly text: string) {}
  toJSON(): number {
    return this.value;
  }
}

/** The text is not JSON this parser accepts. */
export class JsonError extends Error {
  constructor(reason: string) {
    super(`invalid JSON: ${reason}`);
    this.name = "JsonError";
  }
}

/** Deepest nesting accepted (serde_json's default recursion limit is 128). */
const MAX_DEPTH = 128;

/** Parses `text`; integers are numbers, other numbers `JsonFloat`s. */
export function parseJson(text: string): unknown {
  let at = 0;
  const fail = (reason: string): never => {
    throw new JsonError(`${reason} at ${at}`);
  };
  const space = () => {
    while (at < text.length && " \t\n\r".includes(text[at] as string)) at++;
  };
  const value = (depth: number): unknown => {
    if (depth > MAX_DEPTH) fail("nested too deep");
    space();
    const c = text[at];
    if (c === "{") {
      at++;
      const out: Record<string, unknown> = {};
      space();
      if (text[at] === "}") {
        at++;
        return out;
      }
      for (;;) {
        space();
        if (text[at] !== '"') fail("expected a member name");
        const key = string();
        space();
        if (text[at] !== ":") fail("expected `:`");
        at++;
        Object.defineProperty(out, key, { value: value(depth + 1), enumerable: true, writable: true, configurable: true });
        space();
        if (text[at] === ",") {
          at++;
          continue;
        }
        if (text[at] === "}") {
          at++;
          return out;
        }
        fail("expected `,` or `}`");
      }
    }
    if (c === "[") {
      at++;
      const out: unknown[] = [];
      space();
      if (text[at] === "]") {
        at++;
        return out;
      }
      for (;;) {
        out.push(value(depth + 1));
        space();
        if (text[at] === ",") {
          at++;
          continue;
        }
        if (text[at] === "]") {
          at++;
          return out;
        }
        fail("expected `,` or `]`");
      }
    }
    if (c === '"') return string();
    for (const [word, result] of [["true", true], ["false", false], ["null", null]] as const) {
      if (text.startsWith(word, at)) {
        at += word.length;
        return result;
      }
    }
    return number();
  };
  const string = (): string => {
    const match = /^"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/.exec(text.slice(at));
    if (match === null) return fail("invalid string");
    at += match[0].length;
    return JSON.parse(match[0]) as string;
  };
  const number = (): number | JsonFloat => {
    const match = /^-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(at, at + 400));
    if (match === null) return fail("unexpected character");
    at += match[0].length;
    const parsed = Number(match[0]);
    const integer = match[1] === undefined && match[2] === undefined && Number.isSafeInteger(parsed);
    return integer ? parsed : new JsonFloat(parsed, match[0]);
  };
  const result = value(0);
  space();
  if (at !== text.length) fail("trailing characters");
  return result;
}
