"""The ASGI middleware and the MCP glue, served over real HTTP (uvicorn) with mandates minted by
a real mandate service."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any, Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mandate_client.asgi import Access, MandateMiddleware
from mandate_client.mcp import MandateMCP, current_mandate
from mandate_client.pop import HolderSecret, create_proof
from mandate_client.verify import Verifier
from service import DevService, mandate_service  # noqa: F401
from test_verifier import mint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """An ASGI app served by uvicorn on a free port, in a thread."""

    def __init__(self, app: Any) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, port=self.port, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _tickets(request: Request) -> JSONResponse:
    verified = request.state.mandate
    return JSONResponse({"principal": verified.principal_subject, "operation": verified.right_used.operation})


@pytest.fixture
def crm(mandate_service: DevService) -> Iterator[Served]:
    app = Starlette(routes=[Route("/tickets", _tickets, methods=["GET", "POST"])])
    verifier = Verifier(mandate_service.base_url)
    guarded = MandateMiddleware(
        app, verifier=verifier, tool="crm",
        access=lambda scope: Access("read" if scope["method"] == "GET" else "write"),
        public_url=None,
    )
    served = Served(guarded)
    guarded.public_url = served.url
    with served:
        yield served


def test_the_middleware_lets_granted_calls_through_and_refuses_the_rest(crm: Served, mandate_service: DevService) -> None:
    token = mint(mandate_service, ["read"])["token"]
    ok = httpx.get(crm.url + "/tickets", headers={"authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and ok.json() == {"principal": "alice", "operation": "read"}
    denied = httpx.post(crm.url + "/tickets", headers={"authorization": f"Bearer {token}"})
    assert denied.status_code == 403
    assert denied.headers["content-type"] == "application/problem+json"
    assert denied.json()["reason"] == "not_authorized"
    missing = httpx.get(crm.url + "/tickets")
    assert missing.status_code == 401 and missing.json()["reason"] == "missing_mandate"
    assert missing.headers["www-authenticate"] == 'Bearer realm="mandate", DPoP algs="EdDSA ES256"'


def test_a_bound_mandate_needs_its_holders_proof(crm: Served, mandate_service: DevService) -> None:
    holder = HolderSecret.generate("ES256")
    minted = httpx.post(
        mandate_service.base_url + "/v1/mandates",
        headers={"authorization": f"Bearer {mandate_service.orchestrator_secret}"},
        json={"subject_token": mandate_service.login("alice", ["staff"]), "task": {"description": "t"},
              "scope": [{"tool": "crm", "operations": ["read"]}], "holder_key": holder.public.to_jwk()},
    ).json()
    token = minted["token"]
    as_bearer = httpx.get(crm.url + "/tickets", headers={"authorization": f"Bearer {token}"})
    assert as_bearer.status_code == 401
    assert as_bearer.headers["www-authenticate"] == 'DPoP error="invalid_dpop_proof", algs="EdDSA ES256"'
    proof = create_proof(holder, "GET", crm.url + "/tickets", token=token)
    headers = {"authorization": f"DPoP {token}", "dpop": proof}
    assert httpx.get(crm.url + "/tickets", headers=headers).status_code == 200
    replayed = httpx.get(crm.url + "/tickets", headers=headers)
    assert replayed.status_code == 401 and replayed.json()["reason"] == "invalid_dpop_proof"


def _mcp_app(mandate_service: DevService) -> tuple[Any, MandateMCP]:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("crm")

    @server.tool()
    def read(ticket: str) -> str:
        """Reads a ticket, for the principal the mandate names."""
        verified = current_mandate()
        return f"ticket {ticket} for {verified.principal_subject if verified else 'nobody'}"

    @server.tool()
    def write(ticket: str) -> str:
        """Writes a ticket."""
        return f"wrote {ticket}"

    inner = server.streamable_http_app(stateless_http=True, json_response=True)
    guard = MandateMCP(inner, verifier=Verifier(mandate_service.base_url), tool="crm", public_url="http://placeholder")
    return inner, guard


def test_an_mcp_server_enforces_the_mandate_per_tool_call(mandate_service: DevService) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError

    token = mint(mandate_service, ["read"])["token"]
    inner, guard = _mcp_app(mandate_service)
    served = Served(guard)
    guard.public_url = served.url
    with served:
        async def scenario() -> None:
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=20)
            async with http:
                async with Client(streamable_http_client(served.url + "/mcp", http_client=http)) as client:
                    listed = await client.list_tools()
                    assert [t.name for t in listed.tools] == ["read"]
                    result = await client.call_tool("read", {"ticket": "T-1"})
                    assert not result.is_error
                    assert result.content[0].text == "ticket T-1 for alice"
                    with pytest.raises(MCPError) as refused:
                        await client.call_tool("write", {"ticket": "T-1"})
                    assert refused.value.data["reason"] == "not_authorized"

        asyncio.run(scenario())
        raw = httpx.post(served.url + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                         headers={"accept": "application/json, text/event-stream"})
        assert raw.status_code == 401
        assert raw.headers.get_list("www-authenticate") == [
            f'Bearer resource_metadata="{served.url}/.well-known/oauth-protected-resource/mcp"',
            'DPoP algs="EdDSA ES256"',
        ]
        assert raw.json()["error"]["code"] == -32600
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "write", "arguments": {}}}
        forbidden = httpx.post(served.url + "/mcp", json=call, headers={
            "accept": "application/json, text/event-stream", "authorization": f"Bearer {token}"})
        assert forbidden.status_code == 403
        assert forbidden.headers["www-authenticate"].startswith('Bearer error="insufficient_scope", scope="crm:write"')
        assert forbidden.json()["error"]["data"]["reason"] == "not_authorized"
        batch = httpx.post(served.url + "/mcp", json=[call], headers={
            "accept": "application/json, text/event-stream", "authorization": f"Bearer {token}"})
        assert batch.status_code == 400
