"""The daemon's bounded queue between the sensor's reader and the capture loop (daemon.Backlog)."""

from __future__ import annotations

import threading

from nocry.daemon import Backlog


def _put_in_thread(b: Backlog, events: list) -> threading.Thread:
    t = threading.Thread(target=b.put_events, args=(events,), daemon=True)
    t.start()
    return t


def test_the_reader_waits_at_the_limit_until_the_loop_takes_a_batch() -> None:
    b = Backlog(3)
    b.put_events([1, 2])
    b.put_events([3, 4])  # below the limit when it came: let in whole (a read is never split)
    assert b.events == 4 and b.waits == 0
    t = _put_in_thread(b, [5])
    t.join(0.3)
    assert t.is_alive() and b.waits == 1
    b.put("sync request")  # other threads' requests are never held back
    assert b.get() == [1, 2]
    t.join(2)
    assert not t.is_alive()
    assert [b.get(), b.get(), b.get_nowait()] == [[3, 4], "sync request", [5]]
    assert b.events == 0 and b.peak == 4


def test_close_releases_a_waiting_reader_for_good() -> None:
    b = Backlog(1)
    b.put_events([1])
    t = _put_in_thread(b, [2])
    t.join(0.3)
    assert t.is_alive()
    b.close()
    t.join(2)
    assert not t.is_alive()
    b.put_events([3])  # after close, nothing waits
    assert b.events == 3
