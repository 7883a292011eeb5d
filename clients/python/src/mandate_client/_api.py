"""What :mod:`mandate_client.client` and :mod:`mandate_client.approvals` share: one request to
the service (a refusal raised as its typed error, secrets scrubbed), and the readers that turn
its JSON answers into the frozen values of :mod:`mandate_client.results`. Anything not in the
documented shape raises :class:`~mandate_client.problems.UnexpectedResponse`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping, NoReturn, Sequence, cast, get_args

import biscuit_auth
import httpx

from . import _biscuit
from .approval import Approval, Approver
from .problems import Unavailable, UnexpectedResponse, raise_for_problem
from .results import (
    Action,
    ApprovalRequest,
    ApprovalState,
    Decision,
    GatedRight,
    Hop,
    Introspection,
    Mandate,
    Revocation,
    Right,
)

_STATES: tuple[str, ...] = get_args(ApprovalState)


async def send(
    http: httpx.AsyncClient, url: str, method: str, *, secrets: Sequence[str] = (), oauth: bool = False,
    **kwargs: Any,
) -> httpx.Response:
    """One request; a refusal raises its typed error, with ``secrets`` scrubbed from it."""
    try:
        response = await http.request(method, url, **kwargs)
    except httpx.HTTPError as error:
        # The exception's text can name the URL only; no header is in it.
        raise Unavailable(503, {"title": "Unreachable", "detail": type(error).__name__}) from None
    raise_for_problem(response, [s for s in secrets if s], oauth=oauth)
    return response


# -- fields -----------------------------------------------------------------------------------


def unexpected(what: str) -> NoReturn:
    raise UnexpectedResponse(f"the service's answer has no valid {what}")


def text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        unexpected(key)
    return value


def optional_text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) else None


def time_of(body: Mapping[str, Any], key: str) -> datetime:
    try:
        return datetime.fromisoformat(text(body, key).replace("Z", "+00:00"))
    except ValueError:
        unexpected(key)


def mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        unexpected(what)
    return value


def rights(items: Any) -> tuple[Right, ...]:
    if not isinstance(items, list):
        unexpected("scope")
    return tuple(Right(text(r, "tool"), text(r, "operation")) for r in items if isinstance(r, Mapping))


def spaced_rights(scope: str) -> tuple[Right, ...]:
    """``crm:read crm:write`` as rights."""
    pairs = [item.split(":", 1) for item in scope.split(" ") if ":" in item]
    return tuple(Right(tool, operation) for tool, operation in pairs)


def hops(items: Any) -> tuple[Hop, ...]:
    if not isinstance(items, list):
        return ()
    return tuple(Hop(text(h, "agent"), h.get("attested") is True) for h in items if isinstance(h, Mapping))


def json_object(response: httpx.Response) -> Mapping[str, Any]:
    try:
        body = response.json()
    except ValueError:
        unexpected("JSON body")
    return mapping(body, "JSON object")


def approver(body: Any) -> Approver:
    body = mapping(body, "approver")
    return Approver(text(body, "subject"), text(body, "issuer"))


# -- answers ----------------------------------------------------------------------------------


def approvals(items: Any) -> tuple[Approval, ...]:
    """A mint's ``approvals``, as the verifier reads them from the token."""
    out = []
    for item in items or ():
        item = mapping(item, "approval")
        digest = optional_text(item, "arguments_sha256")
        out.append(Approval(
            id=text(item, "id"), tool=text(item, "tool"), operation=text(item, "operation"),
            approved_at=int(time_of(item, "approved_at").timestamp()),
            approvers=tuple(sorted(approver(a) for a in item.get("approvers") or ())), arguments_sha256=digest,
        ))
    return tuple(sorted(out, key=lambda a: (a.tool, a.operation)))


def issued(body: Mapping[str, Any]) -> Mandate:
    """A minted mandate (``POST /v1/mandates`` 201, ``POST /v1/approvals/{id}/mandate``)."""
    holder = optional_text(body, "holder_key")
    return Mandate(
        token=text(body, "token"), mandate_id=text(body, "mandate_id"), expires_at=time_of(body, "expires_at"),
        scope=rights(body.get("scope")), revocation_id=text(body, "revocation_id"), holder_key=holder,
        token_type="DPoP" if holder else "Bearer",
        constraints=tuple(c for c in body.get("constraints") or () if isinstance(c, Mapping)),
        approvals=approvals(body.get("approvals")),
    )


def _gated(item: Any) -> GatedRight:
    item = mapping(item, "gated operation")
    arguments = item.get("arguments")
    return GatedRight(
        tool=text(item, "tool"), operation=text(item, "operation"), policy=text(item, "policy"),
        approver_issuer=text(item, "approver_issuer"), rule=dict(mapping(item.get("rule"), "rule")),
        arguments=dict(arguments) if isinstance(arguments, Mapping) else None,
        arguments_sha256=optional_text(item, "arguments_sha256"),
    )


def _decision(item: Any) -> Decision:
    item = mapping(item, "decision")
    verdict = text(item, "verdict")
    if verdict not in ("approve", "deny"):
        unexpected("verdict")
    return Decision(
        approver=approver(item.get("approver")), verdict="approve" if verdict == "approve" else "deny",
        reason=text(item, "reason"), counts_for=rights(item.get("counts_for") or []),
        decided_at=time_of(item, "decided_at"),
    )


def approval_request(body: Mapping[str, Any]) -> ApprovalRequest:
    """An approval request as ``GET /v1/approvals/{id}`` (and a 202 mint) shows it."""
    state = text(body, "state")
    interval = body.get("interval")
    if state not in _STATES:
        unexpected("state")
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < 0:
        unexpected("interval")
    gated, decisions = body.get("gated"), body.get("decisions")
    if not isinstance(gated, list) or not isinstance(decisions, list):
        unexpected("gated operations or decisions")
    return ApprovalRequest(
        id=text(body, "id"), state=cast(ApprovalState, state),
        binding_message=text(body, "binding_message"), agent=text(body, "agent"),
        principal=approver(body.get("principal")), task=text(body, "task"),
        gated=tuple(_gated(g) for g in gated), created_at=time_of(body, "created_at"),
        expires_at=time_of(body, "expires_at"), decisions=tuple(_decision(d) for d in decisions),
        interval=interval, decided_at=time_of(body, "decided_at") if "decided_at" in body else None,
        mandate_id=optional_text(body, "mandate_id"),
    )


def revocation(response: httpx.Response) -> Revocation:
    body = json_object(response)
    return Revocation(
        mandate_id=optional_text(body, "mandate_id"), revocation_id=text(body, "revocation_id"),
        revoked_by=text(body, "revoked_by"), reason=text(body, "reason"),
        revoked_at=time_of(body, "revoked_at"), expires_at=time_of(body, "expires_at"),
    )


def introspection(response: httpx.Response) -> Introspection:
    body = json_object(response)
    if body.get("active") is not True:
        return Introspection(active=False)
    exp = body.get("exp")
    cnf = body.get("cnf")
    return Introspection(
        active=True, mandate_id=optional_text(body, "mandate_id"), subject=optional_text(body, "sub"),
        issuer=optional_text(body, "iss"), agent=optional_text(body, "agent"), hops=hops(body.get("hops")),
        scope=spaced_rights(optional_text(body, "scope") or ""),
        expires_at=datetime.fromtimestamp(exp, timezone.utc) if isinstance(exp, int) else None,
        jkt=optional_text(cnf, "jkt") if isinstance(cnf, Mapping) else None,
    )


def action(item: Mapping[str, Any]) -> Action:
    principal = mapping(item.get("principal"), "principal")
    details = item.get("details")
    return Action(
        occurred_at=time_of(item, "occurred_at"), principal_subject=text(principal, "subject"),
        principal_issuer=text(principal, "issuer"), orchestrator=text(item, "orchestrator"),
        hops=hops(item.get("hops")), tool=text(item, "tool"), operation=text(item, "operation"),
        resource=optional_text(item, "resource"), outcome=text(item, "outcome"),
        mandate_id=text(item, "mandate_id"), task_id=text(item, "task_id"),
        receipt_id=text(item, "receipt_id"), reporter=optional_text(item, "reporter"),
        details=dict(details) if isinstance(details, Mapping) else {},
    )


def root_keys(response: httpx.Response) -> dict[int, biscuit_auth.PublicKey]:
    keys: dict[int, biscuit_auth.PublicKey] = {}
    for key in json_object(response).get("keys") or ():
        kid, public = key.get("kid"), key.get("public_key")
        if not isinstance(kid, int) or not isinstance(public, str) or not public.startswith("ed25519/"):
            continue
        try:
            keys[kid] = _biscuit.public_key(bytes.fromhex(public[8:]))
        except (ValueError, biscuit_auth.BiscuitValidationError):
            continue
    if not keys:
        unexpected("root key")
    return keys
