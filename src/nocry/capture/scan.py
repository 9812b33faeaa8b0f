"""Walk a protected tree and reconcile the vault index with the disk.

    known = {path: stat_key of newest version}   (from the index)
    for each object on disk (no symlink followed, no other filesystem entered):
        differs from known? -> snapshot it
    for each path known but no longer on disk -> tombstone

The same walk is the baseline (empty index), the rescan after a queue overflow, and the rescan at
start-up that picks up whatever changed while nocry was not running.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from nocry.capture.snapshot import ChangedWhileRead, Unreadable, snapshot, stat_key, tombstone

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


def walk_tree(root: bytes, excluded: Callable[[bytes], bool], report: ScanReport) -> Iterator[tuple[bytes, os.stat_result]]:
    """Yield (path, lstat) for ``root`` and everything below it, never following symlinks and never
    entering another filesystem (its mount point itself is yielded)."""
    try:
        root_st = os.lstat(root)
    except OSError as exc:
        report.unreadable.append((root, exc.strerror or str(exc)))
        return
    yield root, root_st
    if not os.path.isdir(root) or os.path.islink(root):
        return
    dev = root_st.st_dev
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError as exc:
            report.unreadable.append((d, f"cannot list directory: {exc.strerror}"))
            continue
        with it:
            for entry in it:
                path = entry.path
                if excluded(path):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    report.unreadable.append((path, exc.strerror or str(exc)))
                    continue
                yield path, st
                if entry.is_dir(follow_symlinks=False):
                    if st.st_dev != dev:
                        report.other_fs.append(path)
                        continue
                    stack.append(path)


def rescan_tree(vault, root: bytes, excluded: Callable[[bytes], bool], *, reason: str, batch_max_files: int = 512, max_file_bytes: int = 0, should_stop: Callable[[], bool] = lambda: False) -> ScanReport:
    """Reconcile the vault with the disk under ``root``; returns what was done."""
    started = time.monotonic()
    report = ScanReport(tree=root)
    # path -> hash of its stat key: what an unchanged object must match. Whole version records
    # held ~870 bytes an object (1 GB for a million files); this holds ~180. The previous version
    # of what did change is read again when it is captured.
    known: dict[bytes, int] = {}
    for rec in vault.latest_under(root):
        if rec.exists:
            known[rec.path] = hash(stat_key(rec))
    pending: list[tuple[bytes, bool]] = []

    def flush() -> None:
        if not pending:
            return
        with vault.batch() as batch:
            for path, had in pending:
                prev = vault.latest(path) if had else None
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
        pending.clear()

    for path, st in walk_tree(root, excluded, report):
        report.seen += 1
        key = known.pop(path, None)
        if key is not None and key == hash(stat_key(st)):
            continue
        pending.append((path, key is not None))
        if len(pending) >= batch_max_files:
            flush()
            if should_stop():
                break
    flush()
    if not should_stop():
        # whatever the index still believes exists but the walk did not see is gone
        gone = [p for p in known if not excluded(p) and not _under_other_fs(p, report.other_fs)]
        for i in range(0, len(gone), batch_max_files):
            with vault.batch() as batch:
                for path in gone[i : i + batch_max_files]:
                    if os.path.lexists(path):
                        continue  # unreadable directory listing or a race: not proof of deletion
                    batch.add(tombstone(path, time.time_ns(), None, reason))
                    report.tombstoned += 1
    report.seconds = time.monotonic() - started
    return report


def _under_other_fs(path: bytes, mounts: list[bytes]) -> bool:
    return any(path.startswith(m + b"/") for m in mounts)
