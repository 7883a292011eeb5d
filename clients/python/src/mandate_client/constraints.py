"""Argument constraints of mandate/v1 (mandate's ``src/token/constraints.rs``): the readable
:class:`Constraint` and :class:`ArgConstraint` values, what a value must be to satisfy one,
how a ``constraint(tool, operation, argument, kind, value)`` fact is read, and the exact check
it must come with (compared op by op, so a block cannot state a constraint and enforce
another).

:mod:`mandate_client.vocabulary` reads whole blocks and calls :func:`read_constraint` and
:func:`expected_check` / :func:`normalized_check` for each constraint it meets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Union

from . import _wire
from ._datalog import (
    CONTAINS,
    DATALOG_3_1,
    GREATER_OR_EQUAL,
    HETEROGENEOUS_EQUAL,
    LAZY_AND,
    LENGTH,
    LESS_OR_EQUAL,
    NEGATE,
    PARENS,
    PREFIX,
    REGEX,
    Refusal,
    SymbolTable,
    printable,
)

__all__ = [
    "MAX_GLOB",
    "MAX_ONE_OF",
    "MAX_PATH",
    "ArgConstraint",
    "Constraint",
    "Scalar",
    "expected_check",
    "glob_regex",
    "normalized_check",
    "read_constraint",
    "valid_path",
]

#: Most values one ``one_of`` lists.
MAX_ONE_OF = 32
#: Longest glob.
MAX_GLOB = 64
#: Longest argument path.
MAX_PATH = 128


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
        if self.kind == "equals":
            return not isinstance(value, tuple) and _scalar_key(self.value) == _scalar_key(value)
        if self.kind == "one_of":
            allowed = {_scalar_key(v) for v in self.value}
            items = value if isinstance(value, tuple) else (value,)
            return all(_scalar_key(v) in allowed for v in items)
        if self.kind == "prefix" and isinstance(value, str):
            return value.startswith(self.value)
        if self.kind == "glob" and isinstance(value, str):
            return _glob_matches(self.value, value)
        if self.kind == "range" and isinstance(value, int) and not isinstance(value, bool):
            low, high = self.value
            return (low is None or value >= low) and (high is None or value <= high)
        if self.kind == "max_length":
            limit: int = self.value
            if isinstance(value, str):
                return len(value.encode()) <= limit
            if isinstance(value, tuple):
                return len({_scalar_key(v) for v in value}) <= limit
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


# --- reading a constraint fact and its check -------------------------------------------------

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
        raise Refusal("a constraint is `constraint($tool, $operation, $argument, $kind, $value)`")
    tool, operation, argument = text(terms[0]), text(terms[1]), text(terms[2])
    if not valid_path(argument):
        raise Refusal("an argument path is dot-joined segments of `[A-Za-z0-9_-]`")
    try:
        kind_text: str | None = text(terms[3])
    except Refusal:
        kind_text = None
    if kind_text not in _KINDS:
        raise Refusal("unknown constraint kind")
    kind = str(kind_text)
    value = terms[4]

    def scalar(term: _wire.Term) -> Scalar:
        if term[0] == "bool":
            return bool(term[1])
        if term[0] == "integer":
            return int(term[1])
        if term[0] == "string":
            return text(term)
        raise Refusal("a constraint's value is a string, an integer or a boolean")

    def integer(term: _wire.Term) -> int:
        if term[0] != "integer":
            raise Refusal("this constraint's value is an integer")
        return int(term[1])

    constraint: Constraint
    if kind == "equals":
        constraint = Constraint("equals", scalar(value))
    elif kind == "one_of":
        if value[0] != "set" or not 0 < len(value[1]) <= MAX_ONE_OF:
            raise Refusal("`one_of` is a set of 1 to 32 values")
        constraint = Constraint("one_of", tuple(sorted((scalar(t) for t in value[1]), key=_scalar_key)))
    elif kind == "prefix":
        constraint = Constraint("prefix", text(value))
    elif kind == "glob":
        glob = text(value)
        if _glob_problem(glob):
            raise Refusal("not a glob")
        constraint = Constraint("glob", glob)
    elif kind == "min":
        constraint = Constraint("range", (integer(value), None))
    elif kind == "max":
        constraint = Constraint("range", (None, integer(value)))
    else:
        length = integer(value)
        if not 0 <= length <= 0xFFFFFFFF:
            raise Refusal("`max_length` is 0 to 2^32-1")
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


def expected_check(c: ArgConstraint, kind: str, table: SymbolTable) -> tuple[Any, ...]:
    """The check a ``constraint`` fact must come with, in the block's symbols: what
    ``check if tool($tool), operation($operation), !($tool == T && $operation == O)
    or arg(ARG, $value), EXPRESSION`` converts to, normalized as :func:`normalized_check`."""
    scratch = table.copy()
    sym = scratch.insert
    query = sym("query")
    # The first query: this is another operation.
    tool_pred, tool_var = sym("tool"), sym("tool")
    operation_pred, operation_var = sym("operation"), sym("operation")
    guard = (
        ("value", ("variable", tool_var)),
        ("value", ("string", sym(c.tool))),
        ("binary", HETEROGENEOUS_EQUAL, None),
        ("closure", (), (
            ("value", ("variable", operation_var)),
            ("value", ("string", sym(c.operation))),
            ("binary", HETEROGENEOUS_EQUAL, None),
        )),
        ("binary", LAZY_AND, None),
        ("unary", PARENS, None),
        ("unary", NEGATE, None),
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
        "equals": (value_var, operand, ("binary", HETEROGENEOUS_EQUAL, None)),
        "one_of": (operand, value_var, ("binary", CONTAINS, None)),
        "prefix": (value_var, operand, ("binary", PREFIX, None)),
        "glob": (value_var, operand, ("binary", REGEX, None)),
        "min": (value_var, operand, ("binary", GREATER_OR_EQUAL, None)),
        "max": (value_var, operand, ("binary", LESS_OR_EQUAL, None)),
        "max_length": (value_var, ("unary", LENGTH, None), operand, ("binary", LESS_OR_EQUAL, None)),
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


def normalized_check(check: _wire.Check, version: int) -> tuple[Any, ...] | None:
    """A check as biscuit-auth's ``proto_check_to_token_check`` reads it; ``None`` when it
    cannot be read (which no expected check equals)."""
    try:
        if check.kind not in (None, 0, 1, 2):
            raise _Unreadable()
        queries = []
        for q in check.queries:
            if version < DATALOG_3_1 and q.scope:
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
