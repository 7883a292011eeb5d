"""A minimal, bounded protobuf reader for the Biscuit token format (``schema.proto`` of
biscuit-auth 6), enough to read a token's blocks before any signature is checked or any Datalog
runs.

It decodes as prost (the Rust library) does: unknown fields are skipped, a repeated or
re-sent embedded message is merged, the last value of a scalar wins, integers are truncated
to their declared width. Anything malformed (a truncated field, an over-long varint, a wrong
wire type for a known field, groups, invalid UTF-8, nesting deeper than 100) raises
:class:`WireError`. Every read is bounded by the input's length.

Terms and ops are plain tuples, so they compare and hash by value:

- a term is ``(kind, value)``, kind one of ``variable integer string date bytes bool set null
  array map none`` (``none``: no content); a set or array holds a tuple of terms, a map a tuple
  of ``(key, term)`` with key ``("integer"|"string", int)``;
- an op is ``("value", term)``, ``("unary", kind, ffi_name)``, ``("binary", kind, ffi_name)``,
  ``("closure", params, ops)`` or ``("none",)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")

#: As prost: the deepest nesting of messages decoded.
MAX_DEPTH = 100

VARINT, FIXED64, LENGTH, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5

Term = tuple[Any, ...]
Op = tuple[Any, ...]


class WireError(ValueError):
    """The bytes are not a well-formed message of the Biscuit schema."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        if shift == 63 and byte > 1:
            raise WireError("varint overflows 64 bits")
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
    raise WireError("varint longer than 10 bytes")


def fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """Each field of one message: ``(number, wire type, value)``; the value is an int for
    varints and fixed widths, bytes for length-delimited fields."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0 or number > 0x1FFFFFFF:
            raise WireError("invalid field number")
        value: int | bytes
        if wire == VARINT:
            value, pos = _varint(data, pos)
        elif wire == FIXED64:
            if pos + 8 > end:
                raise WireError("truncated fixed64")
            value, pos = int.from_bytes(data[pos : pos + 8], "little"), pos + 8
        elif wire == FIXED32:
            if pos + 4 > end:
                raise WireError("truncated fixed32")
            value, pos = int.from_bytes(data[pos : pos + 4], "little"), pos + 4
        elif wire == LENGTH:
            length, pos = _varint(data, pos)
            if length > end - pos:
                raise WireError("truncated length-delimited field")
            value, pos = data[pos : pos + length], pos + length
        else:
            raise WireError("groups and unknown wire types are not part of the schema")
        yield number, wire, value


def _u32(v: int) -> int:
    return v & 0xFFFFFFFF


def _u64(v: int) -> int:
    return v & 0xFFFFFFFFFFFFFFFF


def _i64(v: int) -> int:
    v = _u64(v)
    return v - (1 << 64) if v >= 1 << 63 else v


def _i32(v: int) -> int:
    v = _u32(v)
    return v - (1 << 32) if v >= 1 << 31 else v


def _expect(wire: int, want: int) -> None:
    if wire != want:
        raise WireError("a field has the wrong wire type")


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("a string is not UTF-8") from None


def _depth(depth: int) -> int:
    if depth >= MAX_DEPTH:
        raise WireError("messages nested too deep")
    return depth + 1


# --- messages ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublicKey:
    """``PublicKey``: algorithm 0 is Ed25519, 1 is secp256r1 (P-256, SEC1 compressed)."""

    algorithm: int = 0
    key: bytes = b""


@dataclass(frozen=True, slots=True)
class ExternalSignature:
    """A third-party block's signature and the key that made it."""

    signature: bytes = b""
    public_key: PublicKey = field(default_factory=PublicKey)


@dataclass(frozen=True, slots=True)
class SignedBlock:
    """One block as serialized, with its signature (and a third party's, if any)."""

    block: bytes = b""
    external_signature: ExternalSignature | None = None
    version: int | None = None


@dataclass(frozen=True, slots=True)
class Container:
    """The outer ``Biscuit`` message."""

    root_key_id: int | None
    authority: SignedBlock
    blocks: tuple[SignedBlock, ...]


@dataclass(frozen=True, slots=True)
class Predicate:
    name: int
    terms: tuple[Term, ...]


@dataclass(frozen=True, slots=True)
class Rule:
    head: Predicate
    body: tuple[Predicate, ...]
    expressions: tuple[tuple[Op, ...], ...]
    scope: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True, slots=True)
class Check:
    queries: tuple[Rule, ...]
    kind: int | None


@dataclass(frozen=True, slots=True)
class Block:
    """A block's content: symbols, facts, rules, checks, scopes and public keys."""

    symbols: tuple[str, ...]
    version: int | None
    facts: tuple[Predicate, ...]
    rules: tuple[Rule, ...]
    checks: tuple[Check, ...]
    scope: tuple[tuple[Any, ...], ...]
    public_keys: tuple[PublicKey, ...]


def _merged(parts: list[bytes]) -> bytes:
    # Protobuf merges a re-sent embedded message: decoding the concatenation does just that.
    return b"".join(parts)


def _public_key(data: bytes) -> PublicKey:
    algorithm, key = 0, b""
    for number, wire, value in fields(data):
        if number == 1:
            _expect(wire, VARINT)
            algorithm = _i32(value)
        elif number == 2:
            _expect(wire, LENGTH)
            key = value
    return PublicKey(algorithm, key)


def _external(data: bytes) -> ExternalSignature:
    signature, keys = b"", []
    for number, wire, value in fields(data):
        if number == 1:
            _expect(wire, LENGTH)
            signature = value
        elif number == 2:
            _expect(wire, LENGTH)
            keys.append(value)
    return ExternalSignature(signature, _public_key(_merged(keys)))


def _signed_block(data: bytes) -> SignedBlock:
    block, external, version, seen_next = b"", [], None, []
    for number, wire, value in fields(data):
        if number == 1:
            _expect(wire, LENGTH)
            block = value
        elif number == 2:
            _expect(wire, LENGTH)
            seen_next.append(value)
        elif number == 3:
            _expect(wire, LENGTH)
        elif number == 4:
            _expect(wire, LENGTH)
            external.append(value)
        elif number == 5:
            _expect(wire, VARINT)
            version = _u32(value)
    _public_key(_merged(seen_next))
    return SignedBlock(block, _external(_merged(external)) if external else None, version)


def container(data: bytes) -> Container:
    """Decodes the outer ``Biscuit`` message (blocks stay serialized)."""
    root_key_id: int | None = None
    authority: list[bytes] = []
    blocks: list[SignedBlock] = []
    for number, wire, value in fields(data):
        if number == 1:
            _expect(wire, VARINT)
            root_key_id = _u32(value)
        elif number == 2:
            _expect(wire, LENGTH)
            authority.append(value)
        elif number == 3:
            _expect(wire, LENGTH)
            blocks.append(_signed_block(value))
        elif number == 4:
            _expect(wire, LENGTH)
            for n, w, _v in fields(value):
                if n in (1, 2):
                    _expect(w, LENGTH)
    return Container(root_key_id, _signed_block(_merged(authority)), tuple(blocks))


def _oneof(data: bytes, known: range, messages: frozenset[int]) -> tuple[int, Any] | None:
    """The last variant of a oneof (unknown fields skipped), merging a message variant sent
    more than once in a row."""
    chosen: tuple[int, Any] | None = None
    for number, wire, value in fields(data):
        if number not in known:
            continue
        if number in messages:
            _expect(wire, LENGTH)
            if chosen is not None and chosen[0] == number:
                chosen = (number, chosen[1] + value)
            else:
                chosen = (number, value)
        else:
            chosen = (number, (wire, value))
    return chosen


_TERM_MESSAGES = frozenset({5, 7, 8, 9, 10})


def term(data: bytes, depth: int = 0) -> Term:
    """Decodes a ``Term``."""
    depth = _depth(depth)
    chosen = _oneof(data, range(1, 11), _TERM_MESSAGES)
    if chosen is None:
        return ("none", None)
    number, value = chosen
    if number in (1, 2, 3, 4, 6):
        wire, raw = value
        _expect(wire, VARINT)
        if number == 1:
            return ("variable", _u32(raw))
        if number == 2:
            return ("integer", _i64(raw))
        if number == 3:
            return ("string", _u64(raw))
        if number == 4:
            return ("date", _u64(raw))
        return ("bool", raw != 0)
    if number == 5:
        return ("bytes", bytes(value))
    if number == 8:
        for _ in fields(value):
            pass
        return ("null", None)
    if number in (7, 9):
        items = []
        for n, wire, raw in fields(value):
            if n == 1:
                _expect(wire, LENGTH)
                items.append(term(raw, depth))
        return ("set" if number == 7 else "array", tuple(items))
    if number == 10:
        entries = []
        for n, wire, raw in fields(value):
            if n == 1:
                _expect(wire, LENGTH)
                entries.append(_map_entry(raw, depth))
        return ("map", tuple(entries))
    raise WireError("unreachable term variant")


def _map_entry(data: bytes, depth: int) -> tuple[tuple[str, int] | None, Term]:
    key_parts: list[bytes] = []
    value_parts: list[bytes] = []
    for number, wire, value in fields(data):
        if number == 1:
            _expect(wire, LENGTH)
            key_parts.append(value)
        elif number == 2:
            _expect(wire, LENGTH)
            value_parts.append(value)
    key: tuple[str, int] | None = None
    for number, wire, value in fields(_merged(key_parts)):
        if number == 1:
            _expect(wire, VARINT)
            key = ("integer", _i64(value))
        elif number == 2:
            _expect(wire, VARINT)
            key = ("string", _u64(value))
    return key, term(_merged(value_parts), depth)


def predicate(data: bytes, depth: int = 0) -> Predicate:
    """Decodes a ``Predicate``."""
    depth = _depth(depth)
    name, terms = 0, []
    for number, wire, value in fields(data):
        if number == 1:
            _expect(wire, VARINT)
            name = _u64(value)
        elif number == 2:
            _expect(wire, LENGTH)
            terms.append(term(value, depth))
    return Predicate(name, tuple(terms))


def _operator(data: bytes) -> tuple[int, int | None]:
    kind, ffi = 0, None
    for number, wire, value in fields(data):
        if number == 1:
            _expect(wire, VARINT)
            kind = _i32(value)
        elif number == 2:
            _expect(wire, VARINT)
            ffi = _u64(value)
    return kind, ffi


def _packed_or_plain(wire: int, value: Any, into: list[int]) -> None:
    if wire == VARINT:
        into.append(_u32(value))
        return
    _expect(wire, LENGTH)
    pos = 0
    while pos < len(value):
        item, pos = _varint(value, pos)
        into.append(_u32(item))


_OP_MESSAGES = frozenset({1, 2, 3, 4})


def op(data: bytes, depth: int = 0) -> Op:
    """Decodes an ``Op``."""
    depth = _depth(depth)
    chosen = None
    for number, wire, value in fields(data):
        if number in _OP_MESSAGES:
            _expect(wire, LENGTH)
            chosen = (number, chosen[1] + value) if chosen and chosen[0] == number else (number, value)
    if chosen is None:
        return ("none",)
    number, raw = chosen
    if number == 1:
        return ("value", term(raw, depth))
    if number == 2:
        return ("unary", *_operator(raw))
    if number == 3:
        return ("binary", *_operator(raw))
    params: list[int] = []
    ops: list[Op] = []
    for n, wire, value in fields(raw):
        if n == 1:
            _packed_or_plain(wire, value, params)
        elif n == 2:
            _expect(wire, LENGTH)
            ops.append(op(value, depth))
    return ("closure", tuple(params), tuple(ops))


def _expression(data: bytes, depth: int) -> tuple[Op, ...]:
    depth = _depth(depth)
    ops = []
    for number, wire, value in fields(data):
        if number == 1:
            _expect(wire, LENGTH)
            ops.append(op(value, depth))
    return tuple(ops)


def _scope(data: bytes) -> tuple[Any, ...]:
    chosen: tuple[Any, ...] = ("none",)
    for number, wire, value in fields(data):
        if number == 1:
            _expect(wire, VARINT)
            chosen = ("type", _i32(value))
        elif number == 2:
            _expect(wire, VARINT)
            chosen = ("public_key", _i64(value))
    return chosen


def rule(data: bytes, depth: int = 0) -> Rule:
    """Decodes a ``Rule``."""
    depth = _depth(depth)
    head: list[bytes] = []
    body, expressions, scope = [], [], []
    for number, wire, value in fields(data):
        if number == 1:
            _expect(wire, LENGTH)
            head.append(value)
        elif number == 2:
            _expect(wire, LENGTH)
            body.append(predicate(value, depth))
        elif number == 3:
            _expect(wire, LENGTH)
            expressions.append(_expression(value, depth))
        elif number == 4:
            _expect(wire, LENGTH)
            scope.append(_scope(value))
    return Rule(predicate(_merged(head), depth), tuple(body), tuple(expressions), tuple(scope))


def check(data: bytes, depth: int = 0) -> Check:
    """Decodes a ``Check``."""
    depth = _depth(depth)
    queries, kind = [], None
    for number, wire, value in fields(data):
        if number == 1:
            _expect(wire, LENGTH)
            queries.append(rule(value, depth))
        elif number == 2:
            _expect(wire, VARINT)
            kind = _i32(value)
    return Check(tuple(queries), kind)


def _fact(data: bytes) -> Predicate:
    parts = []
    for number, wire, value in fields(data):
        if number == 1:
            _expect(wire, LENGTH)
            parts.append(value)
    return predicate(_merged(parts), 1)


def block(data: bytes) -> Block:
    """Decodes a ``Block``."""
    symbols, facts, rules, checks, scope, keys = [], [], [], [], [], []
    version: int | None = None
    for number, wire, value in fields(data):
        if number == 1:
            _expect(wire, LENGTH)
            symbols.append(_text(value))
        elif number == 2:
            _expect(wire, LENGTH)
            _text(value)
        elif number == 3:
            _expect(wire, VARINT)
            version = _u32(value)
        elif number == 4:
            _expect(wire, LENGTH)
            facts.append(_fact(value))
        elif number == 5:
            _expect(wire, LENGTH)
            rules.append(rule(value))
        elif number == 6:
            _expect(wire, LENGTH)
            checks.append(check(value))
        elif number == 7:
            _expect(wire, LENGTH)
            scope.append(_scope(value))
        elif number == 8:
            _expect(wire, LENGTH)
            keys.append(_public_key(value))
    return Block(
        tuple(symbols), version, tuple(facts), tuple(rules), tuple(checks), tuple(scope), tuple(keys)
    )


def decode(decoder: Callable[[bytes], T], data: bytes) -> T:
    """Runs ``decoder``, turning any failure of the bytes into :class:`WireError`."""
    try:
        return decoder(data)
    except RecursionError:
        raise WireError("messages nested too deep") from None
