"""File operations confined to one drill directory: no symlink is ever followed, no other filesystem
is entered, no hard-linked file is written.

    fs = DrillFS(root)                     # root opened with O_NOFOLLOW; its device remembered
    for rel in fs.walk():                  # regular files, sorted, marker and state dir skipped
        data = fs.read(rel)                # each component opened relative to its parent, O_NOFOLLOW
        fs.overwrite(rel, transform(data)) # same inode, like an in-place encryptor

Every path is relative to the root and opened component by component through directory fds
(``openat`` with ``O_NOFOLLOW``), so a symlink planted anywhere in the tree, or a directory swapped
for one during a run, makes the operation fail instead of escaping the tree. Files with more than one
hard link are refused: their other names may lie outside the tree.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterable, Iterator

from nocry.errors import UserError

__all__ = ["DrillFS", "Escape", "MARKER_NAME", "STATE_DIR_NAME", "check_rel"]

log = logging.getLogger(__name__)

MARKER_NAME = ".nocry-drill"
STATE_DIR_NAME = ".nocry-drill.d"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted in the tree must not hang the drill (it is then refused as
# not regular); it has no effect on regular files.
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class Escape(UserError):
    """An operation would leave the drill directory or touch something that is not a plain file."""


def check_rel(rel: str) -> list[str]:
    """The components of a relative path inside the tree; refuses anything that could climb out."""
    if not rel or rel.startswith("/") or "\0" in rel:
        raise Escape(f"not a relative path inside the drill directory: {rel!r}")
    parts = rel.split("/")
    for p in parts:
        if p in ("", ".", ".."):
            raise Escape(f"not a plain relative path inside the drill directory: {rel!r}")
    return parts


class DrillFS:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = os.fspath(root)
        try:
            self.root_fd = os.open(self.root, _DIR_FLAGS)
        except OSError as exc:
            raise UserError(f"cannot open drill directory {self.root}: {exc.strerror}") from None
        self.dev = os.fstat(self.root_fd).st_dev
        self._dirs: dict[str, int] = {"": self.root_fd}

    # -- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        for fd in self._dirs.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._dirs.clear()

    def __enter__(self) -> DrillFS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- directories ----------------------------------------------------------------------------

    def dir_fd(self, rel_dir: str, *, create: bool = False) -> int:
        """An fd of a directory inside the tree, reached without following any symlink."""
        if rel_dir in self._dirs:
            return self._dirs[rel_dir]
        parts = check_rel(rel_dir)
        fd = self.root_fd
        for i, name in enumerate(parts):
            here = "/".join(parts[: i + 1])
            cached = self._dirs.get(here)
            if cached is not None:
                fd = cached
                continue
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(name, 0o755, dir_fd=fd)
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise Escape(f"{here!r} in the drill directory is a symlink or not a directory; refusing to follow it") from None
                raise
            if os.fstat(child).st_dev != self.dev:
                os.close(child)
                raise Escape(f"{here!r} is on another filesystem (a mount point); drills stay on one filesystem")
            self._dirs[here] = child
            fd = child
        return fd

    def _where(self, rel: str, *, create_dirs: bool = False) -> tuple[int, str]:
        parts = check_rel(rel)
        d = "/".join(parts[:-1])
        return (self.dir_fd(d, create=create_dirs) if d else self.root_fd), parts[-1]

    def makedirs(self, rel_dir: str) -> None:
        self.dir_fd(rel_dir, create=True)

    def rmdir(self, rel_dir: str) -> None:
        dfd, name = self._where(rel_dir)
        # forget cached fds of this directory and below before it goes
        for k in [k for k in self._dirs if k == rel_dir or k.startswith(rel_dir + "/")]:
            os.close(self._dirs.pop(k))
        os.rmdir(name, dir_fd=dfd)

    # -- files ----------------------------------------------------------------------------------

    def lstat(self, rel: str) -> os.stat_result | None:
        try:
            dfd, name = self._where(rel)
            return os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None

    def exists(self, rel: str) -> bool:
        return self.lstat(rel) is not None

    def open_regular(self, rel: str, flags: int, *, allow_links: bool = False) -> int:
        dfd, name = self._where(rel)
        try:
            fd = os.open(name, flags | _FILE_FLAGS, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Escape(f"{rel!r} is a symlink; drills never follow symlinks") from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise Escape(f"{rel!r} is not a regular file")
        if st.st_nlink > 1 and not allow_links:
            os.close(fd)
            raise Escape(f"{rel!r} has {st.st_nlink} hard links (another name may lie outside the drill directory)")
        return fd

    def read(self, rel: str) -> bytes:
        fd = self.open_regular(rel, os.O_RDONLY)
        try:
            return _read_all(fd)
        finally:
            os.close(fd)

    def create(self, rel: str, data: bytes, *, mode: int = 0o644, make_dirs: bool = False) -> None:
        """A new file; fails if the name exists (O_EXCL also refuses a planted symlink)."""
        dfd, name = self._where(rel, create_dirs=make_dirs)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, mode, dir_fd=dfd)
        try:
            _write_all(fd, data, 0)
        finally:
            os.close(fd)

    def overwrite(self, rel: str, data: bytes, *, truncate_first: bool = False) -> None:
        """Replace the content in place (same inode), the way an in-place encryptor does."""
        fd = self.open_regular(rel, os.O_WRONLY | (os.O_TRUNC if truncate_first else 0))
        try:
            _write_all(fd, data, 0)
            if not truncate_first:
                os.ftruncate(fd, len(data))
        finally:
            os.close(fd)

    def pwrite_pieces(self, rel: str, pieces: Iterable[tuple[int, bytes]]) -> None:
        """Write only some ranges of a file, in ascending order (partial or header-only encryption)."""
        fd = self.open_regular(rel, os.O_WRONLY)
        try:
            for off, data in pieces:
                _write_all(fd, data, off)
        finally:
            os.close(fd)

    def append(self, rel: str, data: bytes) -> None:
        fd = self.open_regular(rel, os.O_WRONLY | os.O_APPEND)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    def truncate(self, rel: str, size: int) -> None:
        fd = self.open_regular(rel, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)

    def unlink(self, rel: str) -> None:
        dfd, name = self._where(rel)
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise Escape(f"{rel!r} is not a regular file; not removing it")
        os.unlink(name, dir_fd=dfd)

    def rename(self, src: str, dst: str) -> None:
        sfd, sname = self._where(src)
        dfd, dname = self._where(dst)
        os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)

    def copy_to(self, src: str, dst: str) -> None:
        """Copy a file to a new name inside the tree (the kept originals of wiped files)."""
        fd_in = self.open_regular(src, os.O_RDONLY)
        try:
            dfd, name = self._where(dst, create_dirs=True)
            fd_out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, 0o600, dir_fd=dfd)
            try:
                size = os.fstat(fd_in).st_size
                done = 0
                try:
                    # in-kernel copy; a reflink on filesystems that share extents
                    while done < size:
                        n = os.copy_file_range(fd_in, fd_out, size - done, done, done)
                        if n == 0:
                            break
                        done += n
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    _write_all(fd_out, _read_all(fd_in), 0)
            finally:
                os.close(fd_out)
        finally:
            os.close(fd_in)

    # -- listing --------------------------------------------------------------------------------

    def walk(self, *, include_state: bool = False) -> list[str]:
        """Regular files of the tree, sorted by path; symlinks, other filesystems, FIFOs and
        hard-linked files are left out (and logged)."""
        out: list[str] = []
        for rel in self._walk_dir(""):
            out.append(rel)
        if not include_state:
            # the marker, its temp file while it is rewritten, and the state dir
            out = [r for r in out if not (r.startswith(MARKER_NAME) and "/" not in r) and not r.startswith(STATE_DIR_NAME + "/")]
        out.sort()
        return out

    def _walk_dir(self, rel_dir: str) -> Iterator[str]:
        fd = self.dir_fd(rel_dir) if rel_dir else self.root_fd
        # scandir on a dup: scandir closes its fd when done, the cache keeps its own
        with os.scandir(os.dup(fd)) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                log.debug("skip symlink path=%s", rel)
            elif stat.S_ISDIR(st.st_mode):
                if st.st_dev != self.dev:
                    log.warning("skip other filesystem path=%s", rel)
                    continue
                yield from self._walk_dir(rel)
            elif stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1:
                    log.warning("skip hard-linked file path=%s nlink=%d", rel, st.st_nlink)
                    continue
                yield rel

    def dirs(self) -> list[str]:
        """Every directory of the tree below the root (state dir excluded), sorted."""
        out: list[str] = []

        def rec(rel_dir: str) -> None:
            fd = self.dir_fd(rel_dir) if rel_dir else self.root_fd
            with os.scandir(os.dup(fd)) as it:
                for e in it:
                    if rel_dir == "" and e.name == STATE_DIR_NAME:
                        continue
                    if e.is_dir(follow_symlinks=False):
                        rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
                        if e.stat(follow_symlinks=False).st_dev == self.dev:
                            out.append(rel)
                            rec(rel)

        rec("")
        return sorted(out)


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks = []
    off = 0
    while True:
        b = os.pread(fd, max(size - off, 1 << 16), off)
        if not b:
            break
        chunks.append(b)
        off += len(b)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes, off: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, off)
        view = view[n:]
        off += n
