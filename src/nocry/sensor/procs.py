"""Who acted: turn the (pidfd, pid) of a fanotify event into an :class:`events.Subject`.

Reading /proc costs a handful of syscalls, far too many to pay per event, so subjects are cached.
The key is the pidfd's inode number: on kernel >= 6.9 pidfds live on pidfs, whose inode numbers
are unique per process for the life of the boot and never reused, unlike pids (pid_max can be as
small as 32768). ::

    key = fstat(pidfd).st_ino                    # pidfs; one cheap syscall
    if key cached and younger than max_age: return it
    read /proc/PID/{stat,status,exe}             # comm, ppid, sid, start_time, uid, exe
    pidfd_send_signal(pidfd, 0)                  # still alive => the /proc data was really PID's
    cache and return

The pidfd pins the process's identity, /proc does not: a reaped pid can be reused between the
event and our read. So /proc data is only trusted when the pidfd says the process still exists
after the read. The cache never closes the pidfd; whoever read it from the kernel does.

No pidfd (the kernel reports FAN_NOPIDFD when the process had already been reaped before the event
was read, FAN_EPIDFD when it could not make one): the subject is ``Subject(pid)`` enriched from
the most recent live sighting of the same pid if that is younger than ``max_age`` (a process that
wrote several files and exited), else the bare pid. On kernels without pidfs the key falls back to
``(pid, start_time)``, which costs one read of /proc/PID/stat per event.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable

from nocry.events import Subject
from nocry.sensor._syscalls import PIDFS_MAGIC, Syscalls

__all__ = ["SubjectCache", "read_proc_subject"]

log = logging.getLogger(__name__)


def _read_small(path: bytes) -> bytes:
    # os.open/os.read instead of open(): no buffered-reader object per call (this is a hot path)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 8192)
    finally:
        os.close(fd)


def read_proc_subject(pid: int, proc: bytes = b"/proc") -> Subject | None:
    """Read a subject from /proc; None if the process is gone. The caller must check, with a
    pidfd, that the pid still names the process it meant."""
    base = b"%s/%d/" % (proc, pid)
    try:
        stat = _read_small(base + b"stat")
        status = _read_small(base + b"status")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may hold spaces and parentheses: it sits between the first "(" and the last ")"
    rparen = stat.rfind(b")")
    if rparen < 0:
        return None
    comm = stat[stat.find(b"(") + 1 : rparen].decode("utf-8", "backslashreplace")
    fields = stat[rparen + 2 :].split()
    # fields[0] is field 3 (state) of proc_pid_stat(5): ppid=4, session=6, starttime=22
    try:
        ppid = int(fields[1])
        sid = int(fields[3])
        start_time = int(fields[19])
    except (IndexError, ValueError):
        return None
    uid = -1
    at = status.find(b"\nUid:")
    if at >= 0:
        try:
            uid = int(status[at + 5 : status.find(b"\n", at + 5)].split()[0])  # real uid comes first
        except (IndexError, ValueError):
            pass
    try:
        exe = os.readlink(base + b"exe")
    except OSError:
        exe = b""  # kernel thread, zombie, or gone
    return Subject(pid=pid, start_time=start_time, exe=exe, comm=comm, uid=uid, ppid=ppid, sid=sid)


class SubjectCache:
    """Maps (pidfd, pid) to a Subject, cheaply. Used by one thread (the sensor's reader)."""

    def __init__(
        self,
        *,
        max_entries: int = 4096,
        max_age_s: float = 1.0,
        proc: bytes = b"/proc",
        syscalls: Syscalls | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self._proc = proc
        self._syscalls = syscalls
        self._clock = clock
        # pidfs inode (or (pid, start_time) without pidfs) -> (subject, fetched_at)
        self._by_key: dict[object, tuple[Subject, float]] = {}
        # pid -> (subject, fetched_at) of the last live sighting, for events without a pidfd
        self._by_pid: dict[int, tuple[Subject, float]] = {}
        self._pidfs: bool | None = None  # unknown until the first pidfd
        self.hits = 0
        self.misses = 0
        self.gone = 0

    def lookup(self, pidfd: int, pid: int, now: float | None = None) -> Subject:
        """The subject behind an event. ``now`` (monotonic seconds) lets a caller pass one clock
        reading for a whole batch. Never raises for a vanished process; never closes ``pidfd``."""
        if now is None:
            now = self._clock()
        if pidfd < 0 or pid <= 0:
            return self._fallback(pid, now)
        if self._pidfs is None:
            self._pidfs = self._detect_pidfs(pidfd)
        subj: Subject | None = None
        try:
            if self._pidfs:
                key: object = os.fstat(pidfd).st_ino
            else:
                subj = read_proc_subject(pid, self._proc)
                if subj is None:
                    return self._fallback(pid, now)
                key = (pid, subj.start_time)
        except OSError:
            return self._fallback(pid, now)
        entry = self._by_key.get(key)
        if entry is not None and now - entry[1] <= self.max_age_s:
            self.hits += 1
            return entry[0]
        self.misses += 1
        if subj is None:
            subj = read_proc_subject(pid, self._proc)
        if subj is None or not _alive(pidfd):
            # exited (and perhaps reaped: the pid may already name someone else) while we read
            self.gone += 1
            return entry[0] if entry is not None else self._fallback(pid, now)
        if not subj.exe and entry is not None and entry[0].exe:
            # Same process (same key) but its exe link is gone: it is exiting (a zombie keeps
            # /proc/PID/stat but loses exe). What it ran is still what we saw before.
            subj = dataclasses.replace(subj, exe=entry[0].exe)
        self._store(self._by_key, key, subj, now)
        self._store(self._by_pid, pid, subj, now)
        return subj

    def _fallback(self, pid: int, now: float) -> Subject:
        entry = self._by_pid.get(pid)
        # A pid seen alive moments ago and reaped since is very likely the same process; beyond
        # max_age a reused pid becomes plausible (pid_max may be small), so return the bare pid.
        if entry is not None and now - entry[1] <= self.max_age_s:
            return entry[0]
        return Subject(pid=pid)

    def _store(self, table: dict, key: object, subj: Subject, now: float) -> None:  # type: ignore[type-arg]
        table.pop(key, None)  # re-insert at the end: dict order doubles as age order
        table[key] = (subj, now)
        if len(table) > self.max_entries:
            # drop the oldest quarter at once, so eviction is amortised O(1) per insert
            for old in list(table)[: max(1, self.max_entries // 4)]:
                del table[old]

    def _detect_pidfs(self, pidfd: int) -> bool:
        syscalls = self._syscalls or Syscalls()
        try:
            is_pidfs = syscalls.fstatfs(pidfd).f_type == PIDFS_MAGIC
        except OSError:
            is_pidfs = False
        if not is_pidfs:
            log.warning("pidfds are not on pidfs (kernel < 6.9): subject cache keys on /proc/PID/stat")
        return is_pidfs

    def clear(self) -> None:
        self._by_key.clear()
        self._by_pid.clear()

    def __len__(self) -> int:
        return len(self._by_key)


def _alive(pidfd: int) -> bool:
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, we just may not signal it (not root)
    return True
