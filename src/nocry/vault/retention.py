"""Retention: forget thins versions (index only), prune reclaims the pack space nothing needs.

    forget(now):                                         # one transaction, no file touched
        per object, keep:  the newest version (always, whatever its age)
                           every version at or after now - keep_all_days
                           the newest version of each UTC day back to now - keep_daily_days
                           with hold_after_ns (an open incident's start): the newest version at or
                           before it and every version after it
        delete the other versions, then every content no version references
    prune():
        referenced = every chunk id in contents
        pack without a referenced chunk         -> drop its rows, delete the file
        pack whose referenced blobs are < 50 %  -> copy those blobs (verified) into a new pack,
                                                   fsync it, then point the rows at it, then delete
        orphan packs and abandoned temp packs   -> delete

Both run under the vault's exclusive lock (no batch open anywhere). Prune commits its index change
with ``synchronous=FULL`` before deleting any file: the index must never name a pack that a power
loss could leave deleted while the commit that stopped naming it is lost.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from nocry.config import RetentionConfig, VaultConfig
from nocry.vault.index import Index, split_chunk_ids
from nocry.vault.packs import BLOB_HEADER_SIZE, PackEntry, PackStore, PackWriter, check_blob

__all__ = ["DAY_NS", "ForgetReport", "PruneReport", "versions_to_keep", "forget", "prune"]

log = logging.getLogger(__name__)

DAY_NS = 86_400 * 1_000_000_000


@dataclass
class ForgetReport:
    versions_before: int = 0
    versions_dropped: int = 0
    contents_dropped: int = 0
    objects: int = 0
    dropped_ids: list[int] = field(default_factory=list, repr=False)

    def to_record(self) -> dict[str, Any]:
        rec = asdict(self)
        del rec["dropped_ids"]
        return rec


@dataclass
class PruneReport:
    packs_before: int = 0
    packs_after: int = 0
    packs_deleted: int = 0
    packs_repacked: int = 0
    packs_written: int = 0
    chunks_deleted: int = 0
    chunks_moved: int = 0
    orphan_packs_removed: int = 0
    temp_files_removed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    #: packs left alone because a chunk in them is damaged (run verify)
    errors: list[str] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return self.bytes_before - self.bytes_after

    def to_record(self) -> dict[str, Any]:
        rec = asdict(self)
        rec["bytes_freed"] = self.bytes_freed
        return rec


def versions_to_keep(versions: Iterable[tuple[int, int]], retention: RetentionConfig, now_ns: int,
                     hold_after_ns: int | None = None) -> set[int]:
    """The ids to keep among one object's versions, given as ``(id, time_ns)``. Pure."""
    ordered = sorted(versions, key=lambda v: (v[1], v[0]))
    if not ordered:
        return set()
    keep = {ordered[-1][0]}  # the newest version of an object is never dropped
    keep_all_from = now_ns - retention.keep_all_days * DAY_NS
    daily_from = now_ns - retention.keep_daily_days * DAY_NS
    newest_of_day: dict[int, int] = {}
    for vid, t in ordered:
        if t >= keep_all_from:
            keep.add(vid)
        elif t >= daily_from:
            newest_of_day[t // DAY_NS] = vid  # ascending order: the last one of a day wins
    keep.update(newest_of_day.values())
    if hold_after_ns is not None:
        before = [vid for vid, t in ordered if t <= hold_after_ns]
        if before:
            keep.add(before[-1])  # what the incident's restore will go back to
        keep.update(vid for vid, t in ordered if t > hold_after_ns)
    return keep


def forget(index: Index, retention: RetentionConfig, now_ns: int, *, hold_after_ns: int | None = None) -> ForgetReport:
    rep = ForgetReport()
    drop: list[int] = []
    with index.lock:
        con = index.con
        current: int | None = None
        group: list[tuple[int, int]] = []

        def close_group() -> None:
            if group:
                rep.objects += 1
                keep = versions_to_keep(group, retention, now_ns, hold_after_ns)
                drop.extend(vid for vid, _ in group if vid not in keep)

        scan = "SELECT object_id, id, time_ns FROM versions ORDER BY object_id, time_ns, id"
        for object_id, vid, t in con.execute(scan):
            rep.versions_before += 1
            if object_id != current:
                close_group()
                current, group = object_id, []
            group.append((vid, t))
        close_group()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany("DELETE FROM versions WHERE id = ?", ((vid,) for vid in drop))
            cur = con.execute("DELETE FROM contents WHERE NOT EXISTS "
                              "(SELECT 1 FROM versions v WHERE v.content = contents.hash)")
            rep.contents_dropped = cur.rowcount
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
    rep.versions_dropped = len(drop)
    rep.dropped_ids = drop
    log.info("forget done objects=%d versions_before=%d versions_dropped=%d contents_dropped=%d",
             rep.objects, rep.versions_before, rep.versions_dropped, rep.contents_dropped)
    return rep


_Row = tuple[bytes, int, int, int, int]  # id, offset, stored_len, raw_len, compressed


def prune(index: Index, store: PackStore, cfg: VaultConfig) -> PruneReport:
    rep = PruneReport()
    # Under the exclusive lock no batch is open anywhere, so every temp pack is abandoned.
    rep.temp_files_removed = store.clean_temp(min_age_s=0)
    target = cfg.pack_target_mib << 20
    with index.lock:
        con = index.con
        referenced: set[bytes] = set()
        for (blob,) in con.execute("SELECT chunk_ids FROM contents"):
            referenced.update(split_chunk_ids(blob))
        packs = dict(con.execute("SELECT name, size FROM packs").fetchall())
        rows_by_pack: dict[str, list[_Row]] = defaultdict(list)
        for cid, pack, off, stored, raw, comp in con.execute(
                "SELECT id, pack, offset, stored_len, raw_len, compressed FROM chunks"):
            rows_by_pack[pack].append((cid, off, stored, raw, comp))
        on_disk, _ = store.list_packs()
        rep.packs_before = len(packs)
        rep.bytes_before = sum(on_disk.values())

        delete: list[str] = []
        repack: list[tuple[str, list[_Row]]] = []
        for name in sorted(set(packs) | set(rows_by_pack)):
            live = [r for r in rows_by_pack.get(name, []) if r[0] in referenced]
            if not live:
                delete.append(name)
            elif 2 * sum(BLOB_HEADER_SIZE + r[2] for r in live) < packs.get(name, 0):
                repack.append((name, live))

        new_packs: list[tuple[str, int]] = []
        moved: list[tuple[str, int, bytes]] = []  # new pack, new offset, chunk id
        writer: PackWriter | None = None

        def finish() -> None:
            nonlocal writer
            assert writer is not None
            name, size = writer.finish()
            new_packs.append((name, size))
            moved.extend((name, e.offset, e.chunk_id) for e in writer.entries)
            writer = None

        repacked: list[str] = []
        try:
            for name, live in repack:
                try:
                    data = store.path(name).read_bytes()
                except OSError as exc:
                    rep.errors.append(f"pack {name}: cannot read ({exc}); left alone")
                    continue
                staged = []
                for cid, off, stored, raw, comp in live:
                    blob = data[off : off + BLOB_HEADER_SIZE + stored]
                    # Never copy damage into a fresh pack and then delete the evidence.
                    _, problem = check_blob(blob, PackEntry(cid, off, stored, raw, comp))
                    if problem is not None:
                        rep.errors.append(f"pack {name} offset {off}: chunk {cid.hex()} damaged ({problem}); "
                                          "pack left alone, run verify")
                        break
                    staged.append((cid, raw, blob[BLOB_HEADER_SIZE:], comp))
                else:
                    for cid, raw, payload, comp in staged:
                        if writer is None:
                            writer = store.writer()
                        writer.add(cid, raw, payload, comp)
                        if writer.size >= target:
                            finish()
                    repacked.append(name)
            if writer is not None:
                finish()
        except BaseException:
            if writer is not None:
                writer.discard()
            for name, _ in new_packs:
                store.remove(name)  # never indexed
            raise

        gone = delete + repacked
        # FULL: this commit must be on disk before the first unlink below.
        con.execute("PRAGMA synchronous=FULL")
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                now = time.time_ns()
                con.executemany("INSERT INTO packs(name, size, created_ns) VALUES (?, ?, ?)",
                                [(n, s, now) for n, s in new_packs])
                con.executemany("UPDATE chunks SET pack = ?, offset = ? WHERE id = ?", moved)
                for name in gone:
                    rep.chunks_deleted += con.execute("DELETE FROM chunks WHERE pack = ?", (name,)).rowcount
                    con.execute("DELETE FROM packs WHERE name = ?", (name,))
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                for name, _ in new_packs:
                    store.remove(name)
                raise
        finally:
            con.execute("PRAGMA synchronous=NORMAL")
        packs_after = dict(con.execute("SELECT name, size FROM packs").fetchall())

    for name in gone:
        store.remove(name)
    rep.packs_deleted = len(delete)
    rep.packs_repacked = len(repacked)
    rep.packs_written = len(new_packs)
    rep.chunks_moved = len(moved)
    on_disk, _ = store.list_packs()
    for name in set(on_disk) - set(packs_after):
        if store.remove(name):
            rep.orphan_packs_removed += 1
            log.info("removed orphan pack name=%s", name)
    on_disk, _ = store.list_packs()
    rep.packs_after = len(packs_after)
    rep.bytes_after = sum(on_disk.values())
    log.info("prune done packs_deleted=%d packs_repacked=%d packs_written=%d orphans=%d bytes_freed=%d errors=%d",
             rep.packs_deleted, rep.packs_repacked, rep.packs_written, rep.orphan_packs_removed, rep.bytes_freed,
             len(rep.errors))
    return rep

