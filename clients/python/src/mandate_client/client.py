"""The orchestrator's side of mandate's HTTP API: mint, exchange, complete, revoke, introspect,
and wait for human approvals.

:class:`MandateClient` is async (``httpx.AsyncClient``); :class:`SyncMandateClient` offers the
same methods for code without an event loop. An orchestrator authenticates with its agent
secret; attribution is read with an admin token.

A mint that needs human approval mints nothing yet and raises :class:`ApprovalPending` (no
refusal) with the :class:`ApprovalRequest`; :meth:`MandateClient.wait_for_approval` waits for
the decision and :meth:`MandateClient.collect` then takes the mandate. Approvers decide with
:class:`~mandate_client.approvals.ApproverClient`, also importable from here.

Every refusal of the service becomes a typed exception (all subclasses of
:class:`~mandate_client.errors.ProblemError`, defined in :mod:`mandate_client.problems`): the
RFC 9457 problem document of the JSON API, or the RFC 6749 error of ``/oauth2/token``
(:class:`OAuthError`). Any secret, token or proof the request carried is scrubbed from what an
error says. Answers are the frozen values of :mod:`mandate_client.results`. Every name of both
modules is importable from here.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Mapping, Sequence, TypedDict, TypeVar, Union
from urllib.parse import quote_plus

import biscuit_auth
import httpx

from . import _api, approvals
from .approvals import ApproverClient, SyncApproverClient
from .holder import InvalidInput, public_jwk, thumbprint_of
from .pop import HolderKey, HolderSecret, create_proof
from .problems import (
    ApprovalDenied,
    ApprovalExpired,
    ApprovalPending,
    BadRequest,
    Conflict,
    Denied,
    Forbidden,
    Invalid,
    NotFound,
    OAuthError,
    RateLimited,
    ServerError,
    Unauthorized,
    Unavailable,
    UnexpectedResponse,
    raise_for_problem,
)
from .results import (
    Action,
    ApprovalRequest,
    ApprovalState,
    BranchRevocation,
    Decision,
    Denial,
    FieldError,
    GatedRight,
    Hop,
    Introspection,
    Mandate,
    Revocation,
    Right,
)

__all__ = [
    "MandateClient", "SyncMandateClient", "Mandate", "Right", "Hop", "Denial", "FieldError",
    "Revocation", "BranchRevocation", "Introspection", "Action", "Scope", "Grant",
    "ApprovalRequest", "ApprovalState", "GatedRight", "Decision", "ApproverClient", "SyncApproverClient",
    "BadRequest", "Unauthorized", "Forbidden", "Denied", "NotFound", "Conflict", "Invalid",
    "RateLimited", "Unavailable", "ServerError", "OAuthError", "UnexpectedResponse",
    "ApprovalPending", "ApprovalDenied", "ApprovalExpired", "raise_for_problem",
]

#: Largest token sent or accepted (the service's own bound).
MAX_TOKEN_BYTES = 16 * 1024
#: RFC 8693 grant type, and the token types mandate speaks.
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
AGENT_SECRET_TOKEN_TYPE = "urn:mandate:params:oauth:token-type:agent-secret"



class _GrantRequired(TypedDict):
    tool: str
    operations: Sequence[str]


class Grant(_GrantRequired, total=False):
    """One grant of a mint request, as the API has it. ``constraints`` narrows the operations'
    arguments (``{"ticket": {"prefix": "T-"}}``); ``arguments`` names the exact arguments of the
    one call an approval bound to arguments is asked for (``{"id": "cust-42"}``): required for
    such an operation, refused (422) for any other."""

    constraints: Mapping[str, Any]
    arguments: Mapping[str, Any]


#: What to ask for: ``{"crm": ["read"]}``, or :class:`Grant` values
#: (``[{"tool": "crm", "operations": ["delete"], "arguments": {"id": "cust-42"}}]``).
Scope = Union[Mapping[str, Sequence[str]], Sequence[Grant], Sequence[Mapping[str, Any]]]
#: A key to bind a mandate to: a holder's secret, its public key, or a public JWK.
BindKey = Union[HolderSecret, HolderKey, Mapping[str, Any]]

# -- building requests ------------------------------------------------------------------------


def _grants(scope: Scope) -> list[dict[str, Any]]:
    """The API's ``scope``: a list of ``{tool, operations[, constraints][, arguments]}``."""
    grants: list[dict[str, Any]]
    if isinstance(scope, Mapping):
        grants = [{"tool": tool, "operations": ops} for tool, ops in scope.items()]
    else:
        grants = [dict(grant) for grant in scope]
    for i, grant in enumerate(grants):
        operations = grant.get("operations")
        if (
            not isinstance(grant.get("tool"), str)
            or isinstance(operations, str)
            or not isinstance(operations, Sequence)
        ):
            raise InvalidInput(f"scope[{i}]", "a grant is {tool: str, operations: [str, …]}")
        if "arguments" in grant and not isinstance(grant["arguments"], Mapping):
            raise InvalidInput(f"scope[{i}].arguments", "a call's arguments are a JSON object")
        grant["operations"] = list(operations)
    if not grants:
        raise InvalidInput("scope", "ask for at least one tool operation")
    return grants


def _oauth_scope(grants: list[dict[str, Any]]) -> str:
    """The token endpoint's ``tool:operation …``; it cannot carry argument constraints or a
    call's arguments."""
    if any(grant.get("constraints") or "arguments" in grant for grant in grants):
        raise InvalidInput("scope", "the token endpoint takes no argument constraints or arguments: use mint()")
    return " ".join(f"{g['tool']}:{op}" for g in grants for op in g["operations"])


def _checked_token(token: str, name: str = "token") -> str:
    if not token or len(token.encode()) > MAX_TOKEN_BYTES:
        raise InvalidInput(name, f"a token is 1 to {MAX_TOKEN_BYTES} bytes")
    return token


def _basic(client_id: str, secret: str) -> str:
    """RFC 6749 section 2.3.1: each part form-urlencoded, then ``id:secret`` in base64."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


# -- the clients ------------------------------------------------------------------------------


class MandateClient:
    """An async client for one mandate service.

    ``agent_secret`` authenticates the orchestrator (mint, exchange, complete, revoke,
    introspect, its approval requests); ``agent_id`` is its client id at ``/oauth2/token``
    (without it, the secret goes as RFC 8693 ``actor_token``). ``admin_token`` is for
    :meth:`attribution`. Pass ``http`` to reuse an ``httpx.AsyncClient`` (this client then does
    not close it)."""

    def __init__(
        self,
        base_url: str,
        agent_secret: str | None = None,
        *,
        agent_id: str | None = None,
        admin_token: str | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.agent_id = agent_id
        self._agent_secret = agent_secret
        self._admin_token = admin_token
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)

    def __repr__(self) -> str:
        return f"MandateClient({self.base_url!r}, agent_id={self.agent_id!r})"

    async def __aenter__(self) -> "MandateClient":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the HTTP client, if this client made it."""
        if self._owns_http:
            await self._http.aclose()

    def _secret(self) -> str:
        if not self._agent_secret:
            raise InvalidInput("agent_secret", "this call needs the orchestrator's agent secret")
        return self._agent_secret

    async def _send(
        self, method: str, path: str, *, secrets: Sequence[str] = (), oauth: bool = False, **kwargs: Any
    ) -> httpx.Response:
        return await _api.send(self._http, self.base_url + path, method, secrets=secrets, oauth=oauth, **kwargs)

    async def mint(
        self,
        subject_token: str,
        task: str,
        scope: Scope,
        ttl: int | None = None,
        holder_key: BindKey | None = None,
        *,
        task_ref: str | None = None,
    ) -> Mandate:
        """``POST /v1/mandates``: a mandate for ``task`` on behalf of the human whose
        ``subject_token`` (a JWT) is presented, bound to ``holder_key`` when given.

        When a policy gates a requested operation behind human approval, nothing is minted yet
        (202): raises :class:`ApprovalPending` with the request; :meth:`wait_for_approval`, then
        :meth:`collect` for the mandate, which is then all of ``scope``."""
        secret = self._secret()
        body: dict[str, Any] = {
            "subject_token": subject_token,
            "task": {"description": task, **({"ref": task_ref} if task_ref is not None else {})},
            "scope": _grants(scope),
        }
        if ttl is not None:
            body["ttl_seconds"] = ttl
        if holder_key is not None:
            body["holder_key"] = public_jwk(holder_key)
        response = await self._send(
            "POST", "/v1/mandates", json=body, headers={"authorization": f"Bearer {secret}"},
            secrets=[secret, subject_token],
        )
        if response.status_code == 202:
            raise ApprovalPending(approvals.read(response))
        return _api.issued(_api.json_object(response))

    async def exchange(
        self,
        subject_token: str,
        task: str,
        scope: Scope,
        ttl: int | None = None,
        holder: HolderSecret | None = None,
        *,
        task_ref: str | None = None,
    ) -> Mandate:
        """``POST /oauth2/token`` (RFC 8693 token exchange): the same mint, in OAuth's words.

        With ``holder``, a DPoP proof (RFC 9449) is sent and the mandate is bound to its key
        (``token_type`` ``DPoP``). Refusals raise :class:`OAuthError`; an exchange waiting for
        human approval (``authorization_pending``) raises :class:`ApprovalPending`, as
        :meth:`mint` does."""
        secret = self._secret()
        form: dict[str, str] = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject_token,
            "subject_token_type": JWT_TOKEN_TYPE,
            "scope": _oauth_scope(_grants(scope)),
            "task_description": task,
        }
        if task_ref is not None:
            form["task_ref"] = task_ref
        if ttl is not None:
            form["ttl_seconds"] = str(ttl)
        headers: dict[str, str] = {}
        if self.agent_id is not None:
            headers["authorization"] = _basic(self.agent_id, secret)
        else:
            form.update(actor_token=secret, actor_token_type=AGENT_SECRET_TOKEN_TYPE)
        proof = None
        if holder is not None:
            proof = create_proof(holder, "POST", self.base_url + "/oauth2/token")
            headers["dpop"] = proof
        try:
            response = await self._send(
                "POST", "/oauth2/token", data=form, headers=headers, oauth=True,
                secrets=[secret, subject_token, proof or ""],
            )
        except OAuthError as error:
            pending = error.problem.get("auth_req_id")
            if error.error != "authorization_pending" or not isinstance(pending, str):
                raise
            raise ApprovalPending(await self.approval(pending)) from None
        return self._exchanged(response, holder)

    @staticmethod
    def _exchanged(response: httpx.Response, holder: HolderSecret | None) -> Mandate:
        body = _api.json_object(response)
        expires_in = body.get("expires_in")
        if not isinstance(expires_in, int):
            _api.unexpected("expires_in")
        token_type = _api.text(body, "token_type")
        return Mandate(
            token=_api.text(body, "access_token"), mandate_id=_api.text(body, "mandate_id"),
            expires_at=datetime.now(timezone.utc) + timedelta(seconds=expires_in),
            scope=_api.spaced_rights(_api.text(body, "scope")), revocation_id=_api.text(body, "revocation_id"),
            holder_key=thumbprint_of(holder) if holder is not None and token_type == "DPoP" else None,
            token_type=token_type,
        )

    async def complete(self, mandate_id: str) -> Revocation:
        """``POST /v1/mandates/{id}/complete``: the task is done; the mandate stops working."""
        secret = self._secret()
        response = await self._send(
            "POST", f"/v1/mandates/{quote_plus(mandate_id)}/complete",
            headers={"authorization": f"Bearer {secret}"}, secrets=[secret],
        )
        return _api.revocation(response)

    async def revoke(self, mandate_id: str, reason: str) -> Revocation:
        """``POST /v1/mandates/{id}/revoke``: the mandate and every token derived from it."""
        secret = self._secret()
        response = await self._send(
            "POST", f"/v1/mandates/{quote_plus(mandate_id)}/revoke", json={"reason": reason},
            headers={"authorization": f"Bearer {secret}"}, secrets=[secret],
        )
        return _api.revocation(response)

    async def revoke_branch(
        self, token: str, reason: str = "branch no longer needed", proof: HolderSecret | str | None = None
    ) -> BranchRevocation:
        """``POST /v1/revocations``: ends ``token``'s own branch (its last block); the parent
        keeps working. A bound token needs its current holder's proof: pass the holder's
        :class:`HolderSecret` (a proof is made) or a ready proof."""
        _checked_token(token)
        headers: dict[str, str] = {}
        if isinstance(proof, HolderSecret):
            proof = create_proof(proof, "POST", self.base_url + "/v1/revocations", token=token)
        if proof is not None:
            headers["dpop"] = proof
        response = await self._send(
            "POST", "/v1/revocations", json={"token": token, "reason": reason}, headers=headers,
            secrets=[token, proof or ""],
        )
        body = _api.json_object(response)
        return BranchRevocation(
            revocation_id=_api.text(body, "revocation_id"), revoked_at=_api.time_of(body, "revoked_at"),
            whole_mandate=body.get("whole_mandate") is True,
        )

    async def introspect(self, token: str, tool: str | None = None, operation: str | None = None) -> Introspection:
        """``POST /v1/introspect``: is ``token`` active (for ``tool``/``operation``, if named),
        for whom, through which hops. Authenticates with the agent secret, else the admin token."""
        _checked_token(token)
        credential = self._agent_secret or self._admin_token
        if not credential:
            raise InvalidInput("agent_secret", "introspection needs an agent secret or an admin token")
        body: dict[str, str] = {"token": token}
        if (tool is None) != (operation is None):
            raise InvalidInput("operation", "give both tool and operation, or neither")
        if tool is not None and operation is not None:
            body.update(tool=tool, operation=operation)
        response = await self._send(
            "POST", "/v1/introspect", json=body, headers={"authorization": f"Bearer {credential}"},
            secrets=[credential, token],
        )
        return _api.introspection(response)

    async def attribution(
        self,
        admin_token: str | None = None,
        *,
        principal: str | None = None,
        issuer: str | None = None,
        agent: str | None = None,
        tool: str | None = None,
        mandate: str | None = None,
        task: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[Action]:
        """``GET /v1/admin/attribution``: what agents did on behalf of whom, oldest first."""
        credential = admin_token or self._admin_token
        if not credential:
            raise InvalidInput("admin_token", "attribution needs an admin token")
        filters = {"principal": principal, "issuer": issuer, "agent": agent, "tool": tool,
                   "mandate": mandate, "task": task, "limit": limit,
                   "from": since.isoformat() if since else None, "to": until.isoformat() if until else None}
        response = await self._send(
            "GET", "/v1/admin/attribution", params={k: v for k, v in filters.items() if v is not None},
            headers={"authorization": f"Bearer {credential}"}, secrets=[credential],
        )
        try:
            items = response.json()
        except ValueError:
            _api.unexpected("JSON body")
        if not isinstance(items, list):
            _api.unexpected("list of actions")
        return [_api.action(item) for item in items if isinstance(item, Mapping)]

    async def root_keys(self) -> dict[int, biscuit_auth.PublicKey]:
        """``GET /.well-known/mandate-keys``: mandate's root public keys by kid (what
        :func:`mandate_client.holder.attest` and ``rebind`` need to read a token)."""
        return _api.root_keys(await self._send("GET", "/.well-known/mandate-keys"))

    # -- approvals ------------------------------------------------------------------------

    async def approval(self, approval_id: str) -> ApprovalRequest:
        """``GET /v1/approvals/{id}``: one of this orchestrator's approval requests as it
        stands (``state``, ``decisions``, ``expires_at``)."""
        secret = self._secret()
        response = await self._send(
            "GET", approvals.path(approval_id), headers={"authorization": f"Bearer {secret}"}, secrets=[secret],
        )
        return approvals.read(response)

    async def wait_for_approval(
        self, approval_id: str, timeout: float | None = None, *, stream: bool = True
    ) -> ApprovalRequest:
        """Waits until request ``approval_id`` is decided, for at most ``timeout`` seconds and
        never past its ``expires_at``: follows its event stream (``stream``), else, or once the
        stream fails, polls at its ``interval``. Returns the request approved (then
        :meth:`collect`); raises :class:`ApprovalDenied` (``denials`` say who and why),
        :class:`ApprovalExpired`, or :class:`ApprovalPending` when ``timeout`` passes first."""
        secret = self._secret()
        url = self.base_url + approvals.path(approval_id) + "/events"
        headers = {"authorization": f"Bearer {secret}"}
        events = (lambda: approvals.follow(self._http, url, headers)) if stream else None
        return await approvals.wait_for(lambda: self.approval(approval_id), events, timeout)

    async def collect(self, approval_id: str) -> Mandate:
        """``POST /v1/approvals/{id}/mandate``: the mandate of an approved request, once; it
        carries ``approvals``. Raises :class:`ApprovalDenied` when denied (``detail`` names who
        and why), :class:`ApprovalExpired` once expired, :class:`Conflict` while pending or
        once collected, :class:`Denied` when the policies no longer grant the scope."""
        secret = self._secret()
        try:
            response = await self._send(
                "POST", approvals.path(approval_id) + "/mandate", headers={"authorization": f"Bearer {secret}"},
                secrets=[secret],
            )
        except (Forbidden, Conflict) as error:
            raise approvals.collect_refusal(error) from None
        return _api.issued(_api.json_object(response))


T = TypeVar("T")


class SyncMandateClient:
    """:class:`MandateClient` for code without an event loop: the same methods, blocking.

    It runs the async client on an event loop of its own; do not use it from inside a running
    event loop (use :class:`MandateClient` there)."""

    def __init__(
        self,
        base_url: str,
        agent_secret: str | None = None,
        *,
        agent_id: str | None = None,
        admin_token: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._runner = asyncio.Runner()
        self._client = MandateClient(base_url, agent_secret, agent_id=agent_id, admin_token=admin_token, timeout=timeout)

    def __repr__(self) -> str:
        return f"SyncMandateClient({self._client.base_url!r}, agent_id={self._client.agent_id!r})"

    def __enter__(self) -> "SyncMandateClient":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the HTTP client and the event loop."""
        self._runner.run(self._client.aclose())
        self._runner.close()

    def _run(self, call: Callable[[MandateClient], Awaitable[T]]) -> T:
        async def run() -> T:
            return await call(self._client)

        return self._runner.run(run())

    @property
    def base_url(self) -> str:
        return self._client.base_url

    def mint(self, subject_token: str, task: str, scope: Scope, ttl: int | None = None,
             holder_key: BindKey | None = None, *, task_ref: str | None = None) -> Mandate:
        """See :meth:`MandateClient.mint`."""
        return self._run(lambda c: c.mint(subject_token, task, scope, ttl, holder_key, task_ref=task_ref))

    def exchange(self, subject_token: str, task: str, scope: Scope, ttl: int | None = None,
                 holder: HolderSecret | None = None, *, task_ref: str | None = None) -> Mandate:
        """See :meth:`MandateClient.exchange`."""
        return self._run(lambda c: c.exchange(subject_token, task, scope, ttl, holder, task_ref=task_ref))

    def complete(self, mandate_id: str) -> Revocation:
        """See :meth:`MandateClient.complete`."""
        return self._run(lambda c: c.complete(mandate_id))

    def revoke(self, mandate_id: str, reason: str) -> Revocation:
        """See :meth:`MandateClient.revoke`."""
        return self._run(lambda c: c.revoke(mandate_id, reason))

    def revoke_branch(self, token: str, reason: str = "branch no longer needed",
                      proof: HolderSecret | str | None = None) -> BranchRevocation:
        """See :meth:`MandateClient.revoke_branch`."""
        return self._run(lambda c: c.revoke_branch(token, reason, proof))

    def introspect(self, token: str, tool: str | None = None, operation: str | None = None) -> Introspection:
        """See :meth:`MandateClient.introspect`."""
        return self._run(lambda c: c.introspect(token, tool, operation))

    def attribution(self, admin_token: str | None = None, **filters: Any) -> list[Action]:
        """See :meth:`MandateClient.attribution` (the same keyword filters)."""
        return self._run(lambda c: c.attribution(admin_token, **filters))

    def root_keys(self) -> dict[int, biscuit_auth.PublicKey]:
        """See :meth:`MandateClient.root_keys`."""
        return self._run(lambda c: c.root_keys())

    def approval(self, approval_id: str) -> ApprovalRequest:
        """See :meth:`MandateClient.approval`."""
        return self._run(lambda c: c.approval(approval_id))

    def wait_for_approval(self, approval_id: str, timeout: float | None = None, *,
                          stream: bool = True) -> ApprovalRequest:
        """See :meth:`MandateClient.wait_for_approval`."""
        return self._run(lambda c: c.wait_for_approval(approval_id, timeout, stream=stream))

    def collect(self, approval_id: str) -> Mandate:
        """See :meth:`MandateClient.collect`."""
        return self._run(lambda c: c.collect(approval_id))
