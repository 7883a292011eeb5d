"""The example end to end: ``examples/orchestrator.py`` run as a user runs it, against a real
mandate dev service, with the real MCP server ``examples/crm_server.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from service import DevService, mandate_service  # noqa: F401  (the session fixture)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(service: DevService, calls_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The installed package, as a user has it (no source tree on the path).
    env = dict(
        os.environ,
        MANDATE_URL=service.base_url,
        MANDATE_AGENT_SECRET=service.orchestrator_secret,
        MANDATE_ADMIN_TOKEN=service.admin_token(),
        MANDATE_SUBJECT_TOKEN=service.login("alice", ["staff"]),
        CRM_CALLS_FILE=str(calls_file),
    )
    done = subprocess.run([sys.executable, str(EXAMPLES / "orchestrator.py"), *args],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.fixture(scope="module")
def run(mandate_service: DevService, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    calls_file = tmp_path_factory.mktemp("crm") / "calls.jsonl"
    report: dict[str, Any] = json.loads(run_example(mandate_service, calls_file, "--json").stdout)
    report["executed"] = [json.loads(line) for line in calls_file.read_text().splitlines()]
    return report


def test_each_sub_agent_gets_only_what_it_was_handed(run: dict[str, Any]) -> None:
    outcomes = [(c["agent"].split("-")[0], c["tool"], c["arguments"].get("ticket"), c["allowed"]) for c in run["calls"]]
    assert outcomes == [
        ("researcher", "tickets.search", None, True),
        ("researcher", "tickets.update", "T-1042", False),
        ("updater", "tickets.update", "T-1042", True),
        ("updater", "tickets.update", "X-7", False),
    ]
    refusals = [c["result"] for c in run["calls"] if not c["allowed"]]
    assert "does not grant `write`" in refusals[0]
    assert "argument `ticket` must start with `T-`" in refusals[1]


def test_refused_calls_never_reach_the_tool(run: dict[str, Any]) -> None:
    executed = [(e["agent"].split("-")[0], e["tool"], e["arguments"]) for e in run["executed"]]
    assert executed == [
        ("researcher", "tickets.search", {"query": "status:open"}),
        ("updater", "tickets.update", {"ticket": "T-1042", "status": "triaged"}),
    ]
    assert all(e["principal"] == "alice" and e["attested"] for e in run["executed"])


def test_the_attribution_names_the_whole_chain_of_each_action(mandate_service: DevService, run: dict[str, Any]) -> None:
    researcher = next(c["agent"] for c in run["calls"] if c["agent"].startswith("researcher"))
    updater = next(c["agent"] for c in run["calls"] if c["agent"].startswith("updater"))
    assert run["chains"] == [
        f"alice → dev-orchestrator → {researcher} (attested) → crm read → success",
        f"alice → dev-orchestrator → {updater} (attested) → crm write → success",
    ]
    for action in run["actions"]:
        assert action["mandate_id"] == run["mandate_id"]
        assert action["principal_issuer"].startswith(mandate_service.base_url)
        assert action["reporter"].startswith("crm-mcp-")


def test_the_orchestrator_completes_its_task(run: dict[str, Any]) -> None:
    assert run["completed"]["mandate_id"] == run["mandate_id"]
    assert run["completed"]["reason"] == "task completed"


def test_the_example_prints_the_attribution_for_people(mandate_service: DevService, tmp_path: Path) -> None:
    out = run_example(mandate_service, tmp_path / "calls.jsonl").stdout
    assert "REFUSED: the mandate does not grant `write` of `crm`" in out
    lines = out.splitlines()
    chains = lines[lines.index("attribution:") + 1:]
    assert len(chains) == 2 and all(line.strip().startswith("alice → dev-orchestrator → ") for line in chains)
    assert chains[0].endswith("(attested) → crm read → success")
