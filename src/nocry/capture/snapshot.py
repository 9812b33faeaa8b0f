"""Turn the state of one path on disk into a version in a vault batch.

    rec = snapshot(batch, path, previous, now, subject, reason, content_changed=?)
        lstat(path)            missing      -> tombstone (if the vault thinks it exists)
        unchanged vs previous  -> None (nothing to store)
        regular file           -> open O_NOFOLLOW, stream into the vault, re-check it did not change
        symlink                -> readlink (never followed)
        directory / other      -> metadata only

A file that keeps changing while it is read is reported as ``ChangedWhileRead`` so the caller can
try again later; a file that cannot be read gives ``Unreadable`` (a warning, never a crash).
"""

from __future__ import annotations

import errno
import logging
import os
import stat as statmod
from dataclasses import dataclass

from nocry.events import Subject
from nocry.vault.model import (
    FTYPE_DIR,
    FTYPE_FILE,
    FTYPE_SYMLINK,
    KIND_CONTENT,
    KIND_META,
    KIND_TOMBSTONE,
    VersionRecord,
    ftype_of_mode,
)

__all__ = ["snapshot", "tombstone", "stat_key", "ChangedWhileRead", "Unreadable", "read_xattrs"]

log = logging.getLogger(__name__)

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOATIME", 0)


class ChangedWhileRead(Exception):
    """The file changed while it was being read; try again later."""


class Unreadable(Exception):
    """The object exists but cannot be read (permission, I/O error)."""


@dataclass(frozen=True, slots=True)
class _Stat:
    ftype: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    dev: int
    nlink: int


def _stat_of(st: os.stat_result) -> _Stat:
    return _Stat(
        ftype_of_mode(st.st_mode),
        st.st_mode,
        st.st_uid,
        st.st_gid,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
        st.st_ino,
        st.st_dev,
        st.st_nlink,
    )


def stat_key(rec_or_stat: VersionRecord | os.stat_result) -> tuple:
    """What must match for an object to count as unchanged without reading it."""
    if isinstance(rec_or_stat, VersionRecord):
        r = rec_or_stat
        return (r.ftype, r.mode, r.uid, r.gid, r.size if r.ftype == FTYPE_FILE else 0, r.mtime_ns, r.ctime_ns, r.ino)
    st = rec_or_stat
    ftype = ftype_of_mode(st.st_mode)
    return (ftype, st.st_mode, st.st_uid, st.st_gid, st.st_size if ftype == FTYPE_FILE else 0, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def read_xattrs(path: bytes, fd: int | None = None) -> tuple[tuple[bytes, bytes], ...]:
    target = fd if fd is not None else path
    follow = fd is not None
    try:
        names = os.listxattr(target, follow_symlinks=follow) if fd is None else os.listxattr(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.ENOENT, errno.EPERM, errno.EACCES):
            return ()
        raise
    out = []
    for name in sorted(names):
        try:
            value = os.getxattr(target, name, follow_symlinks=follow) if fd is None else os.getxattr(fd, name)
        except OSError:
            continue
        out.append((os.fsencode(name), value))
    return tuple(out)


def tombstone(path: bytes, now_ns: int, subject: Subject | None, reason: str, renamed_to: bytes | None = None) -> VersionRecord:
    return VersionRecord(path=path, time_ns=now_ns, kind=KIND_TOMBSTONE, reason=reason, subject=subject, renamed_to=renamed_to)


def snapshot(
    batch,
    path: bytes,
    previous: VersionRecord | None,
    now_ns: int,
    *,
    subject: Subject | None = None,
    reason: str = "event",
    content_may_have_changed: bool = True,
    renamed_from: bytes | None = None,
    max_file_bytes: int = 0,
    force: bool = False,
) -> VersionRecord | None:
    """Store the current state of ``path`` in ``batch`` if it differs from ``previous``.

    Returns the record added (without id), or None when nothing needed storing. When
    ``content_may_have_changed`` is False (only an attribute event was seen) and size and mtime are
    unchanged, the previous content hash is reused without reading the file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if previous is None or not previous.exists:
            return None
        rec = tombstone(path, now_ns, subject, reason)
        batch.add(rec)
        return rec
    except NotADirectoryError:
        if previous is None or not previous.exists:
            return None
        rec = tombstone(path, now_ns, subject, reason)
        batch.add(rec)
        return rec
    except PermissionError as exc:
        raise Unreadable(f"cannot stat: {exc.strerror}") from None

    if not force and previous is not None and previous.exists and stat_key(previous) == stat_key(st) and renamed_from is None:
        return None

    s = _stat_of(st)
    content: bytes | None = None
    link_target: bytes | None = None
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    size = s.size
    kind = KIND_CONTENT

    if s.ftype == FTYPE_FILE:
        reuse = (
            previous is not None
            and previous.exists
            and previous.ftype == FTYPE_FILE
            and previous.content is not None
            and previous.size == s.size
            and previous.mtime_ns == s.mtime_ns
            and (not content_may_have_changed or (renamed_from is not None and previous.ino == s.ino))
        )
        if reuse:
            content = previous.content
            kind = KIND_META
            try:
                xattrs = read_xattrs(path)
            except OSError as exc:
                raise Unreadable(f"cannot read extended attributes: {exc.strerror}") from None
        elif max_file_bytes and s.size > max_file_bytes:
            kind = KIND_META
            log.info("event=capture_skipped_large path=%r size=%d limit=%d", path, s.size, max_file_bytes)
        else:
            content, size, xattrs, s = _read_file(batch, path, s)
        if previous is not None and previous.exists and kind == KIND_CONTENT and previous.content == content:
            kind = KIND_META
    elif s.ftype == FTYPE_SYMLINK:
        try:
            link_target = os.readlink(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Unreadable(f"cannot read link: {exc.strerror}") from None
    else:
        try:
            xattrs = read_xattrs(path) if s.ftype == FTYPE_DIR else ()
        except OSError as exc:
            raise Unreadable(f"cannot read extended attributes: {exc.strerror}") from None

    rec = VersionRecord(
        path=path,
        time_ns=now_ns,
        kind=kind,
        ftype=s.ftype,
        mode=s.mode,
        uid=s.uid,
        gid=s.gid,
        size=size,
        mtime_ns=s.mtime_ns,
        ctime_ns=s.ctime_ns,
        ino=s.ino,
        dev=s.dev,
        nlink=s.nlink,
        content=content,
        link_target=link_target,
        xattrs=xattrs,
        renamed_from=renamed_from,
        reason=reason,
        subject=subject,
    )
    if previous is not None and previous.exists and renamed_from is None and not force and rec.same_state(previous) and rec.ctime_ns == previous.ctime_ns:
        return None
    batch.add(rec)
    return rec


class _Reader:
    """File-like over an fd that never reads past the size seen at open (a file growing while it is
    read is caught by the re-check afterwards, not by reading forever)."""

    def __init__(self, fd: int):
        self.fd = fd

    def readinto(self, buf) -> int:
        return os.readv(self.fd, [buf])

    def read(self, n: int = -1) -> bytes:
        return os.read(self.fd, n if n > 0 else 1 << 20)


def _read_file(batch, path: bytes, s: _Stat):
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise ChangedWhileRead("vanished before it could be read") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a symlink since lstat
            raise ChangedWhileRead("replaced while being read") from None
        if exc.errno == errno.EPERM and _OPEN_FLAGS & getattr(os, "O_NOATIME", 0):
            # O_NOATIME is refused on files we do not own without CAP_FOWNER
            try:
                fd = os.open(path, _OPEN_FLAGS & ~os.O_NOATIME)
            except OSError as exc2:
                raise Unreadable(f"cannot open: {exc2.strerror}") from None
        else:
            raise Unreadable(f"cannot open: {exc.strerror}") from None
    try:
        before = os.fstat(fd)
        if not statmod.S_ISREG(before.st_mode) or before.st_ino != s.ino:
            raise ChangedWhileRead("replaced between stat and open")
        try:
            content, size = batch.put_stream(_Reader(fd), size_hint=before.st_size)
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EACCES, errno.EPERM):
                raise Unreadable(f"cannot read: {exc.strerror}") from None
            raise
        try:
            xattrs = read_xattrs(path, fd)
        except OSError as exc:
            raise Unreadable(f"cannot read extended attributes: {exc.strerror}") from None
        after = os.fstat(fd)
    finally:
        os.close(fd)
    if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (before.st_size, before.st_mtime_ns, before.st_ctime_ns) or size != after.st_size:
        raise ChangedWhileRead("modified while being read")
    return content, size, xattrs, _stat_of(after)
