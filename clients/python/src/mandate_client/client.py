"""The orchestrator's side of mandate's HTTP API: mint, exchange, complete, revoke, introspect.

:class:`MandateClient` is async (``httpx.AsyncClient``); :class:`SyncMandateClient` offers the
same methods for code without an event loop. An orchestrator authenticates with its agent
secret; attribution is read with an admin token.

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
from typing import Any, Awaitable, Callable, Mapping, NoReturn, Sequence, TypeVar, Union
from urllib.parse import quote_plus

import biscuit_auth
import httpx

from . import _biscuit
from .holder import InvalidInput, public_jwk, thumbprint_of
from .pop import HolderKey, HolderSecret, create_proof
from .problems import (
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
    BranchRevocation,
    Denial,
    FieldError,
    Hop,
    Introspection,
    Mandate,
    Revocation,
    Right,
)

__all__ = [
    "MandateClient", "SyncMandateClient", "Mandate", "Right", "Hop", "Denial", "FieldError",
    "Revocation", "BranchRevocation", "Introspection", "Action", "Scope",
    "BadRequest", "Unauthorized", "Forbidden", "Denied", "NotFound", "Conflict", "Invalid",
    "RateLimited", "Unavailable", "ServerError", "OAuthError", "UnexpectedResponse",
    "raise_for_problem",
]

#: Largest token sent or accepted (the service's own bound).
MAX_TOKEN_BYTES = 16 * 1024
#: RFC 8693 grant type, and the token types mandate speaks.
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
AGENT_SECRET_TOKEN_TYPE = "urn:mandate:params:oauth:token-type:agent-secret"

#: What to ask for: ``{"crm": ["read"]}``, or grants as the API has them
#: (``[{"tool": "crm", "operations": ["write"], "constraints": {"ticket": {"prefix": "T-"}}}]``).
Scope = Union[Mapping[str, Sequence[str]], Sequence[Mapping[str, Any]]]
#: A key to bind a mandate to: a holder's secret, its public key, or a public JWK.
BindKey = Union[HolderSecret, HolderKey, Mapping[str, Any]]

# -- reading answers --------------------------------------------------------------------------


def _unexpected(what: str) -> NoReturn:
    raise UnexpectedResponse(f"the service's answer has no valid {what}")


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        _unexpected(key)
    return value


def _optional_text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) else None


def _time(body: Mapping[str, Any], key: str) -> datetime:
    try:
        return datetime.fromisoformat(_text(body, key).replace("Z", "+00:00"))
    except ValueError:
        _unexpected(key)


def _rights(items: Any) -> tuple[Right, ...]:
    if not isinstance(items, list):
        _unexpected("scope")
    return tuple(Right(_text(r, "tool"), _text(r, "operation")) for r in items if isinstance(r, Mapping))


def _spaced_rights(scope: str) -> tuple[Right, ...]:
    """``crm:read crm:write`` as rights."""
    pairs = [item.split(":", 1) for item in scope.split(" ") if ":" in item]
    return tuple(Right(tool, operation) for tool, operation in pairs)


def _hops(items: Any) -> tuple[Hop, ...]:
    if not isinstance(items, list):
        return ()
    return tuple(Hop(_text(h, "agent"), h.get("attested") is True) for h in items if isinstance(h, Mapping))


def _object(response: httpx.Response) -> Mapping[str, Any]:
    try:
        body = response.json()
    except ValueError:
        _unexpected("JSON body")
    if not isinstance(body, Mapping):
        _unexpected("JSON object")
    return body


def _issued(response: httpx.Response) -> Mandate:
    body = _object(response)
    token = _text(body, "token")
    holder = _optional_text(body, "holder_key")
    return Mandate(
        token=token, mandate_id=_text(body, "mandate_id"), expires_at=_time(body, "expires_at"),
        scope=_rights(body.get("scope")), revocation_id=_text(body, "revocation_id"), holder_key=holder,
        token_type="DPoP" if holder else "Bearer",
        constraints=tuple(c for c in body.get("constraints") or () if isinstance(c, Mapping)),
    )


def _revocation(response: httpx.Response) -> Revocation:
    body = _object(response)
    return Revocation(
        mandate_id=_optional_text(body, "mandate_id"), revocation_id=_text(body, "revocation_id"),
        revoked_by=_text(body, "revoked_by"), reason=_text(body, "reason"),
        revoked_at=_time(body, "revoked_at"), expires_at=_time(body, "expires_at"),
    )


def _introspection(response: httpx.Response) -> Introspection:
    body = _object(response)
    if body.get("active") is not True:
        return Introspection(active=False)
    exp = body.get("exp")
    cnf = body.get("cnf")
    return Introspection(
        active=True, mandate_id=_optional_text(body, "mandate_id"), subject=_optional_text(body, "sub"),
        issuer=_optional_text(body, "iss"), agent=_optional_text(body, "agent"), hops=_hops(body.get("hops")),
        scope=_spaced_rights(_optional_text(body, "scope") or ""),
        expires_at=datetime.fromtimestamp(exp, timezone.utc) if isinstance(exp, int) else None,
        jkt=_optional_text(cnf, "jkt") if isinstance(cnf, Mapping) else None,
    )


def _action(item: Mapping[str, Any]) -> Action:
    principal = item.get("principal")
    if not isinstance(principal, Mapping):
        _unexpected("principal")
    details = item.get("details")
    return Action(
        occurred_at=_time(item, "occurred_at"), principal_subject=_text(principal, "subject"),
        principal_issuer=_text(principal, "issuer"), orchestrator=_text(item, "orchestrator"),
        hops=_hops(item.get("hops")), tool=_text(item, "tool"), operation=_text(item, "operation"),
        resource=_optional_text(item, "resource"), outcome=_text(item, "outcome"),
        mandate_id=_text(item, "mandate_id"), task_id=_text(item, "task_id"),
        receipt_id=_text(item, "receipt_id"), reporter=_optional_text(item, "reporter"),
        details=dict(details) if isinstance(details, Mapping) else {},
    )


def _root_keys(response: httpx.Response) -> dict[int, biscuit_auth.PublicKey]:
    keys: dict[int, biscuit_auth.PublicKey] = {}
    for key in _object(response).get("keys") or ():
        kid, text = key.get("kid"), key.get("public_key")
        if not isinstance(kid, int) or not isinstance(text, str) or not text.startswith("ed25519/"):
            continue
        try:
            keys[kid] = _biscuit.public_key(bytes.fromhex(text[8:]))
        except (ValueError, biscuit_auth.BiscuitValidationError):
            continue
    if not keys:
        _unexpected("root key")
    return keys


# -- building requests ------------------------------------------------------------------------


def _grants(scope: Scope) -> list[dict[str, Any]]:
    """The API's ``scope``: a list of ``{tool, operations[, constraints]}``."""
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
        grant["operations"] = list(operations)
    if not grants:
        raise InvalidInput("scope", "ask for at least one tool operation")
    return grants


def _oauth_scope(grants: list[dict[str, Any]]) -> str:
    """The token endpoint's ``tool:operation …``; it cannot carry argument constraints."""
    if any(grant.get("constraints") for grant in grants):
        raise InvalidInput("scope", "the token endpoint takes no argument constraints: use mint()")
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
    introspect); ``agent_id`` is its client id at ``/oauth2/token`` (without it, the secret goes
    as RFC 8693 ``actor_token``). ``admin_token`` is for :meth:`attribution`. Pass ``http`` to
    reuse an ``httpx.AsyncClient`` (this client then does not close it)."""

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
        try:
            response = await self._http.request(method, self.base_url + path, **kwargs)
        except httpx.HTTPError as error:
            # The exception's text can name the URL only; no header is in it.
            raise Unavailable(503, {"title": "Unreachable", "detail": type(error).__name__}) from None
        raise_for_problem(response, [s for s in secrets if s], oauth=oauth)
        return response

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
        ``subject_token`` (a JWT) is presented, bound to ``holder_key`` when given."""
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
        return _issued(response)

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
        (``token_type`` ``DPoP``). Refusals raise :class:`OAuthError`."""
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
        response = await self._send(
            "POST", "/oauth2/token", data=form, headers=headers, oauth=True,
            secrets=[secret, subject_token, proof or ""],
        )
        return self._exchanged(response, holder)

    @staticmethod
    def _exchanged(response: httpx.Response, holder: HolderSecret | None) -> Mandate:
        body = _object(response)
        expires_in = body.get("expires_in")
        if not isinstance(expires_in, int):
            _unexpected("expires_in")
        token_type = _text(body, "token_type")
        return Mandate(
            token=_text(body, "access_token"), mandate_id=_text(body, "mandate_id"),
            expires_at=datetime.now(timezone.utc) + timedelta(seconds=expires_in),
            scope=_spaced_rights(_text(body, "scope")), revocation_id=_text(body, "revocation_id"),
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
        return _revocation(response)

    async def revoke(self, mandate_id: str, reason: str) -> Revocation:
        """``POST /v1/mandates/{id}/revoke``: the mandate and every token derived from it."""
        secret = self._secret()
        response = await self._send(
            "POST", f"/v1/mandates/{quote_plus(mandate_id)}/revoke", json={"reason": reason},
            headers={"authorization": f"Bearer {secret}"}, secrets=[secret],
        )
        return _revocation(response)

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
        body = _object(response)
        return BranchRevocation(
            revocation_id=_text(body, "revocation_id"), revoked_at=_time(body, "revoked_at"),
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
        return _introspection(response)

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
            _unexpected("JSON body")
        if not isinstance(items, list):
            _unexpected("list of actions")
        return [_action(item) for item in items if isinstance(item, Mapping)]

    async def root_keys(self) -> dict[int, biscuit_auth.PublicKey]:
        """``GET /.well-known/mandate-keys``: mandate's root public keys by kid (what
        :func:`mandate_client.holder.attest` and ``rebind`` need to read a token)."""
        return _root_keys(await self._send("GET", "/.well-known/mandate-keys"))


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
