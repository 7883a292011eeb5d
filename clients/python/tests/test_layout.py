"""The package's layout: modules small enough to review, public names where they always were."""

from __future__ import annotations

from pathlib import Path

import mandate_client.verify as verify

SOURCES = Path(__file__).resolve().parent.parent / "src" / "mandate_client"


def test_every_module_is_under_600_lines() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in SOURCES.glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 600} == {}


def test_the_verifiers_public_names_stay_importable_from_verify() -> None:
    for name in ("Checked", "Clock", "RevocationCheck", "SyncVerifier", "SystemClock", "Verified", "Verifier",
                 "VerifierSettings", "VerifyOptions", "check_token", "format_time", "arguments_from_json",
                 "Hop", "Expired", "Revoked", "UnknownKey", "NotAuthorized", "ArgumentNotAllowed"):
        assert hasattr(verify, name), name
    assert set(verify.__all__) <= set(dir(verify))
