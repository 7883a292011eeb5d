"""The package's layout: modules small enough to review, public names where they always were."""

from __future__ import annotations

import importlib.metadata
import json
import tomllib
from pathlib import Path

import mandate_client
import mandate_client.verify as verify

SOURCES = Path(__file__).resolve().parent.parent / "src" / "mandate_client"


def test_every_module_is_under_600_lines() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in SOURCES.glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 600} == {}


def test_the_verifiers_public_names_stay_importable_from_verify() -> None:
    for name in ("Checked", "Clock", "RevocationCheck", "SyncVerifier", "SystemClock", "Verified", "Verifier",
                 "VerifierSettings", "VerifyOptions", "check_token", "format_time", "arguments_from_json",
                 "Hop", "Expired", "Revoked", "UnknownKey", "NotAuthorized", "ArgumentNotAllowed",
                 "ArgumentsNotApproved", "Approval", "Approver"):
        assert hasattr(verify, name), name
    assert set(verify.__all__) <= set(dir(verify))


def test_the_tests_import_the_installed_package() -> None:
    # `pip install './clients/python[test]'` first: the source tree is not on the test path.
    pyproject = tomllib.loads((SOURCES.parent.parent / "pyproject.toml").read_text())
    assert "src" not in pyproject["tool"]["pytest"]["ini_options"]["pythonpath"]
    found = list(importlib.metadata.distributions(name="mandate-client"))
    regular = [
        Path(str(d.locate_file(f))).resolve()
        for d in found for f in d.files or [] if f.as_posix() == "mandate_client/__init__.py"
    ]
    if regular:
        assert Path(mandate_client.__file__).resolve() == regular[0], "imported from outside the installed package"
    else:  # an editable install maps the package to the source tree itself
        urls = [json.loads(d.read_text("direct_url.json") or "{}") for d in found]
        assert any(u.get("dir_info", {}).get("editable") for u in urls), (
            "mandate-client is not installed: pip install './clients/python[test]'"
        )
