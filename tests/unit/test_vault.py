"""Vault tests: round trips, dedup, queries, verify's findings, crashes, disk-full, retention, concurrency.

Everything runs in temp directories; the disk-full test mounts a small tmpfs (root only). The crash
and concurrency tests run writers as subprocesses (the script is WRITER below) and kill them.
"""

from __future__ import annotations

import dataclasses
import io
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from blake3 import blake3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nocry.config import RetentionConfig, VaultConfig
from nocry.errors import VaultCorrupt, VaultError, VaultFull, VaultLocked
from nocry.events import Subject
from nocry.vault import (
    FTYPE_FILE,
    KIND_CONTENT,
    KIND_META,
    KIND_TOMBSTONE,
    Vault,
    VersionRecord,
)
from nocry.vault import store as store_mod
from nocry.vault.packs import BLOB_HEADER_SIZE, parse_pack
from nocry.vault.retention import DAY_NS, versions_to_keep

MIB = 1 << 20
NOW = 1_700_000_000 * 10**9  # a fixed "now" (2023-11-14T22:13:20Z)


# -- helpers -----------------------------------------------------------------------------------


def mkvault(tmp_path: Path, name: str = "vault", **cfg: int) -> Vault:
    cfg.setdefault("reserve_mib", 0)
    return Vault(tmp_path / name, VaultConfig(**cfg), create=True)


def rec(path: bytes, t: int, content: bytes | None = None, size: int = 0, kind: str = KIND_CONTENT,
        **kw: object) -> VersionRecord:
    ftype = "" if kind == KIND_TOMBSTONE else kw.pop("ftype", FTYPE_FILE)
    return VersionRecord(path=path, time_ns=t, kind=kind, ftype=ftype, size=size, content=content,
                         **kw)  # type: ignore[arg-type]


def put(v: Vault, path: bytes, data: bytes, t: int) -> tuple[int, bytes]:
    with v.batch() as b:
        h, n = b.put_bytes(data)
        b.add(rec(path, t, h, n))
    return b.committed_ids[0], h


def read(v: Vault, h: bytes) -> bytes:
    return b"".join(v.read_content(h))


def db(v: Vault) -> sqlite3.Connection:
    return sqlite3.connect(v.root / "index.sqlite", isolation_level=None)


def pack_files(v: Vault) -> list[Path]:
    return sorted(p for p in (v.root / "packs").rglob("*") if p.is_file())


def chunk_row(v: Vault, h: bytes, i: int = 0) -> tuple[str, int, int]:
    cid = v.content_chunks(h)[i][0]
    with db(v) as con:
        pack, off, stored = con.execute("SELECT pack, offset, stored_len FROM chunks WHERE id = ?", (cid,)).fetchone()
    return pack, off, stored


class Trickle(io.RawIOBase):
    """A stream that returns short reads of random sizes (as pipes and sockets do)."""

    def __init__(self, data: bytes, seed: int):
        self._data = memoryview(data)
        self._pos = 0
        self._rng = random.Random(seed)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def, override]
        n = min(len(b), self._rng.randint(1, 300_000), len(self._data) - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


# -- round trips -------------------------------------------------------------------------------

_AVG = 64 * 1024
_MAX = 4 * _AVG
_BLOCK = store_mod.READ_BLOCK
_SIZES = [0, 1, _AVG // 4 - 1, _AVG // 4, _AVG, _MAX - 1, _MAX, _MAX + 1, 3 * _MAX,
          _BLOCK - 1, _BLOCK, _BLOCK + 1, _BLOCK + _MAX, 2 * _BLOCK + 12345]


def test_round_trip_many_sizes(tmp_path: Path) -> None:
    v = mkvault(tmp_path)
    rng = random.Random(1)
    blobs = {n: rng.randbytes(n) for n in _SIZES}
    blobs[-1] = bytes(3 * _MAX + 7)  # zeros
    blobs[-2] = b"hello world\n" * 50_000  # compressible
    with v.batch() as b:
        hashes = {}
        for n, data in blobs.items():
            h, size = b.put_stream(io.BytesIO(data))
            assert (h, size) == (blake3(data).digest(), len(data))
            assert b.put_bytes(data) == (h, size)
            hashes[n] = h
            b.add(rec(b"/t/%d" % n, NOW, h, size))
    assert len(b.committed_ids) == len(blobs)
    for n, data in blobs.items():
        assert read(v, hashes[n]) == data
        chunks = v.content_chunks(hashes[n])
        assert sum(length for _, length in chunks) == len(data)
        assert all(length <= _MAX for _, length in chunks)
    assert v.content_chunks(hashes[0]) == []
    assert v.verify().ok
    # A trickling stream gives the same chunks: boundaries do not depend on read sizes.
    with v.batch() as b:
        h, _ = b.put_stream(Trickle(blobs[2 * _BLOCK + 12345], seed=5))  # type: ignore[arg-type]
    assert b.chunks_new == 0 and h == hashes[2 * _BLOCK + 12345]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=40_000) | st.integers(0, 60_000).map(lambda n: random.Random(n).randbytes(n)),
       block=st.integers(4096, 20_000), seed=st.integers(0, 1000))
def test_chunking_independent_of_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes,
                                        block: int, seed: int) -> None:
    monkeypatch.setattr(store_mod, "READ_BLOCK", block)
    root = tmp_path / f"h{seed}-{block}-{len(data)}"
    v = Vault(root, VaultConfig(chunk_avg_kib=1, reserve_mib=0), create=True)
    try:
        with v.batch() as b:
            h1, _ = b.put_bytes(data)
            h2, _ = b.put_stream(Trickle(data, seed))  # type: ignore[arg-type]
            assert h1 == h2 == blake3(data).digest()
        ids = [c for c, _ in v.content_chunks(h1)]
        assert ids == [blake3(c.data).digest() for c in v._cdc.cut_buf(data)]
        assert read(v, h1) == data
    finally:
        v.close()


def test_sparse_1gib_file(tmp_path: Path) -> None:
    v = mkvault(tmp_path)
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:
        f.truncate(1 << 30)
        f.seek((1 << 29) + 4321)
        f.write(b"a little data in the middle")
    t0 = time.monotonic()
    with v.batch() as b, open(sparse, "rb") as f:
        h, size = b.put_stream(f, size_hint=1 << 30)
        b.add(rec(b"/big", NOW, h, size))
    elapsed = time.monotonic() - t0
    assert size == 1 << 30
    assert elapsed < 15, f"1 GiB sparse capture took {elapsed:.1f} s"
    stats = v.stats()
    assert stats.bytes_stored < 256 * 1024, stats  # zero chunks dedup and compress to nothing
    chunks = v.content_chunks(h)
    assert sum(n for _, n in chunks) == 1 << 30
    assert len({c for c, _ in chunks}) <= 6
    assert v.verify(read_data=False).ok


# -- dedup -------------------------------------------------------------------------------------


def test_same_content_twice_is_stored_once(tmp_path: Path) -> None:
    v = mkvault(tmp_path)
    data = random.Random(2).randbytes(10 * MIB)
    _, h = put(v, b"/one", data, NOW)
    before = v.stats()
    with v.batch() as b:
        assert b.put_stream(io.BytesIO(data)) == (h, len(data))
        b.add(rec(b"/two", NOW + 1, h, len(data)))
    assert b.chunks_new == 0
    after = v.stats()
    assert (after.packs, after.bytes_stored, after.contents, after.chunks) == (
        before.packs, before.bytes_stored, before.contents, before.chunks)
    assert after.bytes_logical == 2 * len(data) and after.bytes_unique == len(data)


def test_one_changed_byte_stores_about_one_chunk(tmp_path: Path) -> None:
    v = mkvault(tmp_path)
    data = bytearray(random.Random(3).randbytes(10 * MIB))
    put(v, b"/f", bytes(data), NOW)
    stored = v.stats().bytes_stored
    data[5 * MIB] ^= 0xFF
    with v.batch() as b:
        h, _ = b.put_bytes(bytes(data))
        b.add(rec(b"/f", NOW + 1, h, len(data)))
    assert 1 <= b.chunks_new <= 2
    assert v.stats().bytes_stored - stored < 2 * _MAX + 4096
    assert read(v, h) == data


# -- queries -----------------------------------------------------------------------------------


def test_state_at_ties_tombstones_and_sibling_prefixes(tmp_path: Path) -> None:
    v = mkvault(tmp_path)
    with v.batch() as b:
        h1, _ = b.put_bytes(b"one")
        h2, _ = b.put_bytes(b"two")
        b.add(rec(b"/a/b", 10, h1, 3))              # 1
        b.add(rec(b"/a/b", 20, h2, 3))              # 2: same time as 3, lower id
        b.add(rec(b"/a/b", 20, h1, 3))              # 3: wins the tie
        b.add(rec(b"/a/bc", 5, h2, 3))              # 4: sibling, not under /a/b
        b.add(rec(b"/a/b/c", 15, h1, 3))            # 5
        b.add(rec(b"/a/b/c", 25, kind=KIND_TOMBSTONE))  # 6: deleted
        b.add(rec(b"/a/b!", 1, h1, 3))              # 7: '!' sorts before '/': not under /a/b
        b.add(rec(b"/a/b/d", 30, h2, 3))            # 8: only exists later
        b.add(rec(b"/a", 1, None, ftype="dir"))     # 9
    ids = b.committed_ids
    assert ids == sorted(ids)

    def state(prefix: bytes, t: int) -> list[tuple[bytes, int]]:
        return [(r.path, r.id) for r in v.state_at(prefix, t)]

    assert state(b"/a/b", 20) == [(b"/a/b", ids[2]), (b"/a/b/c", ids[4])]
    assert state(b"/a/b/", 20) == state(b"/a/b", 20)
    assert state(b"/a/b", 19) == [(b"/a/b", ids[0]), (b"/a/b/c", ids[4])]
    assert state(b"/a/b", 26) == [(b"/a/b", ids[2]), (b"/a/b/c", ids[5])]
    assert [r.kind for r in v.state_at(b"/a/b/c", 26)] == [KIND_TOMBSTONE]
    assert state(b"/a/b", 9) == []
    assert state(b"/a/bc", 100) == [(b"/a/bc", ids[3])]
    everything = state(b"/", 100)
    assert [p for p, _ in everything] == sorted([b"/a", b"/a/b", b"/a/b!", b"/a/b/c", b"/a/b/d", b"/a/bc"])
    assert [(r.path, r.id) for r in v.latest_under(b"/a/b")] == [(b"/a/b", ids[2]), (b"/a/b/c", ids[5]),
                                                                  (b"/a/b/d", ids[7])]
    assert [(r.path, r.id) for r in v.live_under(b"/a/b")] == [(b"/a/b", ids[2]), (b"/a/b/d", ids[7])]
    assert list(v.paths_under(b"/a/b")) == [b"/a/b", b"/a/b/c", b"/a/b/d"]
    assert v.latest(b"/a/b").id == ids[2]  # type: ignore[union-attr]
    assert [r.id for r in v.history(b"/a/b")] == [ids[2], ids[1], ids[0]]
    assert v.latest(b"/nope") is None and v.history(b"/nope") == [] and v.get_version(10**9) is None


def test_state_at_pages_through_many_objects(tmp_path: Path) -> None:
    v = mkvault(tmp_path)
    paths = sorted(b"/p/%05d" % i for i in range(4500))
    with v.batch() as b:
        for i, p in enumerate(paths):
            b.add(rec(p, i, None, ftype="dir"))
    assert [r.path for r in v.state_at(b"/p", 10**9)] == paths
    assert [r.path for r in v.state_at(b"/p", 99)] == paths[:100]
    assert list(v.paths_under(b"/")) == paths


def test_live_under_pages_past_runs_of_dead_paths(tmp_path: Path) -> None:
    # a tree that churns: whole pages of paths whose newest version is a tombstone, between and
    # around the live ones; the rescan reads only the live ones, and must not stop at a dead page
    v = mkvault(tmp_path)
    paths = sorted(b"/p/%05d" % i for i in range(9000))
    live = [p for i, p in enumerate(paths) if 2500 <= i < 2503 or i % 997 == 0 or i == 8999]
    with v.batch() as b:
        for i, p in enumerate(paths):
            b.add(rec(p, i, None, ftype="dir"))
            if p not in live:
                b.add(rec(p, 10**6 + i, kind=KIND_TOMBSTONE))
    assert [r.path for r in v.live_under(b"/p")] == live
    assert [r.path for r in v.latest_under(b"/p") if r.exists] == live
    assert len(list(v.latest_under(b"/p"))) == len(paths)


def test_non_utf8_paths_and_full_records(tmp_path: Path) -> None:
    v = mkvault(tmp_path)
    odd = b"/d\xff\xfe/new\nline\x00-ish \xc3("
    subject = Subject(pid=42, start_time=7, exe=b"/usr/bin/\xffenc", comm="enc", uid=1000, ppid=1, sid=42)
    full = VersionRecord(
        path=odd, time_ns=NOW, kind=KIND_CONTENT, ftype=FTYPE_FILE, mode=0o100644, uid=1000, gid=1000, size=5,
        mtime_ns=NOW - 1, ctime_ns=NOW - 2, ino=(1 << 64) - 1, dev=(1 << 63) + 5, nlink=2,
        xattrs=((b"user.a", b"\x00\xff"), (b"security.selinux", b"x" * 300)), renamed_from=b"/old\n\xff",
        reason="event", subject=subject)
    with v.batch() as b:
        h, n = b.put_bytes(b"hello")
        b.add(dataclasses.replace(full, content=h))
        b.add(rec(b"/old\n\xff", NOW, kind=KIND_TOMBSTONE, renamed_to=odd))
        b.add(rec(b"/l", NOW, None, ftype="symlink", link_target=b"../\xff"))
        b.add(rec(odd, NOW + 1, h, 5, kind=KIND_META, mode=0o100600))
    got = v.get_version(b.committed_ids[0])
    assert got is not None
    assert got == dataclasses.replace(full, content=h, id=b.committed_ids[0])
    assert [r.id for r in v.history(odd)] == [b.committed_ids[3], b.committed_ids[0]]
    assert v.latest(b"/old\n\xff").renamed_to == odd  # type: ignore[union-attr]
    assert v.latest(b"/l").link_target == b"../\xff"  # type: ignore[union-attr]
    assert [r.path for r in v.state_at(b"/d\xff\xfe", NOW + 5)] == [odd]
    assert v.get_version(b.committed_ids[0]).to_record()["path_b64"]  # type: ignore[union-attr]


def test_add_rejects_unknown_content_and_bad_records(tmp_path: Path) -> None:
    v = mkvault(tmp_path)
    with v.batch() as b:
        with pytest.raises(VaultError, match="not put in this batch"):
            b.add(rec(b"/x", 1, b"\x01" * 32, 1))
        with pytest.raises(VaultError, match="kind"):
            b.add(rec(b"/x", 1, kind="bogus"))
        with pytest.raises(VaultError, match="path"):
            b.add(rec("/str", 1))  # type: ignore[arg-type]
    assert b.committed_ids == [] and v.stats().versions == 0


# -- opening -----------------------------------------------------------------------------------


def test_open_create_readonly_and_errors(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="no vault"):
        Vault(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file").write_text("x")
    with pytest.raises(VaultError, match="not a nocry vault"):
        Vault(tmp_path / "junk")
    with pytest.raises(VaultError, match="not empty"):
        Vault(tmp_path / "junk", create=True)
    v = Vault(tmp_path / "deep" / "vault", VaultConfig(reserve_mib=2), create=True)
    assert (v.root.stat().st_mode & 0o777) == 0o700
    assert (v.root / "reserve").stat().st_blocks * 512 >= 2 * MIB
    _, h = put(v, b"/f", b"data", NOW)
    v.close()
    v = Vault(tmp_path / "deep" / "vault", create=True)  # existing: just opens
    assert v.latest(b"/f") is not None
    ro = Vault(tmp_path / "deep" / "vault", readonly=True)
    assert read(ro, h) == b"data"
    with pytest.raises(VaultError, match="read-only"):
        ro.batch()
    ro.close()
    (v.root / "nocry-vault").write_text('{"format": "nocry-vault", "version": 99}')
    with pytest.raises(VaultError, match="version 99"):
        Vault(v.root)


def test_reserve_release_and_restore(tmp_path: Path) -> None:
    v = mkvault(tmp_path, reserve_mib=3, min_free_mib=1)
    reserve = v.root / "reserve"
    assert reserve.stat().st_size == 3 * MIB
    assert v.free_bytes() > 0
    assert v.release_reserve() >= 3 * MIB and not reserve.exists()
    assert v.release_reserve() == 0
    assert v.restore_reserve() is True and reserve.stat().st_size == 3 * MIB


# -- verify ------------------------------------------------------------------------------------


def _damage_setup(tmp_path: Path) -> tuple[Vault, dict[bytes, bytes], dict[bytes, int]]:
    v = mkvault(tmp_path, pack_target_mib=1)
    rng = random.Random(4)
    data = {b"/docs/a\xff": rng.randbytes(700_000), b"/docs/b": rng.randbytes(700_000), b"/docs/c": b"tiny"}
    hashes, ids = {}, {}
    for p, d in data.items():
        ids[p], hashes[p] = put(v, p, d, NOW)
    assert v.verify().ok
    return v, hashes, ids


def test_verify_flipped_byte(tmp_path: Path) -> None:
    v, hashes, ids = _damage_setup(tmp_path)
    pack, off, stored = chunk_row(v, hashes[b"/docs/a\xff"], 1)
    path = v.root / "packs" / pack[:2] / pack
    raw = bytearray(path.read_bytes())
    raw[off + BLOB_HEADER_SIZE + stored // 2] ^= 0x01
    path.write_bytes(raw)
    rep = v.verify()
    assert not rep.ok
    assert [(d.pack, d.offset) for d in rep.damaged_chunks] == [(pack, off)]
    assert any(f"pack {pack} offset {off}" in e and "expected blake3" in e for e in rep.errors)
    assert list(rep.damaged_contents) == [hashes[b"/docs/a\xff"]]
    assert [(a.path, a.version_id) for a in rep.affected_versions] == [(b"/docs/a\xff", ids[b"/docs/a\xff"])]
    vid = ids[b"/docs/a\xff"]
    assert any("/docs/a\\xff" in e and f"version {vid} " in e for e in rep.errors)
    assert rep.to_record()["affected_versions"][0]["path_b64"]
    with pytest.raises(VaultCorrupt, match=f"pack {pack} offset {off}"):
        read(v, hashes[b"/docs/a\xff"])
    assert read(v, hashes[b"/docs/b"])  # the rest is intact


def test_verify_truncated_pack(tmp_path: Path) -> None:
    v, hashes, ids = _damage_setup(tmp_path)
    pack, off, _ = chunk_row(v, hashes[b"/docs/b"], 0)
    path = v.root / "packs" / pack[:2] / pack
    with open(path, "r+b") as f:
        f.truncate(off + 10)
    for read_data in (True, False):
        rep = v.verify(read_data=read_data)
        assert not rep.ok
        assert b"/docs/b" in {a.path for a in rep.affected_versions}
        assert any("truncated" in d.problem or "beyond the end" in d.problem for d in rep.damaged_chunks)


def test_verify_deleted_pack(tmp_path: Path) -> None:
    v, hashes, ids = _damage_setup(tmp_path)
    pack, _, _ = chunk_row(v, hashes[b"/docs/c"], 0)
    (v.root / "packs" / pack[:2] / pack).unlink()
    rep = v.verify(read_data=False)
    assert not rep.ok
    assert any(f"pack {pack} is missing" in e for e in rep.errors)
    assert [a.path for a in rep.affected_versions] == [b"/docs/c"]
    with pytest.raises(VaultCorrupt, match="missing"):
        read(v, hashes[b"/docs/c"])


def test_verify_missing_chunk_row(tmp_path: Path) -> None:
    v, hashes, ids = _damage_setup(tmp_path)
    cid = v.content_chunks(hashes[b"/docs/b"])[2][0]
    with db(v) as con:
        con.execute("DELETE FROM chunks WHERE id = ?", (cid,))
    rep = v.verify()
    assert not rep.ok
    assert any("missing from the index" in e and hashes[b"/docs/b"].hex() in e for e in rep.errors)
    assert [(a.path, a.version_id) for a in rep.affected_versions] == [(b"/docs/b", ids[b"/docs/b"])]
    assert any("'/docs/b'" in e for e in rep.errors)
    with pytest.raises(VaultCorrupt, match=cid.hex()):
        read(v, hashes[b"/docs/b"])


def test_verify_warns_on_orphans_and_packs_are_self_describing(tmp_path: Path) -> None:
    v, hashes, _ = _damage_setup(tmp_path)
    with db(v) as con:
        rows = {(p, cid, off, s, r, c) for cid, p, off, s, r, c in con.execute("SELECT * FROM chunks")}
    rebuilt = set()
    for path in pack_files(v):
        data = path.read_bytes()
        assert blake3(data).hexdigest() == path.name
        _, entries = parse_pack(data)
        rebuilt |= {(path.name, e.chunk_id, e.offset, e.stored_len, e.raw_len, e.compression) for e in entries}
    assert rebuilt == rows  # the chunk table could be rebuilt from the packs alone
    orphan = v.root / "packs" / "ab" / ("ab" + "0" * 62)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"x")
    stale = v.root / "tmp" / "1-dead.tmp"
    stale.write_bytes(b"partial")
    os.utime(stale, (time.time() - 60, time.time() - 60))
    rep = v.verify()
    assert rep.ok and any("orphan pack" in w for w in rep.warnings) and any("temp pack" in w for w in rep.warnings)
    assert v.stats().orphan_packs == 1
    v.close()
    Vault(v.root).close()  # opening cleans abandoned temp files
    assert not stale.exists()


# -- abort, crash, disk full -------------------------------------------------------------------


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    v = mkvault(tmp_path, pack_target_mib=1)
    with pytest.raises(RuntimeError):
        with v.batch() as b:
            h, n = b.put_bytes(random.Random(5).randbytes(3 * MIB))  # rolls over into a second pack
            b.add(rec(b"/x", NOW, h, n))
            assert len(pack_files(v)) >= 1
            raise RuntimeError("capture failed")
    assert b.state == "aborted"
    assert pack_files(v) == [] and list((v.root / "tmp").iterdir()) == []
    s = v.stats()
    assert (s.versions, s.contents, s.chunks, s.packs, s.objects) == (0, 0, 0, 0, 0)
    assert not v.has_content(h)
    with pytest.raises(VaultError, match="aborted"):
        b.put_bytes(b"late")
    # An empty batch commits and writes no pack.
    with v.batch() as b:
        b.add(rec(b"/dir", NOW, None, ftype="dir"))
    assert pack_files(v) == [] and len(b.committed_ids) == 1


WRITER = r"""
import random, sys, time
from pathlib import Path
from nocry.config import VaultConfig
from nocry.vault import Vault, VersionRecord
root, seed, batches = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
shared = random.Random(0).randbytes(100_000)   # the same in every writer: racing dedup
v = Vault(root, VaultConfig(chunk_avg_kib=16, pack_target_mib=1, reserve_mib=0))
for i in range(batches):
    hashes = []
    with v.batch() as b:
        for j in range(rng.randint(1, 4)):
            if rng.random() < 0.7:
                data = rng.randbytes(rng.randint(0, 120_000))
            else:
                data = shared + bytes([i % 7, j])
            h, n = b.put_bytes(data)
            b.add(VersionRecord(b"/w%d/f%d" % (seed, rng.randint(0, 9)), time.time_ns(), "content",
                                ftype="file", size=n, content=h))
            hashes.append(h)
    for vid, h in zip(b.committed_ids, hashes):
        sys.stdout.write(f"{vid} {h.hex()}\n")
    sys.stdout.flush()
"""


def _committed(out: bytes) -> list[tuple[int, bytes]]:
    lines = out.decode().split("\n")[:-1]  # a killed writer may leave half a line
    return [(int(a), bytes.fromhex(b)) for a, b in (line.split() for line in lines)]


def _check_committed(v: Vault, committed: list[tuple[int, bytes]]) -> None:
    for vid, h in committed:
        got = v.get_version(vid)
        assert got is not None and got.content == h, vid
        assert blake3(read(v, h)).digest() == h


@pytest.mark.slow
def test_kill_9_at_random_moments(tmp_path: Path) -> None:
    v = mkvault(tmp_path)
    rng = random.Random(6)
    committed: list[tuple[int, bytes]] = []
    for run in range(20):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(v.root), str(run), "100000"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.15, 0.45))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err.decode()
        committed += _committed(out)
        rep = v.verify(read_data=False)
        assert rep.ok, rep.errors
    assert len(committed) > 20
    rep = v.verify()
    assert rep.ok, rep.errors
    _check_committed(v, committed)
    v.close()
    v = Vault(v.root)  # reopening after crashes: temp files cleaned, everything still there
    assert v.stats().versions >= len(committed)
    pr = v.prune()
    assert pr.errors == []
    rep = v.verify()
    assert rep.ok and rep.warnings == [], rep.warnings
    _check_committed(v, committed)


def test_two_writer_processes_at_once(tmp_path: Path) -> None:
    v = mkvault(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(v.root), str(seed), "40"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for seed in (101, 102)]
    committed = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        committed += _committed(out)
    assert v.stats().versions == len(committed)
    assert v.verify().ok
    _check_committed(v, committed)


@pytest.fixture
def small_tmpfs(tmp_path: Path):  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        if os.environ.get("NOCRY_TEST_DISALLOW_SKIP") == "1":
            pytest.fail("the disk-full test needs root to mount a tmpfs")
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_disk_full_raises_vault_full_and_damages_nothing(small_tmpfs: Path) -> None:
    v = Vault(small_tmpfs / "vault", VaultConfig(reserve_mib=1, pack_target_mib=1, min_free_mib=0), create=True)
    rng = random.Random(7)
    first = rng.randbytes(500_000)
    _, h0 = put(v, b"/first", first, NOW)
    committed = [h0]
    with pytest.raises(VaultFull):
        for i in range(40):
            with v.batch() as b:
                h, n = b.put_bytes(rng.randbytes(700_000))
                b.add(rec(b"/fill/%d" % i, NOW + i, h, n))
            committed.append(h)
    assert list((v.root / "tmp").iterdir()) == []
    rep = v.verify()
    assert rep.ok, rep.errors
    for h in committed:
        assert blake3(read(v, h)).digest() == h
    # The reserve makes room for the index to carry on.
    assert v.release_reserve() >= MIB
    with v.batch() as b:
        h, n = b.put_bytes(b"small but important")
        b.add(rec(b"/after", NOW + 100, h, n))
    assert read(v, h) == b"small but important"
    assert v.restore_reserve() == (v.root / "reserve").exists()
    # Now fill the disk through the index alone: SQLite's "disk is full" is VaultFull too.
    with pytest.raises(VaultFull, match="index|pack"):
        for i in range(10_000):
            with v.batch() as b:
                for j in range(50):
                    b.add(rec(b"/meta/%d/%d" % (i, j) + b"x" * 200, NOW + i, None, ftype="dir"))
    rep = v.verify()
    assert rep.ok, rep.errors
    assert read(v, h0) == first
    v.close()


# -- retention ---------------------------------------------------------------------------------

RET = RetentionConfig(keep_all_days=14, keep_daily_days=90)


def test_versions_to_keep_rules() -> None:
    d = DAY_NS
    vs = [(1, NOW - 200 * d), (2, NOW - 50 * d), (3, NOW - 50 * d + 3600 * 10**9), (4, NOW - 20 * d),
          (5, NOW - 13 * d), (6, NOW - 1)]
    assert versions_to_keep(vs, RET, NOW) == {3, 4, 5, 6}
    assert versions_to_keep([(9, NOW - 1000 * d)], RET, NOW) == {9}  # the newest is forever
    hold = NOW - 60 * d
    assert versions_to_keep(vs, RET, NOW, hold_after_ns=hold) == {1, 2, 3, 4, 5, 6}
    assert versions_to_keep(vs, RET, NOW, hold_after_ns=NOW - 100 * d) == {1, 2, 3, 4, 5, 6}
    assert versions_to_keep(vs, RET, NOW, hold_after_ns=NOW - 300 * d) == {1, 2, 3, 4, 5, 6}
    # same time: the higher id is the newer one
    assert versions_to_keep([(7, NOW - 500 * d), (8, NOW - 500 * d)], RET, NOW) == {8}


@given(times=st.lists(st.integers(NOW - 400 * DAY_NS, NOW), min_size=1, max_size=30),
       hold=st.none() | st.integers(NOW - 400 * DAY_NS, NOW))
def test_versions_to_keep_properties(times: list[int], hold: int | None) -> None:
    vs = list(enumerate(times))
    keep = versions_to_keep(vs, RET, NOW, hold_after_ns=hold)
    newest = max(vs, key=lambda v: (v[1], v[0]))
    assert newest[0] in keep
    assert all(vid in keep for vid, t in vs if t >= NOW - 14 * DAY_NS)
    assert all(vid not in keep or t >= NOW - 90 * DAY_NS or vid == newest[0] or hold is not None for vid, t in vs)
    if hold is not None:
        assert all(vid in keep for vid, t in vs if t > hold)
        before = [v for v in vs if v[1] <= hold]
        if before:
            assert max(before, key=lambda v: (v[1], v[0]))[0] in keep


def test_forget_prune_keep_what_matters(tmp_path: Path) -> None:
    v = mkvault(tmp_path, chunk_avg_kib=16)
    rng = random.Random(8)
    d = DAY_NS
    plan = {
        b"/f": [NOW - 100 * d, NOW - 50 * d, NOW - 50 * d + 1, NOW - 20 * d, NOW - 1 * d],
        b"/g": [NOW - 200 * d],                                   # only version: kept forever
        b"/h": [NOW - 300 * d, NOW - 250 * d, NOW - 240 * d],     # held by an incident at -245 d
    }
    content = {}
    for path, times in plan.items():
        for t in times:
            vid, h = put(v, path, rng.randbytes(200_000), t)
            content[vid] = (path, t, h)
    # One pack holding three contents, two of which are about to become garbage: repacked.
    with v.batch() as b:
        hs = [b.put_bytes(rng.randbytes(200_000))[0] for _ in range(3)]
        b.add(rec(b"/p1", NOW - 300 * d, hs[0], 200_000))
        b.add(rec(b"/p2", NOW - 300 * d, hs[1], 200_000))
        b.add(rec(b"/p3", NOW - 300 * d, hs[2], 200_000))
    for p in (b"/p1", b"/p2"):
        put(v, p, rng.randbytes(1000), NOW)
    before = v.stats()

    def left() -> set[tuple[bytes, int]]:
        return {(r.path, r.time_ns) for p in plan for r in v.history(p)}

    # An open incident since -245 d holds everything after it and the newest version before it.
    rep = v.forget(RET, NOW, hold_after_ns=NOW - 245 * d)
    assert left() == {(p, t) for p, ts in plan.items() for t in ts} - {(b"/h", NOW - 300 * d)}
    assert (rep.versions_dropped, rep.contents_dropped) == (1, 1)
    assert len(v.history(b"/p1")) == 2  # its -300 d version is the newest before the incident
    # The incident closed: ordinary thinning.
    rep = v.forget(RET, NOW)
    assert left() == {(b"/f", NOW - 50 * d + 1), (b"/f", NOW - 20 * d), (b"/f", NOW - d), (b"/g", NOW - 200 * d),
                      (b"/h", NOW - 240 * d)}
    assert (rep.versions_dropped, rep.contents_dropped) == (5, 5)
    assert not v.has_content(hs[0]) and v.has_content(hs[2])

    pr = v.prune()
    assert pr.errors == [] and pr.packs_deleted >= 3 and pr.packs_repacked == 1 and pr.bytes_freed > 600_000
    after = v.stats()
    assert after.bytes_stored < before.bytes_stored and after.orphan_packs == 0
    rep2 = v.verify()
    assert rep2.ok and rep2.warnings == [], rep2.errors
    for p in list(plan) + [b"/p1", b"/p2", b"/p3"]:
        for r in v.history(p):
            assert blake3(read(v, r.content)).digest() == r.content  # type: ignore[arg-type]
    assert v.prune().packs_deleted == 0  # idempotent


def test_prune_waits_for_open_batch(tmp_path: Path) -> None:
    v = mkvault(tmp_path)
    v.lock_timeout_s = 0.2
    b = v.batch()
    b.put_bytes(b"in flight")
    with pytest.raises(VaultLocked):
        v.prune()
    b.abort()
    assert v.prune().errors == []


def test_read_survives_a_repack_midway(tmp_path: Path) -> None:
    v = mkvault(tmp_path, chunk_avg_kib=16)
    rng = random.Random(9)
    a, b_, g = rng.randbytes(200_000), rng.randbytes(200_000), rng.randbytes(600_000)
    old, new = NOW - 500 * DAY_NS, NOW - 400 * DAY_NS
    put(v, b"/a", a, old)
    with v.batch() as b:
        hb, _ = b.put_bytes(b_)
        hg, _ = b.put_bytes(g)
        b.add(rec(b"/b", old, hb, len(b_)))
        b.add(rec(b"/g", old, hg, len(g)))
    with v.batch() as b:
        hx, _ = b.put_bytes(a + b_)  # shares chunks with /a (one pack) and /b (another pack)
        b.add(rec(b"/x", new, hx, len(a) + len(b_)))
        for p in (b"/b", b"/g"):
            h, n = b.put_bytes(p)
            b.add(rec(p, new, h, n))
    reader = v.read_content(hx)
    first = next(reader)  # chunk locations of the whole content are now looked up
    assert v.forget(RET, NOW).versions_dropped == 2
    assert v.prune().packs_repacked == 1  # the /b + /g pack: its blobs moved, the file deleted
    assert first + b"".join(reader) == a + b_
    assert v.verify().ok


def test_dropped_batch_releases_its_lock_and_packs(tmp_path: Path) -> None:
    v = mkvault(tmp_path)
    v.lock_timeout_s = 0.2
    b = v.batch()
    b.put_bytes(random.Random(10).randbytes(100_000))
    del b  # neither committed nor aborted
    assert list((v.root / "tmp").iterdir()) == []
    assert v.prune().errors == []


def test_verify_reports_a_damaged_index(tmp_path: Path) -> None:
    v, _, _ = _damage_setup(tmp_path)
    v.close()
    index = v.root / "index.sqlite"
    with sqlite3.connect(index) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = con.execute("PRAGMA page_size").fetchone()[0]
        (root,) = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'chunks'").fetchone()
    raw = bytearray(index.read_bytes())
    end = root * page  # pages are numbered from 1; the chunk rows sit at the end of this one
    raw[end - 600 : end - 100] = b"\xa5" * 500
    index.write_bytes(raw)
    rep = Vault(v.root, readonly=True).verify()
    assert not rep.ok and any(e.startswith("index:") for e in rep.errors), rep.errors


PRUNER = r"""
import sys
from pathlib import Path
from nocry.config import VaultConfig
from nocry.vault import Vault
v = Vault(Path(sys.argv[1]), VaultConfig(pack_target_mib=1, reserve_mib=0))
print("open", flush=True)
v.prune()
print("done", flush=True)
"""


@pytest.mark.slow
def test_kill_9_during_prune(tmp_path: Path) -> None:
    v = mkvault(tmp_path, name="template", chunk_avg_kib=16, pack_target_mib=1)
    rng = random.Random(11)
    kept = {}
    for i in range(30):
        with v.batch() as b:
            for p, t, size in ((b"/k/%d" % i, NOW, 300_000), (b"/d/%d" % i, NOW - 400 * DAY_NS, 600_000),
                               (b"/d/%d" % i, NOW - 300 * DAY_NS, 100)):
                h, n = b.put_bytes(rng.randbytes(size))
                b.add(rec(p, t, h, n))
                if p.startswith(b"/k/"):
                    kept[p] = h
    assert v.forget(RET, NOW).versions_dropped == 30
    v.close()
    finished = 0
    for run in range(8):
        root = tmp_path / f"run{run}"
        subprocess.run(["cp", "-a", str(tmp_path / "template"), str(root)], check=True)
        proc = subprocess.Popen([sys.executable, "-c", PRUNER, str(root)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"open\n"
        time.sleep(rng.uniform(0, 0.08))  # a prune of this vault takes about 0.05-0.1 s
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        finished += out == b"done\n"
        w = Vault(root, VaultConfig(reserve_mib=0))
        rep = w.verify()
        assert rep.ok, rep.errors
        for p, h in kept.items():
            assert w.latest(p).content == h and blake3(read(w, h)).digest() == h  # type: ignore[union-attr]
        assert w.prune().errors == []
        assert w.verify().warnings == [] and w.stats().packs < 30
        w.close()
    assert finished < 6  # most kills landed mid-prune


def test_other_path_with_content_can_ask_for_another_file_name(tmp_path: Path) -> None:
    v = mkvault(tmp_path)
    data = b"quarterly figures\n" * 100
    put(v, b"/t/mirror/Budget.xlsx", data, 10)
    _, h = put(v, b"/t/new/Budget.xlsx", data, 20)
    assert v.other_path_with_content(h, b"/t/new/Budget.xlsx", 30) == b"/t/mirror/Budget.xlsx"
    assert v.other_path_with_content(h, b"/t/new/Budget.xlsx", 30, other_name=True) is None
    put(v, b"/t/donor.xlsx", data, 25)
    assert v.other_path_with_content(h, b"/t/new/Budget.xlsx", 30, other_name=True) == b"/t/donor.xlsx"
    assert v.other_path_with_content(h, b"/t/new/Budget.xlsx", 25, other_name=True) is None  # not before 25
    v.close()
