"""Human approvals carried in a mandate (mandate's ``src/token/approval.rs``). A right a policy
gates behind approval is minted only once the approvers have approved, and the authority block
then says so, for any verifier to show offline::

    approval($approval_id, $tool, $operation, $approved_at);          // one per gated right
    approved_by($approval_id, $tool, $operation, $subject, $issuer);  // one per approver of it

One approval request may gate several operations, each approved by different people: a gated
right's approvers are the ``approved_by`` facts with its id, tool and operation.

An approval bound to the exact arguments of the call also states their digest (lowercase hex
SHA-256 of the arguments in RFC 8785 canonical JSON, :mod:`mandate_client.canonical`) and checks
it::

    approval_arguments($approval_id, $tool, $operation, $sha256);
    check if tool($tool), operation($operation), !($tool == TOOL && $operation == OPERATION)
          or arguments_sha256(SHA256);

The verifier states ``arguments_sha256($hex)`` for the call it authorizes, computed from the
call's arguments, so a verifier that does not see them refuses the gated operation. Only the
authority block states these facts; a later block stating them is not a mandate/v1 block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ._time import MAX_SECONDS, format_time
from .errors import Malformed

__all__ = ["Approval", "ApprovalFacts", "Approver", "is_sha256_hex"]

_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256_hex(text: str) -> bool:
    """Whether ``text`` is a SHA-256 in lowercase hex."""
    return _SHA256.fullmatch(text) is not None


@dataclass(frozen=True, order=True)
class Approver:
    """Who approved: the approver's subject at the issuer that proved them."""

    subject: str
    issuer: str

    def to_json(self) -> dict[str, str]:
        return {"issuer": self.issuer, "subject": self.subject}


@dataclass(frozen=True)
class Approval:
    """One gated right's approval, as the mandate carries it: the approval request's ``id``, the
    gated ``tool`` and ``operation``, when it was given (``approved_at``, seconds since the epoch:
    the last approver needed approved), who approved (sorted), and for an approval bound to the
    exact arguments of one call their ``arguments_sha256`` (hex, RFC 8785 canonical JSON)."""

    id: str
    tool: str
    operation: str
    approved_at: int
    approvers: tuple[Approver, ...]
    arguments_sha256: str | None = None

    @property
    def approved(self) -> datetime:
        """``approved_at`` as an aware datetime."""
        return datetime.fromtimestamp(self.approved_at, timezone.utc)

    def to_json(self) -> dict[str, Any]:
        """The approval as mandate's verifier writes it (``arguments_sha256`` only when bound)."""
        out: dict[str, Any] = {
            "approved_at": format_time(self.approved_at),
            "approvers": [a.to_json() for a in self.approvers],
            "id": self.id,
            "operation": self.operation,
            "tool": self.tool,
        }
        if self.arguments_sha256 is not None:
            out["arguments_sha256"] = self.arguments_sha256
        return out


def _malformed() -> Malformed:
    return Malformed("not a mandate/v1 token")


@dataclass
class ApprovalFacts:
    """The approval facts of an authority block, as read (``approval::Read``)."""

    #: ``approval(id, tool, operation, at)``.
    approvals: list[tuple[str, str, str, int]] = field(default_factory=list)
    #: ``approved_by(id, tool, operation, subject, issuer)``, keyed by ``(id, tool, operation)``.
    approvers: list[tuple[tuple[str, str, str], Approver]] = field(default_factory=list)
    #: ``approval_arguments(id, tool, operation, sha256)``.
    arguments: list[tuple[str, str, str, str]] = field(default_factory=list)

    def finish(self) -> tuple[Approval, ...]:
        """Every gated right's approval, sorted by tool and operation: each ``approval`` with
        its approvers (at least one) and at most one digest; anything else is malformed."""
        out: list[Approval] = []
        for id, tool, operation, at in self.approvals:
            right = (id, tool, operation)
            approvers = sorted({a for of, a in self.approvers if of == right})
            digests = [d for of, t, o, d in self.arguments if (of, t, o) == right]
            if not approvers or len(digests) > 1:
                raise Malformed("an approval names at least one approver and at most one digest")
            digest = digests[0] if digests else None
            if digest is not None and not is_sha256_hex(digest):
                raise _malformed()
            if at > MAX_SECONDS:
                raise Malformed("time out of range")
            out.append(Approval(id, tool, operation, at, tuple(approvers), digest))
        out.sort(key=lambda a: (a.tool, a.operation))
        gated_twice = any(
            (a.tool, a.operation) == (b.tool, b.operation) for a, b in zip(out, out[1:])
        )
        # Every approver and digest belongs to an approval of its id, tool and operation.
        rights = {(a.id, a.tool, a.operation) for a in out}
        orphan = any(right not in rights for right, _ in self.approvers) or any(
            (id, t, o) not in rights for id, t, o, _ in self.arguments
        )
        if gated_twice or orphan:
            raise _malformed()
        return tuple(out)
