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
   ``arg`` facts, the policy ``allow if mandate_schema(1), right($tool, $op)`` and explicit run
   limits (1,000 facts, 100 iterations, 20 ms).

:func:`check_token` does 1 to 3 (what holds while the keys stay the same); :class:`Checked`
does the rest per call. :class:`Verifier` fetches and caches mandate's keys and checked tokens;
:meth:`Verifier.from_documents` builds one from documents at hand (tests, air-gapped services).
Every refusal is a :class:`~mandate_client.errors.VerificationError` whose ``code`` is the Rust
``TokenError::code()``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Iterable, Mapping, Protocol, TypeVar

import biscuit_auth
import httpx

from . import _biscuit
from . import vocabulary as vocab
from .errors import VerificationError
from .keys import AgentKeys, KeyDocumentError, RootKeys
from .pop import HolderKey, InvalidProof, ProofChecker, constant_time_eq, token_hash
from .vocabulary import ArgConstraint, Attestation, Narrowing, Rebind, Right

__all__ = [
    "Checked",
    "Clock",
    "RevocationCheck",
    "SyncVerifier",
    "SystemClock",
    "Verified",
    "Verifier",
    "VerifierSettings",
    "VerifyOptions",
    "check_token",
    "format_time",
]

log = logging.getLogger(__name__)

#: The largest clock skew tolerated on expiry, in seconds.
MAX_SKEW_SECONDS = 30
#: The largest token parsed, in bytes.
MAX_TOKEN_BYTES = 16 * 1024
#: Most argument facts stated for one call.
MAX_ARGUMENT_FACTS = 64
#: Deepest nesting followed into a call's arguments.
MAX_DEPTH = 4


# --- refusals ----------------------------------------------------------------------------------


class _Coded(VerificationError):
    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__ or self.code)


class TooLarge(_Coded):
    """token larger than 16384 bytes"""

    code = "too_large"


class UnknownKey(_Coded):
    """signed with an unknown root key"""

    code = "unknown_key"


class BadSignature(_Coded):
    """a signature does not verify"""

    code = "bad_signature"


class Expired(_Coded):
    """the mandate has expired"""

    code = "expired"


class Revoked(_Coded):
    """the mandate has been revoked"""

    code = "revoked"


class ForgedAttestation(_Coded):
    """forged attestation"""

    code = "forged_attestation"


class ForgedBinding(_Coded):
    """forged binding"""

    code = "forged_binding"


class NotAuthorized(_Coded):
    """not authorized"""

    code = "not_authorized"


class ArgumentNotAllowed(_Coded):
    """The call's arguments are outside a constraint of the mandate."""

    code = "argument_not_allowed"

    def __init__(self, argument: str, requirement: str) -> None:
        super().__init__(f"argument `{argument}` {requirement}")
        self.argument = argument
        self.requirement = requirement


class RevocationsStale(_Coded):
    """revocation list stale"""

    code = "revocations_stale"


class Invalid(_Coded):
    """the Biscuit library refused the token"""

    code = "invalid"


# --- settings and read-out ---------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyOptions:
    """Bounds and tolerances of one verification."""

    max_bytes: int = MAX_TOKEN_BYTES
    max_blocks: int = vocab.MAX_BLOCKS
    skew_seconds: int = MAX_SKEW_SECONDS
    max_facts: int = 1000
    max_iterations: int = 100
    max_time: timedelta = timedelta(milliseconds=20)


def format_time(seconds: int) -> str:
    """RFC 3339 in UTC with a ``Z`` (years past 9999 included, as chrono writes them)."""
    days, rest = divmod(seconds, 86400)
    # Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"


@dataclass(frozen=True)
class Hop:
    """One step of the delegation chain after the orchestrator."""

    agent: str
    attested: bool

    def to_json(self) -> dict[str, Any]:
        return {"agent": self.agent, "attested": self.attested}


@dataclass(frozen=True)
class Verified:
    """A verified mandate: who acts, for whom, through which hops; ``right_used`` is the
    tool and operation this call was authorized for."""

    mandate_id: str
    principal_subject: str
    principal_issuer: str
    agent_id: str
    task_id: str
    hops: tuple[Hop, ...]
    rights: tuple[Right, ...]
    expires_at: int
    revocation_ids: tuple[str, ...]
    constraints: tuple[ArgConstraint, ...]
    holder_key: str | None = None
    right_used: Right | None = None

    @property
    def expires(self) -> datetime:
        """``expires_at`` as an aware datetime."""
        return datetime.fromtimestamp(self.expires_at, timezone.utc)

    def to_json(self) -> dict[str, Any]:
        """The read-out as mandate's verifier writes it (``holder_key`` only when bound)."""
        out: dict[str, Any] = {
            "agent_id": self.agent_id,
            "constraints": [c.to_json() for c in self.constraints],
            "expires_at": format_time(self.expires_at),
            "hops": [h.to_json() for h in self.hops],
            "mandate_id": self.mandate_id,
            "principal_issuer": self.principal_issuer,
            "principal_subject": self.principal_subject,
            "revocation_ids": list(self.revocation_ids),
            "rights": [r.to_json() for r in self.rights],
            "task_id": self.task_id,
        }
        if self.holder_key is not None:
            out["holder_key"] = self.holder_key
        return out


# --- checking a token (no request yet) ---------------------------------------------------------


def _hops(decoded: vocab.Decoded, agent_keys: AgentKeys) -> tuple[Hop, ...]:
    hops: list[Hop] = []
    for block, signer in zip(decoded.blocks, decoded.signers):
        if isinstance(block, Attestation) and signer is not None:
            agent = block.agent
            if not hops or hops[-1].agent != agent or hops[-1].attested:
                raise ForgedAttestation(
                    f"forged attestation: `{agent}` attests a hop the token was not delegated to it for"
                )
            if not agent_keys.registered(agent, (signer.algorithm, signer.key)):
                raise ForgedAttestation(
                    f"forged attestation: the attestation of `{agent}` is not signed by a key registered for it"
                )
            hops[-1] = Hop(agent, True)
        elif isinstance(block, Rebind) and signer is not None:
            continue
        elif isinstance(block, Narrowing) and signer is None:
            if block.attenuation.delegate is not None:
                hops.append(Hop(block.attenuation.delegate, False))
        else:
            raise vocab.Malformed("not a mandate/v1 token")
    return tuple(hops)


def _holder(bound: str | None, decoded: vocab.Decoded) -> str | None:
    holder = bound
    for block, signer in zip(decoded.blocks, decoded.signers):
        if not isinstance(block, Rebind):
            continue
        if holder is None:
            raise ForgedBinding("forged binding: a mandate bound to no key cannot be bound offline")
        key = HolderKey.from_biscuit_bytes(signer.algorithm, signer.key) if signer else None
        if key is None or key.thumbprint != holder:
            raise ForgedBinding("forged binding: the binding is moved by a block the holder's key did not sign")
        holder = block.holder_key
    return holder


@dataclass(frozen=True)
class Checked:
    """A token whose vocabulary, signatures, hops and binding are checked: what stays true while
    the keys stay the same. Revocation, expiry, proof and authorization are per call."""

    biscuit: biscuit_auth.Biscuit
    decoded: vocab.Decoded
    verified: Verified
    revocation_bytes: tuple[bytes, ...]
    ath: str

    def usable_rights(self) -> list[Right]:
        """The rights still usable: the mandate's, less what any later block leaves out."""
        rights = list(self.verified.rights)
        for block in self.decoded.blocks:
            if isinstance(block, Narrowing) and block.attenuation.rights is not None:
                rights = [r for r in rights if r in block.attenuation.rights]
        return rights

    def constraints_on(self, tool: str, operation: str) -> list[ArgConstraint]:
        """The constraints on the arguments of ``operation`` of ``tool``."""
        return [c for c in self.verified.constraints if c.tool == tool and c.operation == operation]

    def alive(self, is_revoked: Callable[[bytes], bool], now: int, options: VerifyOptions) -> None:
        """Refuses a revoked token, or one expired at ``now`` less the skew."""
        if any(is_revoked(rid) for rid in self.revocation_bytes):
            raise Revoked()
        if now - options.skew_seconds > self.verified.expires_at:
            raise Expired()

    def authorize(
        self,
        *,
        is_revoked: Callable[[bytes], bool],
        tool: str,
        operation: str,
        now: int,
        resource: str | None = None,
        arguments: Any = None,
        proven: str | None = None,
        options: VerifyOptions = VerifyOptions(),
    ) -> Verified:
        """Authorizes one call at ``now`` (seconds) for a caller that proved it holds the key
        with thumbprint ``proven`` (``None``: no proof). A refusal a constraint explains names
        the argument."""
        holder = self.verified.holder_key
        if holder is None and proven is not None:
            raise InvalidProof("the mandate is not bound to a key: present it as `Authorization: Bearer`")
        if holder is not None and proven is None:
            raise InvalidProof(
                "the mandate is bound to a key: present it as `Authorization: DPoP` with a `DPoP` proof"
            )
        if holder is not None and proven is not None and not constant_time_eq(holder, proven):
            raise InvalidProof("the proof is signed by a key other than the mandate's holder")
        wanted = sorted({c.argument for c in self.constraints_on(tool, operation)})
        stated = arguments_from_json(arguments, wanted) if arguments is not None and wanted else {}
        try:
            self._run(is_revoked, tool, operation, now, resource, stated, proven, options)
        except (NotAuthorized, Invalid) as error:
            explained = self._explain(tool, operation, stated)
            if explained is not None:
                raise explained from None
            raise error
        return _with_right(self.verified, Right(tool, operation))

    def _explain(self, tool: str, operation: str, stated: Mapping[str, Any]) -> VerificationError | None:
        if Right(tool, operation) not in self.usable_rights():
            return None
        for c in self.constraints_on(tool, operation):
            if c.argument in stated:
                if c.constraint.allows(stated[c.argument]):
                    continue
                return ArgumentNotAllowed(c.argument, c.constraint.describe())
            return ArgumentNotAllowed(c.argument, f"{c.constraint.describe()} (the call does not give it)")
        return None

    def _run(
        self,
        is_revoked: Callable[[bytes], bool],
        tool: str,
        operation: str,
        now: int,
        resource: str | None,
        stated: Mapping[str, Any],
        proven: str | None,
        options: VerifyOptions,
    ) -> None:
        if any(is_revoked(rid) for rid in self.revocation_bytes):
            raise Revoked()
        at = now - options.skew_seconds
        if at > self.verified.expires_at:
            raise Expired()
        if at < 0:
            raise vocab.Malformed("time out of range")
        source = ["time({time}); tool({tool}); operation({operation});"]
        params: dict[str, Any] = {
            "time": datetime.fromtimestamp(at, timezone.utc),
            "tool": tool,
            "operation": operation,
        }
        if resource is not None:
            source.append("resource({resource});")
            params["resource"] = resource
        if proven is not None:
            source.append("holder_proof({jkt});")
            params["jkt"] = proven
        for i, (path, value) in enumerate(stated.items()):
            source.append(f"arg({{p{i}}}, {{v{i}}});")
            params[f"p{i}"] = path
            params[f"v{i}"] = set(value) if isinstance(value, tuple) else value
        source.append("allow if mandate_schema(1), right({tool}, {operation});")
        try:
            builder = biscuit_auth.AuthorizerBuilder(" ".join(source), params)
            _biscuit.set_limits(
                builder,
                max_facts=options.max_facts,
                max_iterations=options.max_iterations,
                max_time=options.max_time,
            )
            builder.build(self.biscuit).authorize()
        except biscuit_auth.AuthorizationError as error:
            message = str(error)
            if message.startswith("authorization failed"):
                if "time($time)" in message:
                    raise Expired() from None
                raise NotAuthorized("not authorized: a check of the mandate failed") from None
            if "limits" in message:
                raise NotAuthorized("not authorized: authorizer run limits reached") from None
            raise Invalid() from None
        except (biscuit_auth.DataLogError, biscuit_auth.BiscuitBuildError, ValueError, TypeError):
            raise Invalid() from None


def _with_right(verified: Verified, right: Right) -> Verified:
    return Verified(**{**verified.__dict__, "right_used": right})


def check_token(
    token: str,
    keys: RootKeys,
    agent_keys: AgentKeys = AgentKeys(),
    options: VerifyOptions = VerifyOptions(),
    decoded: vocab.Decoded | None = None,
) -> Checked:
    """Size, vocabulary, signatures (the root key of the token's ``root_key_id``), hops and
    holder binding. No Datalog runs."""
    if len(token.encode()) > options.max_bytes:
        raise TooLarge()
    if decoded is None:
        decoded = vocab.read(token, options.max_blocks)
    root = keys.get(decoded.root_key_id)
    if root is None:
        raise UnknownKey()
    try:
        biscuit = biscuit_auth.Biscuit.from_base64(token.strip(), root)
    except biscuit_auth.BiscuitValidationError:
        # The structure was read above, so what remains is a signature that does not verify.
        raise BadSignature() from None
    if biscuit.block_count() != len(decoded.blocks) + 1:
        raise vocab.Malformed("not a mandate/v1 token")
    authority = vocab.read_authority(decoded.authority)
    revocation_ids = tuple(biscuit.revocation_ids)
    hops = _hops(decoded, agent_keys)
    holder = _holder(authority.holder_key, decoded)
    constraints = list(authority.constraints)
    expires_at = authority.expires_at
    for block in decoded.blocks:
        if isinstance(block, Narrowing):
            constraints.extend(block.attenuation.constraints)
            if block.attenuation.expires_at is not None:
                expires_at = min(expires_at, block.attenuation.expires_at)
    verified = Verified(
        mandate_id=authority.mandate_id,
        principal_subject=authority.principal_subject,
        principal_issuer=authority.principal_issuer,
        agent_id=authority.agent_id,
        task_id=authority.task_id,
        hops=hops,
        rights=authority.rights,
        expires_at=expires_at,
        revocation_ids=revocation_ids,
        constraints=tuple(constraints),
        holder_key=holder,
    )
    return Checked(
        biscuit=biscuit,
        decoded=decoded,
        verified=verified,
        revocation_bytes=tuple(bytes.fromhex(r) for r in revocation_ids),
        ath=token_hash(token),
    )


# --- call arguments (Arguments::from_json) -----------------------------------------------------


def _scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else None
    if isinstance(value, str):
        return value
    return None


def _kind(value: Any) -> int:
    return 0 if isinstance(value, bool) else 1 if isinstance(value, int) else 2


def _arg_value(value: Any) -> Any:
    if isinstance(value, list):
        items = [_scalar(v) for v in value]
        if any(v is None for v in items):
            return None
        if items and any(_kind(v) != _kind(items[0]) for v in items):
            return None
        return tuple(items)
    return _scalar(value)


def arguments_from_json(arguments: Any, wanted: Iterable[str]) -> dict[str, Any]:
    """The ``arg`` facts of a call: for each wanted path (at most 64, sorted), its value if it
    is a string, an integer (64-bit), a boolean, or an array of one of those types (a tuple,
    stated as a set); nested members by dotted path, at most 4 deep. Floats, nulls, mixed
    arrays and objects are not stated."""
    found: dict[str, Any] = {}
    if not isinstance(arguments, dict):
        return found
    for path in sorted(wanted)[:MAX_ARGUMENT_FACTS]:
        segments = path.split(".")
        value: Any = arguments.get(segments[0], _MISSING)
        for depth, segment in enumerate(segments[1:]):
            if value is _MISSING or depth + 1 >= MAX_DEPTH or not isinstance(value, dict):
                value = _MISSING
                break
            value = value.get(segment, _MISSING)
        if value is _MISSING:
            continue
        stated = _arg_value(value)
        if stated is not None:
            found[path] = stated
    return found


_MISSING = object()


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
    #: An unknown kid or attesting key refetches the keys at most once per this many seconds.
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


@dataclass
class _Keys:
    root: RootKeys = field(default_factory=RootKeys)
    agents: AgentKeys = field(default_factory=AgentKeys)
    last_fetch: float | None = None
    last_success: float | None = None
    generation: int = 0


@dataclass(frozen=True)
class _Entry:
    checked: Checked
    generation: int


class Verifier:
    """Verifies mandates offline with mandate's published keys.

    ``await verifier.verify(token, tool=..., operation=...)`` answers a :class:`Verified` or
    raises a :class:`VerificationError` with mandate's refusal code. Keys are fetched on first
    use, refetched every 5 minutes, and on an unknown kid or attesting key at most once per
    30 s; after an hour without a successful fetch the verifier fails closed. Checked tokens
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
        self.base_url = base_url.rstrip("/") if base_url else None
        self.settings = settings
        self.revocations: RevocationCheck = revocations if revocations is not None else NoRevocations()
        self.clock: Clock = clock or SystemClock()
        self._http = http
        self._owns_http = http is None
        self._keys = _Keys()
        self._tokens: OrderedDict[bytes, _Entry] = OrderedDict()
        self._lock = asyncio.Lock()
        self.proofs = ProofChecker(
            max_age=settings.proof_max_age,
            max_ahead=settings.proof_max_ahead,
            require_nonce=settings.require_nonce,
            replay_capacity=settings.replay_capacity,
            nonce_key=settings.nonce_key,
        )

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
        verifier._keys = _Keys(
            root=RootKeys.from_document(keys),
            agents=AgentKeys.from_document(agent_keys or {"agents": []}),
            last_fetch=verifier.clock.monotonic(),
            last_success=verifier.clock.monotonic(),
            generation=1,
        )
        return verifier

    async def aclose(self) -> None:
        """Closes the HTTP client this verifier made."""
        if self._http is not None and self._owns_http:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> Verifier:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # keys

    async def _get(self, path: str) -> Any:
        assert self.base_url is not None
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.settings.fetch_timeout)
        response = await self._http.get(self.base_url + path, timeout=self.settings.fetch_timeout)
        response.raise_for_status()
        return response.json()

    async def refresh(self) -> None:
        """Fetches the root and agent keys now (a malformed document changes nothing)."""
        if self.base_url is None:
            return
        root = RootKeys.from_document(await self._get("/.well-known/mandate-keys"))
        agents = AgentKeys.from_document(await self._get("/.well-known/mandate-agent-keys"))
        fetched = self.clock.monotonic()
        self._keys = _Keys(root, agents, fetched, fetched, self._keys.generation + 1)
        self._tokens.clear()

    async def _refresh_if_due(self, unknown: bool) -> None:
        if self.base_url is None:
            return
        async with self._lock:
            now = self.clock.monotonic()
            last = self._keys.last_fetch
            age = None if last is None else max(0.0, now - last)
            due = (
                age is None
                or age >= self.settings.key_ttl
                or (unknown and age >= self.settings.refetch_interval)
            )
            if not due:
                return
            try:
                await self.refresh()
            except (httpx.HTTPError, KeyDocumentError, ValueError) as error:
                log.warning("cannot refresh mandate's keys: %s", type(error).__name__)
                success = self._keys.last_success
                self._keys.last_fetch = now
                if success is None or now - success > self.settings.max_key_age:
                    raise UnknownKey("mandate's keys cannot be fetched") from None

    async def _ensure_keys(self, decoded: vocab.Decoded) -> None:
        keys = self._keys
        kid = decoded.root_key_id
        unknown = keys.root.get(kid) is None
        for block, signer in zip(decoded.blocks, decoded.signers):
            if isinstance(block, Attestation) and signer is not None:
                unknown = unknown or not keys.agents.known((signer.algorithm, signer.key))
        await self._refresh_if_due(unknown)

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
            if entry.generation == self._keys.generation and entry.checked.verified.expires_at > self.clock.now():
                return entry.checked
            del self._tokens[digest]
        decoded = vocab.read(token, options.max_blocks)
        await self._ensure_keys(decoded)
        keys = self._keys
        checked = check_token(token, keys.root, keys.agents, options, decoded)
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
