"""Plain data stored in and read from the vault: one ``VersionRecord`` per stored state of an object.

A version is one of three kinds:

- ``content``: the object's content and metadata (files: ``content`` is the BLAKE3 hash of the whole
  content; symlinks: ``link_target``; directories: metadata only);
- ``meta``: metadata changed, content unchanged (``content`` repeats the previous hash);
- ``tombstone``: the object stopped existing at ``path`` (deleted, or renamed away: then
  ``renamed_to`` says where).

A rename is two records written in one transaction: a tombstone at the old path with
``renamed_to`` and a version at the new path with ``renamed_from``.
"""

from __future__ import annotations

import stat as statmod
from dataclasses import dataclass, replace
from typing import Any

from nocry.events import Subject, path_to_json

__all__ = ["VersionRecord", "FTYPE_FILE", "FTYPE_DIR", "FTYPE_SYMLINK", "FTYPE_OTHER", "ftype_of_mode"]

FTYPE_FILE = "file"
FTYPE_DIR = "dir"
FTYPE_SYMLINK = "symlink"
FTYPE_OTHER = "other"  # fifos, sockets, devices: metadata only

KIND_CONTENT = "content"
KIND_META = "meta"
KIND_TOMBSTONE = "tombstone"


def ftype_of_mode(mode: int) -> str:
    if statmod.S_ISREG(mode):
        return FTYPE_FILE
    if statmod.S_ISDIR(mode):
        return FTYPE_DIR
    if statmod.S_ISLNK(mode):
        return FTYPE_SYMLINK
    return FTYPE_OTHER


@dataclass(frozen=True, slots=True)
class VersionRecord:
    path: bytes
    time_ns: int
    kind: str  # KIND_*
    ftype: str = ""  # FTYPE_*; empty for tombstones
    mode: int = 0  # full st_mode
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    ino: int = 0
    dev: int = 0
    nlink: int = 0
    content: bytes | None = None  # 32-byte BLAKE3 of the whole content (regular files)
    link_target: bytes | None = None  # symlinks
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    renamed_from: bytes | None = None
    renamed_to: bytes | None = None
    #: why this version was made: baseline, event, rescan, restore, pre-restore, overflow
    reason: str = ""
    subject: Subject | None = None
    #: assigned by the vault when stored; 0 before
    id: int = 0

    @property
    def exists(self) -> bool:
        return self.kind != KIND_TOMBSTONE

    def with_id(self, id: int) -> VersionRecord:
        return replace(self, id=id)

    def same_state(self, other: VersionRecord) -> bool:
        """True when restoring either would produce the same object (content and metadata)."""
        return (
            self.exists == other.exists
            and self.ftype == other.ftype
            and self.mode == other.mode
            and self.uid == other.uid
            and self.gid == other.gid
            and self.content == other.content
            and self.link_target == other.link_target
            and (self.ftype == FTYPE_DIR or self.mtime_ns == other.mtime_ns)
            and self.xattrs == other.xattrs
        )

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"id": self.id}
        rec.update(path_to_json(self.path))
        rec.update(
            time_ns=self.time_ns,
            time=self.time_ns / 1e9,
            kind=self.kind,
            ftype=self.ftype,
            mode=oct(statmod.S_IMODE(self.mode)) if self.exists else None,
            uid=self.uid,
            gid=self.gid,
            size=self.size,
            mtime_ns=self.mtime_ns,
            hash=self.content.hex() if self.content else None,
            reason=self.reason,
            subject=self.subject.to_record() if self.subject else None,
        )
        if self.link_target is not None:
            rec.update(path_to_json(self.link_target, "link_target"))
        if self.renamed_from is not None:
            rec.update(path_to_json(self.renamed_from, "renamed_from"))
        if self.renamed_to is not None:
            rec.update(path_to_json(self.renamed_to, "renamed_to"))
        if self.xattrs:
            rec["xattrs"] = sorted(k.decode("utf-8", "backslashreplace") for k, _ in self.xattrs)
        return rec
