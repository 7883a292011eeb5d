"""What mandate's HTTP API answers, as frozen values: a minted :class:`Mandate`, a
:class:`Revocation`, an :class:`Introspection`, the attribution trail's :class:`Action`, and
the parts they share (:class:`Right`, :class:`Hop`, :class:`Denial`, :class:`FieldError`).
:mod:`mandate_client.client` builds them from the service's JSON and re-exports every name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

__all__ = [
    "Action", "BranchRevocation", "Denial", "FieldError", "Hop", "Introspection", "Mandate",
    "Revocation", "Right",
]


@dataclass(frozen=True)
class Right:
    """One granted operation of a tool."""

    tool: str
    operation: str


@dataclass(frozen=True)
class Denial:
    """One refused operation and why (``unknown_operation``, ``no_policy``, …)."""

    tool: str
    operation: str
    reason: str
    argument: Any = None


@dataclass(frozen=True)
class FieldError:
    """One invalid field of a request."""

    field: str
    message: str


@dataclass(frozen=True)
class Hop:
    """One delegation hop after the orchestrator: the agent, and whether it signed its hop."""

    agent: str
    attested: bool


@dataclass(frozen=True)
class Mandate:
    """A minted mandate. ``token`` is the credential itself: it is never shown in ``repr``."""

    token: str = field(repr=False)
    mandate_id: str
    expires_at: datetime
    scope: tuple[Right, ...]
    revocation_id: str
    #: The RFC 7638 thumbprint of the key it is bound to; ``None`` for a bearer mandate.
    holder_key: str | None = None
    #: ``Bearer``, or ``DPoP`` for a bound mandate (send it as ``Authorization: DPoP``).
    token_type: str = "Bearer"
    #: The argument constraints the mandate enforces, as the API states them.
    constraints: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Revocation:
    """A revoked (or completed) mandate."""

    mandate_id: str | None
    revocation_id: str
    revoked_by: str
    reason: str
    revoked_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class BranchRevocation:
    """A holder's revoked branch; ``whole_mandate`` when the mandate's branch cap was reached."""

    revocation_id: str
    revoked_at: datetime
    whole_mandate: bool


@dataclass(frozen=True)
class Introspection:
    """``POST /v1/introspect``: whether a token is active, and whom it speaks for."""

    active: bool
    mandate_id: str | None = None
    subject: str | None = None
    issuer: str | None = None
    agent: str | None = None
    hops: tuple[Hop, ...] = ()
    scope: tuple[Right, ...] = ()
    expires_at: datetime | None = None
    #: ``cnf.jkt``: the thumbprint a caller's proof must have, for a bound mandate.
    jkt: str | None = None


@dataclass(frozen=True)
class Action:
    """One reported action with its chain: principal → orchestrator → hops → tool → outcome."""

    occurred_at: datetime
    principal_subject: str
    principal_issuer: str
    orchestrator: str
    hops: tuple[Hop, ...]
    tool: str
    operation: str
    resource: str | None
    outcome: str
    mandate_id: str
    task_id: str
    receipt_id: str
    reporter: str | None
    details: Mapping[str, Any]
