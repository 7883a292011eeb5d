"""Reporting uses of mandates back to mandate (``POST /v1/receipts``), in the background and in
batches, so a tool server never waits on mandate to answer its own callers (as mandate's
``src/verifier/receipts.rs``).

The reporter must be registered with mandate (``POST /v1/admin/reporters``); its credential
goes with every batch. :meth:`ReceiptReporter.report` never blocks: it queues (at most 10,000
receipts; a full queue drops the new one and logs it), and a background task sends batches of
at most 100 when full or every ``flush_interval``.

A call's arguments are reported only as a hash: SHA-256 (hex) of their RFC 8785 canonical JSON
(:func:`canonical_json`, from :mod:`mandate_client.canonical`).

A refused call is reported too (:meth:`ReceiptReporter.report_denied`, outcome ``denied`` with
the refusal as its reason), as mandate's gateway reports it: only once the token itself has
verified, since the service records a receipt only for a token its own keys verify.
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import httpx

from .canonical import MAX_DEPTH, arguments_sha256, canonical_json
from .errors import VerificationError

__all__ = ["ReceiptReporter", "UseReport", "arguments_sha256", "canonical_json"]

log = logging.getLogger(__name__)

#: Most receipts queued before new ones are dropped.
QUEUE = 10_000
#: Most receipts per request (mandate's limit).
BATCH = 100

Outcome = Literal["success", "failure", "denied"]
#: Longest reason the service records, in characters.
MAX_REASON = 512
# The service's identifiers (tools, operations): `[a-z0-9][a-z0-9._-]*`, at most 64 bytes.
_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


# --- reporting ---------------------------------------------------------------------------------


def _reason(error: VerificationError) -> str:
    """The refusal as a receipt's reason: printable (the service refuses control, invisible
    and bidirectional characters) and at most :data:`MAX_REASON` characters."""
    text = "".join(c for c in str(error) if not unicodedata.category(c).startswith("C"))
    return (text.strip() or error.code)[:MAX_REASON]


@dataclass(frozen=True)
class UseReport:
    """One use of a mandate, as ``POST /v1/receipts`` takes it."""

    token: str
    tool: str
    operation: str
    outcome: Outcome
    occurred_at: datetime
    resource: str | None = None
    arguments_sha256: str | None = None
    reason: str | None = None
    output: Literal["redacted", "blocked"] | None = None
    latency_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        at = self.occurred_at.astimezone(timezone.utc)
        out: dict[str, Any] = {
            "token": self.token,
            "tool": self.tool,
            "operation": self.operation,
            "resource": self.resource,
            "outcome": self.outcome,
            "occurred_at": at.isoformat().replace("+00:00", "Z"),
        }
        for name in ("arguments_sha256", "reason", "output", "latency_ms"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def __repr__(self) -> str:
        return f"UseReport(tool={self.tool!r}, operation={self.operation!r}, outcome={self.outcome!r})"


class ReceiptReporter:
    """Queues receipts and sends them to mandate in batches from a background task.

    Use ``async with ReceiptReporter(base_url, credential) as reporter:`` (leaving it sends
    what is queued), or :meth:`start` and :meth:`aclose`.
    """

    def __init__(
        self,
        base_url: str,
        credential: str,
        *,
        flush_interval: float = 1.0,
        http: httpx.AsyncClient | None = None,
        queue_size: int = QUEUE,
    ) -> None:
        self.url = base_url.rstrip("/") + "/v1/receipts"
        self._credential = credential
        self.flush_interval = flush_interval
        self._queue: asyncio.Queue[UseReport] = asyncio.Queue(maxsize=queue_size)
        self._http = http or httpx.AsyncClient(timeout=10.0)
        self._owns_http = http is None
        self._task: asyncio.Task[None] | None = None
        self._pending: list[UseReport] = []
        #: Receipts mandate accepted, refused (4xx) and dropped (queue full or mandate down).
        self.sent = 0
        self.refused = 0
        self.dropped = 0

    def __repr__(self) -> str:
        return f"ReceiptReporter(url={self.url!r})"

    def report(
        self,
        token: str,
        *,
        tool: str,
        operation: str,
        outcome: Outcome,
        resource: str | None = None,
        arguments: Any = None,
        reason: str | None = None,
        output: Literal["redacted", "blocked"] | None = None,
        latency_ms: int | None = None,
        occurred_at: datetime | None = None,
    ) -> None:
        """Queues one receipt; never waits, never raises for the call's own values.
        ``arguments`` are hashed, never sent; arguments without an RFC 8785 form (``NaN``, a
        lone surrogate, nesting deeper than :data:`MAX_DEPTH`) are reported without a digest."""
        digest: str | None = None
        if arguments is not None:
            try:
                digest = arguments_sha256(arguments)
            except (ValueError, RecursionError):
                log.debug("a call's arguments have no canonical JSON: reported without a digest")
        receipt = UseReport(
            token=token,
            tool=tool,
            operation=operation,
            outcome=outcome,
            occurred_at=occurred_at or datetime.now(timezone.utc),
            resource=resource,
            arguments_sha256=digest,
            reason=reason,
            output=output,
            latency_ms=latency_ms,
        )
        self.submit(receipt)

    def report_denied(
        self,
        token: str,
        error: VerificationError,
        *,
        tool: str,
        operation: str,
        resource: str | None = None,
        arguments: Any = None,
    ) -> bool:
        """Queues the receipt of a call refused by ``error`` once ``token`` had verified
        (outcome ``denied``, the refusal as its reason); never waits. Whether it was queued.

        Only receipts the service records are queued; one it refuses would refuse its whole
        batch. So none is queued for a refusal the service cannot record: ``expired`` (the
        service takes no receipt dated past its mandate's lifetime), or a ``tool`` or
        ``operation`` that is not one of its identifiers (an MCP client may name any tool).
        A token that did not verify at all has no receipt either: the caller reports only
        refusals after the token's checks."""
        if error.code == "expired" or not (_ID.fullmatch(tool) and _ID.fullmatch(operation)):
            return False
        self.report(
            token, tool=tool, operation=operation, outcome="denied", resource=resource,
            arguments=arguments, reason=_reason(error),
        )
        return True

    def submit(self, receipt: UseReport) -> None:
        """Queues a ready :class:`UseReport`; a full queue drops it."""
        try:
            self._queue.put_nowait(receipt)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("receipt queue full: a receipt was dropped")

    async def _batch(self) -> list[UseReport]:
        # Receipts taken from the queue wait in `_pending`, so stopping mid-batch loses none.
        batch = self._pending
        batch.append(await self._queue.get())
        deadline = asyncio.get_running_loop().time() + self.flush_interval
        while len(batch) < BATCH:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _send(self, batch: list[UseReport]) -> None:
        body = {"receipts": [r.to_json() for r in batch]}
        headers = {"Authorization": f"Bearer {self._credential}"}
        for attempt in range(4):
            try:
                response = await self._http.post(self.url, json=body, headers=headers)
            except httpx.HTTPError as error:
                log.warning("cannot send receipts: %s", type(error).__name__)
            else:
                if response.is_success:
                    self.sent += len(batch)
                    return
                if response.is_client_error:
                    self.refused += len(batch)
                    log.warning("mandate refused %d receipts: %d", len(batch), response.status_code)
                    return
                log.warning("mandate answered %d to receipts", response.status_code)
            await asyncio.sleep(0.2 * 2**attempt)
        self.dropped += len(batch)

    async def _run(self) -> None:
        while True:
            batch = await self._batch()
            self._pending = []
            await self._send(batch)

    def start(self) -> ReceiptReporter:
        """Starts the background sender (in the running event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        return self

    async def flush(self) -> None:
        """Sends everything queued now."""
        if self._pending:
            batch, self._pending = self._pending, []
            await self._send(batch)
        while not self._queue.empty():
            batch = []
            while not self._queue.empty() and len(batch) < BATCH:
                batch.append(self._queue.get_nowait())
            await self._send(batch)

    async def aclose(self) -> None:
        """Stops the background sender, then sends what is still queued."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.flush()
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> ReceiptReporter:
        return self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
