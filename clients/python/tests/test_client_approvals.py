"""Human approvals through the clients, against a real mandate dev service: a gated mint raises
``ApprovalPending``, approvers decide with their own tokens (``ApproverClient``), the
orchestrator waits (event stream or polling) and collects a mandate whose approval the Python
verifier shows and enforces; denials, ineligible approvers and bad decisions are typed errors.

The dev inventory gates ``crm delete`` for group ``staff`` behind bob's approval of the one
call (``bind_arguments``); this module adds a policy letting carol delegate ``crm delete``
once she approves it herself (``approvers: "principal"``, not bound to arguments).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest
from service import DevService, mandate_service  # noqa: F401  (the session fixture)

from mandate_client.approval import Approver
from mandate_client.approvals import collect_refusal, wait_for
from mandate_client.canonical import arguments_sha256
from mandate_client.client import (
    ApprovalDenied,
    ApprovalExpired,
    ApprovalPending,
    ApprovalRequest,
    ApproverClient,
    Conflict,
    Forbidden,
    Invalid,
    MandateClient,
    NotFound,
    Right,
    SyncApproverClient,
    SyncMandateClient,
    Unauthorized,
)
from mandate_client.errors import VerificationError
from mandate_client.holder import InvalidInput
from mandate_client.verify import Verifier

TASK = "Remove the duplicate ACME record"
CALL = {"id": "cust-42"}


def delete(arguments: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """crm read, and crm delete of the one call with ``arguments``."""
    return [{"tool": "crm", "operations": ["read"]},
            {"tool": "crm", "operations": ["delete"], "arguments": arguments or CALL}]


@pytest.fixture(scope="module")
def client(mandate_service: DevService) -> Iterator[SyncMandateClient]:
    with SyncMandateClient(mandate_service.base_url, mandate_service.orchestrator_secret,
                           agent_id="dev-orchestrator") as c:
        yield c


@pytest.fixture(scope="module")
def carols_policy(mandate_service: DevService) -> None:
    mandate_service.admin("POST", "/v1/admin/policies", {
        "id": "py-carol-approves", "issuer": "dev-idp", "subjects": ["carol"], "agents": ["dev-orchestrator"],
        "max_ttl_seconds": 600,
        "grants": [{"tool": "crm", "operations": ["read"]},
                   {"tool": "crm", "operations": ["delete"],
                    "approval": {"approvers": "principal", "valid_seconds": 120}}],
    })


def ask(service: DevService, client: SyncMandateClient, arguments: dict[str, Any] | None = None) -> ApprovalRequest:
    """alice asks for crm read and delete; the pending request."""
    with pytest.raises(ApprovalPending) as pending:
        client.mint(service.login("alice", ["staff"]), TASK, delete(arguments))
    return pending.value.request


def approver(service: DevService, subject: str) -> SyncApproverClient:
    """``subject`` signed in just now (a decision needs a token newer than the request)."""
    return SyncApproverClient(service.base_url, service.login_later(subject))


# -- the orchestrator -------------------------------------------------------------------------


def test_a_gated_mint_raises_approval_pending_and_mints_nothing(mandate_service: DevService,
                                                                client: SyncMandateClient) -> None:
    request = ask(mandate_service, client)
    assert request.state == "pending" and request.agent == "dev-orchestrator"
    assert request.principal.subject == "alice" and request.task == TASK and request.decisions == ()
    assert request.binding_message == (
        f'dev-orchestrator asks to crm delete {{"id":"cust-42"}} for alice, for the task "{TASK}"'
    )
    (gated,) = request.gated
    assert (gated.tool, gated.operation, gated.policy) == ("crm", "delete", "dev-staff")
    assert gated.arguments == CALL and gated.arguments_sha256 == arguments_sha256(CALL)
    assert gated.rule["bind_arguments"] is True and gated.approver_issuer == request.principal.issuer
    now = datetime.now(timezone.utc)
    assert now < request.expires_at <= now + timedelta(seconds=901) and request.interval == 5
    assert client.approval(request.id) == request
    with pytest.raises(Conflict) as early:
        client.collect(request.id)
    assert not isinstance(early.value, ApprovalExpired) and "pending" in str(early.value)


def test_bob_approves_and_the_mandate_carries_his_approval_to_the_verifier(mandate_service: DevService,
                                                                           client: SyncMandateClient) -> None:
    request = ask(mandate_service, client)
    with approver(mandate_service, "bob") as bob:
        assert request.id in [r.id for r in bob.pending()]
        assert bob.approval(request.id).state == "pending"
        approved = bob.approve(request.id, "checked with the account owner")
        assert request.id not in [r.id for r in bob.pending()]
    assert approved.state == "approved" and approved.decisions[0].verdict == "approve"
    assert approved.decisions[0].counts_for == (Right("crm", "delete"),)
    assert client.wait_for_approval(request.id, timeout=10).state == "approved"

    mandate = client.collect(request.id)
    assert set(mandate.scope) == {Right("crm", "read"), Right("crm", "delete")}
    (approval,) = mandate.approvals
    bob_there = Approver("bob", request.principal.issuer)
    assert (approval.id, approval.tool, approval.operation) == (request.id, "crm", "delete")
    assert approval.approvers == (bob_there,) and approval.arguments_sha256 == arguments_sha256(CALL)
    assert client.approval(request.id).state == "issued"
    with pytest.raises(Conflict) as again:
        client.collect(request.id)
    assert "issued already" in str(again.value)

    verifier = Verifier(mandate_service.base_url)
    verified = asyncio.run(verifier.verify(mandate.token, tool="crm", operation="delete", arguments=dict(CALL)))
    assert verified.approvals == mandate.approvals
    assert verified.to_json()["approvals"][0]["approvers"] == [{"subject": "bob", "issuer": bob_there.issuer}]
    with pytest.raises(VerificationError) as other:
        asyncio.run(verifier.verify(mandate.token, tool="crm", operation="delete", arguments={"id": "cust-43"}))
    assert other.value.code == "arguments_not_approved"
    asyncio.run(verifier.verify(mandate.token, tool="crm", operation="read"))  # not gated


def test_waiting_follows_the_event_stream_until_bob_decides(mandate_service: DevService) -> None:
    async def scenario() -> tuple[ApprovalRequest, float]:
        async with MandateClient(mandate_service.base_url, mandate_service.orchestrator_secret) as c:
            with pytest.raises(ApprovalPending) as pending:
                await c.mint(mandate_service.login("alice", ["staff"]), TASK, delete({"id": "cust-7"}))
            request = pending.value.request

            async def bob_decides() -> None:
                await asyncio.sleep(0.5)
                async with ApproverClient(mandate_service.base_url, mandate_service.login_later("bob")) as bob:
                    await bob.approve(request.id, "fine")

            started = time.monotonic()
            waited, _ = await asyncio.gather(c.wait_for_approval(request.id, timeout=30), bob_decides())
            elapsed = time.monotonic() - started
            assert (await c.collect(request.id)).approvals[0].id == request.id
            return waited, elapsed

    waited, elapsed = asyncio.run(scenario())
    # The stream answers the decision at once; a poll would come 5 s later.
    assert waited.state == "approved" and elapsed < 4


def test_a_denial_is_a_typed_error_naming_who_and_why(mandate_service: DevService, client: SyncMandateClient) -> None:
    request = ask(mandate_service, client)
    with approver(mandate_service, "bob") as bob:
        denied = bob.deny(request.id, "not a duplicate")
    assert denied.state == "denied" and denied.denials[0].reason == "not a duplicate"

    with pytest.raises(ApprovalDenied) as waited:
        client.wait_for_approval(request.id)
    assert isinstance(waited.value, Forbidden) and waited.value.status == 403
    assert [(d.approver.subject, d.reason) for d in waited.value.denials] == [("bob", "not a duplicate")]
    assert "denied by bob: not a duplicate" in str(waited.value)

    with pytest.raises(ApprovalDenied) as collected:
        client.collect(request.id)
    assert "denied by bob: not a duplicate" in (collected.value.detail or "")
    assert collected.value.request is None


def test_waiting_by_polling_sees_a_denial_at_the_next_interval(mandate_service: DevService,
                                                               client: SyncMandateClient) -> None:
    request = ask(mandate_service, client, {"id": "cust-9"})

    async def deny_soon() -> None:
        await asyncio.sleep(0.5)
        async with ApproverClient(mandate_service.base_url, mandate_service.login_later("bob")) as bob:
            await bob.deny(request.id, "wrong record")

    async def scenario() -> None:
        async with MandateClient(mandate_service.base_url, mandate_service.orchestrator_secret) as c:
            with pytest.raises(ApprovalDenied) as refused:
                await asyncio.gather(c.wait_for_approval(request.id, timeout=30, stream=False), deny_soon())
            assert refused.value.denials[0].reason == "wrong record"

    started = time.monotonic()
    asyncio.run(scenario())
    assert 4.5 < time.monotonic() - started < 15


def test_waiting_stops_at_its_timeout_with_the_request_still_pending(mandate_service: DevService,
                                                                     client: SyncMandateClient) -> None:
    request = ask(mandate_service, client)
    started = time.monotonic()
    with pytest.raises(ApprovalPending) as still:
        client.wait_for_approval(request.id, timeout=0.5)
    assert time.monotonic() - started < 5
    assert still.value.request.id == request.id and still.value.request.state == "pending"


def test_bound_approvals_need_the_calls_arguments(mandate_service: DevService, client: SyncMandateClient) -> None:
    jwt = mandate_service.login("alice", ["staff"])
    with pytest.raises(Invalid) as missing:
        client.mint(jwt, TASK, [{"tool": "crm", "operations": ["delete"]}])
    assert missing.value.fields == ("scope[0].arguments",)
    with pytest.raises(Invalid) as unbound:
        client.mint(jwt, TASK, [{"tool": "crm", "operations": ["read"], "arguments": CALL}])
    assert unbound.value.fields == ("scope[0].arguments",)
    with pytest.raises(InvalidInput) as not_an_object:
        client.mint(jwt, TASK, [{"tool": "crm", "operations": ["delete"], "arguments": ["cust-42"]}])
    assert not_an_object.value.field == "scope[0].arguments"
    with pytest.raises(InvalidInput):
        client.exchange(jwt, TASK, delete())


# -- approvers --------------------------------------------------------------------------------


def test_an_approver_the_policy_does_not_name_is_forbidden(mandate_service: DevService,
                                                           client: SyncMandateClient) -> None:
    request = ask(mandate_service, client)
    with approver(mandate_service, "eve") as eve:
        assert request.id not in [r.id for r in eve.pending()]
        with pytest.raises(Forbidden) as refused:
            eve.approve(request.id, "looks fine")
        with pytest.raises(Forbidden):
            eve.approval(request.id)
    assert not isinstance(refused.value, ApprovalDenied) and refused.value.status == 403
    assert "does not name eve" in str(refused.value)
    assert client.approval(request.id).decisions == ()


def test_decisions_are_refused_by_state_reason_and_token(mandate_service: DevService,
                                                         client: SyncMandateClient) -> None:
    request = ask(mandate_service, client)
    with approver(mandate_service, "bob") as bob:
        with pytest.raises(Invalid) as no_reason:
            bob.approve(request.id, "")
        assert no_reason.value.fields == ("reason",)
        bob.approve(request.id, "ok")
        with pytest.raises(Conflict):
            bob.deny(request.id, "changed my mind")
        with pytest.raises(NotFound):
            bob.approve("01a22658-d042-787f-ad56-cce53d3723bd", "ok")
    bad = "not.a.jwt"
    with SyncApproverClient(mandate_service.base_url, bad) as intruder:
        with pytest.raises(Unauthorized) as refused:
            intruder.pending()
    assert bad not in str(refused.value) + repr(refused.value.problem)
    with pytest.raises(NotFound):
        client.approval("01a22658-d042-787f-ad56-cce53d3723bd")


def test_a_token_issued_before_the_request_cannot_decide(mandate_service: DevService,
                                                         client: SyncMandateClient) -> None:
    with approver(mandate_service, "bob") as stale:
        time.sleep(1.1)  # the token's iat is in whole seconds
        request = ask(mandate_service, client)
        with pytest.raises(Forbidden) as refused:
            stale.approve(request.id, "ok")
    assert "sign in again" in str(refused.value)


# -- the principal approves, through the token endpoint -----------------------------------------


@pytest.mark.usefixtures("carols_policy")
def test_an_exchange_that_needs_approval_raises_approval_pending_and_the_principal_approves(
    mandate_service: DevService, client: SyncMandateClient
) -> None:
    with pytest.raises(ApprovalPending) as pending:
        client.exchange(mandate_service.login("carol"), TASK, {"crm": ["read", "delete"]})
    request = pending.value.request
    assert request.state == "pending" and request.principal.subject == "carol"
    assert request.gated[0].arguments is None and request.gated[0].rule["approvers"] == "principal"
    with approver(mandate_service, "bob") as bob:
        with pytest.raises(Forbidden) as not_carol:
            bob.approve(request.id, "ok")
    assert "principal carol only" in str(not_carol.value)
    with approver(mandate_service, "carol") as carol:
        carol.approve(request.id, "yes, that one")
    mandate = client.collect(request.id)
    assert mandate.approvals[0].approvers == (Approver("carol", request.principal.issuer),)
    assert mandate.approvals[0].arguments_sha256 is None


# -- the wait, offline ----------------------------------------------------------------------------


def test_waiting_never_outlasts_the_requests_expiry() -> None:
    now = datetime.now(timezone.utc)
    request = ApprovalRequest(
        id="a-1", state="pending", binding_message="m", agent="a", principal=Approver("alice", "i"), task="t",
        gated=(), created_at=now, expires_at=now + timedelta(seconds=0.5), decisions=(), interval=1,
    )
    polls: list[float] = []

    async def poll() -> ApprovalRequest:
        polls.append(time.monotonic())
        return request

    started = time.monotonic()
    with pytest.raises(ApprovalExpired) as expired:
        asyncio.run(wait_for(poll, None, timeout=60))
    assert time.monotonic() - started < 3 and len(polls) >= 2
    assert expired.value.status == 409 and expired.value.request is not None


def test_a_refused_collection_names_the_approvals_state() -> None:
    denied = collect_refusal(Forbidden(403, {"detail": "approval request x was denied (denied by bob: no)"}))
    assert isinstance(denied, ApprovalDenied)
    expired = collect_refusal(Conflict(409, {"detail": "approval request x is expired and gives no mandate"}))
    assert isinstance(expired, ApprovalExpired)
    other = Conflict(409, {"detail": "approval request x is pending: waiting for approval"})
    assert collect_refusal(other) is other
