"""Walk a protected tree and reconcile the vault index with the disk.

    merge, both in path order: the walk of the disk (no symlink followed, no other filesystem
    entered) and the newest version of every object under the tree (from the index)
        on disk, differs from its newest version (or has none) -> snapshot it
        in the index but not on disk -> tombstone

The same walk is the baseline (empty index), the rescan after a queue overflow, and the rescan at
start-up that picks up whatever changed while nocry was not running.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import stat as statmod
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from nocry.capture.snapshot import ChangedWhileRead, Unreadable, snapshot, stat_key, tombstone
from nocry.vault.model import VersionRecord

__all__ = ["Excluder", "walk_tree", "rescan_tree", "ScanReport"]

log = logging.getLogger(__name__)


class Excluder:
    """Decides which paths are never captured: the vault's home, and the configured patterns
    (matched against the name and against the path relative to its tree)."""

    def __init__(self, trees: Sequence[bytes], patterns: Sequence[str] = (), prefixes: Sequence[bytes] = ()):
        self.trees = sorted(trees, key=len, reverse=True)
        self.patterns = [os.fsencode(p) for p in patterns]
        self.prefixes = [p.rstrip(b"/") for p in prefixes]

    def __call__(self, path: bytes) -> bool:
        for p in self.prefixes:
            if path == p or path.startswith(p + b"/"):
                return True
        if not self.patterns:
            return False
        name = path.rsplit(b"/", 1)[-1]
        rel = path
        for t in self.trees:
            if path.startswith(t + b"/"):
                rel = path[len(t) + 1 :]
                break
        for pat in self.patterns:
            if fnmatch.fnmatchcase(name, pat) or fnmatch.fnmatchcase(rel, pat):
                return True
            # a pattern naming a directory excludes everything below it
            parts = rel.split(b"/")
            for i in range(1, len(parts)):
                if fnmatch.fnmatchcase(b"/".join(parts[:i]), pat) or fnmatch.fnmatchcase(parts[i - 1], pat):
                    return True
        return False


@dataclass
class ScanReport:
    tree: bytes
    seen: int = 0
    stored: int = 0
    tombstoned: int = 0
    unreadable: list[tuple[bytes, str]] = field(default_factory=list)
    retry: list[bytes] = field(default_factory=list)
    other_fs: list[bytes] = field(default_factory=list)
    seconds: float = 0.0
    #: (new version, previous version) of files whose content the scan found changed, the first
    #: ``_MAX_CHANGED``: events for them were lost, so nobody judged them yet
    changed: list[tuple[VersionRecord, VersionRecord]] = field(default_factory=list)


#: changed files a scan hands over for judging at most (reading and analysing each costs)
_MAX_CHANGED = 2000


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: a directory that vanished or was replaced by something else between its listing and ours: the
#: events (or the next rescan) tell what happened; it is not unreadable
_GONE_ERRNOS = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)


def walk_tree(root: bytes, excluded: Callable[[bytes], bool], report: ScanReport) -> Iterator[tuple[bytes, os.stat_result]]:
    """Yield (path, lstat) for ``root`` and everything below it, never following symlinks and never
    entering another filesystem (its mount point itself is yielded).

    Paths come in byte order of the whole path, the order of the vault index, so a rescan can merge
    the two streams instead of holding either. Inside a directory the names are sorted with every
    subdirectory's contents at ``name + b"/"``: no name holds a slash, so its descendants sort just
    there. Memory: the sorted names of the directories on the way down, not the tree."""
    try:
        root_st = os.lstat(root)
    except OSError as exc:
        report.unreadable.append((root, exc.strerror or str(exc)))
        return
    yield root, root_st
    if not statmod.S_ISDIR(root_st.st_mode):
        return
    dev = root_st.st_dev
    names = _listing(root, dev, excluded, report)
    stack: list[tuple[bytes, Iterator[bytes]]] = [(root, iter(names))] if names else []
    while stack:
        d, it = stack[-1]
        name = next(it, None)
        if name is None:
            stack.pop()
            continue
        if name[-1] == 0x2F:  # b"/": descend
            sub = _join(d, name[:-1])
            names = _listing(sub, dev, excluded, report)
            if names:
                stack.append((sub, iter(names)))
            continue
        path = _join(d, name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            report.unreadable.append((path, exc.strerror or str(exc)))
            continue
        yield path, st


def _join(d: bytes, name: bytes) -> bytes:
    return d + name if d.endswith(b"/") else d + b"/" + name


def _listing(d: bytes, dev: int, excluded: Callable[[bytes], bool], report: ScanReport) -> list[bytes] | None:
    """The names in directory ``d`` that are not excluded, sorted, each subdirectory also as
    ``name + b"/"``; None for a directory on another filesystem (recorded) or one that cannot be
    listed (recorded unless it is simply gone). Opened without following a symlink, so a directory
    swapped for a link after the parent's listing is not entered."""
    try:
        fd = os.open(d, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno not in _GONE_ERRNOS:
            report.unreadable.append((d, f"cannot list directory: {exc.strerror}"))
        return None
    try:
        if os.fstat(fd).st_dev != dev:
            report.other_fs.append(d)
            return None
        names: list[bytes] = []
        with os.scandir(fd) as it:
            for entry in it:
                name = os.fsencode(entry.name)
                if excluded(_join(d, name)):
                    continue
                names.append(name)
                if entry.is_dir(follow_symlinks=False):
                    names.append(name + b"/")
    except OSError as exc:
        report.unreadable.append((d, f"cannot list directory: {exc.strerror}"))
        return None
    finally:
        os.close(fd)
    names.sort()
    return names


def rescan_tree(vault, root: bytes, excluded: Callable[[bytes], bool], *, reason: str, batch_max_files: int = 512, max_file_bytes: int = 0, should_stop: Callable[[], bool] = lambda: False) -> ScanReport:
    """Reconcile the vault with the disk under ``root``; returns what was done.

    The walk and the index's newest versions under ``root`` both come in path order and are merged
    like two sorted lists, so memory does not grow with the tree (a dict of every known path took
    ~180 bytes an object: 180 MB at a million files, more while a burst's events wait)."""
    started = time.monotonic()
    report = ScanReport(tree=root)
    known = vault.live_under(root)
    cur = next(known, None)
    pending: list[tuple[bytes, VersionRecord | None]] = []
    gone: list[bytes] = []

    def flush() -> None:
        if pending:
            with vault.batch() as batch:
                for path, prev in pending:
                    try:
                        rec = snapshot(batch, path, prev, time.time_ns(), reason=reason, max_file_bytes=max_file_bytes)
                    except ChangedWhileRead:
                        report.retry.append(path)
                        continue
                    except Unreadable as exc:
                        report.unreadable.append((path, str(exc)))
                        log.warning("event=unreadable path=%r reason=%r", path, str(exc))
                        continue
                    if rec is not None:
                        report.stored += 1
                        if prev is not None and prev.exists and rec.exists and rec.content != prev.content and len(report.changed) < _MAX_CHANGED:
                            report.changed.append((rec, prev))
            pending.clear()
        if gone:
            with vault.batch() as batch:
                for path in gone:
                    if os.path.lexists(path):
                        continue  # unreadable directory listing or a race: not proof of deletion
                    batch.add(tombstone(path, time.time_ns(), None, reason))
                    report.tombstoned += 1
            gone.clear()

    def passed(path: bytes) -> None:
        """``path`` is in the index but the walk went past it: gone, unless it was never walked."""
        if not excluded(path) and not _under_other_fs(path, report.other_fs):
            gone.append(path)

    stopped = False
    for path, st in walk_tree(root, excluded, report):
        report.seen += 1
        while cur is not None and cur.path < path:
            passed(cur.path)
            cur = next(known, None)
        if cur is not None and cur.path == path:
            prev, cur = cur, next(known, None)
            if stat_key(prev) != stat_key(st):
                pending.append((path, prev))
        else:
            pending.append((path, None))
        if len(pending) >= batch_max_files or len(gone) >= batch_max_files:
            flush()
        if should_stop():
            stopped = True
            break
    if not stopped:
        # whatever the index still believes exists after the walk's last path is gone
        while cur is not None:
            passed(cur.path)
            cur = next(known, None)
            if len(gone) >= batch_max_files:
                flush()
    flush()
    report.seconds = time.monotonic() - started
    return report


def _under_other_fs(path: bytes, mounts: list[bytes]) -> bool:
    return any(path.startswith(m + b"/") for m in mounts)
