"""Holder public keys (RFC 7517 JWKs, RFC 7638 thumbprints): :class:`HolderKey` reads a public
Ed25519 or P-256 JWK, refusing private members and weak Ed25519 keys as ed25519-dalek does,
and checks JWS signatures; plus the strict base64url and JSON encodings every JOSE object here
uses. :mod:`mandate_client.proofs` checks proofs with these keys; :mod:`mandate_client.pop`
re-exports every public name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any, Literal, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import MandateError

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "HolderKey",
    "InvalidJwk",
    "b64url_decode",
    "b64url_encode",
    "compact_json",
    "constant_time_eq",
    "coordinate",
    "is_thumbprint",
]

Algorithm = Literal["EdDSA", "ES256"]
#: The JWS algorithms a proof may be signed with.
ALGORITHMS: tuple[str, str] = ("EdDSA", "ES256")


class InvalidJwk(MandateError):
    """A JWK that is not a holder key (the message says why; it never repeats the key)."""


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


def compact_json(value: Any) -> str:
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


# --- keys ---------------------------------------------------------------------------------------


def coordinate(jwk: Mapping[str, Any], name: str) -> bytes:
    """The 32 bytes of the JWK member ``name`` (``x``, ``y`` or ``d``)."""
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
        digest = hashlib.sha256(compact_json(self._jwk).encode()).digest()
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
            x = coordinate(jwk, "x")
            if not _ed25519_on_curve(x):
                raise InvalidJwk("not a holder key: not an Ed25519 public key")
            if _ed25519_weak(x):
                raise InvalidJwk("not a holder key: a weak Ed25519 key (a point of small order)")
            return cls(ed25519.Ed25519PublicKey.from_public_bytes(x))
        if kty == "EC" and crv == "P-256":
            px = int.from_bytes(coordinate(jwk, "x"), "big")
            py = int.from_bytes(coordinate(jwk, "y"), "big")
            try:
                key = ec.EllipticCurvePublicNumbers(px, py, ec.SECP256R1()).public_key()
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
