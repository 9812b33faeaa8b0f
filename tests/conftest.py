"""Shared test fixtures.

Kernel tests (marked ``kernel``) need root and a real kernel. They skip when that is missing, but
when ``NOCRY_TEST_DISALLOW_SKIP=1`` (CI sets it) every skip becomes a failure, so a CI machine that
cannot run them fails loudly instead of passing quietly.
"""

from __future__ import annotations

import os

import pytest

DISALLOW_SKIP = os.environ.get("NOCRY_TEST_DISALLOW_SKIP") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if DISALLOW_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped, but NOCRY_TEST_DISALLOW_SKIP=1 forbids skips: {reason}"


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    for item in items:
        if item.get_closest_marker("kernel"):
            item.add_marker(pytest.mark.skip(reason="kernel tests need root"))
