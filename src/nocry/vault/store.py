"""The vault: a content-addressed, deduplicated, compressed store of versions (docs/vault-format.md).

    vault = Vault(root, cfg, create=True)
    with vault.batch() as b:                   # one pack file (or a few) + one SQLite transaction
        h, size = b.put_stream(f)              # FastCDC chunks -> BLAKE3 ids -> new ones zstd'd into the pack
        b.add(VersionRecord(path, now, "content", ..., content=h))
    # on leaving the block: pack trailer, fsync, rename, fsync dir   (chunk data durable)
    #                       then ONE transaction: chunks, contents, objects, versions   (index, versions)
    b.committed_ids                            # version ids, in add() order
    for piece in vault.read_content(h): ...    # every chunk re-hashed as it is read

A ``kill -9`` at any instant leaves a vault that ``verify`` accepts: the transaction either happened
(and everything it names is already durable) or it did not (and the packs written for it are
orphans, reported as warnings and removed by ``prune``).

Several processes may open one vault: each writer writes its own packs; SQLite (WAL, 30 s busy
timeout) serialises the commits; a flock on ``<root>/lock`` is held shared by every open batch and
by verify, and exclusively by forget and prune, which delete what a batch might be relying on.
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import json
import logging
import os
import sqlite3
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, NoReturn

import zstandard
from blake3 import blake3
from pyfastcdc import FastCDC

from nocry.config import RetentionConfig, VaultConfig
from nocry.errors import VaultCorrupt, VaultError, VaultFull, VaultLocked
from nocry.vault.index import FORMAT_VERSION, MAX_TIME, Index, check_record
from nocry.vault.model import VersionRecord
from nocry.vault.packs import COMP_NONE, COMP_ZSTD, PackEntry, PackReader, PackStore, PackWriter, fsync_dir
from nocry.vault.retention import ForgetReport, PruneReport, forget, prune
from nocry.vault.verify import VerifyReport, verify_vault

__all__ = ["Vault", "Batch", "VaultStats", "MARKER_NAME"]

log = logging.getLogger(__name__)

MARKER_NAME = "nocry-vault"
INDEX_NAME = "index.sqlite"
LOCK_NAME = "lock"
RESERVE_NAME = "reserve"
MIB = 1 << 20
#: files are read in blocks of this size (plus one maximal chunk carried over): memory per batch
#: stays bounded whatever the file size
READ_BLOCK = 4 * MIB
#: names a crashed ``create`` may have left; any other entry makes create refuse the directory
_CREATE_LEFTOVERS = {
    INDEX_NAME, INDEX_NAME + "-wal", INDEX_NAME + "-shm", INDEX_NAME + "-journal", "packs", "tmp",
    LOCK_NAME, RESERVE_NAME, RESERVE_NAME + ".tmp", MARKER_NAME + ".tmp",
}
_SQLITE_FULL = 13
_SQLITE_BUSY = 5


@dataclass(frozen=True, slots=True)
class VaultStats:
    objects: int
    versions: int
    contents: int
    chunks: int
    packs: int
    #: pack bytes on disk (as recorded in the index)
    bytes_stored: int
    #: sum of content sizes over the content versions of regular files (what restoring all would write)
    bytes_logical: int
    #: sum of the sizes of distinct contents
    bytes_unique: int
    #: pack files on disk that the index does not name (a crashed batch; prune removes them)
    orphan_packs: int

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


def _is_nospace(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in str(exc)
    return False


def _vault_error(exc: BaseException, doing: str, root: Path) -> VaultError | VaultFull:
    """Map an OSError / sqlite3.Error met while writing to the error the user should see."""
    if _is_nospace(exc):
        return VaultFull(f"vault {root}: no space left while {doing}",
                         hint="free space or release the vault reserve; nothing stored was damaged")
    if isinstance(exc, sqlite3.Error) and (getattr(exc, "sqlite_errorcode", None) == _SQLITE_BUSY
                                           or "locked" in str(exc)):
        return VaultLocked(f"vault {root}: index busy for 30 s while {doing}")
    return VaultError(f"vault {root}: {doing} failed: {exc}")


class _FileLock:
    """flock on ``<root>/lock``: shared for batches and verify, exclusive for forget and prune."""

    def __init__(self, path: Path):
        self.path = path

    def acquire(self, *, shared: bool, timeout_s: float, what: str) -> int:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise VaultError(f"{self.path} is missing (damaged vault?)") from None
        op = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, op)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    holder = "a batch or verify" if not shared else "forget or prune"
                    raise VaultLocked(f"{what}: vault is locked by {holder} in another process or thread "
                                      f"(waited {timeout_s:g} s)") from None
                # Polling instead of a blocking flock keeps the timeout; 20 ms is far below a batch.
                time.sleep(0.02)

    @staticmethod
    def release(fd: int) -> None:
        os.close(fd)


def _write_reserve(path: Path, nbytes: int) -> None:
    """Write ``nbytes`` of real, allocated space to ``path`` (via a temp name, durably)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, nbytes)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            # No fallocate (e.g. ZFS): write random bytes, which a compressing filesystem cannot
            # shrink to nothing as it would zeros.
            block = os.urandom(MIB)
            for off in range(0, nbytes, MIB):
                os.write(fd, block[: min(MIB, nbytes - off)])
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.rename(tmp, path)
    fsync_dir(path.parent)


def _initialise(root: Path, cfg: VaultConfig) -> None:
    """Create a new vault at root (mode 0700). The marker file comes last, so a crash part-way
    leaves a directory that a second ``create`` finishes and that a plain open rejects."""
    if root.exists():
        if not root.is_dir():
            raise VaultError(f"cannot create a vault at {root}: it exists and is not a directory")
        extra = sorted(set(os.listdir(root)) - _CREATE_LEFTOVERS)
        if extra:
            raise VaultError(f"cannot create a vault at {root}: directory is not empty (holds {extra[0]!r})")
    else:
        root.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(root, 0o700)
    os.chmod(root, 0o700)  # whatever the umask said
    for sub in ("packs", "tmp"):
        (root / sub).mkdir(mode=0o700, exist_ok=True)
    lock = root / LOCK_NAME
    os.close(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    vault_id = uuid.uuid4().hex
    now = time.time_ns()
    index = Index(root / INDEX_NAME)
    try:
        index.create_schema(vault_id, now)
    finally:
        index.close()
    if cfg.reserve_mib and not (root / RESERVE_NAME).exists():
        try:
            _write_reserve(root / RESERVE_NAME, cfg.reserve_mib * MIB)
        except OSError as exc:
            raise _vault_error(exc, "writing the space reserve", root) from exc
    marker = {"format": "nocry-vault", "version": FORMAT_VERSION, "id": vault_id, "created_ns": now}
    tmp = root / (MARKER_NAME + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(marker, fh)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(tmp, root / MARKER_NAME)
    fsync_dir(root)
    log.info("created vault root=%s id=%s", root, vault_id)


def _read_marker(root: Path) -> dict[str, Any]:
    path = root / MARKER_NAME
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VaultError(f"{root}: unreadable vault marker {MARKER_NAME}: {exc}") from None
    if not isinstance(marker, dict) or marker.get("format") != "nocry-vault":
        raise VaultError(f"{root}: {MARKER_NAME} does not describe a nocry vault")
    if marker.get("version") != FORMAT_VERSION:
        raise VaultError(f"{root}: vault format version {marker.get('version')} is not supported "
                         f"(this nocry reads version {FORMAT_VERSION})")
    return marker


def _readinto_of(f: BinaryIO) -> Callable[[memoryview], int]:
    readinto = getattr(f, "readinto", None)
    if readinto is not None:
        return readinto  # type: ignore[no-any-return]

    def via_read(mv: memoryview) -> int:
        data = f.read(len(mv))
        mv[: len(data)] = data
        return len(data)

    return via_read


class Vault:
    """One open vault. Thread-safe for reads; each Batch belongs to one thread."""

    #: how long batches wait for forget/prune (and they for batches) before VaultLocked
    lock_timeout_s: float = 30.0

    def __init__(self, root: Path, cfg: VaultConfig = VaultConfig(), *, create: bool = False,
                 readonly: bool = False):
        if create and readonly:
            raise ValueError("a vault cannot be created read-only")
        self.root = Path(root)
        self.cfg = cfg
        self.readonly = readonly
        if not (self.root / MARKER_NAME).is_file():
            if not create:
                if not self.root.exists():
                    raise VaultError(f"no vault at {self.root}", hint="create one with 'nocry protect'")
                raise VaultError(f"{self.root} is not a nocry vault (no {MARKER_NAME} file)")
            _initialise(self.root, cfg)
        self.marker = _read_marker(self.root)
        index_path = self.root / INDEX_NAME
        if not index_path.is_file():
            raise VaultError(f"{self.root}: vault index {INDEX_NAME} is missing")
        try:
            self._index = Index(index_path, readonly=readonly)
            self._index.check_format()
        except sqlite3.Error as exc:
            raise VaultError(f"{index_path}: cannot open the vault index: {exc}") from None
        self._packs = PackStore(self.root)
        self._lock = _FileLock(self.root / LOCK_NAME)
        avg = cfg.chunk_avg_kib * 1024
        self._cdc = FastCDC(avg, min_size=avg // 4, max_size=avg * 4)
        self._closed = False
        mode = os.stat(self.root).st_mode
        if stat.S_IMODE(mode) & 0o077:
            log.warning("vault directory is accessible to others root=%s mode=%o", self.root, stat.S_IMODE(mode))
        if not readonly:
            self._packs.clean_temp()

    # -- life cycle ------------------------------------------------------------------------------

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._index.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_usable(self, writing: bool = False) -> None:
        if self._closed:
            raise VaultError(f"vault {self.root} is closed")
        if writing and self.readonly:
            raise VaultError(f"vault {self.root} is open read-only")

    # -- writing ---------------------------------------------------------------------------------

    def batch(self) -> Batch:
        self._check_usable(writing=True)
        return Batch(self)

    # -- reading versions ------------------------------------------------------------------------

    def latest(self, path: bytes) -> VersionRecord | None:
        self._check_usable()
        return self._index.latest(path)

    def history(self, path: bytes) -> list[VersionRecord]:
        """Every version of path, newest first (ties on time: higher id first)."""
        self._check_usable()
        return self._index.history(path)

    def get_version(self, version_id: int) -> VersionRecord | None:
        self._check_usable()
        return self._index.get_version(version_id)

    def state_at(self, prefix: bytes, time_ns: int) -> Iterator[VersionRecord]:
        """For every object at prefix or under prefix + b"/": its newest version with
        ``time_ns <= time_ns`` (tombstones included), ordered by path bytes; ``b"/"`` is everything."""
        self._check_usable()
        return self._index.state_at(prefix, time_ns)

    def latest_under(self, prefix: bytes) -> Iterator[VersionRecord]:
        self._check_usable()
        return self._index.state_at(prefix, MAX_TIME)

    def live_under(self, prefix: bytes) -> Iterator[VersionRecord]:
        """:meth:`latest_under` without the objects whose newest version is a tombstone."""
        self._check_usable()
        return self._index.state_at(prefix, MAX_TIME, live=True)

    def paths_under(self, prefix: bytes) -> Iterator[bytes]:
        self._check_usable()
        return self._index.paths_under(prefix)

    # -- reading content -------------------------------------------------------------------------

    def other_path_with_content(self, content_hash: bytes, path: bytes, before_ns: int, *, other_name: bool = False) -> bytes | None:
        """Another object that held exactly this content before ``before_ns`` (None if none);
        with ``other_name``, one under a different file name."""
        self._check_usable()
        return self._index.other_path_with_content(content_hash, path, before_ns, other_name=other_name)

    def has_content(self, content_hash: bytes) -> bool:
        self._check_usable()
        return self._index.has_content(content_hash)

    def content_chunks(self, content_hash: bytes) -> list[tuple[bytes, int]]:
        """``(chunk id, raw length)`` of the content's chunks, in order."""
        self._check_usable()
        info = self._index.content(content_hash)
        if info is None:
            raise VaultError(f"content {content_hash.hex()} is not in the vault")
        rows = self._index.chunk_rows(info[1])
        out = []
        for cid in info[1]:
            row = rows.get(cid)
            if row is None:
                raise VaultCorrupt(f"content {content_hash.hex()}: chunk {cid.hex()} is missing from the index")
            out.append((cid, row[3]))
        return out

    def read_content(self, content_hash: bytes) -> Iterator[bytes]:
        """The content's chunks, decompressed, in order. Every chunk is re-hashed as it is read
        and the whole is checked against content_hash at the end: VaultCorrupt on any mismatch."""
        self._check_usable()
        info = self._index.content(content_hash)
        if info is None:
            raise VaultError(f"content {content_hash.hex()} is not in the vault")
        return self._read_chunks(content_hash, info[0], info[1])

    def read_range(self, content_hash: bytes, offset: int, length: int) -> bytes:
        """``length`` bytes of the content from ``offset`` (fewer at the end of the content), reading
        and decompressing only the chunks that cover the range; each of them is re-hashed against its
        chunk id (VaultCorrupt on a mismatch). The content's hash as a whole is not checked: that
        needs every chunk, which is what this method exists to avoid (read_content checks it).

        The content's chunk layout (ids and cumulative offsets) is cached for the last few contents
        asked for, because the analyzer asks for a handful of scattered ranges of the same content
        in a row; contents are immutable, so a cached layout never goes stale (a content forgotten
        meanwhile shows up as missing chunk rows, reported as VaultError)."""
        self._check_usable()
        if offset < 0 or length < 0:
            raise ValueError(f"read_range: negative offset {offset} or length {length}")
        # created on first use (this method is the vault's only addition for the analyzer);
        # dict.setdefault is atomic, so two threads cannot end up with different caches
        cache: dict[bytes, tuple[list[bytes], list[int]]] = self.__dict__.setdefault("_range_layouts", {})
        layout = cache.get(content_hash)
        if layout is None:
            chunks = self.content_chunks(content_hash)
            ends: list[int] = []
            total = 0
            for _, raw_len in chunks:
                total += raw_len
                ends.append(total)
            layout = ([cid for cid, _ in chunks], ends)
            if len(cache) >= 8:
                cache.clear()  # a tiny cache: clearing is simpler than LRU and safe between threads
            cache[content_hash] = layout
        ids, ends = layout
        size = ends[-1] if ends else 0
        stop = min(offset + length, size)
        if offset >= stop:
            return b""
        first = bisect.bisect_right(ends, offset)  # the chunk holding byte `offset`
        last = bisect.bisect_left(ends, stop)  # the chunk holding byte `stop - 1`
        wanted = ids[first : last + 1]
        rows = self._index.chunk_rows(wanted)
        if len(rows) < len(set(wanted)) and not self._index.has_content(content_hash):
            cache.pop(content_hash, None)
            raise VaultError(f"content {content_hash.hex()} is not in the vault")
        parts = []
        with self._packs.reader() as reader:
            for cid in wanted:
                parts.append(self._read_chunk(reader, content_hash, cid, rows))
        start_of_first = ends[first - 1] if first else 0
        joined = b"".join(parts)
        return joined[offset - start_of_first : stop - start_of_first]

    def _read_chunks(self, content_hash: bytes, size: int, ids: list[bytes]) -> Iterator[bytes]:
        whole = blake3()
        total = 0
        with self._packs.reader() as reader:
            for i in range(0, len(ids), 256):
                group = ids[i : i + 256]
                rows = self._index.chunk_rows(group)
                for cid in group:
                    raw = self._read_chunk(reader, content_hash, cid, rows)
                    whole.update(raw)
                    total += len(raw)
                    yield raw
        if total != size or whole.digest() != content_hash:
            raise VaultCorrupt(f"content {content_hash.hex()}: its chunks give {total} bytes hashing to "
                               f"{whole.hexdigest()}, expected {size} bytes (index chunk list damaged)")

    def _read_chunk(self, reader: PackReader, content_hash: bytes, cid: bytes,
                    rows: dict[bytes, tuple[str, int, int, int, int]]) -> bytes:
        for attempt in range(2):
            row = rows.get(cid)
            if row is None:
                raise VaultCorrupt(f"content {content_hash.hex()}: chunk {cid.hex()} is missing from the index")
            pack, offset, stored_len, raw_len, comp = row
            try:
                return reader.read_blob(pack, PackEntry(cid, offset, stored_len, raw_len, comp))
            except FileNotFoundError:
                if attempt:
                    raise VaultCorrupt(f"pack {pack} is missing (holds chunk {cid.hex()} of content "
                                       f"{content_hash.hex()})") from None
                # A concurrent prune moves chunks to a new pack before deleting the old one.
                rows.update(self._index.chunk_rows([cid]))
            except OSError as exc:
                raise VaultCorrupt(f"pack {pack} offset {offset}: cannot read chunk {cid.hex()}: {exc}") from exc
        raise AssertionError("unreachable")

    # -- maintenance -----------------------------------------------------------------------------

    def verify(self, *, read_data: bool = True) -> VerifyReport:
        self._check_usable()
        fd = self._lock.acquire(shared=True, timeout_s=self.lock_timeout_s, what="verify")
        try:
            return verify_vault(self._index.path, self._packs, read_data=read_data)
        finally:
            self._lock.release(fd)

    def stats(self) -> VaultStats:
        self._check_usable()
        counts = self._index.counts()
        on_disk, _ = self._packs.list_packs()
        orphans = len(set(on_disk) - set(self._index.pack_names()))
        return VaultStats(orphan_packs=orphans, **counts)

    def forget(self, retention: RetentionConfig, now_ns: int, *, hold_after_ns: int | None = None) -> ForgetReport:
        """Thin versions per retention (see nocry.vault.retention); then drop unreferenced contents."""
        self._check_usable(writing=True)
        fd = self._lock.acquire(shared=False, timeout_s=self.lock_timeout_s, what="forget")
        try:
            return forget(self._index, retention, now_ns, hold_after_ns=hold_after_ns)
        except sqlite3.Error as exc:
            raise _vault_error(exc, "forgetting versions", self.root) from exc
        finally:
            self._lock.release(fd)

    def prune(self) -> PruneReport:
        """Delete packs nothing references, repack mostly-unreferenced ones, remove orphans."""
        self._check_usable(writing=True)
        fd = self._lock.acquire(shared=False, timeout_s=self.lock_timeout_s, what="prune")
        try:
            return prune(self._index, self._packs, self.cfg)
        except (OSError, sqlite3.Error) as exc:
            raise _vault_error(exc, "pruning", self.root) from exc
        finally:
            self._lock.release(fd)

    # -- space -----------------------------------------------------------------------------------

    def free_bytes(self) -> int:
        """Bytes available to this process on the vault's filesystem."""
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def release_reserve(self) -> int:
        """Delete the reserve file (on ENOSPC, so the index can still commit and checkpoint).
        Returns the bytes released (0 when there was no reserve)."""
        path = self.root / RESERVE_NAME
        try:
            size = path.stat().st_blocks * 512
            path.unlink()
        except FileNotFoundError:
            return 0
        log.warning("released vault space reserve root=%s bytes=%d", self.root, size)
        return size

    def restore_reserve(self) -> bool:
        """Recreate the reserve if it is missing and the filesystem has room for it plus
        ``min_free_mib``; True when the reserve is in place afterwards."""
        self._check_usable(writing=True)
        want = self.cfg.reserve_mib * MIB
        path = self.root / RESERVE_NAME
        if want == 0:
            return True
        try:
            if path.stat().st_size >= want:
                return True
        except FileNotFoundError:
            pass
        if self.free_bytes() < want + self.cfg.min_free_mib * MIB:
            return False
        try:
            _write_reserve(path, want)
        except OSError as exc:
            if _is_nospace(exc):
                return False
            raise _vault_error(exc, "writing the space reserve", self.root) from exc
        log.info("restored vault space reserve root=%s bytes=%d", self.root, want)
        return True


class Batch:
    """One pack being written plus one SQLite transaction at commit. Use as a context manager:
    leaving the block normally commits, leaving it by an exception aborts (and re-raises).

    On ENOSPC the batch aborts itself (temp pack removed, nothing committed) and raises VaultFull.
    A read error of the caller's stream propagates unchanged and leaves the batch usable."""

    def __init__(self, vault: Vault):
        self._vault = vault
        self._index = vault._index
        self._store = vault._packs
        self._cdc = vault._cdc
        self._cctx = zstandard.ZstdCompressor(level=vault.cfg.compression_level)
        self._pack_target = vault.cfg.pack_target_mib * MIB
        self._writer: PackWriter | None = None
        self._finished: list[tuple[str, int]] = []
        self._chunk_rows: list[tuple[bytes, str, int, int, int, int]] = []
        #: chunk ids already written in this batch or known to the index
        self._seen: set[bytes] = set()
        self._contents: dict[bytes, tuple[int, bytes]] = {}
        self._chunk_len: dict[bytes, int] = {}  # raw length of every chunk put in this batch
        self._known_contents: set[bytes] = set()
        self._versions: list[VersionRecord] = []
        self._latest: dict[bytes, VersionRecord] = {}
        self._buf: bytearray | None = None
        self.committed_ids: list[int] = []
        self.state = "open"  # open, committed, aborted
        self.chunks_new = 0
        self.chunks_dedup = 0
        self.bytes_read = 0
        self.bytes_written = 0
        self._lock_fd: int | None = None
        # Shared with other batches; forget and prune wait for it, since they delete what this
        # batch may be deduplicating against.
        self._lock_fd = vault._lock.acquire(shared=True, timeout_s=vault.lock_timeout_s, what="batch")

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def _check_open(self) -> None:
        if self.state != "open":
            raise VaultError(f"batch is already {self.state}")

    # -- content ---------------------------------------------------------------------------------

    def put_stream(self, f: BinaryIO, *, size_hint: int | None = None) -> tuple[bytes, int]:
        """Store f's content (read to EOF in blocks of READ_BLOCK); returns (BLAKE3 hash, size).
        size_hint is accepted for callers that know it; memory use does not depend on it."""
        self._check_open()
        if self._buf is None:
            # One buffer per batch: a block plus one maximal chunk carried over from the last block.
            self._buf = bytearray(READ_BLOCK + self._cdc.max_size)
        buf = self._buf
        mv = memoryview(buf)
        readinto = _readinto_of(f)
        whole = blake3()
        ids: list[bytes] = []
        size = carry = 0
        eof = False
        while not eof:
            filled = carry
            while filled < len(buf):
                n = readinto(mv[filled:])
                if n is None:
                    raise VaultError("put_stream needs a blocking stream (readinto returned None)")
                if not n:
                    eof = True
                    break
                filled += n
            whole.update(mv[carry:filled])
            size += filled - carry
            carry = 0
            for chunk in self._cdc.cut_buf(mv[:filled]):
                end = chunk.offset + chunk.length
                # A chunk that ends at the end of the buffer was cut by the buffer, not by the
                # content: carry it over so that boundaries do not depend on the block size.
                if not eof and end == filled:
                    carry = chunk.length
                    break
                ids.append(self._put_chunk(chunk.data))
            if carry:
                buf[:carry] = buf[filled - carry : filled]
        self.bytes_read += size
        return self._record_content(whole.digest(), size, ids)

    def put_bytes(self, data: bytes) -> tuple[bytes, int]:
        self._check_open()
        ids = [self._put_chunk(c.data) for c in self._cdc.cut_buf(data)] if data else []
        self.bytes_read += len(data)
        return self._record_content(blake3(data).digest(), len(data), ids)

    def _put_chunk(self, raw: memoryview | bytes) -> bytes:
        cid = blake3(raw).digest()
        self._chunk_len[cid] = len(raw)
        if cid in self._seen:
            self.chunks_dedup += 1
            return cid
        if self._index.has_chunk(cid):
            self._seen.add(cid)
            self.chunks_dedup += 1
            return cid
        comp = self._cctx.compress(raw)
        # Keep the compressed form only when it saves at least 1/32: otherwise decompressing on
        # every read costs more than the few bytes are worth.
        if len(comp) + (len(raw) >> 5) < len(raw):
            payload: bytes | memoryview = comp
            flag = COMP_ZSTD
        else:
            payload, flag = raw, COMP_NONE
        try:
            if self._writer is None:
                self._writer = self._store.writer()
            self._writer.add(cid, len(raw), payload, flag)
            if self._writer.size >= self._pack_target:
                self._finish_pack()
        except OSError as exc:
            self._fail(exc, "writing a pack")
        self._seen.add(cid)
        self.chunks_new += 1
        self.bytes_written += len(payload)
        return cid

    def _finish_pack(self) -> None:
        w = self._writer
        assert w is not None
        name, size = w.finish()
        self._writer = None
        self._finished.append((name, size))
        self._chunk_rows.extend((e.chunk_id, name, e.offset, e.stored_len, e.raw_len, e.compression)
                                for e in w.entries)

    def pending_content_chunks(self, content_hash: bytes) -> list[tuple[bytes, int]] | None:
        """``(chunk id, raw length)`` of a content put in this batch and not committed yet (None
        when the batch did not add it: ask the vault). Lets the analyzer judge a new version
        before the batch's pack flush, which can take tens of milliseconds."""
        entry = self._contents.get(content_hash)
        if entry is None:
            return None
        blob = entry[1]
        ids = [blob[i : i + 32] for i in range(0, len(blob), 32)]
        return [(cid, self._chunk_len[cid]) for cid in ids]

    def _record_content(self, content_hash: bytes, size: int, ids: list[bytes]) -> tuple[bytes, int]:
        if content_hash not in self._contents and content_hash not in self._known_contents:
            if self._index.has_content(content_hash):
                self._known_contents.add(content_hash)
            else:
                self._contents[content_hash] = (size, b"".join(ids))
        return content_hash, size

    # -- versions --------------------------------------------------------------------------------

    def add(self, rec: VersionRecord) -> None:
        """Queue a version; its content must have been put in this batch or be in the vault."""
        self._check_open()
        check_record(rec)
        h = rec.content
        if h is not None and h not in self._contents and h not in self._known_contents:
            if not self._index.has_content(h):
                raise VaultError(f"version of {rec.path!r}: content {h.hex()} was not put in this batch "
                                 "and is not in the vault")
            self._known_contents.add(h)
        self._versions.append(rec)
        self._latest[rec.path] = rec

    def latest(self, path: bytes) -> VersionRecord | None:
        """The newest version of path added to this open batch (None: none, or not open)."""
        return self._latest.get(path)

    @property
    def files(self) -> int:
        return len(self._versions)

    # -- ending ----------------------------------------------------------------------------------

    def commit(self) -> list[int]:
        """Make the packs durable, then commit one transaction; returns the version ids."""
        self._check_open()
        try:
            if self._writer is not None:
                self._finish_pack()  # every pack durable before the transaction names it
            contents = [(h, size, ids) for h, (size, ids) in self._contents.items()]
            ids = self._index.commit_batch(self._finished, self._chunk_rows, contents, self._versions, time.time_ns())
        except sqlite3.IntegrityError as exc:
            self.abort()
            raise VaultError(f"vault {self._vault.root}: batch rejected by the index: {exc}") from exc
        except (OSError, sqlite3.Error) as exc:
            self._fail(exc, "closing a pack" if isinstance(exc, OSError) else "committing the index")
        except BaseException:
            self.abort()
            raise
        self.committed_ids = ids
        self.state = "committed"
        self._release()
        # what this batch knew is in the index now: readers that kept the batch (the analyzer's
        # BatchReader) fall through to the vault, and the memory is freed
        self._contents.clear()
        self._chunk_len.clear()
        self._seen.clear()
        self._known_contents.clear()
        self._latest.clear()
        return ids

    def abort(self) -> None:
        """Discard everything this batch wrote (safe to call more than once)."""
        if self.state != "open":
            return
        self.state = "aborted"
        if self._writer is not None:
            self._writer.discard()
            self._writer = None
        if self._finished:
            names = [n for n, _ in self._finished]
            try:
                keep = self._index.packs_present(names)
            except sqlite3.Error:
                keep = set(names)  # cannot tell: leave them as orphans (harmless) rather than guess
            for name in names:
                if name not in keep:
                    self._store.remove(name)
        self._release()

    def __del__(self) -> None:
        # A batch dropped while open (neither committed nor aborted) must not keep the shared
        # lock, which would block forget and prune in every process. No commit was attempted, so
        # its packs are unreferenced; the index is not touched from a finaliser.
        if getattr(self, "state", None) == "open":
            self.state = "aborted"
            log.warning("vault batch dropped without commit or abort; discarding it")
            try:
                if self._writer is not None:
                    self._writer.discard()
                for name, _ in self._finished:
                    self._store.remove(name)
            finally:
                self._release()

    def _fail(self, exc: BaseException, doing: str) -> NoReturn:
        self.abort()
        raise _vault_error(exc, doing, self._vault.root) from exc

    def _release(self) -> None:
        self._buf = None
        if self._lock_fd is not None:
            _FileLock.release(self._lock_fd)
            self._lock_fd = None

