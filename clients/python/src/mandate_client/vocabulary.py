"""The mandate/v1 block vocabulary (``docs/token-schema.md``): what a block may state, read from
the token's serialized bytes before any signature is checked or any Datalog runs.

Anyone holding a Biscuit can append a block, and a hostile block's Datalog can make a single
evaluation step run for seconds. So every block after the authority is read here, from its
protobuf form, and the whole token is refused (``not_mandate_block``) unless each block is one of
the documented shapes. This is a port of mandate's ``src/token/vocabulary.rs``, with the argument
constraints of ``src/token/constraints.rs`` (each ``constraint`` fact must come with exactly the
check it compiles to, compared op by op) and the authority read of ``src/token/authority.rs``.

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
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, Union

from . import _wire
from .errors import VerificationError

__all__ = [
    "MAX_BLOCKS",
    "MAX_STRING",
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
    "TooManyBlocks",
    "read",
    "read_authority",
]

#: Most (tool, operation) pairs one block may narrow to.
MAX_RIGHTS = 64
#: Most resources one block may allow.
MAX_RESOURCES = 64
#: Longest string a block may state, in bytes.
MAX_STRING = 256
#: Most constraint facts one block may state.
MAX_CONSTRAINTS = 64
#: Most values one ``one_of`` lists.
MAX_ONE_OF = 32
#: Longest glob.
MAX_GLOB = 64
#: Longest argument path.
MAX_PATH = 128
#: Most symbols a later block may add to the token's table.
MAX_SYMBOLS = 2 * MAX_RIGHTS + MAX_RESOURCES + MAX_CONSTRAINTS * (6 + MAX_ONE_OF) + 16
#: Most blocks, the authority included.
MAX_BLOCKS = 16
#: The schema version every mandate states.
SCHEMA_VERSION = 1

# biscuit-auth's default symbols (ids 0 to 27); a block's own symbols start at 1024.
DEFAULT_SYMBOLS: tuple[str, ...] = (
    "read", "write", "resource", "operation", "right", "time", "role", "owner", "tenant",
    "namespace", "user", "team", "service", "admin", "email", "group", "member", "ip_address",
    "client", "client_ip", "domain", "path", "version", "cluster", "node", "hostname", "nonce",
    "query",
)
_OFFSET = 1024
_DATALOG_3_1 = 4

# OpBinary and OpUnary kinds of schema.proto used by the vocabulary.
_LESS_OR_EQUAL, _GREATER_OR_EQUAL, _EQUAL, _CONTAINS, _PREFIX, _REGEX = 2, 3, 4, 5, 6, 8
_HETEROGENEOUS_EQUAL, _LAZY_AND, _LAZY_OR = 21, 23, 24
_NEGATE, _PARENS, _LENGTH = 0, 1, 2


class Malformed(VerificationError):
    """Not a mandate/v1 token (``malformed``)."""

    code = "malformed"


class TooManyBlocks(VerificationError):
    """More blocks than the verifier accepts (``too_many_blocks``)."""

    code = "too_many_blocks"


class NotMandateBlock(VerificationError):
    """A block after the authority is not a mandate/v1 shape (``not_mandate_block``)."""

    code = "not_mandate_block"

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"block {index} is not a mandate/v1 block: {reason}")
        self.index = index
        self.reason = reason


class _Refusal(Exception):
    """Why a block is not a mandate/v1 shape (becomes :class:`NotMandateBlock`)."""


# --- the readable values -------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Right:
    """One granted right: an operation of a tool."""

    tool: str
    operation: str

    def to_json(self) -> dict[str, str]:
        return {"operation": self.operation, "tool": self.tool}


Scalar = Union[bool, int, str]


def _scalar_key(value: Scalar) -> tuple[int, Any]:
    """Orders scalars as the Rust enum does (booleans, then integers, then strings) and keeps
    ``True`` and ``1`` apart."""
    if isinstance(value, bool):
        return (0, value)
    if isinstance(value, int):
        return (1, value)
    return (2, value)


def _scalar_text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return f"`{value}`"


@dataclass(frozen=True)
class Constraint:
    """What one argument's values may be: ``kind`` is ``equals``, ``one_of``, ``prefix``,
    ``glob``, ``range`` or ``max_length``; ``value`` a scalar, a tuple of scalars (one_of), or
    ``(min, max)`` with ``None`` for an absent bound (range)."""

    kind: str
    value: Any

    def to_json(self) -> dict[str, Any]:
        """As mandate writes it in JSON (``{"prefix": "T-"}``, ``{"range": {"min": 1}}``)."""
        if self.kind == "one_of":
            return {"one_of": list(self.value)}
        if self.kind == "range":
            low, high = self.value
            bounds = {k: v for k, v in (("min", low), ("max", high)) if v is not None}
            return {"range": bounds}
        return {self.kind: self.value}

    def allows(self, value: Scalar | tuple[Scalar, ...]) -> bool:
        """Whether ``value`` (a scalar, or a tuple for a JSON array) satisfies the constraint,
        as the token's check decides it."""
        is_list = isinstance(value, tuple)
        if self.kind == "equals" and not is_list:
            return _scalar_key(self.value) == _scalar_key(value)  # type: ignore[arg-type]
        if self.kind == "one_of":
            allowed = {_scalar_key(v) for v in self.value}
            items = value if is_list else (value,)
            return all(_scalar_key(v) in allowed for v in items)  # type: ignore[union-attr]
        if self.kind == "prefix" and isinstance(value, str):
            return value.startswith(self.value)
        if self.kind == "glob" and isinstance(value, str):
            return _glob_matches(self.value, value)
        if self.kind == "range" and isinstance(value, int) and not isinstance(value, bool):
            low, high = self.value
            return (low is None or value >= low) and (high is None or value <= high)
        if self.kind == "max_length":
            if isinstance(value, str):
                return len(value.encode()) <= self.value
            if is_list:
                return len({_scalar_key(v) for v in value}) <= self.value  # type: ignore[union-attr]
        return False

    def describe(self) -> str:
        """What the constraint requires, as a refusal names it: ``must start with `T-```."""
        if self.kind == "equals":
            return f"must equal {_scalar_text(self.value)}"
        if self.kind == "one_of":
            return "must be one of " + ", ".join(_scalar_text(v) for v in self.value)
        if self.kind == "prefix":
            return f"must start with `{self.value}`"
        if self.kind == "glob":
            return f"must match `{self.value}`"
        if self.kind == "range":
            low, high = self.value
            if low is not None and high is not None:
                return f"must be an integer from {low} to {high}"
            if low is not None:
                return f"must be an integer of at least {low}"
            if high is not None:
                return f"must be an integer of at most {high}"
            return "must be an integer"
        return f"must be at most {self.value} long"


@dataclass(frozen=True)
class ArgConstraint:
    """One constraint on one argument (a dotted path) of one operation of one tool."""

    tool: str
    operation: str
    argument: str
    constraint: Constraint

    def to_json(self) -> dict[str, Any]:
        return {
            "argument": self.argument,
            "constraint": self.constraint.to_json(),
            "operation": self.operation,
            "tool": self.tool,
        }


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


class SymbolTable:
    """biscuit-auth's symbol table: the default symbols, then the blocks' own from 1024."""

    __slots__ = ("symbols", "_index")

    def __init__(self, symbols: Sequence[str] = ()) -> None:
        if any(s in _DEFAULT_INDEX for s in symbols):
            raise _Refusal("a block may not redefine a symbol")
        self.symbols: list[str] = list(symbols)
        self._index: dict[str, int] = {}
        for i, s in enumerate(self.symbols):
            self._index.setdefault(s, _OFFSET + i)

    def extend(self, other: SymbolTable) -> None:
        if not set(self.symbols).isdisjoint(other.symbols):
            raise _Refusal("a block may not redefine a symbol")
        for s in other.symbols:
            self._index.setdefault(s, _OFFSET + len(self.symbols))
            self.symbols.append(s)

    def get(self, index: int) -> str | None:
        if index >= _OFFSET:
            i = index - _OFFSET
            return self.symbols[i] if i < len(self.symbols) else None
        return DEFAULT_SYMBOLS[index] if index < len(DEFAULT_SYMBOLS) else None

    def copy(self) -> SymbolTable:
        table = SymbolTable.__new__(SymbolTable)
        table.symbols = list(self.symbols)
        table._index = dict(self._index)
        return table

    def insert(self, name: str) -> int:
        """The symbol's id, adding it when absent (as biscuit-auth converts a check)."""
        if name in _DEFAULT_INDEX:
            return _DEFAULT_INDEX[name]
        found = self._index.get(name)
        if found is None:
            found = _OFFSET + len(self.symbols)
            self.symbols.append(name)
            self._index[name] = found
        return found


_DEFAULT_INDEX = {s: i for i, s in enumerate(DEFAULT_SYMBOLS)}


def _bounded_symbols(block: _wire.Block) -> SymbolTable:
    if len(block.symbols) > MAX_SYMBOLS or any(len(s.encode()) > MAX_STRING for s in block.symbols):
        raise _Refusal("a block states too many strings, or too long a one")
    return SymbolTable(block.symbols)


def printable(value: str) -> bool:
    """1 to 256 bytes, without quotes, backslashes or control characters."""
    return (
        0 < len(value.encode()) <= MAX_STRING
        and not any(c in '"\\' or unicodedata.category(c) == "Cc" for c in value)
    )


def _string(term: _wire.Term, table: SymbolTable) -> str:
    if term[0] != "string":
        raise _Refusal("expected a string")
    value = table.get(term[1])
    if value is None:
        raise _Refusal("unknown symbol")
    if not printable(value):
        raise _Refusal("a string must be 1 to 256 bytes, without quotes, backslashes or controls")
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
    except _Refusal:
        raise Malformed("not a mandate/v1 token") from None
    for i, (blk, signed) in enumerate(zip(later, outer.blocks)):
        if signed.external_signature is None:
            try:
                own = _bounded_symbols(blk)
            except _Refusal as refusal:
                raise NotMandateBlock(i + 1, str(refusal)) from None
            try:
                table.extend(own)
            except _Refusal:
                raise Malformed("not a mandate/v1 token") from None
    stated: list[Stated] = []
    for i, (blk, signed) in enumerate(zip(later, outer.blocks)):
        try:
            if signed.external_signature is not None:
                stated.append(_signed_statement(blk, _bounded_symbols(blk)))
            else:
                stated.append(_narrowing(blk, table))
        except _Refusal as refusal:
            raise NotMandateBlock(i + 1, str(refusal)) from None
    signers = tuple(
        b.external_signature.public_key if b.external_signature is not None else None
        for b in outer.blocks
    )
    return Decoded(outer.root_key_id, authority, tuple(stated), signers)


def _plain(block: _wire.Block) -> None:
    if block.rules:
        raise _Refusal("a block may not carry rules")
    if block.scope or block.public_keys:
        raise _Refusal("a block may not change what it trusts")


def _signed_statement(block: _wire.Block, table: SymbolTable) -> Stated:
    one_fact = "a signed block states exactly one `hop($agent)` or `holder_key($jkt)`, and nothing else"
    _plain(block)
    if block.checks or len(block.facts) != 1:
        raise _Refusal(one_fact)
    name, terms = _predicate(block.facts[0], table)
    if name == "hop" and len(terms) == 1:
        return Attestation(_string(terms[0], table))
    if name == "holder_key" and len(terms) == 1:
        jkt = _string(terms[0], table)
        if not (len(jkt) == 43 and re.fullmatch(r"[A-Za-z0-9_-]+", jkt)):
            raise _Refusal("a holder key is an RFC 7638 thumbprint (43 base64url characters)")
        return Rebind(jkt)
    raise _Refusal(one_fact)


@dataclass
class _Narrowed:
    rights: tuple[Right, ...] | None = None
    resources: tuple[str, ...] | None = None
    expires_at: int | None = None
    delegate: str | None = None
    constraints: list[tuple[ArgConstraint, str]] = field(default_factory=list)


def _set_once(narrowed: _Narrowed, name: str, value: Any) -> None:
    if getattr(narrowed, name) is not None:
        raise _Refusal("a block narrows each of rights, resources and expiry at most once")
    setattr(narrowed, name, value)


def _narrowing(block: _wire.Block, table: SymbolTable) -> Stated:
    _plain(block)
    narrowed = _Narrowed()
    for fact in block.facts:
        name, terms = _predicate(fact, table)
        if name == "delegate" and len(terms) == 1:
            if narrowed.delegate is not None:
                raise _Refusal("a block names at most one delegate")
            narrowed.delegate = _string(terms[0], table)
        elif name == "constraint":
            if len(narrowed.constraints) == MAX_CONSTRAINTS:
                raise _Refusal("too many constraints in one block")
            narrowed.constraints.append(read_constraint(terms, lambda t: _string(t, table)))
        elif name == "hop":
            raise _Refusal("a hop claimed without a signature of its own")
        elif name == "holder_key":
            raise _Refusal("a binding moved without the holder's signature")
        else:
            raise _Refusal("the only facts a holder may state are `delegate($agent)` and `constraint(…)`")
    if len(block.checks) > 3 + len(narrowed.constraints):
        raise _Refusal("too many checks")
    constraint_checks = []
    for check in block.checks:
        if len(check.queries) == 2:
            constraint_checks.append(check)
            continue
        _narrowing_check(check, table, narrowed)
    # Each `constraint` fact comes with exactly the check it compiles to, in the same order.
    if len(constraint_checks) != len(narrowed.constraints):
        raise _Refusal("each constraint fact comes with its check, and only those")
    version = block.version or 0
    for (constraint, kind), check in zip(narrowed.constraints, constraint_checks):
        expected = _expected_check(constraint, kind, table)
        actual = _normalized_check(check, version)
        if actual != expected:
            raise _Refusal("a constraint's check is not the one its fact states")
    attenuation = Attenuation(
        rights=narrowed.rights,
        resources=narrowed.resources,
        expires_at=narrowed.expires_at,
        delegate=narrowed.delegate,
        constraints=tuple(c for c, _ in narrowed.constraints),
    )
    if attenuation == Attenuation():
        raise _Refusal("a block must narrow something or name a delegate")
    return Narrowing(attenuation)


def _narrowing_check(check: _wire.Check, table: SymbolTable, narrowed: _Narrowed) -> None:
    if len(check.queries) != 1:
        raise _Refusal("a check has exactly one query")
    (query,) = check.queries
    if (check.kind or 0) != 0:
        raise _Refusal("only `check if` narrows")
    if query.head.terms or query.scope:
        raise _Refusal("a check has no head terms and no scope")
    if len(query.expressions) != 1:
        raise _Refusal("a check has exactly one expression")
    body = []
    for p in query.body:
        name, terms = _predicate(p, table)
        if name is None:
            raise _Refusal("unknown symbol")
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
        raise _Refusal("not a mandate/v1 check")


def _variable(term: _wire.Term) -> int:
    if term[0] != "variable":
        raise _Refusal("expected a variable")
    return int(term[1])


def _value(op: _wire.Op) -> _wire.Term | None:
    return op[1] if op[0] == "value" else None


def _is_binary(op: _wire.Op, kind: int) -> bool:
    return op[0] == "binary" and op[1] == kind and op[2] is None


def _is_parens(op: _wire.Op) -> bool:
    return op[0] == "unary" and op[1] == _PARENS and op[2] is None


def _closure(op: _wire.Op) -> tuple[_wire.Op, ...] | None:
    return op[2] if op[0] == "closure" and not op[1] else None


def _never(ops: tuple[_wire.Op, ...]) -> tuple[Right, ...]:
    if len(ops) == 1 and _value(ops[0]) == ("bool", False):
        return ()
    raise _Refusal("a check without predicates is `check if false`")


_RIGHT = "a right is `($tool == T && $operation == O)`"


def _equals(ops: tuple[_wire.Op, ...], var: int, table: SymbolTable) -> str:
    if len(ops) == 3:
        left, right, eq = ops
        if (_is_binary(eq, _HETEROGENEOUS_EQUAL) or _is_binary(eq, _EQUAL)) and _value(left) == (
            "variable",
            var,
        ):
            value = _value(right)
            if value is None:
                raise _Refusal("expected a string")
            return _string(value, table)
    raise _Refusal(_RIGHT)


def _pair(ops: tuple[_wire.Op, ...], variables: tuple[int, int], table: SymbolTable) -> Right:
    if ops and _is_parens(ops[-1]):
        ops = ops[:-1]
    if len(ops) == 5 and _is_binary(ops[4], _LAZY_AND):
        second = _closure(ops[3])
        if second is None:
            raise _Refusal(_RIGHT)
        tool = _equals(ops[:3], variables[0], table)
        return Right(tool, _equals(second, variables[1], table))
    raise _Refusal(_RIGHT)


def _rights(ops: tuple[_wire.Op, ...], variables: tuple[int, int], table: SymbolTable) -> tuple[Right, ...]:
    if variables[0] == variables[1]:
        raise _Refusal("tool and operation need their own variables")
    first_len = 6 if len(ops) > 5 and _is_parens(ops[5]) else 5
    first, rest = ops[:first_len], ops[first_len:]
    found = [_pair(first, variables, table)]
    while len(rest) >= 2:
        nxt, joined = rest[0], rest[1]
        if not _is_binary(joined, _LAZY_OR):
            raise _Refusal("rights are joined with `||`")
        if len(found) == MAX_RIGHTS:
            raise _Refusal("too many rights in one block")
        inner = _closure(nxt)
        if inner is None:
            raise _Refusal(_RIGHT)
        found.append(_pair(inner, variables, table))
        rest = rest[2:]
    if rest:
        raise _Refusal("rights are joined with `||`")
    return tuple(found)


def _resources(ops: tuple[_wire.Op, ...], var: int, table: SymbolTable) -> tuple[str, ...]:
    shape = "a resource check is `{R1, …}.contains($resource)`"
    if len(ops) != 3:
        raise _Refusal(shape)
    members, subject = _value(ops[0]), _value(ops[1])
    if members is None or members[0] != "set" or subject != ("variable", var):
        raise _Refusal(shape)
    if not _is_binary(ops[2], _CONTAINS):
        raise _Refusal(shape)
    if len(members[1]) > MAX_RESOURCES:
        raise _Refusal("a resource check names at most 64 resources")
    return tuple(_string(t, table) for t in members[1])


def _expiry(ops: tuple[_wire.Op, ...], var: int) -> int:
    shape = "an expiry is `$time <= DATE`"
    if len(ops) == 3 and _is_binary(ops[2], _LESS_OR_EQUAL):
        subject, date = _value(ops[0]), _value(ops[1])
        if subject == ("variable", var) and date is not None and date[0] == "date":
            if date[1] > 253402300799:  # beyond 9999-12-31, as chrono cannot represent it
                raise _Refusal("an expiry out of range")
            return int(date[1])
        raise _Refusal(shape)
    raise _Refusal(shape)


# --- argument constraints (src/token/constraints.rs) -----------------------------------------

_KINDS = ("equals", "one_of", "prefix", "glob", "min", "max", "max_length")
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")


def valid_path(path: str) -> bool:
    """Dot-joined segments of ``[A-Za-z0-9_-]``, at most 128 bytes."""
    return len(path.encode()) <= MAX_PATH and all(_PATH_SEGMENT.match(s) for s in path.split("."))


def _glob_problem(glob: str) -> bool:
    return not (0 < len(glob.encode()) <= MAX_GLOB) or not printable(glob) or any(c in glob for c in "[]^")


def glob_regex(glob: str) -> str:
    """The regex a glob compiles to: ``(?s)^…$``, metacharacters as one-character classes."""
    out = ["(?s)^"]
    for c in glob:
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c in ".+()|{}$#&-~":
            out.append(f"[{c}]")
        else:
            out.append(c)
    out.append("$")
    return "".join(out)


def _glob_matches(glob: str, value: str) -> bool:
    p = t = 0
    star: tuple[int, int] | None = None
    while t < len(value):
        if p < len(glob) and glob[p] == "*":
            star = (p, t)
            p += 1
        elif p < len(glob) and (glob[p] == "?" or glob[p] == value[t]):
            p += 1
            t += 1
        elif star is not None:
            p, t = star[0] + 1, star[1] + 1
            star = (star[0], star[1] + 1)
        else:
            return False
    return all(c == "*" for c in glob[p:])


def read_constraint(
    terms: tuple[_wire.Term, ...], text: Callable[[_wire.Term], str]
) -> tuple[ArgConstraint, str]:
    """Reads one ``constraint(tool, operation, argument, kind, value)`` fact; ``text`` resolves
    a string term (and raises when it is not one)."""
    if len(terms) != 5:
        raise _Refusal("a constraint is `constraint($tool, $operation, $argument, $kind, $value)`")
    tool, operation, argument = text(terms[0]), text(terms[1]), text(terms[2])
    if not valid_path(argument):
        raise _Refusal("an argument path is dot-joined segments of `[A-Za-z0-9_-]`")
    try:
        kind_text: str | None = text(terms[3])
    except _Refusal:
        kind_text = None
    if kind_text not in _KINDS:
        raise _Refusal("unknown constraint kind")
    kind = str(kind_text)
    value = terms[4]

    def scalar(term: _wire.Term) -> Scalar:
        if term[0] == "bool":
            return bool(term[1])
        if term[0] == "integer":
            return int(term[1])
        if term[0] == "string":
            return text(term)
        raise _Refusal("a constraint's value is a string, an integer or a boolean")

    def integer(term: _wire.Term) -> int:
        if term[0] != "integer":
            raise _Refusal("this constraint's value is an integer")
        return int(term[1])

    constraint: Constraint
    if kind == "equals":
        constraint = Constraint("equals", scalar(value))
    elif kind == "one_of":
        if value[0] != "set" or not 0 < len(value[1]) <= MAX_ONE_OF:
            raise _Refusal("`one_of` is a set of 1 to 32 values")
        constraint = Constraint("one_of", tuple(sorted((scalar(t) for t in value[1]), key=_scalar_key)))
    elif kind == "prefix":
        constraint = Constraint("prefix", text(value))
    elif kind == "glob":
        glob = text(value)
        if _glob_problem(glob):
            raise _Refusal("not a glob")
        constraint = Constraint("glob", glob)
    elif kind == "min":
        constraint = Constraint("range", (integer(value), None))
    elif kind == "max":
        constraint = Constraint("range", (None, integer(value)))
    else:
        length = integer(value)
        if not 0 <= length <= 0xFFFFFFFF:
            raise _Refusal("`max_length` is 0 to 2^32-1")
        constraint = Constraint("max_length", length)
    return ArgConstraint(tool, operation, argument, constraint), kind


def _fact_value(c: ArgConstraint, kind: str) -> Any:
    """The fact's value for ``kind`` (a range states ``min`` and ``max`` as separate facts)."""
    value = c.constraint.value
    if kind == "min":
        return value[0]
    if kind == "max":
        return value[1]
    return value


def _scalar_term(value: Scalar, table: SymbolTable) -> _wire.Term:
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("integer", value)
    return ("string", table.insert(value))


def _expected_check(c: ArgConstraint, kind: str, table: SymbolTable) -> tuple[Any, ...]:
    """The check a ``constraint`` fact must come with, in the block's symbols: what
    ``check if tool($tool), operation($operation), !($tool == T && $operation == O)
    or arg(ARG, $value), EXPRESSION`` converts to, normalized as :func:`_normalized_check`."""
    scratch = table.copy()
    sym = scratch.insert
    query = sym("query")
    # The first query: this is another operation.
    tool_pred, tool_var = sym("tool"), sym("tool")
    operation_pred, operation_var = sym("operation"), sym("operation")
    guard = (
        ("value", ("variable", tool_var)),
        ("value", ("string", sym(c.tool))),
        ("binary", _HETEROGENEOUS_EQUAL, None),
        ("closure", (), (
            ("value", ("variable", operation_var)),
            ("value", ("string", sym(c.operation))),
            ("binary", _HETEROGENEOUS_EQUAL, None),
        )),
        ("binary", _LAZY_AND, None),
        ("unary", _PARENS, None),
        ("unary", _NEGATE, None),
    )
    first = (
        (query, ()),
        ((tool_pred, (("variable", tool_var),)), (operation_pred, (("variable", operation_var),))),
        (guard,),
        (),
    )
    # The second query: the argument satisfies the expression.
    arg_pred = sym("arg")
    argument = ("string", sym(c.argument))
    value_var = ("value", ("variable", sym("value")))
    raw = _fact_value(c, kind)
    if kind == "one_of":
        members = sorted(raw, key=_scalar_key)
        literal: _wire.Term = ("set", frozenset(_scalar_term(v, scratch) for v in members))
    elif kind == "glob":
        literal = ("string", sym(glob_regex(raw)))
    else:
        literal = _scalar_term(raw, scratch)
    operand = ("value", literal)
    expression = {
        "equals": (value_var, operand, ("binary", _HETEROGENEOUS_EQUAL, None)),
        "one_of": (operand, value_var, ("binary", _CONTAINS, None)),
        "prefix": (value_var, operand, ("binary", _PREFIX, None)),
        "glob": (value_var, operand, ("binary", _REGEX, None)),
        "min": (value_var, operand, ("binary", _GREATER_OR_EQUAL, None)),
        "max": (value_var, operand, ("binary", _LESS_OR_EQUAL, None)),
        "max_length": (value_var, ("unary", _LENGTH, None), operand, ("binary", _LESS_OR_EQUAL, None)),
    }[kind]
    second = ((query, ()), ((arg_pred, (argument, value_var[1])),), (expression,), ())
    return ((first, second), 0)


class _Unreadable(Exception):
    pass


def _normalized_term(term: _wire.Term) -> Any:
    """A term as biscuit-auth converts it from the protobuf (sets as sets, of one type)."""
    kind, value = term
    if kind == "none":
        raise _Unreadable()
    if kind == "set":
        kinds = set()
        for item in value:
            if item[0] in ("variable", "set", "none"):
                raise _Unreadable()
            kinds.add(item[0])
        if len(kinds) > 1:
            raise _Unreadable()
        return ("set", frozenset(_normalized_term(t) for t in value))
    if kind == "array":
        return ("array", tuple(_normalized_term(t) for t in value))
    if kind == "map":
        entries: dict[Any, Any] = {}
        for key, item in value:
            if key is None:
                raise _Unreadable()
            entries[key] = _normalized_term(item)
        return ("map", tuple(sorted(entries.items(), key=lambda kv: kv[0])))
    return term


_UNARY_KINDS = {0, 1, 2, 3}
_BINARY_KINDS = set(range(0, 28)) | {29}


def _normalized_op(op: _wire.Op) -> Any:
    if op[0] == "value":
        return ("value", _normalized_term(op[1]))
    if op[0] == "unary":
        if (op[1] in _UNARY_KINDS and op[2] is None) or (op[1] == 4 and op[2] is not None):
            return op
        raise _Unreadable()
    if op[0] == "binary":
        if (op[1] in _BINARY_KINDS and op[2] is None) or (op[1] == 28 and op[2] is not None):
            return op
        raise _Unreadable()
    if op[0] == "closure":
        return ("closure", op[1], tuple(_normalized_op(o) for o in op[2]))
    raise _Unreadable()


def _normalized_check(check: _wire.Check, version: int) -> tuple[Any, ...] | None:
    """A check as biscuit-auth's ``proto_check_to_token_check`` reads it; ``None`` when it
    cannot be read (which no expected check equals)."""
    try:
        if check.kind not in (None, 0, 1, 2):
            raise _Unreadable()
        queries = []
        for q in check.queries:
            if version < _DATALOG_3_1 and q.scope:
                raise _Unreadable()
            if any(s[0] == "none" or (s[0] == "type" and s[1] not in (0, 1)) for s in q.scope):
                raise _Unreadable()
            body = tuple((p.name, tuple(_normalized_term(t) for t in p.terms)) for p in q.body)
            expressions = tuple(tuple(_normalized_op(o) for o in e) for e in q.expressions)
            head = (q.head.name, tuple(_normalized_term(t) for t in q.head.terms))
            queries.append((head, body, expressions, tuple(q.scope)))
        return (tuple(queries), check.kind or 0)
    except _Unreadable:
        return None


# --- the authority block (src/token/authority.rs) --------------------------------------------


@dataclass(frozen=True)
class Authority:
    """What the authority block states (trust it only once the signatures verify)."""

    mandate_id: str
    principal_subject: str
    principal_issuer: str
    agent_id: str
    task_id: str
    rights: tuple[Right, ...]
    expires_at: int
    constraints: tuple[ArgConstraint, ...]
    holder_key: str | None


def read_authority(block: _wire.Block) -> Authority:
    """Reads the mandate/v1 facts of the authority block: exactly one of each single-valued
    fact, any number of rights and constraints, and ``mandate_schema(1)``."""
    try:
        table = SymbolTable(block.symbols)
    except _Refusal:
        raise Malformed("not a mandate/v1 token") from None

    def text(term: _wire.Term) -> str:
        if term[0] == "string":
            value = table.get(term[1])
            if value is not None:
                return value
        raise Malformed("not a mandate/v1 token")

    found: dict[str, Any] = {}
    rights: list[Right] = []
    constraints: list[ArgConstraint] = []

    def once(name: str, value: Any) -> None:
        if name in found:
            raise Malformed(f"the authority block must state exactly one `{name}` fact")
        found[name] = value

    for fact in block.facts:
        name = table.get(fact.name)
        terms = fact.terms
        if name is None:
            raise Malformed("not a mandate/v1 token")
        if name == "mandate_schema" and len(terms) == 1:
            if terms[0][0] != "integer":
                raise Malformed("not a mandate/v1 token")
            once(name, terms[0][1])
        elif name in ("mandate", "agent") and len(terms) == 1:
            once(name, text(terms[0]))
        elif name == "principal" and len(terms) == 2:
            once(name, (text(terms[0]), text(terms[1])))
        elif name == "task" and len(terms) == 2:
            once(name, text(terms[0]))
        elif name == "expires" and len(terms) == 1:
            if terms[0][0] != "date":
                raise Malformed("not a mandate/v1 token")
            once(name, terms[0][1])
        elif name == "holder_key" and len(terms) == 1:
            jkt = text(terms[0])
            if not (len(jkt) == 43 and re.fullmatch(r"[A-Za-z0-9_-]+", jkt)):
                raise Malformed("not a mandate/v1 token")
            once(name, jkt)
        elif name == "right" and len(terms) == 2:
            rights.append(Right(text(terms[0]), text(terms[1])))
        elif name == "constraint":
            def symbol(term: _wire.Term) -> str:
                if term[0] != "string":
                    raise _Refusal("expected a string")
                value = table.get(term[1])
                if value is None:
                    raise _Refusal("unknown symbol")
                return value

            try:
                constraints.append(read_constraint(terms, symbol)[0])
            except _Refusal:
                raise Malformed("not a mandate/v1 token") from None
        else:
            raise Malformed("not a mandate/v1 token")
    for required in ("mandate_schema",):
        if required not in found:
            raise Malformed("the authority block must state exactly one `mandate_schema` fact")
    if found["mandate_schema"] != SCHEMA_VERSION:
        raise Malformed("not a mandate/v1 token")
    for required in ("principal", "expires", "mandate", "agent", "task"):
        if required not in found:
            raise Malformed(f"the authority block must state exactly one `{required}` fact")
    if found["expires"] > 253402300799:
        raise Malformed("time out of range")
    subject, issuer = found["principal"]
    return Authority(
        mandate_id=found["mandate"],
        principal_subject=subject,
        principal_issuer=issuer,
        agent_id=found["agent"],
        task_id=found["task"],
        rights=tuple(sorted(rights)),
        expires_at=int(found["expires"]),
        constraints=tuple(constraints),
        holder_key=found.get("holder_key"),
    )


def decode_public_key(text: str) -> tuple[int, bytes]:
    """``ed25519/<64 hex digits>`` (as mandate publishes keys) as (algorithm, bytes)."""
    if not text.startswith("ed25519/") or len(text) != len("ed25519/") + 64:
        raise ValueError("public key must be `ed25519/<64 hex digits>`")
    return 0, bytes.fromhex(text[len("ed25519/"):])


def as_json_list(items: Sequence[Any]) -> list[Mapping[str, Any]]:
    """Each item's ``to_json()``."""
    return [item.to_json() for item in items]
