from datetime import datetime, timezone

import pytest

from nocry.errors import UserError
from nocry.timeparse import parse_time_ns

NOW = 1_764_411_300_000_000_000


@pytest.mark.parametrize(
    "text,want",
    [
        ("now", NOW),
        ("1764411300", 1_764_411_300_000_000_000),
        ("@1764411300.5", 1_764_411_300_500_000_000),
        ("1764411300250000000", 1_764_411_300_250_000_000),
        ("10 minutes ago", NOW - 600 * 10**9),
        ("-90s", NOW - 90 * 10**9),
        ("2h ago", NOW - 7200 * 10**9),
        ("2026-11-29T10:15:00+00:00", int(datetime(2026, 11, 29, 10, 15, tzinfo=timezone.utc).timestamp()) * 10**9),
    ],
)
def test_forms(text, want):
    assert parse_time_ns(text, now_ns=NOW) == want


def test_local_iso_time_is_local():
    want = int(datetime(2026, 11, 29, 10, 15).astimezone().timestamp()) * 10**9
    assert parse_time_ns("2026-11-29 10:15") == want


@pytest.mark.parametrize("text", ["", "yesterdayish", "5 fortnights ago", "2026-13-01"])
def test_bad_times_are_user_errors(text):
    with pytest.raises(UserError):
        parse_time_ns(text, now_ns=NOW)
