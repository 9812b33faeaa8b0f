"""Pack files: where chunk data lives, written once and never modified.

A pack is a header, a run of blobs, and a trailer that repeats where each blob is, so that the
chunk table of a lost index can be rebuilt from the packs alone (docs/vault-format.md, "Pack
format")::

    header   32 B   b"NCRYPACK" u16 version=1 u16 header_len=32 u32 flags=0  16 B random nonce
    blob     48 B   b"NCBL" u8 type=1(chunk) u8 compression(0 raw, 1 zstd) u16 0
                    u32 stored_len u32 raw_len  32 B chunk id (BLAKE3 of the raw chunk)
             ...    stored_len bytes of payload
    ...
    entries  52 B each: 32 B chunk id, u64 blob offset, u32 stored_len, u32 raw_len,
                    u8 type, u8 compression, u16 0
    footer   56 B   32 B BLAKE3(entries) u64 entries_offset u32 count u32 0  b"NCRYTRLR"

All integers are little-endian. The pack's file name is the hex BLAKE3 hash of the whole file, so a
pack can be checked without the index; the random nonce makes two packs with the same blobs still
two different files (an abort that deletes its own pack can never delete someone else's).

Writing a pack (the order is the vault's durability contract)::

    w = store.writer()           # tmp/<pid>-<random>.tmp, created O_EXCL and flock()ed
    off = w.add(chunk_id, raw_len, payload, compressed)   # ... many times
    name, size, entries = w.finish()   # trailer, fsync, rename to packs/<2 hex>/<hash>, fsync dir

The flock on a temp pack tells a cleaner that a live writer still owns it; the lock dies with the
process, so a temp file left by ``kill -9`` is recognisably abandoned.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import zstandard
from blake3 import blake3

from nocry.errors import VaultCorrupt

__all__ = [
    "PACK_MAGIC",
    "PACK_VERSION",
    "HEADER_SIZE",
    "BLOB_HEADER_SIZE",
    "BLOB_CHUNK",
    "COMP_NONE",
    "COMP_ZSTD",
    "PackEntry",
    "PackFormatError",
    "PackStore",
    "PackWriter",
    "PackReader",
    "parse_pack",
    "check_blob",
]

log = logging.getLogger(__name__)

PACK_MAGIC = b"NCRYPACK"
PACK_VERSION = 1
TRAILER_MAGIC = b"NCRYTRLR"
BLOB_MAGIC = b"NCBL"

_HEADER = struct.Struct("<8sHHI16s")
_BLOB = struct.Struct("<4sBBHII32s")
_ENTRY = struct.Struct("<32sQIIBBH")
_FOOTER = struct.Struct("<32sQII8s")

HEADER_SIZE = _HEADER.size  # 32
BLOB_HEADER_SIZE = _BLOB.size  # 48
ENTRY_SIZE = _ENTRY.size  # 52
FOOTER_SIZE = _FOOTER.size  # 56

BLOB_CHUNK = 1
COMP_NONE = 0
COMP_ZSTD = 1

TEMP_SUFFIX = ".tmp"
#: a temp pack this young is left alone even when unlocked: its writer may be between open() and
#: flock(). Removing it anyway would only fail that writer's batch, never lose data.
TEMP_MIN_AGE_S = 1.0


class PackFormatError(ValueError):
    """A pack's bytes do not follow the format (raised by the pure parsers)."""


@dataclass(frozen=True, slots=True)
class PackEntry:
    """One blob of a pack, as its trailer (or its blob header) describes it."""

    chunk_id: bytes
    offset: int  # of the blob header, from the start of the pack
    stored_len: int
    raw_len: int
    compression: int
    type: int = BLOB_CHUNK


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_blob(buf: bytes | memoryview, entry: PackEntry, dctx: zstandard.ZstdDecompressor | None = None,
               *, rehash: bool = True) -> tuple[bytes | None, str | None]:
    """Decode one blob (header + payload, exactly as read from ``entry.offset``).

    Returns ``(raw, None)`` when the blob matches ``entry`` and its content hashes to the chunk id,
    or ``(None, problem)`` with a one-line description of what is wrong. ``rehash=False`` skips the
    BLAKE3 check (for callers that verified the chunk a moment ago)."""
    need = BLOB_HEADER_SIZE + entry.stored_len
    if len(buf) < need:
        return None, f"truncated: {len(buf)} of {need} bytes present"
    magic, btype, comp, _, stored_len, raw_len, cid = _BLOB.unpack_from(buf, 0)
    if magic != BLOB_MAGIC:
        return None, "no blob header at this offset"
    if cid != entry.chunk_id or stored_len != entry.stored_len or raw_len != entry.raw_len or comp != entry.compression:
        return None, (f"blob header says chunk {cid.hex()} ({stored_len}/{raw_len} B, compression {comp}), "
                      "index disagrees")
    payload = memoryview(buf)[BLOB_HEADER_SIZE:need]
    if comp == COMP_NONE:
        raw = bytes(payload)
    elif comp == COMP_ZSTD:
        try:
            raw = (dctx or zstandard.ZstdDecompressor()).decompress(payload, max_output_size=raw_len)
        except zstandard.ZstdError as exc:
            return None, f"zstd payload does not decompress: {exc}"
    else:
        return None, f"unknown compression {comp}"
    if len(raw) != raw_len:
        return None, f"decoded length {len(raw)}, expected {raw_len}"
    if rehash:
        actual = blake3(raw).digest()
        if actual != entry.chunk_id:
            return None, f"expected blake3 {entry.chunk_id.hex()}, got {actual.hex()}"
    return raw, None


def parse_pack(data: bytes | memoryview) -> tuple[bytes, list[PackEntry]]:
    """Parse a whole pack: its nonce and the entries of its trailer, cross-checked against the blob
    headers. Raises PackFormatError. Used by verify and by an index rebuild."""
    if len(data) < HEADER_SIZE + FOOTER_SIZE:
        raise PackFormatError(f"too short ({len(data)} bytes)")
    magic, version, header_len, _flags, nonce = _HEADER.unpack_from(data, 0)
    if magic != PACK_MAGIC:
        raise PackFormatError("bad magic (not a nocry pack)")
    if version != PACK_VERSION or header_len != HEADER_SIZE:
        raise PackFormatError(f"unsupported pack version {version}")
    digest, entries_off, count, _, end_magic = _FOOTER.unpack_from(data, len(data) - FOOTER_SIZE)
    if end_magic != TRAILER_MAGIC:
        raise PackFormatError("bad trailer magic (truncated pack?)")
    entries_end = entries_off + count * ENTRY_SIZE
    if entries_end != len(data) - FOOTER_SIZE:
        raise PackFormatError("trailer entry table does not fit the file")
    table = memoryview(data)[entries_off:entries_end]
    if blake3(table).digest() != digest:
        raise PackFormatError("trailer entry table checksum mismatch")
    entries = []
    pos = HEADER_SIZE
    for i in range(count):
        cid, off, stored, raw, btype, comp, _ = _ENTRY.unpack_from(table, i * ENTRY_SIZE)
        if off != pos:
            raise PackFormatError(f"entry {i} at offset {off}, expected {pos}")
        bmagic, bt, bc, _, bs, br, bid = _BLOB.unpack_from(data, off)
        if (bmagic, bt, bc, bs, br, bid) != (BLOB_MAGIC, btype, comp, stored, raw, cid):
            raise PackFormatError(f"blob header at offset {off} disagrees with the trailer")
        entries.append(PackEntry(cid, off, stored, raw, comp, btype))
        pos = off + BLOB_HEADER_SIZE + stored
    if pos != entries_off:
        raise PackFormatError("blobs do not end where the trailer begins")
    return nonce, entries


class PackWriter:
    """One pack being written under a temp name. Not thread-safe; one per batch."""

    def __init__(self, store: PackStore):
        self._store = store
        self.tmp_path = store.tmp_dir / f"{os.getpid()}-{secrets.token_hex(8)}{TEMP_SUFFIX}"
        self._hash = blake3()
        self.entries: list[PackEntry] = []
        self.size = 0
        self.closed = False
        self.done = False
        self.final_path: Path | None = None
        fd = os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            # Taken at once: an unlocked temp pack means "abandoned" to every cleaner.
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._f = open(fd, "wb", buffering=1 << 20, closefd=True)
        except BaseException:
            os.close(fd)
            self.tmp_path.unlink(missing_ok=True)
            raise
        try:
            self._write(_HEADER.pack(PACK_MAGIC, PACK_VERSION, HEADER_SIZE, 0, secrets.token_bytes(16)))
        except BaseException:
            self.discard()
            raise

    def _write(self, data: bytes | memoryview) -> None:
        self._f.write(data)
        self._hash.update(data)
        self.size += len(data)

    def add(self, chunk_id: bytes, raw_len: int, payload: bytes | memoryview, compression: int) -> int:
        """Append one chunk blob; returns its offset (of the blob header)."""
        offset = self.size
        self._write(_BLOB.pack(BLOB_MAGIC, BLOB_CHUNK, compression, 0, len(payload), raw_len, chunk_id))
        self._write(payload)
        self.entries.append(PackEntry(chunk_id, offset, len(payload), raw_len, compression))
        return offset

    def finish(self) -> tuple[str, int]:
        """Write the trailer and make the pack durable under its final name: flush, fsync, rename,
        fsync the directory. Returns ``(name, size)``. On error the temp file is left for discard()."""
        table = b"".join(_ENTRY.pack(e.chunk_id, e.offset, e.stored_len, e.raw_len, e.type, e.compression, 0)
                         for e in self.entries)
        entries_off = self.size
        self._write(table)
        self._write(_FOOTER.pack(blake3(table).digest(), entries_off, len(self.entries), 0, TRAILER_MAGIC))
        self._f.flush()
        os.fsync(self._f.fileno())
        name = self._hash.hexdigest()
        final = self._store.path(name)
        self._store.ensure_subdir(final.parent)
        # The flock is still held across the rename, so no cleaner can take the file meanwhile.
        os.rename(self.tmp_path, final)
        self.final_path = final
        fsync_dir(final.parent)
        self.closed = True
        self._f.close()
        self.done = True
        return name, self.size

    def discard(self) -> None:
        """Close and remove the temp file (safe to call after a failed finish, or twice). A pack
        renamed by a finish that then failed is removed too: nothing can reference it yet."""
        if self.done:
            return
        if self.final_path is not None:
            self.final_path.unlink(missing_ok=True)
        if not self.closed:
            self.closed = True
            try:
                self._f.close()
            except OSError:
                pass  # a failing flush on a full disk: the file goes anyway
        try:
            self.tmp_path.unlink()
        except FileNotFoundError:
            pass


class PackReader:
    """Reads single blobs from packs, keeping a few file descriptors open. Not thread-safe."""

    def __init__(self, store: PackStore, max_open: int = 16):
        self._store = store
        self._fds: dict[str, int] = {}
        self._max_open = max_open
        self._dctx = zstandard.ZstdDecompressor()

    def _fd(self, name: str) -> int:
        fd = self._fds.get(name)
        if fd is None:
            if len(self._fds) >= self._max_open:
                os.close(self._fds.pop(next(iter(self._fds))))
            fd = os.open(self._store.path(name), os.O_RDONLY | os.O_CLOEXEC)
            self._fds[name] = fd
        return fd

    def read_blob(self, pack: str, entry: PackEntry) -> bytes:
        """The raw chunk, verified. FileNotFoundError if the pack is gone (the caller may re-look-up
        the chunk: a concurrent prune moves chunks before deleting packs); VaultCorrupt if damaged."""
        buf = os.pread(self._fd(pack), BLOB_HEADER_SIZE + entry.stored_len, entry.offset)
        raw, problem = check_blob(buf, entry, self._dctx)
        if problem is not None:
            raise VaultCorrupt(f"pack {pack} offset {entry.offset}: chunk {entry.chunk_id.hex()} damaged: {problem}")
        assert raw is not None
        return raw

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> PackReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PackStore:
    """The ``packs/`` and ``tmp/`` directories of a vault."""

    def __init__(self, root: Path):
        self.packs_dir = root / "packs"
        self.tmp_dir = root / "tmp"

    def path(self, name: str) -> Path:
        return self.packs_dir / name[:2] / name

    def ensure_subdir(self, sub: Path) -> None:
        if not sub.is_dir():
            try:
                os.mkdir(sub, 0o700)
            except FileExistsError:
                return
            # The new directory entry must be durable before a pack inside it is referenced.
            fsync_dir(self.packs_dir)

    def writer(self) -> PackWriter:
        return PackWriter(self)

    def reader(self) -> PackReader:
        return PackReader(self)

    def list_packs(self) -> tuple[dict[str, int], list[Path]]:
        """Packs on disk as ``{name: size}``, plus stray files that are not packs."""
        packs: dict[str, int] = {}
        stray: list[Path] = []
        try:
            subs = list(os.scandir(self.packs_dir))
        except FileNotFoundError:
            return packs, stray
        for sub in subs:
            if not (sub.is_dir(follow_symlinks=False) and len(sub.name) == 2 and _is_hex(sub.name)):
                stray.append(Path(sub.path))
                continue
            for ent in os.scandir(sub.path):
                is_pack = len(ent.name) == 64 and _is_hex(ent.name) and ent.name[:2] == sub.name
                if is_pack and ent.is_file(follow_symlinks=False):
                    packs[ent.name] = ent.stat(follow_symlinks=False).st_size
                else:
                    stray.append(Path(ent.path))
        return packs, stray

    def remove(self, name: str) -> bool:
        try:
            os.unlink(self.path(name))
            return True
        except FileNotFoundError:
            return False

    def temp_files(self, min_age_s: float = TEMP_MIN_AGE_S) -> Iterator[tuple[Path, bool]]:
        """Temp packs as ``(path, abandoned)``: abandoned means unlocked and older than min_age_s."""
        try:
            ents = list(os.scandir(self.tmp_dir))
        except FileNotFoundError:
            return
        now = time.time()
        for ent in ents:
            path = Path(ent.path)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # finished or discarded meanwhile
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                        yield path, False
                        continue
                    raise
                young = now - os.fstat(fd).st_mtime < min_age_s
                yield path, not young
            finally:
                os.close(fd)

    def clean_temp(self, min_age_s: float = TEMP_MIN_AGE_S) -> int:
        """Remove abandoned temp packs (left by a crashed writer); returns how many."""
        removed = 0
        for path, abandoned in list(self.temp_files(min_age_s)):
            if abandoned:
                try:
                    path.unlink()
                    removed += 1
                    log.info("removed abandoned temp pack path=%s", path)
                except FileNotFoundError:
                    pass
        return removed


def _is_hex(s: str) -> bool:
    return all(c in "0123456789abcdef" for c in s)
