"""Preconditions of kernel tests: skip when unmet, fail instead when NOCRY_TEST_DISALLOW_SKIP=1.

    from tests.kernel._require import require_root
    require_root()          # in a fixture or at the top of a test
"""

from __future__ import annotations

import os

import pytest

__all__ = ["require_root", "skip_or_fail"]


def skip_or_fail(reason: str) -> None:
    """pytest.skip, or pytest.fail when the environment forbids skipping (CI)."""
    if os.environ.get("NOCRY_TEST_DISALLOW_SKIP") == "1":
        pytest.fail(f"{reason} (NOCRY_TEST_DISALLOW_SKIP=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


def require_root() -> None:
    if os.geteuid() != 0:
        skip_or_fail("kernel tests need root")
