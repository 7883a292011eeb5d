#!/usr/bin/env python3
"""Fake upstream MCP server for the `mandate gateway` integration tests.

Built on the official MCP Python SDK (mcp 2.x, `MCPServer`, formerly `FastMCP`).

    python upstream.py --port 18080 --calls /tmp/calls.jsonl   # Streamable HTTP at http://127.0.0.1:18080/mcp
    python upstream.py --stdio --calls /tmp/calls.jsonl        # same tools over stdio

HTTP mode is STATEFUL (the SDK default, stateless_http=False): the response to
`initialize` carries an `Mcp-Session-Id` header, every later POST/GET/DELETE
must send it back, and an unknown session id gets HTTP 404.  Pass
`--stateless` to turn sessions off.  By default the server answers POSTs with
`text/event-stream` (SSE); `--json-response` makes it answer `application/json`.

Every executed tool call appends one JSON line to the `--calls` file:
    {"tool": NAME, "arguments": {...}, "headers": {lower-case name: value}}
(`headers` is {} over stdio), so a test can prove a refused call never got here.

Nothing but protocol messages is written to stdout (the SDK logs to stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from typing import Any

from mcp.server.mcpserver import Context, MCPServer

FAKE_AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
FAKE_PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
    "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
    "NMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ\n"
    "-----END PRIVATE KEY-----\n"
)

_calls_file: str | None = None
_calls_lock = threading.Lock()


def _headers(ctx: Context | None) -> dict[str, str]:
    """HTTP request headers of the POST that carried this tools/call ({} over stdio)."""
    if ctx is None:
        return {}
    try:
        headers = ctx.headers  # Starlette Headers in Streamable HTTP mode, None over stdio
    except Exception:  # noqa: BLE001 - outside a request
        return {}
    if headers is None:
        return {}
    out: dict[str, str] = {}
    for key, value in headers.items():
        k = key.lower()
        out[k] = value if k not in out else out[k] + ", " + value
    return out


def _record(tool: str, arguments: dict[str, Any], headers: dict[str, str]) -> None:
    if not _calls_file:
        return
    line = json.dumps({"tool": tool, "arguments": arguments, "headers": headers}, sort_keys=True)
    with _calls_lock, open(_calls_file, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


server = MCPServer("mandate-test-upstream", version="1.0.0", log_level="WARNING")


@server.tool(name="issues.create", description="Create an issue in a repository.")
def issues_create(repo: str, title: str, ctx: Context, labels: list[str] | None = None) -> str:
    args: dict[str, Any] = {"repo": repo, "title": title}
    if labels is not None:
        args["labels"] = labels
    _record("issues.create", args, _headers(ctx))
    return f"created {repo}#1"


@server.tool(name="issues.read", description="Read the issues of a repository.")
def issues_read(repo: str, ctx: Context) -> str:
    _record("issues.read", {"repo": repo}, _headers(ctx))
    return f"{repo}#1: first issue (open)"


@server.tool(name="secrets.leak", description="Returns text that contains credentials (for redaction tests).")
def secrets_leak(ctx: Context) -> str:
    _record("secrets.leak", {}, _headers(ctx))
    return f"aws_access_key_id = {FAKE_AWS_KEY_ID}\nhere is a key:\n{FAKE_PEM}"


@server.tool(name="whoami", description="Echo the HTTP request headers this server received.")
def whoami(ctx: Context) -> str:
    headers = _headers(ctx)
    _record("whoami", {}, headers)
    if not headers:  # stdio mode
        return "{}"
    return json.dumps(
        {
            "authorization_present": "authorization" in headers,
            "authorization": headers.get("authorization"),
            "mandate_assertion": headers.get("mandate-assertion"),
            "mcp_session_id": headers.get("mcp-session-id"),
            "mcp_protocol_version": headers.get("mcp-protocol-version"),
            "headers": headers,
        },
        sort_keys=True,
    )


def main() -> None:
    global _calls_file
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--port", type=int, help="serve Streamable HTTP on 127.0.0.1:PORT at /mcp")
    mode.add_argument("--stdio", action="store_true", help="serve over stdin/stdout")
    p.add_argument("--calls", help="append one JSON line per executed tool call to this file")
    p.add_argument("--stateless", action="store_true", help="HTTP: no Mcp-Session-Id (default: stateful)")
    p.add_argument("--json-response", action="store_true", help="HTTP: answer application/json instead of SSE")
    a = p.parse_args()
    _calls_file = a.calls
    if _calls_file:
        open(_calls_file, "a", encoding="utf-8").close()

    if a.stdio:
        server.run("stdio")
        return

    print(f"upstream: listening on http://127.0.0.1:{a.port}/mcp", file=sys.stderr, flush=True)
    server.run(
        "streamable-http",
        host="127.0.0.1",
        port=a.port,
        streamable_http_path="/mcp",
        stateless_http=a.stateless,
        json_response=a.json_response,
    )


if __name__ == "__main__":
    main()
