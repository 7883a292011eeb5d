"""biscuit-auth's Datalog as mandate/v1 reads it: the symbol table, the schema.proto op kinds
and the printable-string rule, shared by :mod:`mandate_client.vocabulary` (block shapes) and
:mod:`mandate_client.constraints` (argument constraints).
"""

from __future__ import annotations

import unicodedata
from typing import Sequence

#: Longest string a block may state, in bytes.
MAX_STRING = 256

# biscuit-auth's default symbols (ids 0 to 27); a block's own symbols start at 1024.
DEFAULT_SYMBOLS: tuple[str, ...] = (
    "read", "write", "resource", "operation", "right", "time", "role", "owner", "tenant",
    "namespace", "user", "team", "service", "admin", "email", "group", "member", "ip_address",
    "client", "client_ip", "domain", "path", "version", "cluster", "node", "hostname", "nonce",
    "query",
)
OFFSET = 1024
#: The block version from which a query may carry a scope (Datalog 3.1).
DATALOG_3_1 = 4

# OpBinary and OpUnary kinds of schema.proto that mandate/v1 checks use.
LESS_OR_EQUAL, GREATER_OR_EQUAL, EQUAL, CONTAINS, PREFIX, REGEX = 2, 3, 4, 5, 6, 8
HETEROGENEOUS_EQUAL, LAZY_AND, LAZY_OR = 21, 23, 24
NEGATE, PARENS, LENGTH = 0, 1, 2


class Refusal(Exception):
    """Why a block is not a mandate/v1 shape (becomes ``NotMandateBlock`` in :mod:`mandate_client.vocabulary`)."""


class SymbolTable:
    """biscuit-auth's symbol table: the default symbols, then the blocks' own from 1024."""

    __slots__ = ("symbols", "_index")

    def __init__(self, symbols: Sequence[str] = ()) -> None:
        if any(s in _DEFAULT_INDEX for s in symbols):
            raise Refusal("a block may not redefine a symbol")
        self.symbols: list[str] = list(symbols)
        self._index: dict[str, int] = {}
        for i, s in enumerate(self.symbols):
            self._index.setdefault(s, OFFSET + i)

    def extend(self, other: SymbolTable) -> None:
        if not set(self.symbols).isdisjoint(other.symbols):
            raise Refusal("a block may not redefine a symbol")
        for s in other.symbols:
            self._index.setdefault(s, OFFSET + len(self.symbols))
            self.symbols.append(s)

    def get(self, index: int) -> str | None:
        if index >= OFFSET:
            i = index - OFFSET
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
            found = OFFSET + len(self.symbols)
            self.symbols.append(name)
            self._index[name] = found
        return found


_DEFAULT_INDEX = {s: i for i, s in enumerate(DEFAULT_SYMBOLS)}


def printable(value: str) -> bool:
    """1 to 256 bytes, without quotes, backslashes or control characters."""
    return (
        0 < len(value.encode()) <= MAX_STRING
        and not any(c in '"\\' or unicodedata.category(c) == "Cc" for c in value)
    )
