"""nocry.priority against the real scheduler: every thread of the process is reniced, lowered only
after the hold, raised back at once."""

from __future__ import annotations

import os
import threading
import time

import pytest

from nocry.priority import Priority
from tests.kernel._require import require_root

pytestmark = pytest.mark.kernel


def thread_nices(pid: int | str = "self") -> dict[int, int]:
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except FileNotFoundError:
            continue
        out[int(tid)] = int(fields[16])  # field 19 of proc(5): nice
    return out


def test_every_thread_is_lowered_when_calm_and_raised_at_once_when_pressed() -> None:
    require_root()
    base = os.getpriority(os.PRIO_PROCESS, 0)
    if base > 14:
        pytest.fail(f"the test process runs at nice {base}: no room to lower it by 5")
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait)
    helper.start()
    p = Priority(5, hold_s=0.3)
    try:
        p.calm(time.monotonic())
        assert set(thread_nices().values()) == {base + 5}
        assert p.status()["lowered"]
        p.boost(time.monotonic(), "test")
        assert set(thread_nices().values()) == {base}
        assert p.status() == {"nice": base, "lowered": False, "raised": 1, "last_reason": "test"}
        p.calm(time.monotonic())  # within the hold: stays at normal priority
        assert set(thread_nices().values()) == {base}
        time.sleep(0.35)
        p.calm(time.monotonic())
        assert set(thread_nices().values()) == {base + 5}
    finally:
        p.boost(time.monotonic(), "end of test")
        stop.set()
        helper.join()
    assert set(thread_nices().values()) == {base}


def test_nice_zero_never_touches_the_priority() -> None:
    require_root()
    base = os.getpriority(os.PRIO_PROCESS, 0)
    p = Priority(0)
    p.calm(time.monotonic())
    assert set(thread_nices().values()) == {base}
    assert not p.lowered
