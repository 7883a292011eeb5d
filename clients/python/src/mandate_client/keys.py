"""mandate's published keys: the root keys that sign mandates (``/.well-known/mandate-keys``)
and the agents' registered keys that sign attested hops (``/.well-known/mandate-agent-keys``).

Both documents are read strictly, as mandate's ``src/token/keys.rs`` does: every key is
``ed25519/<64 hex digits>``, root keys name the ``ed25519`` algorithm, a kid appears once.
A malformed document raises :class:`KeyDocumentError` and nothing of it is used.

:class:`KeyCache` holds the documents a verifier last fetched, as mandate's
``src/verifier/mod.rs`` keeps them: refetched every ``key_ttl``, on an unknown kid or attesting
key (or keys too old to trust) at most once per ``refetch_interval``, and no longer trusted, on
every verification, once the last successful fetch is older than ``max_key_age``. One fetch runs
at a time: calls arriving while it runs wait for it, and do not fetch again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import biscuit_auth
import httpx

from . import _biscuit
from .errors import MandateError

__all__ = ["AgentKeys", "KeyCache", "KeyDocumentError", "RootKeys", "parse_public_key"]

log = logging.getLogger(__name__)


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


class KeyCache:
    """mandate's root and agent keys as last fetched from ``base_url`` (``None``: documents at
    hand, never fetched and never aged). ``monotonic`` is the clock the ages are measured on."""

    def __init__(
        self,
        base_url: str | None,
        *,
        monotonic: Callable[[], float],
        key_ttl: float,
        refetch_interval: float,
        max_key_age: float,
        fetch_timeout: float,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self._monotonic = monotonic
        self.key_ttl = key_ttl
        self.refetch_interval = refetch_interval
        self.max_key_age = max_key_age
        self.fetch_timeout = fetch_timeout
        self._http = http
        self._owns_http = http is None
        self._lock = asyncio.Lock()
        self.root = RootKeys()
        self.agents = AgentKeys()
        #: When the keys were last asked for, and last fetched (monotonic seconds).
        self.last_fetch: float | None = None
        self.last_success: float | None = None
        #: Bumped on every change of keys: what was checked with older keys is checked again.
        self.generation = 0

    def use(self, root: RootKeys, agents: AgentKeys) -> None:
        """Trusts these keys from now on."""
        now = self._monotonic()
        self.root, self.agents = root, agents
        self.last_fetch = self.last_success = now
        self.generation += 1

    async def _get(self, path: str) -> Any:
        assert self.base_url is not None
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.fetch_timeout)
        response = await self._http.get(self.base_url + path, timeout=self.fetch_timeout)
        response.raise_for_status()
        return response.json()

    async def refresh(self) -> None:
        """Fetches the root and agent keys now (a malformed document changes nothing)."""
        if self.base_url is None:
            return
        root = RootKeys.from_document(await self._get("/.well-known/mandate-keys"))
        agents = AgentKeys.from_document(await self._get("/.well-known/mandate-agent-keys"))
        self.use(root, agents)

    def unknown(self, kid: int | None, attesting: list[tuple[int, bytes]]) -> bool:
        """Whether a token naming root key ``kid``, attested by ``attesting``, needs a key not here."""
        return self.root.get(kid) is None or any(not self.agents.known(k) for k in attesting)

    async def refresh_if_due(self, unknown: bool) -> bool:
        """Refreshes the keys when they are older than ``key_ttl``, or when a token needs a key
        not here (``unknown``) or the keys are too old to trust, and the last attempt is older
        than ``refetch_interval``. Whether the keys can be trusted: not once the last successful
        fetch is older than ``max_key_age``, checked on every call, whether or not this one was
        due to fetch.

        The lock makes a fetch single flight: a call waiting for it reads the clock and the
        last attempt only once the fetch before it is over, so it finds no fetch due."""
        if self.base_url is None:
            return True
        async with self._lock:
            now = self._monotonic()
            last = self.last_fetch
            age = None if last is None else max(0.0, now - last)
            # Keys too old to trust are asked for as often as an unknown key is, so verification
            # resumes soon after mandate is reachable again.
            untrusted = not self._trusted(now)
            due = age is None or age >= self.key_ttl or ((unknown or untrusted) and age >= self.refetch_interval)
            if due:
                try:
                    await self.refresh()
                except (httpx.HTTPError, KeyDocumentError, ValueError) as error:
                    log.warning("cannot refresh mandate's keys: %s", type(error).__name__)
                    # Count the attempt, so an unreachable mandate is not asked on every request.
                    self.last_fetch = now
            return self._trusted(now)

    def _trusted(self, now: float) -> bool:
        """Whether the last successful fetch is at most ``max_key_age`` old at ``now``."""
        success = self.last_success
        return success is not None and now - success <= self.max_key_age

    async def aclose(self) -> None:
        """Closes the HTTP client this cache made."""
        if self._http is not None and self._owns_http:
            await self._http.aclose()
            self._http = None
