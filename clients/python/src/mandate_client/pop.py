"""Proof of possession: holder keys, and DPoP proofs made and checked (RFC 9449).

A mandate may be bound to its holder's key (Ed25519 or P-256), named by its RFC 7638
thumbprint. Each call with a bound mandate then carries a DPoP proof: a compact JWS with header
``{"typ":"dpop+jwt","alg":…,"jwk":…}`` and claims ``jti``, ``htm``, ``htu``, ``iat``, ``ath``
(and ``nonce`` when the server asks for one).

- :class:`HolderKey` is a public key read from a JWK (private members and weak Ed25519 keys
  refused); :class:`HolderSecret` is a key pair that signs proofs and third-party Biscuit blocks.
- :func:`create_proof` makes a proof for one call.
- :func:`check_proof` checks a proof in the order mandate's Rust verifier does
  (``src/token/pop/proof.rs``); :class:`ProofChecker` adds server nonces and the bounded
  :class:`ProofReplayCache` (``src/token/pop/replay.rs``).

No error message carries a proof, a token or a key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Mapping

import biscuit_auth
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding, PrivateFormat, PublicFormat, NoEncryption

from .errors import MandateError, VerificationError

__all__ = [
    "ALGORITHMS",
    "MAX_PROOF_BYTES",
    "Algorithm",
    "HolderKey",
    "HolderSecret",
    "InvalidJwk",
    "InvalidProof",
    "Proof",
    "ProofChecker",
    "ProofReplayCache",
    "ProofsBusy",
    "UseDpopNonce",
    "check_proof",
    "constant_time_eq",
    "create_proof",
    "is_thumbprint",
    "normalize_url",
    "token_hash",
]

Algorithm = Literal["EdDSA", "ES256"]
#: The JWS algorithms a proof may be signed with.
ALGORITHMS: tuple[str, str] = ("EdDSA", "ES256")
#: The largest proof parsed, in bytes.
MAX_PROOF_BYTES = 4096
#: The longest ``jti``, ``nonce``, ``htu`` (and other string claims) accepted.
_MAX_CLAIM = 2048


class InvalidJwk(MandateError):
    """A JWK that is not a holder key (the message says why; it never repeats the key)."""


class InvalidProof(VerificationError):
    """A DPoP proof refused (RFC 9449 ``invalid_dpop_proof``)."""

    code = "invalid_dpop_proof"


class UseDpopNonce(VerificationError):
    """The proof must carry the nonce the server provides (RFC 9449 ``use_dpop_nonce``)."""

    code = "use_dpop_nonce"


class ProofsBusy(InvalidProof):
    """The replay cache is full of live proofs: refused rather than forgetting one (503)."""


# --- encodings -------------------------------------------------------------------------------

_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding: other characters or non-zero trailing bits refused."""
    if not _B64URL.match(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url_encode(raw) != text:
        raise ValueError("not canonical base64url")
    return raw


def b64url_encode(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _compact_json(value: Any) -> str:
    """JSON with sorted members and no whitespace (as serde_json writes a ``Value``)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def constant_time_eq(a: str | bytes, b: str | bytes) -> bool:
    """Whether ``a`` and ``b`` are equal, in time that depends only on their lengths."""
    left = a.encode() if isinstance(a, str) else a
    right = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(left, right)


def is_thumbprint(text: str) -> bool:
    """Whether ``text`` has the form of an RFC 7638 thumbprint: 43 base64url characters."""
    return len(text) == 43 and bool(_B64URL.match(text))


# --- Ed25519 point checks (what ed25519-dalek decides) -----------------------------------------

_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
# The y coordinates of the eight points of small order (the identity, order 2, 4 and 8).
_Y_ORDER_8 = 0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7
_SMALL_ORDER_Y = frozenset({1, _P - 1, 0, _Y_ORDER_8, _P - _Y_ORDER_8})


def _ed25519_y(encoded: bytes) -> int:
    return (int.from_bytes(encoded, "little") & ((1 << 255) - 1)) % _P


def _ed25519_on_curve(encoded: bytes) -> bool:
    """Whether the 32 bytes decompress to a point of the curve (x² = (y²-1)/(dy²+1) a square)."""
    y = _ed25519_y(encoded)
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x2 = u * pow(v, _P - 2, _P) % _P
    if x2 == 0:
        # x = 0 is a point; a set sign bit on it still decompresses to it.
        return True
    return pow(x2, (_P - 1) // 2, _P) == 1


def _ed25519_weak(encoded: bytes) -> bool:
    """Whether the point is of small order (it verifies signatures nobody made)."""
    return _ed25519_y(encoded) in _SMALL_ORDER_Y


# --- keys --------------------------------------------------------------------------------------


def _coordinate(jwk: Mapping[str, Any], name: str) -> bytes:
    text = jwk.get(name)
    if not isinstance(text, str):
        raise InvalidJwk("not a holder key: a coordinate is missing")
    try:
        raw = b64url_decode(text)
    except ValueError:
        raise InvalidJwk("not a holder key: a coordinate is not base64url") from None
    if len(raw) != 32:
        raise InvalidJwk("not a holder key: a coordinate is not 32 bytes")
    return raw


class HolderKey:
    """A holder's public key: Ed25519 (``EdDSA``) or P-256 (``ES256``)."""

    __slots__ = ("_key", "_jwk", "_thumbprint")

    def __init__(self, key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey) -> None:
        self._key = key
        self._jwk = self._public_jwk(key)
        digest = hashlib.sha256(_compact_json(self._jwk).encode()).digest()
        self._thumbprint = b64url_encode(digest)

    @staticmethod
    def _public_jwk(key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey) -> dict[str, str]:
        if isinstance(key, ed25519.Ed25519PublicKey):
            raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
            return {"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(raw)}
        numbers = key.public_numbers()
        return {
            "crv": "P-256",
            "kty": "EC",
            "x": b64url_encode(numbers.x.to_bytes(32, "big")),
            "y": b64url_encode(numbers.y.to_bytes(32, "big")),
        }

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> HolderKey:
        """Reads a public JWK. A JWK with private members (``d``) is refused."""
        if not isinstance(jwk, Mapping):
            raise InvalidJwk("not a holder key: a JWK is a JSON object")
        if "d" in jwk:
            raise InvalidJwk("not a holder key: it carries a private key (`d`); send the public key only")
        return cls._public_of(jwk)

    @classmethod
    def _public_of(cls, jwk: Mapping[str, Any]) -> HolderKey:
        kty, crv = jwk.get("kty"), jwk.get("crv")
        if kty == "OKP" and crv == "Ed25519":
            x = _coordinate(jwk, "x")
            if not _ed25519_on_curve(x):
                raise InvalidJwk("not a holder key: not an Ed25519 public key")
            if _ed25519_weak(x):
                raise InvalidJwk("not a holder key: a weak Ed25519 key (a point of small order)")
            return cls(ed25519.Ed25519PublicKey.from_public_bytes(x))
        if kty == "EC" and crv == "P-256":
            x = int.from_bytes(_coordinate(jwk, "x"), "big")
            y = int.from_bytes(_coordinate(jwk, "y"), "big")
            try:
                key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
            except ValueError:
                raise InvalidJwk("not a holder key: not a point of P-256") from None
            return cls(key)
        raise InvalidJwk("not a holder key: only Ed25519 (kty OKP) and P-256 (kty EC) keys are accepted")

    @classmethod
    def from_biscuit_bytes(cls, algorithm: int, key: bytes) -> HolderKey | None:
        """The key that signed a third-party block (protobuf ``PublicKey``: 0 Ed25519, 1
        P-256 in SEC1 form), or ``None`` when it is not a usable key."""
        try:
            if algorithm == 0 and len(key) == 32 and _ed25519_on_curve(key):
                return cls(ed25519.Ed25519PublicKey.from_public_bytes(key))
            if algorithm == 1:
                return cls(ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key))
        except ValueError:
            return None
        return None

    def to_jwk(self) -> dict[str, str]:
        """The public JWK, with only the members RFC 7638 hashes."""
        return dict(self._jwk)

    @property
    def thumbprint(self) -> str:
        """The RFC 7638 thumbprint: base64url SHA-256 of the sorted required members."""
        return self._thumbprint

    @property
    def algorithm(self) -> Algorithm:
        """The JWS algorithm this key signs with."""
        return "EdDSA" if isinstance(self._key, ed25519.Ed25519PublicKey) else "ES256"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (JWS form: 64 bytes for both algorithms) signs ``message``."""
        if len(signature) != 64:
            return False
        try:
            if isinstance(self._key, ed25519.Ed25519PublicKey):
                # As ed25519-dalek's verify_strict: no R of small order.
                if _ed25519_weak(signature[:32]):
                    return False
                self._key.verify(signature, message)
            else:
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                if r == 0 or s == 0:
                    return False
                self._key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HolderKey) and other._thumbprint == self._thumbprint

    def __hash__(self) -> int:
        return hash(self._thumbprint)

    def __repr__(self) -> str:
        return f"HolderKey({self.algorithm}, thumbprint={self._thumbprint})"


class HolderSecret:
    """A holder's key pair: signs proofs, and third-party Biscuit blocks (rebindings)."""

    __slots__ = ("_signing", "_public")

    def __init__(self, signing: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> None:
        self._signing = signing
        self._public = HolderKey(signing.public_key())

    @classmethod
    def generate(cls, alg: Algorithm = "EdDSA") -> HolderSecret:
        """A new key of ``alg`` (``EdDSA`` or ``ES256``), from the operating system's generator."""
        if alg == "EdDSA":
            return cls(ed25519.Ed25519PrivateKey.generate())
        if alg == "ES256":
            return cls(ec.generate_private_key(ec.SECP256R1()))
        raise InvalidJwk("the algorithm is EdDSA or ES256")

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> HolderSecret:
        """Reads a private JWK (``d`` beside the public members, which must agree with it)."""
        if not isinstance(jwk, Mapping):
            raise InvalidJwk("not a holder key: a JWK is a JSON object")
        public = HolderKey._public_of(jwk)
        try:
            d = _coordinate(jwk, "d")
        except InvalidJwk:
            raise InvalidJwk("not a holder key: a private JWK has a 32-byte `d`") from None
        signing: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
        if public.algorithm == "EdDSA":
            signing = ed25519.Ed25519PrivateKey.from_private_bytes(d)
        else:
            try:
                signing = ec.derive_private_key(int.from_bytes(d, "big"), ec.SECP256R1())
            except ValueError:
                raise InvalidJwk("not a holder key: not a P-256 private key") from None
        secret = cls(signing)
        if secret.public != public:
            raise InvalidJwk("not a holder key: `d` is not the private key of `x` (and `y`)")
        return secret

    def _d(self) -> bytes:
        if isinstance(self._signing, ed25519.Ed25519PrivateKey):
            return self._signing.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return self._signing.private_numbers().private_value.to_bytes(32, "big")

    def to_jwk(self) -> dict[str, str]:
        """The private JWK: keep it where only the holder reads it."""
        jwk = self._public.to_jwk()
        jwk["d"] = b64url_encode(self._d())
        return jwk

    @property
    def public(self) -> HolderKey:
        """The public key."""
        return self._public

    @property
    def thumbprint(self) -> str:
        """The public key's RFC 7638 thumbprint."""
        return self._public.thumbprint

    @property
    def algorithm(self) -> Algorithm:
        """The JWS algorithm this key signs with."""
        return self._public.algorithm

    def sign(self, message: bytes) -> bytes:
        """A JWS signature of ``message``: 64 bytes (ES256: raw ``r || s``)."""
        if isinstance(self._signing, ed25519.Ed25519PrivateKey):
            return self._signing.sign(message)
        der = self._signing.sign(message, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def biscuit_private_key(self) -> biscuit_auth.PrivateKey:
        """The same key as biscuit-auth signs third-party blocks with it."""
        algorithm = (
            biscuit_auth.Algorithm.Ed25519
            if self.algorithm == "EdDSA"
            else biscuit_auth.Algorithm.Secp256r1
        )
        return biscuit_auth.PrivateKey.from_bytes(self._d(), algorithm)  # type: ignore[call-arg]

    def __repr__(self) -> str:
        return f"HolderSecret({self.algorithm}, thumbprint={self.thumbprint})"


# --- making proofs -----------------------------------------------------------------------------


def token_hash(token: str) -> str:
    """The ``ath`` of a token: base64url of the SHA-256 of its ASCII."""
    return b64url_encode(hashlib.sha256(token.strip().encode()).digest())


def _uuid7() -> str:
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80 | secrets.randbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))


def _seconds(now: datetime | float | int | None) -> int:
    if now is None:
        return int(time.time())
    if isinstance(now, datetime):
        return int(now.timestamp())
    return int(now)


def create_proof(
    holder: HolderSecret,
    method: str,
    url: str,
    token: str | None = None,
    nonce: str | None = None,
    now: datetime | float | int | None = None,
) -> str:
    """A proof for a call of ``method`` on ``url`` signed by ``holder``, presenting ``token``
    (``None`` at a token endpoint), with the server's ``nonce`` if it gave one, dated ``now``."""
    header = {"typ": "dpop+jwt", "alg": holder.algorithm, "jwk": holder.public.to_jwk()}
    claims: dict[str, Any] = {
        "jti": _uuid7(),
        "htm": method,
        "htu": re.split(r"[?#]", url, maxsplit=1)[0],
        "iat": _seconds(now),
    }
    if token is not None:
        claims["ath"] = token_hash(token)
    if nonce is not None:
        claims["nonce"] = nonce
    signing_input = (
        b64url_encode(_compact_json(header).encode()) + "." + b64url_encode(_compact_json(claims).encode())
    )
    return signing_input + "." + b64url_encode(holder.sign(signing_input.encode("ascii")))


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
    get = head.get if isinstance(head, dict) else (lambda _name: None)
    if get("typ") != "dpop+jwt":
        raise InvalidProof("malformed proof: typ must be dpop+jwt")
    if isinstance(head, dict) and "crit" in head:
        raise InvalidProof("malformed proof: no crit extensions are understood")
    alg = get("alg")
    if alg not in ALGORITHMS:
        raise InvalidProof("malformed proof: alg must be EdDSA or ES256")
    jwk = get("jwk")
    if not isinstance(head, dict) or "jwk" not in head:
        raise InvalidProof("malformed proof: the header carries no jwk")
    try:
        key = HolderKey.from_jwk(jwk)
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
    seconds = _seconds(now)
    if proof.iat < seconds - max_age or proof.iat > seconds + max_ahead:
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
            deadline = self._until.get(ident)
            if deadline is not None and deadline > now:
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
        period = _seconds(now) // self.nonce_period
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
        current = _seconds(now) // self.nonce_period
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
        self.replays.remember(proof, proof.iat + self.max_age + 1, _seconds(now))
        return proof
