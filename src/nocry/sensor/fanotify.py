"""The kernel sensor: one fanotify notification group, filesystem marks, one reader thread.

The sensor owns every kernel resource (group fd, one directory fd per filesystem for
open_by_handle_at, the pidfds the kernel installs with each read) and hands out only plain
:mod:`nocry.events` data. The reader thread only parses, resolves and hands over; anything slower
(hashing, JSON, SQLite) belongs to whoever the sink feeds, on another thread. ::

    group = fanotify_init(NOTIF | DFID_NAME_TARGET | PIDFD)
    for each filesystem holding a tree: fanotify_mark(ADD | FILESYSTEM, mask); keep a dir fd
    reader thread:
        poll(group, wake pipe); buf = read(group, 256 KiB); now = time_ns()
        for raw in decode(buf):
            dir path = dir cache or open_by_handle_at(mount_fd, handle, O_PATH) + readlink
            path = dir path + name; keep it if under a tree and not excluded, pid not ignored
            FileEvent(ops from mask, path, old_path for renames, subject from the pidfd)
        close every pidfd of the batch (always, even on error); sink(events)

Why resolve at once: handles of deleted objects go stale, so waiting loses paths. Why cache only
directory handles: a file handle keeps resolving to its old name after a rename, while the events
for renames of directories tell us exactly when a cached directory path goes stale (the cache is
then dropped). Directories created in a batch are cached from their CREATE event's target fid, and
a directory that is already gone when its events are read is looked up in the rest of the batch,
where its own DELETE or RENAME event names it; so ``mkdir t; touch t/x; rm -r t`` and ``rm -r``
of a tree never seen before still get their paths.

Loss is never silent: a queue overflow becomes ``Overflow(reason="queue_overflow")``; a change
whose directory cannot be resolved any more becomes ``Overflow(reason="unresolved")`` (at most one
per batch); a tree root or one of its ancestors renamed becomes ``Overflow(reason="tree_moved")``;
an internal error while converting a batch becomes ``Overflow(reason="sensor_error")``. Each tells
the consumer to rescan the trees named.

Threading: ``sink`` is called on the reader thread, once per read batch with a non-empty list. A
sink that blocks stalls the reader and, after 16384 queued events (by default), the kernel
overflows: the sink should hand the list to a queue and return.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import resource
import select
import threading
import time
from collections.abc import Callable, Collection, Sequence
from types import TracebackType

from nocry.events import CHANGE_OPS, Event, FileEvent, Op, Overflow
from nocry.sensor import _syscalls as sc
from nocry.sensor._syscalls import Syscalls
from nocry.sensor.decode import DecodeError, RawEvent, decode, pidfds_in
from nocry.sensor.procs import SubjectCache

__all__ = ["FanotifySensor", "ops_from_mask", "BASE_MASK", "READ_MASK", "INIT_FLAGS"]

log = logging.getLogger(__name__)

INIT_FLAGS = sc.FAN_CLASS_NOTIF | sc.FAN_CLOEXEC | sc.FAN_NONBLOCK | sc.FAN_REPORT_DFID_NAME_TARGET | sc.FAN_REPORT_PIDFD
EVENT_F_FLAGS = os.O_RDONLY | os.O_LARGEFILE
BASE_MASK = (
    sc.FAN_CREATE
    | sc.FAN_MODIFY
    | sc.FAN_CLOSE_WRITE
    | sc.FAN_RENAME
    | sc.FAN_DELETE
    | sc.FAN_ATTRIB
    | sc.FAN_DELETE_SELF
    | sc.FAN_ONDIR
)
#: which files a process reads: one event at open, one at close. FAN_ACCESS (one per read() call,
#: a flood on large files) is left out: the number of distinct files read is what matters
READ_MASK = sc.FAN_OPEN | sc.FAN_CLOSE_NOWRITE

_MASK_TO_OP = (
    (sc.FAN_CREATE, Op.CREATE),
    (sc.FAN_MODIFY, Op.MODIFY),
    (sc.FAN_CLOSE_WRITE, Op.CLOSE_WRITE),
    (sc.FAN_RENAME, Op.RENAME),
    (sc.FAN_DELETE, Op.DELETE),
    (sc.FAN_ATTRIB, Op.ATTRIB),
    (sc.FAN_OPEN, Op.OPEN),
    (sc.FAN_ACCESS, Op.ACCESS),
    (sc.FAN_CLOSE_NOWRITE, Op.CLOSE_NOWRITE),
    (sc.FAN_DELETE_SELF, Op.DELETE_SELF),
)
_CHANGE_BITS = sum(bit for bit, op in _MASK_TO_OP if op & CHANGE_OPS)

_DFID_NAME = sc.FAN_EVENT_INFO_TYPE_DFID_NAME
_DFID = sc.FAN_EVENT_INFO_TYPE_DFID
_FID = sc.FAN_EVENT_INFO_TYPE_FID
_OLD = sc.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME
_NEW = sc.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME
_O_PATH_CLOEXEC = os.O_PATH | os.O_CLOEXEC
_DELETED = b" (deleted)"

#: the smallest event a read can hold in this group's format (metadata, pidfd, DFID_NAME, FID):
#: bounds how many pidfds one read installs at once
_MIN_EVENT_SIZE = 64

_OWN_PID: Collection[int] = ("own pid",)  # type: ignore[assignment]  # sentinel: os.getpid() at construction


def ops_from_mask(mask: int) -> Op:
    """Kernel event mask -> :class:`Op` flags (FAN_ONDIR and unknown bits are ignored).
    Memoised: a handful of masks recur, and enum arithmetic costs microseconds per event."""
    ops = _OPS_OF_MASK.get(mask)
    if ops is None:
        ops = Op(0)
        for bit, op in _MASK_TO_OP:
            if mask & bit:
                ops |= op
        if len(_OPS_OF_MASK) < 4096:
            _OPS_OF_MASK[mask] = ops
    return ops


_OPS_OF_MASK: dict[int, Op] = {}


def _canonical(path: bytes | str) -> bytes:
    p = os.path.realpath(os.fsencode(path))
    return p if p == b"/" else p.rstrip(b"/")


def _prefixes(paths: Sequence[bytes]) -> tuple[tuple[bytes, ...], frozenset[bytes]]:
    """(prefixes with a trailing slash, exact roots): ``p`` is inside when it equals a root or
    starts with a prefix, so ``/srv/data`` does not capture ``/srv/database``."""
    return tuple(p if p.endswith(b"/") else p + b"/" for p in paths), frozenset(paths)


class _RateLimit:
    """At most one log line per key and interval, so a hot loop cannot flood the journal."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self.suppressed: dict[str, int] = {}

    def __call__(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= self.interval_s:
            self._last[key] = now
            return True
        self.suppressed[key] = self.suppressed.get(key, 0) + 1
        return False


def _grow_fd_table(fd: int, slots: int) -> None:
    """Make the process's fd table hold ``slots`` descriptors now, once, instead of during the
    first large read. Each read installs one pidfd per event, so the first burst of an attack
    (hundreds of events in one read) would make the kernel grow the table several times in that
    read, and in a multithreaded process every growth waits for an RCU grace period
    (``synchronize_rcu`` in ``expand_fdtable``): 8-23 ms each on a VM, measured. That put
    30-45 ms before the first evidence of one attack run in three (docs/benchmarks.md). The
    table never shrinks, so duplicating a descriptor to slot ``slots - 1`` and closing it is
    enough. F_DUPFD takes the lowest free slot at or above that number and never replaces an
    open descriptor; failure (a lower RLIMIT_NOFILE) leaves the growth to the kernel as before."""
    try:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, max(0, slots - 1))
    except OSError as exc:
        log.debug("fd table not grown to %d slots: %s", slots, exc)
        return
    os.close(high)


class FanotifySensor:
    """Watches ``trees`` through fanotify and feeds batches of events to ``sink``.

    ``trees`` and ``exclude_prefixes`` are canonicalised (realpath) at construction, because the
    kernel resolves handles to canonical paths. ``ignore_pids`` defaults to the pid of the process
    that constructs the sensor (the daemon must not see its own vault writes). Counters are plain
    ints written by the reader thread only; other threads may read them at any time.
    """

    def __init__(
        self,
        trees: Sequence[bytes],
        sink: Callable[[list[Event]], None],
        *,
        exclude_prefixes: Sequence[bytes] = (),
        watch_reads: bool = True,
        unlimited_queue: bool = False,
        ignore_pids: Collection[int] = _OWN_PID,
        syscalls: Syscalls | None = None,
        subjects: SubjectCache | None = None,
        read_size: int = 256 * 1024,
        dir_cache_size: int = 16384,
        coalesce_s: float = 0.001,
    ) -> None:
        if not trees:
            raise ValueError("at least one tree is needed")
        self.trees: tuple[bytes, ...] = tuple(dict.fromkeys(_canonical(t) for t in trees))
        self.exclude_prefixes: tuple[bytes, ...] = tuple(_canonical(p) for p in exclude_prefixes)
        self._sink = sink
        self.watch_reads = watch_reads
        self.unlimited_queue = unlimited_queue
        self.ignore_pids = frozenset((os.getpid(),) if ignore_pids is _OWN_PID else ignore_pids)
        self._sc = syscalls or Syscalls()
        self._subjects = subjects or SubjectCache(syscalls=self._sc)
        self.read_size = read_size
        self.dir_cache_size = dir_cache_size
        self.coalesce_s = coalesce_s
        self.mask = BASE_MASK | (READ_MASK if watch_reads else 0)

        self._tree_prefixes, self._tree_roots = _prefixes(self.trees)
        self._excl_prefixes, self._excl_roots = _prefixes(self.exclude_prefixes)

        # kernel resources; guarded by _lock against the reader closing them at exit
        self._lock = threading.Lock()
        self._group_fd = -1
        self._wake_r = -1
        self._wake_w = -1
        self._mount_fds: dict[bytes, int] = {}  # fsid -> O_DIRECTORY fd on that filesystem
        self._thread: threading.Thread | None = None
        self._opened = False
        self._stopping = False

        # reader-thread state
        self._dir_cache: dict[tuple[bytes, bytes], bytes] = {}  # (fsid, handle) -> dir path + b"/"
        self._batch: list[RawEvent] = []  # the batch being converted, for _find_in_batch
        self._batch_pos = 0
        self._batch_misses: set[tuple[bytes, bytes]] = set()
        self._extend_budget = 0
        self._waited = False
        self._op_cache: dict[int, Op] = {}
        self._seq = 0
        self._ratelimit = _RateLimit()

        # counters
        self.events_total = 0
        self.events_emitted = 0
        self.overflows = 0
        self.unresolved = 0
        self.read_batches = 0
        self.stale_self = 0  # self-events (DELETE_SELF, ATTRIB of nlink) of objects already gone
        self.sink_errors = 0
        self.errors = 0
        # bumped each time a read finds the kernel queue empty; see barrier()
        self._drain_gen = 0
        self._drain_cond = threading.Condition()

    # --- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Create the group and place the marks, without starting the reader. :meth:`start` calls
        it; tests and benchmarks may call it to drive :meth:`process` by hand. On any failure every
        fd opened so far is closed again before the error propagates."""
        with self._lock:
            if self._opened:
                return
            if self._stopping:
                raise RuntimeError("a stopped FanotifySensor cannot be reopened; make a new one")
            try:
                self._open_locked()
            except BaseException:
                self._close_locked()
                raise
            self._opened = True

    def _open_locked(self) -> None:
        self._ensure_fd_headroom()
        flags = INIT_FLAGS | (sc.FAN_UNLIMITED_QUEUE if self.unlimited_queue else 0)
        self._group_fd = self._sc.fanotify_init(flags, EVENT_F_FLAGS)
        _grow_fd_table(self._group_fd, self._pidfds_per_read() + 64)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        for tree in self.trees:
            fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fsid = self._sc.fstatfs(fd).fsid
                self._remember_root(fd, fsid, tree)
                if fsid in self._mount_fds:
                    continue  # one filesystem mark covers every tree on that filesystem
                self._mark(fd, tree)
                self._mount_fds[fsid] = fd
                fd = -1
            finally:
                if fd >= 0:
                    os.close(fd)
        log.info(
            "fanotify group ready trees=%d filesystems=%d reads=%s unlimited_queue=%s",
            len(self.trees),
            len(self._mount_fds),
            self.watch_reads,
            self.unlimited_queue,
        )

    def _mark(self, fd: int, tree: bytes) -> None:
        try:
            self._sc.fanotify_mark(self._group_fd, sc.FAN_MARK_ADD | sc.FAN_MARK_FILESYSTEM, self.mask, fd, None)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise OSError(
                    errno.EXDEV,
                    "cannot place a fanotify filesystem mark through a btrfs subvolume: mount the "
                    "top-level subvolume (subvolid=5) somewhere and protect the tree through that path",
                    os.fsdecode(tree),
                ) from exc
            if exc.errno in (errno.ENODEV, errno.EOPNOTSUPP):
                raise OSError(
                    exc.errno,
                    "this filesystem cannot report file handles (zero fsid or no export support), "
                    "so fanotify cannot watch it by name",
                    os.fsdecode(tree),
                ) from exc
            raise OSError(exc.errno, f"fanotify_mark failed: {exc.strerror}", os.fsdecode(tree)) from exc

    def _remember_root(self, fd: int, fsid: bytes, tree: bytes) -> None:
        # Seeding the tree root lets events about the root itself (chmod, rmdir) resolve even
        # after the root is gone. Purely an optimisation: failures are ignored.
        try:
            handle, _mnt = self._sc.name_to_handle_at(fd, b"", sc.AT_EMPTY_PATH)
        except OSError:
            return
        self._dir_cache[(fsid, handle)] = tree if tree == b"/" else tree + b"/"

    def _pidfds_per_read(self) -> int:
        """The most pidfds one read of ``read_size`` bytes can install (one per event)."""
        return self.read_size // _MIN_EVENT_SIZE

    def _ensure_fd_headroom(self) -> None:
        # The kernel installs one pidfd per event during read(); when the fd table is full it
        # reports FAN_EPIDFD instead and the subject is lost. Make room for a full read buffer.
        need = self._pidfds_per_read() + 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < need:
            new = need if hard == resource.RLIM_INFINITY else min(hard, need)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
                soft = new
            except (ValueError, OSError):
                pass
        if soft != resource.RLIM_INFINITY and soft < need:
            self.read_size = max(8192, (soft - 1024) * _MIN_EVENT_SIZE if soft > 1152 else 8192)
            log.warning("RLIMIT_NOFILE=%d is low: fanotify reads shrunk to %d bytes", soft, self.read_size)

    def start(self) -> None:
        """Open (if needed) and start the reader thread. When this returns the marks are in
        place: every later operation under the trees is seen."""
        self.open()
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("FanotifySensor already started")
            self._thread = threading.Thread(target=self._run, name="nocry-sensor", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the reader and close the group; idempotent.

        The marks are flushed first (no new events queue up), then the reader is woken through its
        pipe and joined; it closes the group fd and the directory fds on its way out. Closing them
        from here while the reader may still poll them would race with fd-number reuse. If the
        sink blocks beyond ``timeout`` the reader is left to finish (a daemon thread) and closes
        the fds when the sink returns."""
        with self._lock:
            self._stopping = True
            thread = self._thread
            if self._group_fd >= 0:
                try:
                    self._sc.fanotify_mark(self._group_fd, sc.FAN_MARK_FLUSH | sc.FAN_MARK_FILESYSTEM, 0, sc.AT_FDCWD, None)
                except OSError:
                    pass
            if thread is None:
                self._close_locked()
                return
            if self._wake_w >= 0:
                try:
                    os.write(self._wake_w, b"x")
                except OSError:
                    pass  # pipe full: the reader is being woken anyway
        if thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("sensor reader still busy after %.1fs (sink blocked?); it closes its fds when it returns", timeout)

    close = stop

    def barrier(self, timeout: float = 10.0) -> bool:
        """Return True once every event the kernel queued before this call has been handed to the
        sink (False on timeout or when the reader is not running). Used by ``nocry sync``.

        A read that finds the queue empty proves that everything queued before *that read began*
        was delivered; the second such read after this call certainly began after it."""
        if not self.running:
            return False
        deadline = time.monotonic() + timeout
        with self._drain_cond:
            target = self._drain_gen + 2
            while self._drain_gen < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.running:
                    return False
                try:
                    os.write(self._wake_w, b"b")  # out of poll(), into a read
                except OSError:
                    pass  # pipe full: the reader has nudges pending anyway
                self._drain_cond.wait(min(remaining, 0.05))
        return True

    def __enter__(self) -> FanotifySensor:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _close_locked(self) -> None:
        # set(): one directory fd may serve several fsids (see _learn_fsid); close it once
        for fd in (self._group_fd, self._wake_r, self._wake_w, *set(self._mount_fds.values())):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._group_fd = self._wake_r = self._wake_w = -1
        self._mount_fds = {}

    # --- reader ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            poller = select.poll()
            poller.register(self._group_fd, select.POLLIN)
            poller.register(self._wake_r, select.POLLIN)
            group_fd, read_size = self._group_fd, self.read_size
            wake_r = self._wake_r
            nap = self.coalesce_s
            while not self._stopping:
                poller.poll()
                if self._stopping:
                    break
                # Let a burst gather before reading it. While this thread waits in poll(), the
                # kernel wakes it from the writer's context for every single event (on a VM a
                # cross-CPU wake-up is a hypervisor exit); while it sleeps here, queueing an
                # event costs the writer no wake-up at all: one wake-up per burst, not per event,
                # for at most ``coalesce_s`` more latency.
                if nap > 0:
                    time.sleep(nap)
                try:
                    os.read(wake_r, 4096)  # nudges from barrier(); stop() is seen through _stopping
                except BlockingIOError:
                    pass
                # Drain until EAGAIN before polling again: under load that saves a syscall per batch.
                while not self._stopping:
                    try:
                        buf = os.read(group_fd, read_size)
                    except BlockingIOError:
                        with self._drain_cond:
                            self._drain_gen += 1
                            self._drain_cond.notify_all()
                        break
                    except OSError as exc:
                        self.errors += 1
                        if exc.errno in (errno.EBADF, errno.EINVAL):
                            raise
                        if self._ratelimit("read"):
                            log.error("fanotify read failed: %s", exc)
                        time.sleep(0.01)
                        break
                    events = self.process(buf)
                    if events:
                        self._deliver(events)
        except BaseException:
            # Never silent: the log says it, and the consumer gets a last Overflow so that it can
            # alarm and rescan (running turns False as well).
            log.exception("sensor reader died; no further file events will be seen")
            try:
                self._deliver([self._overflow(time.time_ns(), "sensor_died")])
            except BaseException:
                pass
        finally:
            with self._lock:
                self._close_locked()

    def _deliver(self, events: list[Event]) -> None:
        self.events_emitted += len(events)
        try:
            self._sink(events)
        except Exception:
            self.sink_errors += 1
            if self._ratelimit("sink"):
                log.exception("sensor sink raised; its batch of %d events is lost", len(events))

    def process(self, buf: bytes, *, close_fds: bool = True) -> list[Event]:
        """Decode and convert one read buffer; closes every fd the buffer installed unless
        ``close_fds`` is false (benchmarks replaying a captured buffer). Not thread-safe: the
        reader thread calls it; call it by hand only on a sensor that was opened, not started."""
        time_ns = time.time_ns()
        now = time.monotonic()
        self.read_batches += 1
        try:
            raws = decode(buf)
        except DecodeError as exc:
            if close_fds:
                _close_all(pidfds_in(buf))
            self.errors += 1
            if self._ratelimit("decode"):
                log.error("undecodable fanotify buffer (%d bytes): %s", len(buf), exc)
            return [self._overflow(time_ns, "sensor_error")]
        try:
            return self.convert(raws, time_ns, now, extend=close_fds)
        except Exception:
            self.errors += 1
            if self._ratelimit("convert"):
                log.exception("failed to convert a batch of %d fanotify events", len(raws))
            return [self._overflow(time_ns, "sensor_error")]
        finally:
            if close_fds:
                for raw in raws:
                    if raw.pidfd >= 0:
                        _close(raw.pidfd)
                    if raw.fd >= 0:
                        _close(raw.fd)

    def read_buffer(self, timeout: float = 1.0) -> bytes:
        """One raw read() from the group, or b"" after ``timeout`` seconds without events. For
        benchmarks and diagnostics on a sensor that was opened but not started; the caller owns
        the pidfds the read installed (close them, e.g. through :meth:`process`)."""
        if self._thread is not None or self._group_fd < 0:
            raise RuntimeError("read_buffer() needs an opened sensor whose reader is not running")
        poller = select.poll()
        poller.register(self._group_fd, select.POLLIN)
        if not poller.poll(timeout * 1000):
            return b""
        try:
            return os.read(self._group_fd, self.read_size)
        except BlockingIOError:
            return b""

    def _overflow(self, time_ns: int, reason: str, trees: tuple[bytes, ...] | None = None) -> Overflow:
        self._seq += 1
        return Overflow(time_ns=time_ns, seq=self._seq, trees=self.trees if trees is None else trees, reason=reason)

    def convert(self, raws: list[RawEvent], time_ns: int, now: float, *, extend: bool = False) -> list[Event]:
        """Raw kernel records -> events for the sink: resolve, filter, attach subjects. Closes
        nothing. ``now`` is a monotonic reading for the subject cache.

        With ``extend``, a directory handle that no longer resolves makes the sensor read more
        events from the group into ``raws`` (the same list: the caller closes their pidfds too),
        looking for the removal or rename that names it (see :meth:`_find_in_batch`)."""
        out: list[Event] = []
        append = out.append
        ignore = self.ignore_pids
        op_cache = self._op_cache
        resolve_dir = self._resolve_dir
        watched = self._watched
        dir_cache = self._dir_cache
        lookup = self._subjects.lookup
        unresolved_reported = False
        self.events_total += len(raws)
        self._batch = raws
        self._batch_misses = set()
        self._extend_budget = 4 if extend else 0
        self._waited = False
        for pos, raw in enumerate(raws):
            self._batch_pos = pos
            mask, pid, _fd, pidfd, infos, _err, _errcount = raw
            if mask & sc.FAN_Q_OVERFLOW:
                self.overflows += 1
                append(self._overflow(time_ns, "queue_overflow"))
                continue
            if pid in ignore or not infos:
                if mask & sc.FAN_RENAME and mask & sc.FAN_ONDIR:
                    dir_cache.clear()  # our own directory renames still make cached paths stale
                continue
            ops = op_cache.get(mask)
            if ops is None:
                ops = op_cache[mask] = ops_from_mask(mask)
            is_dir = bool(mask & sc.FAN_ONDIR)
            old_path: bytes | None = None

            if mask & sc.FAN_RENAME:
                new_path = target = None
                for info in infos:
                    itype = info[0]
                    if itype == _OLD or itype == _NEW:
                        d = resolve_dir(info[1], info[2])
                        p = None if d is None else d + info[3]
                        if itype == _OLD:
                            old_path = p
                        else:
                            new_path = p
                    elif itype == _FID:
                        target = info
                if is_dir:
                    # Every cached path under the old name is stale now. Stale paths only matter
                    # where they change a filter decision: a subtree moved from outside every
                    # tree to outside every tree stays outside, so busy directories elsewhere on
                    # the filesystem (build dirs, package managers) do not flush the cache.
                    if old_path is None or new_path is None or self._relevant(old_path) or self._relevant(new_path):
                        dir_cache.clear()
                    if target is not None and new_path is not None:
                        dir_cache[(target[1], target[2])] = new_path + b"/"
                if old_path is None or new_path is None:
                    self.unresolved += 1
                    if not unresolved_reported:
                        unresolved_reported = True
                        append(self._overflow(time_ns, "unresolved"))
                    if old_path is None and new_path is None:
                        continue
                if is_dir and old_path is not None:
                    self._check_tree_moved(old_path, time_ns, append)
                path = new_path if new_path is not None else old_path
                assert path is not None
                if not (watched(path) or (old_path is not None and watched(old_path))):
                    continue
            else:
                info = infos[0]
                itype = info[0]
                if itype == _DFID_NAME or itype == _DFID:
                    d = resolve_dir(info[1], info[2])
                    name = info[3]
                    if d is None:
                        if name == b"." or not name:
                            self.stale_self += 1  # a directory's own event, directory gone since
                        elif mask & _CHANGE_BITS:
                            self.unresolved += 1
                            if not unresolved_reported:
                                unresolved_reported = True
                                append(self._overflow(time_ns, "unresolved"))
                        else:
                            self.unresolved += 1
                        continue
                    path = (d[:-1] or b"/") if (name == b"." or not name) else d + name
                    if is_dir and mask & (sc.FAN_CREATE | sc.FAN_DELETE):
                        child = infos[1] if len(infos) > 1 and infos[1][0] == _FID else None
                        if child is not None and mask & sc.FAN_CREATE:
                            dir_cache[(child[1], child[2])] = path + b"/"
                        if mask & sc.FAN_DELETE:
                            # CREATE|DELETE means the kernel merged mkdir and rmdir into the
                            # earlier event: the events inside the directory still follow, so
                            # keep its path. (A gone directory's handle is never reused, so a
                            # kept entry cannot misname anything.)
                            if child is not None and not mask & sc.FAN_CREATE:
                                dir_cache.pop((child[1], child[2]), None)
                            self._check_tree_moved(path, time_ns, append)
                elif itype == _FID:
                    # An event on the object itself with no parent to name it: DELETE_SELF, or
                    # ATTRIB for a link-count change. The parent's DELETE event names a deleted
                    # file, so a file's DELETE_SELF is skipped without even trying its handle
                    # (one per deleted file: trying would cost a failing syscall each).
                    if mask & sc.FAN_DELETE_SELF and not is_dir:
                        self.stale_self += 1
                        continue
                    p = self._resolve_self(info[1], info[2], is_dir)
                    if p is None:
                        self.stale_self += 1
                        continue
                    path = p
                else:
                    continue
                if not watched(path):
                    continue
            self._seq += 1
            append(
                FileEvent(
                    ops=ops,
                    path=path,
                    time_ns=time_ns,
                    seq=self._seq,
                    is_dir=is_dir,
                    old_path=old_path,
                    subject=lookup(pidfd, pid, now),
                )
            )
        return out

    def _watched(self, path: bytes) -> bool:
        if not (path.startswith(self._tree_prefixes) or path in self._tree_roots):
            return False
        if self._excl_roots and (path.startswith(self._excl_prefixes) or path in self._excl_roots):
            return False
        return True

    def _relevant(self, path: bytes) -> bool:
        """Inside a tree, or an ancestor of one (so that moving it moves a tree)."""
        if path.startswith(self._tree_prefixes) or path in self._tree_roots:
            return True
        prefix = path if path == b"/" else path + b"/"
        return any(t.startswith(prefix) for t in self.trees)

    def _check_tree_moved(self, old: bytes, time_ns: int, append: Callable[[Event], None]) -> None:
        # A tree root, or a directory above it, renamed or removed: the kernel keeps reporting
        # the objects, but under paths outside the tree, which the filter then drops. Say so.
        prefix = old if old == b"/" else old + b"/"
        moved = tuple(t for t in self.trees if t == old or t.startswith(prefix))
        if moved:
            if self._ratelimit("tree_moved"):
                log.warning("protected tree moved or removed: %s", b", ".join(moved).decode("utf-8", "backslashreplace"))
            append(self._overflow(time_ns, "tree_moved", moved))

    def _resolve_dir(self, fsid: bytes, handle: bytes, depth: int = 0) -> bytes | None:
        """Directory handle -> its path with a trailing slash, or None if it cannot be found."""
        key = (fsid, handle)
        path = self._dir_cache.get(key)
        if path is not None:
            return path
        path = self._open_path(fsid, handle)
        if path is None:
            path = self._find_in_batch(key, depth)
            if path is None:
                return None
        elif path != b"/":
            path += b"/"
        cache = self._dir_cache
        if len(cache) >= self.dir_cache_size:
            # FIFO eviction of the oldest quarter: amortised O(1) and no per-hit bookkeeping
            for old in list(cache)[: max(1, self.dir_cache_size // 4)]:
                del cache[old]
        cache[key] = path
        return path

    def _find_in_batch(self, key: tuple[bytes, bytes], depth: int) -> bytes | None:
        """A directory already gone (ESTALE) may be named by its own removal or rename later in
        the same batch: that event carries its parent and name plus, as target fid, its handle.
        Typical case: ``rm -r`` of a tree the sensor had not seen yet. Only on the slow path."""
        if depth > 128 or key in self._batch_misses:
            return None
        raws = self._batch
        start = self._batch_pos + 1
        while True:
            for i in range(start, len(raws)):
                mask = raws[i][0]
                if not (mask & sc.FAN_ONDIR and mask & (sc.FAN_DELETE | sc.FAN_RENAME)):
                    continue
                parent = target = None
                for info in raws[i][4]:
                    if info[0] == _FID:
                        target = info
                    elif info[0] == _DFID_NAME or info[0] == _OLD:
                        parent = info
                if target is None or parent is None or (target[1], target[2]) != key:
                    continue
                d = self._resolve_dir(parent[1], parent[2], depth + 1)
                if d is None:
                    break
                return d + parent[3] + b"/"
            # Not in this batch. The usual reason: the directory went away between our read()
            # and our open_by_handle_at(), so its removal is the next thing in the queue.
            start = len(raws)
            if not self._extend_batch():
                break
        self._batch_misses.add(key)
        return None

    def _extend_batch(self) -> bool:
        """Append the next read() to the batch being converted; False when there is nothing to
        append or the per-batch budget is spent. Waits once, briefly, for the kernel to queue the
        event of a removal that is already visible in the filesystem."""
        while self._extend_budget > 0 and self._group_fd >= 0:
            self._extend_budget -= 1
            try:
                buf = os.read(self._group_fd, self.read_size)
            except BlockingIOError:
                if self._waited:
                    return False
                self._waited = True
                time.sleep(0.001)
                continue
            except OSError:
                return False
            try:
                more = decode(buf)
            except DecodeError:
                _close_all(pidfds_in(buf))
                return False
            if not more:
                return False
            self.events_total += len(more)
            self._batch.extend(more)
            return True
        return False

    def _resolve_self(self, fsid: bytes, handle: bytes, is_dir: bool) -> bytes | None:
        cached = self._dir_cache.get((fsid, handle))
        if cached is not None:
            return cached[:-1] or b"/"
        # Not cached: a non-directory resolves to one of its names (any hard link), good enough
        # for a metadata event; a file that is gone does not resolve at all.
        return self._open_path(fsid, handle)

    def _open_path(self, fsid: bytes, handle: bytes) -> bytes | None:
        mount_fd = self._mount_fds.get(fsid)
        if mount_fd is None:
            mount_fd = self._learn_fsid(fsid, handle)
            if mount_fd is None:
                return None
        try:
            fd = self._sc.open_by_handle_at(mount_fd, handle, _O_PATH_CLOEXEC)
        except OSError:
            return None  # ESTALE: the object is gone
        try:
            path = os.readlink(b"/proc/self/fd/%d" % fd)
            if path.endswith(_DELETED) and os.fstat(fd).st_nlink == 0:
                return None
        except OSError:
            return None
        finally:
            os.close(fd)
        # a path outside our mount namespace's view comes back without a leading slash
        return path if path.startswith(b"/") else None

    def _learn_fsid(self, fsid: bytes, handle: bytes) -> int | None:
        # Events only come from filesystems we marked, but one filesystem may report several
        # fsids (btrfs subvolumes). Find the marked filesystem that can open the handle and
        # remember the pairing.
        for mount_fd in list(self._mount_fds.values()):
            try:
                fd = self._sc.open_by_handle_at(mount_fd, handle, _O_PATH_CLOEXEC)
            except OSError:
                continue
            os.close(fd)
            self._mount_fds[fsid] = mount_fd
            return mount_fd
        return None


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        _close(fd)
