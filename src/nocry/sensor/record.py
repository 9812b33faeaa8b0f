"""Recordings: event streams as JSON lines, and a sensor that replays them.

A recording is one JSON object per line, exactly :func:`nocry.events.event_to_record` (so paths
that are not UTF-8 travel as ``path_b64``, and a newline inside a name is escaped by JSON). The
detector is a pure function of the event stream, so a recording replayed through
:class:`ReplaySensor` gives the same verdicts as the live run: golden tests and field incidents
are recordings. ::

    rec = Recorder("run.jsonl", forward=queue_batch)   # rec(batch): append + flush, then forward
    ...
    ReplaySensor("run.jsonl", sink).start()            # same sink calls, same batches, same events

Batches: the live sensor stamps every event of one read() with the same ``time_ns``, so a replay
rebuilds the original batches by grouping consecutive events with equal ``time_ns``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import BinaryIO

from nocry.events import Event, Overflow, event_from_record, event_to_record

__all__ = ["Recorder", "ReplaySensor", "read_recording"]

log = logging.getLogger(__name__)

PathLike = str | bytes | os.PathLike[str] | os.PathLike[bytes]


def _to_record(item) -> dict:
    """Events, and any other plain record that knows how to serialise itself (the detector's
    input also holds content features): a recording is everything the detector saw."""
    to_record = getattr(item, "to_record", None)
    if to_record is not None and not isinstance(item, Event.__args__):  # type: ignore[attr-defined]
        return to_record()
    return event_to_record(item)


class Recorder:
    """Appends batches of events to a JSON-lines file, flushed once per batch.

    Callable as a sink (``rec(batch)``); with ``forward`` it also passes the batch on, so it can
    be slotted between a sensor and its consumer. Meant to run outside the sensor's reader thread
    (JSON is too slow for it); calls from several threads are serialised."""

    def __init__(self, path: PathLike, forward: Callable[[list[Event]], None] | None = None, *, fsync: bool = False) -> None:
        self.path = path
        self._forward = forward
        self._fsync = fsync
        self._file: BinaryIO | None = open(path, "ab")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()
        self.events_written = 0
        self.batches_written = 0

    def record(self, events: list[Event]) -> None:
        if not events:
            return
        data = b"".join(json.dumps(_to_record(ev), separators=(",", ":")).encode("ascii") + b"\n" for ev in events)
        with self._lock:
            if self._file is None:
                raise ValueError("Recorder is closed")
            self._file.write(data)
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
            self.events_written += len(events)
            self.batches_written += 1

    def __call__(self, events: list[Event]) -> None:
        self.record(events)
        if self._forward is not None:
            self._forward(events)

    def wrap(self, sink: Callable[[list[Event]], None]) -> Callable[[list[Event]], None]:
        """A sink that records each batch, then passes it to ``sink``."""

        def recording_sink(events: list[Event]) -> None:
            self.record(events)
            sink(events)

        return recording_sink

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def read_recording(path: PathLike, extra: dict[str, Callable[[dict], object]] | None = None) -> Iterator[Event]:
    """Yield the events of a recording in order. A torn last line (the recorder died mid-write)
    is skipped with a warning; a bad line anywhere else raises ValueError naming it. ``extra``
    maps other record types (the detector's content features) to their parsers."""
    with open(path, "rb") as f:
        lineno = 0
        for raw in f:
            lineno += 1
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except ValueError as exc:
                if not raw.endswith(b"\n") and not f.read(1):
                    log.warning("recording %s: torn last line %d skipped", os.fsdecode(path), lineno)
                    return
                raise ValueError(f"{os.fsdecode(path)}:{lineno}: not a JSON event line: {exc}") from exc
            try:
                parse = (extra or {}).get(rec.get("type"))
                yield parse(rec) if parse is not None else event_from_record(rec)  # type: ignore[misc]
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError(f"{os.fsdecode(path)}:{lineno}: bad event record: {exc!r}") from exc


class ReplaySensor:
    """Feeds a recording to ``sink`` with the interface of :class:`FanotifySensor`.

    ``start()`` replays synchronously, all of it, before returning (deterministic: what golden
    tests want). With ``threaded=True`` it replays on a thread instead and ``stop()`` interrupts
    it between batches and joins. Batches follow the recording's read batches (equal
    ``time_ns``), split at ``max_batch`` events."""

    def __init__(
        self,
        path: PathLike,
        sink: Callable[[list[Event]], None],
        *,
        threaded: bool = False,
        max_batch: int = 4096,
    ) -> None:
        self.path = path
        self._sink = sink
        self.threaded = threaded
        self.max_batch = max_batch
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self.error: BaseException | None = None
        self.events_total = 0
        self.events_emitted = 0
        self.overflows = 0
        self.unresolved = 0
        self.read_batches = 0

    def start(self) -> None:
        if self._started:
            raise RuntimeError("ReplaySensor already started")
        self._started = True
        if not self.threaded:
            self._replay()
            return
        self._thread = threading.Thread(target=self._run_thread, name="nocry-replay", daemon=True)
        self._thread.start()

    def _run_thread(self) -> None:
        try:
            self._replay()
        except BaseException as exc:  # kept for the caller to inspect; a replay thread must not vanish silently
            self.error = exc
            log.exception("replay of %s failed", os.fsdecode(self.path))

    def _replay(self) -> None:
        batch: list[Event] = []
        for ev in read_recording(self.path):
            if self._stopping.is_set():
                return
            self.events_total += 1
            if isinstance(ev, Overflow):
                if ev.reason == "unresolved":
                    self.unresolved += 1
                else:
                    self.overflows += 1
            if batch and (batch[-1].time_ns != ev.time_ns or len(batch) >= self.max_batch):
                self._emit(batch)
                batch = []
            batch.append(ev)
        if batch and not self._stopping.is_set():
            self._emit(batch)

    def _emit(self, batch: list[Event]) -> None:
        self.read_batches += 1
        self.events_emitted += len(batch)
        self._sink(batch)

    def stop(self, timeout: float = 5.0) -> None:
        """Idempotent. Synchronous mode: nothing left to stop once start() returned."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Threaded mode: wait for the replay to finish; True when it has."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def barrier(self, timeout: float = 10.0) -> bool:
        """Same contract as FanotifySensor.barrier: True once everything replayed so far (here:
        the whole recording) was handed to the sink."""
        return self.wait(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> ReplaySensor:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
