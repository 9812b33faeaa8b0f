"""verify: re-check everything the vault claims, and say precisely what is damaged and what that costs.

    snapshot = one read transaction on the index      (concurrent batches do not disturb it)
    PRAGMA integrity_check
    for each pack the index names:   file present? BLAKE3(file) == name? trailer parses?
        for each chunk row in it:    blob header agrees, payload decompresses, BLAKE3 == chunk id
    for each content:                every chunk row present and intact, lengths add up,
                                     BLAKE3(concatenated chunks) == content hash
    for each version:                object present, content present and intact
    packs on disk the index does not name, abandoned temp packs  -> warnings (a crash leaves them)

With ``read_data=False`` the chunk and content checks use sizes only (no pack is read).
Damage is reported three ways: the chunk (pack, offset, expected vs actual hash), the contents that
use it, and the versions (path, id, time) that can no longer be restored.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard
from blake3 import blake3

from nocry.errors import VaultCorrupt
from nocry.events import path_to_json
from nocry.vault.index import ID_LEN, connect
from nocry.vault.packs import BLOB_HEADER_SIZE, PackEntry, PackFormatError, PackStore, check_blob, parse_pack

__all__ = ["VerifyReport", "DamagedChunk", "AffectedVersion", "verify_vault"]

log = logging.getLogger(__name__)

#: error lines kept per category; the structured lists keep everything
MAX_LINES = 1000


@dataclass(frozen=True, slots=True)
class DamagedChunk:
    pack: str
    offset: int
    chunk_id: bytes
    problem: str

    def to_record(self) -> dict[str, Any]:
        return {"pack": self.pack, "offset": self.offset, "chunk": self.chunk_id.hex(), "problem": self.problem}


@dataclass(frozen=True, slots=True)
class AffectedVersion:
    version_id: int
    path: bytes
    time_ns: int
    content: bytes

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"version_id": self.version_id}
        rec.update(path_to_json(self.path))
        rec.update(time_ns=self.time_ns, content=self.content.hex())
        return rec


@dataclass
class VerifyReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    read_data: bool = True
    packs_checked: int = 0
    chunks_checked: int = 0
    contents_checked: int = 0
    versions_checked: int = 0
    bytes_read: int = 0
    damaged_chunks: list[DamagedChunk] = field(default_factory=list)
    #: content hash -> why it cannot be read back
    damaged_contents: dict[bytes, str] = field(default_factory=dict)
    affected_versions: list[AffectedVersion] = field(default_factory=list)
    orphan_packs: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    _lines: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, category: str, line: str) -> None:
        n = self._lines.get(category, 0) + 1
        self._lines[category] = n
        if n <= MAX_LINES:
            self.errors.append(line)

    def finish(self) -> None:
        for category, n in self._lines.items():
            if n > MAX_LINES:
                self.errors.append(f"... and {n - MAX_LINES} more {category} errors")

    def to_record(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "read_data": self.read_data,
            "errors": self.errors,
            "warnings": self.warnings,
            "packs_checked": self.packs_checked,
            "chunks_checked": self.chunks_checked,
            "contents_checked": self.contents_checked,
            "versions_checked": self.versions_checked,
            "bytes_read": self.bytes_read,
            "damaged_chunks": [d.to_record() for d in self.damaged_chunks],
            "damaged_contents": {h.hex(): why for h, why in self.damaged_contents.items()},
            "affected_versions": [a.to_record() for a in self.affected_versions],
            "orphan_packs": self.orphan_packs,
            "temp_files": self.temp_files,
        }


def _when(time_ns: int) -> str:
    try:
        return dt.datetime.fromtimestamp(time_ns / 1e9, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (OverflowError, OSError, ValueError):
        return f"{time_ns} ns"


def _show(path: bytes) -> str:
    """A path for a one-line message: undecodable bytes as \\xNN, control characters escaped."""
    text = path.decode("utf-8", "backslashreplace")
    return "'" + "".join(c if c.isprintable() else repr(c)[1:-1] for c in text) + "'"


def verify_vault(index_path: Path, store: PackStore, *, read_data: bool = True) -> VerifyReport:
    rep = VerifyReport(read_data=read_data)
    try:
        con = connect(index_path, readonly=True)
    except sqlite3.Error as exc:
        rep.error("index", f"index: cannot open {index_path}: {exc}")
        rep.finish()
        return rep
    try:
        con.execute("BEGIN")  # one snapshot for the whole run
        _check_sqlite(con, rep)
        chunk_index, damaged_ids = _check_packs(con, store, rep, read_data)
        _check_contents(con, store, rep, read_data, chunk_index, damaged_ids)
        _check_versions(con, rep)
        con.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        # A damaged index is a finding, not a crash of the checker.
        rep.error("index", f"index: unreadable, verify stopped: {exc}")
    finally:
        con.close()
    rep.finish()
    log.info("verify done ok=%s errors=%d warnings=%d packs=%d chunks=%d contents=%d versions=%d bytes_read=%d",
             rep.ok, len(rep.errors), len(rep.warnings), rep.packs_checked, rep.chunks_checked,
             rep.contents_checked, rep.versions_checked, rep.bytes_read)
    return rep


def _check_sqlite(con: Any, rep: VerifyReport) -> None:
    rows = con.execute("PRAGMA integrity_check").fetchall()
    if rows != [("ok",)]:
        for (text,) in rows:
            for line in str(text).splitlines():
                if not line.startswith("***"):
                    rep.error("index", f"index: {line}")
    orphans = con.execute("SELECT v.id FROM versions v LEFT JOIN objects o ON o.id = v.object_id "
                          "WHERE o.id IS NULL").fetchall()
    for (vid,) in orphans:
        rep.error("index", f"index: version {vid} belongs to no object")


def _check_packs(con: Any, store: PackStore, rep: VerifyReport, read_data: bool
                 ) -> tuple[dict[bytes, tuple[str, int, int, int, int]], set[bytes]]:
    indexed = dict(con.execute("SELECT name, size FROM packs").fetchall())
    on_disk, stray = store.list_packs()
    for path in stray:
        rep.warnings.append(f"unexpected file in the packs directory: {path}")
    for name in sorted(set(on_disk) - set(indexed)):
        rep.orphan_packs.append(name)
        rep.warnings.append(f"orphan pack {name} ({on_disk[name]} bytes): not in the index (left by an "
                            "interrupted batch or prune); prune removes it")
    for path, abandoned in store.temp_files():
        if abandoned:
            rep.temp_files.append(str(path))
            rep.warnings.append(f"leftover temp pack {path} from an interrupted writer; the next open or prune "
                                "removes it")

    chunk_index: dict[bytes, tuple[str, int, int, int, int]] = {}
    damaged_ids: set[bytes] = set()
    referenced_packs = [p for (p,) in con.execute("SELECT DISTINCT pack FROM chunks")]
    dctx = zstandard.ZstdDecompressor()
    for name in sorted(set(indexed) | set(referenced_packs)):
        rows = con.execute("SELECT id, offset, stored_len, raw_len, compressed FROM chunks WHERE pack = ? "
                           "ORDER BY offset", (name,)).fetchall()
        for cid, off, stored, raw, comp in rows:
            chunk_index[cid] = (name, off, stored, raw, comp)
        rep.packs_checked += 1
        rep.chunks_checked += len(rows)
        damaged_here: list[DamagedChunk] = []
        if name not in indexed:
            rep.error("index", f"index: {len(rows)} chunks point to pack {name}, which the packs table lacks")
        if name not in on_disk:
            rep.error("pack", f"pack {name} is missing ({len(rows)} indexed chunks lost)")
            damaged_here = [DamagedChunk(name, off, cid, "pack file missing") for cid, off, *_ in rows]
        elif read_data:
            try:
                data = store.path(name).read_bytes()
            except OSError as exc:
                rep.error("pack", f"pack {name}: cannot read: {exc}")
                data = b""
            rep.bytes_read += len(data)
            if name in indexed and len(data) != indexed[name]:
                rep.error("pack", f"pack {name}: {len(data)} bytes on disk, the index recorded {indexed[name]}")
            mv = memoryview(data)
            for cid, off, stored, raw, comp in rows:
                blob = mv[off : off + BLOB_HEADER_SIZE + stored]
                _, problem = check_blob(blob, PackEntry(cid, off, stored, raw, comp), dctx)
                if problem is not None:
                    damaged_here.append(DamagedChunk(name, off, cid, problem))
            structure = ""
            try:
                parse_pack(data)
            except PackFormatError as exc:
                structure = f"; structure: {exc}"
            if blake3(data).hexdigest() != name:
                rep.error("pack", f"pack {name}: contents do not hash to its name ({len(damaged_here)} of "
                                  f"{len(rows)} indexed chunks damaged{structure})")
            elif structure:
                rep.error("pack", f"pack {name}{structure}")
        else:
            size = on_disk[name]
            if name in indexed and size != indexed[name]:
                rep.error("pack", f"pack {name}: {size} bytes on disk, the index recorded {indexed[name]}")
            for cid, off, stored, *_ in rows:
                if off + BLOB_HEADER_SIZE + stored > size:
                    damaged_here.append(DamagedChunk(name, off, cid, f"beyond the end of the pack ({size} bytes)"))
        for d in damaged_here:
            damaged_ids.add(d.chunk_id)
            rep.damaged_chunks.append(d)
            rep.error("chunk", f"pack {d.pack} offset {d.offset}: chunk {d.chunk_id.hex()} damaged: {d.problem}")
    return chunk_index, damaged_ids


def _check_contents(con: Any, store: PackStore, rep: VerifyReport, read_data: bool,
                    chunk_index: dict[bytes, tuple[str, int, int, int, int]], damaged_ids: set[bytes]) -> None:
    with store.reader() as reader:
        for content_hash, size, blob in con.execute("SELECT hash, size, chunk_ids FROM contents"):
            rep.contents_checked += 1
            why = _content_problem(content_hash, size, blob, reader, read_data, chunk_index, damaged_ids, rep)
            if why is not None:
                rep.damaged_contents[content_hash] = why
                rep.error("content", f"content {content_hash.hex()}: {why}")


def _content_problem(content_hash: bytes, size: int, blob: bytes, reader: Any, read_data: bool,
                     chunk_index: dict[bytes, tuple[str, int, int, int, int]], damaged_ids: set[bytes],
                     rep: VerifyReport) -> str | None:
    if len(blob) % ID_LEN:
        return f"chunk list of {len(blob)} bytes is malformed"
    ids = [blob[i : i + ID_LEN] for i in range(0, len(blob), ID_LEN)]
    missing = [c for c in ids if c not in chunk_index]
    if missing:
        return f"{len(missing)} of {len(ids)} chunks missing from the index (first {missing[0].hex()})"
    bad = [c for c in ids if c in damaged_ids]
    if bad:
        where = chunk_index[bad[0]]
        return f"{len(bad)} of {len(ids)} chunks damaged (first {bad[0].hex()} in pack {where[0]} offset {where[1]})"
    total = sum(chunk_index[c][3] for c in ids)
    if total != size:
        return f"chunks add up to {total} bytes, the content is {size}"
    if not read_data:
        return None
    whole = blake3()
    for cid in ids:
        pack, off, stored, raw, comp = chunk_index[cid]
        try:
            data = reader.read_blob(pack, PackEntry(cid, off, stored, raw, comp))
        except (VaultCorrupt, OSError) as exc:  # changed under us since the pack pass
            return f"chunk {cid.hex()} unreadable: {exc}"
        rep.bytes_read += len(data)
        whole.update(data)
    if whole.digest() != content_hash:
        return f"chunks concatenate to blake3 {whole.hexdigest()}, not the content hash"
    return None


def _check_versions(con: Any, rep: VerifyReport) -> None:
    known = {h for (h,) in con.execute("SELECT hash FROM contents")}
    for vid, path, time_ns, content in con.execute(
            "SELECT v.id, o.path, v.time_ns, v.content FROM versions v JOIN objects o ON o.id = v.object_id "
            "ORDER BY o.path, v.time_ns, v.id"):
        rep.versions_checked += 1
        if content is None:
            continue
        why = rep.damaged_contents.get(content)
        if why is None and content not in known:
            why = "content not in the index"
            rep.damaged_contents[content] = why
            rep.error("content", f"content {content.hex()}: {why}")
        if why is not None:
            rep.affected_versions.append(AffectedVersion(vid, path, time_ns, content))
            rep.error("version", f"version {vid} of {_show(path)} at {_when(time_ns)} cannot be restored: "
                                 f"content {content.hex()}: {why}")
