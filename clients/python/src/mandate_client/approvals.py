"""Human approvals at the service (``/v1/approvals``, docs/approvals.md): the orchestrator's
wait for a request, and the approvers' side. The approvals a minted mandate carries, as any
verifier reads them, are in :mod:`mandate_client.approval`.

A mint asking for an operation a policy gates behind approval raises
:class:`~mandate_client.problems.ApprovalPending` with the request;
:meth:`MandateClient.wait_for_approval <mandate_client.client.MandateClient.wait_for_approval>`
follows the request's event stream (falling back to polling at its ``interval``) until it is
decided, never past its ``expires_at``, and
:meth:`~mandate_client.client.MandateClient.collect` then takes the mandate, once.

Approvers decide with :class:`ApproverClient` (async) or :class:`SyncApproverClient`, each
authenticated with the approver's **own** IdP token, issued after the request was made.
Refusals are the typed errors of :mod:`mandate_client.problems`: 401 :class:`Unauthorized`
(a token no trusted issuer signed), 403 :class:`Forbidden` (not an eligible approver, or a
token older than the request), 404 :class:`NotFound`, 409 :class:`Conflict` (decided, expired,
or decided by this approver already), 422 :class:`Invalid` (no reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import dataclasses
import re
from datetime import datetime, timezone
from typing import Any, AsyncGenerator, Awaitable, Callable, Mapping, TypeVar
from urllib.parse import quote

import httpx

from . import _api
from .errors import ProblemError
from .holder import InvalidInput
from .problems import (
    ApprovalDenied,
    ApprovalExpired,
    ApprovalPending,
    Conflict,
    Denied,
    Forbidden,
    Invalid,
    NotFound,
    Unauthorized,
    UnexpectedResponse,
)
from .results import ApprovalRequest
from .revocations import bounded_lines, parse_sse

__all__ = [
    "ApproverClient", "SyncApproverClient", "ApprovalPending", "ApprovalDenied", "ApprovalExpired",
    "ApprovalRequest", "Unauthorized", "Forbidden", "NotFound", "Conflict", "Invalid",
]

#: The largest line of the event stream read (a request's view is far smaller).
MAX_EVENT_BYTES = 256 * 1024
#: The service sends a keep-alive every 15 s: a stream silent for longer is dropped.
STREAM_READ_SECONDS = 40.0
#: How long past ``expires_at`` (by this machine's clock) a wait still looks once more.
EXPIRY_GRACE_SECONDS = 1.0

_DENIED = re.compile(r"approval request \S+ was denied")
_EXPIRED = re.compile(r"approval request \S+ is expired")


def path(approval_id: str) -> str:
    """``/v1/approvals/{id}``."""
    if not approval_id or len(approval_id) > 128:
        raise InvalidInput("approval_id", "an approval request's id is 1 to 128 characters")
    return f"/v1/approvals/{quote(approval_id, safe='')}"


def read(response: httpx.Response) -> ApprovalRequest:
    """The approval request a response carries."""
    return _api.approval_request(_api.json_object(response))


def collect_refusal(error: ProblemError) -> ProblemError:
    """A refused collection as its approval's error: 403 denied (who and why in ``detail``) as
    :class:`ApprovalDenied`, 409 expired as :class:`ApprovalExpired`; others as they are."""
    detail = error.detail or ""
    if isinstance(error, Forbidden) and not isinstance(error, Denied) and _DENIED.match(detail):
        return ApprovalDenied(error.status, error.problem)
    if isinstance(error, Conflict) and _EXPIRED.match(detail):
        return ApprovalExpired(error.status, error.problem)
    return error


def _denied(request: ApprovalRequest) -> ApprovalDenied:
    reasons = "; ".join(f"denied by {d.approver.subject}: {d.reason}" for d in request.denials)
    return ApprovalDenied(403, {
        "type": "urn:mandate:problem:forbidden", "title": "Forbidden", "status": 403,
        "detail": f"approval request {request.id} was denied ({reasons})",
    }, request)


def _expired(request: ApprovalRequest) -> ApprovalExpired:
    return ApprovalExpired(409, {
        "type": "urn:mandate:problem:conflict", "title": "Conflict", "status": 409,
        "detail": f"approval request {request.id} is expired and gives no mandate; request it anew",
    }, request)


def _settled(request: ApprovalRequest) -> ApprovalRequest:
    """``request`` once decided: returned when approved (or collected), raised otherwise."""
    if request.state == "denied":
        raise _denied(request)
    if request.state == "expired":
        raise _expired(request)
    return request


async def follow(
    http: httpx.AsyncClient, url: str, headers: Mapping[str, str]
) -> AsyncGenerator[ApprovalRequest, None]:
    """The request's states from its event stream (``event: state``), read with a bounded line
    reader, until the stream ends. A stream the service will not open (503: too many streams)
    yields nothing; the caller polls instead."""
    async with http.stream(
        "GET", url, headers={**headers, "accept": "text/event-stream"},
        timeout=httpx.Timeout(10.0, read=STREAM_READ_SECONDS),
    ) as response:
        if response.status_code != 200:
            return
        async for event in parse_sse(bounded_lines(response.aiter_bytes(), MAX_EVENT_BYTES)):
            if event.event != "state":
                continue
            try:
                body = json.loads(event.data)
            except ValueError:
                raise UnexpectedResponse("an approval event that is not JSON") from None
            yield _api.approval_request(_api.mapping(body, "approval request"))


async def wait_for(
    poll: Callable[[], Awaitable[ApprovalRequest]],
    events: Callable[[], AsyncGenerator[ApprovalRequest, None]] | None,
    timeout: float | None,
) -> ApprovalRequest:
    """Waits for a request to be decided: follows ``events`` (when given) and polls with
    ``poll`` at the request's interval once the stream fails or ends. Returns the request
    approved (or already collected); raises :class:`ApprovalDenied` or :class:`ApprovalExpired`;
    :class:`ApprovalPending` when ``timeout`` seconds pass first. Never waits past the request's
    ``expires_at``: then it looks once more and raises :class:`ApprovalExpired` if still pending."""
    request = await poll()
    if request.state != "pending":
        return _settled(request)
    loop = asyncio.get_running_loop()
    until_expiry = (request.expires_at - datetime.now(timezone.utc)).total_seconds() + EXPIRY_GRACE_SECONDS
    by_expiry = timeout is None or until_expiry <= timeout
    budget = until_expiry if timeout is None else min(timeout, until_expiry)
    try:
        async with asyncio.timeout_at(loop.time() + max(0.0, budget)):
            if events is not None:
                with contextlib.suppress(httpx.HTTPError, ValueError, UnexpectedResponse):
                    async with contextlib.aclosing(events()) as states:
                        async for request in states:
                            if request.state != "pending":
                                return _settled(request)
            while True:
                await asyncio.sleep(max(1, request.interval))
                request = await poll()
                if request.state != "pending":
                    return _settled(request)
    except TimeoutError:
        pass
    request = await poll()
    if request.state != "pending":
        return _settled(request)
    if by_expiry:
        # Past expires_at by this machine's clock: the wait ends, whatever the service's says.
        raise _expired(dataclasses.replace(request, state="expired"))
    raise ApprovalPending(request, f"approval request {request.id} is still pending after {timeout} s")


class ApproverClient:
    """An approver's client for one mandate service, authenticated with the approver's own IdP
    token (``Authorization: Bearer``). A decision needs a token issued after the request was
    made: sign in again rather than reuse an old one. Pass ``http`` to reuse an
    ``httpx.AsyncClient`` (this client then does not close it)."""

    def __init__(self, base_url: str, token: str, *, http: httpx.AsyncClient | None = None,
                 timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)

    def __repr__(self) -> str:
        return f"ApproverClient({self.base_url!r})"

    async def __aenter__(self) -> "ApproverClient":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the HTTP client, if this client made it."""
        if self._owns_http:
            await self._http.aclose()

    async def _send(self, method: str, where: str, **kwargs: Any) -> httpx.Response:
        return await _api.send(
            self._http, self.base_url + where, method, secrets=[self._token],
            headers={"authorization": f"Bearer {self._token}"}, **kwargs,
        )

    async def pending(self) -> list[ApprovalRequest]:
        """``GET /v1/approvals``: the pending requests this approver may decide on and has not,
        oldest first (at most 200)."""
        items = _api.json_object(await self._send("GET", "/v1/approvals")).get("approvals")
        if not isinstance(items, list):
            _api.unexpected("approvals")
        return [_api.approval_request(_api.mapping(item, "approval request")) for item in items]

    async def approval(self, approval_id: str) -> ApprovalRequest:
        """``GET /v1/approvals/{id}``: one request this approver may decide on, or did."""
        return read(await self._send("GET", path(approval_id)))

    async def approve(self, approval_id: str, reason: str) -> ApprovalRequest:
        """``POST /v1/approvals/{id}/approve``: counts toward every gated operation this
        approver may approve; the request as it now stands."""
        return read(await self._send("POST", path(approval_id) + "/approve", json={"reason": reason}))

    async def deny(self, approval_id: str, reason: str) -> ApprovalRequest:
        """``POST /v1/approvals/{id}/deny``: one eligible approver's denial denies the request."""
        return read(await self._send("POST", path(approval_id) + "/deny", json={"reason": reason}))


T = TypeVar("T")


class SyncApproverClient:
    """:class:`ApproverClient` for code without an event loop: the same methods, blocking (not
    from inside a running event loop)."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0) -> None:
        self._runner = asyncio.Runner()
        self._client = ApproverClient(base_url, token, timeout=timeout)

    def __repr__(self) -> str:
        return f"SyncApproverClient({self._client.base_url!r})"

    def __enter__(self) -> "SyncApproverClient":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the HTTP client and the event loop."""
        self._runner.run(self._client.aclose())
        self._runner.close()

    def _run(self, call: Callable[[ApproverClient], Awaitable[T]]) -> T:
        async def run() -> T:
            return await call(self._client)

        return self._runner.run(run())

    def pending(self) -> list[ApprovalRequest]:
        """See :meth:`ApproverClient.pending`."""
        return self._run(lambda c: c.pending())

    def approval(self, approval_id: str) -> ApprovalRequest:
        """See :meth:`ApproverClient.approval`."""
        return self._run(lambda c: c.approval(approval_id))

    def approve(self, approval_id: str, reason: str) -> ApprovalRequest:
        """See :meth:`ApproverClient.approve`."""
        return self._run(lambda c: c.approve(approval_id, reason))

    def deny(self, approval_id: str, reason: str) -> ApprovalRequest:
        """See :meth:`ApproverClient.deny`."""
        return self._run(lambda c: c.deny(approval_id, reason))
