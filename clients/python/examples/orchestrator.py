#!/usr/bin/env python3
"""A scripted orchestrator handing narrowed, bound, attested mandates to two sub-agents.

No model is called: the plan is fixed, so every step of a mandate's life shows plainly.

1. Setup (an IAM team's job, done here so the example runs alone): register the two
   sub-agents, each with its Ed25519 key (``POST /v1/admin/agents``, ``…/keys``), and the CRM
   server as a reporter of receipts (``POST /v1/admin/reporters``); start ``crm_server.py``.
2. At task start the orchestrator mints a mandate for the principal, bound to its own key.
3. For each sub-agent it narrows the mandate to what that sub-agent needs, names it as
   delegate, and rebinds it to the sub-agent's key; the sub-agent attests its hop on receipt.
4. Each sub-agent calls the CRM MCP server with the SDK's client, sending
   ``Authorization: DPoP <mandate>`` and a fresh proof with every request. The researcher
   also asks for an operation it was not given: the server refuses it and never runs it.
5. The orchestrator completes the task, then reads back the attribution and prints each
   action: principal → orchestrator → sub-agent (attested) → tool call and outcome.

Run it against ``mandate serve --dev`` (from the directory the service runs in)::

    MANDATE_URL=http://127.0.0.1:8080 \\
    MANDATE_AGENT_SECRET=$(cat mandate-data/dev-orchestrator.secret) \\
    MANDATE_ADMIN_TOKEN=$(mandate admin-token create --name example --role admin) \\
    MANDATE_SUBJECT_TOKEN=$(mandate dev login alice --group staff) \\
    python3 examples/orchestrator.py [--json]

Secrets come from the environment only, never from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generator, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

import biscuit_auth
import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mandate_client.client import Action, MandateClient, Revocation, raise_for_problem
from mandate_client.holder import attenuate, attest, rebind
from mandate_client.pop import HolderSecret, create_proof

HERE = Path(__file__).resolve().parent
ORCHESTRATOR = "dev-orchestrator"
TASK = "Triage ticket T-1042: read the open tickets, then mark T-1042 triaged"


# -- sub-agents -------------------------------------------------------------------------------


class DPoPAuth(httpx2.Auth):
    """Presents a bound mandate on every request: ``Authorization: DPoP`` and a fresh proof
    for exactly that method and URL (query and fragment left out, as RFC 9449 has it)."""

    def __init__(self, token: str, key: HolderSecret) -> None:
        self._token = token
        self._key = key

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        parts = urlsplit(str(request.url))
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        request.headers["authorization"] = f"DPoP {self._token}"
        request.headers["dpop"] = create_proof(self._key, request.method, url, token=self._token)
        yield request


@dataclass
class Call:
    """One tool call a sub-agent made, and what became of it."""

    agent: str
    tool: str
    arguments: dict[str, Any]
    allowed: bool
    result: str


@dataclass
class SubAgent:
    """A registered sub-agent: its id, its Ed25519 key (registered with mandate, so it attests
    its hops with it; its mandate is bound to it too) and the mandate it was handed."""

    agent_id: str
    key: HolderSecret = field(default_factory=lambda: HolderSecret.generate("EdDSA"))
    mandate: str | None = field(default=None, repr=False)

    def receive(self, token: str, root_keys: Mapping[int, biscuit_auth.PublicKey]) -> None:
        """Takes the mandate handed on, attesting the hop with its own key."""
        self.mandate = attest(token, self.agent_id, self.key.biscuit_private_key(), root_keys=root_keys)

    async def call(self, crm_url: str, tool: str, arguments: dict[str, Any]) -> Call:
        """Calls one tool of the CRM MCP server with its mandate and fresh proofs."""
        if self.mandate is None:
            raise RuntimeError(f"{self.agent_id} holds no mandate")
        async with httpx2.AsyncClient(auth=DPoPAuth(self.mandate, self.key), timeout=10) as http:
            try:
                async with Client(streamable_http_client(crm_url, http_client=http), mode="legacy") as client:
                    result = await client.call_tool(tool, arguments)
            except (MCPError, BaseExceptionGroup) as failure:
                # The SDK's task groups wrap the server's JSON-RPC error.
                refused = _mcp_error(failure)
                if refused is None:
                    raise
                return Call(self.agent_id, tool, arguments, False, refused.error.message)
        text = " ".join(getattr(part, "text", "") for part in result.content)
        return Call(self.agent_id, tool, arguments, not result.is_error, text)


def _mcp_error(failure: BaseException) -> MCPError | None:
    """The JSON-RPC error inside ``failure`` (itself, or nested in exception groups)."""
    if isinstance(failure, MCPError):
        return failure
    if isinstance(failure, BaseExceptionGroup):
        for inner in failure.exceptions:
            found = _mcp_error(inner)
            if found is not None:
                return found
    return None


# -- setup ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def admin(http: httpx.AsyncClient, token: str, path: str, body: dict[str, Any]) -> Any:
    """One admin API call; a refusal raises the client's typed error."""
    answer = await http.post(path, json=body, headers={"authorization": f"Bearer {token}"})
    raise_for_problem(answer, [token])
    return answer.json()


def registered_key(key: HolderSecret) -> str:
    """An Ed25519 holder key as mandate registers agent keys: ``ed25519/<64 hex digits>``."""
    x = key.public.to_jwk()["x"]
    return "ed25519/" + base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)).hex()


async def register(base_url: str, admin_token: str, agents: Sequence[SubAgent], reporter: str) -> str:
    """Registers the sub-agents with their keys and the CRM server as a reporter; returns the
    reporter's credential."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        for agent in agents:
            await admin(http, admin_token, "/v1/admin/agents", {
                "id": agent.agent_id, "display_name": agent.agent_id, "kind": "sub_agent",
                "owner": "alice@example.com",
            })
            await admin(http, admin_token, f"/v1/admin/agents/{agent.agent_id}/keys",
                        {"public_key": registered_key(agent.key)})
        issued = await admin(http, admin_token, "/v1/admin/reporters", {
            "id": reporter, "display_name": "CRM MCP server", "kind": "verifier", "owner": "alice@example.com",
        })
        return str(issued["secret"])


def start_crm_server(
    base_url: str, reporter: str, reporter_secret: str, calls: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """Starts ``crm_server.py`` on a free port; the reporter secret goes in its environment."""
    port = free_port()
    env = dict(os.environ, CRM_REPORTER_SECRET=reporter_secret)
    process = subprocess.Popen(
        [sys.executable, str(HERE / "crm_server.py"), "--port", str(port), "--mandate", base_url,
         "--reporter", reporter, "--calls", str(calls)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"crm_server.py exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("crm_server.py did not start listening in time")


# -- the plan ---------------------------------------------------------------------------------


@dataclass
class Report:
    """What the run did: the mandate, every call, and the attribution read back."""

    mandate_id: str
    calls: list[Call]
    completed: Revocation
    actions: list[Action]

    @property
    def chains(self) -> list[str]:
        """Each reported action as one line: principal → … → outcome."""
        return [chain(action) for action in self.actions]


def hand_on(
    token: str,
    own_key: HolderSecret,
    agent: SubAgent,
    rights: dict[str, list[str]],
    keys: Mapping[int, biscuit_auth.PublicKey],
    constraints: dict[str, Any] | None = None,
) -> None:
    """Narrows the orchestrator's mandate for ``agent`` (naming it as delegate), moves the
    binding to the agent's key, and hands it over (the agent attests its hop)."""
    narrowed = attenuate(token, rights=rights, delegate=agent.agent_id, constraints=constraints, root_keys=keys)
    agent.receive(rebind(narrowed, own_key, agent.key.thumbprint, root_keys=keys), keys)


async def run(base_url: str, agent_secret: str, admin_token: str, subject_token: str, calls_file: Path) -> Report:
    suffix = uuid.uuid4().hex[:6]
    researcher, updater = SubAgent(f"researcher-{suffix}"), SubAgent(f"updater-{suffix}")
    reporter = f"crm-mcp-{suffix}"
    reporter_secret = await register(base_url, admin_token, [researcher, updater], reporter)
    server, crm_url = start_crm_server(base_url, reporter, reporter_secret, calls_file)
    try:
        async with MandateClient(base_url, agent_secret, agent_id=ORCHESTRATOR, admin_token=admin_token) as mandate:
            # 2. At task start: one mandate for the whole task, bound to the orchestrator's key.
            own_key = HolderSecret.generate("EdDSA")
            minted = await mandate.mint(subject_token, TASK, {"crm": ["read", "write"]}, ttl=300, holder_key=own_key)
            keys = await mandate.root_keys()

            # 3. Hand each sub-agent only what it needs, named, bound to its key.
            hand_on(minted.token, own_key, researcher, {"crm": ["read"]}, keys)
            hand_on(minted.token, own_key, updater, {"crm": ["write"]}, keys,
                    constraints={"crm": {"write": {"ticket": {"prefix": "T-"}}}})

            # 4. The sub-agents work. The researcher's update is outside its mandate, and so is
            #    the updater's update of a ticket its constraint does not cover.
            calls = [
                await researcher.call(crm_url, "tickets.search", {"query": "status:open"}),
                await researcher.call(crm_url, "tickets.update", {"ticket": "T-1042", "status": "closed"}),
                await updater.call(crm_url, "tickets.update", {"ticket": "T-1042", "status": "triaged"}),
                await updater.call(crm_url, "tickets.update", {"ticket": "X-7", "status": "closed"}),
            ]
            await wait_for_receipts(mandate, minted.mandate_id, expected=sum(c.allowed for c in calls))

            # 5. Done: end the mandate, then read back who did what for whom.
            completed = await mandate.complete(minted.mandate_id)
            actions = await mandate.attribution(mandate=minted.mandate_id)
            return Report(minted.mandate_id, calls, completed, actions)
    finally:
        server.terminate()
        server.wait(timeout=10)


async def wait_for_receipts(mandate: MandateClient, mandate_id: str, expected: int) -> None:
    """Receipts are posted by the server as calls end; wait until all have arrived."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if len(await mandate.attribution(mandate=mandate_id)) >= expected:
            return
        await asyncio.sleep(0.2)


def chain(action: Action) -> str:
    """``alice → dev-orchestrator → researcher (attested) → crm read → success``."""
    hops = [f"{h.agent} ({'attested' if h.attested else 'claimed'})" for h in action.hops]
    links = [action.principal_subject, action.orchestrator, *hops, f"{action.tool} {action.operation}", action.outcome]
    return " → ".join(links)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = parser.parse_args()
    env = {name: os.environ.get(name, "") for name in
           ("MANDATE_URL", "MANDATE_AGENT_SECRET", "MANDATE_ADMIN_TOKEN", "MANDATE_SUBJECT_TOKEN")}
    missing = [name for name, value in env.items() if not value]
    if missing:
        parser.error(f"set {', '.join(missing)} in the environment")
    with tempfile.TemporaryDirectory() as scratch:
        calls_file = Path(os.environ.get("CRM_CALLS_FILE") or Path(scratch) / "calls.jsonl")
        report = asyncio.run(run(env["MANDATE_URL"], env["MANDATE_AGENT_SECRET"], env["MANDATE_ADMIN_TOKEN"],
                                 env["MANDATE_SUBJECT_TOKEN"], calls_file))
    if args.json:
        print(json.dumps({**asdict(report), "chains": report.chains}, default=str))
        return
    print(f"mandate {report.mandate_id} ({report.completed.reason} at {report.completed.revoked_at:%H:%M:%S})")
    for call in report.calls:
        print(f"  {call.agent}: {call.tool} {json.dumps(call.arguments)} -> "
              f"{'done' if call.allowed else 'REFUSED'}: {call.result}")
    print("attribution:")
    for line in report.chains:
        print(f"  {line}")


if __name__ == "__main__":
    main()
