"""Parse the moments users type: ``--at 2026-11-29T10:15``, ``--at 1764411300``, ``--at "10 minutes ago"``.

Accepted forms (local time unless a zone is given):
    ISO-8601 date or date-time        2026-11-29, 2026-11-29T10:15:30, 2026-11-29 10:15+01:00
    Unix seconds                      1764411300, 1764411300.25, @1764411300
    relative                          now, 90s ago, 10 minutes ago, 2h ago, -15m, 1 day ago
    nanoseconds (as printed by --json) 1764411300250000000
"""

from __future__ import annotations

import re
import time
from datetime import datetime

from nocry.errors import UserError

__all__ = ["parse_time_ns"]

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip

_REL = re.compile(r"^\s*(?:-\s*(?P<n1>\d+(?:\.\d+)?)\s*(?P<u1>[a-z]+)|(?P<n2>\d+(?:\.\d+)?)\s*(?P<u2>[a-z]+)\s+ago)\s*$")


def parse_time_ns(text: str, *, now_ns: int | None = None) -> int:
    """A moment as nanoseconds since the epoch."""
    s = text.strip()
    now = time.time_ns() if now_ns is None else now_ns
    if not s:
        raise UserError("empty time")
    if s.lower() == "now":
        return now
    m = _REL.match(s.lower())
    if m:
        n = float(m.group("n1") or m.group("n2"))
        unit = m.group("u1") or m.group("u2")
        if unit not in _UNITS:
            raise UserError(f"unknown time unit {unit!r} in {text!r}", hint="use s, m, h, d or w")
        return now - int(n * _UNITS[unit] * 1e9)
    num = s[1:] if s.startswith("@") else s
    if re.fullmatch(r"\d+(\.\d+)?", num):
        value = float(num)
        if value > 1e17:  # nanoseconds
            return int(num)
        return int(round(value * 1e9)) if "." in num else int(num) * 1_000_000_000
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise UserError(
            f"cannot read the time {text!r}",
            hint="use ISO-8601 (2026-11-29T10:15), Unix seconds, or a relative time such as '10 minutes ago'",
        ) from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # local time
    return int(dt.timestamp() * 1_000_000) * 1000
