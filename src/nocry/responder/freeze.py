"""Freezing, releasing and killing an actor's processes.

    plan = choose_targets(verdict roots, offending pids)   # never pid 1, kernel threads, nocry,
                                                           # nocry's ancestors, critical executables
    cgroup v2 available?  move every target into HOME-specific quarantine cgroup, cgroup.freeze=1
                          (children forked later are born inside it; a second pass catches forks
                          that raced the move)
    else                  pidfd_open + pidfd_send_signal(SIGSTOP) on each target (pidfds pin
                          identity: a recycled pid is never signalled)
    release: thaw (cgroup.freeze=0 / SIGCONT), move processes back to their own cgroups
    kill:    cgroup.kill=1 (or SIGKILL through pidfds), then thaw so the kill is delivered

The freeze record (method, cgroup path, pids with start times, original cgroups) is plain data
stored with the incident, so a later CLI invocation can release or kill even without the daemon.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nocry.config import RespondConfig
from nocry.responder.procs import ProcSnapshot, read_stat

__all__ = ["Responder", "FreezeRecord", "find_cgroup2", "RecordingResponder"]

log = logging.getLogger(__name__)


def find_cgroup2() -> Path | None:
    """The cgroup v2 mount: /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid ones."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                sep = parts.index("-")
                if parts[sep + 1] == "cgroup2":
                    return Path(parts[4])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        return None
    return None


@dataclass
class FreezeRecord:
    method: str  # cgroup | sigstop | none
    cgroup: str | None = None
    pids: list[tuple[int, int]] = field(default_factory=list)  # (pid, start_time)
    original_cgroups: dict[int, str] = field(default_factory=dict)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (pid, why not touched)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_record(self) -> dict[str, Any]:
        rec = asdict(self)
        rec["original_cgroups"] = {str(k): v for k, v in self.original_cgroups.items()}
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> FreezeRecord:
        return cls(
            method=rec.get("method", "none"),
            cgroup=rec.get("cgroup"),
            pids=[tuple(p) for p in rec.get("pids", [])],
            original_cgroups={int(k): v for k, v in rec.get("original_cgroups", {}).items()},
            refused=[tuple(p) for p in rec.get("refused", [])],
            errors=list(rec.get("errors", [])),
            seconds=rec.get("seconds", 0.0),
        )


class Responder:
    """Acts on processes. ``protected_pids``: nocry itself and its ancestors (never touched)."""

    def __init__(self, cfg: RespondConfig, *, protected_pids: set[int] | None = None, quarantine_name: str = "nocry-quarantine"):
        self.cfg = cfg
        self.protected_pids = set(protected_pids or ()) | {0, 1, 2, os.getpid()}
        self.critical = {os.fsencode(e) for e in cfg.critical_exes}
        root = find_cgroup2() if cfg.cgroup_root == "auto" else Path(cfg.cgroup_root)
        self.cgroup_root = root if root is not None and (root / "cgroup.procs").exists() else None
        self.quarantine_name = quarantine_name

    # -- choosing targets -------------------------------------------------------------------

    def protected_reason(self, pid: int, snap: ProcSnapshot) -> str | None:
        e = snap.entry(pid)
        if pid in self.protected_pids:
            return "nocry itself, an ancestor of nocry, or pid 0/1/2"
        if e is None:
            return "gone"
        if e.kernel_thread:
            return "kernel thread"
        if e.exe in self.critical:
            return f"critical service {os.fsdecode(e.exe)}"
        return None

    def targets(self, roots: list[int], offending: list[int], snap: ProcSnapshot) -> tuple[list[int], list[tuple[int, str]]]:
        """Every alive process to freeze: each usable root with its subtree. A root that must not
        be touched (e.g. the user's login shell is fine, but pid 1 or an ancestor of nocry is not)
        is replaced by the offending processes themselves."""
        refused: list[tuple[int, str]] = []
        chosen: list[int] = []
        for r in roots:
            why = self.protected_reason(r, snap)
            if why is None:
                chosen.append(r)
            else:
                refused.append((r, why))
                chosen.extend(p for p in offending if p != r)
        out: list[int] = []
        seen: set[int] = set()
        for r in chosen:
            for p in [r, *snap.descendants(r)]:
                if p in seen:
                    continue
                seen.add(p)
                why = self.protected_reason(p, snap)
                if why is None:
                    out.append(p)
                elif why != "gone":
                    refused.append((p, why))
        return out, refused

    # -- actions ---------------------------------------------------------------------------------

    def freeze(self, incident_id: int, roots: list[int], offending: list[int]) -> FreezeRecord:
        """Brake at once, then quarantine.

        Every millisecond is files lost to a fast attacker, and walking /proc for the whole tree
        takes several: so the roots and offending processes that are still alive get SIGSTOP
        through pidfds first (microseconds); then the rest of the tree, found from the roots down
        (/proc/PID/task/TID/children), is braked too, since moving each process into the frozen
        cgroup takes ~2 ms (a cgroup migration) and a pool of workers would write on meanwhile;
        then the whole tree goes into the frozen cgroup and the braked processes get SIGCONT (they
        stay frozen by the cgroup, which they cannot see)."""
        t0 = time.monotonic()
        braked = self._brake(sorted({*roots, *offending}))
        snap = ProcSnapshot.subtree([*roots, *offending])
        pids, refused = self.targets(roots, offending, snap)
        done = {p for p, _ in braked}
        for p in pids:  # targets() has refused what must not be touched; snap has each start time
            st = snap.entries[p].start_time
            if p not in done and self._signal(p, st, signal.SIGSTOP, FreezeRecord("sigstop")):
                braked.append((p, st))
        rec = FreezeRecord(method="none", refused=refused)
        if not pids:
            rec.errors.append("no process left to freeze (all exited or protected)")
            self._unbrake(braked)
            rec.seconds = time.monotonic() - t0
            return rec
        if self.cgroup_root is not None:
            try:
                self._freeze_cgroup(incident_id, pids, rec, roots, offending)
            except OSError as exc:
                rec.errors.append(f"cgroup freeze failed ({exc}); falling back to SIGSTOP")
                log.warning("event=cgroup_freeze_failed error=%r action=sigstop", str(exc))
                self._thaw_cgroup(rec)
                rec.method, rec.cgroup = "none", None
        if rec.method == "none":
            self._sigstop(pids, snap, rec)
        else:
            self._unbrake(braked)
        rec.seconds = time.monotonic() - t0
        return rec

    def _brake(self, pids: list[int]) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for p in pids:
            if p in self.protected_pids:
                continue
            e = read_stat(p)
            if e is None or e.kernel_thread or e.exe in self.critical:
                continue
            if self._signal(p, e.start_time, signal.SIGSTOP, FreezeRecord("sigstop")):
                out.append((p, e.start_time))
        return out

    def _unbrake(self, braked: list[tuple[int, int]]) -> None:
        for p, st in braked:
            self._signal(p, st, signal.SIGCONT, FreezeRecord("sigstop"))

    def _freeze_cgroup(self, incident_id: int, pids: list[int], rec: FreezeRecord, roots: list[int], offending: list[int]) -> None:
        assert self.cgroup_root is not None
        parent = self.cgroup_root / self.quarantine_name
        parent.mkdir(exist_ok=True)
        cg = parent / f"incident-{incident_id}-{os.getpid()}-{time.monotonic_ns()}"
        cg.mkdir()
        rec.method, rec.cgroup = "cgroup", str(cg)
        # freeze the (empty) group first: every process moved in afterwards stops on arrival
        (cg / "cgroup.freeze").write_text("1")
        moved = self._move_in(cg, pids, rec)
        # a second pass catches children forked between the snapshot and the move
        for _ in range(2):
            snap = ProcSnapshot.subtree([*roots, *offending])
            more, _refused = self.targets(roots, offending, snap)
            extra = [p for p in more if p not in moved]
            if not extra:
                break
            moved |= self._move_in(cg, extra, rec)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if "frozen 1" in (cg / "cgroup.events").read_text():
                break
            time.sleep(0.002)
        else:
            rec.errors.append("cgroup did not report frozen within 1 s")

    def _move_in(self, cg: Path, pids: list[int], rec: FreezeRecord) -> set[int]:
        moved: set[int] = set()
        procs = cg / "cgroup.procs"
        for p in pids:
            e = read_stat(p)
            if e is None:
                continue
            orig = _cgroup_of(p)
            try:
                with open(procs, "w") as f:
                    f.write(str(p))
            except OSError as exc:
                if exc.errno != errno.ESRCH:
                    rec.errors.append(f"pid {p}: {exc.strerror}")
                continue
            moved.add(p)
            rec.pids.append((p, e.start_time))
            if orig is not None:
                rec.original_cgroups[p] = orig
        return moved

    def _sigstop(self, pids: list[int], snap: ProcSnapshot, rec: FreezeRecord) -> None:
        rec.method = "sigstop"
        for p in pids:
            e = snap.entry(p)
            if e is None:
                continue
            if self._signal(p, e.start_time, signal.SIGSTOP, rec):
                rec.pids.append((p, e.start_time))

    def _signal(self, pid: int, start_time: int, sig: int, rec: FreezeRecord) -> bool:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return False
        try:
            e = read_stat(pid)
            if e is None or e.start_time != start_time:
                return False  # a different process now has this pid
            signal.pidfd_send_signal(fd, sig)
            return True
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                rec.errors.append(f"pid {pid}: {exc.strerror}")
            return False
        finally:
            os.close(fd)

    def release(self, rec: FreezeRecord) -> list[str]:
        """Thaw and put every process back where it was."""
        errors: list[str] = []
        if rec.method == "cgroup" and rec.cgroup:
            cg = Path(rec.cgroup)
            self._thaw_cgroup(rec)
            root = cg.parent.parent
            for p in _procs_in(cg):
                target = root / rec.original_cgroups.get(p, "/").lstrip("/")
                try:
                    (target / "cgroup.procs").write_text(str(p))
                except OSError:
                    try:
                        (root / "cgroup.procs").write_text(str(p))
                    except OSError as exc:
                        errors.append(f"pid {p}: cannot leave quarantine: {exc.strerror}")
            _rmdir_when_empty(cg)
        elif rec.method == "sigstop":
            for p, st in rec.pids:
                self._signal(p, st, signal.SIGCONT, FreezeRecord("sigstop"))
        return errors

    def kill(self, rec: FreezeRecord) -> list[str]:
        errors: list[str] = []
        if rec.method == "cgroup" and rec.cgroup:
            cg = Path(rec.cgroup)
            try:
                (cg / "cgroup.kill").write_text("1")
            except OSError as exc:
                errors.append(f"cgroup.kill: {exc.strerror}")
                for p in _procs_in(cg):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
            self._thaw_cgroup(rec)
            _rmdir_when_empty(cg)
        elif rec.method == "sigstop":
            for p, st in rec.pids:
                self._signal(p, st, signal.SIGKILL, FreezeRecord("sigstop"))
                self._signal(p, st, signal.SIGCONT, FreezeRecord("sigstop"))
        return errors

    def _thaw_cgroup(self, rec: FreezeRecord) -> None:
        if rec.cgroup:
            try:
                (Path(rec.cgroup) / "cgroup.freeze").write_text("0")
            except OSError:
                pass


def _procs_in(cg: Path) -> list[int]:
    try:
        return [int(x) for x in (cg / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _rmdir_when_empty(cg: Path, wait_s: float = 2.0) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            cg.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)


class RecordingResponder:
    """Does nothing to processes; remembers what it was asked (observe mode, tests)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def freeze(self, incident_id: int, roots: list[int], offending: list[int]) -> FreezeRecord:
        self.calls.append(("freeze", (incident_id, list(roots), list(offending))))
        return FreezeRecord(method="none")

    def release(self, rec: FreezeRecord) -> list[str]:
        self.calls.append(("release", rec))
        return []

    def kill(self, rec: FreezeRecord) -> list[str]:
        self.calls.append(("kill", rec))
        return []
