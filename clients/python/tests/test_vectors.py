"""Every call of every case of the conformance vectors, against one fresh verifier per case,
must reach the verdict, refusal code and read-out mandate's Rust verifier recorded."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import pytest

from conftest import VECTORS
from mandate_client.errors import VerificationError
from mandate_client.revocations import RevocationList
from mandate_client.verify import Verifier, VerifierSettings, VerifyOptions

with VECTORS.open() as _file:
    _CASES = json.load(_file)["cases"]


class FixedClock:
    """A clock the test sets: wall time at the call's ``now``, monotonic time never moving."""

    def __init__(self) -> None:
        self.at = 0.0

    def now(self) -> float:
        return self.at

    def monotonic(self) -> float:
        return 0.0


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _verifier(vectors: dict[str, Any], clock: FixedClock) -> Verifier:
    settings = vectors["settings"]
    limits = settings["run_limits"]
    from datetime import timedelta

    options = VerifyOptions(
        max_bytes=settings["max_token_bytes"],
        max_blocks=settings["max_blocks"],
        skew_seconds=settings["clock_skew_seconds"],
        max_facts=limits["max_facts"],
        max_iterations=limits["max_iterations"],
        max_time=timedelta(milliseconds=limits["max_time_ms"]),
    )
    return Verifier.from_documents(
        vectors["keys"],
        vectors["agent_keys"],
        revocations=RevocationList.from_page(vectors["revocations"], clock.now),
        clock=clock,
        settings=VerifierSettings(
            options=options,
            proof_max_age=settings["proof_max_age_seconds"],
            proof_max_ahead=settings["proof_max_ahead_seconds"],
        ),
    )


@pytest.mark.parametrize("case", _CASES, ids=[c["name"] for c in _CASES])
def test_every_call_reaches_the_recorded_verdict(case: dict[str, Any], vectors: dict[str, Any]) -> None:
    clock = FixedClock()
    clock.at = _seconds(case["calls"][0]["now"])
    verifier = _verifier(vectors, clock)
    for number, call in enumerate(case["calls"]):
        clock.at = _seconds(call["now"])
        expect = call["expect"]
        where = f"{case['name']} call {number}"
        try:
            verified = asyncio.run(
                verifier.verify(
                    case["token"],
                    tool=call["tool"],
                    operation=call["operation"],
                    arguments=call["arguments"],
                    resource=call["resource"],
                    proof=call["proof"] if call["scheme"] == "DPoP" else None,
                    method=call["method"],
                    url=call["url"],
                )
            )
        except VerificationError as error:
            assert expect["verdict"] == "deny", f"{where}: refused ({error.code}: {error}), expected allow"
            assert error.code == expect["error"], f"{where}: {error.code} ({error}), expected {expect['error']}"
            continue
        assert expect["verdict"] == "allow", f"{where}: allowed, expected {expect['error']}"
        assert verified.to_json() == expect["verified"], where
        assert verified.right_used is not None
        assert (verified.right_used.tool, verified.right_used.operation) == (call["tool"], call["operation"])


def test_the_vectors_cover_every_refusal_the_schema_names(vectors: dict[str, Any]) -> None:
    codes = {call["expect"]["error"] for case in vectors["cases"] for call in case["calls"]}
    assert {"not_mandate_block", "forged_binding", "argument_not_allowed", "invalid_dpop_proof",
            "revoked", "expired", "unknown_key", "bad_signature", "too_many_blocks"} <= codes
