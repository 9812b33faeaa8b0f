"""What the responder needs to know about live processes, read from /proc at the moment it acts.

    snapshot = ProcSnapshot.take()       # pid -> (ppid, start_time, exe, flags) for every process
    snapshot = ProcSnapshot.subtree(roots)  # ... for the roots and their descendants only
    snapshot.descendants(root)           # the alive subtree
    is_protected(pid)                    # pid 1, kernel threads, nocry and its ancestors, critical exes
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["ProcSnapshot", "ProcEntry", "read_stat"]

_PF_KTHREAD = 0x00200000


@dataclass(frozen=True, slots=True)
class ProcEntry:
    pid: int
    ppid: int
    start_time: int
    flags: int
    sid: int
    uid: int
    exe: bytes
    comm: str

    @property
    def kernel_thread(self) -> bool:
        return bool(self.flags & _PF_KTHREAD) or self.pid == 2 or self.ppid == 2


def read_stat(pid: int, *, full: bool = True) -> ProcEntry | None:
    """/proc/PID/stat (and, when ``full``, the exe link and owner: two more syscalls that a
    snapshot of every process can skip and look up only for the processes it acts on)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split at the last ')'
    lp, rp = data.find(b"("), data.rfind(b")")
    comm = data[lp + 1 : rp].decode("utf-8", "replace")
    fields = data[rp + 2 :].split()
    try:
        ppid, sid, flags, start = int(fields[1]), int(fields[3]), int(fields[6]), int(fields[19])
    except (IndexError, ValueError):
        return None
    exe, uid = b"", -1
    if full:
        try:
            exe = os.readlink(f"/proc/{pid}/exe".encode())
        except OSError:
            pass
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            pass
    return ProcEntry(pid=pid, ppid=ppid, start_time=start, flags=flags, sid=sid, uid=uid, exe=exe, comm=comm)


#: /proc/PID/task/TID/children exists (CONFIG_PROC_CHILDREN)
_HAS_CHILDREN = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


class ProcSnapshot:
    def __init__(self, entries: dict[int, ProcEntry]):
        self.entries = entries
        self.children: dict[int, list[int]] = {}
        for e in entries.values():
            self.children.setdefault(e.ppid, []).append(e.pid)

    @classmethod
    def take(cls, *, full: bool = False) -> ProcSnapshot:
        """Every process's parent and start time (exe and uid only with ``full``; ``entry()``
        fills them in for the few processes that need them)."""
        entries: dict[int, ProcEntry] = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                e = read_stat(int(name), full=full)
                if e is not None:
                    entries[e.pid] = e
        return cls(entries)

    @classmethod
    def subtree(cls, roots: list[int]) -> ProcSnapshot:
        """Only ``roots`` and their descendants, found through each thread's
        /proc/PID/task/TID/children: a few reads for one process tree, where walking all of /proc
        takes ~8 ms on a quiet machine, time in which a fast attacker's siblings keep writing.
        Without that file (a kernel without CONFIG_PROC_CHILDREN), the whole walk."""
        if not _HAS_CHILDREN:
            return cls.take()
        entries: dict[int, ProcEntry] = {}
        stack = list(dict.fromkeys(roots))
        while stack:
            pid = stack.pop()
            if pid in entries:
                continue
            e = read_stat(pid, full=False)
            if e is None:
                continue
            entries[pid] = e
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                        stack.extend(int(c) for c in f.read().split())
                except OSError:
                    continue  # the thread (or the process) is gone
        return cls(entries)

    def entry(self, pid: int) -> ProcEntry | None:
        """The full entry (with exe) of one process."""
        e = self.entries.get(pid)
        if e is not None and not e.exe and e.uid == -1:
            full = read_stat(pid)
            if full is not None and full.start_time == e.start_time:
                self.entries[pid] = e = full
        return e

    def descendants(self, root: int) -> list[int]:
        out: list[int] = []
        stack = [root]
        seen = {root}
        while stack:
            p = stack.pop()
            for c in self.children.get(p, ()):
                if c not in seen:
                    seen.add(c)
                    out.append(c)
                    stack.append(c)
        return out

    def ancestors(self, pid: int) -> list[int]:
        out: list[int] = []
        seen = {pid}
        e = self.entries.get(pid)
        while e is not None and e.ppid > 0 and e.ppid not in seen:
            out.append(e.ppid)
            seen.add(e.ppid)
            e = self.entries.get(e.ppid)
        return out
