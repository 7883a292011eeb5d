"""The typed errors of mandate's HTTP API, and :func:`raise_for_problem`, which turns a refused
response into one.

Each is a :class:`~mandate_client.errors.ProblemError` carrying the RFC 9457 problem document
(or, :class:`OAuthError`, the RFC 6749 error of ``/oauth2/token``), with any secret, token or
proof the request carried scrubbed out. :mod:`mandate_client.client` raises them and
re-exports every name.

:class:`ApprovalPending` is no refusal: a mint that waits for human approval raises it, so that
code expecting a mandate is never handed something else.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import httpx

from .errors import MandateError, ProblemError
from .results import ApprovalRequest, Decision, Denial, FieldError

__all__ = [
    "BadRequest", "Unauthorized", "Forbidden", "Denied", "NotFound", "Conflict", "Invalid",
    "RateLimited", "Unavailable", "ServerError", "OAuthError", "UnexpectedResponse",
    "ApprovalPending", "ApprovalDenied", "ApprovalExpired", "raise_for_problem",
]


class BadRequest(ProblemError):
    """400 (a malformed request), 413 (body too large) or 415 (not JSON)."""


class Unauthorized(ProblemError):
    """401: a wrong agent secret or admin token, a refused subject token, a missing or bad proof.

    ``reason`` is the stable code when the service gives one; ``www_authenticate`` the
    challenge header, if any."""

    def __init__(self, status: int, problem: Mapping[str, Any], www_authenticate: str | None = None) -> None:
        super().__init__(status, problem)
        self.reason: str | None = problem.get("reason")
        self.www_authenticate = www_authenticate


class Forbidden(ProblemError):
    """403: the caller may not do this (an auditor token, a sub-agent minting, …)."""


class Denied(Forbidden):
    """403 ``scope-denied``: a mint refused; ``denied`` lists each operation and why."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        super().__init__(status, problem)
        self.denied: tuple[Denial, ...] = tuple(
            Denial(str(d.get("tool", "")), str(d.get("operation", "")), str(d.get("reason", "")), d.get("argument"))
            for d in problem.get("denied") or () if isinstance(d, Mapping)
        )


class NotFound(ProblemError):
    """404: no such mandate (another orchestrator's gets the same answer)."""


class Conflict(ProblemError):
    """409: the state forbids it (the mandate expired or was revoked, a limit is reached)."""


class Invalid(ProblemError):
    """422: invalid fields; ``errors`` names each with what is wrong."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        super().__init__(status, problem)
        self.errors: tuple[FieldError, ...] = tuple(
            FieldError(str(e.get("field", "")), str(e.get("message", "")))
            for e in problem.get("errors") or () if isinstance(e, Mapping)
        )

    @property
    def fields(self) -> tuple[str, ...]:
        """The invalid fields' paths (``task.description``)."""
        return tuple(e.field for e in self.errors)


class RateLimited(ProblemError):
    """429: a rate limit is reached; ``retry_after`` seconds until it is worth trying again."""

    def __init__(self, status: int, problem: Mapping[str, Any], retry_after: int | None) -> None:
        super().__init__(status, problem)
        self.retry_after = retry_after


class Unavailable(ProblemError):
    """503: the store or an issuer is unavailable, or the service could not be reached at all;
    nothing was done."""


class ServerError(ProblemError):
    """Any other 5xx (the cause is in the service's log, not here)."""


class OAuthError(ProblemError):
    """An RFC 6749 error from ``/oauth2/token``: ``error`` (``invalid_request``, ``invalid_client``,
    ``invalid_scope``, ``invalid_dpop_proof``, …) and ``error_description``."""

    def __init__(self, status: int, problem: Mapping[str, Any], retry_after: int | None = None) -> None:
        super().__init__(status, problem)
        self.error = str(problem.get("error", "server_error"))
        self.error_description: str | None = problem.get("error_description")
        self.retry_after = retry_after


class UnexpectedResponse(MandateError):
    """The service answered something that is not the documented shape."""


class ApprovalPending(MandateError):
    """Not a refusal: a requested operation needs human approval, and nothing was minted yet
    (``POST /v1/mandates`` answered 202, or the token endpoint ``authorization_pending``).
    ``request`` is the :class:`~mandate_client.results.ApprovalRequest`: wait for it
    (``wait_for_approval(request.id)``), then collect its mandate (``collect(request.id)``).
    ``wait_for_approval`` raises it too when its ``timeout`` passes first."""

    def __init__(self, request: ApprovalRequest, message: str | None = None) -> None:
        super().__init__(message or f"approval request {request.id} is pending until "
                                    f"{request.expires_at.isoformat()}: {request.binding_message}")
        self.request = request


class ApprovalDenied(Forbidden):
    """403: an approver denied the approval request; ``detail`` names who and why. ``request``
    is the request as last read, when :meth:`~mandate_client.client.MandateClient.wait_for_approval`
    saw the denial (``None`` from ``collect``)."""

    def __init__(self, status: int, problem: Mapping[str, Any], request: ApprovalRequest | None = None) -> None:
        super().__init__(status, problem)
        self.request = request

    @property
    def denials(self) -> tuple[Decision, ...]:
        """The denying decisions (approver, reason, when), when the request was read."""
        return self.request.denials if self.request is not None else ()


class ApprovalExpired(Conflict):
    """409: the approval request expired: undecided in time, or approved and not collected in
    time. It gives no mandate; ask anew. ``request`` as for :class:`ApprovalDenied`."""

    def __init__(self, status: int, problem: Mapping[str, Any], request: ApprovalRequest | None = None) -> None:
        super().__init__(status, problem)
        self.request = request


_BY_STATUS: dict[int, type[ProblemError]] = {
    400: BadRequest, 404: NotFound, 409: Conflict, 413: BadRequest, 415: BadRequest, 503: Unavailable,
}


def _scrub(value: Any, secrets: Sequence[str]) -> Any:
    """``value`` with every occurrence of a secret replaced, so no error repeats one."""
    if isinstance(value, str):
        for secret in secrets:
            if secret:
                value = value.replace(secret, "[redacted]")
        return value
    if isinstance(value, Mapping):
        return {str(k): _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    return value


def _retry_after(response: httpx.Response) -> int | None:
    value = response.headers.get("retry-after", "")
    return int(value) if value.isdigit() else None


def raise_for_problem(response: httpx.Response, secrets: Sequence[str] = (), oauth: bool = False) -> None:
    """Raises the typed error for a refused ``response``; returns for a 2xx one.

    ``secrets`` (what the request carried) are scrubbed from the error; ``oauth`` reads an
    RFC 6749 error body (``/oauth2/token``)."""
    if response.is_success:
        return
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, Mapping):
        body = {"title": response.reason_phrase or "error", "status": status}
    problem: dict[str, Any] = _scrub(body, secrets)
    if oauth and "error" in problem:
        raise OAuthError(status, problem, _retry_after(response))
    if status == 401:
        raise Unauthorized(status, problem, response.headers.get("www-authenticate"))
    if status == 403:
        raise (Denied if problem.get("denied") else Forbidden)(status, problem)
    if status == 422:
        raise Invalid(status, problem)
    if status == 429:
        raise RateLimited(status, problem, _retry_after(response))
    raise _BY_STATUS.get(status, ServerError if status >= 500 else BadRequest)(status, problem)
