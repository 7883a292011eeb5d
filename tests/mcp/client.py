#!/usr/bin/env python3
"""MCP client driver for the `mandate gateway` integration tests.

Uses the official MCP Python SDK client (mcp 2.x: `mcp.Client` over
`mcp.client.streamable_http.streamable_http_client`).

    python client.py --url http://127.0.0.1:PORT/mcp [--token TOKEN] SCENARIO_JSON

SCENARIO_JSON is a JSON list of steps (or `@FILE` to read it from a file):
    {"op": "list"}
    {"op": "call", "name": "issues.create", "arguments": {"repo": "a/b", "title": "t"}}

Prints exactly ONE JSON line on stdout:
    {"ok": true, "results": [...]}
      list  -> {"tools": [names]}
      call  -> {"isError": bool, "content": [texts], "structuredContent": obj|null}
      error -> {"error": "<Type>: <message>", "status": <HTTP status|null>,
                "code": <JSON-RPC code>, "message": <JSON-RPC message>}  (code/message only for MCPError)
      Execution stops at the first failing step.
    {"ok": false, "error": "...", "status": ..., ["code": ..., "message": ...]}
      when connecting/initializing fails (e.g. HTTP 401/403 from the gateway).
    "status" is the HTTP status of the last POST carrying a JSON-RPC request during that step
    (the SDK itself turns a non-2xx answer into a JSON-RPC error and does not expose the status).
    A 401/403 answer also adds "www_authenticate" (the header value, or null).

--mode legacy (default) does the initialize handshake (protocol 2025-11-25, Mcp-Session-Id);
--mode auto first probes `server/discover` (2026-07-28) and falls back to initialize;
--mode 2026-07-28 uses the stateless per-request envelope directly.

Logs go to stderr (-v logs every HTTP request, minus Authorization). Exit code is 0 whenever
the JSON line was printed normally (check "ok"), 2 for a bad scenario, 3 when the --deadline
watchdog fired (default 20 s; each step and the handshake time out after --timeout, default 5 s).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

log = logging.getLogger("mcp-test-client")

_printed = threading.Lock()
_done = False


def emit(obj: dict[str, Any]) -> None:
    """Print the single result line once (watchdog and main may race)."""
    global _done
    with _printed:
        if _done:
            return
        _done = True
        sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
        sys.stdout.flush()


class HttpTrace:
    """Records the HTTP status of every POST that carried a JSON-RPC request."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []

    async def on_response(self, response: httpx2.Response) -> None:
        req = response.request
        if req.method != "POST":
            log.debug("%s %s -> %s", req.method, req.url, response.status_code)
            return
        method = rid = None
        try:
            body = json.loads(req.content or b"null")
            if isinstance(body, dict):
                method, rid = body.get("method"), body.get("id")
        except (ValueError, httpx2.RequestNotRead):
            pass
        entry = {
            "method": method,
            "id": rid,
            "status": response.status_code,
            "www_authenticate": response.headers.get("www-authenticate"),
        }
        log.debug("POST %s -> %s", method, response.status_code)
        if rid is not None:  # requests only; notifications/responses don't matter here
            self.posts.append(entry)

    async def on_request(self, request: httpx2.Request) -> None:
        if log.isEnabledFor(logging.DEBUG):
            hdrs = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
            body = request.content.decode("utf-8", "replace") if request.content else ""
            log.debug("-> %s %s headers=%s body=%s", request.method, request.url, hdrs, body)

    def mark(self) -> int:
        return len(self.posts)

    def last_since(self, mark: int) -> dict[str, Any] | None:
        recent = self.posts[mark:]
        return recent[-1] if recent else None


def describe(exc: BaseException, trace: HttpTrace, mark: int) -> dict[str, Any]:
    # anyio task groups may wrap the real error in an ExceptionGroup
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    out: dict[str, Any] = {"error": f"{type(exc).__name__}: {exc}", "status": None}
    if isinstance(exc, MCPError):
        out["code"] = exc.code
        out["message"] = exc.message
        if exc.data is not None:
            out["data"] = exc.data
    post = trace.last_since(mark)
    if post is not None:
        out["status"] = post["status"]
        if post["status"] in (401, 403):
            out["www_authenticate"] = post["www_authenticate"]
    return out


def texts(content: list[Any]) -> list[str]:
    out = []
    for block in content:
        text = getattr(block, "text", None)
        out.append(text if text is not None else json.dumps(block.model_dump(by_alias=True, mode="json")))
    return out


async def run_step(client: Client, step: dict[str, Any]) -> dict[str, Any]:
    op = step.get("op")
    if op == "list":
        listed = await client.list_tools()
        return {"tools": [t.name for t in listed.tools]}
    if op == "call":
        res = await client.call_tool(step["name"], step.get("arguments") or {})
        return {
            "isError": bool(res.is_error),
            "content": texts(res.content),
            "structuredContent": res.structured_content,
        }
    raise ValueError(f"unknown op {op!r}")


async def run(args: argparse.Namespace, steps: list[dict[str, Any]]) -> dict[str, Any]:
    trace = HttpTrace()
    headers = {}
    if args.token is not None:
        headers["Authorization"] = f"Bearer {args.token}"
    http = httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(args.timeout),
        event_hooks={"request": [trace.on_request], "response": [trace.on_response]},
    )
    results: list[dict[str, Any]] = []
    mark = trace.mark()
    async with http:
        client = Client(
            streamable_http_client(args.url, http_client=http),
            mode=args.mode,
            read_timeout_seconds=args.timeout,
            cache=None,
        )
        connected = False
        try:
            with anyio.fail_after(args.deadline - 1):
                async with client:  # connect + initialize (or discover)
                    connected = True
                    log.info("connected: protocol %s", client.protocol_version)
                    for step in steps:
                        mark = trace.mark()
                        try:
                            with anyio.fail_after(args.timeout):
                                results.append(await run_step(client, step))
                        except Exception as exc:  # noqa: BLE001
                            results.append(describe(exc, trace, mark))
                            break
        except Exception as exc:  # noqa: BLE001
            if not connected:
                return {"ok": False, **describe(exc, trace, mark)}
            log.warning("error while closing the session: %r", exc)  # results are complete
    return {"ok": True, "results": results}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--token")
    p.add_argument("--mode", default="legacy", help="legacy (default) | auto | 2026-07-28")
    p.add_argument("--timeout", type=float, default=5.0, help="per-step timeout, seconds (default 5)")
    p.add_argument("--deadline", type=float, default=20.0, help="hard wall-clock limit, seconds (default 20)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("scenario")
    args = p.parse_args()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="client: %(levelname)s %(name)s: %(message)s",
    )

    def watchdog() -> None:
        emit({"ok": False, "error": f"Timeout: client did not finish within {args.deadline}s", "status": None})
        os._exit(3)

    timer = threading.Timer(args.deadline, watchdog)
    timer.daemon = True
    timer.start()

    try:
        raw = args.scenario
        if raw.startswith("@"):
            with open(raw[1:], encoding="utf-8") as f:
                raw = f.read()
        steps = json.loads(raw)
        if not isinstance(steps, list):
            raise ValueError("scenario must be a JSON list")
    except (OSError, ValueError) as exc:
        emit({"ok": False, "error": f"BadScenario: {exc}", "status": None})
        os._exit(2)

    try:
        out = anyio.run(run, args, steps)
    except BaseException as exc:  # noqa: BLE001
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "status": None}
    emit(out)
    sys.stderr.flush()
    os._exit(0)  # don't wait on any lingering SDK threads


if __name__ == "__main__":
    main()
