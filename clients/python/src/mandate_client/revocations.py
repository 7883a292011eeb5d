"""Following mandate's revocation feed, so a verifier refuses revoked mandates offline.

:class:`RevocationList` holds the revoked ids (each until its mandate's expiry plus the 30 s
clock skew). :class:`RevocationFollower` keeps one current, as mandate's
``src/verifier/revocations.rs`` does: it catches up by polling
``GET /v1/revocations?after=N&limit=1000``, then follows the server-sent event stream
``GET /v1/revocations/stream?after=N`` (each ``revocation`` event's data is one feed entry;
keep-alive comments also count as contact), and falls back to polling when the stream drops.
Once it has not synced for ``max_staleness`` (30 s), :meth:`RevocationFollower.fresh` says so
and a :class:`~mandate_client.verify.Verifier` refuses every token with ``revocations_stale``:
an old copy fails closed.
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

__all__ = ["RevocationFollower", "RevocationList", "SseEvent", "parse_sse"]

log = logging.getLogger(__name__)

#: How long past its mandate's expiry an entry is kept (the verifiers' clock skew).
KEPT_PAST_EXPIRY = 30
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
        revoked.apply(page.get("items", []))
        return revoked

    def apply(self, entries: Iterable[Any]) -> int:
        """Adds feed entries (``{"seq", "revocation_id", "expires_at"}``), skips malformed and
        already expired ones, and drops entries past their time. Returns how many were read."""
        now = self._clock() - KEPT_PAST_EXPIRY
        read = 0
        with self._lock:
            for entry in entries:
                if not isinstance(entry, Mapping):
                    continue
                seq, rid, expires = entry.get("seq"), entry.get("revocation_id"), _timestamp(entry.get("expires_at"))
                if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(rid, str) or expires is None:
                    continue
                read += 1
                try:
                    raw = bytes.fromhex(rid)
                except ValueError:
                    raw = None
                if raw is not None and expires > now:
                    self._revoked[raw] = expires
                self.cursor = max(self.cursor, seq)
            self._revoked = {k: v for k, v in self._revoked.items() if v > now}
        return read

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


async def parse_sse(lines: AsyncIterator[str], on_contact: Callable[[], None] | None = None) -> AsyncIterator[SseEvent]:
    """Server-sent events from a stream's lines (the WHATWG ``text/event-stream`` rules: fields
    ``event``, ``data`` (joined with newlines), ``id``; comments and unknown fields ignored; an
    event is dispatched at a blank line, one without data is not). ``on_contact`` is called for
    every line, keep-alive comments included."""
    data: list[str] = []
    event, ident, size = "", None, 0
    async for line in lines:
        if on_contact is not None:
            on_contact()
        if line == "":
            if data:
                yield SseEvent(event or "message", "\n".join(data), ident)
            event, data, size = "", [], 0
            continue
        if line.startswith(":"):
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
            read += self.apply(items)
            next_after = page.get("next_after")
            if not items or not isinstance(next_after, int) or next_after <= cursor or self.cursor <= cursor:
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
            self._succeeded()
            async for event in parse_sse(response.aiter_lines(), self._succeeded):
                if event.event != "revocation":
                    continue
                try:
                    entry = json.loads(event.data)
                except ValueError:
                    continue
                self.apply([entry])
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
