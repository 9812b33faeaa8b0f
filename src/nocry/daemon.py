"""The daemon: wires the sensor to capture and the vault; holds no logic of its own beyond timing.

    sensor (reader thread) --lists of events--> queue --> capture loop (this thread)
        capture loop:  events -> Pending (debounced per path) / immediate work (renames, dir deletes)
                       due paths -> snapshot() into one vault batch per round
                       Overflow  -> rescan the trees
                       SyncRequest -> capture everything pending now, then answer
    control server (thread): status / sync / stop over a unix socket in HOME/run

Start-up order matters: the sensor starts *before* the baseline walk so that nothing written during
the walk is missed; the events that arrive meanwhile are replayed against the new baseline.
Failure policy: the sensor is notification-only (no opener ever waits for nocry); a capture error
on one file is a warning; a full vault pauses capture with an alarm and resumes by rescanning.
"""

from __future__ import annotations

import heapq
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nocry.capture.scan import Excluder, ScanReport, rescan_tree, walk_tree
from nocry.capture.snapshot import ChangedWhileRead, Unreadable, snapshot, tombstone
from nocry.config import Config
from nocry.errors import VaultError, VaultFull
from nocry.events import FileEvent, Op, Overflow, Subject
from nocry import sdnotify
from nocry.home import Home
from nocry.priority import Priority
from nocry.vault import Vault

__all__ = ["Backlog", "Daemon", "SyncRequest"]

log = logging.getLogger(__name__)

_CREATE, _CLOSE_WRITE, _RENAME = Op.CREATE.value, Op.CLOSE_WRITE.value, Op.RENAME.value
_WRITING = (Op.CREATE | Op.MODIFY).value
_CONTENT = (Op.CREATE | Op.MODIFY | Op.CLOSE_WRITE).value
_GONE = (Op.DELETE | Op.DELETE_SELF).value
_CAPTURE_OPS = (Op.CREATE | Op.MODIFY | Op.CLOSE_WRITE | Op.RENAME | Op.DELETE | Op.ATTRIB | Op.DELETE_SELF).value
_STATUS_EVERY_S = 1.0
_RETRY_CHANGED_S = 0.5
_FULL_CHECK_EVERY_S = 2.0
#: a file not captured for this long is captured at its next close-write without debounce
_QUIET_NS = 1_000_000_000
_DRAIN_S = 0.005
#: an open vault batch is committed once no event came for this long
_QUIET_COMMIT_NS = 20_000_000
#: the rescan that a kernel queue overflow asks for waits until no overflow came for this long
#: (a flood that overflows the queue every few hundred ms would otherwise get a whole rescan
#: after each, each stale at once), but never longer than _OVERFLOW_WAIT_MAX_NS after the first
_OVERFLOW_SETTLE_NS = 1_000_000_000
_OVERFLOW_WAIT_MAX_NS = 5_000_000_000


class Backlog:
    """The queue between the sensor's reader thread and the capture loop, bounded in events.

    The reader hands over lists of events; once ``limit`` events wait, it waits too, so the kernel's
    own queue fills and overflows, which the capture loop answers with a rescan: memory stays
    bounded while the loop is busy (a rescan of a big tree during a burst let a million events
    queue up, ~300 bytes each). Requests from other threads (sync, incident actions, stop) are
    never held back. ``close()`` releases a waiting reader for good (shutdown)."""

    def __init__(self, limit: int):
        self.limit = max(1, limit)
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._closed = False
        self.events = 0  # events handed over and not yet taken (read without the lock by status)
        self.peak = 0
        self.waits = 0  # times the reader had to wait for room

    def put_events(self, events: list) -> None:
        with self._cond:
            if self.events >= self.limit and not self._closed:
                self.waits += 1
                while self.events >= self.limit and not self._closed:
                    self._cond.wait(0.5)
            self.events += len(events)
            self.peak = max(self.peak, self.events)
        self._q.put(events)

    def put(self, item: Any) -> None:
        self._q.put(item)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        item = self._q.get(block, timeout)
        if isinstance(item, list):
            with self._cond:
                self.events -= len(item)
                if self.events < self.limit:
                    self._cond.notify_all()
        return item

    def get_nowait(self) -> Any:
        return self.get(block=False)

    def qsize(self) -> int:
        return self._q.qsize()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclass
class SyncRequest:
    """Capture everything pending now and answer (used by ``nocry sync`` and tests)."""

    done: threading.Event = field(default_factory=threading.Event)
    rescan: bool = False


class BatchReader:
    """The vault as the analyzer sees it while a batch is still open: contents put in the batch
    are known by their chunk list before they are committed."""

    def __init__(self, vault: Vault, batch):
        self.vault = vault
        self.batch = batch

    def content_chunks(self, content_hash: bytes) -> list[tuple[bytes, int]]:
        pending = self.batch.pending_content_chunks(content_hash)
        return pending if pending is not None else self.vault.content_chunks(content_hash)

    def read_range(self, content_hash: bytes, offset: int, length: int) -> bytes:
        return self.vault.read_range(content_hash, offset, length)

    def read_content(self, content_hash: bytes):
        return self.vault.read_content(content_hash)

    def other_path_with_content(self, content_hash: bytes, path: bytes, before_ns: int, *, other_name: bool = False) -> bytes | None:
        return self.vault.other_path_with_content(content_hash, path, before_ns, other_name=other_name)

    def history(self, path: bytes) -> list:
        return self.vault.history(path)


@dataclass
class ActionRequest:
    """An operator's action on an incident (kill, release), carried out by the capture loop so
    that the responder and the incident store are only ever used from one thread."""

    action: str
    incident: int
    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class _Pending:
    due_ns: int
    first_ns: int
    content: bool
    subject: Subject | None
    gen: int = 0
    #: a writer has the file open (a create or write seen after its last close-write): capturing
    #: now would store a half-written file (a truncated image, an empty page of a save)
    writing_since: int = 0


class Daemon:
    def __init__(
        self,
        home: Home,
        trees: Sequence[bytes],
        config: Config,
        *,
        sensor_factory: Callable[..., Any] | None = None,
        record_path: str | None = None,
    ):
        self.home = home
        self.trees = list(trees)
        self.config = config
        self.cap = config.capture
        self.excluded = Excluder(self.trees, config.capture.exclude, prefixes=[os.fsencode(home.root)])
        self._sensor_factory = sensor_factory
        self.record_path = record_path
        self.recorder: Any = None
        self.defence: Any = None
        self.process_table: Any = None
        self.queue = Backlog(config.sensor.queue_size)
        self.state = "starting"
        self.started_at = time.time()
        self.stop_requested = threading.Event()
        self.vault: Vault | None = None
        self.sensor: Any = None
        self.control: Any = None
        # counters (read by the control thread; plain ints are fine under the GIL)
        self.versions_stored = 0
        self.tombstones_stored = 0
        self.commits = 0
        self.unreadable = 0
        self.rescans = 0
        self.capture_errors = 0
        self.defence_errors = 0
        self.events_seen = 0
        self.overflows_seen = 0
        self.paused: str | None = None
        self.last_error: str | None = None
        self.last_scan: list[dict[str, Any]] = []
        self._pending: dict[bytes, _Pending] = {}
        self._captured_at: dict[bytes, int] = {}  # path -> monotonic ns of its last capture
        self._captured_pruned = 0
        self._heap: list[tuple[int, int, bytes]] = []
        self._gen = 0
        # group commit: the vault batch that captures share until it is committed
        self._batch: Any = None
        self._batch_opened = 0
        self._last_commit_ns = 0
        self._last_event_ns = 0
        self._rescan_needed = False
        self._overflow_first_ns = 0  # first and last overflow not rescanned yet (0: none)
        self._overflow_last_ns = 0
        self._lost_since: float | None = None  # events may be lost from then on (wall time), until a rescan
        self._read_before_ns = 0  # when the reader read the batch before this one (wall time)
        self._last_full_check = 0.0
        self.priority: Priority | None = None
        self._behind: str | None = None  # why the daemon fell behind since the last _pace
        self._suspect_seen = 0
        self._last_status = 0.0
        # first thinning one period after start, not at once: a restart loop must not prune
        self._last_retention = time.monotonic()

    # -- life cycle ---------------------------------------------------------------------------

    def run(self, on_ready: Callable[[], None] | None = None) -> int:
        """Run until stop(); returns an exit code."""
        from nocry.control import ControlServer

        self.home.acquire_daemon_lock()
        try:
            self.vault = Vault(self.home.vault_dir, self.config.vault, create=True)
            self._start_defence()
            self.sensor = self._make_sensor()
            self.control = ControlServer(self.home.socket_path, self)
            self.control.start()
            self.sensor.start()
            self.priority = Priority(self.cap.nice)
            self.priority.calm(time.monotonic())  # the baseline is background work too
            self.state = "baselining"
            self._write_status()
            log.info("event=start pid=%d trees=%s mode=%s", os.getpid(), [os.fsdecode(t) for t in self.trees], self.config.mode)
            self._scan_all(reason="baseline")
            self.state = "protecting"
            self._write_status()
            if on_ready:
                on_ready()
            self._loop()
            return 0
        finally:
            self._shutdown()

    def stop(self) -> None:
        self.stop_requested.set()
        self.queue.put(None)  # wake the loop

    def install_signal_handlers(self) -> None:
        def handler(signum, frame):  # noqa: ARG001
            log.info("event=signal signal=%s", signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _start_defence(self) -> None:
        from nocry.defence import Defence, plant_canaries

        plant_canaries(self.home, self.config, self.trees)
        try:
            from nocry.sensor.proctrack import ProcessTable

            table = ProcessTable()
            table.start()
            self.process_table = table
        except (ImportError, OSError) as exc:
            log.warning("event=process_table_unavailable error=%r effect=short_lived_processes_lose_their_parent", str(exc))
        if self.record_path:
            from nocry.sensor.record import Recorder

            self.recorder = Recorder(self.record_path)
        self.defence = Defence(self.home, self.config, self.trees, recorder=self.recorder, process_table=self.process_table)

    def _make_sensor(self):
        sink = self.queue.put_events
        if self._sensor_factory is not None:
            return self._sensor_factory(self.trees, sink)
        from nocry.sensor import FanotifySensor

        return FanotifySensor(
            self.trees,
            sink,
            exclude_prefixes=[os.fsencode(self.home.root)],
            watch_reads=self.config.sensor.watch_reads,
            unlimited_queue=self.config.sensor.unlimited_queue,
            ignore_pids=(os.getpid(),),
            coalesce_s=self.config.sensor.coalesce_ms / 1000,
        )

    def _shutdown(self) -> None:
        was = self.state
        self.state = "stopping"
        self.queue.close()  # a reader waiting for room must not hold up its own stop
        if self.sensor is not None:
            try:
                self.sensor.stop()
            except Exception:  # noqa: BLE001 - shutdown must go on
                log.exception("event=sensor_stop_failed")
            # capture what the sensor delivered before it stopped
            if self.vault is not None and was == "protecting" and not self.paused:
                try:
                    self._drain_queue(block=False)
                    self._capture_due(everything=True)
                    self._commit()
                except Exception:  # noqa: BLE001
                    log.exception("event=final_capture_failed")
        if self.control is not None:
            self.control.stop()
        if self.process_table is not None:
            self.process_table.stop()
        if self.recorder is not None:
            self.recorder.close()
        if self.defence is not None:
            self.defence.close()
        self.state = "stopped"
        self._write_status()
        if self.vault is not None:
            self.vault.close()
        if was in ("protecting", "baselining"):
            # a stop leaves files unprotected: that is an alarm, even when asked for
            msg = "nocry stopped: protected trees are no longer watched"
            log.warning("event=stopped alarm=1 trees=%s", [os.fsdecode(t) for t in self.trees])
            self.home.alert("stopped", msg, trees=[os.fsdecode(t) for t in self.trees])
        self.home.release_daemon_lock()

    # -- the capture loop -----------------------------------------------------------------------

    def _loop(self) -> None:
        while not self.stop_requested.is_set():
            timeout = self._next_timeout()
            self._drain_queue(block=True, timeout=timeout)
            if self.stop_requested.is_set():
                break
            self._pace(time.monotonic())  # before a rescan that an overflow asks for
            self._check_space()
            if self._rescan_needed and not self.paused and self._rescan_due(time.monotonic_ns()):
                self._scan_all(reason="rescan")
            self._capture_due()
            self._maybe_commit()
            now = time.monotonic()
            self._maybe_retention(now)
            if now - self._last_status >= _STATUS_EVERY_S:
                self._write_status()
                sdnotify.notify("WATCHDOG=1")

    def _pace(self, now: float) -> None:
        """The daemon's CPU priority (:mod:`nocry.priority`): normal while an actor looks
        suspicious, an incident is open or the daemon falls behind; lowered otherwise."""
        pr = self.priority
        if pr is None:
            return
        reason = self._behind
        self._behind = None
        if reason is None and self._heap and self._heap[0][0] < time.monotonic_ns() - pr.lag_ns:
            reason = "captures_overdue"
        d = self.defence
        if d is not None:
            if d.open:
                reason = "incident_open"
            elif d.detector.suspect_ns > self._suspect_seen:
                self._suspect_seen = d.detector.suspect_ns
                reason = "suspicious_actor"
        if reason is not None:
            pr.boost(now, reason)
        else:
            pr.calm(now)

    def _rescan_due(self, now_ns: int) -> bool:
        """A rescan is asked for: now, unless an overflow asked and the flood goes on."""
        if not self._overflow_first_ns:
            return True
        return now_ns - self._overflow_last_ns >= _OVERFLOW_SETTLE_NS or now_ns - self._overflow_first_ns >= _OVERFLOW_WAIT_MAX_NS

    def _next_timeout(self) -> float:
        wake = [self._heap[0][0]] if self._heap else []
        if self._batch is not None:
            wake.append(self._commit_due_ns())
        if self._rescan_needed and self._overflow_first_ns:
            wake.append(min(self._overflow_last_ns + _OVERFLOW_SETTLE_NS, self._overflow_first_ns + _OVERFLOW_WAIT_MAX_NS))
        if wake:
            wait = (min(wake) - time.monotonic_ns()) / 1e9
            return min(max(wait, 0.0), _STATUS_EVERY_S)
        return _STATUS_EVERY_S

    # -- group commit ----------------------------------------------------------------------------

    def _commit_due_ns(self) -> int:
        """An open batch is committed group_commit_ms after it was opened, or as soon as no
        event came for a moment (a single save is not kept waiting for a storm that is not there),
        but not sooner than group_commit_ms after the last commit: a busy writer with short lulls
        (a parallel build) would otherwise get a commit, and its two fsyncs, every few files, and
        each fsync makes the filesystem's journal commit the writer's own pending metadata too."""
        group = self.cap.group_commit_ms * 1_000_000
        quiet = max(self._last_event_ns + _QUIET_COMMIT_NS, self._last_commit_ns + group)
        return min(self._batch_opened + group, max(quiet, self._batch_opened))

    def _open_batch(self):
        assert self.vault is not None
        if self._batch is None:
            self._batch = self.vault.batch()
            self._batch_opened = time.monotonic_ns()
        return self._batch

    def _maybe_commit(self) -> None:
        b = self._batch
        if b is not None and (b.files >= self.cap.batch_max_files or time.monotonic_ns() >= self._commit_due_ns()):
            self._commit()

    def _commit(self) -> bool:
        """Commit the open batch, if any (before anything that reads the index for its own work
        or writes its own batch: directory renames and removals, rescans, retention, sync,
        stop). False when the vault is full or the commit failed."""
        b, self._batch = self._batch, None
        if b is None:
            return True
        self._last_commit_ns = time.monotonic_ns()
        try:
            b.commit()
            self.commits += 1
        except VaultFull as exc:
            self._vault_full(exc)
            return False
        except (OSError, VaultError) as exc:
            # the batch aborted itself: its versions are taken again by the rescan (the files'
            # current state); a vault that keeps failing stops the daemon at that rescan
            self._capture_failed(exc)
            return False
        return True

    def _capture_failed(self, exc: BaseException) -> None:
        self.capture_errors += 1
        self.last_error = f"capture failed: {exc}"
        log.error("event=capture_failed error=%r action=rescan", str(exc))
        self._rescan_needed = True

    def _drain_queue(self, *, block: bool, timeout: float = 0.0) -> None:
        try:
            item = self.queue.get(block=block, timeout=timeout) if block else self.queue.get_nowait()
        except queue.Empty:
            return
        # drain for a few milliseconds at most: captures due now (a first save) must not wait
        # behind a stream of new events, which is exactly what an attacker produces
        deadline = time.monotonic() + _DRAIN_S
        syncs: list[SyncRequest] = []
        while True:
            if item is None:
                pass
            elif isinstance(item, SyncRequest):
                syncs.append(item)
            elif isinstance(item, ActionRequest):
                self._incident_action(item)
            elif isinstance(item, list):
                self._handle_events(item)
            else:
                self._handle_events([item])
            if time.monotonic() > deadline and not syncs:
                break
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
        for req in syncs:
            if req.rescan:
                self._rescan_needed = True
            if self._rescan_needed and not self.paused:
                self._scan_all(reason="rescan")
            self._capture_due(everything=True)
            self._commit()
            self._write_status()
            req.done.set()

    def _maybe_retention(self, now: float) -> None:
        """Thin the vault on schedule, in this thread (the vault then has one writer), never
        dropping what a restore of an open incident would need."""
        every = self.config.retention.every_hours * 3600
        if not every or self.paused or now - self._last_retention < every:
            return
        self._last_retention = now
        assert self.vault is not None
        if not self._commit():
            return
        hold = self.defence.earliest_open_start() if self.defence is not None else None
        try:
            forgot = self.vault.forget(self.config.retention, time.time_ns(), hold_after_ns=hold)
            pruned = self.vault.prune()
        except Exception as exc:  # noqa: BLE001 - retention must never stop capture
            log.error("event=retention_failed error=%r", str(exc))
            return
        log.info("event=retention forget=%s prune=%s", forgot.to_record(), pruned.to_record())

    def _defend(self, fn, *args) -> None:
        """Detection must never stop capture: a bug there is logged (rate-limited), counted and
        shown in status, and the vault keeps every version so that nothing is lost."""
        try:
            fn(*args)
        except VaultFull:
            raise
        except Exception as exc:  # noqa: BLE001
            self.defence_errors += 1
            self.last_error = f"detection failed: {exc!r}"
            if self.defence_errors <= 10 or self.defence_errors % 1000 == 0:
                log.exception("event=detection_failed count=%d", self.defence_errors)

    def _incident_action(self, req: ActionRequest) -> None:
        try:
            if req.action == "kill":
                req.result = self.defence.kill(req.incident)
            elif req.action == "release":
                req.result = self.defence.release(req.incident)
            elif req.action == "exempt":
                self.defence.exempt(req.incident)
                req.result = {"exempt": req.incident}
            else:
                req.error = f"unknown action {req.action!r}"
        except Exception as exc:  # noqa: BLE001 - reported to the operator
            req.error = str(exc)
        req.done.set()

    def _handle_events(self, events: list) -> None:
        if self.defence is not None:
            self._defend(self.defence.on_events, events)
        now = time.monotonic_ns()
        self._last_event_ns = now
        read_before = self._read_before_ns
        if events:
            self._read_before_ns = events[-1].time_ns
        if self.priority is not None and events and time.time_ns() - events[0].time_ns > self.priority.lag_ns:
            self._behind = "events_late"
        for ev in events:
            self.events_seen += 1
            if isinstance(ev, Overflow):
                self.overflows_seen += 1
                if not self._rescan_needed:
                    self._overflow_first_ns = now
                if self._lost_since is None:
                    # the queue was drained at the read before: nothing was lost until then
                    self._lost_since = (read_before or ev.time_ns) / 1e9
                self._overflow_last_ns = now
                self._rescan_needed = True
                self._behind = "overflow"
                log.warning("event=overflow reason=%s action=rescan", ev.reason)
                self.home.alert("overflow", "events were lost; the protected trees will be rescanned", reason=ev.reason)
                continue
            if not isinstance(ev, FileEvent):
                continue
            ops = ev.ops._value_  # plain ints: enum arithmetic is slow on this hot path
            if not ops & _CAPTURE_OPS:
                continue  # reads: for the detector, not for capture
            if self.paused:
                self._rescan_needed = True
                continue
            if ops & _RENAME and ev.old_path is not None:
                self._immediate_rename(ev)
                continue
            if ev.is_dir and ops & _GONE:
                self._immediate_dir_gone(ev.path, ev.subject)
                self._schedule_parent(ev.path, now)
                continue
            if self.excluded(ev.path):
                continue
            content = bool(ops & _CONTENT)
            if not ev.is_dir:
                self._track_writer(ev.path, ops, now)
            if ops & _GONE:
                # not at once: a file deleted and created again at once (tar extracting over a
                # tree, git checkout) is a rewrite; its create event, microseconds behind the
                # delete in the kernel's queue, postpones this to the create's own debounce
                due = now + self.cap.delete_debounce_ms * 1_000_000
            elif ops & _CLOSE_WRITE and now - self._captured_at.get(ev.path, 0) > _QUIET_NS:
                # the first save in a while is captured at once: the detector sees damage while it
                # is still a handful of files; only files written again and again wait out the debounce
                due = now
            elif ops & _CLOSE_WRITE or (ops & _CREATE and ev.is_dir):
                due = now + self.cap.debounce_ms * 1_000_000
            elif ops & _WRITING:
                # still being written: wait for its close-write, but not forever
                p = self._pending.get(ev.path)
                start = p.writing_since if p is not None and p.writing_since else now
                self._schedule(ev.path, start + self.cap.max_delay_ms * 1_000_000, now, content, ev.subject, writer=True)
                due = -1
            else:
                due = now + self.cap.debounce_ms * 1_000_000
            if due >= 0:
                self._schedule(ev.path, due, now, content, ev.subject)
            if ops & (_CREATE | _GONE):
                self._schedule_parent(ev.path, now)

    def _track_writer(self, path: bytes, ops: int, now_ns: int) -> None:
        """Note whether a writer has ``path`` open. The kernel merges the flags of an unread
        event, so a create or write merged with a close-write counts as closed."""
        p = self._pending.get(path)
        if ops & (_CLOSE_WRITE | _GONE):
            if p is not None:
                p.writing_since = 0
        elif ops & _WRITING:
            if p is None:
                self._gen += 1
                p = _Pending(due_ns=now_ns + self.cap.max_delay_ms * 1_000_000, first_ns=now_ns, content=True, subject=None, gen=self._gen)
                self._pending[path] = p
                heapq.heappush(self._heap, (p.due_ns, p.gen, path))
            if not p.writing_since:
                p.writing_since = now_ns

    def _schedule(self, path: bytes, due_ns: int, now_ns: int, content: bool, subject: Subject | None, *, postpone: bool = True, writer: bool = False) -> None:
        """Capture ``path`` at ``due_ns``. An event that ``postpone``s (a close-write) moves an
        already pending capture to its own due time (debounce), never past first change +
        max_delay. A ``writer`` event (a write still in progress) sets the capture to the
        writer's start + max_delay: a capture made due by an earlier close-write must not catch
        the file half-written; a writer that never closes is still captured every max_delay."""
        p = self._pending.get(path)
        if p is None:
            self._gen += 1
            p = _Pending(due_ns=due_ns, first_ns=now_ns, content=content, subject=subject, gen=self._gen)
            self._pending[path] = p
            heapq.heappush(self._heap, (due_ns, p.gen, path))
            return
        p.content = p.content or content
        if subject is not None and (content or p.subject is None):
            p.subject = subject
        latest_allowed = p.first_ns + self.cap.max_delay_ms * 1_000_000
        if writer:
            new_due = due_ns
        elif postpone:
            new_due = min(due_ns, latest_allowed)
        else:
            new_due = min(due_ns, p.due_ns)
        if new_due != p.due_ns:
            p.due_ns = new_due
            self._gen += 1
            p.gen = self._gen
            heapq.heappush(self._heap, (new_due, p.gen, path))

    def _schedule_parent(self, path: bytes, now_ns: int) -> None:
        parent = path.rsplit(b"/", 1)[0] or b"/"
        if self._in_trees(parent):
            self._schedule(parent, now_ns + self.cap.debounce_ms * 1_000_000, now_ns, False, None)

    def _in_trees(self, path: bytes) -> bool:
        return any(path == t or path.startswith(t + b"/") for t in self.trees)

    # -- immediate work: renames and directory removals ---------------------------------------------

    def _latest(self, path: bytes):
        """The newest version of path, counting the open (not yet committed) batch."""
        assert self.vault is not None
        b = self._batch
        return (b.latest(path) if b is not None else None) or self.vault.latest(path)

    def _immediate_rename(self, ev: FileEvent) -> None:
        """A rename is recorded at once: a tombstone at the old path (renamed_to), a version at
        the new one (renamed_from). A file's rename joins the open batch (editors save by
        renaming, tools rename thousands of files); a directory's needs every object under it
        from the index, so the open batch is committed first."""
        assert self.vault is not None
        old, new = ev.old_path, ev.path
        assert old is not None
        if ev.is_dir and not self._commit():
            return
        now = time.monotonic_ns()
        old_in, new_in = self._in_trees(old) and not self.excluded(old), self._in_trees(new) and not self.excluded(new)
        # what was pending at the old place now lives at the new one
        if ev.is_dir:
            moved = [p for p in self._pending if p == old or p.startswith(old + b"/")]
        else:
            moved = [old] if old in self._pending else []
        for p in moved:
            pend = self._pending.pop(p)
            if new_in:
                self._schedule(new + p[len(old) :], now, now, pend.content, pend.subject)
        stored: list = []
        try:
            batch = self._open_batch()
            t = time.time_ns()
            before: dict[bytes, Any] = {}  # what each source path held just before the rename
            if old_in:
                gone = list(self.vault.live_under(old)) if ev.is_dir else [r for r in (self._latest(old),) if r is not None]
                for rec in gone:
                    if not rec.exists:
                        continue
                    before[rec.path] = rec
                    dest = new + rec.path[len(old) :] if new_in else None
                    batch.add(tombstone(rec.path, t, ev.subject, "event", renamed_to=dest))
                    self.tombstones_stored += 1
            if new_in:
                self._capture_renamed_in(batch, old if old_in else None, new, ev.subject, t, stored, before)
        except VaultFull as exc:
            self._batch = None  # the batch aborted itself
            self._vault_full(exc)
            return
        if self.defence is not None and stored:
            self._defend(self.defence.on_versions, stored, BatchReader(self.vault, batch))
        if ev.is_dir or batch.files >= self.cap.batch_max_files:
            self._commit()
        if old_in:
            self._schedule_parent(old, now)
        if new_in:
            self._schedule_parent(new, now)

    def _capture_renamed_in(self, batch, old: bytes | None, new: bytes, subject: Subject | None, t: int, stored: list, before: dict) -> None:
        assert self.vault is not None
        report = ScanReport(tree=new)
        for path, _st in walk_tree(new, self.excluded, report):
            src = old + path[len(new) :] if old is not None else None
            prev_src = before.get(src) if src is not None else None
            overwritten = self._latest(path)
            prev = prev_src if prev_src is not None and prev_src.exists else overwritten
            try:
                rec = snapshot(
                    batch,
                    path,
                    prev,
                    t,
                    subject=subject,
                    reason="event",
                    content_may_have_changed=path in self._pending,
                    renamed_from=src,
                    max_file_bytes=self.cap.max_file_bytes,
                    force=True,
                )
            except ChangedWhileRead:
                self._schedule(path, time.monotonic_ns() + int(_RETRY_CHANGED_S * 1e9), time.monotonic_ns(), True, subject)
                continue
            except Unreadable as exc:
                self._warn_unreadable(path, str(exc))
                continue
            if rec is not None:
                self.versions_stored += 1
                # what the rename destroyed is what the new content must be judged against
                # (a file encrypted into a temp file and renamed over its original)
                stored.append((rec, overwritten if overwritten is not None and overwritten.exists else None))

    def _immediate_dir_gone(self, path: bytes, subject: Subject | None) -> None:
        assert self.vault is not None
        if not self._commit():
            return
        for p in [p for p in self._pending if p == path or p.startswith(path + b"/")]:
            del self._pending[p]
        stored: list = []
        try:
            with self.vault.batch() as batch:
                t = time.time_ns()
                for rec in list(self.vault.live_under(path)):
                    if rec.exists and not os.path.lexists(rec.path):
                        tomb = tombstone(rec.path, t, subject, "event")
                        batch.add(tomb)
                        stored.append((tomb, rec))
                        self.tombstones_stored += 1
        except VaultFull as exc:
            self._vault_full(exc)
            return
        if self.defence is not None and stored:
            self._defend(self.defence.on_versions, stored, self.vault)

    # -- capture ------------------------------------------------------------------------------------

    def _capture_due(self, everything: bool = False) -> None:
        if self.paused or self.vault is None:
            return
        now = time.monotonic_ns()
        due: list[tuple[bytes, _Pending]] = []
        while self._heap and (everything or self._heap[0][0] <= now):
            _, gen, path = heapq.heappop(self._heap)
            p = self._pending.get(path)
            if p is None or p.gen != gen:
                continue  # superseded by a later schedule
            del self._pending[path]
            due.append((path, p))
            self._captured_at[path] = now
        if len(self._captured_at) > 20_000 and now - self._captured_pruned > _QUIET_NS:
            # only the last second matters (the first save in a while is captured at once)
            self._captured_at = {p: t for p, t in self._captured_at.items() if now - t <= _QUIET_NS}
            self._captured_pruned = now
        # Each file is judged as soon as it is in the open batch (the analysis does not wait for
        # a commit); the batch is committed every group_commit_ms or batch_max_files files.
        step = max(1, self.cap.batch_max_files)
        for i in range(0, len(due), step):
            self._capture_batch(due[i : i + step])
            if self.paused:
                return

    def _capture_batch(self, items: list[tuple[bytes, _Pending]]) -> None:
        assert self.vault is not None
        retry: list[tuple[bytes, _Pending]] = []
        try:
            batch = self._open_batch()
            reader = BatchReader(self.vault, batch)
            for path, p in items:
                prev = batch.latest(path) or self.vault.latest(path)
                try:
                    rec = snapshot(
                        batch,
                        path,
                        prev,
                        time.time_ns(),
                        subject=p.subject,
                        reason="event",
                        content_may_have_changed=p.content,
                        max_file_bytes=self.cap.max_file_bytes,
                    )
                except ChangedWhileRead:
                    retry.append((path, p))
                    continue
                except Unreadable as exc:
                    self._warn_unreadable(path, str(exc))
                    continue
                if rec is not None:
                    if rec.exists:
                        self.versions_stored += 1
                    else:
                        self.tombstones_stored += 1
                    if self.defence is not None:
                        # judged now, from the live file and the batch's own chunk list: a
                        # verdict must not wait for the batch's commit
                        self._defend(self.defence.on_versions, [(rec, prev)], reader)
        except VaultFull as exc:
            self._batch = None  # the batch aborted itself
            self._vault_full(exc)
            return
        except (OSError, VaultError) as exc:
            if self._batch is not None:
                self._batch.abort()
                self._batch = None
            self._capture_failed(exc)
            return
        if batch.files >= self.cap.batch_max_files:
            self._commit()
        now = time.monotonic_ns()
        for path, p in retry:
            self._schedule(path, now + int(_RETRY_CHANGED_S * 1e9), now, True, p.subject)

    def _warn_unreadable(self, path: bytes, why: str) -> None:
        self.unreadable += 1
        log.warning("event=unreadable path=%r reason=%r", path, why)

    def _scan_all(self, reason: str) -> None:
        assert self.vault is not None
        # what the events already named is captured first, with its process: a rescan would
        # store it too, as nobody's, and the capture after it would then find nothing new to judge
        self._capture_due(everything=True)
        if self.paused or not self._commit():
            return  # the vault filled up meanwhile: no rescan writes into its released reserve
        self._rescan_needed = False
        self._overflow_first_ns = self._overflow_last_ns = 0
        lost_since, self._lost_since = self._lost_since, None
        self.last_scan = []
        for tree in self.trees:
            try:
                rep = rescan_tree(
                    self.vault,
                    tree,
                    self.excluded,
                    reason=reason,
                    batch_max_files=self.cap.batch_max_files,
                    max_file_bytes=self.cap.max_file_bytes,
                    should_stop=self.stop_requested.is_set,
                )
            except VaultFull as exc:
                self._vault_full(exc)
                return
            self.rescans += 1
            self.versions_stored += rep.stored
            self.tombstones_stored += rep.tombstoned
            for path, why in rep.unreadable:
                self._warn_unreadable(path, why)
            if self.defence is not None and rep.changed:
                # their events were lost: judged by content alone, nobody to name
                self._defend(self.defence.on_rescan, tree, rep.changed, self.vault, lost_since)
            now = time.monotonic_ns()
            for path in rep.retry:
                self._schedule(path, now + int(_RETRY_CHANGED_S * 1e9), now, True, None)
            self.last_scan.append(
                {"tree": os.fsdecode(tree), "reason": reason, "seen": rep.seen, "stored": rep.stored, "tombstoned": rep.tombstoned, "unreadable": len(rep.unreadable), "seconds": round(rep.seconds, 3)}
            )
            log.info("event=scan reason=%s tree=%r seen=%d stored=%d tombstoned=%d unreadable=%d seconds=%.2f", reason, tree, rep.seen, rep.stored, rep.tombstoned, len(rep.unreadable), rep.seconds)

    # -- disk space ------------------------------------------------------------------------------

    def _vault_full(self, exc: Exception) -> None:
        assert self.vault is not None
        if self._batch is not None:
            self._batch.abort()  # its versions are taken again by the rescan once space is back
            self._batch = None
        if not self.paused:
            self.paused = "vault_full"
            msg = f"the vault's disk is full: capture paused ({exc}); free space in {self.home.vault_dir}"
            log.critical("event=vault_full alarm=1 action=pause_capture")
            self.home.alert("vault_full", msg, vault=str(self.home.vault_dir))
            self.vault.release_reserve()
        self._pending.clear()
        self._heap.clear()
        self._rescan_needed = True
        self._write_status()

    def _check_space(self) -> None:
        assert self.vault is not None
        now = time.monotonic()
        if now - self._last_full_check < (_FULL_CHECK_EVERY_S if self.paused else 0.5):
            return
        self._last_full_check = now
        free = self.vault.free_bytes()
        low = self.config.vault.min_free_mib << 20
        if self.paused:
            if free >= low + (self.config.vault.reserve_mib << 20) and self.vault.restore_reserve():
                log.warning("event=vault_space_back action=resume_capture free=%d", free)
                self.home.alert("vault_space_back", "space is back: capture resumed, trees rescanned")
                self.paused = None
                self._rescan_needed = True
        elif free < low:
            self._vault_full(VaultFull(f"only {free >> 20} MiB free, below vault.min_free_mib={self.config.vault.min_free_mib}"))

    # -- status ------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        s = self.sensor
        return {
            "state": self.state,
            "pid": os.getpid(),
            "mode": self.config.mode,
            "trees": [os.fsdecode(t) for t in self.trees],
            "started_at": self.started_at,
            # events about the trees; kernel_events also counts the rest of each marked filesystem
            "events_total": self.events_seen,
            "kernel_events": getattr(s, "events_total", self.events_seen) if s else 0,
            "overflows": getattr(s, "overflows", self.overflows_seen) if s else self.overflows_seen,
            "pending": len(self._pending),
            "queued": self.queue.qsize(),
            # events handed over by the reader and not yet handled; the reader waits at queue_size
            "backlog": {"events": self.queue.events, "peak": self.queue.peak, "limit": self.queue.limit, "reader_waits": self.queue.waits},
            "versions_stored": self.versions_stored,
            "tombstones_stored": self.tombstones_stored,
            "vault_commits": self.commits,
            "unreadable": self.unreadable,
            "rescans": self.rescans,
            "capture_paused": self.paused,
            "capture_errors": self.capture_errors,
            "detection_errors": self.defence_errors,
            "last_error": self.last_error,
            "last_scan": self.last_scan,
            "detection": self.defence.stats() if self.defence is not None else None,
            "priority": self.priority.status() if self.priority is not None else None,
            "updated_at": time.time(),
        }

    def _write_status(self) -> None:
        self._last_status = time.monotonic()
        try:
            self.home.write_status(self.status())
        except OSError as exc:  # a full disk must not stop the daemon
            log.warning("event=status_write_failed error=%r", str(exc))
