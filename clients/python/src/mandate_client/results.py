"""What mandate's HTTP API answers, as frozen values: a minted :class:`Mandate` (with the
:class:`~mandate_client.approval.Approval` of each gated right it carries), an
:class:`ApprovalRequest` waiting for human approval (its :class:`GatedRight` and
:class:`Decision` values), a :class:`Revocation`, an :class:`Introspection`, the attribution
trail's :class:`Action`, and the parts they share (:class:`Right`, :class:`Hop`,
:class:`Denial`, :class:`FieldError`). :mod:`mandate_client.client` builds them from the
service's JSON and re-exports every name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Mapping

from .approval import Approval, Approver

__all__ = [
    "Action", "ApprovalRequest", "ApprovalState", "BranchRevocation", "Decision", "Denial", "FieldError",
    "GatedRight", "Hop", "Introspection", "Mandate", "Revocation", "Right",
]

#: Where an approval request is: waiting for decisions, approved (its mandate may be collected),
#: denied by an approver, expired (undecided, or approved and not collected, in time), or issued
#: (its mandate was collected).
ApprovalState = Literal["pending", "approved", "denied", "expired", "issued"]


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
    #: The human approval of each right a policy gates, as a verifier reads it from the token.
    approvals: tuple[Approval, ...] = ()


@dataclass(frozen=True)
class GatedRight:
    """One operation of an approval request that needs approval: the policy that gates it, the
    issuer whose subjects approve it, its rule as the policy stated it (``approvers``,
    ``required``, ``valid_seconds``, …), and for a rule bound to one call that call's
    ``arguments`` and their ``arguments_sha256`` (hex, RFC 8785 canonical JSON)."""

    tool: str
    operation: str
    policy: str
    approver_issuer: str
    rule: Mapping[str, Any]
    arguments: Mapping[str, Any] | None = None
    arguments_sha256: str | None = None


@dataclass(frozen=True)
class Decision:
    """One approver's decision on an approval request, and the gated rights it counts toward."""

    approver: Approver
    verdict: Literal["approve", "deny"]
    reason: str
    counts_for: tuple[Right, ...]
    decided_at: datetime


@dataclass(frozen=True)
class ApprovalRequest:
    """A mint waiting for human approval, as ``GET /v1/approvals/{id}`` shows it. Nothing is
    minted until it is approved; then its orchestrator collects the mandate once, before
    ``expires_at``. ``binding_message`` is what approvers read (who asks what, for whom, for
    which task); ``interval`` the seconds between polls."""

    id: str
    state: ApprovalState
    binding_message: str
    agent: str
    principal: Approver
    task: str
    gated: tuple[GatedRight, ...]
    created_at: datetime
    expires_at: datetime
    decisions: tuple[Decision, ...]
    interval: int
    decided_at: datetime | None = None
    #: The mandate collected on it (state ``issued``).
    mandate_id: str | None = None

    @property
    def denials(self) -> tuple[Decision, ...]:
        """The decisions that deny it (one is enough)."""
        return tuple(d for d in self.decisions if d.verdict == "deny")


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
