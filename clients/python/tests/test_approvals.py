"""Human approvals in the authority block (mandate's ``src/token/approval.rs``): read, shown in the
read-out, enforced through the ``arguments_sha256`` fact the verifier states, and refused when
malformed. The tokens are built here with the real Biscuit library under a fresh root key."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timezone
from typing import Any

import biscuit_auth
import pytest

from mandate_client import vocabulary
from mandate_client.canonical import arguments_sha256, canonical_json
from mandate_client.errors import VerificationError
from mandate_client.keys import RootKeys
from mandate_client.verify import Approval, Approver, Checked, Verifier, check_token

ROOT = biscuit_auth.KeyPair()
KEYS = RootKeys({7: ROOT.public_key})
NOW = 1_780_000_000
AT = datetime(2026, 3, 1, 10, 2, tzinfo=timezone.utc)
ARGUMENTS = {"ticket": "T-17", "amount": 250}
APPROVED = arguments_sha256(ARGUMENTS)
ARGUMENTS_CHECK = (
    "check if tool($tool), operation($operation), !($tool == {tool} && $operation == {operation}) "
    "or arguments_sha256({sha256});"
)

MANDATE = (
    'mandate_schema(1); mandate("m-1"); principal("alice", "https://idp.example.com/"); '
    'agent("support-orchestrator"); task("task-1", hex:3f3f); expires({expires}); '
    'right("crm", "read"); right("crm", "write"); right("mail", "send"); '
    "check if time($time), $time <= {expires};"
)


def mint(approvals: str = "", params: dict[str, Any] | None = None) -> str:
    """A mandate for alice with ``approvals`` (Datalog with ``params``) in its authority block."""
    expires = datetime.fromtimestamp(NOW + 600, timezone.utc)
    builder = biscuit_auth.BiscuitBuilder(MANDATE, {"expires": expires})
    if approvals:
        builder.add_code(approvals, {"at": AT, **(params or {})})
    builder.set_root_key_id(7)
    return str(builder.build(ROOT.private_key).to_base64())


def bound(tool: str = "crm", operation: str = "write", sha256: str = APPROVED) -> str:
    """One approval of ``operation`` of ``tool`` bound to the arguments of digest ``sha256``."""
    return mint(
        'approval("apr-1", {tool}, {operation}, {at}); '
        'approved_by("apr-1", {tool}, {operation}, "bob", "https://idp.example.com/"); '
        'approval_arguments("apr-1", {tool}, {operation}, {sha256}); ' + ARGUMENTS_CHECK,
        {"tool": tool, "operation": operation, "sha256": sha256},
    )


def call(checked: Checked, operation: str = "write", arguments: Any = None, tool: str = "crm") -> None:
    checked.authorize(is_revoked=lambda _: False, tool=tool, operation=operation, now=NOW, arguments=arguments)


def refusal(token: str, operation: str = "write", arguments: Any = None) -> str:
    with pytest.raises(VerificationError) as refused:
        call(check_token(token, KEYS), operation, arguments)
    return refused.value.code


# --- reading -----------------------------------------------------------------------------------


def test_approvals_are_read_with_their_approvers_sorted_and_shown_in_the_read_out() -> None:
    token = mint(
        'approval("apr-2", "mail", "send", {at}); '
        'approved_by("apr-2", "mail", "send", "dora", "https://idp.example.com/"); '
        'approval("apr-1", "crm", "write", {at}); '
        'approved_by("apr-1", "crm", "write", "carol", "https://idp.example.com/"); '
        'approved_by("apr-1", "crm", "write", "bob", "https://other.example.com/"); '
        'approved_by("apr-1", "crm", "write", "bob", "https://idp.example.com/");'
    )
    verified = check_token(token, KEYS).verified
    bob, bob_elsewhere, carol = (
        Approver("bob", "https://idp.example.com/"), Approver("bob", "https://other.example.com/"),
        Approver("carol", "https://idp.example.com/"),
    )
    assert verified.approvals == (
        Approval("apr-1", "crm", "write", int(AT.timestamp()), (bob, bob_elsewhere, carol)),
        Approval("apr-2", "mail", "send", int(AT.timestamp()), (Approver("dora", "https://idp.example.com/"),)),
    )
    assert verified.approvals[0].approved == AT
    assert verified.to_json()["approvals"] == [
        {
            "id": "apr-1", "tool": "crm", "operation": "write", "approved_at": "2026-03-01T10:02:00Z",
            "approvers": [
                {"subject": "bob", "issuer": "https://idp.example.com/"},
                {"subject": "bob", "issuer": "https://other.example.com/"},
                {"subject": "carol", "issuer": "https://idp.example.com/"},
            ],
        },
        {
            "id": "apr-2", "tool": "mail", "operation": "send", "approved_at": "2026-03-01T10:02:00Z",
            "approvers": [{"subject": "dora", "issuer": "https://idp.example.com/"}],
        },
    ]


def test_one_approval_gating_two_operations_lists_each_its_own_approvers() -> None:
    token = mint(
        'approval("apr-1", "crm", "write", {at}); approval("apr-1", "mail", "send", {at}); '
        'approved_by("apr-1", "mail", "send", "dora", "https://idp.example.com/"); '
        'approved_by("apr-1", "crm", "write", "carol", "https://idp.example.com/"); '
        'approved_by("apr-1", "crm", "write", "bob", "https://idp.example.com/");'
    )
    verified = check_token(token, KEYS).verified
    bob, carol, dora = (Approver(name, "https://idp.example.com/") for name in ("bob", "carol", "dora"))
    assert verified.approvals == (
        Approval("apr-1", "crm", "write", int(AT.timestamp()), (bob, carol)),
        Approval("apr-1", "mail", "send", int(AT.timestamp()), (dora,)),
    )
    assert [a["approvers"] for a in verified.to_json()["approvals"]] == [
        [{"subject": "bob", "issuer": "https://idp.example.com/"},
         {"subject": "carol", "issuer": "https://idp.example.com/"}],
        [{"subject": "dora", "issuer": "https://idp.example.com/"}],
    ]


def test_an_approval_bound_to_arguments_shows_their_digest() -> None:
    verified = check_token(bound(), KEYS).verified
    assert [a.arguments_sha256 for a in verified.approvals] == [APPROVED]
    assert verified.to_json()["approvals"][0]["arguments_sha256"] == APPROVED


def test_a_mandate_without_approvals_has_none_in_its_read_out() -> None:
    verified = check_token(mint(), KEYS).verified
    assert verified.approvals == () and "approvals" not in verified.to_json()


def test_the_verifier_answers_the_approvals_and_refuses_other_arguments() -> None:
    class Clock:
        def now(self) -> float:
            return float(NOW)

        def monotonic(self) -> float:
            return 0.0

    keys = {"keys": [{"kid": 7, "algorithm": "ed25519", "public_key": str(ROOT.public_key), "status": "active",
                      "created_at": "2026-01-01T00:00:00Z"}]}
    verifier = Verifier.from_documents(keys, clock=Clock())
    verified = asyncio.run(verifier.verify(bound(), tool="crm", operation="write", arguments=dict(ARGUMENTS)))
    assert verified.to_json()["approvals"] == [{
        "id": "apr-1", "tool": "crm", "operation": "write", "approved_at": "2026-03-01T10:02:00Z",
        "approvers": [{"subject": "bob", "issuer": "https://idp.example.com/"}], "arguments_sha256": APPROVED,
    }]
    with pytest.raises(VerificationError) as refused:
        asyncio.run(verifier.verify(bound(), tool="crm", operation="write", arguments={"ticket": "T-17"}))
    assert refused.value.code == "arguments_not_approved"


@pytest.mark.parametrize(
    "approvals",
    [
        pytest.param('approval("apr-1", "crm", "write", {at});', id="an approval nobody approved"),
        pytest.param(
            'approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", "i"); '
            'approved_by("apr-2", "crm", "write", "eve", "i");',
            id="an approver of no approval",
        ),
        pytest.param(
            'approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", "i"); '
            'approved_by("apr-1", "crm", "read", "eve", "i");',
            id="an approver of another operation of the same approval",
        ),
        pytest.param(
            'approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", "i"); '
            'approved_by("apr-1", "mail", "write", "eve", "i");',
            id="an approver of another tool of the same approval",
        ),
        pytest.param(
            'approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "bob", "i");',
            id="an approver in the former three-term form",
        ),
        pytest.param(
            'approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", "i"); '
            f'approval_arguments("apr-1", "crm", "read", "{APPROVED}");',
            id="a digest of another operation",
        ),
        pytest.param(
            'approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", "i"); '
            f'approval_arguments("apr-1", "crm", "write", "{APPROVED}"); '
            f'approval_arguments("apr-1", "crm", "write", "{"0" * 64}");',
            id="two digests for one approval",
        ),
        pytest.param(
            'approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", "i"); '
            f'approval_arguments("apr-1", "crm", "write", "{APPROVED.upper()}");',
            id="a digest in uppercase hex",
        ),
        pytest.param(
            'approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", "i"); '
            'approval_arguments("apr-1", "crm", "write", "abc");',
            id="a digest too short",
        ),
        pytest.param(
            'approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", "i"); '
            'approval("apr-2", "crm", "write", {at}); approved_by("apr-2", "crm", "write", "bob", "i");',
            id="two approvals of one operation",
        ),
        pytest.param(
            'approval("apr-1", "crm", "write", "yesterday"); approved_by("apr-1", "crm", "write", "bob", "i");',
            id="an approval time that is no date",
        ),
        pytest.param(
            'approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", 3);',
            id="an approver that is no string",
        ),
    ],
)
def test_malformed_approvals_are_refused(approvals: str) -> None:
    with pytest.raises(VerificationError) as refused:
        check_token(mint(approvals), KEYS)
    assert refused.value.code == "malformed"


def test_a_later_block_may_not_state_an_approval() -> None:
    token = biscuit_auth.Biscuit.from_base64(mint(), ROOT.public_key)
    for fact in ('approval("apr-1", "crm", "write", 2026-03-01T10:02:00Z)',
                 'approved_by("apr-1", "crm", "write", "bob", "i")',
                 f'approval_arguments("apr-1", "crm", "write", "{APPROVED}")'):
        appended = token.append(biscuit_auth.BlockBuilder(fact)).to_base64()
        with pytest.raises(VerificationError) as refused:
            check_token(appended, KEYS)
        assert refused.value.code == "not_mandate_block"


# --- enforcing ---------------------------------------------------------------------------------


def test_a_call_with_the_approved_arguments_is_allowed_whatever_their_member_order() -> None:
    checked = check_token(bound(), KEYS)
    call(checked, arguments={"amount": 250, "ticket": "T-17"})
    call(checked, "read")  # the approval gates `write` only


def test_a_call_with_other_arguments_or_none_is_refused_as_not_approved() -> None:
    token = bound()
    assert refusal(token, arguments={"ticket": "T-18", "amount": 250}) == "arguments_not_approved"
    assert refusal(token, arguments={"ticket": "T-17", "amount": 250.5}) == "arguments_not_approved"
    assert refusal(token, arguments=None) == "arguments_not_approved"
    assert refusal(token, arguments={"ticket": "T-17", "amount": float("nan")}) == "arguments_not_approved"
    with pytest.raises(VerificationError, match="the call's arguments are not the ones approved for `crm` `write`"):
        call(check_token(token, KEYS), arguments={})


def test_an_approval_of_a_right_not_granted_does_not_explain_the_refusal() -> None:
    assert refusal(bound("crm", "delete"), "delete", ARGUMENTS) == "not_authorized"


def test_the_approval_explains_a_refusal_before_the_argument_constraints() -> None:
    constrained = (
        'constraint("crm", "write", "ticket", "prefix", "T-"); '
        'check if tool($tool), operation($operation), !($tool == "crm" && $operation == "write") '
        'or arg("ticket", $value), $value.starts_with("T-");'
    )
    token = mint(
        'approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", "i"); '
        'approval_arguments("apr-1", "crm", "write", {sha256}); ' + ARGUMENTS_CHECK + " " + constrained,
        {"tool": "crm", "operation": "write", "sha256": arguments_sha256({"ticket": "X-1"})},
    )
    # Other arguments, which the constraint refuses too: the approval is named.
    assert refusal(token, arguments={"ticket": "Y-1"}) == "arguments_not_approved"
    # The approved arguments, which the constraint refuses: the constraint is named.
    assert refusal(token, arguments={"ticket": "X-1"}) == "argument_not_allowed"


def test_a_narrowed_token_keeps_its_approvals() -> None:
    narrowed = biscuit_auth.Biscuit.from_base64(bound(), ROOT.public_key).append(
        biscuit_auth.BlockBuilder('delegate("helper")')
    ).to_base64()
    checked = check_token(narrowed, KEYS)
    assert checked.verified.approvals == check_token(bound(), KEYS).verified.approvals
    call(checked, arguments=ARGUMENTS)
    assert refusal(narrowed, arguments={}) == "arguments_not_approved"


def test_the_authority_reader_is_reexported_with_approvals() -> None:
    assert vocabulary.read_authority(vocabulary.read(bound()).authority).approvals[0].id == "apr-1"


# --- canonical JSON ----------------------------------------------------------------------------


def test_canonical_json_is_rfc_8785s_example() -> None:
    import json

    parsed = json.loads(
        '{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],'
        '"string":"\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/","literals":[null,true,false]}'
    )
    assert canonical_json(parsed) == (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )


def test_the_digest_of_no_arguments_is_the_sha256_of_an_empty_object() -> None:
    assert arguments_sha256({}) == "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    assert arguments_sha256({}) == hashlib.sha256(b"{}").hexdigest()
