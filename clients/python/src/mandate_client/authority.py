"""The authority block of a mandate/v1 token (mandate's ``src/token/authority.rs``): what the
issuer states (mandate id, principal, agent, task, rights, expiry, argument constraints, the
holder's key, the approvals of gated rights), read from the block's serialized facts. Trust it
only once the signatures verify; :mod:`mandate_client.verify` does that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import _wire
from ._datalog import Refusal, SymbolTable
from .approval import Approval, ApprovalFacts, Approver
from .constraints import ArgConstraint, read_constraint
from .errors import Malformed

__all__ = ["SCHEMA_VERSION", "Approval", "Approver", "Authority", "Right", "read_authority"]

#: The schema version every mandate states.
SCHEMA_VERSION = 1


@dataclass(frozen=True, order=True)
class Right:
    """One granted right: an operation of a tool."""

    tool: str
    operation: str

    def to_json(self) -> dict[str, str]:
        return {"operation": self.operation, "tool": self.tool}


@dataclass(frozen=True)
class Authority:
    """What the authority block states (trust it only once the signatures verify)."""

    mandate_id: str
    principal_subject: str
    principal_issuer: str
    agent_id: str
    task_id: str
    rights: tuple[Right, ...]
    expires_at: int
    constraints: tuple[ArgConstraint, ...]
    holder_key: str | None
    #: Every gated right's ``approval(…)`` with its ``approved_by(…)`` and
    #: ``approval_arguments(…)`` (:mod:`mandate_client.approval`), sorted by tool and operation.
    approvals: tuple[Approval, ...] = ()


def read_authority(block: _wire.Block) -> Authority:
    """Reads the mandate/v1 facts of the authority block: exactly one of each single-valued
    fact, any number of rights and constraints, and ``mandate_schema(1)``."""
    try:
        table = SymbolTable(block.symbols)
    except Refusal:
        raise Malformed("not a mandate/v1 token") from None

    def text(term: _wire.Term) -> str:
        if term[0] == "string":
            value = table.get(term[1])
            if value is not None:
                return value
        raise Malformed("not a mandate/v1 token")

    found: dict[str, Any] = {}
    rights: list[Right] = []
    constraints: list[ArgConstraint] = []
    approvals = ApprovalFacts()

    def once(name: str, value: Any) -> None:
        if name in found:
            raise Malformed(f"the authority block must state exactly one `{name}` fact")
        found[name] = value

    for fact in block.facts:
        name = table.get(fact.name)
        terms = fact.terms
        if name is None:
            raise Malformed("not a mandate/v1 token")
        if name == "mandate_schema" and len(terms) == 1:
            if terms[0][0] != "integer":
                raise Malformed("not a mandate/v1 token")
            once(name, terms[0][1])
        elif name in ("mandate", "agent") and len(terms) == 1:
            once(name, text(terms[0]))
        elif name == "principal" and len(terms) == 2:
            once(name, (text(terms[0]), text(terms[1])))
        elif name == "task" and len(terms) == 2:
            once(name, text(terms[0]))
        elif name == "expires" and len(terms) == 1:
            if terms[0][0] != "date":
                raise Malformed("not a mandate/v1 token")
            once(name, terms[0][1])
        elif name == "holder_key" and len(terms) == 1:
            jkt = text(terms[0])
            if not (len(jkt) == 43 and re.fullmatch(r"[A-Za-z0-9_-]+", jkt)):
                raise Malformed("not a mandate/v1 token")
            once(name, jkt)
        elif name == "approval" and len(terms) == 4:
            if terms[3][0] != "date":
                raise Malformed("not a mandate/v1 token")
            approvals.approvals.append((text(terms[0]), text(terms[1]), text(terms[2]), terms[3][1]))
        elif name == "approved_by" and len(terms) == 5:
            right = (text(terms[0]), text(terms[1]), text(terms[2]))
            approvals.approvers.append((right, Approver(text(terms[3]), text(terms[4]))))
        elif name == "approval_arguments" and len(terms) == 4:
            approvals.arguments.append((text(terms[0]), text(terms[1]), text(terms[2]), text(terms[3])))
        elif name == "right" and len(terms) == 2:
            rights.append(Right(text(terms[0]), text(terms[1])))
        elif name == "constraint":
            def symbol(term: _wire.Term) -> str:
                if term[0] != "string":
                    raise Refusal("expected a string")
                value = table.get(term[1])
                if value is None:
                    raise Refusal("unknown symbol")
                return value

            try:
                constraints.append(read_constraint(terms, symbol)[0])
            except Refusal:
                raise Malformed("not a mandate/v1 token") from None
        else:
            raise Malformed("not a mandate/v1 token")
    for required in ("mandate_schema",):
        if required not in found:
            raise Malformed("the authority block must state exactly one `mandate_schema` fact")
    if found["mandate_schema"] != SCHEMA_VERSION:
        raise Malformed("not a mandate/v1 token")
    for required in ("principal", "expires", "mandate", "agent", "task"):
        if required not in found:
            raise Malformed(f"the authority block must state exactly one `{required}` fact")
    if found["expires"] > 253402300799:
        raise Malformed("time out of range")
    subject, issuer = found["principal"]
    return Authority(
        mandate_id=found["mandate"],
        principal_subject=subject,
        principal_issuer=issuer,
        agent_id=found["agent"],
        task_id=found["task"],
        rights=tuple(sorted(rights)),
        expires_at=int(found["expires"]),
        constraints=tuple(constraints),
        holder_key=found.get("holder_key"),
        approvals=approvals.finish(),
    )
