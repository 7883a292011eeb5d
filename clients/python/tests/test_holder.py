"""Holder operations, checked by mandate itself: every token the Python side writes is read by
the Rust CLI (``mandate token inspect`` / ``token verify``) and used at the real service.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Literal, Mapping

import biscuit_auth
import pytest
from service import DevService, child_env, mandate_service  # noqa: F401  (the session fixture)

from mandate_client import holder
from mandate_client.client import SyncMandateClient, Unauthorized
from mandate_client.holder import HolderError, InvalidInput, attenuate, attest, rebind
from mandate_client.pop import HolderSecret


@dataclass
class World:
    """The service, an orchestrator's client, mandate's root keys and a principal's JWT."""

    service: DevService
    client: SyncMandateClient
    keys: dict[int, biscuit_auth.PublicKey]
    jwt: str
    helper_key: biscuit_auth.KeyPair

    def mint(self, operations: list[str], holder_key: HolderSecret | None = None) -> str:
        minted = self.client.mint(self.jwt, "Triage open tickets", {"crm": operations}, holder_key=holder_key)
        return minted.token

    def inspect(self, token: str) -> dict[str, Any]:
        return dict(json.loads(self.service.run(["token", "inspect"], stdin=token)))

    def verify(self, token: str, operation: str, *extra: str) -> tuple[bool, str]:
        """``mandate token verify`` for a crm call: (allowed, its JSON read-out or refusal)."""
        done = subprocess.run(
            [str(self.service.binary), "token", "verify", "--mandate", self.service.base_url,
             "--tool", "crm", "--operation", operation, *extra],
            input=token, capture_output=True, text=True, timeout=30, env=child_env(),
        )
        return done.returncode == 0, done.stdout if done.returncode == 0 else done.stderr


@pytest.fixture(scope="module")
def world(mandate_service: DevService) -> Iterator[World]:
    client = SyncMandateClient(mandate_service.base_url, mandate_service.orchestrator_secret,
                               agent_id="dev-orchestrator")
    helper_key = mandate_service.register_sub_agent("holder-test-helper")
    try:
        yield World(mandate_service, client, client.root_keys(), mandate_service.login("alice", ["staff"]), helper_key)
    finally:
        client.close()


def in_minutes(n: int) -> datetime:
    return datetime.now(timezone.utc) + timedelta(minutes=n)


# -- narrowing --------------------------------------------------------------------------------


def test_a_narrowing_keeps_only_the_rights_given_and_names_the_delegate(world: World) -> None:
    token = world.mint(["read", "write"])
    narrowed = attenuate(token, rights={"crm": ["read"]}, delegate="helper", root_keys=world.keys)

    block = world.inspect(narrowed)["blocks"][1]
    assert block["kind"] == "attenuation" and block["delegate"] == "helper"
    allowed, readout = world.verify(narrowed, "read")
    assert allowed, readout
    assert json.loads(readout)["hops"] == [{"agent": "helper", "attested": False}]
    allowed, refusal = world.verify(narrowed, "write")
    assert not allowed and "not authorized" in refusal
    # The parent still grants what it granted.
    assert world.verify(token, "write")[0]


def test_an_empty_list_of_rights_keeps_none(world: World) -> None:
    narrowed = attenuate(world.mint(["read"]), rights=[], root_keys=world.keys)
    assert "check if false" in world.inspect(narrowed)["blocks"][1]["source"]
    assert not world.verify(narrowed, "read")[0]


def test_resources_and_expiry_narrow_as_mandate_reads_them(world: World) -> None:
    expires = in_minutes(5)
    narrowed = attenuate(world.mint(["read"]), resources=["acme/api", "acme/web"], expires_at=expires,
                         root_keys=world.keys)
    assert world.verify(narrowed, "read", "--resource", "acme/web")[0]
    assert not world.verify(narrowed, "read", "--resource", "acme/db")[0]
    later = (expires + timedelta(seconds=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    allowed, refusal = world.verify(narrowed, "read", "--resource", "acme/api", "--at", later)
    assert not allowed, refusal


def test_each_constraint_kind_is_read_back_by_mandate_exactly_as_given(world: World) -> None:
    constraints: dict[str, Mapping[str, Any]] = {
        "ticket": {"prefix": "T-"},
        "path": {"glob": "docs/*.md"},
        "labels": {"one_of": ["bug", "triage"]},
        "count": {"range": {"min": 1, "max": 10}},
        "title": {"max_length": 80},
        "urgent": {"equals": False},
    }
    narrowed = attenuate(world.mint(["read", "write"]), constraints={"crm": {"write": constraints}},
                         root_keys=world.keys)

    read_back = world.inspect(narrowed)["blocks"][1]["constraints"]
    by_argument: dict[str, list[Any]] = {}
    for c in read_back:
        assert (c["tool"], c["operation"]) == ("crm", "write")
        by_argument.setdefault(c["argument"], []).append(c["constraint"])
    assert by_argument == {
        "ticket": [{"prefix": "T-"}],
        "path": [{"glob": "docs/*.md"}],
        "labels": [{"one_of": ["bug", "triage"]}],
        "count": [{"range": {"min": 1}}, {"range": {"max": 10}}],
        "title": [{"max_length": 80}],
        "urgent": [{"equals": False}],
    }
    # Enforced: a write without its arguments is refused, naming the constraint; reads pass.
    allowed, refusal = world.verify(narrowed, "write")
    assert not allowed and "ticket" in refusal and "T-" in refusal
    assert world.verify(narrowed, "read")[0]


def test_the_snippets_of_the_schema_doc_are_what_attenuate_writes(world: World) -> None:
    narrowed = attenuate(world.mint(["read", "write"]), constraints={"crm": {"write": {"ticket": {"prefix": "T-"}}}},
                         root_keys=world.keys)
    source = world.inspect(narrowed)["blocks"][1]["source"]
    assert source == (
        'constraint("crm", "write", "ticket", "prefix", "T-");\n'
        'check if tool($tool), operation($operation), !($tool == "crm" && $operation == "write") '
        'or arg("ticket", $value), $value.starts_with("T-");\n'
    )


def test_glob_regexes_are_the_documented_ones() -> None:
    assert holder.glob_regex("a.b*") == "(?s)^a[.]b.*$"
    assert holder.glob_regex("x?-(y)") == "(?s)^x.[-][(]y[)]$"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"delegate": 'he said "hi"'}, "delegate"),
        ({"delegate": "back\\slash"}, "delegate"),
        ({"delegate": "line\nbreak"}, "delegate"),
        ({"delegate": ""}, "delegate"),
        ({"delegate": "x" * 257}, "delegate"),
        ({"rights": {"crm": ["re\"ad"]}}, "rights[0].operation"),
        ({"rights": [("crm", f"op{i}") for i in range(65)]}, "rights"),
        ({"rights": {"crm": "read"}}, "rights.crm"),
        ({"resources": [f"r{i}" for i in range(65)]}, "resources"),
        ({"resources": "acme/api"}, "resources"),
        ({"expires_at": datetime(2030, 1, 1)}, "expires_at"),
        ({"constraints": {"crm": {"write": {"a..b": {"prefix": "x"}}}}}, "constraints.crm.write.a..b"),
        ({"constraints": {"crm": {"write": {"p": {"glob": "[abc]"}}}}}, "constraints.crm.write.p.glob"),
        ({"constraints": {"crm": {"write": {"p": {"one_of": ["a", 1]}}}}}, "constraints.crm.write.p.one_of"),
        ({"constraints": {"crm": {"write": {"p": {"one_of": []}}}}}, "constraints.crm.write.p.one_of"),
        ({"constraints": {"crm": {"write": {"p": {"range": {"min": 5, "max": 1}}}}}}, "constraints.crm.write.p.range"),
        ({"constraints": {"crm": {"write": {"p": {"range": {}}}}}}, "constraints.crm.write.p.range"),
        ({"constraints": {"crm": {"write": {"p": {"max_length": -1}}}}}, "constraints.crm.write.p.max_length"),
        ({"constraints": {"crm": {"write": {"p": {"regex": ".*"}}}}}, "constraints.crm.write.p"),
        ({"constraints": {"crm": {"write": {"p": {"equals": 1.5}}}}}, "constraints.crm.write.p.equals"),
        ({"constraints": {"crm": {"write": {f"a{i}": {"range": {"min": 0, "max": 1}} for i in range(33)}}}},
         "constraints"),
        ({}, "attenuation"),
    ],
)
def test_bad_input_is_refused_naming_the_field_before_anything_is_appended(
    world: World, arguments: dict[str, Any], field: str
) -> None:
    token = world.mint(["read", "write"])
    with pytest.raises(InvalidInput) as refused:
        attenuate(token, root_keys=world.keys, **arguments)
    assert refused.value.field == field
    assert token not in str(refused.value)


def test_tokens_mandate_would_refuse_are_refused_before_any_work(world: World) -> None:
    with pytest.raises(InvalidInput) as too_large:
        attenuate("A" * (16 * 1024 + 1), delegate="helper", root_keys=world.keys)
    assert too_large.value.field == "token"
    with pytest.raises(HolderError):
        attenuate("not-a-biscuit", delegate="helper", root_keys=world.keys)
    # Signed by another root key than mandate's.
    with pytest.raises(HolderError, match="do not verify"):
        attenuate(world.mint(["read"]), delegate="helper", root_keys=biscuit_auth.KeyPair().public_key)
    # Full: sixteen blocks in all.
    token = world.mint(["read"])
    for _ in range(15):
        token = attenuate(token, rights={"crm": ["read"]}, root_keys=world.keys)
    with pytest.raises(HolderError, match="16 blocks"):
        attenuate(token, delegate="helper", root_keys=world.keys)


# -- attestation ------------------------------------------------------------------------------


def test_an_attested_hop_verifies_as_attested_with_the_agents_registered_key(world: World) -> None:
    narrowed = attenuate(world.mint(["read"]), delegate="holder-test-helper", root_keys=world.keys)
    attested = attest(narrowed, "holder-test-helper", world.helper_key, root_keys=world.keys)

    block = world.inspect(attested)["blocks"][2]
    assert block["kind"] == "attestation" and block["hop"] == "holder-test-helper"
    allowed, readout = world.verify(attested, "read")
    assert allowed, readout
    assert json.loads(readout)["hops"] == [{"agent": "holder-test-helper", "attested": True}]
    assert world.client.introspect(attested).hops[0].attested


def test_an_attestation_signed_by_an_unregistered_key_is_refused_as_forged(world: World) -> None:
    narrowed = attenuate(world.mint(["read"]), delegate="holder-test-helper", root_keys=world.keys)
    forged = attest(narrowed, "holder-test-helper", biscuit_auth.KeyPair(), root_keys=world.keys)
    allowed, refusal = world.verify(forged, "read")
    assert not allowed and "forged attestation" in refusal
    assert not world.client.introspect(forged).active


def test_attest_refuses_an_agent_id_a_block_cannot_state(world: World) -> None:
    with pytest.raises(InvalidInput) as refused:
        attest(world.mint(["read"]), 'evil"); right("x', world.helper_key, root_keys=world.keys)
    assert refused.value.field == "agent_id"


# -- rebinding --------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
def test_a_rebound_attested_mandate_is_used_with_the_new_holders_proof(
    world: World, algorithm: Literal["EdDSA", "ES256"]
) -> None:
    orchestrator, sub_agent = HolderSecret.generate(algorithm), HolderSecret.generate("EdDSA")
    token = world.mint(["read", "write"], holder_key=orchestrator)
    narrowed = attenuate(token, rights={"crm": ["read"]}, delegate="holder-test-helper", root_keys=world.keys)
    rebound = rebind(narrowed, orchestrator, holder.thumbprint_of(sub_agent), root_keys=world.keys)
    handed = attest(rebound, "holder-test-helper", world.helper_key, root_keys=world.keys)

    inspected = world.inspect(handed)
    assert [b["kind"] for b in inspected["blocks"]] == ["authority", "attenuation", "rebinding", "attestation"]
    assert inspected["holder_key"] == holder.thumbprint_of(sub_agent)
    seen = world.client.introspect(handed)
    assert seen.active and seen.jkt == holder.thumbprint_of(sub_agent)
    assert [(h.agent, h.attested) for h in seen.hops] == [("holder-test-helper", True)]
    # At a bound-token endpoint the previous holder's proof no longer works; the new one's does.
    with pytest.raises(Unauthorized) as refused:
        world.client.revoke_branch(handed, "handed on", proof=orchestrator)
    assert "invalid_dpop_proof" in str(refused.value) and handed not in str(refused.value)
    revoked = world.client.revoke_branch(handed, "sub-task done", proof=sub_agent)
    assert revoked.revocation_id == inspected["blocks"][3]["revocation_id"] and not revoked.whole_mandate
    assert not world.client.introspect(handed).active
    assert world.client.introspect(token).active  # the parent keeps working


def test_rebind_refuses_a_holder_the_token_is_not_bound_to(world: World) -> None:
    orchestrator, thief = HolderSecret.generate("EdDSA"), HolderSecret.generate("EdDSA")
    token = world.mint(["read"], holder_key=orchestrator)
    with pytest.raises(HolderError, match="another key"):
        rebind(token, thief, holder.thumbprint_of(thief), root_keys=world.keys)


def test_rebind_refuses_a_bearer_mandate_and_a_malformed_thumbprint(world: World) -> None:
    someone = HolderSecret.generate("EdDSA")
    with pytest.raises(HolderError, match="bearer"):
        rebind(world.mint(["read"]), someone, holder.thumbprint_of(someone), root_keys=world.keys)
    with pytest.raises(InvalidInput) as refused:
        rebind(world.mint(["read"], holder_key=someone), someone, "not a thumbprint", root_keys=world.keys)
    assert refused.value.field == "next_jkt"


def test_the_current_holder_is_read_as_a_verifier_reads_the_binding(world: World) -> None:
    orchestrator, thief = HolderSecret.generate("EdDSA"), HolderSecret.generate("EdDSA")
    token = world.mint(["read"], holder_key=orchestrator)
    assert holder.current_holder(token, root_keys=world.keys) == holder.thumbprint_of(orchestrator)
    parsed = holder._verified(token, world.keys)
    stolen = {"jkt": holder.thumbprint_of(thief)}
    # A rebinding signed by a key the token is not bound to moves nothing: a verifier refuses it.
    forged = holder._append_signed(parsed, thief.biscuit_private_key(), "holder_key({jkt});", stolen)
    assert not world.verify(forged, "read")[0]
    with pytest.raises(HolderError, match="forged_binding"):
        holder.current_holder(forged, root_keys=world.keys)
    # The holder's own block stating more than one rebinding is outside the vocabulary.
    extra = holder._append_signed(
        parsed, orchestrator.biscuit_private_key(), 'holder_key({jkt}); right("crm", "write");', stolen
    )
    assert not world.verify(extra, "read")[0]
    with pytest.raises(HolderError, match="not_mandate_block"):
        holder.current_holder(extra, root_keys=world.keys)
    # And no rebind can be built on a forged one.
    with pytest.raises(HolderError):
        rebind(forged, thief, holder.thumbprint_of(orchestrator), root_keys=world.keys)
