"""Carry out a restore plan safely, then verify the result against the vault.

    1. capture: every object the plan overwrites or removes is stored in the vault first
       (reason "pre-restore"); an object that cannot be captured is not touched (never destroy
       data that is not in the vault). The time after this step is the undo point.
    2. remove, deepest first (never following a symlink)
    3. create / write, parents first: content goes to a temporary file in the same directory
       (holes kept for zero chunks), gets owner, mode, xattrs and mtime, then is renamed into place
    4. directory metadata, deepest first (writing children changed their mtimes)
    5. record the restored state in the vault (reason "restore") and verify every object
       (type, mode, owner, mtime, content hash) -> one outcome per path
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import stat as statmod
import time
from dataclasses import dataclass, field, replace
from typing import Any

from nocry.capture.snapshot import ChangedWhileRead, Unreadable, snapshot
from nocry.errors import VaultFull
from nocry.events import Subject, path_to_json
from nocry.restore.plan import KEEP, LINK, META, MKDIR, REMOVE, SKIP, SYMLINK, WRITE, Plan, PlanItem, hash_file, metadata_matches
from nocry.vault.model import FTYPE_DIR, FTYPE_FILE, FTYPE_SYMLINK, KIND_CONTENT, VersionRecord

__all__ = ["apply_plan", "RestoreReport", "Outcome"]

log = logging.getLogger(__name__)

_ZERO_CACHE: dict[int, bytes] = {}


@dataclass
class Outcome:
    path: bytes
    action: str
    result: str  # ok | failed | skipped
    detail: str = ""

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"action": self.action, "result": self.result}
        rec.update(path_to_json(self.path))
        if self.detail:
            rec["detail"] = self.detail
        return rec


@dataclass
class RestoreReport:
    at_ns: int
    undo_at_ns: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.result != "ok"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes:
            k = o.action if o.result == "ok" else o.result
            out[k] = out.get(k, 0) + 1
        return out


def _subject() -> Subject:
    return Subject(pid=os.getpid(), exe=os.fsencode(os.path.realpath("/proc/self/exe")), comm="nocry-restore", uid=os.getuid())


def apply_plan(vault, plan: Plan) -> RestoreReport:
    report = RestoreReport(at_ns=plan.at_ns, warnings=list(plan.warnings))
    subject = _subject()
    items = [it for it in plan.items if it.action != KEEP]
    blocked = _capture_before(vault, items, subject, report)
    report.undo_at_ns = time.time_ns()
    done: dict[bytes, Outcome] = {}
    for it in plan.items:
        if it.action == KEEP:
            done[it.path] = Outcome(it.path, KEEP, "ok")
            continue
        if it.path in blocked:
            done[it.path] = Outcome(it.path, it.action, "skipped", blocked[it.path])
            continue
        if it.action == SKIP:
            done[it.path] = Outcome(it.path, SKIP, "skipped", it.why)
            continue
        try:
            _apply_one(vault, it)
            done[it.path] = Outcome(it.path, it.action, "ok")
        except OSError as exc:
            log.warning("event=restore_failed path=%r action=%s error=%r", it.path, it.action, str(exc))
            done[it.path] = Outcome(it.path, it.action, "failed", exc.strerror or str(exc))
    # directory metadata last, deepest first: restoring children changed the directories' mtimes
    dirs = sorted((p for p, r in plan.target.items() if r.ftype == FTYPE_DIR and p not in blocked), key=lambda p: p.count(b"/"), reverse=True)
    for path in dirs:
        try:
            st = os.lstat(path)
            if not metadata_matches(plan.target[path], st, path):
                _set_metadata(path, plan.target[path], fd=None)
        except OSError as exc:
            done[path] = Outcome(path, META, "failed", exc.strerror or str(exc))
    for path, out in done.items():
        if out.result == "ok" and out.action != REMOVE:
            problem = _verify(path, plan.target.get(path))
            if problem:
                out.result, out.detail = "failed", f"verify: {problem}"
        elif out.result == "ok" and out.action == REMOVE and os.path.lexists(path):
            out.result, out.detail = "failed", "verify: still exists"
        report.outcomes.append(out)
    _record_after(vault, plan, done, subject, report)
    return report


def _capture_before(vault, items: list[PlanItem], subject: Subject, report: RestoreReport) -> dict[bytes, str]:
    """Store the current state of everything about to change; return the paths that could not be
    stored (and so must not be touched)."""
    blocked: dict[bytes, str] = {}
    touched = [it.path for it in items if it.action in (WRITE, REMOVE, SYMLINK, LINK, META, MKDIR) and os.path.lexists(it.path)]
    try:
        with vault.batch() as batch:
            for path in touched:
                try:
                    snapshot(batch, path, vault.latest(path), time.time_ns(), subject=subject, reason="pre-restore")
                except (ChangedWhileRead, Unreadable) as exc:
                    blocked[path] = f"not touched: its current state could not be stored first ({exc})"
                    report.warnings.append(f"{os.fsdecode(path)}: {blocked[path]}")
    except VaultFull:
        raise VaultFull("the vault is full: the current state cannot be stored first, so nothing was restored") from None
    # a directory that cannot be removed safely keeps everything under it
    for path in list(blocked):
        for it in items:
            if it.path.startswith(path + b"/") or path.startswith(it.path + b"/"):
                blocked.setdefault(it.path, "not touched: part of a tree whose state could not be stored first")
    return blocked


def _check_parent(path: bytes) -> None:
    parent = os.path.dirname(path)
    st = os.lstat(parent)
    if statmod.S_ISLNK(st.st_mode):
        raise OSError(errno.ELOOP, f"parent {os.fsdecode(parent)} is a symlink; not followed")


def _apply_one(vault, it: PlanItem) -> None:
    path, tgt = it.path, it.target
    if it.action == REMOVE:
        st = os.lstat(path)
        if statmod.S_ISDIR(st.st_mode):
            os.rmdir(path)  # children were removed before (deepest first); refuses a non-empty dir
        else:
            os.unlink(path)
        return
    assert tgt is not None or it.action == MKDIR
    if it.action == MKDIR:
        _check_parent(path)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if not os.path.isdir(path) or os.path.islink(path):
                raise
        return  # metadata at the end
    assert tgt is not None
    _check_parent(path)
    if it.action == META:
        if tgt.ftype == FTYPE_FILE:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                _set_metadata(path, tgt, fd=fd)
            finally:
                os.close(fd)
        return
    tmp = os.path.join(os.path.dirname(path), b".nocry-restore." + secrets.token_hex(6).encode())
    if it.action == SYMLINK:
        os.symlink(tgt.link_target or b"", tmp)
        try:
            os.chown(tmp, tgt.uid, tgt.gid, follow_symlinks=False)
            os.utime(tmp, ns=(tgt.mtime_ns, tgt.mtime_ns), follow_symlinks=False)
            os.rename(tmp, path)
        except BaseException:
            _unlink_quiet(tmp)
            raise
        return
    if it.action == LINK:
        assert it.link_to is not None
        os.link(it.link_to, tmp, follow_symlinks=False)
        try:
            os.rename(tmp, path)
        except BaseException:
            _unlink_quiet(tmp)
            raise
        return
    if it.action == WRITE:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            try:
                _write_content(vault, fd, tgt)
                _set_metadata(tmp, tgt, fd=fd)
            finally:
                os.close(fd)
            os.rename(tmp, path)
        except BaseException:
            _unlink_quiet(tmp)
            raise
        return
    raise AssertionError(f"unknown action {it.action}")


def _write_content(vault, fd: int, tgt: VersionRecord) -> None:
    assert tgt.content is not None
    pos = 0
    for piece in vault.read_content(tgt.content):
        n = len(piece)
        zero = _ZERO_CACHE.get(n)
        if zero is None:
            zero = bytes(n)
            if len(_ZERO_CACHE) < 64:
                _ZERO_CACHE[n] = zero
        if piece == zero:
            pos += n  # leave a hole: sparse files stay sparse
            continue
        os.lseek(fd, pos, os.SEEK_SET)
        view = memoryview(piece)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        pos += n
    os.ftruncate(fd, pos)


def _set_metadata(path: bytes, tgt: VersionRecord, *, fd: int | None) -> None:
    target: Any = fd if fd is not None else path
    follow = fd is not None
    if fd is not None:
        os.fchown(fd, tgt.uid, tgt.gid)
        os.fchmod(fd, statmod.S_IMODE(tgt.mode))  # after chown, which clears set-id bits
    else:
        os.chown(path, tgt.uid, tgt.gid, follow_symlinks=False)
        os.chmod(path, statmod.S_IMODE(tgt.mode), follow_symlinks=False)
    try:
        current = {os.fsencode(n) for n in (os.listxattr(target) if fd is not None else os.listxattr(path, follow_symlinks=False))}
    except OSError:
        current = set()
    wanted = dict(tgt.xattrs)
    for name in current - set(wanted):
        try:
            os.removexattr(target, name, follow_symlinks=follow) if fd is None else os.removexattr(fd, name)
        except OSError:
            pass
    for name, value in wanted.items():
        try:
            os.setxattr(target, name, value) if fd is not None else os.setxattr(path, name, value, follow_symlinks=False)
        except OSError as exc:
            log.warning("event=xattr_not_restored path=%r name=%r error=%r", path, name, exc.strerror)
    if fd is not None:
        os.utime(fd, ns=(tgt.mtime_ns, tgt.mtime_ns))
    else:
        os.utime(path, ns=(tgt.mtime_ns, tgt.mtime_ns), follow_symlinks=False)


def _record_after(vault, plan: Plan, done: dict[bytes, Outcome], subject: Subject, report: RestoreReport) -> None:
    """Store the restored state, so that the vault's newest versions match the disk again. Files
    that verified are recorded with the hash just checked instead of being read a third time."""
    paths = {it.path for it in plan.items if it.action not in (KEEP, SKIP)}
    paths |= {p for p, r in plan.target.items() if r.ftype == FTYPE_DIR}
    try:
        with vault.batch() as batch:
            for path in sorted(paths):
                prev = vault.latest(path)
                tgt = plan.target.get(path)
                out = done.get(path)
                now = time.time_ns()
                try:
                    if tgt is not None and tgt.ftype == FTYPE_FILE and out is not None and out.result == "ok" and out.action != REMOVE:
                        st = os.lstat(path)
                        rec = replace(
                            tgt, time_ns=now, kind=KIND_CONTENT, mode=st.st_mode, uid=st.st_uid, gid=st.st_gid,
                            mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns, ino=st.st_ino, dev=st.st_dev,
                            nlink=st.st_nlink, renamed_from=None, renamed_to=None, reason="restore", subject=subject, id=0,
                        )
                        batch.add(rec)
                    else:
                        snapshot(batch, path, prev, now, subject=subject, reason="restore")
                except (ChangedWhileRead, Unreadable, OSError) as exc:
                    report.warnings.append(f"{os.fsdecode(path)}: restored state not recorded ({exc})")
    except VaultFull:
        report.warnings.append("the vault is full: the restored state was not recorded (the daemon's next rescan will)")


def _verify(path: bytes, tgt: VersionRecord | None) -> str | None:
    if tgt is None:
        return None
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"missing ({exc.strerror})"
    if not metadata_matches(tgt, st, path, check_mtime=tgt.ftype != FTYPE_SYMLINK):
        return "metadata differs"
    if tgt.ftype == FTYPE_FILE:
        if st.st_size != tgt.size:
            return f"size {st.st_size} != {tgt.size}"
        if hash_file(path) != tgt.content:
            return "content hash differs"
    elif tgt.ftype == FTYPE_SYMLINK and os.readlink(path) != tgt.link_target:
        return "link target differs"
    return None


def _unlink_quiet(path: bytes) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
