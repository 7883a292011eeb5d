"""The few biscuit-python 0.4.0 calls whose published stub is wrong or incomplete.

biscuit-python 0.4.0 takes an ``Algorithm`` in ``PublicKey.from_bytes`` and
``PrivateKey.from_bytes``, has ``Algorithm.Ed25519`` / ``Algorithm.Secp256r1``, and has
``AuthorizerBuilder.limits()`` / ``set_limits()``; its ``__init__.pyi`` declares none of
these. Every such call goes through this module, typed as the runtime behaves, so the rest
of the package is checked against the stub unchanged.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal, Protocol, cast

import biscuit_auth

KeyAlgorithm = Literal["ed25519", "secp256r1"]

# ``Algorithm`` is declared as an empty class in the stub; its members exist at runtime.
_ALGORITHMS: dict[str, Any] = {
    "ed25519": cast(Any, biscuit_auth.Algorithm).Ed25519,
    "secp256r1": cast(Any, biscuit_auth.Algorithm).Secp256r1,
}


class AuthorizerLimits(Protocol):
    """The runtime ``AuthorizerLimits`` object (absent from the stub)."""

    max_facts: int
    max_iterations: int
    max_time: timedelta


def public_key(raw: bytes, algorithm: KeyAlgorithm = "ed25519") -> biscuit_auth.PublicKey:
    """``PublicKey.from_bytes(raw, algorithm)``; the stub omits the algorithm argument."""
    from_bytes: Any = biscuit_auth.PublicKey.from_bytes
    return cast(biscuit_auth.PublicKey, from_bytes(raw, _ALGORITHMS[algorithm]))


def private_key(raw: bytes, algorithm: KeyAlgorithm = "ed25519") -> biscuit_auth.PrivateKey:
    """``PrivateKey.from_bytes(raw, algorithm)``; the stub omits the algorithm argument."""
    from_bytes: Any = biscuit_auth.PrivateKey.from_bytes
    return cast(biscuit_auth.PrivateKey, from_bytes(raw, _ALGORITHMS[algorithm]))


def set_limits(
    builder: biscuit_auth.AuthorizerBuilder, *, max_facts: int, max_iterations: int, max_time: timedelta
) -> None:
    """Sets the authorizer's run limits; ``limits``/``set_limits`` are missing from the stub."""
    runtime: Any = builder
    limits = cast(AuthorizerLimits, runtime.limits())
    limits.max_facts = max_facts
    limits.max_iterations = max_iterations
    limits.max_time = max_time
    runtime.set_limits(limits)
