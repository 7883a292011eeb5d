"""Every error the client raises: one base class, typed subclasses naming the problem.

Verification refusals carry the same stable ``code`` as mandate's Rust verifier
(``TokenError::code``); API refusals carry the RFC 9457 problem document, or the OAuth error
of the token endpoint. No error carries a token, a secret or a proof.
"""

from __future__ import annotations

from typing import Any, Mapping


class MandateError(Exception):
    """Base of every error this package raises."""


class VerificationError(MandateError):
    """A mandate refused by a verifier. ``code`` is the Rust verifier's reason code."""

    code: str = "invalid"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ProblemError(MandateError):
    """mandate answered an RFC 9457 problem document (or an OAuth error at /oauth2/token)."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        self.type: str = str(problem.get("type", "about:blank"))
        self.title: str = str(problem.get("title") or problem.get("error") or "error")
        self.detail: str | None = problem.get("detail") or problem.get("error_description")
        super().__init__(f"{status} {self.title}" + (f": {self.detail}" if self.detail else ""))


# --- a token that is not mandate/v1 (read by :mod:`mandate_client.vocabulary`) ------------------


class Malformed(VerificationError):
    """Not a mandate/v1 token (``malformed``)."""

    code = "malformed"


class TooManyBlocks(VerificationError):
    """More blocks than the verifier accepts (``too_many_blocks``)."""

    code = "too_many_blocks"


class NotMandateBlock(VerificationError):
    """A block after the authority is not a mandate/v1 shape (``not_mandate_block``)."""

    code = "not_mandate_block"

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"block {index} is not a mandate/v1 block: {reason}")
        self.index = index
        self.reason = reason
