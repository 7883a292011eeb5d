"""Offline holder operations on a mandate: narrow it, attest a hop, move its binding.

Each function appends one block in exactly the shapes of ``docs/token-schema.md`` (the
mandate/v1 block vocabulary), so mandate's verifiers read it as one written by
``mandate token attenuate``:

- :func:`attenuate`: a first-party block naming the next holder (``delegate``) and narrowing
  rights, resources, expiry and arguments. No key is needed.
- :func:`attest`: a third-party block ``hop($agent)`` signed with the agent's registered Ed25519
  key.
- :func:`rebind`: a third-party block ``holder_key($jkt)`` signed by the current holder's key,
  moving a bound mandate to the next holder's key.

Every value goes in as a Datalog parameter, never spliced into source text. Every input is
checked before anything is built; bad input raises :class:`InvalidInput` naming the field,
and a token that cannot be extended raises :class:`HolderError`. The input token is never
changed: each function returns a new token.

biscuit-python serializes, and appends third-party blocks to, only a token whose signatures it
has checked, so each function takes mandate's root public keys (``root_keys``:
``MandateClient.root_keys()``, from ``GET /.well-known/mandate-keys``). A token that does not
verify with them is refused before anything is appended.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence, Union

import biscuit_auth

from . import vocabulary as vocab
from .checked import holder_chain
from .errors import MandateError, VerificationError
from .pop import HolderKey, HolderSecret

__all__ = [
    "attenuate", "attest", "rebind", "current_holder", "glob_regex",
    "InvalidInput", "HolderError", "RootKeys", "Rights", "Constraints",
]

#: Largest token a verifier reads.
MAX_TOKEN_BYTES = 16 * 1024
#: Most blocks a token may have, the authority included.
MAX_BLOCKS = 16
#: Longest string a block may state.
MAX_STRING = 256
#: Most rights, resources and constraint facts one block may state.
MAX_RIGHTS = MAX_RESOURCES = MAX_CONSTRAINTS = 64
#: Most values of a ``one_of``; longest glob; longest argument path.
MAX_ONE_OF, MAX_GLOB, MAX_PATH = 32, 64, 128
I64 = (-(2**63), 2**63 - 1)

#: Root keys: one key, keys by kid, or a function of the token's kid.
RootKeys = Union[
    biscuit_auth.PublicKey, Mapping[int, biscuit_auth.PublicKey], Callable[[Union[int, None]], biscuit_auth.PublicKey]
]
#: Rights to keep: ``{"crm": ["read"]}`` or ``[("crm", "read")]``.
Rights = Union[Mapping[str, Sequence[str]], Sequence[tuple[str, str]]]
#: Constraints to add, by tool, operation and argument path:
#: ``{"crm": {"write": {"ticket": {"prefix": "T-"}}}}`` (each constraint in the JSON grant form).
Constraints = Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]]


class InvalidInput(MandateError, ValueError):
    """An argument that cannot go in a block; ``field`` names it (``rights[1].tool``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class HolderError(MandateError):
    """The token cannot be extended: not a mandate, too large, unverifiable with the root keys
    given, or held by another key."""


# -- validation -------------------------------------------------------------------------------


def _printable(field: str, value: object) -> str:
    """A string a block can state and a verifier read back: 1 to 256 bytes, no quotes,
    backslashes or control characters."""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    if not value or len(value.encode()) > MAX_STRING:
        raise InvalidInput(field, f"must be 1 to {MAX_STRING} bytes")
    if any(c in '"\\' or unicodedata.category(c) == "Cc" for c in value):
        raise InvalidInput(field, "must not contain quotes, backslashes or control characters")
    return value


def _integer(field: str, value: object, low: int = I64[0], high: int = I64[1]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(field, f"must be an integer from {low} to {high}")
    return value


def _path(field: str, path: object) -> str:
    """An argument path: dot-joined segments of ``[A-Za-z0-9_-]``, at most 128 bytes."""
    if (
        not isinstance(path, str)
        or len(path.encode()) > MAX_PATH
        or not all(re.fullmatch(r"[A-Za-z0-9_-]+", s, re.ASCII) for s in path.split("."))
    ):
        raise InvalidInput(field, f"an argument path is dot-joined segments of [A-Za-z0-9_-], at most {MAX_PATH} bytes")
    return path


def _scalar(field: str, value: object) -> bool | int | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return _integer(field, value)
    if isinstance(value, str):
        return _printable(field, value)
    raise InvalidInput(field, "must be a string, an integer or a boolean")


def _glob(field: str, glob: object) -> str:
    glob = _printable(field, glob)
    if len(glob.encode()) > MAX_GLOB or any(c in "[]^" for c in glob):
        raise InvalidInput(field, f"a glob is 1 to {MAX_GLOB} bytes with `*` and `?`, and no `[`, `]` or `^`")
    return glob


def glob_regex(glob: str) -> str:
    """The regex a glob compiles to: ``(?s)^…$``, ``*`` as ``.*``, ``?`` as ``.``, and every
    other regex metacharacter as a one-character class (``a.b*`` is ``(?s)^a[.]b.*$``)."""
    out = ["(?s)^"]
    for c in glob:
        out.append(".*" if c == "*" else "." if c == "?" else f"[{c}]" if c in ".+()|{}$#&-~" else c)
    out.append("$")
    return "".join(out)


#: Each kind's check, exactly as mandate compiles it (``src/token/constraints.rs``).
_EXPRESSIONS = {
    "equals": "$value == {v}",
    "one_of": "{v}.contains($value)",
    "prefix": "$value.starts_with({v})",
    "glob": "$value.matches({v})",
    "min": "$value >= {v}",
    "max": "$value <= {v}",
    "max_length": "$value.length() <= {v}",
}


def _stated(field: str, constraint: object) -> list[tuple[str, Any]]:
    """A JSON constraint (``{"prefix": "T-"}``) as the (kind, value) facts it states."""
    if not isinstance(constraint, Mapping) or len(constraint) != 1:
        raise InvalidInput(field, "a constraint is one of equals, one_of, prefix, glob, range, max_length")
    ((kind, value),) = constraint.items()
    here = f"{field}.{kind}"
    if kind == "equals":
        return [("equals", _scalar(here, value))]
    if kind == "one_of":
        if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_ONE_OF:
            raise InvalidInput(here, f"lists 1 to {MAX_ONE_OF} values")
        values = [_scalar(f"{here}[{i}]", v) for i, v in enumerate(value)]
        if len({type(v) for v in values}) != 1:
            raise InvalidInput(here, "lists values of one type")
        return [("one_of", set(values))]
    if kind == "prefix":
        return [("prefix", _printable(here, value))]
    if kind == "glob":
        return [("glob", _glob(here, value))]
    if kind == "range":
        if not isinstance(value, Mapping) or not value or set(value) - {"min", "max"}:
            raise InvalidInput(here, "a range is {min, max}, with at least one of them")
        bounds = {k: _integer(f"{here}.{k}", v) for k, v in value.items() if v is not None}
        if not bounds:
            raise InvalidInput(here, "a range needs min, max or both")
        if bounds.get("min", I64[0]) > bounds.get("max", I64[1]):
            raise InvalidInput(here, "min exceeds max")
        return [(k, bounds[k]) for k in ("min", "max") if k in bounds]
    if kind == "max_length":
        return [("max_length", _integer(here, value, 0, 2**32 - 1))]
    raise InvalidInput(field, f"unknown constraint kind {kind!r}")


def _rights(rights: Rights) -> list[tuple[str, str]]:
    if isinstance(rights, Mapping):
        pairs = [(tool, op) for tool, ops in rights.items() for op in _operations(f"rights.{tool}", ops)]
    elif isinstance(rights, (list, tuple)):
        pairs = []
        for i, pair in enumerate(rights):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise InvalidInput(f"rights[{i}]", "a right is a (tool, operation) pair")
            pairs.append((pair[0], pair[1]))
    else:
        raise InvalidInput("rights", "give {tool: [operations]} or [(tool, operation), …]")
    if len(pairs) > MAX_RIGHTS:
        raise InvalidInput("rights", f"at most {MAX_RIGHTS} (tool, operation) pairs")
    return [
        (_printable(f"rights[{i}].tool", tool), _printable(f"rights[{i}].operation", operation))
        for i, (tool, operation) in enumerate(pairs)
    ]


def _operations(field: str, operations: object) -> list[str]:
    if isinstance(operations, str) or not isinstance(operations, (list, tuple)):
        raise InvalidInput(field, "must be a list of operations")
    return list(operations)


def _expiry(expires_at: object) -> datetime:
    if not isinstance(expires_at, datetime) or expires_at.tzinfo is None:
        raise InvalidInput("expires_at", "must be a timezone-aware datetime")
    if expires_at.timestamp() < 0:
        raise InvalidInput("expires_at", "must be after 1970")
    return expires_at.astimezone(timezone.utc).replace(microsecond=0)


# -- reading the token ------------------------------------------------------------------------


def _unverified(token: object) -> biscuit_auth.UnverifiedBiscuit:
    if not isinstance(token, str) or not token:
        raise InvalidInput("token", "must be a mandate (base64url text)")
    if len(token.encode()) > MAX_TOKEN_BYTES:
        raise InvalidInput("token", f"larger than {MAX_TOKEN_BYTES} bytes")
    try:
        parsed = biscuit_auth.UnverifiedBiscuit.from_base64(token)
    except Exception:  # biscuit-python raises several types for unreadable input
        raise HolderError("not a Biscuit token") from None
    if parsed.block_count() >= MAX_BLOCKS:
        raise HolderError(f"the token already has {MAX_BLOCKS} blocks, the most a mandate may have")
    return parsed


def _verified(token: str, root_keys: RootKeys) -> biscuit_auth.Biscuit:
    """The token with its signatures checked (biscuit-python's third-party blocks need it)."""
    kid = _unverified(token).root_key_id()
    if isinstance(root_keys, biscuit_auth.PublicKey):
        key: biscuit_auth.PublicKey | None = root_keys
    elif isinstance(root_keys, Mapping):
        key = root_keys.get(kid) if kid is not None else None
    else:
        try:
            key = root_keys(kid)
        except Exception:  # a provider's own lookup failure is an unknown kid
            key = None
    if not isinstance(key, biscuit_auth.PublicKey):
        raise HolderError(f"no root key with kid {kid}: refetch mandate's keys")
    try:
        return biscuit_auth.Biscuit.from_base64(token, key)
    except Exception:
        raise HolderError("the token's signatures do not verify with mandate's root keys") from None


def _why(error: Exception) -> str:
    """What biscuit-python said, bounded (its errors name Datalog, never token bytes)."""
    return f"{type(error).__name__}: {str(error)[:200]}"


def _finished(token: biscuit_auth.Biscuit) -> str:
    out = token.to_base64()
    if len(out.encode()) > MAX_TOKEN_BYTES:
        raise HolderError(f"the extended token would be larger than {MAX_TOKEN_BYTES} bytes")
    return out


def current_holder(token: str, *, root_keys: RootKeys) -> str | None:
    """The thumbprint of the key ``token`` is bound to now (the authority's ``holder_key``,
    then each rebinding signed by the key it was bound to so far), or ``None`` for a bearer
    mandate. Read as a verifier reads it: the signatures checked, every block read with the
    mandate/v1 vocabulary, the binding moved only as :func:`mandate_client.checked.holder_chain`
    moves it. A token a verifier would refuse raises :class:`HolderError`."""
    _verified(token, root_keys)
    try:
        decoded = vocab.read(token)
        bound = vocab.read_authority(decoded.authority).holder_key
        return holder_chain(bound, decoded)
    except VerificationError as error:
        raise HolderError(f"a verifier would refuse this token ({error.code}: {error})") from None


# -- adapting holder keys ---------------------------------------------------------------------


def public_jwk(key: HolderSecret | HolderKey | Mapping[str, Any]) -> dict[str, Any]:
    """The public JWK of a holder key (a secret's public half; never its private member)."""
    if isinstance(key, HolderSecret):
        key = key.public
    if isinstance(key, HolderKey):
        jwk = dict(key.to_jwk())
    elif isinstance(key, Mapping):
        jwk = dict(key)
    else:
        raise InvalidInput("holder_key", "must be a HolderSecret, a HolderKey or a public JWK")
    if "d" in jwk:
        raise InvalidInput("holder_key", "send the public key only (this JWK has a private member)")
    return jwk


def thumbprint_of(key: HolderSecret | HolderKey) -> str:
    """The RFC 7638 thumbprint of a holder key."""
    return key.thumbprint


# -- the operations ---------------------------------------------------------------------------


def attenuate(
    token: str,
    rights: Rights | None = None,
    resources: Sequence[str] | None = None,
    expires_at: datetime | None = None,
    delegate: str | None = None,
    constraints: Constraints | None = None,
    *,
    root_keys: RootKeys,
) -> str:
    """Narrows ``token`` offline: a first-party block keeping only ``rights`` (an empty list
    keeps none), calls naming one of ``resources``, an expiry no later than ``expires_at``, added
    argument ``constraints``, and naming ``delegate`` as the next holder. At least one is given."""
    source: list[str] = []
    params: dict[str, Any] = {}
    if delegate is not None:
        source.append("delegate({delegate});")
        params["delegate"] = _printable("delegate", delegate)
    if rights is not None:
        pairs = _rights(rights)
        if not pairs:
            source.append("check if false;")
        else:
            alternatives = " || ".join(
                f"($tool == {{tool{i}}} && $operation == {{operation{i}}})" for i in range(len(pairs))
            )
            source.append(f"check if tool($tool), operation($operation), {alternatives};")
            for i, (tool, operation) in enumerate(pairs):
                params[f"tool{i}"], params[f"operation{i}"] = tool, operation
    if resources is not None:
        if isinstance(resources, str) or not isinstance(resources, (list, tuple, set, frozenset)):
            raise InvalidInput("resources", "must be a list of resources")
        if len(resources) > MAX_RESOURCES:
            raise InvalidInput("resources", f"at most {MAX_RESOURCES} resources")
        source.append("check if resource($resource), {resources}.contains($resource);")
        params["resources"] = {_printable(f"resources[{i}]", r) for i, r in enumerate(resources)}
    if expires_at is not None:
        source.append("check if time($time), $time <= {expires};")
        params["expires"] = _expiry(expires_at)
    source += _constraint_source(constraints or {}, params)
    if not source:
        raise InvalidInput("attenuation", "narrow something or name a delegate")
    parsed = _verified(token, root_keys)
    try:
        block = biscuit_auth.BlockBuilder("\n".join(source), params)
        return _finished(parsed.append(block))
    except MandateError:
        raise
    except Exception as error:
        raise HolderError(f"the block could not be appended ({_why(error)})") from None


def _constraint_source(constraints: Constraints, params: dict[str, Any]) -> list[str]:
    """Each constraint's fact and then exactly the check it compiles to, in the order given."""
    if not isinstance(constraints, Mapping):
        raise InvalidInput("constraints", "give {tool: {operation: {argument: constraint}}}")
    source: list[str] = []
    for tool, operations in constraints.items():
        _printable(f"constraints.{tool}", tool)
        if not isinstance(operations, Mapping):
            raise InvalidInput(f"constraints.{tool}", "give {operation: {argument: constraint}}")
        for operation, arguments in operations.items():
            _printable(f"constraints.{tool}.{operation}", operation)
            if not isinstance(arguments, Mapping):
                raise InvalidInput(f"constraints.{tool}.{operation}", "give {argument: constraint}")
            for argument, constraint in arguments.items():
                field = f"constraints.{tool}.{operation}.{argument}"
                _path(field, argument)
                for kind, value in _stated(field, constraint):
                    n = len(source) // 2
                    if n == MAX_CONSTRAINTS:
                        raise InvalidInput("constraints", f"at most {MAX_CONSTRAINTS} constraint facts in one block")
                    source += _constraint(n, (tool, operation, argument, kind, value), params)
    return source


def _constraint(n: int, stated: tuple[str, str, str, str, Any], params: dict[str, Any]) -> list[str]:
    """The ``n``th constraint fact of a block and its check, with parameters named ``c<n>_…``
    (the check's variables must be ``$tool``, ``$operation`` and ``$value``, as mandate's)."""
    tool, operation, argument, kind, value = stated
    name = {k: f"c{n}_{k}" for k in ("tool", "operation", "argument", "kind", "value", "check")}
    params.update({
        name["tool"]: tool, name["operation"]: operation, name["argument"]: argument, name["kind"]: kind,
        name["value"]: value, name["check"]: glob_regex(value) if kind == "glob" else value,
    })
    t, o, a, k, v, c = ("{" + name[key] + "}" for key in ("tool", "operation", "argument", "kind", "value", "check"))
    expression = _EXPRESSIONS[kind].replace("{v}", c)
    return [
        f"constraint({t}, {o}, {a}, {k}, {v});",
        f"check if tool($tool), operation($operation), !($tool == {t} && $operation == {o}) "
        f"or arg({a}, $value), {expression};",
    ]


def _append_signed(
    parsed: biscuit_auth.Biscuit, key: biscuit_auth.PrivateKey, source: str, params: Mapping[str, Any]
) -> str:
    """Appends a third-party block stating ``source``, signed with ``key``, requested for this
    token (so it cannot be moved onto another)."""
    try:
        public = biscuit_auth.KeyPair.from_private_key(key).public_key
        block = parsed.third_party_request().create_block(key, biscuit_auth.BlockBuilder(source, dict(params)))
        return _finished(parsed.append_third_party(public, block))
    except MandateError:
        raise
    except Exception as error:
        raise HolderError(f"the signed block could not be appended ({_why(error)})") from None


def attest(
    token: str,
    agent_id: str,
    agent_key: biscuit_auth.PrivateKey | biscuit_auth.KeyPair,
    *,
    root_keys: RootKeys,
) -> str:
    """Attests that ``agent_id`` now holds ``token``: a third-party block ``hop($agent)`` signed
    with the agent's registered Ed25519 key. Follows the holder's block naming it as delegate."""
    _printable("agent_id", agent_id)
    if isinstance(agent_key, biscuit_auth.KeyPair):
        agent_key = agent_key.private_key
    if not isinstance(agent_key, biscuit_auth.PrivateKey):
        raise InvalidInput("agent_key", "must be the agent's Ed25519 biscuit_auth.PrivateKey or KeyPair")
    return _append_signed(_verified(token, root_keys), agent_key, "hop({agent});", {"agent": agent_id})


_THUMBPRINT = re.compile(r"[A-Za-z0-9_-]{43}")


def rebind(token: str, holder: HolderSecret, next_jkt: str, *, root_keys: RootKeys) -> str:
    """Moves the binding of ``token`` from ``holder`` (its current holder) to the key whose RFC
    7638 thumbprint is ``next_jkt``: a third-party block ``holder_key($jkt)`` signed by
    ``holder``'s key. Refused for a bearer mandate, and for a holder it is not bound to."""
    if not isinstance(next_jkt, str) or not _THUMBPRINT.fullmatch(next_jkt):
        raise InvalidInput("next_jkt", "an RFC 7638 thumbprint is 43 base64url characters")
    if not isinstance(holder, HolderSecret):
        raise InvalidInput("holder", "must be the current holder's HolderSecret")
    parsed = _verified(token, root_keys)
    bound_to = current_holder(token, root_keys=root_keys)
    if bound_to is None:
        raise HolderError("the token is a bearer mandate: it cannot be bound offline")
    if bound_to != thumbprint_of(holder):
        raise HolderError("the token is bound to another key than this holder's")
    return _append_signed(parsed, holder.biscuit_private_key(), "holder_key({jkt});", {"jkt": next_jkt})
