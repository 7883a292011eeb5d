"""mandate's published keys: the root keys that sign mandates (``/.well-known/mandate-keys``)
and the agents' registered keys that sign attested hops (``/.well-known/mandate-agent-keys``).

Both documents are read strictly, as mandate's ``src/token/keys.rs`` does: every key is
``ed25519/<64 hex digits>``, root keys name the ``ed25519`` algorithm, a kid appears once.
A malformed document raises :class:`KeyDocumentError` and nothing of it is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import biscuit_auth

from . import _biscuit
from .errors import MandateError

__all__ = ["AgentKeys", "KeyDocumentError", "RootKeys", "parse_public_key"]


class KeyDocumentError(MandateError):
    """A key document that is not what mandate publishes."""


def parse_public_key(text: Any) -> bytes:
    """The 32 bytes of ``ed25519/<64 hex digits>``."""
    if not isinstance(text, str) or not text.startswith("ed25519/") or len(text) != 8 + 64:
        raise KeyDocumentError("public key must be `ed25519/<64 hex digits>`")
    try:
        raw = bytes.fromhex(text[8:])
    except ValueError:
        raise KeyDocumentError("public key must be `ed25519/<64 hex digits>`") from None
    try:
        _biscuit.public_key(raw)
    except Exception:
        raise KeyDocumentError("public key must be `ed25519/<64 hex digits>`") from None
    return raw


@dataclass(frozen=True)
class RootKeys:
    """Root public keys by kid."""

    keys: Mapping[int, biscuit_auth.PublicKey] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: Any) -> RootKeys:
        """Reads ``{"keys": [{"kid", "algorithm", "public_key", "status", ...}]}``."""
        if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
            raise KeyDocumentError("a key document is {\"keys\": [...]}")
        keys: dict[int, biscuit_auth.PublicKey] = {}
        for entry in document["keys"]:
            if not isinstance(entry, Mapping):
                raise KeyDocumentError("each key is an object")
            kid = entry.get("kid")
            if isinstance(kid, bool) or not isinstance(kid, int) or not 0 <= kid <= 0xFFFFFFFF:
                raise KeyDocumentError("a kid is an unsigned 32-bit integer")
            if entry.get("algorithm") != "ed25519":
                raise KeyDocumentError(f"kid {kid}: unsupported algorithm (only ed25519)")
            if entry.get("status") not in ("active", "verify_only"):
                raise KeyDocumentError(f"kid {kid}: status is active or verify_only")
            raw = parse_public_key(entry.get("public_key"))
            if kid in keys:
                raise KeyDocumentError(f"kid {kid} is published twice")
            keys[kid] = _biscuit.public_key(raw)
        return cls(keys)

    def get(self, kid: int | None) -> biscuit_auth.PublicKey | None:
        return None if kid is None else self.keys.get(kid)


@dataclass(frozen=True)
class AgentKeys:
    """Registered agents' public keys: agent id → set of (algorithm, key bytes)."""

    agents: Mapping[str, frozenset[tuple[int, bytes]]] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: Any) -> AgentKeys:
        """Reads ``{"agents": [{"agent": id, "public_keys": ["ed25519/…"]}]}``."""
        if not isinstance(document, Mapping) or not isinstance(document.get("agents"), list):
            raise KeyDocumentError("an agent key document is {\"agents\": [...]}")
        agents: dict[str, set[tuple[int, bytes]]] = {}
        for entry in document["agents"]:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("agent"), str):
                raise KeyDocumentError("each entry names an agent")
            public_keys = entry.get("public_keys")
            if not isinstance(public_keys, list):
                raise KeyDocumentError("each entry lists public_keys")
            keys = {(0, parse_public_key(k)) for k in public_keys}
            agents.setdefault(entry["agent"], set()).update(keys)
        return cls({agent: frozenset(keys) for agent, keys in agents.items()})

    def registered(self, agent: str, key: tuple[int, bytes]) -> bool:
        """Whether ``key`` is registered for ``agent``."""
        return key in self.agents.get(agent, frozenset())

    def known(self, key: tuple[int, bytes]) -> bool:
        """Whether ``key`` is registered for any agent."""
        return any(key in keys for keys in self.agents.values())
