"""Restore plans: what must change on disk so that a tree looks as it did at a moment.

    target  = newest version <= T of every object under each path   (vault.state_at)
    current = what is on disk now (lstat walk, no symlink followed)
    for each path in target | current:
        in target only            -> create  (file / dir / symlink / hard link)
        on disk only              -> remove  (captured first, so the restore can be undone)
        both, content differs     -> write   (captured first)
        both, metadata differs    -> meta
        both, equal               -> keep

The plan is plain data: ``--dry-run`` prints it, ``apply`` carries it out.
"""

from __future__ import annotations

import os
import stat as statmod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import blake3

from nocry.capture.scan import ScanReport, walk_tree
from nocry.capture.snapshot import read_xattrs, stat_key
from nocry.errors import UserError
from nocry.events import path_to_json
from nocry.vault.model import FTYPE_DIR, FTYPE_FILE, FTYPE_OTHER, FTYPE_SYMLINK, VersionRecord, ftype_of_mode

__all__ = ["PlanItem", "Plan", "make_plan", "make_plan_at", "hash_file", "metadata_matches"]

WRITE = "write"  # create or replace a regular file's content
MKDIR = "mkdir"
SYMLINK = "symlink"
LINK = "link"  # hard link to another restored path
REMOVE = "remove"
META = "meta"  # content right, metadata wrong
KEEP = "keep"
SKIP = "skip"  # cannot be restored (e.g. a device node): reported


@dataclass(frozen=True, slots=True)
class PlanItem:
    action: str
    path: bytes
    target: VersionRecord | None = None
    link_to: bytes | None = None
    why: str = ""

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"action": self.action}
        rec.update(path_to_json(self.path))
        if self.target is not None:
            rec["version"] = self.target.id
            rec["version_time"] = self.target.time_ns / 1e9
            rec["ftype"] = self.target.ftype
            rec["size"] = self.target.size
            rec["hash"] = self.target.content.hex() if self.target.content else None
        if self.link_to is not None:
            rec.update(path_to_json(self.link_to, "link_to"))
        if self.why:
            rec["why"] = self.why
        return rec


@dataclass
class Plan:
    roots: list[bytes]
    at_ns: int
    items: list[PlanItem] = field(default_factory=list)
    #: what the target state says about every object (for verification)
    target: dict[bytes, VersionRecord] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: missing ancestors already planned (several roots may share them)
    mkdirs: set[bytes] = field(default_factory=set)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for it in self.items:
            out[it.action] = out.get(it.action, 0) + 1
        return out

    @property
    def changes(self) -> list[PlanItem]:
        return [it for it in self.items if it.action not in (KEEP,)]


def hash_file(path: bytes) -> bytes | None:
    """BLAKE3 of a file's content, or None if it cannot be read."""
    h = blake3.blake3()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        while True:
            buf = os.read(fd, 1 << 20)
            if not buf:
                break
            h.update(buf)
    except OSError:
        return None
    finally:
        os.close(fd)
    return h.digest()


def metadata_matches(rec: VersionRecord, st: os.stat_result, path: bytes, *, check_mtime: bool = True) -> bool:
    if ftype_of_mode(st.st_mode) != rec.ftype:
        return False
    if rec.ftype != FTYPE_SYMLINK and statmod.S_IMODE(st.st_mode) != statmod.S_IMODE(rec.mode):
        return False
    if (st.st_uid, st.st_gid) != (rec.uid, rec.gid):
        return False
    if check_mtime and rec.ftype in (FTYPE_FILE, FTYPE_DIR) and st.st_mtime_ns != rec.mtime_ns:
        return False
    if rec.ftype in (FTYPE_FILE, FTYPE_DIR):
        try:
            if read_xattrs(path) != rec.xattrs:
                return False
        except OSError:
            return False
    return True


def _disk_hash(vault, path: bytes, st: os.stat_result) -> bytes | None:
    latest = vault.latest(path)
    if latest is not None and latest.exists and latest.content is not None and stat_key(latest) == stat_key(st):
        return latest.content
    return hash_file(path)


def normalise(path: bytes | str) -> bytes:
    p = os.fsencode(path)
    if not p:
        raise UserError("empty path")
    return os.path.normpath(os.path.abspath(p))


def make_plan(vault, paths: Sequence[bytes], at_ns: int, excluded: Callable[[bytes], bool] = lambda p: False) -> Plan:
    """Everything under ``paths`` back to its state at ``at_ns``."""
    return make_plan_at(vault, [(p, at_ns) for p in paths], excluded)


def make_plan_at(vault, roots_at: Sequence[tuple[bytes, int]], excluded: Callable[[bytes], bool] = lambda p: False, *, unknown_ok: bool = False) -> Plan:
    """Each path back to its own moment (an incident: each object to just before the attacker
    first touched it). A path inside another listed path is covered by the outer one."""
    times: dict[bytes, int] = {}
    for p, t in roots_at:
        n = normalise(p)
        times[n] = min(t, times.get(n, t))
    roots = sorted(times)
    roots = [r for r in roots if not any(r != o and r.startswith(o + b"/") for o in roots)]
    plan = Plan(roots=roots, at_ns=min((times[r] for r in roots), default=0))
    for root in roots:
        _plan_root(vault, root, times[root], excluded, plan, unknown_ok=unknown_ok)
    return plan


def _plan_root(vault, root: bytes, at_ns: int, excluded, plan: Plan, *, unknown_ok: bool = False) -> None:
    target: dict[bytes, VersionRecord] = {}
    known_any = False
    for rec in vault.state_at(root, at_ns):
        known_any = True
        if rec.exists:
            target[rec.path] = rec
    if not known_any and not unknown_ok and not any(True for _ in vault.latest_under(root)):
        raise UserError(f"the vault knows nothing under {os.fsdecode(root)}", hint="is it inside a protected tree?")
    plan.target.update(target)

    disk: dict[bytes, os.stat_result] = {}
    report = ScanReport(tree=root)
    if os.path.lexists(root):
        for path, st in walk_tree(root, excluded, report):
            disk[path] = st
    for path, why in report.unreadable:
        plan.warnings.append(f"{os.fsdecode(path)}: {why}")

    # ancestors of the root that no longer exist come back too (their metadata from the vault)
    parent = os.path.dirname(root)
    missing_parents = []
    while parent and parent != b"/" and not os.path.lexists(parent):
        missing_parents.append(parent)
        parent = os.path.dirname(parent)
    for anc in reversed(missing_parents):
        if anc in plan.mkdirs:
            continue
        plan.mkdirs.add(anc)
        rec = vault.latest(anc)
        states = [r for r in vault.history(anc) if r.time_ns <= at_ns and r.exists] if rec else []
        tgt = states[0] if states else None
        plan.items.append(PlanItem(MKDIR, anc, tgt, why="missing parent"))
        if tgt is not None:
            plan.target[anc] = tgt

    removals: list[PlanItem] = []
    creations: list[PlanItem] = []
    # hard links: paths of the target that shared one inode at time T share one again
    leaders: dict[tuple[int, int, bytes], bytes] = {}
    leader_action: dict[bytes, str] = {}
    for path in sorted(set(target) | set(disk)):
        tgt = target.get(path)
        st = disk.get(path)
        if tgt is None:
            if st is not None:
                removals.append(PlanItem(REMOVE, path, why="did not exist at that time"))
            continue
        if st is not None and ftype_of_mode(st.st_mode) != tgt.ftype:
            removals.append(PlanItem(REMOVE, path, why=f"is a {ftype_of_mode(st.st_mode)}, was a {tgt.ftype}"))
            st = None
        if tgt.ftype == FTYPE_DIR:
            if st is None:
                creations.append(PlanItem(MKDIR, path, tgt))
            elif metadata_matches(tgt, st, path):
                creations.append(PlanItem(KEEP, path, tgt))
            else:
                creations.append(PlanItem(META, path, tgt))
        elif tgt.ftype == FTYPE_SYMLINK:
            if st is not None and os.readlink(path) == tgt.link_target and (st.st_uid, st.st_gid) == (tgt.uid, tgt.gid):
                creations.append(PlanItem(KEEP, path, tgt))
            else:
                creations.append(PlanItem(SYMLINK, path, tgt))
        elif tgt.ftype == FTYPE_FILE:
            key = (tgt.dev, tgt.ino, tgt.content or b"")
            leader = leaders.get(key) if tgt.nlink > 1 else None
            if leader is not None:
                leader_kept = leader_action.get(leader) in (KEEP, META)
                if leader_kept and st is not None and (st.st_dev, st.st_ino) == _stat_id(disk.get(leader)) and metadata_matches(tgt, st, path):
                    creations.append(PlanItem(KEEP, path, tgt))
                else:
                    creations.append(PlanItem(LINK, path, tgt, link_to=leader))
                continue
            if tgt.nlink > 1:
                leaders[key] = path
            before = len(creations)
            if tgt.content is None:
                plan.warnings.append(f"{os.fsdecode(path)}: only metadata was stored (larger than capture.max_file_bytes)")
                creations.append(PlanItem(SKIP, path, tgt, why="content not in the vault"))
                continue
            if st is None:
                creations.append(PlanItem(WRITE, path, tgt))
            elif st.st_size == tgt.size and _disk_hash(vault, path, st) == tgt.content:
                creations.append(PlanItem(KEEP if metadata_matches(tgt, st, path) else META, path, tgt))
            else:
                creations.append(PlanItem(WRITE, path, tgt))
            if len(creations) > before:
                leader_action[path] = creations[-1].action
        else:
            plan.warnings.append(f"{os.fsdecode(path)}: a {tgt.ftype} object cannot be restored")
            creations.append(PlanItem(SKIP, path, tgt, why=f"{tgt.ftype} objects are not restored"))
    # deepest first, so that directories are empty when their turn comes
    removals.sort(key=lambda it: it.path.count(b"/"), reverse=True)
    plan.items.extend(removals)
    plan.items.extend(creations)


def _stat_id(st: os.stat_result | None) -> tuple[int, int] | None:
    return (st.st_dev, st.st_ino) if st is not None else None


_ = FTYPE_OTHER  # restored objects of other types are reported as SKIP
