"""Process tracker: a live table of every process, fed by the kernel's process events connector.

A per-event /proc lookup cannot tell who started a process that has already exited, and an attack
that forks one short-lived process per file (a shell loop running ``openssl enc``) is made only
of such processes. The connector reports every fork (parent -> child), exec, exit, setuid, setsid
and rename as it happens, so the table still knows the lineage of processes that are gone. ::

    socket(AF_NETLINK, NETLINK_CONNECTOR), 8 MiB receive buffer, bind to group CN_IDX_PROC
    send PROC_CN_MCAST_LISTEN, wait for the kernel's ack     # from now on the kernel queues events
    seed the table from /proc                                # what happens meanwhile stays queued
    reader thread: recv -> parse -> update the table         # one recv per event, no logging
        FORK  new entry: ppid = parent, exe/comm/uid/sid copied from the parent (threads ignored),
              start_time from /proc/CHILD/stat if still there, else from the event's timestamp
        EXEC  exe and comm from /proc/PID if it is still there, else keep the inherited ones
              and set exe_stale
        EXIT  mark exited; drop after keep_exited_s once no entry names it as parent
        UID / SID / COMM  update
        ENOBUFS (events lost)  count, set ``overflowed``, apply what is queued, re-seed from /proc

``ppid`` is the parent *at fork*, not the current one: an orphan re-parented to init (a double fork)
stays in its attacker's tree. An exited entry is kept past ``keep_exited_s`` while some entry in the
table still names it as parent, so the lineage of every live process stays walkable.

Layouts (linux/netlink.h, linux/connector.h, linux/cn_proc.h; checked against torvalds/linux and
drivers/connector/cn_proc.c): each event is one datagram of ``nlmsghdr`` (16 bytes) + ``cn_msg``
(20) + ``proc_event`` (16-byte head: what, cpu, timestamp_ns; then a 24-byte union), 76 bytes.

Thread-safety: the reader thread is the only writer; every query takes the same lock, which the
reader holds only for dict updates (never for /proc reads or recv).
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import logging
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from nocry.events import Subject

__all__ = ["ProcessTable", "ProcInfo", "parse_proc_event", "ProcEvent"]

log = logging.getLogger(__name__)

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
NLMSG_DONE = 3
SO_RCVBUFFORCE = 33  # asm-generic/socket.h; absent from Python's socket module

PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2

PROC_EVENT_NONE = 0x00000000  # the kernel's ack to a LISTEN / IGNORE request
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_UID = 0x00000004
PROC_EVENT_GID = 0x00000040
PROC_EVENT_SID = 0x00000080
PROC_EVENT_PTRACE = 0x00000100
PROC_EVENT_COMM = 0x00000200
PROC_EVENT_COREDUMP = 0x40000000
PROC_EVENT_EXIT = 0x80000000

# nlmsghdr: len u32, type u16, flags u16, seq u32, pid u32
_NLMSGHDR = struct.Struct("=IHHII")
# cn_msg: id.idx u32, id.val u32, seq u32, ack u32, len u16, flags u16
_CN_MSG = struct.Struct("=IIIIHH")
# Whole datagram in one unpack (the hot path): nlmsghdr, cn_msg, proc_event head
# (what u32, cpu u32, timestamp_ns u64 — 8-aligned inside the kernel's buffer, and cn_msg is 20
# bytes, so no padding appears on the wire) and the first 16 bytes of the union as four s32:
#   fork: parent_pid, parent_tgid, child_pid, child_tgid
#   exec / sid: process_pid, process_tgid
#   id (uid, gid): process_pid, process_tgid, ruid, euid
#   exit: process_pid, process_tgid, exit_code, exit_signal (then parent_pid, parent_tgid)
_EVENT = struct.Struct("=IHHII" "IIIIHH" "IIQ" "iiii")
_HEAD = _NLMSGHDR.size + _CN_MSG.size  # 36: offset of proc_event
_COMM_AT = _HEAD + 16 + 8  # comm_proc_event.comm[16] follows process_pid, process_tgid
_PROC_EVENT_SIZE = 40  # 16 + the union's largest members (comm, exit): 24
_DATAGRAM = _HEAD + _PROC_EVENT_SIZE

_NS = 1_000_000_000
_IDLE_US = 500_000  # SO_RCVTIMEO: a quiet reader wakes this often to prune and check for stop


@dataclass(frozen=True, slots=True)
class ProcInfo:
    """One process as the table knows it. ``(pid, start_time)`` names it across pid reuse;
    ``start_time`` is in clock ticks since boot (field 22 of /proc/PID/stat). ``exe_stale`` is
    True when the process exec'd but had exited before its new exe could be read: ``exe`` and
    ``comm`` are then the ones it inherited (what it was *before* the exec)."""

    pid: int
    ppid: int
    start_time: int
    exe: bytes
    comm: str
    uid: int
    sid: int
    alive: bool = True
    exited_at: float | None = None  # time.monotonic() seconds
    exe_stale: bool = False

    def subject(self) -> Subject:
        return Subject(
            pid=self.pid,
            start_time=self.start_time,
            exe=self.exe,
            comm=self.comm,
            uid=self.uid,
            ppid=self.ppid,
            sid=self.sid,
        )


@dataclass(frozen=True, slots=True)
class ProcEvent:
    """One decoded connector message (for tests and tools; the reader does not build these)."""

    what: int
    cpu: int
    timestamp_ns: int
    seq: int
    ack: int
    data: tuple[int, int, int, int]
    comm: bytes = b""


def parse_proc_event(buf: bytes | bytearray | memoryview, offset: int = 0) -> ProcEvent | None:
    """Decode one connector datagram; None if it is not a process event."""
    if len(buf) - offset < _DATAGRAM:
        return None
    (_, nl_type, _, _, _, idx, val, seq, ack, _, _, what, cpu, ts, a, b, c, d) = _EVENT.unpack_from(
        buf, offset
    )
    if nl_type != NLMSG_DONE or idx != CN_IDX_PROC or val != CN_VAL_PROC:
        return None
    comm = b""
    if what == PROC_EVENT_COMM:
        comm = bytes(buf[offset + _COMM_AT : offset + _COMM_AT + 16]).split(b"\0", 1)[0]
    return ProcEvent(what, cpu, ts, seq, ack, (a, b, c, d), comm)


def _read_small(path: bytes) -> bytes:
    # os.open/os.read: no buffered file object per call (this runs once per fork and exec)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _parse_stat(stat: bytes) -> tuple[str, str, int, int, int] | None:
    """(comm, state, ppid, sid, start_time) from /proc/PID/stat."""
    # comm may hold spaces and parentheses: it sits between the first "(" and the last ")"
    rparen = stat.rfind(b")")
    if rparen < 0:
        return None
    comm = stat[stat.find(b"(") + 1 : rparen].decode("utf-8", "backslashreplace")
    fields = stat[rparen + 2 :].split()
    # fields[0] is field 3 (state) of proc_pid_stat(5): ppid=4, session=6, starttime=22
    try:
        return comm, fields[0].decode("ascii"), int(fields[1]), int(fields[3]), int(fields[19])
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


def _read_stat(pid: int) -> tuple[str, str, int, int, int] | None:
    try:
        return _parse_stat(_read_small(b"/proc/%d/stat" % pid))
    except OSError:
        return None


def _read_proc(pid: int, now: float) -> ProcInfo | None:
    """A full entry from /proc (seeding and processes whose fork we missed)."""
    base = b"/proc/%d/" % pid
    try:
        exe = os.readlink(base + b"exe")
    except OSError:
        exe = b""  # kernel thread, zombie, gone, or not ours to read
    try:
        stat = _parse_stat(_read_small(base + b"stat"))
        status = _read_small(base + b"status")
    except OSError:
        return None
    if stat is None:
        return None
    comm, state, ppid, sid, start_time = stat
    uid = -1
    at = status.find(b"\nUid:")
    if at >= 0:
        try:
            uid = int(status[at + 5 : status.find(b"\n", at + 5)].split()[0])  # real uid first
        except (IndexError, ValueError):
            pass
    # A zombie has already sent its EXIT; nothing more will come for it, not even on reaping.
    dead = state in ("Z", "X", "x")
    return ProcInfo(
        pid=pid,
        ppid=ppid,
        start_time=start_time,
        exe=exe,
        comm=comm,
        uid=uid,
        sid=sid,
        alive=not dead,
        exited_at=now if dead else None,
    )


def _same_start(a: int, b: int) -> bool:
    # A start time estimated from the event's timestamp can be one tick later than the kernel's.
    return -1 <= a - b <= 1


class ProcessTable:
    """Every process on the machine (alive, or exited recently) with its parent at fork.

    ``start()`` needs the initial user and pid namespaces and, before Linux 6.6, CAP_NET_ADMIN;
    otherwise it raises OSError and the caller falls back to per-event /proc lookups. (From 6.6 an
    unprivileged listener is accepted, but it cannot read other users' exe links: run as root.)"""

    def __init__(
        self, *, keep_exited_s: float = 120.0, max_entries: int = 200_000, rcvbuf: int = 8 << 20
    ) -> None:
        self.keep_exited_s = keep_exited_s
        self.max_entries = max_entries
        self._procs: dict[int, ProcInfo] = {}
        self._kids: dict[int, set[int]] = {}  # ppid -> pids whose entry names it (maybe stale)
        self._exited: collections.deque[tuple[float, int, int]] = collections.deque()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._clk_tck = os.sysconf("SC_CLK_TCK")
        self._boot_offset_ns = 0  # CLOCK_BOOTTIME - CLOCK_MONOTONIC (grows with suspend)
        self.overflowed = False  # events were lost at least once; the consumer may clear it
        self.events = 0
        self.forks = 0
        self.execs = 0
        self.exits = 0
        self.lost = 0
        self.errors = 0
        self.reseeds = 0
        self._want_rcvbuf = rcvbuf
        self.rcvbuf = 0  # as granted (the kernel doubles the request for its bookkeeping)

    # --- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("ProcessTable already started")
        sock = self._open()
        try:
            self._subscribe(sock)
            # Subscribed first, seeded second: whatever happens during the seed is queued in the
            # socket and applied after it, so the table can only become newer than /proc was.
            # Blocking recv with a kernel-side timeout: one syscall per event, no poll() before
            # each; the timeout lets a quiet reader prune and notice stop().
            sock.settimeout(None)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("=qq", 0, _IDLE_US))
            self._sock = sock
            self._seed()
        except BaseException:
            self._sock = None
            sock.close()
            raise
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="nocry-proctrack", daemon=True)
        self._thread.start()
        log.info(
            "process table started: processes=%d rcvbuf=%d keep_exited_s=%g",
            len(self._procs),
            self.rcvbuf,
            self.keep_exited_s,
        )

    def stop(self) -> None:
        """Unsubscribe, close and join. Idempotent; safe if start() failed or never ran."""
        thread, sock = self._thread, self._sock
        if thread is None and sock is None:
            return
        self._stopping = True
        if sock is not None and thread is not None:
            try:
                # Wake a reader blocked in recv at once: a repeated LISTEN changes nothing but
                # makes the kernel send us an ack. (At worst SO_RCVTIMEO wakes it.)
                self._send_op(sock, PROC_CN_MCAST_LISTEN)
            except OSError:
                pass
        if thread is not None:
            thread.join(10.0)
            if thread.is_alive():
                log.error("process table reader did not stop within 10 s")
        if sock is not None:
            try:
                self._send_op(sock, PROC_CN_MCAST_IGNORE)
            except OSError:
                pass  # closing the socket unsubscribes as well
            # Close only after the join: closing an fd another thread still reads is a race.
            sock.close()
        self._thread = None
        self._sock = None

    def __enter__(self) -> ProcessTable:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _open(self) -> socket.socket:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_CONNECTOR)
        except OSError as e:
            raise OSError(e.errno, f"process events connector unavailable (no NETLINK_CONNECTOR?): {e.strerror}") from e
        try:
            # A big buffer absorbs fork storms while the reader is busy; FORCE ignores rmem_max.
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self._want_rcvbuf)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._want_rcvbuf)
            self.rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            try:
                sock.bind((0, CN_IDX_PROC))
            except PermissionError as e:
                raise OSError(
                    e.errno,
                    "process events connector: joining CN_IDX_PROC needs CAP_NET_ADMIN (run as root)",
                ) from e
        except BaseException:
            sock.close()
            raise
        return sock

    def _send_op(self, sock: socket.socket, op: int) -> int:
        """Send a LISTEN / IGNORE request; returns the ``ack`` value the kernel's answer carries.
        The kernel overwrites the answer's seq with its own per-cpu counter but sets its ack to
        ours + 1, so a random ack tells our answer from those sent to other listeners."""
        token = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
        payload = struct.pack("=I", op)
        cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, token, len(payload), 0)
        nl = _NLMSGHDR.pack(_NLMSGHDR.size + len(cn) + len(payload), NLMSG_DONE, 0, 0, 0)
        sock.sendto(nl + cn + payload, (0, 0))
        return token + 1

    def _subscribe(self, sock: socket.socket) -> None:
        # The legacy 4-byte LISTEN (every event type) is the one request the kernel acknowledges
        # on every version: with a >= 6.6 event filter the ack itself is filtered away. No ack
        # means the kernel ignored us (a non-initial user or pid namespace) and would send nothing.
        expect = self._send_op(sock, PROC_CN_MCAST_LISTEN)
        sock.settimeout(0.2)
        buf = bytearray(8192)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                n = sock.recv_into(buf)
            except TimeoutError:
                continue
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    continue
                raise
            ev = parse_proc_event(memoryview(buf)[:n])
            if ev is not None and ev.what == PROC_EVENT_NONE and ev.ack == expect:
                if ev.data[0] != 0:
                    # kernels before 6.6 answer EPERM here to a listener without CAP_NET_ADMIN
                    raise OSError(
                        ev.data[0],
                        f"process events connector refused LISTEN: {os.strerror(ev.data[0])}"
                        " (needs CAP_NET_ADMIN before Linux 6.6: run as root)",
                    )
                return
            # Events before the ack are older than the seed that follows: drop them.
        raise OSError(
            errno.ETIMEDOUT,
            "process events connector did not acknowledge LISTEN (not in the initial user/pid namespace?)",
        )

    # --- queries (any thread) ------------------------------------------------------------------

    def info(self, pid: int) -> ProcInfo | None:
        """The newest entry for ``pid``: alive, or exited within keep_exited_s (or longer while
        another entry names it as parent)."""
        with self._lock:
            self._prune(time.monotonic())
            return self._procs.get(pid)

    def parent(self, pid: int) -> int | None:
        """The parent at fork (0 for init and kthreadd), or None if ``pid`` is unknown."""
        e = self.info(pid)
        return None if e is None else e.ppid

    def is_alive(self, pid: int) -> bool:
        e = self._procs.get(pid)  # one dict read is atomic; no prune needed for alive entries
        return e is not None and e.alive

    def subject(self, pid: int) -> Subject | None:
        e = self.info(pid)
        return None if e is None else e.subject()

    def ancestors(self, pid: int) -> list[int]:
        """[parent, grandparent, ..., 1]. Stops at an unknown parent, at a pid now held by a
        process younger than its supposed child (pid reuse), and at a cycle."""
        out: list[int] = []
        with self._lock:
            self._prune(time.monotonic())
            procs = self._procs
            e = procs.get(pid)
            seen = {pid}
            while e is not None and e.ppid > 0 and e.ppid not in seen:
                p = procs.get(e.ppid)
                if p is None or p.start_time > e.start_time + 1:
                    break
                out.append(p.pid)
                seen.add(p.pid)
                e = p
        return out

    def children(self, pid: int, *, include_exited: bool = False) -> list[int]:
        """Direct children (alive ones unless ``include_exited``), sorted by pid."""
        with self._lock:
            self._prune(time.monotonic())
            return sorted(self._children_locked(pid, include_exited))

    def descendants(self, pid: int) -> list[int]:
        """Alive descendants at any depth, sorted by pid. The walk passes through exited
        intermediates, so a grandchild whose parent has exited (a double fork) still counts."""
        out: list[int] = []
        with self._lock:
            self._prune(time.monotonic())
            stack = [pid]
            seen = {pid}
            while stack:
                for c in self._children_locked(stack.pop(), True):
                    if c in seen:
                        continue
                    seen.add(c)
                    stack.append(c)
                    if self._procs[c].alive:
                        out.append(c)
        return sorted(out)

    def _children_locked(self, pid: int, include_exited: bool) -> list[int]:
        kids = self._kids.get(pid)
        if not kids:
            return []
        parent = self._procs.get(pid)
        out = []
        for c in kids:
            e = self._procs.get(c)
            if e is None or e.ppid != pid or not (e.alive or include_exited):
                continue
            if parent is not None and e.start_time + 1 < parent.start_time:
                continue  # child of an earlier holder of this pid
            out.append(c)
        return out

    def snapshot(self) -> dict[int, ProcInfo]:
        """A copy of the whole table (after pruning)."""
        with self._lock:
            self._prune(time.monotonic())
            return dict(self._procs)

    def __len__(self) -> int:
        return len(self._procs)

    @property
    def counters(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "forks": self.forks,
            "execs": self.execs,
            "exits": self.exits,
            "lost": self.lost,
            "errors": self.errors,
            "reseeds": self.reseeds,
            "entries": len(self._procs),
            "overflowed": self.overflowed,
        }

    # --- reader thread ------------------------------------------------------------------------

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        buf = bytearray(16384)
        view = memoryview(buf)
        apply = self._apply
        since_prune = 0
        while not self._stopping:
            try:
                n = sock.recv_into(buf)
            except (BlockingIOError, TimeoutError):
                # SO_RCVTIMEO: quiet for a while. Prune, so that a quiet machine forgets too.
                with self._lock:
                    self._prune(time.monotonic())
                continue
            except InterruptedError:
                continue
            except OSError as e:
                if self._stopping:
                    break
                if e.errno == errno.ENOBUFS:
                    self._on_overflow(sock, buf, view)
                    continue
                self.errors += 1
                log.error("process table: recv failed: %s; reader stops", e)
                break
            apply(buf, view, n)
            since_prune += 1
            if since_prune >= 256:
                since_prune = 0
                with self._lock:
                    self._prune(time.monotonic())

    def _apply(self, buf: bytearray, view: memoryview, n: int) -> None:
        off = 0
        # One datagram normally holds one message; walk nlmsg_len anyway.
        while n - off >= _DATAGRAM:
            fields = _EVENT.unpack_from(buf, off)
            nl_len = fields[0]
            if fields[1] == NLMSG_DONE and fields[5] == CN_IDX_PROC:
                try:
                    self._handle(fields, view, off)
                except Exception:
                    self.errors += 1
                    if self.errors <= 10 or self.errors % 1000 == 0:
                        log.exception("process table: failed to apply an event (errors=%d)", self.errors)
            if nl_len < _NLMSGHDR.size:
                break
            off += (nl_len + 3) & ~3

    def _handle(self, f: tuple[Any, ...], view: memoryview, off: int) -> None:
        what = f[11]
        if what == PROC_EVENT_NONE:
            return  # an ack (ours or another listener's)
        self.events += 1
        if what == PROC_EVENT_FORK:
            # parent_pid, parent_tgid, child_pid, child_tgid: a thread shares its tgid
            if f[16] == f[17]:
                self._on_fork(f[15], f[17], f[13])
        elif what == PROC_EVENT_EXIT:
            if f[14] == f[15]:  # the thread group leader (a thread's exit is not the process's)
                self._on_exit(f[15], f[13])
        elif what == PROC_EVENT_EXEC:
            self._on_exec(f[15])
        elif what == PROC_EVENT_UID:
            ruid = f[16] & 0xFFFFFFFF
            self._update(f[15], uid=ruid)
        elif what == PROC_EVENT_SID:
            self._update(f[15], sid=f[15])  # setsid(): the caller leads a session named after it
        elif what == PROC_EVENT_COMM:
            if f[14] == f[15]:  # a thread's name is not the process's comm
                raw = bytes(view[off + _COMM_AT : off + _COMM_AT + 16]).split(b"\0", 1)[0]
                self._update(f[15], comm=raw.decode("utf-8", "backslashreplace"))

    def _ticks(self, ts_ns: int) -> int:
        # The event's timestamp is CLOCK_MONOTONIC; /proc's start_time is CLOCK_BOOTTIME in ticks.
        return (ts_ns + self._boot_offset_ns) * self._clk_tck // _NS

    def _on_fork(self, ppid: int, pid: int, ts_ns: int) -> None:
        self.forks += 1
        start = self._ticks(ts_ns)
        stat = _read_stat(pid)
        if stat is not None and _same_start(stat[4], start):
            start = stat[4]  # exact, when the child is still there to ask
        procs = self._procs
        parent = procs.get(ppid)
        fresh: ProcInfo | None = None
        if parent is None:
            # We missed the parent (it predates a lost burst): ask /proc about the child itself.
            fresh = _read_proc(pid, time.monotonic())
            if fresh is not None and not _same_start(fresh.start_time, start):
                fresh = None
        with self._lock:
            old = procs.get(pid)
            if old is not None:
                if old.alive and _same_start(old.start_time, start):
                    return  # seeded from /proc after this fork: the seed is newer
                self._unlink(old)
            if parent is not None:
                info = ProcInfo(
                    pid, ppid, start, parent.exe, parent.comm, parent.uid, parent.sid, exe_stale=parent.exe_stale
                )
            elif fresh is not None:
                info = dataclasses.replace(fresh, ppid=ppid, start_time=start)
            else:
                info = ProcInfo(pid, ppid, start, b"", "", -1, 0)
            procs[pid] = info
            self._kids.setdefault(ppid, set()).add(pid)
            if len(procs) > self.max_entries:
                self._evict()

    def _on_exec(self, pid: int) -> None:
        self.execs += 1
        try:
            exe = os.readlink(b"/proc/%d/exe" % pid)
        except OSError:
            exe = None
        # stat after readlink: a start time that still matches proves the exe was this process's
        stat = _read_stat(pid)
        procs = self._procs
        if procs.get(pid) is None:
            fresh = _read_proc(pid, time.monotonic())
            if fresh is not None:
                with self._lock:
                    if procs.get(pid) is None:
                        procs[pid] = fresh
                        self._kids.setdefault(fresh.ppid, set()).add(pid)
            return
        with self._lock:
            e = procs.get(pid)
            if e is None:
                return
            if exe is not None and stat is not None and _same_start(stat[4], e.start_time):
                # (and the exact start time, in case the fork's was estimated)
                new = dataclasses.replace(e, exe=exe, comm=stat[0], start_time=stat[4], exe_stale=False)
            else:
                # Gone before we could look: keep what it inherited, and say so.
                new = dataclasses.replace(e, exe_stale=True)
            if not e.alive:
                # A non-leader thread's exec kills the old leader first (whose EXIT we saw), then
                # takes over its pid: the process lives on.
                new = dataclasses.replace(new, alive=True, exited_at=None)
            procs[pid] = new

    def _on_exit(self, pid: int, ts_ns: int) -> None:
        self.exits += 1
        at = ts_ns / _NS  # CLOCK_MONOTONIC, the clock of time.monotonic()
        with self._lock:
            e = self._procs.get(pid)
            if e is None or not e.alive:
                return
            self._procs[pid] = dataclasses.replace(e, alive=False, exited_at=at)
            self._exited.append((at, pid, e.start_time))

    def _update(self, pid: int, **changes: Any) -> None:
        with self._lock:
            e = self._procs.get(pid)
            if e is not None:
                self._procs[pid] = dataclasses.replace(e, **changes)

    def _on_overflow(self, sock: socket.socket, buf: bytearray, view: memoryview) -> None:
        """The kernel dropped events. Apply what is still queued first (it predates the gap:
        applied after a seed it could revive a process whose EXIT was among the dropped), then
        re-seed from /proc, which settles every process whose events were lost."""
        self.lost += 1
        self.overflowed = True
        if self.lost <= 10 or self.lost % 100 == 0:
            log.warning("process table: connector queue overflowed (lost=%d); re-seeding from /proc", self.lost)
        # Bounded: under a storm that outruns us the queue never empties; seed anyway.
        for _ in range(max(1024, self.rcvbuf // 256)):
            try:
                n = sock.recv_into(buf, 0, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.lost += 1
                    continue
                self.errors += 1
                break
            self._apply(buf, view, n)
        self._seed()
        self.reseeds += 1

    # --- table maintenance (reader thread, or start() before it) --------------------------------

    def _seed(self) -> None:
        """Merge /proc into the table. Entries /proc confirms keep their lineage (ppid at fork);
        alive entries /proc no longer has are marked exited."""
        self._boot_offset_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
        now = time.monotonic()
        found: list[ProcInfo] = []
        for name in os.listdir(b"/proc"):
            if name.isdigit():
                info = _read_proc(int(name), now)
                if info is not None:
                    found.append(info)
        with self._lock:
            procs = self._procs
            present = set()
            for info in found:
                present.add(info.pid)
                old = procs.get(info.pid)
                if old is not None and _same_start(old.start_time, info.start_time):
                    info = dataclasses.replace(info, ppid=old.ppid, exe=info.exe or old.exe)
                    if old.alive and not info.alive:
                        self._exited.append((now, info.pid, info.start_time))
                else:
                    if old is not None:
                        self._unlink(old)
                    if not info.alive:
                        self._exited.append((now, info.pid, info.start_time))
                procs[info.pid] = info
                self._kids.setdefault(info.ppid, set()).add(info.pid)
            for pid, e in list(procs.items()):
                if e.alive and pid not in present:
                    procs[pid] = dataclasses.replace(e, alive=False, exited_at=now)
                    self._exited.append((now, pid, e.start_time))
            if len(procs) > self.max_entries:
                self._evict()

    def _unlink(self, e: ProcInfo) -> None:
        kids = self._kids.get(e.ppid)
        if kids is not None:
            kids.discard(e.pid)
            if not kids:
                del self._kids[e.ppid]

    def _prune(self, now: float) -> None:
        """Drop exited entries older than keep_exited_s, oldest first. Caller holds the lock."""
        exited = self._exited
        if not exited or exited[0][0] + self.keep_exited_s > now:
            return
        procs = self._procs
        budget = len(exited)  # each record is looked at once per pass, re-queued ones included
        while budget and exited[0][0] + self.keep_exited_s <= now:
            budget -= 1
            _, pid, start = exited.popleft()
            e = procs.get(pid)
            if e is None or e.alive or e.start_time != start:
                continue  # replaced by a newer process, or revived by an exec
            if self._kids.get(pid):
                # Still named as parent by another entry: keep the lineage, look again later.
                exited.append((now, pid, start))
                continue
            del procs[pid]
            self._unlink(e)

    def _evict(self) -> None:
        """Over max_entries: drop exited entries oldest first regardless of age. Alive entries
        are never dropped (there cannot be more of them than pid_max)."""
        procs = self._procs
        exited = self._exited
        while len(procs) > self.max_entries and exited:
            _, pid, start = exited.popleft()
            e = procs.get(pid)
            if e is None or e.alive or e.start_time != start:
                continue
            del procs[pid]
            self._unlink(e)
