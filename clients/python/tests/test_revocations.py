"""The revocation follower against a feed that misbehaves (entries, pages and events mandate
would never publish, a stream that never ends a line) and at the edge of an entry's life.
The real service cannot be made to publish these, so the feed is an httpx transport."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable

import httpx
import pytest

from mandate_client.checked import VerifyOptions
from mandate_client.revocations import RevocationFollower, RevocationList, bounded_lines

EXPIRES = 1_780_000_000  # 2026-05-28T20:26:40Z
RID = "ab" * 32


def _entry(seq: int, rid: str = RID, expires: str = "2026-05-28T20:26:40Z") -> dict[str, Any]:
    return {"seq": seq, "revocation_id": rid, "expires_at": expires}


def _feed(handler: Callable[[httpx.Request], httpx.Response]) -> tuple[RevocationFollower, list[httpx.Request]]:
    asked: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return handler(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    return RevocationFollower("http://mandate.test", http=http, clock=lambda: EXPIRES - 60), asked


def test_an_entry_is_kept_while_a_token_it_revokes_can_still_be_alive() -> None:
    moment = [EXPIRES - 60.0]
    revoked = RevocationList(clock=lambda: moment[0])
    revoked.apply([_entry(1)])
    options = VerifyOptions()
    for at in (EXPIRES + 30.0, EXPIRES + 30.5, EXPIRES + 30.999):
        moment[0] = at
        revoked.apply([])
        # The verifier's rule: alive while int(now) - skew <= expires_at.
        assert not int(at) - options.skew_seconds > EXPIRES
        assert revoked.is_revoked(bytes.fromhex(RID)), at
    moment[0] = EXPIRES + 31.0
    revoked.apply([])
    assert int(moment[0]) - options.skew_seconds > EXPIRES and not revoked.is_revoked(bytes.fromhex(RID))


@pytest.mark.parametrize("bad", [
    {"seq": 2, "revocation_id": "not hex", "expires_at": "2026-05-28T20:26:40Z"},
    {"seq": "2", "revocation_id": RID, "expires_at": "2026-05-28T20:26:40Z"},
    {"seq": 2, "revocation_id": RID},
    "an entry",
])
def test_a_page_with_an_unreadable_entry_is_a_failed_sync(bad: Any) -> None:
    follower, _ = _feed(lambda _: httpx.Response(200, json={"items": [_entry(1), bad, _entry(3)], "next_after": 3}))

    async def scenario() -> None:
        with pytest.raises(ValueError):
            await follower.sync_once()
        assert follower.fresh() == "the revocation list has never been synced"
        assert follower.cursor == 0 and len(follower) == 0
        await follower.aclose()

    asyncio.run(scenario())


def test_a_page_without_next_after_is_a_failed_sync() -> None:
    follower, _ = _feed(lambda _: httpx.Response(200, json={"items": [_entry(1)]}))

    async def scenario() -> None:
        with pytest.raises(ValueError):
            await follower.sync_once()
        assert follower.fresh() is not None
        await follower.aclose()

    asyncio.run(scenario())


def _stream(*chunks: bytes) -> Callable[[httpx.Request], httpx.Response]:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return lambda _: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


def test_an_unreadable_event_drops_the_stream_and_keeps_the_cursor_before_it() -> None:
    good = b'event: revocation\ndata: {"seq": 1, "revocation_id": "' + RID.encode() + b'", "expires_at": "2026-05-28T20:26:40Z"}\n\n'
    bad = b"event: revocation\ndata: {\"seq\": 2, \n\n"
    later = b'event: revocation\ndata: {"seq": 3, "revocation_id": "cd", "expires_at": "2026-05-28T20:26:40Z"}\n\n'
    deep = b"event: revocation\ndata: " + b"[" * 100_000 + b"\n\n"
    for unreadable in (bad, deep):
        follower, _ = _feed(_stream(good, unreadable, later))

        async def scenario() -> None:
            with pytest.raises(ValueError):
                await follower.follow()
            assert follower.cursor == 1 and follower.is_revoked(bytes.fromhex(RID))
            assert not follower.is_revoked(bytes.fromhex("cd"))
            await follower.aclose()

        asyncio.run(scenario())


def test_only_data_received_counts_as_contact() -> None:
    follower, _ = _feed(_stream(b""))

    async def scenario() -> None:
        with pytest.raises(ConnectionError):
            await follower.follow()
        assert follower.fresh() == "the revocation list has never been synced"
        await follower.aclose()
        kept_alive, _ = _feed(_stream(b":\n\n"))
        with pytest.raises(ConnectionError):
            await kept_alive.follow()
        assert kept_alive.fresh() is None
        await kept_alive.aclose()

    asyncio.run(scenario())


def test_a_line_that_never_ends_is_refused_after_one_mebibyte() -> None:
    pulled = [0]

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(1024):  # 64 MiB, if it were all read
            pulled[0] += 1
            yield b"data: " + b"x" * (64 * 1024 - 6)

    follower, _ = _feed(lambda _: httpx.Response(200, content=endless()))

    async def scenario() -> None:
        with pytest.raises(ValueError):
            await follower.follow()
        await follower.aclose()

    asyncio.run(scenario())
    assert pulled[0] <= 17


def test_lines_are_split_at_cr_lf_and_crlf_across_chunks() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"a\r", b"\nb\rc\n", b"\n", b"d\r\r\ne"):
            yield chunk

    async def lines() -> list[str]:
        return [line async for line in bounded_lines(chunks())]

    assert asyncio.run(lines()) == ["a", "b", "c", "", "d", "", "e"]
