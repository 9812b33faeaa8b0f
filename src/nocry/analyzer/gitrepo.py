"""Does the git repository around a deleted file hold its content? The checkout rule's proof.

git checkout removes the files the target commit lacks before it writes anything in the working
tree but ``.git/index.lock``, so the detector excuses a document's deletion when a related process
writes the repository's metadata above it (docs/design.md §6). Anyone can write into a ``.git``
directory, so the analyzer also checks that the repository's object store has the deleted content
as a blob: its object id is the SHA-1 (SHA-256 in a repository made with
``--object-format=sha256``) of ``blob <size>\\0<content>``, looked up as a loose object and in
every pack index (a sorted table of ids, searched through an mmap). Alternates and linked
worktrees (``.git`` as a file, ``commondir``) are followed. Read-only; no git binary, no
subprocess.

What it does not prove: that the blob is the one a commit names (a forged object store that holds
copies of the documents passes; the documents are then still in it), and nothing for Mercurial,
Subversion or Bazaar working trees (:meth:`GitObjects.holds` answers None: unverifiable).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["GitObjects"]

_IDX_MAGIC = b"\xfftOc"
_FANOUT = 256 * 4
_OTHER_META = (b".hg", b".svn", b".bzr")
_CACHE_MAX = 4096
_REPO_TTL_NS = 10_000_000_000  # a repository's layout is read again after this long


@dataclass
class _Repo:
    object_dirs: list[bytes]
    algo: str  # sha1 | sha256
    read_ns: int


@dataclass
class _Index:
    mtime_ns: int
    size: int
    map: mmap.mmap
    fan_at: int  # offset of the fanout table (256 cumulative counts by an id's first byte)
    names_at: int  # offset of the sorted id table
    stride: int  # bytes from one id to the next
    count: int


class GitObjects:
    """Answers :meth:`holds` for deleted files; caches what it learns about repositories."""

    def __init__(self, max_bytes: int = 64 << 20):
        #: contents larger than this are not hashed (None: unverifiable)
        self.max_bytes = max_bytes
        self._dirs: dict[bytes, tuple[bytes, int]] = {}  # directory -> (its repository's git dir, b"" for .hg etc.; when found)
        self._repos: dict[bytes, _Repo] = {}
        self._indexes: dict[bytes, _Index] = {}
        self.lookups = 0

    # -- finding the repository ----------------------------------------------------------------

    def git_dir(self, path: bytes) -> bytes | None:
        """The git dir of the working tree holding ``path``; b"" for another version control
        system's working tree; None outside any. Found directories are remembered for
        ``_REPO_TTL_NS``; a miss is not (a repository cloned a moment ago must be found)."""
        now = time.monotonic_ns()
        d = os.path.dirname(path)
        walked: list[bytes] = []
        found: bytes | None = None
        while True:
            hit = self._dirs.get(d)
            if hit is not None and now - hit[1] < _REPO_TTL_NS:
                found = hit[0]
                break
            walked.append(d)
            found = _git_dir_at(d)
            if found is not None:
                break
            parent = os.path.dirname(d)
            if parent == d:
                return None
            d = parent
        if len(self._dirs) + len(walked) > _CACHE_MAX:
            self._dirs.clear()
        for w in walked:
            self._dirs[w] = (found, now)
        return found

    def _repo(self, git_dir: bytes) -> _Repo | None:
        now = time.monotonic_ns()
        r = self._repos.get(git_dir)
        if r is not None and now - r.read_ns < _REPO_TTL_NS:
            return r
        common = git_dir
        try:
            with open(os.path.join(git_dir, b"commondir"), "rb") as f:
                common = os.path.normpath(os.path.join(git_dir, f.read().strip()))
        except OSError:
            pass
        algo = "sha1"
        try:
            with open(os.path.join(common, b"config"), "rb") as f:
                for line in f.read(1 << 20).splitlines():
                    key, _, value = line.partition(b"=")
                    if key.strip().lower() == b"objectformat" and value.strip().lower() == b"sha256":
                        algo = "sha256"
        except OSError:
            return None
        objects = os.path.join(common, b"objects")
        dirs = [objects]
        try:
            with open(os.path.join(objects, b"info", b"alternates"), "rb") as f:
                for line in f.read(1 << 16).splitlines():
                    line = line.strip()
                    if line and not line.startswith(b"#"):
                        dirs.append(os.path.normpath(os.path.join(objects, line)))
        except OSError:
            pass
        if len(self._repos) > _CACHE_MAX:
            self._repos.clear()
        r = self._repos[git_dir] = _Repo(dirs, algo, now)
        return r

    # -- the question --------------------------------------------------------------------------

    def holds(self, path: bytes, size: int, content: Iterable[bytes]) -> bool | None:
        """Whether the git repository around ``path`` has a blob of this content (``size`` bytes,
        given in pieces). False outside any working tree or repository; None when it cannot tell
        (another version control system, a content above ``max_bytes``)."""
        git_dir = self.git_dir(path)
        if git_dir is None:
            return False
        if not git_dir or size > self.max_bytes:
            return None
        repo = self._repo(git_dir)
        if repo is None:
            return False  # a .git without a config is no repository (``mkdir .git``)
        h = hashlib.sha256() if repo.algo == "sha256" else hashlib.sha1()
        h.update(b"blob %d\0" % size)
        n = 0
        for piece in content:
            n += len(piece)
            h.update(piece)
        if n != size:
            return None
        self.lookups += 1
        return self._has(repo, h.digest())

    def _has(self, repo: _Repo, oid: bytes) -> bool:
        hexid = oid.hex().encode()
        for objects in repo.object_dirs:
            if os.path.exists(os.path.join(objects, hexid[:2], hexid[2:])):
                return True
            pack_dir = os.path.join(objects, b"pack")
            try:
                names = [n for n in os.listdir(pack_dir) if n.endswith(b".idx")]
            except OSError:
                continue
            for name in names:
                idx = self._index(os.path.join(pack_dir, name), len(oid))
                if idx is not None and _search(idx, oid):
                    return True
        return False

    def _index(self, path: bytes, hash_len: int) -> _Index | None:
        idx = self._indexes.get(path)
        try:
            st = os.stat(path)
        except OSError:
            if idx is not None:  # the pack went (gc)
                idx.map.close()
                del self._indexes[path]
            return None
        if idx is not None and idx.mtime_ns == st.st_mtime_ns and idx.size == st.st_size:
            return idx
        if idx is not None:
            idx.map.close()
            del self._indexes[path]
        try:
            with open(path, "rb") as f:
                m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None
        if m[:4] == _IDX_MAGIC:  # version 2: header, fanout, then the ids
            fan_at, names_at, stride = 8, 8 + _FANOUT, hash_len
        else:  # version 1: fanout, then (4-byte offset, id) entries
            fan_at, names_at, stride = 0, _FANOUT + 4, hash_len + 4
        if len(m) < fan_at + _FANOUT:
            m.close()
            return None
        count = int.from_bytes(m[fan_at + _FANOUT - 4 : fan_at + _FANOUT], "big")
        if names_at + count * stride > len(m):
            m.close()
            return None
        if len(self._indexes) > 256:
            for old in self._indexes.values():
                old.map.close()
            self._indexes.clear()
        idx = self._indexes[path] = _Index(st.st_mtime_ns, st.st_size, m, fan_at, names_at, stride, count)
        return idx

    def close(self) -> None:
        for idx in self._indexes.values():
            idx.map.close()
        self._indexes.clear()


def _git_dir_at(d: bytes) -> bytes | None:
    """``d``'s own repository: its ``.git`` directory, the git dir a ``.git`` file names (linked
    worktrees, submodules), b"" for another version control system's metadata, else None."""
    dot_git = os.path.join(d, b".git")
    try:
        st = os.stat(dot_git)  # a symlinked .git is followed: only ever read, never written
    except OSError:
        for meta in _OTHER_META:
            if os.path.isdir(os.path.join(d, meta)):
                return b""
        return None
    if stat.S_ISDIR(st.st_mode):
        return dot_git
    if stat.S_ISREG(st.st_mode):
        try:
            with open(dot_git, "rb") as f:
                line = f.read(4096).strip()
        except OSError:
            return None
        if line.startswith(b"gitdir:"):
            return os.path.normpath(os.path.join(d, line[7:].strip()))
    return None


def _search(idx: _Index, oid: bytes) -> bool:
    m, n, fan_at = idx.map, len(oid), idx.fan_at
    b = oid[0]
    lo = int.from_bytes(m[fan_at + 4 * (b - 1) : fan_at + 4 * b], "big") if b else 0
    hi = int.from_bytes(m[fan_at + 4 * b : fan_at + 4 * b + 4], "big")
    at, stride = idx.names_at, idx.stride
    while lo < hi:
        mid = (lo + hi) // 2
        o = at + mid * stride
        name = m[o : o + n]
        if name == oid:
            return True
        if name < oid:
            lo = mid + 1
        else:
            hi = mid
    return False
