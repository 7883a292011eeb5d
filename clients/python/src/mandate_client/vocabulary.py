"""The mandate/v1 block vocabulary (``docs/token-schema.md``): what a block may state, read from
the token's serialized bytes before any signature is checked or any Datalog runs.

Anyone holding a Biscuit can append a block, and a hostile block's Datalog can make a single
evaluation step run for seconds. So every block after the authority is read here, from its
protobuf form, and the whole token is refused (``not_mandate_block``) unless each block is one of
the documented shapes. This is a port of mandate's ``src/token/vocabulary.rs`` and of the
authority read of ``src/token/authority.rs``; the argument constraints of
``src/token/constraints.rs`` (each ``constraint`` fact must come with exactly the check it
compiles to) are in :mod:`mandate_client.constraints`, and the symbol table in
``_datalog``. Their public names are importable from here too.

- A first-party block (a holder's narrowing) states, each at most once and at least one:
  ``delegate($agent)``; ``check if tool($t), operation($o), ($t == T && $o == O) || …`` (1 to 64
  pairs) or ``check if false``; ``check if resource($r), {…}.contains($r)`` (0 to 64);
  ``check if time($t), $t <= DATE``; and up to 64 ``constraint`` facts with their checks.
- A third-party block states one fact and nothing else: ``hop($agent)`` (an attestation) or
  ``holder_key($jkt)`` (a rebinding).

Symbols resolve as biscuit-auth resolves them: first-party blocks against the default symbols,
the authority's and every first-party block's, in order; a third-party block against the
defaults and its own.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

from . import _wire
from ._datalog import (
    CONTAINS,
    DEFAULT_SYMBOLS,
    EQUAL,
    HETEROGENEOUS_EQUAL,
    LAZY_AND,
    LAZY_OR,
    LESS_OR_EQUAL,
    MAX_STRING,
    PARENS,
    Refusal,
    SymbolTable,
    printable,
)
from .constraints import (
    MAX_GLOB,
    MAX_ONE_OF,
    MAX_PATH,
    ArgConstraint,
    Constraint,
    Scalar,
    expected_check,
    glob_regex,
    normalized_check,
    read_constraint,
    valid_path,
)
from .authority import SCHEMA_VERSION, Authority, Right, read_authority
from .errors import Malformed, NotMandateBlock, TooManyBlocks

__all__ = [
    "DEFAULT_SYMBOLS",
    "MAX_BLOCKS",
    "MAX_CONSTRAINTS",
    "MAX_GLOB",
    "MAX_ONE_OF",
    "MAX_PATH",
    "MAX_RESOURCES",
    "MAX_RIGHTS",
    "MAX_STRING",
    "MAX_SYMBOLS",
    "SCHEMA_VERSION",
    "ArgConstraint",
    "Attenuation",
    "Attestation",
    "Authority",
    "Constraint",
    "Decoded",
    "Malformed",
    "Narrowing",
    "NotMandateBlock",
    "Rebind",
    "Right",
    "Scalar",
    "Stated",
    "SymbolTable",
    "TooManyBlocks",
    "as_json_list",
    "decode_public_key",
    "glob_regex",
    "printable",
    "read",
    "read_authority",
    "read_constraint",
    "token_bytes",
    "valid_path",
]

#: Most (tool, operation) pairs one block may narrow to.
MAX_RIGHTS = 64
#: Most resources one block may allow.
MAX_RESOURCES = 64
#: Most constraint facts one block may state.
MAX_CONSTRAINTS = 64
#: Most symbols a later block may add to the token's table.
MAX_SYMBOLS = 2 * MAX_RIGHTS + MAX_RESOURCES + MAX_CONSTRAINTS * (6 + MAX_ONE_OF) + 16
#: Most blocks, the authority included.
MAX_BLOCKS = 16


# --- the readable values -------------------------------------------------------------------


@dataclass(frozen=True)
class Attenuation:
    """What a holder's narrowing block states (``None``: not narrowed)."""

    rights: tuple[Right, ...] | None = None
    resources: tuple[str, ...] | None = None
    expires_at: int | None = None
    delegate: str | None = None
    constraints: tuple[ArgConstraint, ...] = ()


@dataclass(frozen=True)
class Narrowing:
    """A holder's narrowing (a first-party block)."""

    attenuation: Attenuation


@dataclass(frozen=True)
class Attestation:
    """An agent's signed statement that it holds the token (a third-party block)."""

    agent: str


@dataclass(frozen=True)
class Rebind:
    """The holder's signed statement moving the binding to the key with this thumbprint."""

    holder_key: str


Stated = Union[Narrowing, Attestation, Rebind]


@dataclass(frozen=True)
class Decoded:
    """A token's blocks as serialized, decoded but not verified."""

    root_key_id: int | None
    authority: _wire.Block
    blocks: tuple[Stated, ...]
    #: Per later block, the key that signed it as a third party (``None``: first-party).
    signers: tuple[_wire.PublicKey | None, ...]


# --- symbols ---------------------------------------------------------------------------------


def _bounded_symbols(block: _wire.Block) -> SymbolTable:
    if len(block.symbols) > MAX_SYMBOLS or any(len(s.encode()) > MAX_STRING for s in block.symbols):
        raise Refusal("a block states too many strings, or too long a one")
    return SymbolTable(block.symbols)


def _string(term: _wire.Term, table: SymbolTable) -> str:
    if term[0] != "string":
        raise Refusal("expected a string")
    value = table.get(term[1])
    if value is None:
        raise Refusal("unknown symbol")
    if not printable(value):
        raise Refusal("a string must be 1 to 256 bytes, without quotes, backslashes or controls")
    return value


def _predicate(p: _wire.Predicate, table: SymbolTable) -> tuple[str | None, tuple[_wire.Term, ...]]:
    return table.get(p.name), p.terms


# --- reading a token -------------------------------------------------------------------------

_B64 = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")


def token_bytes(token: str) -> bytes:
    """The token's bytes: base64url, with or without padding, canonical."""
    text = token.strip()
    if not _B64.match(text):
        raise Malformed("not a mandate/v1 token")
    bare = text.rstrip("=")
    if len(bare) % 4 == 1 or (text != bare and len(text) % 4 != 0):
        raise Malformed("not a mandate/v1 token")
    try:
        raw = base64.urlsafe_b64decode(bare + "=" * (-len(bare) % 4))
    except ValueError:
        raise Malformed("not a mandate/v1 token") from None
    if base64.urlsafe_b64encode(raw).decode().rstrip("=") != bare:
        raise Malformed("not a mandate/v1 token")
    return raw


def read(token: str, max_blocks: int = MAX_BLOCKS) -> Decoded:
    """Decodes ``token`` and reads every block after the authority as a mandate/v1 shape.
    Nothing is verified: a token that passes still needs its signatures checked."""
    try:
        outer = _wire.decode(_wire.container, token_bytes(token))
    except _wire.WireError:
        raise Malformed("not a mandate/v1 token") from None
    if len(outer.blocks) + 1 > max_blocks:
        raise TooManyBlocks("too many blocks")
    try:
        authority = _wire.decode(_wire.block, outer.authority.block)
        later = [_wire.decode(_wire.block, b.block) for b in outer.blocks]
    except _wire.WireError:
        raise Malformed("not a mandate/v1 token") from None
    try:
        table = SymbolTable(authority.symbols)
    except Refusal:
        raise Malformed("not a mandate/v1 token") from None
    for i, (blk, signed) in enumerate(zip(later, outer.blocks)):
        if signed.external_signature is None:
            try:
                own = _bounded_symbols(blk)
            except Refusal as refusal:
                raise NotMandateBlock(i + 1, str(refusal)) from None
            try:
                table.extend(own)
            except Refusal:
                raise Malformed("not a mandate/v1 token") from None
    stated: list[Stated] = []
    for i, (blk, signed) in enumerate(zip(later, outer.blocks)):
        try:
            if signed.external_signature is not None:
                stated.append(_signed_statement(blk, _bounded_symbols(blk)))
            else:
                stated.append(_narrowing(blk, table))
        except Refusal as refusal:
            raise NotMandateBlock(i + 1, str(refusal)) from None
    signers = tuple(
        b.external_signature.public_key if b.external_signature is not None else None
        for b in outer.blocks
    )
    return Decoded(outer.root_key_id, authority, tuple(stated), signers)


def _plain(block: _wire.Block) -> None:
    if block.rules:
        raise Refusal("a block may not carry rules")
    if block.scope or block.public_keys:
        raise Refusal("a block may not change what it trusts")


def _signed_statement(block: _wire.Block, table: SymbolTable) -> Stated:
    one_fact = "a signed block states exactly one `hop($agent)` or `holder_key($jkt)`, and nothing else"
    _plain(block)
    if block.checks or len(block.facts) != 1:
        raise Refusal(one_fact)
    name, terms = _predicate(block.facts[0], table)
    if name == "hop" and len(terms) == 1:
        return Attestation(_string(terms[0], table))
    if name == "holder_key" and len(terms) == 1:
        jkt = _string(terms[0], table)
        if not (len(jkt) == 43 and re.fullmatch(r"[A-Za-z0-9_-]+", jkt)):
            raise Refusal("a holder key is an RFC 7638 thumbprint (43 base64url characters)")
        return Rebind(jkt)
    raise Refusal(one_fact)


@dataclass
class _Narrowed:
    rights: tuple[Right, ...] | None = None
    resources: tuple[str, ...] | None = None
    expires_at: int | None = None
    delegate: str | None = None
    constraints: list[tuple[ArgConstraint, str]] = field(default_factory=list)


def _set_once(narrowed: _Narrowed, name: str, value: Any) -> None:
    if getattr(narrowed, name) is not None:
        raise Refusal("a block narrows each of rights, resources and expiry at most once")
    setattr(narrowed, name, value)


def _narrowing(block: _wire.Block, table: SymbolTable) -> Stated:
    _plain(block)
    narrowed = _Narrowed()
    for fact in block.facts:
        name, terms = _predicate(fact, table)
        if name == "delegate" and len(terms) == 1:
            if narrowed.delegate is not None:
                raise Refusal("a block names at most one delegate")
            narrowed.delegate = _string(terms[0], table)
        elif name == "constraint":
            if len(narrowed.constraints) == MAX_CONSTRAINTS:
                raise Refusal("too many constraints in one block")
            narrowed.constraints.append(read_constraint(terms, lambda t: _string(t, table)))
        elif name == "hop":
            raise Refusal("a hop claimed without a signature of its own")
        elif name == "holder_key":
            raise Refusal("a binding moved without the holder's signature")
        else:
            raise Refusal("the only facts a holder may state are `delegate($agent)` and `constraint(…)`")
    if len(block.checks) > 3 + len(narrowed.constraints):
        raise Refusal("too many checks")
    constraint_checks = []
    for check in block.checks:
        if len(check.queries) == 2:
            constraint_checks.append(check)
            continue
        _narrowing_check(check, table, narrowed)
    # Each `constraint` fact comes with exactly the check it compiles to, in the same order.
    if len(constraint_checks) != len(narrowed.constraints):
        raise Refusal("each constraint fact comes with its check, and only those")
    version = block.version or 0
    for (constraint, kind), check in zip(narrowed.constraints, constraint_checks):
        expected = expected_check(constraint, kind, table)
        actual = normalized_check(check, version)
        if actual != expected:
            raise Refusal("a constraint's check is not the one its fact states")
    attenuation = Attenuation(
        rights=narrowed.rights,
        resources=narrowed.resources,
        expires_at=narrowed.expires_at,
        delegate=narrowed.delegate,
        constraints=tuple(c for c, _ in narrowed.constraints),
    )
    if attenuation == Attenuation():
        raise Refusal("a block must narrow something or name a delegate")
    return Narrowing(attenuation)


def _narrowing_check(check: _wire.Check, table: SymbolTable, narrowed: _Narrowed) -> None:
    if len(check.queries) != 1:
        raise Refusal("a check has exactly one query")
    (query,) = check.queries
    if (check.kind or 0) != 0:
        raise Refusal("only `check if` narrows")
    if query.head.terms or query.scope:
        raise Refusal("a check has no head terms and no scope")
    if len(query.expressions) != 1:
        raise Refusal("a check has exactly one expression")
    body = []
    for p in query.body:
        name, terms = _predicate(p, table)
        if name is None:
            raise Refusal("unknown symbol")
        body.append((name, terms))
    ops = query.expressions[0]
    shape = [(name, len(terms)) for name, terms in body]
    if not body:
        _set_once(narrowed, "rights", _never(ops))
    elif shape == [("tool", 1), ("operation", 1)]:
        variables = (_variable(body[0][1][0]), _variable(body[1][1][0]))
        _set_once(narrowed, "rights", _rights(ops, variables, table))
    elif shape == [("resource", 1)]:
        _set_once(narrowed, "resources", _resources(ops, _variable(body[0][1][0]), table))
    elif shape == [("time", 1)]:
        _set_once(narrowed, "expires_at", _expiry(ops, _variable(body[0][1][0])))
    else:
        raise Refusal("not a mandate/v1 check")


def _variable(term: _wire.Term) -> int:
    if term[0] != "variable":
        raise Refusal("expected a variable")
    return int(term[1])


def _value(op: _wire.Op) -> _wire.Term | None:
    return op[1] if op[0] == "value" else None


def _is_binary(op: _wire.Op, kind: int) -> bool:
    return op[0] == "binary" and op[1] == kind and op[2] is None


def _is_parens(op: _wire.Op) -> bool:
    return op[0] == "unary" and op[1] == PARENS and op[2] is None


def _closure(op: _wire.Op) -> tuple[_wire.Op, ...] | None:
    return op[2] if op[0] == "closure" and not op[1] else None


def _never(ops: tuple[_wire.Op, ...]) -> tuple[Right, ...]:
    if len(ops) == 1 and _value(ops[0]) == ("bool", False):
        return ()
    raise Refusal("a check without predicates is `check if false`")


_RIGHT = "a right is `($tool == T && $operation == O)`"


def _equals(ops: tuple[_wire.Op, ...], var: int, table: SymbolTable) -> str:
    if len(ops) == 3:
        left, right, eq = ops
        if (_is_binary(eq, HETEROGENEOUS_EQUAL) or _is_binary(eq, EQUAL)) and _value(left) == (
            "variable",
            var,
        ):
            value = _value(right)
            if value is None:
                raise Refusal("expected a string")
            return _string(value, table)
    raise Refusal(_RIGHT)


def _pair(ops: tuple[_wire.Op, ...], variables: tuple[int, int], table: SymbolTable) -> Right:
    if ops and _is_parens(ops[-1]):
        ops = ops[:-1]
    if len(ops) == 5 and _is_binary(ops[4], LAZY_AND):
        second = _closure(ops[3])
        if second is None:
            raise Refusal(_RIGHT)
        tool = _equals(ops[:3], variables[0], table)
        return Right(tool, _equals(second, variables[1], table))
    raise Refusal(_RIGHT)


def _rights(ops: tuple[_wire.Op, ...], variables: tuple[int, int], table: SymbolTable) -> tuple[Right, ...]:
    if variables[0] == variables[1]:
        raise Refusal("tool and operation need their own variables")
    first_len = 6 if len(ops) > 5 and _is_parens(ops[5]) else 5
    first, rest = ops[:first_len], ops[first_len:]
    found = [_pair(first, variables, table)]
    while len(rest) >= 2:
        nxt, joined = rest[0], rest[1]
        if not _is_binary(joined, LAZY_OR):
            raise Refusal("rights are joined with `||`")
        if len(found) == MAX_RIGHTS:
            raise Refusal("too many rights in one block")
        inner = _closure(nxt)
        if inner is None:
            raise Refusal(_RIGHT)
        found.append(_pair(inner, variables, table))
        rest = rest[2:]
    if rest:
        raise Refusal("rights are joined with `||`")
    return tuple(found)


def _resources(ops: tuple[_wire.Op, ...], var: int, table: SymbolTable) -> tuple[str, ...]:
    shape = "a resource check is `{R1, …}.contains($resource)`"
    if len(ops) != 3:
        raise Refusal(shape)
    members, subject = _value(ops[0]), _value(ops[1])
    if members is None or members[0] != "set" or subject != ("variable", var):
        raise Refusal(shape)
    if not _is_binary(ops[2], CONTAINS):
        raise Refusal(shape)
    if len(members[1]) > MAX_RESOURCES:
        raise Refusal("a resource check names at most 64 resources")
    return tuple(_string(t, table) for t in members[1])


def _expiry(ops: tuple[_wire.Op, ...], var: int) -> int:
    shape = "an expiry is `$time <= DATE`"
    if len(ops) == 3 and _is_binary(ops[2], LESS_OR_EQUAL):
        subject, date = _value(ops[0]), _value(ops[1])
        if subject == ("variable", var) and date is not None and date[0] == "date":
            if date[1] > 253402300799:  # beyond 9999-12-31, as chrono cannot represent it
                raise Refusal("an expiry out of range")
            return int(date[1])
        raise Refusal(shape)
    raise Refusal(shape)


def decode_public_key(text: str) -> tuple[int, bytes]:
    """``ed25519/<64 hex digits>`` (as mandate publishes keys) as (algorithm, bytes)."""
    if not text.startswith("ed25519/") or len(text) != len("ed25519/") + 64:
        raise ValueError("public key must be `ed25519/<64 hex digits>`")
    return 0, bytes.fromhex(text[len("ed25519/"):])


def as_json_list(items: Sequence[Any]) -> list[Mapping[str, Any]]:
    """Each item's ``to_json()``."""
    return [item.to_json() for item in items]
