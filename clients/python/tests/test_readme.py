"""The README's commands and code, run: each fenced ``python`` block against the real dev
service, and the ``sh`` block checked to be the commands ``.ci/run`` runs.

The preamble each block runs after (documented in the README) binds what a tool server has at
hand: ``mandate_url``, ``token`` (a mandate for ``crm`` read and write, bound to ``holder``),
``dpop_header`` (the holder's proof for ``POST https://crm.example.com/v1/tickets``),
``verifier`` and ``app`` (a Starlette app whose handler answers the mandate's principal). The
approvals block gets an orchestrator's names instead: ``agent_secret``, ``subject_token``
(alice, group staff) and ``sign_in(subject)`` (a fresh token of the dev identity provider,
issued in the next whole second).
Blocks may ``await`` at top level, as code inside a coroutine does.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import re
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mandate_client.pop import HolderSecret, create_proof
from mandate_client.verify import Verifier
from service import DevService, mandate_service  # noqa: F401
from test_glue import Served

HERE = Path(__file__).resolve().parent.parent
README = (HERE / "README.md").read_text()
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.M | re.S)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README) if lang == language]


def run(source: str, names: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Runs one block with ``names`` bound (top-level ``await`` allowed); its namespace and
    what it printed."""
    code = compile(source, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace = dict(names)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = eval(code, namespace)
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    return namespace, printed.getvalue()


def preamble(service: DevService, operations: list[str], holder: HolderSecret | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subject_token": service.login("alice", ["staff"]), "task": {"description": "the README"},
        "scope": [{"tool": "crm", "operations": operations}],
    }
    if holder is not None:
        body["holder_key"] = holder.public.to_jwk()
    minted = httpx.post(service.base_url + "/v1/mandates", json=body, timeout=10,
                        headers={"authorization": f"Bearer {service.orchestrator_secret}"})
    assert minted.status_code == 201, minted.text
    token = minted.json()["token"]

    def tickets(request: Request) -> JSONResponse:
        return JSONResponse({"principal": request.state.mandate.principal_subject})

    names: dict[str, Any] = {
        "mandate_url": service.base_url,
        "token": token,
        "verifier": Verifier(service.base_url),
        "app": Starlette(routes=[Route("/tickets", tickets, methods=["GET", "POST"])]),
    }
    if holder is not None:
        names["dpop_header"] = create_proof(holder, "POST", "https://crm.example.com/v1/tickets", token=token)
    return names


def test_the_readme_has_the_blocks_this_test_runs() -> None:
    assert len(blocks("python")) == 5 and len(blocks("sh")) == 1


def test_the_install_and_test_commands_are_the_ones_ci_runs() -> None:
    (commands,) = blocks("sh")
    assert commands.splitlines() == [
        "python3 -m venv .venv && . .venv/bin/activate",
        "python3 -m pip install './clients/python[test]'",
        "cd clients/python && python -m pytest -q && python -m mypy src",
    ]
    ci = (HERE.parent.parent / ".ci" / "run").read_text()
    assert "python3 -m venv --clear" in ci
    assert "-m pip install --quiet --disable-pip-version-check './clients/python[test]'" in ci
    python = "../../target/clients/python/bin/python"
    assert f"(cd clients/python && {python} -m pytest -q && {python} -m mypy src)" in ci


def test_verifying_in_a_tool_server(mandate_service: DevService) -> None:
    holder = HolderSecret.generate("EdDSA")
    namespace, printed = run(blocks("python")[0], preamble(mandate_service, ["read", "write"], holder))
    verified = namespace["verified"]
    assert verified.principal_subject == "alice" and verified.holder_key == holder.thumbprint
    assert (verified.right_used.tool, verified.right_used.operation) == ("crm", "write")
    assert printed.startswith("alice ")


def test_the_asgi_middleware(mandate_service: DevService) -> None:
    names = preamble(mandate_service, ["read"])
    namespace, _ = run(blocks("python")[1], names)
    with Served(namespace["app"]) as served:
        bearer = {"authorization": f"Bearer {names['token']}"}
        granted = httpx.get(served.url + "/tickets", headers=bearer, timeout=10)
        assert granted.status_code == 200 and granted.json() == {"principal": "alice"}
        refused = httpx.post(served.url + "/tickets", headers=bearer, timeout=10)
        assert refused.status_code == 403 and refused.json()["reason"] == "not_authorized"


def test_the_mcp_server(mandate_service: DevService) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    names = preamble(mandate_service, ["read"])
    namespace, _ = run(blocks("python")[2], names)
    with Served(namespace["app"]) as served:
        async def scenario() -> None:
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {names['token']}"}, timeout=20)
            async with http:
                async with Client(streamable_http_client(served.url + "/mcp", http_client=http)) as client:
                    listed = await client.list_tools()
                    assert [t.name for t in listed.tools] == ["read"]
                    result = await client.call_tool("read", {"ticket": "T-1"})
                    assert not result.is_error and result.content[0].text == "ticket T-1 for alice"

        asyncio.run(scenario())


def test_the_mcp_server_with_the_sdks_own_auth(mandate_service: DevService) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    names = preamble(mandate_service, ["read"])
    namespace, _ = run(blocks("python")[3], names)
    with Served(namespace["app"]) as served:
        async def scenario() -> None:
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {names['token']}"}, timeout=20)
            async with http:
                async with Client(streamable_http_client(served.url + "/mcp", http_client=http)) as client:
                    result = await client.call_tool("read", {"ticket": "T-1"})
                    assert not result.is_error and result.content[0].text == "ticket T-1"

        asyncio.run(scenario())
        assert httpx.post(served.url + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                          headers={"accept": "application/json, text/event-stream"}, timeout=10).status_code == 401


def test_human_approvals(mandate_service: DevService) -> None:
    names = {
        "mandate_url": mandate_service.base_url,
        "agent_secret": mandate_service.orchestrator_secret,
        "subject_token": mandate_service.login("alice", ["staff"]),
        "sign_in": mandate_service.login_later,
        "verifier": Verifier(mandate_service.base_url),
    }
    namespace, printed = run(blocks("python")[4], names)
    mandate = namespace["mandate"]
    assert [a.subject for a in mandate.approvals[0].approvers] == ["bob"]
    assert namespace["verified"].approvals == mandate.approvals
    assert printed.startswith('dev-orchestrator asks to crm delete {"id":"cust-42"} for alice')
    assert "Approver(subject='bob'" in printed
