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
from mandate_client.errors import VerificationError
from mandate_client.mcp import MandateMCP, current_mandate
from mandate_client.pop import HolderSecret, create_proof
from mandate_client.receipts import ReceiptReporter, arguments_sha256
from mandate_client.verify import Verifier
from service import DevService, mandate_service  # noqa: F401
from test_verifier import mint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """An ASGI app served by uvicorn on a free port, in a thread."""

    def __init__(self, app: Any, **config: Any) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, port=self.port, log_level="warning", lifespan="on", **config))
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


# -- receipts of refused calls --------------------------------------------------------------------


def _actions(mandate_service: DevService, mandate_id: str) -> list[dict[str, Any]]:
    """The attribution trail of one mandate, as the service records it."""
    answer = httpx.get(
        mandate_service.base_url + "/v1/admin/attribution", params={"mandate": mandate_id},
        headers={"authorization": f"Bearer {mandate_service.admin_token()}"}, timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def _sent(reporter: ReceiptReporter) -> tuple[int, int, int]:
    """Sends what ``reporter`` queued (from the test's own event loop); (sent, refused, dropped)."""
    asyncio.run(reporter.aclose())
    return reporter.sent, reporter.refused, reporter.dropped


def test_the_middleware_reports_refused_calls_as_denied(mandate_service: DevService) -> None:
    minted = mint(mandate_service, ["read"])
    token = minted["token"]
    reporter = ReceiptReporter(mandate_service.base_url, mandate_service.register_reporter("asgi-denied"))
    app = Starlette(routes=[Route("/tickets", _tickets, methods=["GET", "POST"])])
    guarded = MandateMiddleware(
        app, verifier=Verifier(mandate_service.base_url), tool="crm",
        access=lambda scope: Access("read" if scope["method"] == "GET" else "write"), receipts=reporter,
    )
    with Served(guarded) as served:
        assert httpx.get(served.url + "/tickets", headers={"authorization": f"Bearer {token}"}).status_code == 200
        assert httpx.post(served.url + "/tickets", headers={"authorization": f"Bearer {token}"}).status_code == 403
        # A token that does not verify gets no receipt: the service would refuse it.
        assert httpx.post(served.url + "/tickets", headers={"authorization": "Bearer not-a-mandate"}).status_code == 401
    assert _sent(reporter) == (2, 0, 0)
    outcomes = [(a["operation"], a["outcome"], a["details"].get("reason")) for a in _actions(mandate_service, minted["mandate_id"])]
    assert outcomes == [
        ("read", "success", None),
        ("write", "denied", "not authorized: a check of the mandate failed"),
    ]


def test_an_mcp_server_reports_refused_tool_calls_as_denied(mandate_service: DevService) -> None:
    minted = mint(mandate_service, ["read"])
    token = minted["token"]
    reporter = ReceiptReporter(mandate_service.base_url, mandate_service.register_reporter("mcp-denied"))
    _, guard = _mcp_app(mandate_service)
    guard.receipts = reporter
    served = Served(guard)
    guard.public_url = served.url
    headers = {"accept": "application/json, text/event-stream", "authorization": f"Bearer {token}"}

    def call(rid: int, name: str, arguments: dict[str, Any]) -> httpx.Response:
        message = {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
        return httpx.post(served.url + "/mcp", json=message, headers=headers, timeout=10)

    with served:
        assert call(1, "read", {"ticket": "T-1"}).status_code == 200
        refused = call(2, "write", {"ticket": "T-2"})
        assert refused.status_code == 403 and refused.json()["error"]["data"]["reason"] == "not_authorized"
    assert _sent(reporter) == (2, 0, 0)
    actions = _actions(mandate_service, minted["mandate_id"])
    assert [(a["operation"], a["outcome"]) for a in actions] == [("read", "success"), ("write", "denied")]
    denied = actions[1]["details"]
    assert denied["arguments_sha256"] == arguments_sha256({"ticket": "T-2"})
    assert denied["reason"] == "not authorized: a check of the mandate failed"
    assert actions[0]["details"]["arguments_sha256"] == arguments_sha256({"ticket": "T-1"})


def test_no_denied_receipt_is_queued_that_the_service_would_refuse() -> None:
    reporter = ReceiptReporter("http://127.0.0.1:9", "mnd_rep_x")
    refused = VerificationError("not authorized", code="not_authorized")
    assert reporter.report_denied("t", VerificationError("expired", code="expired"), tool="crm", operation="read") is False
    assert reporter.report_denied("t", refused, tool="crm", operation="Write Ticket") is False
    assert reporter.report_denied("t", VerificationError("bad \u202e\x07 reason"), tool="crm", operation="write") is True
    assert reporter.report_denied("t", refused, tool="crm", operation="write") is True
    queued = [reporter._queue.get_nowait() for _ in range(reporter._queue.qsize())]
    assert [(r.operation, r.outcome, r.reason) for r in queued] == [
        ("write", "denied", "bad  reason"), ("write", "denied", "not authorized")]


# -- websockets and the URL a proof is checked against --------------------------------------------


def test_the_middleware_verifies_websockets_and_closes_those_without_a_mandate(mandate_service: DevService) -> None:
    from starlette.routing import WebSocketRoute
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocket, WebSocketDisconnect

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(websocket.state.mandate.principal_subject)
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/ws", socket)])
    guarded = MandateMiddleware(app, verifier=Verifier(mandate_service.base_url), tool="crm",
                                access=lambda scope: Access("read"), public_url="http://testserver")
    reader, writer = mint(mandate_service, ["read"])["token"], mint(mandate_service, ["write"])["token"]
    with TestClient(guarded) as client:
        for headers in ({}, {"authorization": "Bearer not-a-mandate"}, {"authorization": f"Bearer {writer}"}):
            with pytest.raises(WebSocketDisconnect) as closed:
                with client.websocket_connect("/ws", headers=headers) as ws:
                    ws.receive_text()
            assert closed.value.code == 1008, headers
        with client.websocket_connect("/ws", headers={"authorization": f"Bearer {reader}"}) as ws:
            assert ws.receive_text() == "alice"


def test_a_proof_is_checked_against_the_path_the_client_sent_under_the_root_path(mandate_service: DevService) -> None:
    holder = HolderSecret.generate("EdDSA")
    token = httpx.post(
        mandate_service.base_url + "/v1/mandates",
        headers={"authorization": f"Bearer {mandate_service.orchestrator_secret}"},
        json={"subject_token": mandate_service.login("alice", ["staff"]), "task": {"description": "t"},
              "scope": [{"tool": "crm", "operations": ["read"]}], "holder_key": holder.public.to_jwk()},
    ).json()["token"]
    app = Starlette(routes=[Route("/tickets/{ticket}", _tickets, methods=["GET"])])
    guarded = MandateMiddleware(app, verifier=Verifier(mandate_service.base_url), tool="crm",
                                access=lambda scope: Access("read"), public_url=None)
    # Behind a proxy that strips `/api`: the client addresses `<public>/api/tickets/a%20b`.
    served = Served(guarded, root_path="/api")
    guarded.public_url = served.url
    with served:
        proof = create_proof(holder, "GET", served.url + "/api/tickets/a%20b", token=token)
        answer = httpx.get(served.url + "/tickets/a%20b", headers={"authorization": f"DPoP {token}", "dpop": proof})
        assert answer.status_code == 200, answer.text
        decoded = create_proof(holder, "GET", served.url + "/api/tickets/a b", token=token)
        refused = httpx.get(served.url + "/tickets/a%20b", headers={"authorization": f"DPoP {token}", "dpop": decoded})
        assert refused.status_code == 401 and refused.json()["reason"] == "invalid_dpop_proof"


def test_the_request_path_is_root_path_and_raw_path_whichever_way_the_server_gives_them() -> None:
    from mandate_client.asgi import request_path

    # Servers whose raw_path leaves out the root path, and servers without raw_path.
    assert request_path({"root_path": "/api", "path": "/api/t/a b", "raw_path": b"/t/a%20b"}) == "/api/t/a%20b"
    assert request_path({"root_path": "/api", "path": "/api/t/a b", "raw_path": b"/api/t/a%20b"}) == "/api/t/a%20b"
    assert request_path({"root_path": "/api", "path": "/t/a b"}) == "/api/t/a%20b"
    assert request_path({"root_path": "", "path": "/t", "raw_path": b"/t?x=1"}) == "/t"
