"""The MCP glue's edges: bodies it cannot read, sockets, tool lists it cannot filter, arguments
it cannot hash, and the SDK's own auth hooks; against a real mandate service."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

import httpx
import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from mandate_client.mcp import MAX_LIST, MandateMCP, MandateTokenVerifier, _hashable
from mandate_client.pop import HolderSecret
from mandate_client.verify import Verifier
from service import DevService, mandate_service  # noqa: F401
from test_glue import Served
from test_verifier import mint

ACCEPT = "application/json, text/event-stream"


class Spy:
    """An ASGI app standing for the SDK: records every POST body that reaches it and answers
    ``answer(body)`` (content type and body); accepts any WebSocket."""

    def __init__(self, answer: Callable[[bytes], tuple[bytes, bytes]] | None = None) -> None:
        self.reached: list[bytes] = []
        self.answer = answer or (lambda _: (b"application/json", b'{"jsonrpc": "2.0", "id": 1, "result": {}}'))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                await send({"type": event["type"] + ".complete"})
                if event["type"] == "lifespan.shutdown":
                    return
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "accepted"})
            await send({"type": "websocket.close", "code": 1000})
            return
        body = b""
        more = True
        while more:
            event = await receive()
            body += event.get("body", b"")
            more = event.get("more_body", False)
        self.reached.append(body)
        kind, answer = self.answer(body)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", kind)]})
        await send({"type": "http.response.body", "body": answer})


def _guarded(service: DevService, spy: Spy) -> tuple[MandateMCP, Served]:
    guard = MandateMCP(spy, verifier=Verifier(service.base_url), tool="crm", public_url="http://placeholder")
    served = Served(guard)
    guard.public_url = served.url
    return guard, served


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_a_body_that_is_not_one_json_object_is_refused_before_the_sdk_reads_it(mandate_service: DevService) -> None:
    token = mint(mandate_service, ["read"])["token"]
    spy = Spy()
    _, served = _guarded(mandate_service, spy)
    deep_call = (
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "write", "arguments": {"x": '
        + _nested(100) + b"}}}"
    )
    bodies = {
        b"{": -32700,
        b"": -32700,
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call"} trailing': -32700,
        b"\xef\xbb\xbf{}": -32700,  # a BOM: Python's json reads it, the SDK's parser does not
        _nested(5000): -32700,  # Python's json would raise RecursionError
        deep_call: -32700,
        b'"tools/call"': -32600,
        b"1": -32600,
        b"null": -32600,
        b'[{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}]': -32600,
    }
    headers = {"accept": ACCEPT, "content-type": "application/json", "authorization": f"Bearer {token}"}
    with served:
        for body, code in bodies.items():
            answer = httpx.post(served.url + "/mcp", content=body, headers=headers, timeout=10)
            assert answer.status_code == 400, (body[:40], answer.status_code)
            assert answer.json()["error"]["code"] == code, body[:40]
        ok = httpx.post(served.url + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers)
        assert ok.status_code == 200
    assert spy.reached == [b'{"jsonrpc":"2.0","id":1,"method":"ping"}']


def test_a_websocket_is_closed_unaccepted(mandate_service: DevService) -> None:
    token = mint(mandate_service, ["read"])["token"]
    guard = MandateMCP(Spy(), verifier=Verifier(mandate_service.base_url), tool="crm", public_url="http://testserver")
    with TestClient(guard) as client:
        for headers in ({}, {"authorization": f"Bearer {token}"}):
            with pytest.raises(WebSocketDisconnect) as closed:
                with client.websocket_connect("/mcp", headers=headers) as socket:
                    socket.receive_text()
            assert closed.value.code == 1008


def _tools(count: int, size: int = 0) -> bytes:
    tools = [{"name": "read" if n == 0 else f"tool-{n}", "description": "x" * size, "inputSchema": {}}
             for n in range(count)]
    return json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}}).encode()


def test_a_tool_list_too_large_to_filter_is_refused_and_a_streamed_one_is_filtered(mandate_service: DevService) -> None:
    token = mint(mandate_service, ["read"])["token"]
    headers = {"accept": ACCEPT, "authorization": f"Bearer {token}"}
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    huge = _tools(3, MAX_LIST // 2)
    _, served = _guarded(mandate_service, Spy(lambda _: (b"application/json", huge)))
    with served:
        refused = httpx.post(served.url + "/mcp", json=listing, headers=headers, timeout=10)
    assert refused.status_code == 500 and refused.json()["error"]["code"] == -32603
    assert b"tool-1" not in refused.content
    streamed = b"event: message\ndata: " + _tools(3) + b"\n\n"
    _, served = _guarded(mandate_service, Spy(lambda _: (b"text/event-stream", streamed)))
    with served:
        answer = httpx.post(served.url + "/mcp", json=listing, headers=headers, timeout=10)
    assert answer.status_code == 200
    data = [line[5:] for line in answer.text.split("\n") if line.startswith("data:")]
    assert [t["name"] for t in json.loads(data[0])["result"]["tools"]] == ["read"]
    broken = b"event: message\ndata: {not json\n\n"
    _, served = _guarded(mandate_service, Spy(lambda _: (b"text/event-stream", broken)))
    with served:
        answer = httpx.post(served.url + "/mcp", json=listing, headers=headers, timeout=10)
    assert answer.status_code == 500 and answer.json()["error"]["code"] == -32603


def test_arguments_without_a_canonical_form_are_reported_without_a_digest() -> None:
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    for arguments in ({"x": float("nan")}, {"x": "\ud800"}, {"x": deep}):
        assert _hashable(arguments) is None


def test_the_sdks_own_auth_accepts_a_mandate_with_its_rights_as_scopes(mandate_service: DevService) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.server.auth.settings import AuthSettings
    from mcp.server.mcpserver import MCPServer

    verifier = MandateTokenVerifier(Verifier(mandate_service.base_url), tool="crm")
    reader = mint(mandate_service, ["read", "write"])
    checked = asyncio.run(verifier.verify_token(reader["token"]))
    assert checked is not None
    assert sorted(checked.scopes) == ["crm:read", "crm:write"]
    assert checked.subject == "alice" and checked.claims is not None
    assert checked.claims["mandate_id"] == reader["mandate_id"]
    assert checked.expires_at is not None and checked.expires_at > 0

    server = MCPServer(
        "crm", token_verifier=verifier,
        auth=AuthSettings(issuer_url=mandate_service.base_url, resource_server_url="http://127.0.0.1/mcp",
                          required_scopes=["crm:read"], validate_token_resource=False),
    )

    @server.tool()
    def read(ticket: str) -> str:
        """Reads a ticket."""
        return f"ticket {ticket}"

    served = Served(server.streamable_http_app(stateless_http=True, json_response=True))
    holder = HolderSecret.generate("EdDSA")
    bound = httpx.post(
        mandate_service.base_url + "/v1/mandates",
        headers={"authorization": f"Bearer {mandate_service.orchestrator_secret}"},
        json={"subject_token": mandate_service.login("alice", ["staff"]), "task": {"description": "t"},
              "scope": [{"tool": "crm", "operations": ["read"]}], "holder_key": holder.public.to_jwk()},
    ).json()["token"]
    writer = mint(mandate_service, ["write"])["token"]
    with served:
        async def scenario() -> None:
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {reader['token']}"}, timeout=20)
            async with http:
                async with Client(streamable_http_client(served.url + "/mcp", http_client=http)) as client:
                    assert [t.name for t in (await client.list_tools()).tools] == ["read"]
                    result = await client.call_tool("read", {"ticket": "T-1"})
                    assert not result.is_error and result.content[0].text == "ticket T-1"

        asyncio.run(scenario())
        listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}

        def post(token: str) -> httpx.Response:
            return httpx.post(served.url + "/mcp", json=listing, timeout=10,
                              headers={"accept": ACCEPT, "authorization": f"Bearer {token}"})

        assert post(bound).status_code == 401  # a bound mandate needs a proof the SDK cannot check
        assert post("not-a-mandate").status_code == 401
        assert post(writer).status_code == 403  # verified, but without the required scope
