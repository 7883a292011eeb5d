"""A real mandate development service for the tests: ``mandate serve --dev`` in a fresh temp dir.

The tests drive the real binary, never a mock. :class:`DevService` starts it on a free port
(``MANDATE_LISTEN``), waits for ``GET /readyz``, and offers what the tests need around it:

- ``base_url``: ``http://127.0.0.1:PORT``;
- ``orchestrator_id`` and ``orchestrator_secret``: the seeded ``dev-orchestrator`` and its
  secret (read from ``mandate-data/dev-orchestrator.secret``);
- ``login(subject, groups)``: a human principal's JWT from the built-in identity provider
  (``mandate dev login``);
- ``admin_token(name)``: a fresh admin token (``mandate admin-token create``);
- ``run(args, stdin)``: any other ``mandate`` subcommand run in the service's directory;
- ``admin(method, path, body)``: one admin API call; ``register_sub_agent(id)`` registers a
  sub-agent with an Ed25519 key of its own (returned, to attest hops with) and
  ``register_reporter(id)`` a verifier allowed to post receipts (its secret returned).

The binary is ``$MANDATE_BIN``, else ``<repo>/target/debug/mandate``. When it is missing the
fixture fails (never skips) and says how to build it.

Use the session fixture ``mandate_service`` from a test module::

    from service import DevService, mandate_service  # noqa: F401  (pytest finds the fixture)

    def test_something(mandate_service: DevService) -> None:
        ...

The process is stopped, and its directory removed, at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Sequence

import biscuit_auth
import httpx
import pytest

#: The repository root (clients/python/tests/service.py is three levels below it).
REPO = Path(__file__).resolve().parents[3]
#: How long the service may take to become ready.
READY_TIMEOUT_SECONDS = 30.0
#: How long one CLI call may take.
CLI_TIMEOUT_SECONDS = 30.0


class ServiceError(RuntimeError):
    """The development service could not be started or a CLI call failed."""


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a ``mandate`` process the tests start: this one's, less what would
    configure it from outside the test (``MANDATE_CONFIG``) or what mandate refuses as unknown
    (``MANDATE_BIN``, which only tells the tests where the binary is), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("MANDATE_BIN", "MANDATE_CONFIG")}
    env.update(extra)
    return env


def mandate_binary() -> Path:
    """The mandate binary the tests run: ``$MANDATE_BIN`` or ``<repo>/target/debug/mandate``."""
    configured = os.environ.get("MANDATE_BIN")
    path = Path(configured) if configured else REPO / "target" / "debug" / "mandate"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ServiceError(
            f"the mandate binary is missing at {path}: build it with `cargo build` in {REPO}, "
            "or point MANDATE_BIN at one"
        )
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class DevService:
    """One running ``mandate serve --dev`` process, in a directory of its own."""

    orchestrator_id = "dev-orchestrator"

    def __init__(self) -> None:
        self.binary = mandate_binary()
        self.directory = Path(tempfile.mkdtemp(prefix="mandate-dev-"))
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._log = open(self.directory / "service.log", "wb")
        self._process: subprocess.Popen[bytes] | None = None
        self._admin: str | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> "DevService":
        """Starts the process and waits until ``/readyz`` answers 200."""
        env = child_env(MANDATE_LISTEN=f"127.0.0.1:{self.port}")
        self._process = subprocess.Popen(
            [str(self.binary), "serve", "--dev"],
            cwd=self.directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServiceError(
                    f"mandate serve --dev exited with {self._process.returncode}:\n{self.log()}"
                )
            if self._ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise ServiceError(f"mandate serve --dev was not ready in time:\n{self.log()}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/readyz", timeout=1) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Stops the process (politely, then not) and removes its directory."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._log.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def log(self) -> str:
        """The service's output so far (for failure messages)."""
        self._log.flush()
        return (self.directory / "service.log").read_text(errors="replace")[-4000:]

    # -- what tests use ----------------------------------------------------------------------

    @property
    def orchestrator_secret(self) -> str:
        """The seeded orchestrator's agent secret."""
        path = self.directory / "mandate-data" / "dev-orchestrator.secret"
        return path.read_text().strip()

    def run(self, args: Sequence[str], stdin: str | None = None) -> str:
        """Runs ``mandate ARGS`` in the service's directory; its standard output, stripped.

        A failing command raises :class:`ServiceError` with its standard error."""
        done = subprocess.run(
            [str(self.binary), *args],
            cwd=self.directory,
            env=child_env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_SECONDS,
        )
        if done.returncode != 0:
            raise ServiceError(f"mandate {args[0]} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout.strip()

    def login(self, subject: str, groups: Sequence[str] = ()) -> str:
        """A human principal's JWT, signed by the service's development identity provider."""
        args = ["dev", "login", subject]
        for group in groups:
            args += ["--group", group]
        return self.run(args)

    def login_later(self, subject: str, groups: Sequence[str] = ()) -> str:
        """:meth:`login` in the next whole second: a token issued after anything done before it,
        as a decision on an approval request needs (its ``iat`` after the request's second)."""
        time.sleep(1.01 - time.time() % 1)
        return self.login(subject, groups)

    def admin_token(self, name: str | None = None) -> str:
        """An admin token (role admin); without a name, one token shared by the session."""
        if name is None:
            if self._admin is None:
                self._admin = self.run(["admin-token", "create", "--name", "tests", "--role", "admin"])
            return self._admin
        return self.run(["admin-token", "create", "--name", name, "--role", "admin"])

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None, expect: int = 201) -> Any:
        """One admin API call with the session's admin token; its JSON answer. Any status
        other than ``expect`` raises :class:`ServiceError` with the problem document."""
        answer = httpx.request(
            method, self.base_url + path, json=body, timeout=10,
            headers={"authorization": f"Bearer {self.admin_token()}"},
        )
        if answer.status_code != expect:
            raise ServiceError(f"{method} {path} answered {answer.status_code}: {answer.text[:1000]}")
        return answer.json()

    def register_sub_agent(self, agent_id: str, owner: str = "alice@example.com") -> biscuit_auth.KeyPair:
        """Registers sub-agent ``agent_id`` with a new Ed25519 key; returns the key pair."""
        self.admin("POST", "/v1/admin/agents", {
            "id": agent_id, "display_name": agent_id, "kind": "sub_agent", "owner": owner,
        })
        key = biscuit_auth.KeyPair()
        public = "ed25519/" + bytes(key.public_key.to_bytes()).hex()
        self.admin("POST", f"/v1/admin/agents/{agent_id}/keys", {"public_key": public})
        return key

    def register_reporter(self, reporter_id: str, owner: str = "alice@example.com") -> str:
        """Registers a verifier that may post receipts; returns its credential."""
        issued = self.admin("POST", "/v1/admin/reporters", {
            "id": reporter_id, "display_name": reporter_id, "kind": "verifier", "owner": owner,
        })
        return str(issued["secret"])


def start_service() -> DevService:
    """Starts a development service; raise :class:`ServiceError` when it cannot."""
    return DevService().start()


@pytest.fixture(scope="session")
def mandate_service() -> Iterator[DevService]:
    """One development service for the whole test session, stopped at its end."""
    try:
        service = start_service()
    except ServiceError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield service
    finally:
        service.stop()
