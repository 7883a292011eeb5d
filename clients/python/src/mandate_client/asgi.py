"""ASGI middleware (Starlette, FastAPI, any ASGI app) that lets through only requests whose
mandate grants them, answering exactly as mandate's tower layer does (``src/verifier/layer.rs``):

- no ``Authorization: Bearer|DPoP <mandate>``: 401 ``missing_mandate`` with
  ``WWW-Authenticate: Bearer realm="mandate", DPoP algs="EdDSA ES256"``;
- a refused proof: 401 with ``WWW-Authenticate: DPoP error="invalid_dpop_proof",
  algs="EdDSA ES256"`` (``use_dpop_nonce`` adds a fresh ``DPoP-Nonce``);
- a request the mapping does not name: 403 ``unmapped_request``; a call the mandate does not
  grant: 403 ``not_authorized``; a stale revocation list: 503; any other refusal: 401;

each as an RFC 9457 ``application/problem+json`` body whose ``reason`` is the refusal code.
A WebSocket is verified as its upgrade request (``GET``), and refused by closing it with code
1008 (policy violation) before it is accepted. Only ``lifespan`` events pass unverified; any
other scope type is refused.

A DPoP proof is checked against ``public_url`` joined with the request's ``root_path`` and
``raw_path`` (the path percent-encoded as the client sent it, not the decoded ``path``), so a
service mounted under a prefix, or addressed with escapes in its path, checks the URL the
client signed.
A granted request reaches the app with the :class:`~mandate_client.verify.Verified` at
``scope["state"]["mandate"]`` (``request.state.mandate`` in Starlette) and the access at
``scope["state"]["mandate_access"]``.

With a :class:`~mandate_client.receipts.ReceiptReporter`, every request whose mandate verified
is reported: one the mandate does not grant as ``denied`` (with the refusal as its reason),
one that reached the app as ``success``, ``denied`` (403) or ``failure`` by its status.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Awaitable, Callable, MutableMapping

from .errors import VerificationError
from .pop import ALGORITHMS, InvalidProof, ProofsBusy
from .receipts import Outcome, ReceiptReporter
from .verify import Verifier

__all__ = ["Access", "MandateMiddleware", "challenge", "presented", "problem_response", "request_path"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Access:
    """What one request does: an operation of the configured tool, optionally on a resource."""

    operation: str
    resource: str | None = None


def challenge(reason: str) -> str:
    """The ``WWW-Authenticate`` value of a 401 with this refusal code."""
    algs = " ".join(ALGORITHMS)
    if reason in ("invalid_dpop_proof", "use_dpop_nonce"):
        return f'DPoP error="{reason}", algs="{algs}"'
    return f'Bearer realm="mandate", DPoP algs="{algs}"'


def problem_response(status: int, reason: str, detail: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A problem+json answer: status, headers and body."""
    title = HTTPStatus(status).phrase
    body = json.dumps(
        {
            "type": "urn:mandate:problem:" + reason.replace("_", "-"),
            "title": title,
            "status": status,
            "detail": detail,
            "reason": reason,
        },
        separators=(",", ":"),
    ).encode()
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", challenge(reason).encode()))
    return status, headers, body


def presented(headers: list[tuple[bytes, bytes]]) -> tuple[str, str | None] | None:
    """The mandate and proof a request presents: ``None`` when it presents none; raises
    :class:`InvalidProof` for a DPoP header beside Bearer, a second DPoP header, or DPoP without
    a proof."""
    authorization = [v for k, v in headers if k.lower() == b"authorization"]
    if not authorization:
        return None
    try:
        value = authorization[0].decode("ascii")
    except UnicodeDecodeError:
        return None
    scheme, sep, token = value.partition(" ")
    token = token.strip()
    if not sep or not token:
        return None
    proofs = [v for k, v in headers if k.lower() == b"dpop"]
    if len(proofs) > 1:
        raise InvalidProof("malformed proof: more than one DPoP header")
    proof = proofs[0].decode("latin-1") if proofs else None
    if scheme.lower() == "bearer":
        if proof is not None:
            raise InvalidProof("malformed proof: a DPoP proof comes with `Authorization: DPoP`, not Bearer")
        return token, None
    if scheme.lower() == "dpop":
        if proof is None:
            raise InvalidProof(
                "the mandate is bound to a key: present it as `Authorization: DPoP` with a `DPoP` proof"
            )
        return token, proof
    return None


# Characters a path keeps unescaped (RFC 3986 pchar and "/"), and "%" of escapes already made.
_UNESCAPED = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]")


def _escaped(text: str) -> str:
    return "".join(c if _UNESCAPED.fullmatch(c) else "".join(f"%{b:02X}" for b in c.encode()) for c in text)


def request_path(scope: Scope) -> str:
    """The path the client addressed, as it sent it: ``root_path`` then ``raw_path`` (the
    percent-encoded bytes received, without any query). Servers that already start ``raw_path``
    with ``root_path`` (uvicorn) are not given it twice; a server without ``raw_path`` has its
    decoded ``path`` escaped again."""
    raw = scope.get("raw_path")
    if isinstance(raw, (bytes, bytearray)) and raw:
        path = bytes(raw).decode("latin-1").split("?", 1)[0]
    else:
        path = _escaped(str(scope.get("path", "")))
    root = _escaped(str(scope.get("root_path", ""))).rstrip("/")
    if root and not (path == root or path.startswith(root + "/")):
        path = root + path
    return path or "/"


async def _close(send: Send) -> None:
    """Refuses a WebSocket before it is accepted: close code 1008 (policy violation)."""
    await send({"type": "websocket.close", "code": 1008})


def refusal(error: VerificationError) -> tuple[int, str]:
    """The status and detail of a refusal, as the tower layer answers it."""
    if error.code == "not_authorized":
        return 403, "the mandate does not grant this call"
    if error.code in ("revocations_stale", "busy") or isinstance(error, ProofsBusy):
        return 503, str(error)
    return 401, str(error)


class MandateMiddleware:
    """Verifies each HTTP request's mandate for ``tool`` before the app sees it.

    ``access(scope)`` maps a request to the :class:`Access` it performs (``None``: it performs
    nothing a mandate can grant, answered 403; a WebSocket's scope, which has no ``method``,
    is mapped too, its refusals closing it with 1008). ``public_url`` is this service's URL as clients
    address it (``https://crm.example.com``): DPoP proofs are checked against it and the path.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: Verifier,
        tool: str,
        access: Callable[[Scope], Access | None],
        public_url: str | None = None,
        receipts: ReceiptReporter | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.tool = tool
        self.access = access
        self.public_url = public_url.rstrip("/") if public_url else None
        self.receipts = receipts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] not in ("http", "websocket"):
            raise ValueError(f"MandateMiddleware cannot verify an ASGI `{scope['type']}` scope")
        websocket = scope["type"] == "websocket"
        method = "GET" if websocket else str(scope["method"])
        try:
            found = presented(list(scope.get("headers", [])))
        except VerificationError as error:
            await self._refuse(send, error, websocket)
            return
        if found is None:
            if websocket:
                await _close(send)
                return
            await _answer(send, *problem_response(401, "missing_mandate", "send a mandate as `Authorization: Bearer <token>`"))
            return
        token, proof = found
        access = self.access(scope)
        if access is None:
            if websocket:
                await _close(send)
                return
            await _answer(send, *problem_response(403, "unmapped_request", "this request performs no operation a mandate can grant"))
            return
        if proof is not None and self.public_url is None:
            await self._refuse(send, InvalidProof("this service does not know its public URL, so it cannot check proofs"), websocket)
            return
        url = f"{self.public_url or ''}{request_path(scope)}"
        try:
            checked = await self.verifier.checked(token)
            proven = self.verifier.prove(checked, proof=proof, method=method, url=url)
        except VerificationError as error:
            # A token (or proof) that does not verify: no receipt, as the service records
            # receipts only for tokens its keys verify.
            await self._refuse(send, error, websocket)
            return
        try:
            verified = self.verifier.authorize_proven(
                checked, proven, tool=self.tool, operation=access.operation, resource=access.resource
            )
        except VerificationError as error:
            if self.receipts is not None:
                self.receipts.report_denied(
                    token, error, tool=self.tool, operation=access.operation, resource=access.resource
                )
            await self._refuse(send, error, websocket)
            return
        state = scope.setdefault("state", {})
        state["mandate"] = verified
        state["mandate_access"] = access
        status: list[int] = []

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            elif message["type"] == "websocket.accept" and not status:
                status.append(200)
            elif message["type"] == "websocket.close" and not status:
                status.append(403)
            await send(message)

        await self.app(scope, receive, watched)
        if self.receipts is not None:
            code = status[0] if status else 500
            outcome: Outcome = "success" if 200 <= code < 300 else "denied" if code == 403 else "failure"
            self.receipts.report(token, tool=self.tool, operation=access.operation, resource=access.resource, outcome=outcome)

    async def _refuse(self, send: Send, error: VerificationError, websocket: bool = False) -> None:
        if websocket:
            await _close(send)
            return
        status, detail = refusal(error)
        code, headers, body = problem_response(status, error.code, detail)
        if error.code == "use_dpop_nonce":
            headers.append((b"dpop-nonce", self.verifier.nonce().encode()))
        await _answer(send, code, headers, body)


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
