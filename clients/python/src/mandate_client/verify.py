"""Verifying a mandate offline, in the order mandate's Rust verifier does (``src/token/verify.rs``,
``src/verifier/mod.rs``):

1. size (16 KiB), then the block vocabulary read from the token's bytes (:mod:`.vocabulary`),
   before any signature is checked or any Datalog runs;
2. signatures, with the root key the token's ``root_key_id`` names;
3. hops (claimed, or attested by the agent's registered key) and the holder binding, moved only
   by blocks its holder so far signed;
4. revoked ids, then expiry (with 30 s of clock skew);
5. the proof of possession: a bound mandate needs a DPoP proof of its current holder, an unbound
   one must come as Bearer;
6. the authorizer, with ``time``, ``tool``, ``operation``, ``resource``, ``holder_proof`` and
   ``arg`` facts (and ``arguments_sha256``, the SHA-256 of the call's arguments in RFC 8785
   canonical JSON, for an operation whose approval is bound to them), the policy
   ``allow if mandate_schema(1), right($tool, $op)`` and explicit run limits (1,000 facts,
   100 iterations, 20 ms). A refusal is explained, when it can be, by the approval bound to
   other arguments (``arguments_not_approved``), then by the first argument constraint broken
   (``argument_not_allowed``).

:func:`check_token` does 1 to 3 (what holds while the keys stay the same); :class:`Checked`
does the rest per call (both in :mod:`.checked`, re-exported here). :class:`Verifier` keeps
mandate's keys (a :class:`~mandate_client.keys.KeyCache`) and checked tokens;
:meth:`Verifier.from_documents` builds one from documents at hand (tests, air-gapped services).
Every refusal is a :class:`~mandate_client.errors.VerificationError` whose ``code`` is the Rust
``TokenError::code()``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Awaitable, Mapping, Protocol, TypeVar

import httpx

from . import vocabulary as vocab
from .checked import (
    MAX_ARGUMENT_FACTS,
    MAX_DEPTH,
    MAX_SKEW_SECONDS,
    MAX_TOKEN_BYTES,
    Approval,
    Approver,
    ArgumentNotAllowed,
    ArgumentsNotApproved,
    BadSignature,
    Checked,
    Expired,
    ForgedAttestation,
    ForgedBinding,
    Hop,
    Invalid,
    NotAuthorized,
    RevocationsStale,
    Revoked,
    TooLarge,
    UnknownKey,
    Verified,
    VerifyOptions,
    _check_decoded,
    arguments_from_json,
    check_token,
    format_time,
)
from .keys import AgentKeys, KeyCache, RootKeys
from .pop import InvalidProof, ProofChecker
from .vocabulary import Attestation

__all__ = [
    "Approval",
    "Approver",
    "ArgumentNotAllowed",
    "ArgumentsNotApproved",
    "BadSignature",
    "Checked",
    "Clock",
    "Expired",
    "ForgedAttestation",
    "ForgedBinding",
    "Hop",
    "Invalid",
    "MAX_ARGUMENT_FACTS",
    "MAX_DEPTH",
    "MAX_SKEW_SECONDS",
    "MAX_TOKEN_BYTES",
    "NotAuthorized",
    "RevocationCheck",
    "RevocationsStale",
    "Revoked",
    "SyncVerifier",
    "SystemClock",
    "TooLarge",
    "UnknownKey",
    "Verified",
    "Verifier",
    "VerifierSettings",
    "VerifyOptions",
    "arguments_from_json",
    "check_token",
    "format_time",
]

# --- the verifier ------------------------------------------------------------------------------


class Clock(Protocol):
    """Wall time (seconds since the epoch) and monotonic time (seconds)."""

    def now(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The machine's clocks."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class RevocationCheck(Protocol):
    """Tells whether a revocation id is revoked, and whether the list can be relied on."""

    def is_revoked(self, revocation_id: bytes) -> bool: ...

    def fresh(self) -> str | None:
        """``None`` when current enough; else why not (verification then fails closed)."""
        ...


class NoRevocations:
    """No revocation list: nothing is revoked."""

    def is_revoked(self, revocation_id: bytes) -> bool:
        return False

    def fresh(self) -> str | None:
        return None


@dataclass(frozen=True)
class VerifierSettings:
    """How a :class:`Verifier` fetches keys and verifies (``VerifierSettings::new`` in Rust)."""

    options: VerifyOptions = VerifyOptions()
    #: An unknown kid or attesting key, or keys too old to trust, refetch the keys at most once
    #: per this many seconds.
    refetch_interval: float = 30.0
    #: Keys are refetched this often anyway.
    key_ttl: float = 300.0
    #: Keys older than this (mandate unreachable) are no longer trusted.
    max_key_age: float = 3600.0
    #: Timeout of each key fetch.
    fetch_timeout: float = 5.0
    #: Most checked tokens remembered (0: none).
    cache_capacity: int = 10_000
    #: Proof window and replay cache.
    proof_max_age: int = 60
    proof_max_ahead: int = 30
    require_nonce: bool = False
    replay_capacity: int = 100_000
    nonce_key: bytes | None = None


@dataclass(frozen=True)
class _Entry:
    checked: Checked
    generation: int


class Verifier:
    """Verifies mandates offline with mandate's published keys.

    ``await verifier.verify(token, tool=..., operation=...)`` answers a :class:`Verified` or
    raises a :class:`VerificationError` with mandate's refusal code. Keys are fetched on first
    use, refetched every 5 minutes, and on an unknown kid or attesting key at most once per
    30 s; after an hour without a successful fetch the verifier fails closed, asking again at
    most once per 30 s until a fetch succeeds. Checked tokens
    are cached (10,000, keyed by SHA-256, dropped on key refresh and expiry).
    """

    def __init__(
        self,
        base_url: str | None,
        *,
        settings: VerifierSettings = VerifierSettings(),
        revocations: RevocationCheck | None = None,
        clock: Clock | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.revocations: RevocationCheck = revocations if revocations is not None else NoRevocations()
        self.clock: Clock = clock or SystemClock()
        self.keys = KeyCache(
            base_url,
            monotonic=self.clock.monotonic,
            key_ttl=settings.key_ttl,
            refetch_interval=settings.refetch_interval,
            max_key_age=settings.max_key_age,
            fetch_timeout=settings.fetch_timeout,
            http=http,
        )
        self._tokens: OrderedDict[bytes, _Entry] = OrderedDict()
        self.proofs = ProofChecker(
            max_age=settings.proof_max_age,
            max_ahead=settings.proof_max_ahead,
            require_nonce=settings.require_nonce,
            replay_capacity=settings.replay_capacity,
            nonce_key=settings.nonce_key,
        )

    @property
    def base_url(self) -> str | None:
        """mandate's URL the keys are fetched from (``None``: documents at hand)."""
        return self.keys.base_url

    @classmethod
    def from_documents(
        cls,
        keys: Mapping[str, Any],
        agent_keys: Mapping[str, Any] | None = None,
        *,
        revocations: RevocationCheck | None = None,
        clock: Clock | None = None,
        settings: VerifierSettings = VerifierSettings(),
    ) -> Verifier:
        """A verifier trusting these documents, fetching nothing."""
        verifier = cls(None, settings=settings, revocations=revocations, clock=clock)
        verifier.keys.use(RootKeys.from_document(keys), AgentKeys.from_document(agent_keys or {"agents": []}))
        return verifier

    async def aclose(self) -> None:
        """Closes the HTTP client this verifier made."""
        await self.keys.aclose()

    async def __aenter__(self) -> Verifier:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # keys

    async def refresh(self) -> None:
        """Fetches the root and agent keys now (a malformed document changes nothing)."""
        await self.keys.refresh()
        self._tokens.clear()

    async def _refresh_if_due(self, unknown: bool) -> None:
        generation = self.keys.generation
        trusted = await self.keys.refresh_if_due(unknown)
        if self.keys.generation != generation:
            self._tokens.clear()
        if not trusted:
            raise UnknownKey("mandate's keys cannot be fetched, and those at hand are too old to trust")

    async def _ensure_keys(self, decoded: vocab.Decoded) -> None:
        attesting = [
            (signer.algorithm, signer.key)
            for block, signer in zip(decoded.blocks, decoded.signers)
            if isinstance(block, Attestation) and signer is not None
        ]
        await self._refresh_if_due(self.keys.unknown(decoded.root_key_id, attesting))

    # tokens

    def _fresh(self) -> None:
        stale = self.revocations.fresh()
        if stale is not None:
            raise RevocationsStale(f"revocation list stale: {stale}")

    async def checked(self, token: str) -> Checked:
        """The checks that hold until the keys change, remembered per token."""
        options = self.settings.options
        if len(token.encode()) > options.max_bytes:
            raise TooLarge()
        self._fresh()
        digest = hashlib.sha256(token.encode()).digest()
        await self._refresh_if_due(False)
        entry = self._tokens.get(digest)
        if entry is not None:
            if entry.generation == self.keys.generation and entry.checked.verified.expires_at > self.clock.now():
                return entry.checked
            del self._tokens[digest]
        decoded = vocab.read(token, options.max_blocks)
        await self._ensure_keys(decoded)
        keys = self.keys
        checked = _check_decoded(token, decoded, keys.root, keys.agents)
        if self.settings.cache_capacity > 0:
            self._tokens[digest] = _Entry(checked, keys.generation)
            while len(self._tokens) > self.settings.cache_capacity:
                self._tokens.popitem(last=False)
        return checked

    async def verify(
        self,
        token: str,
        *,
        tool: str,
        operation: str,
        arguments: Any = None,
        resource: str | None = None,
        proof: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> Verified:
        """Verifies one call: ``token`` as presented (``proof`` is the ``DPoP`` header when the
        call uses the DPoP scheme, ``None`` for Bearer; ``method`` and ``url`` are the call's,
        as the client addressed it), for ``operation`` of ``tool`` on ``resource``, with the
        call's JSON ``arguments``."""
        checked = await self.checked(token)
        return self.authorize(
            checked, token, tool=tool, operation=operation, arguments=arguments,
            resource=resource, proof=proof, method=method, url=url,
        )

    def authorize(
        self,
        checked: Checked,
        token: str,
        *,
        tool: str,
        operation: str,
        arguments: Any = None,
        resource: str | None = None,
        proof: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> Verified:
        """The per-call part of :meth:`verify` for a token already :meth:`checked`."""
        proven = self.prove(checked, proof=proof, method=method, url=url)
        return self.authorize_proven(
            checked, proven, tool=tool, operation=operation, arguments=arguments, resource=resource
        )

    def prove(
        self, checked: Checked, *, proof: str | None, method: str | None, url: str | None
    ) -> str | None:
        """Refuses a revoked or expired token, then checks the call's proof of possession (and
        remembers it): the thumbprint it proves, ``None`` for an unbound token as Bearer."""
        self._fresh()
        now = int(self.clock.now())
        checked.alive(self.revocations.is_revoked, now, self.settings.options)
        return self._prove(checked, proof, method, url, now)

    def authorize_proven(
        self,
        checked: Checked,
        proven: str | None,
        *,
        tool: str,
        operation: str,
        arguments: Any = None,
        resource: str | None = None,
    ) -> Verified:
        """Authorizes one call of a checked token for a caller that proved ``proven``
        (:meth:`prove`): one request may carry several calls, each authorized on its own."""
        self._fresh()
        return checked.authorize(
            is_revoked=self.revocations.is_revoked, tool=tool, operation=operation,
            now=int(self.clock.now()), resource=resource, arguments=arguments, proven=proven,
            options=self.settings.options,
        )

    def _prove(
        self, checked: Checked, proof: str | None, method: str | None, url: str | None, now: int
    ) -> str | None:
        holder = checked.verified.holder_key
        if holder is None and proof is None:
            return None
        if holder is None:
            raise InvalidProof("the mandate is not bound to a key: present it as `Authorization: Bearer`")
        if proof is None:
            raise InvalidProof(
                "the mandate is bound to a key: present it as `Authorization: DPoP` with a `DPoP` proof"
            )
        if method is None or url is None:
            raise InvalidProof("a proof is checked against the call's method and URL")
        return self.proofs.check(
            proof, method=method, url=url, ath=checked.ath, holder_jkt=holder, now=now
        ).jkt

    def nonce(self) -> str:
        """A nonce for the ``DPoP-Nonce`` header."""
        return self.proofs.nonce(self.clock.now())

    @property
    def cached_tokens(self) -> int:
        """How many checked tokens are remembered."""
        return len(self._tokens)


T = TypeVar("T")


class SyncVerifier:
    """A blocking facade over :class:`Verifier`, for code without an event loop."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier
        self._loop = asyncio.new_event_loop()

    @classmethod
    def connect(cls, base_url: str, **kwargs: Any) -> SyncVerifier:
        """A blocking verifier for mandate at ``base_url``."""
        return cls(Verifier(base_url, **kwargs))

    @classmethod
    def from_documents(cls, keys: Mapping[str, Any], agent_keys: Mapping[str, Any] | None = None, **kwargs: Any) -> SyncVerifier:
        """A blocking verifier trusting these documents."""
        return cls(Verifier.from_documents(keys, agent_keys, **kwargs))

    def _run(self, awaitable: Awaitable[T]) -> T:
        return self._loop.run_until_complete(awaitable)

    def verify(self, token: str, **call: Any) -> Verified:
        """:meth:`Verifier.verify`, blocking."""
        return self._run(self.verifier.verify(token, **call))

    def refresh(self) -> None:
        """:meth:`Verifier.refresh`, blocking."""
        self._run(self.verifier.refresh())

    def close(self) -> None:
        self._run(self.verifier.aclose())
        self._loop.close()

    def __enter__(self) -> SyncVerifier:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
