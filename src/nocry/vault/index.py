"""The vault's index: one SQLite database (WAL) mapping path -> versions -> contents -> chunks -> packs.

    objects(id, path)                     one row per path ever seen (paths are BLOBs, any bytes)
    versions(id, object_id, time_ns, ...) one row per VersionRecord; content -> contents.hash
    contents(hash, size, chunk_ids)       chunk_ids = the content's 32-byte chunk ids, concatenated
    chunks(id, pack, offset, ...)         where each chunk's blob is
    packs(name, size)                     every pack file the index relies on
    meta(key, value)                      format version, vault id

The schema and the queries of the hot paths (capture, restore) live here; verify and retention run
their own whole-table scans over the same schema. A reader sees each statement's own snapshot
(WAL), writers serialise on ``BEGIN IMMEDIATE`` with a 30 s busy timeout, so a daemon and a CLI
restore can share one vault.

Prefix queries on BLOB paths use the byte after ``/``::

    path = p  OR  (path >= p || '/'  AND  path < p || '0')       -- '0' is '/' + 1
"""

from __future__ import annotations

import json
import sqlite3
import struct
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from nocry.errors import VaultCorrupt, VaultError
from nocry.events import Subject
from nocry.vault.model import FTYPE_FILE, KIND_CONTENT, KIND_META, KIND_TOMBSTONE, VersionRecord

__all__ = [
    "FORMAT_VERSION",
    "Index",
    "connect",
    "prefix_bounds",
    "encode_xattrs",
    "decode_xattrs",
    "split_chunk_ids",
]

FORMAT_VERSION = 1
BUSY_TIMEOUT_MS = 30_000
ID_LEN = 32
#: time bound that means "no bound" (SQLite integers are signed 64-bit)
MAX_TIME = (1 << 63) - 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS objects(
    id   INTEGER PRIMARY KEY,
    path BLOB NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS packs(
    name       TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    created_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks(
    id         BLOB PRIMARY KEY,
    pack       TEXT NOT NULL REFERENCES packs(name),
    offset     INTEGER NOT NULL,
    stored_len INTEGER NOT NULL,
    raw_len    INTEGER NOT NULL,
    compressed INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks_pack ON chunks(pack);
CREATE TABLE IF NOT EXISTS contents(
    hash      BLOB PRIMARY KEY,
    size      INTEGER NOT NULL,
    chunk_ids BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS versions(
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    object_id    INTEGER NOT NULL REFERENCES objects(id),
    time_ns      INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    ftype        TEXT NOT NULL,
    mode         INTEGER NOT NULL,
    uid          INTEGER NOT NULL,
    gid          INTEGER NOT NULL,
    size         INTEGER NOT NULL,
    mtime_ns     INTEGER NOT NULL,
    ctime_ns     INTEGER NOT NULL,
    ino          INTEGER NOT NULL,
    dev          INTEGER NOT NULL,
    nlink        INTEGER NOT NULL,
    content      BLOB REFERENCES contents(hash),
    link_target  BLOB,
    xattrs       BLOB,
    renamed_from BLOB,
    renamed_to   BLOB,
    reason       TEXT NOT NULL,
    subject      TEXT
);
CREATE INDEX IF NOT EXISTS versions_object_time ON versions(object_id, time_ns, id);
CREATE INDEX IF NOT EXISTS versions_content ON versions(content) WHERE content IS NOT NULL;
"""

_VERSION_COLS = (
    "v.id, o.path, v.time_ns, v.kind, v.ftype, v.mode, v.uid, v.gid, v.size, v.mtime_ns, v.ctime_ns, "
    "v.ino, v.dev, v.nlink, v.content, v.link_target, v.xattrs, v.renamed_from, v.renamed_to, v.reason, v.subject"
)
_KINDS = (KIND_CONTENT, KIND_META, KIND_TOMBSTONE)
_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1
_LEN = struct.Struct("<I")


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, foreign keys on."""
    uri = "file:" + urllib.parse.quote(str(path)) + ("?mode=ro" if readonly else "")
    con = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                          timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if not readonly:
            mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise VaultError(f"{path}: cannot switch the index to WAL mode (got {mode})")
        # NORMAL in WAL mode: a commit survives a process crash; a power loss may roll back the
        # newest commits but never corrupts (docs/vault-format.md, "Crash behaviour").
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        con.close()
        raise
    return con


def prefix_bounds(prefix: bytes) -> tuple[bytes, bytes] | None:
    """``(p, upper)`` so that the objects under ``prefix`` are ``p <= path < upper`` and
    (``path == p`` or ``path >= p + b"/"``); None when the prefix is the root (everything)."""
    if not isinstance(prefix, bytes):
        raise TypeError(f"prefix must be bytes, not {type(prefix).__name__}")
    p = prefix.rstrip(b"/")
    if not p:
        return None
    return p, p + b"0"


def encode_xattrs(xattrs: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    """``(u32 name_len, name, u32 value_len, value)*`` little-endian; None for no xattrs."""
    if not xattrs:
        return None
    out = bytearray()
    for name, value in xattrs:
        out += _LEN.pack(len(name)) + name + _LEN.pack(len(value)) + value
    return bytes(out)


def decode_xattrs(blob: bytes | None) -> tuple[tuple[bytes, bytes], ...]:
    if not blob:
        return ()
    items = []
    pos = 0
    try:
        while pos < len(blob):
            (n,) = _LEN.unpack_from(blob, pos)
            name = blob[pos + 4 : pos + 4 + n]
            pos += 4 + n
            (m,) = _LEN.unpack_from(blob, pos)
            value = blob[pos + 4 : pos + 4 + m]
            pos += 4 + m
            if len(name) != n or len(value) != m:
                raise struct.error("short")
            items.append((name, value))
    except struct.error:
        raise VaultCorrupt("index: malformed xattrs column") from None
    return tuple(items)


def split_chunk_ids(blob: bytes) -> list[bytes]:
    if len(blob) % ID_LEN:
        raise VaultCorrupt(f"index: chunk list of {len(blob)} bytes is not a multiple of {ID_LEN}")
    return [blob[i : i + ID_LEN] for i in range(0, len(blob), ID_LEN)]


def _s64(v: int) -> int:
    """Store an unsigned 64-bit value (inode, device numbers) in SQLite's signed integer."""
    return v - _U64 if v > _I64_MAX else v


def _u64(v: int) -> int:
    return v + _U64 if v < 0 else v


def _record_params(rec: VersionRecord, object_id: int) -> tuple[Any, ...]:
    return (
        object_id,
        rec.time_ns,
        rec.kind,
        rec.ftype,
        rec.mode,
        rec.uid,
        rec.gid,
        rec.size,
        rec.mtime_ns,
        rec.ctime_ns,
        _s64(rec.ino),
        _s64(rec.dev),
        rec.nlink,
        rec.content,
        rec.link_target,
        encode_xattrs(rec.xattrs),
        rec.renamed_from,
        rec.renamed_to,
        rec.reason,
        json.dumps(rec.subject.to_record(), sort_keys=True) if rec.subject is not None else None,
    )


def _record_of(row: Sequence[Any]) -> VersionRecord:
    (vid, path, time_ns, kind, ftype, mode, uid, gid, size, mtime_ns, ctime_ns, ino, dev, nlink,
     content, link_target, xattrs, renamed_from, renamed_to, reason, subject) = row
    return VersionRecord(
        path=path,
        time_ns=time_ns,
        kind=kind,
        ftype=ftype,
        mode=mode,
        uid=uid,
        gid=gid,
        size=size,
        mtime_ns=mtime_ns,
        ctime_ns=ctime_ns,
        ino=_u64(ino),
        dev=_u64(dev),
        nlink=nlink,
        content=content,
        link_target=link_target,
        xattrs=decode_xattrs(xattrs),
        renamed_from=renamed_from,
        renamed_to=renamed_to,
        reason=reason,
        subject=Subject.from_record(json.loads(subject)) if subject else None,
        id=vid,
    )


def check_record(rec: VersionRecord) -> None:
    """Reject a record that the index could not store faithfully (a bug in the caller)."""
    if not isinstance(rec.path, bytes) or not rec.path:
        raise VaultError(f"version path must be non-empty bytes, not {rec.path!r}")
    if rec.kind not in _KINDS:
        raise VaultError(f"version kind must be one of {_KINDS}, not {rec.kind!r}")
    if rec.content is not None and (not isinstance(rec.content, bytes) or len(rec.content) != ID_LEN):
        raise VaultError(f"version content must be a {ID_LEN}-byte hash or None")
    for name in ("link_target", "renamed_from", "renamed_to"):
        value = getattr(rec, name)
        if value is not None and not isinstance(value, bytes):
            raise VaultError(f"version {name} must be bytes or None")


class Index:
    """The SQLite index of one vault, shared by the threads of one process (one lock)."""

    def __init__(self, path: Path, *, readonly: bool = False):
        self.path = path
        self.readonly = readonly
        self.lock = threading.RLock()
        self.con = connect(path, readonly=readonly)

    # -- setup -------------------------------------------------------------------------------

    def create_schema(self, vault_id: str, created_ns: int) -> None:
        with self.lock:
            self.con.execute("BEGIN IMMEDIATE")
            try:
                for stmt in SCHEMA.split(";"):
                    if stmt.strip():
                        self.con.execute(stmt)
                self.con.executemany(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
                    [("format", "nocry-vault"), ("format_version", str(FORMAT_VERSION)),
                     ("vault_id", vault_id), ("created_ns", str(created_ns))],
                )
                self.con.execute("COMMIT")
            except BaseException:
                self.con.execute("ROLLBACK")
                raise

    def check_format(self) -> None:
        try:
            meta = dict(self.con.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise VaultError(f"{self.path}: cannot read the vault index ({exc})") from None
        if meta.get("format") != "nocry-vault":
            raise VaultError(f"{self.path}: not a nocry vault index")
        version = int(meta.get("format_version", "0"))
        if version != FORMAT_VERSION:
            raise VaultError(f"{self.path}: vault format version {version} is not supported "
                             f"(this nocry reads version {FORMAT_VERSION})")

    def close(self) -> None:
        with self.lock:
            self.con.close()

    # -- versions ----------------------------------------------------------------------------

    def latest(self, path: bytes) -> VersionRecord | None:
        with self.lock:
            row = self.con.execute(
                f"SELECT {_VERSION_COLS} FROM objects o JOIN versions v ON v.object_id = o.id "
                "WHERE o.path = ? ORDER BY v.time_ns DESC, v.id DESC LIMIT 1", (path,)).fetchone()
        return _record_of(row) if row else None

    def history(self, path: bytes) -> list[VersionRecord]:
        with self.lock:
            rows = self.con.execute(
                f"SELECT {_VERSION_COLS} FROM objects o JOIN versions v ON v.object_id = o.id "
                "WHERE o.path = ? ORDER BY v.time_ns DESC, v.id DESC", (path,)).fetchall()
        return [_record_of(r) for r in rows]

    def other_path_with_content(self, content_hash: bytes, path: bytes, before_ns: int, *, other_name: bool = False) -> bytes | None:
        """A different object that held this exact content before ``before_ns`` (content copied
        over from another file), or None; with ``other_name``, one whose file name differs too
        (the same name elsewhere is a copy of the same document: a mirror, an update). Uses the
        index on versions(content)."""
        name = path.rsplit(b"/", 1)[-1]
        with self.lock:
            rows = self.con.execute(
                "SELECT o.path FROM versions v JOIN objects o ON o.id = v.object_id "
                "WHERE v.content = ? AND o.path != ? AND v.time_ns < ? LIMIT 64",
                (content_hash, path, before_ns)).fetchall()
        for (other,) in rows:
            other = bytes(other)
            if not other_name or other.rsplit(b"/", 1)[-1] != name:
                return other
        return None

    def get_version(self, version_id: int) -> VersionRecord | None:
        with self.lock:
            row = self.con.execute(
                f"SELECT {_VERSION_COLS} FROM versions v JOIN objects o ON o.id = v.object_id WHERE v.id = ?",
                (version_id,)).fetchone()
        return _record_of(row) if row else None

    def state_at(self, prefix: bytes, time_ns: int, page: int = 2000, *, live: bool = False) -> Iterator[VersionRecord]:
        """Newest version at or before time_ns of every object under prefix, by path. Paged by
        path (keyset), so that the lock is never held across a yield and a huge tree streams.
        ``live``: skip objects whose newest version is a tombstone, in SQL (a tree that churns
        leaves many more dead paths in the index than live ones, and a rescan needs only these)."""
        bounds = prefix_bounds(prefix)
        time_ns = min(time_ns, MAX_TIME)
        # The correlated subquery is one seek on versions_object_time per object.
        pick = ("JOIN versions v ON v.id = (SELECT id FROM versions WHERE object_id = o.id AND time_ns <= ? "
                "ORDER BY time_ns DESC, id DESC LIMIT 1)")
        if live:
            pick += f" AND v.kind != '{KIND_TOMBSTONE}'"
        start = b"" if bounds is None else bounds[0]
        while True:
            if bounds is None:
                sql = f"SELECT {_VERSION_COLS} FROM objects o {pick} WHERE o.path >= ? ORDER BY o.path LIMIT ?"
                params: tuple[Any, ...] = (time_ns, start, page)
            else:
                p, upper = bounds
                sql = (f"SELECT {_VERSION_COLS} FROM objects o {pick} WHERE o.path >= ? AND o.path < ? "
                       "AND (o.path = ? OR o.path >= ?) ORDER BY o.path LIMIT ?")
                params = (time_ns, start, upper, p, p + b"/", page)
            with self.lock:
                rows = self.con.execute(sql, params).fetchall()
            for row in rows:
                yield _record_of(row)
            if len(rows) < page:
                return
            start = rows[-1][1] + b"\x00"  # the smallest byte string after the last path

    def paths_under(self, prefix: bytes, page: int = 5000) -> Iterator[bytes]:
        bounds = prefix_bounds(prefix)
        start = b"" if bounds is None else bounds[0]
        while True:
            if bounds is None:
                sql, params = "SELECT path FROM objects WHERE path >= ? ORDER BY path LIMIT ?", (start, page)
            else:
                p, upper = bounds
                sql = ("SELECT path FROM objects WHERE path >= ? AND path < ? AND (path = ? OR path >= ?) "
                       "ORDER BY path LIMIT ?")
                params = (start, upper, p, p + b"/", page)  # type: ignore[assignment]
            with self.lock:
                rows = self.con.execute(sql, params).fetchall()
            for (path,) in rows:
                yield path
            if len(rows) < page:
                return
            start = rows[-1][0] + b"\x00"

    # -- contents and chunks -----------------------------------------------------------------

    def has_chunk(self, chunk_id: bytes) -> bool:
        with self.lock:
            return self.con.execute("SELECT 1 FROM chunks WHERE id = ?", (chunk_id,)).fetchone() is not None

    def has_content(self, content_hash: bytes) -> bool:
        with self.lock:
            return self.con.execute("SELECT 1 FROM contents WHERE hash = ?", (content_hash,)).fetchone() is not None

    def content(self, content_hash: bytes) -> tuple[int, list[bytes]] | None:
        with self.lock:
            row = self.con.execute("SELECT size, chunk_ids FROM contents WHERE hash = ?", (content_hash,)).fetchone()
        if row is None:
            return None
        return row[0], split_chunk_ids(row[1])

    def chunk_rows(self, ids: Iterable[bytes]) -> dict[bytes, tuple[str, int, int, int, int]]:
        """``{chunk id: (pack, offset, stored_len, raw_len, compressed)}`` for the ids present."""
        out: dict[bytes, tuple[str, int, int, int, int]] = {}
        unique = list(dict.fromkeys(ids))
        with self.lock:
            for i in range(0, len(unique), 500):  # stay under SQLite's bound-parameter limit
                part = unique[i : i + 500]
                marks = ",".join("?" * len(part))
                sql = f"SELECT id, pack, offset, stored_len, raw_len, compressed FROM chunks WHERE id IN ({marks})"
                for row in self.con.execute(sql, part):
                    out[row[0]] = row[1:]
        return out

    # -- writing -----------------------------------------------------------------------------

    def commit_batch(
        self,
        packs: Sequence[tuple[str, int]],
        chunks: Sequence[tuple[bytes, str, int, int, int, int]],
        contents: Sequence[tuple[bytes, int, bytes]],
        versions: Sequence[VersionRecord],
        now_ns: int,
    ) -> list[int]:
        """Insert everything a batch produced in ONE transaction; returns version ids in order.
        The packs named here must already be durable (the caller's job)."""
        with self.lock:
            con = self.con
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany("INSERT OR IGNORE INTO packs(name, size, created_ns) VALUES (?, ?, ?)",
                                [(n, s, now_ns) for n, s in packs])
                # OR IGNORE: another writer may have stored the same chunk meanwhile; its row wins
                # and our copy becomes an unindexed blob that prune reclaims.
                con.executemany("INSERT OR IGNORE INTO chunks(id, pack, offset, stored_len, raw_len, compressed) "
                                "VALUES (?, ?, ?, ?, ?, ?)", chunks)
                con.executemany("INSERT OR IGNORE INTO contents(hash, size, chunk_ids) VALUES (?, ?, ?)", contents)
                ids: list[int] = []
                object_ids: dict[bytes, int] = {}
                for rec in versions:
                    oid = object_ids.get(rec.path)
                    if oid is None:
                        row = con.execute("SELECT id FROM objects WHERE path = ?", (rec.path,)).fetchone()
                        if row is None:
                            oid = con.execute("INSERT INTO objects(path) VALUES (?)", (rec.path,)).lastrowid
                        else:
                            oid = row[0]
                        object_ids[rec.path] = oid
                    cur = con.execute(
                        "INSERT INTO versions(object_id, time_ns, kind, ftype, mode, uid, gid, size, mtime_ns, "
                        "ctime_ns, ino, dev, nlink, content, link_target, xattrs, renamed_from, renamed_to, reason, "
                        "subject) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        _record_params(rec, oid))
                    ids.append(cur.lastrowid)  # type: ignore[arg-type]
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        return ids

    def packs_present(self, names: Iterable[str]) -> set[str]:
        with self.lock:
            return {n for n in names
                    if self.con.execute("SELECT 1 FROM packs WHERE name = ?", (n,)).fetchone() is not None}

    # -- statistics --------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        q = {
            "objects": "SELECT COUNT(*) FROM objects",
            "versions": "SELECT COUNT(*) FROM versions",
            "contents": "SELECT COUNT(*) FROM contents",
            "chunks": "SELECT COUNT(*) FROM chunks",
            "packs": "SELECT COUNT(*) FROM packs",
            "bytes_stored": "SELECT COALESCE(SUM(size), 0) FROM packs",
            "bytes_logical": "SELECT COALESCE(SUM(c.size), 0) FROM versions v JOIN contents c ON c.hash = v.content "
                             f"WHERE v.kind = '{KIND_CONTENT}' AND v.ftype = '{FTYPE_FILE}'",
            "bytes_unique": "SELECT COALESCE(SUM(size), 0) FROM contents",
        }
        with self.lock:
            return {k: self.con.execute(sql).fetchone()[0] for k, sql in q.items()}

    def pack_names(self) -> dict[str, int]:
        with self.lock:
            return dict(self.con.execute("SELECT name, size FROM packs").fetchall())
