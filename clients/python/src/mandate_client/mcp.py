"""Enforcing a mandate per tool call in an MCP server built with the official ``mcp`` SDK
(2.x, ``MCPServer``) over Streamable HTTP.

The SDK's own auth (``AuthSettings`` with a ``TokenVerifier``) checks a bearer token once per
HTTP request and knows neither DPoP proofs nor a call's arguments, so the mandate is enforced
by :class:`MandateMCP`, an ASGI wrapper around the server's Streamable HTTP app that answers as
``mandate gateway`` does (``src/gateway/answers.rs``):

- at HTTP level, every request needs a mandate (``Authorization: Bearer`` or ``DPoP`` with a
  proof for this URL). Without one, or with one refused: 401, a JSON-RPC error body,
  ``WWW-Authenticate: Bearer error="invalid_token", error_description="<code>",
  resource_metadata="…"`` and a second ``WWW-Authenticate: DPoP algs="EdDSA ES256"``; a refused
  proof: ``WWW-Authenticate: DPoP error="invalid_dpop_proof", …``;
- each ``tools/call`` is verified with its own tool name as the operation (the server's tool
  id in mandate is configured) and its arguments, against the mandate's argument
  constraints. A refused call: 403 with a JSON-RPC error (code -32602, ``data.reason`` the
  refusal code) and ``WWW-Authenticate: Bearer error="insufficient_scope", scope="tool:name"``;
  a revoked or expired mandate: 401; a stale revocation list: 503.

``tools/list`` answers only the tools the mandate grants. The verified call is available to
tool functions through :func:`current_mandate`.

With a :class:`~mandate_client.receipts.ReceiptReporter` (``receipts=``), each ``tools/call``
whose mandate verified is reported, as the gateway reports it (``src/gateway/mcp.rs``): a
refused call as ``denied`` with the refusal as its reason, a call that ran as ``success``, or
``failure`` when the server answered an error; each with its arguments' SHA-256.

Use::

    server = MCPServer("crm")
    app = MandateMCP(server.streamable_http_app(), verifier=verifier, tool="crm",
                     public_url="https://crm.example.com")

Every POST body is read before anything else, with the parser the SDK reads it with
(``pydantic_core.from_json``), so the two never read different messages: a body that is not
one JSON object (not JSON, nested deeper than 64, a batch, a scalar) is answered 400 with a
JSON-RPC parse error (-32700) or invalid request (-32600) and never reaches the SDK. A
``tools/list`` answer is held until complete to filter it (at most 1 MiB, else a 500 with an
internal error). A WebSocket is closed (1008) unaccepted: the calls it would carry could not be
checked one by one. Only ``lifespan`` events pass through unverified.

For a server that uses the SDK's own auth (``MCPServer(..., token_verifier=...,
auth=AuthSettings(...))``), :class:`MandateTokenVerifier` is the SDK's ``TokenVerifier``: it
verifies an unbound mandate once per HTTP request (signatures, vocabulary, revocation, expiry)
and answers the mandate's usable rights as scopes ``tool:operation``, which ``AuthSettings``'s
``required_scopes`` can require. It sees no tool call, so it cannot enforce a mandate's
per-call rights or argument constraints, and the SDK's auth knows no DPoP, so it refuses bound
mandates: for per-call enforcement, wrap the app in :class:`MandateMCP` instead.
"""

from __future__ import annotations

import contextvars
import json
from typing import Any, Awaitable, Callable, MutableMapping

import pydantic_core
from mcp.server.auth.provider import AccessToken

from .asgi import presented, request_path
from .errors import VerificationError
from .pop import ALGORITHMS, InvalidProof, ProofsBusy
from .receipts import Outcome, ReceiptReporter, canonical_json
from .verify import Verified, Verifier

__all__ = ["MandateMCP", "MandateTokenVerifier", "current_mandate"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The largest request body read, in bytes.
MAX_BODY = 1 << 20
#: The most of a tool call's answer read to tell success from failure, in bytes.
MAX_ANSWER_READ = 1 << 16
#: The most a ``tools/list`` answer buffered to filter it, in bytes.
MAX_LIST = 1 << 20
#: The deepest a request body may nest arrays and objects.
MAX_JSON_DEPTH = 64
PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32602, -32603

_CURRENT: contextvars.ContextVar[Verified | None] = contextvars.ContextVar("mandate", default=None)


def current_mandate() -> Verified | None:
    """The verified mandate of the tool call being served (``None`` outside one)."""
    return _CURRENT.get()


def _quoted(value: str) -> str:
    text = "".join(c for c in value if c.isprintable())
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _challenge(scheme: str, params: list[tuple[str, str]]) -> bytes:
    parts = ", ".join(f"{k}={_quoted(v)}" for k, v in params)
    return (f"{scheme} {parts}" if parts else scheme).encode()


def _rpc_error(rid: Any, code: int, message: str, data: Any = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return json.dumps({"jsonrpc": "2.0", "id": rid, "error": error}).encode()


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class MandateTokenVerifier:
    """The SDK's ``TokenVerifier`` (``mcp.server.auth.provider``) for mandates presented as
    ``Authorization: Bearer``, for servers using the SDK's ``AuthSettings``.

    ``verify_token`` answers an ``AccessToken`` for an unbound mandate whose signatures,
    vocabulary, revocation and expiry verify (no call is authorized yet): ``scopes`` its usable
    rights as ``tool:operation`` (only those of ``tool`` when given), ``expires_at`` its expiry,
    ``client_id`` the agent it was minted for, ``subject`` its principal and ``claims`` its
    read-out. Anything else, a bound mandate included (the SDK's auth checks no DPoP proof), is
    ``None``: the SDK answers 401. Per-call rights and argument constraints are not enforced
    here: that needs :class:`MandateMCP`."""

    def __init__(self, verifier: Verifier, *, tool: str | None = None) -> None:
        self.verifier = verifier
        self.tool = tool

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            checked = await self.verifier.checked(token)
            if checked.verified.holder_key is not None:
                return None
            self.verifier.prove(checked, proof=None, method=None, url=None)
        except VerificationError:
            return None
        verified = checked.verified
        rights = [r for r in checked.usable_rights() if self.tool is None or r.tool == self.tool]
        return AccessToken(
            token=token,
            client_id=verified.agent_id,
            scopes=[f"{r.tool}:{r.operation}" for r in rights],
            expires_at=verified.expires_at,
            subject=verified.principal_subject,
            claims=verified.to_json(),
        )


class MandateMCP:
    """An ASGI wrapper enforcing the mandate of each MCP request and each tool call."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: Verifier,
        tool: str,
        public_url: str,
        operation: Callable[[str], str] = lambda name: name,
        receipts: ReceiptReporter | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.tool = tool
        self.public_url = public_url.rstrip("/")
        self.operation = operation
        self.receipts = receipts

    def metadata_url(self, path: str) -> str:
        """The RFC 9728 protected-resource metadata URL named in challenges."""
        return f"{self.public_url}/.well-known/oauth-protected-resource{path}"

    # answers

    async def _unauthorized(self, send: Send, path: str, rid: Any, error: VerificationError | None, message: str) -> None:
        metadata = self.metadata_url(path)
        if isinstance(error, (InvalidProof,)) or (error is not None and error.code == "use_dpop_nonce"):
            algs = " ".join(ALGORITHMS)
            params = [("error", error.code), ("error_description", str(error)), ("algs", algs), ("resource_metadata", metadata)]
            headers = [(b"www-authenticate", _challenge("DPoP", params))]
            if error.code == "use_dpop_nonce":
                headers.append((b"dpop-nonce", self.verifier.nonce().encode()))
            await _answer(send, 401, _rpc_error(rid, INVALID_REQUEST, message), headers)
            return
        params = [("error", "invalid_token"), ("error_description", error.code)] if error else []
        params.append(("resource_metadata", metadata))
        headers = [
            (b"www-authenticate", _challenge("Bearer", params)),
            (b"www-authenticate", _challenge("DPoP", [("algs", " ".join(ALGORITHMS))])),
        ]
        await _answer(send, 401, _rpc_error(rid, INVALID_REQUEST, message), headers)

    async def _forbidden(self, send: Send, path: str, rid: Any, scope: str, message: str, data: Any) -> None:
        params = [
            ("error", "insufficient_scope"),
            ("scope", scope),
            ("error_description", message),
            ("resource_metadata", self.metadata_url(path)),
        ]
        headers = [(b"www-authenticate", _challenge("Bearer", params))]
        await _answer(send, 403, _rpc_error(rid, INVALID_PARAMS, message, data), headers)

    async def _unavailable(self, send: Send, rid: Any) -> None:
        body = _rpc_error(rid, INTERNAL_ERROR, "the server cannot verify mandates now; retry shortly")
        await _answer(send, 503, body, [(b"retry-after", b"1")])

    async def _refused(self, send: Send, path: str, rid: Any, error: VerificationError) -> None:
        if error.code in ("revocations_stale", "busy") or isinstance(error, ProofsBusy):
            await self._unavailable(send, rid)
        elif isinstance(error, InvalidProof) or error.code == "use_dpop_nonce":
            await self._unauthorized(send, path, rid, error, f"the proof of possession is refused: {error}")
        else:
            await self._unauthorized(send, path, rid, error, f"the mandate is not accepted: {error.code}")

    # requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            # MCP's Streamable HTTP has no WebSocket, and the calls a socket carries could not
            # be checked one by one: refused before it is accepted.
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            raise ValueError(f"MandateMCP cannot verify an ASGI `{scope['type']}` scope")
        path = request_path(scope)
        message: dict[str, Any] | None = None
        if scope["method"] == "POST":
            body, receive = await _read_body(receive)
            if body is None:
                await _answer(send, 413, _rpc_error(None, INVALID_REQUEST, "the request body is too large"), [])
                return
            read = _message(body)
            if isinstance(read, tuple):
                # A body the checks below cannot read could hide a tool call from them (a batch
                # too): refused, as the gateway does, before the SDK reads it.
                await _answer(send, 400, _rpc_error(None, read[0], read[1]), [])
                return
            message = read
        rid = message.get("id") if message is not None else None
        try:
            found = presented(list(scope.get("headers", [])))
        except VerificationError as error:
            await self._refused(send, path, rid, error)
            return
        if found is None:
            await self._unauthorized(send, path, rid, None, "send a mandate for this tool as `Authorization: Bearer <token>`")
            return
        token, proof = found
        try:
            checked = await self.verifier.checked(token)
            proven = self.verifier.prove(checked, proof=proof, method=str(scope["method"]), url=self.public_url + path)
        except VerificationError as error:
            await self._refused(send, path, rid, error)
            return
        call = _tool_call(message)
        usable = [r for r in checked.usable_rights() if r.tool == self.tool]
        if not usable:
            if call is not None and isinstance(call[0], str):
                self._report_denied(token, self.operation(call[0]), call[1], VerificationError(
                    f"the mandate grants no operation of `{self.tool}`", code="no_right"))
            await self._forbidden(
                send, path, rid, self.tool, f"the mandate grants no operation of `{self.tool}`",
                {"reason": "no_right", "tool": self.tool},
            )
            return
        verified: Verified | None = None
        operation: str | None = None
        if call is not None:
            name, arguments = call
            if not isinstance(name, str):
                await _answer(send, 400, _rpc_error(rid, INVALID_PARAMS, "tools/call names a tool"), [])
                return
            operation = self.operation(name)
            try:
                verified = self.verifier.authorize_proven(
                    checked, proven, tool=self.tool, operation=operation, arguments=arguments,
                )
            except VerificationError as error:
                self._report_denied(token, operation, arguments, error)
                await self._denied(send, path, rid, operation, error)
                return
        if message is not None and message.get("method") == "tools/list":
            send = _filtered_list(send, {r.operation for r in usable}, self.operation)
        answer: _Answer | None = None
        if call is not None and self.receipts is not None:
            answer = _Answer(send)
            send = answer.send
        marker = _CURRENT.set(verified)
        try:
            await self.app(scope, receive, send)
        finally:
            _CURRENT.reset(marker)
        if answer is not None and operation is not None and self.receipts is not None:
            self.receipts.report(
                token, tool=self.tool, operation=operation, outcome=answer.outcome(),
                arguments=_hashable(call[1]) if call is not None else None,
            )

    def _report_denied(self, token: str, operation: str, arguments: Any, error: VerificationError) -> None:
        # Reached only once the token and its proof verified: the service records receipts
        # only for tokens its keys verify (see ReceiptReporter.report_denied for the rest).
        if self.receipts is not None:
            self.receipts.report_denied(
                token, error, tool=self.tool, operation=operation, arguments=_hashable(arguments)
            )

    async def _denied(self, send: Send, path: str, rid: Any, name: str, error: VerificationError) -> None:
        scope = f"{self.tool}:{name}"
        if error.code in ("revoked", "expired"):
            await self._unauthorized(send, path, rid, error, f"the mandate is not accepted: {error.code}")
        elif error.code in ("revocations_stale", "busy"):
            await self._unavailable(send, rid)
        elif error.code == "argument_not_allowed":
            argument, requirement = getattr(error, "argument", ""), getattr(error, "requirement", "")
            await self._forbidden(
                send, path, rid, scope,
                f"the mandate does not allow this call of `{name}`: argument `{argument}` {requirement}",
                {"reason": "argument_not_allowed", "tool": self.tool, "operation": name,
                 "argument": argument, "requirement": requirement},
            )
        else:
            await self._forbidden(
                send, path, rid, scope, f"the mandate does not grant `{name}` of `{self.tool}`",
                {"reason": error.code, "tool": self.tool, "operation": name},
            )


def _tool_call(message: Any) -> tuple[Any, Any] | None:
    """The tool name and arguments of a ``tools/call`` message (``{}`` without arguments)."""
    if not isinstance(message, dict) or message.get("method") != "tools/call":
        return None
    raw_params = message.get("params")
    params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
    arguments = params.get("arguments")
    return params.get("name"), arguments if arguments is not None else {}


def _hashable(arguments: Any) -> Any:
    """``arguments`` when they have an RFC 8785 form to hash (``NaN`` or a lone surrogate has
    none), else ``None``: the receipt then carries no digest."""
    try:
        canonical_json(arguments)
    except (ValueError, RecursionError):
        return None
    return arguments


class _Answer:
    """Watches a tool call's answer (its status, and up to :data:`MAX_ANSWER_READ` bytes of
    its body, JSON or SSE) to tell whether the call succeeded."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500
        self._body = bytearray()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        elif message["type"] == "http.response.body" and len(self._body) < MAX_ANSWER_READ:
            self._body += message.get("body", b"")[: MAX_ANSWER_READ - len(self._body)]
        await self._send(message)

    def outcome(self) -> Outcome:
        """``success`` for a 2xx answer whose JSON-RPC result is not an error, else ``failure``."""
        if not 200 <= self.status < 300:
            return "failure"
        text = bytes(self._body).decode("utf-8", "replace")
        payloads = [text] if text.lstrip().startswith("{") else [
            line[5:] for line in text.split("\n") if line.startswith("data:")
        ]
        for payload in payloads:
            try:
                answer = json.loads(payload)
            except ValueError:
                continue
            if isinstance(answer, dict) and ("result" in answer or "error" in answer):
                result = answer.get("result")
                failed = "error" in answer or (isinstance(result, dict) and result.get("isError") is True)
                return "failure" if failed else "success"
        return "failure"


async def _read_body(receive: Receive) -> tuple[bytes | None, Receive]:
    """The whole request body (``None`` past :data:`MAX_BODY`), and a ``receive`` replaying it."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None, receive
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _depth(value: Any) -> int:
    """How deep ``value`` nests arrays and objects (a scalar: 0)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _message(body: bytes) -> dict[str, Any] | tuple[int, str]:
    """The JSON-RPC message a POST body holds, read by the SDK's own parser
    (``pydantic_core.from_json``, as ``mcp.server.streamable_http`` reads it) so the two read the
    same message; else the JSON-RPC error code and message to refuse it with."""
    try:
        message = pydantic_core.from_json(body)
    except ValueError:
        return PARSE_ERROR, "the body is not JSON"
    if _depth(message) > MAX_JSON_DEPTH:
        return PARSE_ERROR, f"the body nests deeper than {MAX_JSON_DEPTH} arrays and objects"
    if not isinstance(message, dict):
        return INVALID_REQUEST, "post one JSON-RPC message per request; batches are not accepted"
    return message


def _filtered_list(send: Send, granted: set[str], operation: Callable[[str], str]) -> Send:
    """A ``send`` that drops from a ``tools/list`` answer (JSON or SSE) the tools not granted.

    The answer is held until it is complete (a streamed one until the SDK closes its stream,
    which it does once it has answered), at most :data:`MAX_LIST` bytes: a longer answer, or
    one whose JSON cannot be read, is replaced with a 500 and a JSON-RPC internal error, so no
    tool list reaches the client unfiltered."""
    started: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    refused = False

    def keep(payload: Any) -> Any:
        result = payload.get("result") if isinstance(payload, dict) else None
        if isinstance(result, dict) and isinstance(result.get("tools"), list):
            result["tools"] = [t for t in result["tools"] if isinstance(t, dict) and operation(str(t.get("name"))) in granted]
        return payload

    def filtered_body(body: bytes) -> bytes:
        text = body.decode("utf-8")
        if text.lstrip().startswith("{"):
            return json.dumps(keep(pydantic_core.from_json(body))).encode()
        lines = []
        for line in text.split("\n"):
            if line.startswith("data:"):
                line = "data: " + json.dumps(keep(pydantic_core.from_json(line[5:].strip())))
            lines.append(line)
        return "\n".join(lines).encode()

    async def refuse() -> None:
        body = _rpc_error(None, INTERNAL_ERROR, "the tool list cannot be filtered by the mandate")
        await _answer(send, 500, body, [])

    async def filtered(message: Message) -> None:
        nonlocal size, refused
        if refused:
            return
        if message["type"] == "http.response.start":
            started.append(message)
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_LIST:
            refused = True
            chunks.clear()
            await refuse()
            return
        chunks.append(chunk)
        if message.get("more_body", False):
            return
        try:
            body = filtered_body(b"".join(chunks))
        except (ValueError, RecursionError):
            refused = True
            await refuse()
            return
        start = dict(started[0])
        start["headers"] = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        start["headers"].append((b"content-length", str(len(body)).encode()))
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return filtered
