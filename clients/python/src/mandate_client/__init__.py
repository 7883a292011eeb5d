"""mandate's Python client: verify mandates offline, hold and narrow them, call the service.

The verifier side: :class:`Verifier` (keys fetched from mandate, tokens cached) and
:func:`mandate_client.verify.verify_token` (one token, given keys); proofs of possession in
:mod:`mandate_client.pop`; the revocation feed in :mod:`mandate_client.revocations`; receipts
in :mod:`mandate_client.receipts`; ASGI and MCP glue in :mod:`mandate_client.asgi` and
:mod:`mandate_client.mcp`.
"""

from __future__ import annotations

from .errors import MandateError, ProblemError, VerificationError
from .pop import HolderKey, HolderSecret, create_proof, token_hash

__all__ = [
    "HolderKey",
    "HolderSecret",
    "MandateError",
    "ProblemError",
    "VerificationError",
    "create_proof",
    "token_hash",
]
