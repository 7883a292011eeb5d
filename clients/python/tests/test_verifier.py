"""The verifier against hostile tokens (built with the real Biscuit library) and against a real
mandate service: keys fetched from it, revocations followed from its feed, receipts posted."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any

import biscuit_auth
import httpx
import pytest

from mandate_client.errors import VerificationError
from mandate_client.receipts import ReceiptReporter, arguments_sha256, canonical_json
from mandate_client.revocations import RevocationFollower
from mandate_client.verify import Verifier, VerifierSettings, check_token
from mandate_client.keys import RootKeys
from mandate_client import vocabulary
from conftest import VECTORS
from service import DevService, mandate_service  # noqa: F401

NOW = "2026-06-01T12:00:00Z"


def _valid(vectors: dict[str, Any]) -> str:
    return next(c["token"] for c in vectors["cases"] if c["name"] == "valid")


def _root() -> str:
    """The vectors' root key (kid 1), as hex."""
    keys = json.loads(VECTORS.read_text())["keys"]["keys"]
    return str(next(k for k in keys if k["kid"] == 1)["public_key"]).removeprefix("ed25519/")


def _append(token: str, source: str, params: dict[str, Any] | None = None) -> str:
    root = biscuit_auth.PublicKey.from_bytes(bytes.fromhex(_root()), biscuit_auth.Algorithm.Ed25519)  # type: ignore[call-arg]
    token_ = biscuit_auth.Biscuit.from_base64(token, root)
    return token_.append(biscuit_auth.BlockBuilder(source, params)).to_base64()


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ('right("crm", "delete")', "the only facts"),
        ("allowed($x) <- right($x, $y)", "rules"),
        ('check if tool($t), operation($o), $t.starts_with("c")', "a right is"),
        ("check all time($t), $t <= 2030-01-01T00:00:00Z", "only `check if`"),
        ('delegate("a"); delegate("b")', "at most one delegate"),
        ('constraint("crm", "write", "ticket", "prefix", "T-")', "each constraint fact comes with its check"),
        (
            'constraint("crm", "write", "ticket", "prefix", "T-"); '
            'check if tool($tool), operation($operation), !($tool == "crm" && $operation == "write") '
            'or arg("ticket", $value), $value.starts_with("X-")',
            "not the one its fact states",
        ),
    ],
)
def test_blocks_outside_the_vocabulary_are_refused_before_any_datalog(
    vectors: dict[str, Any], source: str, reason: str
) -> None:
    hostile = _append(_valid(vectors), source)
    with pytest.raises(vocabulary.NotMandateBlock, match=reason) as refused:
        vocabulary.read(hostile)
    assert refused.value.code == "not_mandate_block" and refused.value.index == 1


def test_a_holder_constraint_written_by_another_library_is_read_and_enforced(vectors: dict[str, Any]) -> None:
    narrowed = _append(
        _valid(vectors),
        'constraint("crm", "read", "ticket", "glob", {glob}); '
        'check if tool($tool), operation($operation), !($tool == "crm" && $operation == "read") '
        'or arg("ticket", $value), $value.matches({regex})',
        {"glob": "T-*", "regex": vocabulary.glob_regex("T-*")},
    )
    checked = check_token(narrowed, RootKeys.from_document(vectors["keys"]))
    assert [c.to_json()["constraint"] for c in checked.verified.constraints] == [{"glob": "T-*"}]
    at = int(time.mktime(time.strptime(NOW, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone)
    allowed = checked.authorize(is_revoked=lambda _: False, tool="crm", operation="read", now=at,
                                arguments={"ticket": "T-9"})
    assert allowed.right_used is not None and allowed.right_used.operation == "read"
    with pytest.raises(VerificationError) as refused:
        checked.authorize(is_revoked=lambda _: False, tool="crm", operation="read", now=at, arguments={"ticket": "X-9"})
    assert refused.value.code == "argument_not_allowed"


def test_canonical_json_follows_rfc_8785() -> None:
    # RFC 8785 section 3.2.2 and appendix B examples.
    assert canonical_json({"b": [1e21, 1e-7, 0.000001, 333333333.33333329, -0.0], "a": "\u20ac$\u000f\nA'\u0042\u0022\u005c\\\"/"}) == (
        '{"a":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/","b":[1e+21,1e-7,0.000001,333333333.3333333,0]}'
    )
    assert canonical_json({"\u20ac": 1, "\r": 2, "\U0001f600": 3, "\u00f6": 4}) == '{"\\r":2,"ö":4,"€":1,"😀":3}'
    assert arguments_sha256({"b": 1, "a": True}) == arguments_sha256({"a": True, "b": 1})
    with pytest.raises(ValueError):
        canonical_json(float("nan"))


# --- against a real service -------------------------------------------------------------------


def mint(service: DevService, operations: list[str], ttl: int = 600) -> dict[str, Any]:
    answer = httpx.post(
        service.base_url + "/v1/mandates",
        headers={"authorization": f"Bearer {service.orchestrator_secret}"},
        json={
            "subject_token": service.login("alice", ["staff"]),
            "task": {"description": "Summarise open CRM tickets"},
            "scope": [{"tool": "crm", "operations": operations}],
            "ttl_seconds": ttl,
        },
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_a_verifier_fetches_the_keys_and_verifies_a_fresh_mandate(mandate_service: DevService) -> None:
    minted = mint(mandate_service, ["read"])

    async def scenario() -> None:
        async with Verifier(mandate_service.base_url) as verifier:
            verified = await verifier.verify(minted["token"], tool="crm", operation="read")
            assert verified.mandate_id == minted["mandate_id"]
            assert verified.principal_subject == "alice"
            assert verified.revocation_ids[0] == minted["revocation_id"]
            with pytest.raises(VerificationError) as refused:
                await verifier.verify(minted["token"], tool="crm", operation="write")
            assert refused.value.code == "not_authorized"
            assert verifier.cached_tokens == 1

    asyncio.run(scenario())


def test_an_unreachable_service_is_refused_closed() -> None:
    async def scenario() -> None:
        async with Verifier("http://127.0.0.1:9", settings=VerifierSettings(fetch_timeout=1)) as verifier:
            with pytest.raises(VerificationError) as refused:
                await verifier.verify("RW4", tool="crm", operation="read")
            assert refused.value.code in ("unknown_key", "malformed")

    asyncio.run(scenario())


def test_a_revoked_mandate_is_refused_once_the_feed_says_so(mandate_service: DevService) -> None:
    minted = mint(mandate_service, ["read"])

    async def scenario() -> None:
        async with RevocationFollower(mandate_service.base_url, poll_interval=0.2) as follower:
            async with Verifier(mandate_service.base_url, revocations=follower) as verifier:
                await verifier.verify(minted["token"], tool="crm", operation="read")
                answer = httpx.post(
                    f"{mandate_service.base_url}/v1/mandates/{minted['mandate_id']}/revoke",
                    headers={"authorization": f"Bearer {mandate_service.orchestrator_secret}"},
                    json={"reason": "the task was cancelled"}, timeout=10,
                )
                assert answer.is_success, answer.text
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    try:
                        await verifier.verify(minted["token"], tool="crm", operation="read")
                    except VerificationError as error:
                        assert error.code == "revoked"
                        break
                    await asyncio.sleep(0.1)
                else:
                    pytest.fail(f"the revocation never reached the verifier ({follower.cursor}, {len(follower)}, {follower._task})")
                assert follower.fresh() is None

    asyncio.run(scenario())


def test_a_revocation_list_not_synced_for_30_seconds_fails_closed(mandate_service: DevService) -> None:
    minted = mint(mandate_service, ["read"])
    moment = [0.0]

    async def scenario() -> None:
        follower = RevocationFollower(mandate_service.base_url, monotonic=lambda: moment[0])
        await follower.sync_once()
        async with Verifier(mandate_service.base_url, revocations=follower) as verifier:
            await verifier.verify(minted["token"], tool="crm", operation="read")
            moment[0] = 31.0
            with pytest.raises(VerificationError) as refused:
                await verifier.verify(minted["token"], tool="crm", operation="read")
            assert refused.value.code == "revocations_stale"
        await follower.aclose()

    asyncio.run(scenario())


def test_receipts_reach_the_service_in_batches(mandate_service: DevService) -> None:
    minted = mint(mandate_service, ["read"])
    credential = mandate_service.register_reporter("python-verifier")

    async def scenario() -> ReceiptReporter:
        async with ReceiptReporter(mandate_service.base_url, credential, flush_interval=0.1) as reporter:
            for n in range(3):
                reporter.report(minted["token"], tool="crm", operation="read", outcome="success", arguments={"n": n})
            await asyncio.sleep(0.5)
        return reporter

    reporter = asyncio.run(scenario())
    assert (reporter.sent, reporter.refused, reporter.dropped) == (3, 0, 0)


class _Switch(httpx.AsyncBaseTransport):
    """The real service's key documents, until ``down`` is set: then every request fails as an
    unreachable mandate's would."""

    def __init__(self) -> None:
        self.down = False
        self.asked = 0
        self._real = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.asked += 1
        if self.down:
            raise httpx.ConnectError("mandate is down", request=request)
        return await self._real.handle_async_request(request)

    async def aclose(self) -> None:
        await self._real.aclose()


class _Clock:
    """Real wall time (the mandate's expiry is real), a monotonic time the test moves."""

    def __init__(self) -> None:
        self.moment = 0.0

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return self.moment


def test_keys_older_than_the_max_key_age_are_refused_on_every_call_while_mandate_is_down(
    mandate_service: DevService,
) -> None:
    token = mint(mandate_service, ["read"])["token"]
    clock, switch = _Clock(), _Switch()

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=switch) as http:
            verifier = Verifier(mandate_service.base_url, clock=clock, http=http)
            await verifier.verify(token, tool="crm", operation="read")
            switch.down = True
            clock.moment = 3500.0  # a refresh is due and fails: the keys are still young enough
            await verifier.verify(token, tool="crm", operation="read")
            for moment in (3601.0, 3605.0, 3700.0, 3900.0):
                clock.moment = moment
                with pytest.raises(VerificationError) as refused:
                    await verifier.verify(token, tool="crm", operation="read")
                assert refused.value.code == "unknown_key", moment
            asked = switch.asked
            switch.down = False
            # Keys too old to trust are asked for again once the refetch interval has passed
            # since the last attempt (3900 s), not only after the key TTL.
            clock.moment = 3931.0
            await verifier.verify(token, tool="crm", operation="read")
            assert switch.asked > asked

    asyncio.run(scenario())


def test_reporting_never_fails_on_arguments_without_a_canonical_form() -> None:
    reporter = ReceiptReporter("http://127.0.0.1:9", "mnd_rep_x")
    deep: Any = {}
    for _ in range(5000):
        deep = {"a": deep}
    for arguments in ({"x": float("nan")}, {"x": "\ud800"}, deep, {"x": 1}):
        reporter.report("t", tool="crm", operation="read", outcome="success", arguments=arguments)
    queued = [reporter._queue.get_nowait() for _ in range(reporter._queue.qsize())]
    assert [r.arguments_sha256 for r in queued] == [None, None, None, arguments_sha256({"x": 1})]


def test_check_token_takes_no_decode_from_its_caller(vectors: dict[str, Any]) -> None:
    narrowed = next(c["token"] for c in vectors["cases"] if c["name"] == "narrowed")
    keys = RootKeys.from_document(vectors["keys"])
    with pytest.raises(TypeError):
        check_token(_valid(vectors), keys, decoded=vocabulary.read(narrowed))  # type: ignore[call-arg]
    assert check_token(_valid(vectors), keys).decoded == vocabulary.read(_valid(vectors))


class _SetClock:
    """A wall time and a monotonic time the test sets."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.moment = 0.0

    def now(self) -> float:
        return self.at

    def monotonic(self) -> float:
        return self.moment


def _vector_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("cache_capacity", [10_000, 0])
def test_expiry_with_skew_is_compared_in_whole_seconds(vectors: dict[str, Any], cache_capacity: int) -> None:
    # The Rust verifier's rule: expired once floor(now - skew) > expires_at.
    case = next(c for c in vectors["cases"] if c["name"] == "valid")
    expires = _vector_time("2026-06-01T12:05:00Z")
    clock = _SetClock(_vector_time(case["calls"][0]["now"]))
    verifier = Verifier.from_documents(
        vectors["keys"], vectors["agent_keys"], clock=clock, settings=VerifierSettings(cache_capacity=cache_capacity)
    )

    async def scenario() -> None:
        await verifier.verify(case["token"], tool="crm", operation="read")
        for after in (30.0, 30.5, 30.999):
            clock.at = expires + after
            await verifier.verify(case["token"], tool="crm", operation="read")
            checked = await verifier.checked(case["token"])
            verifier.authorize_proven(checked, None, tool="crm", operation="read")
        clock.at = expires + 31.0
        with pytest.raises(VerificationError) as refused:
            await verifier.verify(case["token"], tool="crm", operation="read")
        assert refused.value.code == "expired"

    asyncio.run(scenario())


class _KeyServer:
    """The vectors' key documents over a mock transport, until ``down`` is set; each answer takes
    ``delay`` seconds, so that concurrent calls overlap a fetch."""

    def __init__(self, vectors: dict[str, Any]) -> None:
        self.vectors = vectors
        self.down = False
        self.asked = 0
        self.delay = 0.0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.asked += 1
        await asyncio.sleep(self.delay)
        if self.down:
            raise httpx.ConnectError("mandate is down", request=request)
        keys = request.url.path == "/.well-known/mandate-keys"
        return httpx.Response(200, json=self.vectors["keys"] if keys else self.vectors["agent_keys"])


def test_keys_too_old_to_trust_are_asked_for_again_once_the_refetch_interval_has_passed(
    vectors: dict[str, Any],
) -> None:
    case = next(c for c in vectors["cases"] if c["name"] == "valid")
    clock, server = _SetClock(_vector_time(case["calls"][0]["now"])), _KeyServer(vectors)

    async def verify(verifier: Verifier) -> str:
        try:
            await verifier.verify(case["token"], tool="crm", operation="read")
        except VerificationError as error:
            return error.code
        return "allow"

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
            verifier = Verifier("http://mandate.test", clock=clock, http=http)
            assert await verify(verifier) == "allow"
            server.down = True
            clock.moment = 3500.0  # a refresh is due by the TTL and fails: the keys are young enough
            assert await verify(verifier) == "allow"
            clock.moment = 3601.0  # past the maximum age: refused, and asked for (in vain)
            assert await verify(verifier) == "unknown_key"
            asked = server.asked
            clock.moment = 3620.0
            assert await verify(verifier) == "unknown_key"
            assert server.asked == asked, "not asked again within the refetch interval"

            server.down = False  # mandate is back at 3620 s
            clock.moment = 3625.0
            assert await verify(verifier) == "unknown_key", "the last attempt is 24 s old"
            clock.moment = 3632.0  # 31 s after the last attempt, 12 s after mandate came back
            assert await verify(verifier) == "allow"

    asyncio.run(scenario())


def test_concurrent_calls_due_a_key_fetch_start_one(vectors: dict[str, Any]) -> None:
    case = next(c for c in vectors["cases"] if c["name"] == "valid")
    clock, server = _SetClock(_vector_time(case["calls"][0]["now"])), _KeyServer(vectors)

    async def verify(verifier: Verifier) -> str:
        try:
            await verifier.verify(case["token"], tool="crm", operation="read")
        except VerificationError as error:
            return error.code
        return "allow"

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
            verifier = Verifier("http://mandate.test", clock=clock, http=http)
            server.delay = 0.05
            assert await asyncio.gather(*(verify(verifier) for _ in range(20))) == ["allow"] * 20
            assert server.asked == 2, "one fetch of the two documents"

            server.down = True
            clock.moment = 3601.0  # too old to trust, and due: every call refused, one attempt
            assert set(await asyncio.gather(*(verify(verifier) for _ in range(20)))) == {"unknown_key"}
            assert server.asked == 3, "one attempt (the first document fails)"

            server.down = False
            clock.moment = 3632.0
            assert await asyncio.gather(*(verify(verifier) for _ in range(20))) == ["allow"] * 20
            assert server.asked == 5, "one fetch again"

    asyncio.run(scenario())
