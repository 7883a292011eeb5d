"""Checking DPoP proofs (RFC 9449) as mandate's Rust verifier does (``src/token/pop/proof.rs``):
:func:`parse_proof` and :func:`check_proof` for one proof, :class:`ProofChecker` adding server
nonces and the bounded :class:`ProofReplayCache` (``src/token/pop/replay.rs``). Making proofs
is :mod:`mandate_client.pop`'s, which re-exports every public name here.

No error message carries a proof, a token or a key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from .errors import VerificationError
from .jwk import ALGORITHMS, HolderKey, InvalidJwk, b64url_decode, b64url_encode, constant_time_eq

__all__ = [
    "MAX_PROOF_BYTES",
    "InvalidProof",
    "Proof",
    "ProofChecker",
    "ProofReplayCache",
    "ProofsBusy",
    "UseDpopNonce",
    "check_proof",
    "normalize_url",
    "parse_proof",
    "epoch_seconds",
]

#: The largest proof parsed, in bytes.
MAX_PROOF_BYTES = 4096
#: The longest ``jti``, ``nonce``, ``htu`` (and other string claims) accepted.
_MAX_CLAIM = 2048


class InvalidProof(VerificationError):
    """A DPoP proof refused (RFC 9449 ``invalid_dpop_proof``)."""

    code = "invalid_dpop_proof"


class UseDpopNonce(VerificationError):
    """The proof must carry the nonce the server provides (RFC 9449 ``use_dpop_nonce``)."""

    code = "use_dpop_nonce"


class ProofsBusy(InvalidProof):
    """The replay cache is full of live proofs: refused rather than forgetting one (503)."""


# --- the call --------------------------------------------------------------------------------


def epoch_seconds(now: datetime | float | int | None) -> int:
    """``now`` in whole seconds since the epoch (``None``: the clock's)."""
    if now is None:
        return int(time.time())
    if isinstance(now, datetime):
        return int(now.timestamp())
    return int(now)


def normalize_url(url: str) -> str | None:
    """``url`` without query and fragment, scheme and host lowercased, a default port dropped
    (RFC 3986 section 6). ``None`` unless it is an absolute ``http`` or ``https`` URL."""
    url = re.split(r"[?#]", url, maxsplit=1)[0]
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    scheme = scheme.lower()
    default_port = {"https": ":443", "http": ":80"}.get(scheme)
    if default_port is None:
        return None
    slash = rest.find("/")
    authority, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    if not authority or "@" in authority:
        return None
    authority = authority.lower()
    if authority.endswith(default_port):
        authority = authority[: -len(default_port)]
    return f"{scheme}://{authority}{path}"


# --- checking proofs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Proof:
    """A proof whose signature verifies with the key in its header."""

    key: HolderKey
    jkt: str
    jti: str
    htm: str
    htu: str
    iat: int
    ath: str | None
    nonce: str | None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _part(text: str) -> Any:
    try:
        raw = b64url_decode(text)
    except ValueError:
        raise InvalidProof("malformed proof: a part is not base64url") from None
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidProof("malformed proof: a part is not JSON") from None


def _claim(claims: Any, name: str) -> str | None:
    value = claims.get(name) if isinstance(claims, dict) else None
    if value is None and not (isinstance(claims, dict) and name in claims):
        return None
    if isinstance(value, str) and value and len(value.encode()) <= _MAX_CLAIM:
        return value
    raise InvalidProof("malformed proof: jti, htm, htu, ath and nonce are strings of 1 to 2048 bytes")


def parse_proof(jwt: str) -> Proof:
    """Reads ``jwt``: at most 4096 bytes, ``typ`` ``dpop+jwt``, no ``crit``, ``alg`` matching a
    public ``jwk``, a signature that verifies with it, and claims ``jti``, ``htm``, ``htu``,
    ``iat``. Nothing about the call is checked yet."""
    if not isinstance(jwt, str) or len(jwt.encode()) > MAX_PROOF_BYTES:
        raise InvalidProof("malformed proof: longer than 4096 bytes")
    parts = jwt.split(".")
    if len(parts) != 3:
        raise InvalidProof("malformed proof: a JWT has three parts")
    header, payload, signature = parts
    head = _part(header)
    fields: Mapping[str, Any] = head if isinstance(head, dict) else {}
    if fields.get("typ") != "dpop+jwt":
        raise InvalidProof("malformed proof: typ must be dpop+jwt")
    if "crit" in fields:
        raise InvalidProof("malformed proof: no crit extensions are understood")
    alg = fields.get("alg")
    if alg not in ALGORITHMS:
        raise InvalidProof("malformed proof: alg must be EdDSA or ES256")
    if "jwk" not in fields:
        raise InvalidProof("malformed proof: the header carries no jwk")
    try:
        key = HolderKey.from_jwk(fields["jwk"])
    except InvalidJwk as error:
        raise InvalidProof(f"malformed proof: {error}") from None
    if key.algorithm != alg:
        raise InvalidProof("malformed proof: alg does not match the jwk")
    try:
        raw_signature = b64url_decode(signature)
    except ValueError:
        raise InvalidProof("malformed proof: the signature is not base64url") from None
    if not key.verify(f"{header}.{payload}".encode("ascii"), raw_signature):
        raise InvalidProof("the proof's signature does not verify")
    claims = _part(payload)
    iat = claims.get("iat") if isinstance(claims, dict) else None
    if isinstance(iat, bool) or not isinstance(iat, (int, float)) or not abs(iat) < 1e12:
        raise InvalidProof("malformed proof: iat is a number of seconds")
    values = {}
    for name in ("jti", "htm", "htu"):
        value = _claim(claims, name)
        if value is None:
            raise InvalidProof("malformed proof: jti, htm, htu and iat are required")
        values[name] = value
    return Proof(
        key=key,
        jkt=key.thumbprint,
        jti=values["jti"],
        htm=values["htm"],
        htu=values["htu"],
        # Whole seconds; a fraction never moves a proof into the window.
        iat=int(iat // 1),
        ath=_claim(claims, "ath"),
        nonce=_claim(claims, "nonce"),
    )


def check_proof(
    jwt: str,
    *,
    method: str,
    url: str,
    ath: str | None,
    holder_jkt: str | None,
    now: datetime | float | int,
    max_age: int = 60,
    max_ahead: int = 30,
) -> Proof:
    """Parses ``jwt`` and checks it against the call, in this order: the key is the holder's,
    ``htm`` is ``method``, ``htu`` is ``url`` (both normalized), ``iat`` is at most ``max_age``
    seconds old and ``max_ahead`` ahead, ``ath`` is the token's hash. ``ath`` and
    ``holder_jkt`` are ``None`` at a token endpoint. Nonces and replays are
    :class:`ProofChecker`'s."""
    proof = parse_proof(jwt)
    if holder_jkt is not None and not constant_time_eq(proof.jkt, holder_jkt):
        raise InvalidProof("the proof is signed by a key other than the mandate's holder")
    if proof.htm != method:
        raise InvalidProof("the proof is for another method")
    claimed, actual = normalize_url(proof.htu), normalize_url(url)
    if claimed is None or actual is None or claimed != actual:
        raise InvalidProof("the proof is for another URL")
    at = epoch_seconds(now)
    if proof.iat < at - max_age or proof.iat > at + max_ahead:
        raise InvalidProof("the proof's iat is outside the accepted window")
    if ath is not None and not (proof.ath is not None and constant_time_eq(proof.ath, ath)):
        raise InvalidProof("the proof's ath is not the hash of the mandate presented")
    return proof


class ProofReplayCache:
    """The proofs seen (thumbprint and ``jti``), each until its ``iat`` leaves the window.

    Bounded: when full of live proofs a new one is refused (:class:`ProofsBusy`), never let
    through by forgetting an old one. One process's memory: replicas do not share it.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._until: dict[bytes, int] = {}
        self._order: deque[tuple[bytes, int]] = deque()
        self._swept_at = 0
        self._lock = threading.Lock()

    def remember(self, proof: Proof, until: int, now: int) -> None:
        """Remembers ``proof`` until ``until`` (seconds); refuses one seen and still live."""
        ident = hashlib.sha256(proof.jkt.encode() + b"\0" + proof.jti.encode()).digest()
        with self._lock:
            while self._order and self._order[0][1] <= now:
                front, deadline = self._order.popleft()
                if self._until.get(front) == deadline:
                    del self._until[front]
            live_until = self._until.get(ident)
            if live_until is not None and live_until > now:
                raise InvalidProof("the proof was already used")
            if len(self._until) >= self.capacity and self._swept_at < now:
                self._swept_at = now
                self._until = {k: d for k, d in self._until.items() if d > now}
                self._order = deque(e for e in self._order if self._until.get(e[0]) == e[1])
            if len(self._until) >= self.capacity:
                raise ProofsBusy("too many proofs in flight; retry shortly")
            self._until[ident] = until
            self._order.append((ident, until))

    def __len__(self) -> int:
        return len(self._until)


class ProofChecker:
    """Checks proofs with a window, optional server nonces, and a replay cache.

    A nonce is ``period || HMAC-SHA256(key, period)[:16]``, base64url (as mandate's verifier
    makes them): replicas given the same ``nonce_key`` accept each other's nonces, each in its
    period and the next.
    """

    def __init__(
        self,
        *,
        max_age: int = 60,
        max_ahead: int = 30,
        require_nonce: bool = False,
        nonce_period: int = 300,
        replay_capacity: int = 100_000,
        nonce_key: bytes | None = None,
    ) -> None:
        self.max_age = max_age
        self.max_ahead = max_ahead
        self.require_nonce = require_nonce
        self.nonce_period = max(nonce_period, 1)
        self.replays = ProofReplayCache(replay_capacity)
        self._nonce_key = nonce_key if nonce_key is not None else secrets.token_bytes(32)

    def _mac(self, period: int) -> bytes:
        return hmac.new(self._nonce_key, period.to_bytes(8, "big", signed=True), hashlib.sha256).digest()[:16]

    def nonce(self, now: datetime | float | int) -> str:
        """A nonce for the ``DPoP-Nonce`` header."""
        period = epoch_seconds(now) // self.nonce_period
        return b64url_encode(period.to_bytes(8, "big", signed=True) + self._mac(period))

    def nonce_current(self, nonce: str, now: datetime | float | int) -> bool:
        """Whether ``nonce`` was issued in this period or the one before, with this key."""
        try:
            raw = b64url_decode(nonce)
        except ValueError:
            return False
        if len(raw) < 8:
            return False
        period = int.from_bytes(raw[:8], "big", signed=True)
        current = epoch_seconds(now) // self.nonce_period
        return period in (current, current - 1) and constant_time_eq(raw[8:], self._mac(period))

    def check(
        self,
        jwt: str,
        *,
        method: str,
        url: str,
        ath: str | None,
        holder_jkt: str | None,
        now: datetime | float | int,
    ) -> Proof:
        """:func:`check_proof`, then the nonce when one is required, then that the proof was
        not seen before; a proof that passes is remembered."""
        proof = check_proof(
            jwt, method=method, url=url, ath=ath, holder_jkt=holder_jkt, now=now,
            max_age=self.max_age, max_ahead=self.max_ahead,
        )
        if self.require_nonce and not (proof.nonce is not None and self.nonce_current(proof.nonce, now)):
            raise UseDpopNonce("the proof must carry the nonce the server provides (DPoP-Nonce)")
        self.replays.remember(proof, proof.iat + self.max_age + 1, epoch_seconds(now))
        return proof
