#!/usr/bin/env python3
"""A small CRM as an MCP server, protected by mandates (``mandate_client.mcp``).

It offers two tools of mandate's ``crm`` tool: ``tickets.search`` (operation ``read``) and
``tickets.update`` (operation ``write``). :class:`~mandate_client.mcp.MandateMCP` verifies
every request offline with mandate's published keys: the mandate, the caller's DPoP proof,
and for each ``tools/call`` the operation and its arguments against the mandate's
constraints. A refused call never reaches a tool function. Each executed call is appended to
``--calls`` (one JSON line) and reported to mandate as a receipt, so attribution shows it.

    CRM_REPORTER_SECRET=mnd_rep_… python3 crm_server.py --port 8090 \\
        --mandate http://127.0.0.1:8080 --reporter crm-mcp --calls calls.jsonl

The reporter's credential comes from the environment, never from the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer

from mandate_client.mcp import MandateMCP, current_mandate
from mandate_client.receipts import ReceiptReporter
from mandate_client.verify import Verifier

TOOL = "crm"
#: Each MCP tool and the operation of mandate's ``crm`` tool it performs.
OPERATIONS = {"tickets.search": "read", "tickets.update": "write"}

TICKETS = {
    "T-1042": {"title": "Invoice shows the wrong VAT rate", "status": "open"},
    "T-1043": {"title": "Cannot reset password", "status": "open"},
}


class Crm:
    """The tools' shared state: the calls log and the receipt reporter."""

    def __init__(self, calls: Path, reporter: ReceiptReporter) -> None:
        self.calls = calls
        self.reporter = reporter
        self._lock = threading.Lock()

    def executed(self, ctx: Context, name: str, arguments: dict[str, Any]) -> None:
        """Records an executed call and reports it; refuses to run one nobody verified.
        Called on the event loop (the tools are async), where the reporter runs."""
        verified = current_mandate()
        token = _presented_token(ctx)
        if verified is None or token is None:
            raise PermissionError("no verified mandate for this call")
        hop = verified.hops[-1] if verified.hops else None
        line = {"tool": name, "arguments": arguments, "principal": verified.principal_subject,
                "agent": hop.agent if hop else verified.agent_id, "attested": bool(hop and hop.attested)}
        with self._lock, self.calls.open("a", encoding="utf-8") as log:
            log.write(json.dumps(line, sort_keys=True) + "\n")
        self.reporter.start()
        self.reporter.report(token, tool=TOOL, operation=OPERATIONS[name], outcome="success", arguments=arguments)


def _presented_token(ctx: Context) -> str | None:
    """The mandate of the request (already verified by :class:`MandateMCP`)."""
    headers = ctx.headers or {}
    scheme, _, token = str(headers.get("authorization", "")).partition(" ")
    return token.strip() or None if scheme.lower() in ("dpop", "bearer") else None


def build(crm: Crm) -> MCPServer:
    """The MCP server and its tools."""
    server = MCPServer("crm", version="1.0.0", log_level="WARNING")

    @server.tool(name="tickets.search", description="List tickets whose status matches `query` (status:open).")
    async def search(query: str, ctx: Context) -> str:
        crm.executed(ctx, "tickets.search", {"query": query})
        wanted = query.removeprefix("status:")
        found = {tid: t for tid, t in TICKETS.items() if t["status"] == wanted}
        return json.dumps(found, sort_keys=True)

    @server.tool(name="tickets.update", description="Set the status of a ticket.")
    async def update(ticket: str, status: str, ctx: Context) -> str:
        crm.executed(ctx, "tickets.update", {"ticket": ticket, "status": status})
        if ticket not in TICKETS:
            return f"no ticket {ticket}"
        TICKETS[ticket]["status"] = status
        return f"{ticket} is now {status}"

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mandate", required=True, help="mandate's base URL (its published keys)")
    parser.add_argument("--reporter", required=True, help="this server's reporter id at mandate")
    parser.add_argument("--calls", type=Path, required=True, help="append each executed call here")
    args = parser.parse_args()
    secret = os.environ.get("CRM_REPORTER_SECRET")
    if not secret:
        parser.error("set CRM_REPORTER_SECRET to the reporter's credential")
    args.calls.touch()

    crm = Crm(args.calls, ReceiptReporter(args.mandate, secret, flush_interval=0.2))
    server = build(crm)
    # Stateless: each request runs its own handler, so the verified call reaches the tool.
    app = server.streamable_http_app(stateless_http=True, json_response=True)
    protected = MandateMCP(app, verifier=Verifier(args.mandate), tool=TOOL,
                           public_url=f"http://127.0.0.1:{args.port}",
                           operation=lambda name: OPERATIONS.get(name, name))
    uvicorn.run(protected, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
