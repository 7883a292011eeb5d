"""Following mandate's revocation feed, so a verifier refuses revoked mandates offline.

:class:`RevocationList` holds the revoked ids (each while a token it revokes can still be
alive: until its mandate's expiry plus the 30 s clock skew, plus the second a verifier's
whole-second clock rounds down). :class:`RevocationFollower` keeps one current, as mandate's
``src/verifier/revocations.rs`` does: it catches up by polling
``GET /v1/revocations?after=N&limit=1000``, then follows the server-sent event stream
``GET /v1/revocations/stream?after=N`` (each ``revocation`` event's data is one feed entry),
and falls back to polling when the stream drops.

Anything unreadable fails the sync and moves nothing: a page, or an entry, that is not what
mandate publishes; a ``revocation`` event whose data is not one readable entry (the stream is
then dropped, and the feed polled from the last entry applied, so no entry is skipped); a line
of the stream longer than 1 MiB (read with a bounded splitter, never buffered whole). Contact is
counted only when data arrives: a page read, an event applied, or a keep-alive comment, never
the stream's opening. Once it has not synced for ``max_staleness`` (30 s),
:meth:`RevocationFollower.fresh` says so and a :class:`~mandate_client.verify.Verifier`
refuses every token with ``revocations_stale``: an old copy fails closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, AsyncIterator, Callable, Iterable, Mapping

import httpx

__all__ = ["RevocationFollower", "RevocationList", "SseEvent", "bounded_lines", "parse_sse"]

log = logging.getLogger(__name__)

#: How long past its mandate's expiry an entry is kept: the verifiers' clock skew (30 s), and
#: the second their whole-second clock rounds down (a token expiring at ``e`` is alive while
#: ``floor(now) - 30 <= e``, that is while ``now < e + 31``).
KEPT_PAST_EXPIRY = 30 + 1
#: The largest server-sent event read.
MAX_EVENT_BYTES = 1 << 20


def _timestamp(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def _entry(data: str) -> Any:
    """The feed entry an event's data holds; ``ValueError`` when it is not JSON (too deep
    nesting included: the event is then unreadable, never an error of another kind)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise ValueError("a revocation event whose data is not JSON") from None


class RevocationList:
    """Revoked ids, each kept until its mandate's expiry (plus the skew)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._revoked: dict[bytes, float] = {}
        self.cursor = 0
        self._lock = threading.Lock()

    @classmethod
    def from_page(cls, page: Mapping[str, Any], clock: Callable[[], float] = time.time) -> RevocationList:
        """A list holding the entries of one ``GET /v1/revocations`` page."""
        revoked = cls(clock)
        items = page.get("items")
        if not isinstance(items, list):
            raise ValueError("not a revocation feed page")
        revoked.apply(items)
        return revoked

    def apply(self, entries: Iterable[Any]) -> int:
        """Adds feed entries (``{"seq", "revocation_id", "expires_at"}``), skips already expired
        ones, and drops entries past their time. Returns how many were read. Raises
        ``ValueError``, applying none of them, when any entry is not one mandate publishes: a
        list that skipped it would be wrong and still look current."""
        read: list[tuple[int, bytes, float]] = []
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise ValueError("a revocation feed entry is an object")
            seq, rid, expires = entry.get("seq"), entry.get("revocation_id"), _timestamp(entry.get("expires_at"))
            if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(rid, str) or expires is None:
                raise ValueError("a revocation feed entry has a seq, a revocation_id and an expires_at")
            try:
                raw = bytes.fromhex(rid)
            except ValueError:
                raise ValueError("a revocation_id is hex") from None
            read.append((seq, raw, expires))
        now = self._clock()
        with self._lock:
            for seq, raw, expires in read:
                if expires + KEPT_PAST_EXPIRY > now:
                    self._revoked[raw] = expires
                self.cursor = max(self.cursor, seq)
            self._revoked = {k: v for k, v in self._revoked.items() if v + KEPT_PAST_EXPIRY > now}
        return len(read)

    def is_revoked(self, revocation_id: bytes) -> bool:
        return revocation_id in self._revoked

    def fresh(self) -> str | None:
        """A list given once is as fresh as it was made."""
        return None

    def __len__(self) -> int:
        return len(self._revoked)


@dataclass(frozen=True)
class SseEvent:
    """One server-sent event."""

    event: str
    data: str
    id: str | None


async def bounded_lines(chunks: AsyncIterator[bytes], max_line: int = MAX_EVENT_BYTES) -> AsyncIterator[str]:
    """The lines of a byte stream, split at CR, LF or CRLF (the ``text/event-stream`` line
    ends), decoded as UTF-8. Raises ``ValueError`` once a line grows past ``max_line`` bytes,
    holding no more than that (and one chunk) meanwhile."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        while True:
            cut = min((i for i in (buffer.find(b"\r"), buffer.find(b"\n")) if i >= 0), default=-1)
            if cut < 0 or (buffer[cut:cut + 1] == b"\r" and cut + 1 == len(buffer)):
                break  # no line end yet, or a CR that may be the first half of a CRLF
            line, rest = buffer[:cut], buffer[cut + 1:]
            if buffer[cut:cut + 2] == b"\r\n":
                rest = buffer[cut + 2:]
            if len(line) > max_line:
                raise ValueError("a stream line larger than 1 MiB")
            yield line.decode("utf-8", "replace")
            buffer = rest
        if len(buffer) > max_line + 1:
            raise ValueError("a stream line larger than 1 MiB")
    if buffer.endswith(b"\r"):
        buffer = buffer[:-1]
        yield buffer.decode("utf-8", "replace")
        buffer = b""
    if buffer:
        yield buffer.decode("utf-8", "replace")


async def parse_sse(lines: AsyncIterator[str], on_contact: Callable[[], None] | None = None) -> AsyncIterator[SseEvent]:
    """Server-sent events from a stream's lines (the WHATWG ``text/event-stream`` rules: fields
    ``event``, ``data`` (joined with newlines), ``id``; comments and unknown fields ignored; an
    event is dispatched at a blank line, one without data is not). ``on_contact`` is called for
    each comment (mandate's keep-alives); an event counts once its reader has applied it."""
    data: list[str] = []
    event, ident, size = "", None, 0
    async for line in lines:
        if line == "":
            if data:
                yield SseEvent(event or "message", "\n".join(data), ident)
            event, data, size = "", [], 0
            continue
        if line.startswith(":"):
            if on_contact is not None:
                on_contact()
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        size += len(value)
        if size > MAX_EVENT_BYTES:
            raise ValueError("an event larger than 1 MiB")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            ident = value


class RevocationFollower(RevocationList):
    """A revocation list kept current from mandate's feed.

    Run it with ``async with RevocationFollower(url) as follower:`` (or :meth:`start` and
    :meth:`aclose`), and hand it to a verifier as ``revocations=follower``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        credential: str | None = None,
        max_staleness: float = 30.0,
        poll_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(clock)
        self.base_url = base_url.rstrip("/")
        self.credential = credential
        self.max_staleness = max_staleness
        self.poll_interval = poll_interval
        self._monotonic = monotonic
        self._last_success: float | None = None
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=15.0))
        self._owns_http = http is None
        self._task: asyncio.Task[None] | None = None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}"} if self.credential else {}

    def _succeeded(self) -> None:
        self._last_success = self._monotonic()

    def fresh(self) -> str | None:
        """``None`` while synced within ``max_staleness``; else why the copy is stale."""
        if self._last_success is None:
            return "the revocation list has never been synced"
        since = self._monotonic() - self._last_success
        if since > self.max_staleness:
            return (
                f"the revocation list was last synced {int(since * 1000)} ms ago, "
                f"longer than the {int(self.max_staleness * 1000)} ms allowed"
            )
        return None

    async def sync_once(self) -> int:
        """Polls the feed until caught up; returns how many entries were read."""
        read = 0
        while True:
            cursor = self.cursor
            response = await self._http.get(
                f"{self.base_url}/v1/revocations",
                params={"after": cursor, "limit": 1000},
                headers=self._headers(),
            )
            response.raise_for_status()
            page = response.json()
            if not isinstance(page, Mapping) or not isinstance(page.get("items"), list):
                raise ValueError("not a revocation feed page")
            items = page["items"]
            next_after = page.get("next_after")
            if isinstance(next_after, bool) or not isinstance(next_after, int):
                raise ValueError("a revocation feed page has a next_after")
            read += self.apply(items)
            if not items or next_after <= cursor or self.cursor <= cursor:
                self._succeeded()
                return read

    async def follow(self) -> None:
        """Follows the event stream until it ends or fails (then raises)."""
        async with self._http.stream(
            "GET",
            f"{self.base_url}/v1/revocations/stream",
            params={"after": self.cursor},
            headers={**self._headers(), "Accept": "text/event-stream"},
        ) as response:
            response.raise_for_status()
            async for event in parse_sse(bounded_lines(response.aiter_bytes()), self._succeeded):
                if event.event == "revocation":
                    # An event that cannot be read raises (ValueError): the stream is dropped
                    # and the feed polled from the cursor of the last entry applied.
                    self.apply([_entry(event.data)])
                self._succeeded()
        raise ConnectionError("the revocation stream ended")

    async def run(self) -> None:
        """Catch up, follow, fall back to polling: forever."""
        while True:
            try:
                await self.sync_once()
                try:
                    await self.follow()
                except (httpx.HTTPError, ConnectionError, ValueError) as error:
                    log.debug("revocation stream interrupted: %s", type(error).__name__)
            except (httpx.HTTPError, ValueError) as error:
                log.warning("cannot sync revocations: %s", type(error).__name__)
            await asyncio.sleep(self.poll_interval)

    async def start(self) -> RevocationFollower:
        """Syncs once (raising if mandate cannot be read), then follows in the background."""
        await self.sync_once()
        self._task = asyncio.create_task(self.run())
        return self

    async def aclose(self) -> None:
        """Stops following."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> RevocationFollower:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
