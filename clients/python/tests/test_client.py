"""The orchestrator client against a real mandate dev service: mint, exchange (bearer and
DPoP-bound), complete, revoke, introspect, attribution, and each refusal as its typed error.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
from service import DevService, free_port, mandate_service  # noqa: F401  (the session fixture)

from mandate_client import holder
from mandate_client.client import (
    BadRequest,
    Conflict,
    Denied,
    Invalid,
    MandateClient,
    NotFound,
    OAuthError,
    Right,
    SyncMandateClient,
    Unauthorized,
    Unavailable,
)
from mandate_client.errors import ProblemError
from mandate_client.holder import InvalidInput
from mandate_client.pop import HolderSecret

TASK = "Summarise open CRM tickets"


@pytest.fixture(scope="module")
def client(mandate_service: DevService) -> Iterator[SyncMandateClient]:
    with SyncMandateClient(mandate_service.base_url, mandate_service.orchestrator_secret,
                           agent_id="dev-orchestrator") as c:
        yield c


@pytest.fixture
def jwt(mandate_service: DevService) -> str:
    return mandate_service.login("alice", ["staff"])


def assert_no_secret(error: BaseException, *secrets: str) -> None:
    """What an error says, in any form, carries none of the request's secrets."""
    said = " ".join([str(error), repr(error), repr(getattr(error, "problem", ""))])
    for secret in secrets:
        assert secret not in said


# -- minting ----------------------------------------------------------------------------------


def test_mint_answers_a_typed_mandate_that_is_active(client: SyncMandateClient, jwt: str) -> None:
    before = datetime.now(timezone.utc)
    mandate = client.mint(jwt, TASK, {"crm": ["read", "write"]}, ttl=120)

    assert mandate.scope == (Right("crm", "read"), Right("crm", "write"))
    assert before + timedelta(seconds=110) < mandate.expires_at <= before + timedelta(seconds=125)
    assert len(bytes.fromhex(mandate.revocation_id)) == 64
    assert mandate.holder_key is None and mandate.token_type == "Bearer"
    assert mandate.token not in repr(mandate)
    seen = client.introspect(mandate.token)
    assert seen.active and seen.mandate_id == mandate.mandate_id
    assert (seen.subject, seen.agent) == ("alice", "dev-orchestrator")


def test_mint_with_a_holder_key_binds_the_mandate_to_it(client: SyncMandateClient, jwt: str) -> None:
    key = HolderSecret.generate("EdDSA")
    mandate = client.mint(jwt, TASK, {"crm": ["read"]}, holder_key=key)
    assert mandate.holder_key == holder.thumbprint_of(key) and mandate.token_type == "DPoP"
    assert client.introspect(mandate.token).jkt == holder.thumbprint_of(key)


def test_mint_takes_grants_with_argument_constraints(client: SyncMandateClient, jwt: str) -> None:
    mandate = client.mint(jwt, TASK, [{"tool": "crm", "operations": ["write"],
                                       "constraints": {"ticket": {"prefix": "T-"}}}])
    assert {"tool": "crm", "operation": "write", "argument": "ticket",
            "constraint": {"prefix": "T-"}} in mandate.constraints


def test_a_wrong_agent_secret_is_unauthorized_and_never_repeated(mandate_service: DevService, jwt: str) -> None:
    wrong = "mnd_agt_" + "x" * 40
    with SyncMandateClient(mandate_service.base_url, wrong) as intruder:
        with pytest.raises(Unauthorized) as refused:
            intruder.mint(jwt, TASK, {"crm": ["read"]})
    assert refused.value.status == 401
    assert_no_secret(refused.value, wrong, jwt)


def test_a_refused_subject_token_is_unauthorized_with_its_reason(client: SyncMandateClient) -> None:
    with pytest.raises(Unauthorized) as refused:
        client.mint("not.a.jwt", TASK, {"crm": ["read"]})
    assert refused.value.reason
    assert_no_secret(refused.value, "not.a.jwt")


def test_an_operation_no_policy_grants_is_denied_naming_it(client: SyncMandateClient, jwt: str) -> None:
    with pytest.raises(Denied) as refused:
        client.mint(jwt, TASK, {"crm": ["read", "archive"], "calendar": ["write"]})
    denied = {(d.tool, d.operation): d.reason for d in refused.value.denied}
    assert set(denied) == {("crm", "archive"), ("calendar", "write")}
    assert all(denied.values())
    assert refused.value.status == 403


def test_an_invalid_body_is_invalid_naming_each_field(client: SyncMandateClient, jwt: str) -> None:
    with pytest.raises(Invalid) as refused:
        client.mint(jwt, "", {"crm": ["read"]}, ttl=-5)
    assert set(refused.value.fields) == {"task.description", "ttl_seconds"}
    assert all(e.message for e in refused.value.errors)


def test_a_scope_that_is_not_a_list_of_grants_is_refused_before_sending(client: SyncMandateClient, jwt: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        client.mint(jwt, TASK, {"crm": "read"})
    assert refused.value.field == "scope[0]"
    with pytest.raises(InvalidInput):
        client.mint(jwt, TASK, {})


# -- the token endpoint -----------------------------------------------------------------------


def test_exchange_without_a_proof_answers_a_bearer_mandate(client: SyncMandateClient, jwt: str) -> None:
    mandate = client.exchange(jwt, TASK, {"crm": ["read"]}, ttl=60)
    assert mandate.token_type == "Bearer" and mandate.holder_key is None
    assert mandate.scope == (Right("crm", "read"),)
    seen = client.introspect(mandate.token)
    assert seen.active and seen.jkt is None and seen.mandate_id == mandate.mandate_id


def test_exchange_with_a_dpop_proof_binds_the_mandate_to_its_key(client: SyncMandateClient, jwt: str) -> None:
    key = HolderSecret.generate("ES256")
    mandate = client.exchange(jwt, TASK, {"crm": ["read"]}, holder=key)
    assert mandate.token_type == "DPoP" and mandate.holder_key == holder.thumbprint_of(key)
    assert client.introspect(mandate.token).jkt == holder.thumbprint_of(key)


def test_exchange_authenticates_with_an_actor_token_without_a_client_id(mandate_service: DevService, jwt: str) -> None:
    with SyncMandateClient(mandate_service.base_url, mandate_service.orchestrator_secret) as c:
        assert c.exchange(jwt, TASK, {"crm": ["read"]}).mandate_id


def test_exchange_refusals_are_oauth_errors(mandate_service: DevService, client: SyncMandateClient, jwt: str) -> None:
    with pytest.raises(OAuthError) as malformed:
        client.exchange("garbage", TASK, {"crm": ["read"]})
    assert malformed.value.error == "invalid_request" and malformed.value.status == 400
    assert "subject_token" in (malformed.value.error_description or "")

    with pytest.raises(OAuthError) as scope:
        client.exchange(jwt, TASK, {"calendar": ["write"]})
    assert scope.value.error == "invalid_scope" and "calendar:write" in str(scope.value)

    wrong = "mnd_agt_" + "y" * 40
    with SyncMandateClient(mandate_service.base_url, wrong, agent_id="dev-orchestrator") as intruder:
        with pytest.raises(OAuthError) as client_auth:
            intruder.exchange(jwt, TASK, {"crm": ["read"]})
    assert client_auth.value.error == "invalid_client" and client_auth.value.status == 401
    assert_no_secret(client_auth.value, wrong, jwt)


def test_exchange_refuses_constraints_it_cannot_carry(client: SyncMandateClient, jwt: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        client.exchange(jwt, TASK, [{"tool": "crm", "operations": ["write"], "constraints": {"t": {"prefix": "T-"}}}])
    assert refused.value.field == "scope"


# -- ending mandates --------------------------------------------------------------------------


def test_complete_ends_the_mandate_and_every_token_derived_from_it(client: SyncMandateClient, jwt: str) -> None:
    mandate = client.mint(jwt, TASK, {"crm": ["read"]})
    derived = holder.attenuate(mandate.token, delegate="helper", root_keys=client.root_keys())
    done = client.complete(mandate.mandate_id)
    assert done.mandate_id == mandate.mandate_id and done.revocation_id == mandate.revocation_id
    assert done.reason == "task completed"
    assert not client.introspect(mandate.token).active
    assert not client.introspect(derived).active
    assert client.complete(mandate.mandate_id).revoked_at == done.revoked_at  # idempotent


def test_revoke_records_the_reason(client: SyncMandateClient, jwt: str) -> None:
    mandate = client.mint(jwt, TASK, {"crm": ["read"]})
    revoked = client.revoke(mandate.mandate_id, "the task was cancelled")
    assert revoked.reason == "the task was cancelled" and revoked.revoked_by == "agent:dev-orchestrator"
    assert not client.introspect(mandate.token).active


def test_unknown_mandates_are_not_found_and_bad_reasons_invalid(client: SyncMandateClient, jwt: str) -> None:
    with pytest.raises(NotFound):
        client.complete("01a22658-d042-787f-ad56-cce53d3723bd")
    with pytest.raises(BadRequest):
        client.complete("not-a-uuid")
    mandate = client.mint(jwt, TASK, {"crm": ["read"]})
    with pytest.raises(Invalid) as refused:
        client.revoke(mandate.mandate_id, "")
    assert refused.value.fields == ("reason",)


def test_a_branch_is_revoked_by_its_holder_and_its_parent_keeps_working(client: SyncMandateClient, jwt: str) -> None:
    mandate = client.mint(jwt, TASK, {"crm": ["read"]})
    branch = holder.attenuate(mandate.token, delegate="helper", root_keys=client.root_keys())
    revoked = client.revoke_branch(branch, "sub-task done")
    assert not revoked.whole_mandate
    assert not client.introspect(branch).active and client.introspect(mandate.token).active
    # The mandate itself is not a branch; a revoked mandate's branches have nothing to revoke.
    with pytest.raises(Unauthorized):
        client.revoke_branch(mandate.token, "not a branch")
    client.revoke(mandate.mandate_id, "cancelled")
    other = holder.attenuate(mandate.token, delegate="other", root_keys=client.root_keys())
    with pytest.raises(Conflict):
        client.revoke_branch(other, "too late")


def test_a_bound_branch_needs_its_holders_proof(client: SyncMandateClient, jwt: str) -> None:
    key = HolderSecret.generate("EdDSA")
    mandate = client.mint(jwt, TASK, {"crm": ["read"]}, holder_key=key)
    branch = holder.attenuate(mandate.token, delegate="helper", root_keys=client.root_keys())
    with pytest.raises(Unauthorized) as refused:
        client.revoke_branch(branch, "no proof")
    assert "invalid_dpop_proof" in str(refused.value)
    assert client.revoke_branch(branch, "with proof", proof=key).revocation_id


# -- attribution and the async client ---------------------------------------------------------


def test_attribution_needs_an_admin_token(mandate_service: DevService, client: SyncMandateClient) -> None:
    with pytest.raises(InvalidInput):
        client.attribution()
    with pytest.raises(Unauthorized):
        client.attribution("mnd_adm_" + "z" * 40)
    actions = client.attribution(mandate_service.admin_token(), agent="dev-orchestrator", limit=10)
    assert isinstance(actions, list)
    with pytest.raises(Invalid) as refused:
        client.attribution(mandate_service.admin_token(), limit=0)
    assert refused.value.fields == ("limit",)


def test_the_async_client_mints_and_completes(mandate_service: DevService, jwt: str) -> None:
    async def scenario() -> bool:
        async with MandateClient(mandate_service.base_url, mandate_service.orchestrator_secret) as c:
            mandate = await c.mint(jwt, TASK, {"crm": ["read"]})
            await c.complete(mandate.mandate_id)
            return (await c.introspect(mandate.token)).active

    assert asyncio.run(scenario()) is False


def test_an_unreachable_service_is_unavailable() -> None:
    with SyncMandateClient(f"http://127.0.0.1:{free_port()}", "mnd_agt_x") as c:
        with pytest.raises(Unavailable) as refused:
            c.complete("01a22658-d042-787f-ad56-cce53d3723bd")
    assert isinstance(refused.value, ProblemError)


def test_introspection_of_a_named_call_says_whether_the_token_grants_it(client: SyncMandateClient, jwt: str) -> None:
    mandate = client.mint(jwt, TASK, {"crm": ["read", "write"]})
    narrowed = holder.attenuate(mandate.token, rights={"crm": ["read"]}, root_keys=client.root_keys())
    assert client.introspect(narrowed, "crm", "read").active
    assert not client.introspect(narrowed, "crm", "write").active
    assert client.introspect(mandate.token, "crm", "write").active
    with pytest.raises(InvalidInput):
        client.introspect(narrowed, tool="crm")
