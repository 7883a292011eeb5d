"""RFC 8785 (JCS) canonical JSON, and the SHA-256 of a call's arguments in it (mandate's
``src/token/canonical.rs``): what receipts report (:mod:`mandate_client.receipts`) and what an
approval bound to exact arguments carries (``approval_arguments``, checked by the verifier
through the ``arguments_sha256`` fact it states).
"""

from __future__ import annotations

import hashlib
import math
from decimal import Decimal
from typing import Any

__all__ = ["MAX_DEPTH", "arguments_sha256", "canonical_json"]

#: The deepest arrays and objects hashed (deeper arguments have no digest).
MAX_DEPTH = 64

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _string(text: str) -> str:
    out = ['"']
    for c in text:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif ord(c) < 0x20:
            out.append(f"\\u{ord(c):04x}")
        elif 0xD800 <= ord(c) <= 0xDFFF:
            raise ValueError("a string holds a lone surrogate, which JSON text cannot")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _number(value: float) -> str:
    """A number as ECMAScript's ``Number.prototype.toString`` writes it (RFC 8785 3.2.2.3)."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError("NaN and infinities are not JSON")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr gives the shortest digits that round-trip, as ECMAScript requires.
    _, digits_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digits_tuple)).rstrip("0")
    trimmed = len("".join(map(str, digits_tuple))) - len(digits)
    k = len(digits)
    n = k + int(exponent) + trimmed
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        body = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + body


def canonical_json(value: Any) -> str:
    """RFC 8785 (JCS) canonical JSON of ``value``: members sorted by their UTF-16 code units,
    no whitespace, numbers as ECMAScript writes doubles, minimal string escapes. Raises
    ``ValueError`` for what has no JSON form (``NaN``, a lone surrogate, a non-JSON type) and for
    arrays and objects nested deeper than :data:`MAX_DEPTH`."""
    return _canonical(value, 0)


def _canonical(value: Any, depth: int) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        # JSON numbers are doubles: an integer beyond 2^53 is written as the double it becomes.
        if abs(value) <= 2**53:
            return str(value)
        try:
            return _number(float(value))
        except OverflowError:
            raise ValueError("an integer too large for a JSON number") from None
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple, dict)) and depth >= MAX_DEPTH:
        raise ValueError(f"arrays and objects nested deeper than {MAX_DEPTH}")
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_canonical(v, depth + 1) for v in value) + "]"
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ValueError("object member names are strings")
        members = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return "{" + ",".join(_string(k) + ":" + _canonical(v, depth + 1) for k, v in members) + "}"
    raise ValueError(f"{type(value).__name__} is not a JSON type")


def arguments_sha256(arguments: Any) -> str:
    """SHA-256, hex, of the RFC 8785 canonical JSON of a call's arguments."""
    return hashlib.sha256(canonical_json(arguments).encode("utf-8")).hexdigest()
