"""Checking a mandate: everything about one token that needs no key cache, in the order
mandate's Rust verifier does (``src/token/verify.rs``, ``src/verifier/mod.rs``).

:func:`check_token` reads the token's size and block vocabulary (:mod:`.vocabulary`) before any
signature is checked or any Datalog runs, then its signatures (the root key its
``root_key_id`` names), its hops and its holder binding: what holds while the keys stay the
same. :class:`Checked` does the rest per call: revocation, expiry (30 s of clock skew), the
proof's thumbprint against the holder, and the authorizer run with ``time``, ``tool``,
``operation``, ``resource``, ``holder_proof``, ``arg`` and ``arguments_sha256`` facts, the policy
``allow if mandate_schema(1), right($tool, $op)`` and explicit run limits (1,000 facts,
100 iterations, 20 ms).

Every refusal is a :class:`~mandate_client.errors.VerificationError` whose ``code`` is the Rust
``TokenError::code()``. :mod:`mandate_client.verify` re-exports the public names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Mapping

import biscuit_auth

from . import _biscuit
from . import vocabulary as vocab
from ._time import format_time
from .approval import Approval, Approver
from .canonical import arguments_sha256
from .errors import VerificationError
from .keys import AgentKeys, RootKeys
from .pop import HolderKey, InvalidProof, constant_time_eq, token_hash
from .vocabulary import ArgConstraint, Attestation, Narrowing, Rebind, Right

__all__ = [
    "Approval",
    "Approver",
    "ArgumentNotAllowed",
    "ArgumentsNotApproved",
    "BadSignature",
    "Checked",
    "Expired",
    "ForgedAttestation",
    "ForgedBinding",
    "Hop",
    "Invalid",
    "NotAuthorized",
    "Revoked",
    "RevocationsStale",
    "TooLarge",
    "UnknownKey",
    "Verified",
    "VerifyOptions",
    "arguments_from_json",
    "check_token",
    "format_time",
    "holder_chain",
]

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


class ArgumentsNotApproved(_Coded):
    """The operation's approval is bound to other arguments than the call's (or the verifier
    was not given the call's arguments)."""

    code = "arguments_not_approved"

    def __init__(self, tool: str, operation: str) -> None:
        super().__init__(f"the call's arguments are not the ones approved for `{tool}` `{operation}`")
        self.tool = tool
        self.operation = operation


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
    #: The human approvals of the rights a policy gates behind approval, by tool and operation.
    approvals: tuple[Approval, ...] = ()
    right_used: Right | None = None

    @property
    def expires(self) -> datetime:
        """``expires_at`` as an aware datetime."""
        return datetime.fromtimestamp(self.expires_at, timezone.utc)

    def to_json(self) -> dict[str, Any]:
        """The read-out as mandate's verifier writes it (``holder_key`` only when bound,
        ``approvals`` only when there are some)."""
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
        if self.approvals:
            out["approvals"] = [a.to_json() for a in self.approvals]
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


def holder_chain(bound: str | None, decoded: vocab.Decoded) -> str | None:
    """The thumbprint the token is bound to after its blocks: ``bound`` (the authority's
    ``holder_key``, ``None`` for a bearer mandate), moved by each rebinding the holder so far
    signed. Raises :class:`ForgedBinding` for a rebinding of a bearer mandate, or one another
    key signed."""
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
        the argument; an approval bound to other arguments (or a call without them) is refused
        as :class:`ArgumentsNotApproved`."""
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
        approved = self.approved_arguments(tool, operation)
        # The digest is computed only for an operation whose approval is bound to arguments.
        digest = _digest(arguments) if approved is not None and arguments is not None else None
        try:
            self._run(is_revoked, tool, operation, now, resource, stated, digest, proven, options)
        except (NotAuthorized, Invalid) as error:
            explained = self._explain(tool, operation, stated, approved, digest)
            if explained is not None:
                raise explained from None
            raise error
        return _with_right(self.verified, Right(tool, operation))

    def approved_arguments(self, tool: str, operation: str) -> str | None:
        """The digest of the arguments the approval of ``operation`` of ``tool`` is bound to,
        if it is."""
        for approval in self.verified.approvals:
            if (approval.tool, approval.operation) == (tool, operation):
                return approval.arguments_sha256
        return None

    def _explain(
        self, tool: str, operation: str, stated: Mapping[str, Any], approved: str | None, digest: str | None
    ) -> VerificationError | None:
        if Right(tool, operation) not in self.usable_rights():
            return None
        if approved is not None and approved != digest:
            return ArgumentsNotApproved(tool, operation)
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
        digest: str | None,
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
        if digest is not None:
            source.append("arguments_sha256({sha256});")
            params["sha256"] = digest
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


def _digest(arguments: Any) -> str | None:
    """The SHA-256 of the call's arguments in canonical JSON; ``None`` (no fact stated, so an
    approval bound to arguments refuses the call) for arguments that have no canonical form."""
    try:
        return arguments_sha256(arguments)
    except (ValueError, RecursionError):
        return None


def _with_right(verified: Verified, right: Right) -> Verified:
    return Verified(**{**verified.__dict__, "right_used": right})


def check_token(
    token: str,
    keys: RootKeys,
    agent_keys: AgentKeys = AgentKeys(),
    options: VerifyOptions = VerifyOptions(),
) -> Checked:
    """Size, vocabulary, signatures (the root key of the token's ``root_key_id``), hops and
    holder binding. No Datalog runs."""
    if len(token.encode()) > options.max_bytes:
        raise TooLarge()
    return _check_decoded(token, vocab.read(token, options.max_blocks), keys, agent_keys)


def _check_decoded(token: str, decoded: vocab.Decoded, keys: RootKeys, agent_keys: AgentKeys) -> Checked:
    """:func:`check_token` for ``decoded``, which must be ``vocab.read(token)``: the caller
    decoded the token itself (to see which keys it needs) and its size is checked. Private, so
    no caller can hand in the decode of another token."""
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
    holder = holder_chain(authority.holder_key, decoded)
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
        approvals=authority.approvals,
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
