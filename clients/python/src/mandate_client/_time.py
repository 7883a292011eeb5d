"""Times as mandate's read-outs write them: RFC 3339 in UTC, as chrono serializes a
``DateTime<Utc>`` with whole seconds."""

from __future__ import annotations

__all__ = ["MAX_SECONDS", "format_time"]

#: The last second chrono represents (+262142-12-31T23:59:59Z): later dates are out of range.
MAX_SECONDS = 8_210_266_876_799


def format_time(seconds: int) -> str:
    """RFC 3339 in UTC with a ``Z`` (years past 9999 included, as chrono writes them)."""
    days, rest = divmod(seconds, 86400)
    # Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"
