"""Time per ``verify`` call for the 2-block token of vector ``narrowed``: cold (first sight of
the token: vocabulary, signatures, then the call) and cached (the same token again: revocation,
expiry and the authorizer only). Prints ``{"cold_us": …, "cached_us": …}``.

It measures the source tree, not an installed package: it puts ``src`` first on ``sys.path``
itself (the tests, unlike it, import the installed package)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "src"))

from mandate_client.revocations import RevocationList  # noqa: E402
from mandate_client.verify import Verifier  # noqa: E402

ITERATIONS = 2000
VECTORS = Path(__file__).resolve().parents[2] / "tests" / "vectors" / "mandate-v1.json"


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> float:
        return self.at

    def monotonic(self) -> float:
        return 0.0


async def main() -> None:
    vectors = json.loads(VECTORS.read_text())
    case = next(c for c in vectors["cases"] if c["name"] == "narrowed")
    call = case["calls"][0]
    clock = Clock(datetime.fromisoformat(call["now"].replace("Z", "+00:00")).timestamp())
    args = dict(tool=call["tool"], operation=call["operation"], resource=call["resource"], arguments=call["arguments"])

    def fresh() -> Verifier:
        return Verifier.from_documents(
            vectors["keys"], vectors["agent_keys"],
            revocations=RevocationList.from_page(vectors["revocations"], clock.now), clock=clock,
        )

    verifiers = [fresh() for _ in range(ITERATIONS)]
    start = time.perf_counter()
    for verifier in verifiers:
        await verifier.verify(case["token"], **args)
    cold = (time.perf_counter() - start) / ITERATIONS

    verifier = fresh()
    await verifier.verify(case["token"], **args)
    start = time.perf_counter()
    for _ in range(ITERATIONS):
        await verifier.verify(case["token"], **args)
    cached = (time.perf_counter() - start) / ITERATIONS
    print(json.dumps({"cold_us": round(cold * 1e6, 1), "cached_us": round(cached * 1e6, 1), "iterations": ITERATIONS}))


if __name__ == "__main__":
    asyncio.run(main())
