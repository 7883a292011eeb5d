"""Proof of possession: holder keys, and DPoP proofs made and checked (RFC 9449). The holder's
side (:class:`HolderSecret`, :func:`create_proof`) is here; public keys are in
:mod:`mandate_client.jwk` and proof checking in :mod:`mandate_client.proofs`, and every public
name of both is importable from here.

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

import hashlib
import re
import secrets
import time
import uuid
from datetime import datetime
from typing import Any, Mapping

import biscuit_auth
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from . import _biscuit
from .jwk import (
    ALGORITHMS,
    Algorithm,
    HolderKey,
    InvalidJwk,
    b64url_decode,
    b64url_encode,
    compact_json,
    constant_time_eq,
    coordinate,
    is_thumbprint,
)
from .proofs import (
    MAX_PROOF_BYTES,
    InvalidProof,
    Proof,
    ProofChecker,
    ProofReplayCache,
    ProofsBusy,
    UseDpopNonce,
    check_proof,
    normalize_url,
    parse_proof,
    epoch_seconds,
)

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
    "b64url_decode",
    "b64url_encode",
    "check_proof",
    "constant_time_eq",
    "create_proof",
    "is_thumbprint",
    "normalize_url",
    "parse_proof",
    "token_hash",
]


# --- keys --------------------------------------------------------------------------------------


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
            d = coordinate(jwk, "d")
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
        return _biscuit.private_key(self._d(), "ed25519" if self.algorithm == "EdDSA" else "secp256r1")

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
        "iat": epoch_seconds(now),
    }
    if token is not None:
        claims["ath"] = token_hash(token)
    if nonce is not None:
        claims["nonce"] = nonce
    signing_input = (
        b64url_encode(compact_json(header).encode()) + "." + b64url_encode(compact_json(claims).encode())
    )
    return signing_input + "." + b64url_encode(holder.sign(signing_input.encode("ascii")))


