"""Recording and replaying event streams: what goes in comes out, byte for byte."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from nocry.events import Event, FileEvent, Op, Overflow, Subject
from nocry.sensor.record import Recorder, ReplaySensor, read_recording

T0 = 1_700_000_000_000_000_000
ALICE = Subject(pid=4242, start_time=987654, exe=b"/usr/bin/\xffpython", comm="py thon)", uid=1000, ppid=1, sid=4200)


def sample_events() -> list[Event]:
    return [
        FileEvent(ops=Op.CREATE | Op.MODIFY | Op.CLOSE_WRITE, path=b"/srv/share/report.docx", time_ns=T0, seq=1, subject=ALICE),
        FileEvent(ops=Op.CREATE, path=b"/srv/share/caf\xe9 latin-1.txt", time_ns=T0, seq=2, subject=ALICE),
        FileEvent(ops=Op.DELETE, path=b"/srv/share/line\nbreak", time_ns=T0, seq=3, subject=None),
        FileEvent(
            ops=Op.RENAME,
            path=b"/srv/share/new\xfe",
            old_path=b"/srv/share/old\nname",
            time_ns=T0 + 5,
            seq=4,
            is_dir=True,
            subject=Subject(pid=7),
        ),
        Overflow(time_ns=T0 + 5, seq=5, trees=(b"/srv/share", b"/srv/\xff"), reason="queue_overflow"),
        FileEvent(ops=Op.OPEN | Op.ACCESS | Op.CLOSE_NOWRITE, path=b"/srv/share/a", time_ns=T0 + 9, seq=6, subject=ALICE),
        Overflow(time_ns=T0 + 9, seq=7, trees=(b"/srv/share",), reason="unresolved"),
    ]


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    events = sample_events()
    with Recorder(path) as rec:
        rec(events[:3])
        rec(events[3:])
        rec([])  # empty batches write nothing
        assert (rec.events_written, rec.batches_written) == (7, 2)
    assert list(read_recording(path)) == events


def test_one_line_per_event_even_with_newlines_in_names(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    with Recorder(path) as rec:
        rec(sample_events())
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 8
    assert all(line.isascii() for line in lines)
    assert b'"path_b64"' in lines[1]  # not UTF-8: travels as base64 too


def test_recorder_appends_and_flushes_per_batch(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    events = sample_events()
    rec = Recorder(path)
    rec(events[:2])
    assert list(read_recording(path)) == events[:2]  # readable before close: flushed
    rec.close()
    with Recorder(path) as again:
        again(events[2:])
    assert list(read_recording(path)) == events
    with pytest.raises(ValueError):
        rec(events)


def test_recorder_forwards_and_wraps(tmp_path: Path) -> None:
    got: list[list[Event]] = []
    events = sample_events()
    with Recorder(tmp_path / "a.jsonl", forward=got.append) as rec:
        rec(events)
    with Recorder(tmp_path / "b.jsonl") as rec:
        rec.wrap(got.append)(events)
    assert got == [events, events]
    assert list(read_recording(tmp_path / "a.jsonl")) == list(read_recording(tmp_path / "b.jsonl")) == events


def test_replay_rebuilds_the_read_batches(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    events = sample_events()
    with Recorder(path) as rec:
        rec(events)
    batches: list[list[Event]] = []
    sensor = ReplaySensor(path, batches.append)
    sensor.start()  # synchronous: everything is delivered when start() returns
    sensor.stop()
    sensor.stop()  # idempotent
    assert batches == [events[:3], events[3:5], events[5:]]
    assert (sensor.events_total, sensor.events_emitted, sensor.read_batches) == (7, 7, 3)
    assert (sensor.overflows, sensor.unresolved) == (1, 1)


def test_replay_splits_big_batches(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    events = [FileEvent(ops=Op.MODIFY, path=b"/t/%d" % i, time_ns=T0, seq=i) for i in range(10)]
    with Recorder(path) as rec:
        rec(events)
    batches: list[list[Event]] = []
    with ReplaySensor(path, batches.append, max_batch=4):
        pass
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [e for b in batches for e in b] == events


def test_threaded_replay_and_stop(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    events = [FileEvent(ops=Op.MODIFY, path=b"/t/%d" % i, time_ns=T0 + i, seq=i) for i in range(50)]
    with Recorder(path) as rec:
        rec(events)
    release = threading.Event()
    entered = threading.Event()
    got: list[Event] = []

    def slow_sink(batch: list[Event]) -> None:
        got.extend(batch)
        entered.set()
        release.wait(5)

    sensor = ReplaySensor(path, slow_sink, threaded=True)
    sensor.start()
    with pytest.raises(RuntimeError):
        sensor.start()
    assert entered.wait(5)
    sensor.stop(timeout=0.05)  # asks it to stop; the sink is still blocked
    release.set()
    assert sensor.wait(5)
    assert sensor.error is None
    assert 1 <= len(got) < 50  # stopped between batches
    full: list[Event] = []
    done = ReplaySensor(path, full.extend, threaded=True)
    done.start()
    assert done.wait(5) and full == events


def test_torn_last_line_is_skipped_bad_middle_line_raises(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    events = sample_events()
    with Recorder(path) as rec:
        rec(events)
    data = path.read_bytes()
    path.write_bytes(data + b'{"v":1,"type":"fi')
    assert list(read_recording(path)) == events
    path.write_bytes(b'{"v":1,"type":"fi\n' + data)
    with pytest.raises(ValueError, match=":1:"):
        list(read_recording(path))
    path.write_bytes(data + b'{"v":1,"type":"nonsense"}\n')
    with pytest.raises(ValueError, match=":8:"):
        list(read_recording(path))
