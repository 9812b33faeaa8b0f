"""Features of a new version against the previous one: what a detector needs to tell ransomware or
wiper damage from ordinary work, at a cost small enough for every close-write.

    feats = analyze(path, new, prev, vault)      # new just captured; prev: the version before (or None)

    plan   = first 4 KiB, last 4 KiB, max_samples evenly spaced 4 KiB blocks   ("stat" blocks)
    files <= 256 KiB: every block is compared (read whole: one pread, one vault range)
    larger files:     the stat blocks, plus up to 4 blocks inside chunks the previous version
                      lacks (chunk ids tell where the change is without reading anything)
    new bytes  <- pread of the live file (page cache: capture just read it), or the vault by hash
                  when the file is gone or no longer the captured version (size/mtime/inode differ)
    prev bytes <- the vault, only at those offsets, and not even there when the chunk layout
                  proves the block identical (same chunk ids at the same offsets)
    compare block by block over the common length -> changed_blocks, changed_blocks_random, ...

Criteria (thresholds in ``stats``; "random" and "became random" are defined there):

- ``changed_blocks``: changed / compared over the stat blocks (files <= 256 KiB: all blocks), a
  block being compared over the length both versions have at that offset. Insertions shift every
  later block, so an ordinary edit can reach 1.0: ``chunk_overlap`` (content-defined, shift-proof)
  is the similarity measure, ``changed_blocks`` the where.
- ``changed_blocks_random``: of the changed blocks that carry new content, the fraction that
  ``became_random``. Each is judged on its changed span only (common prefix and suffix with the old
  block trimmed), so a 1 KiB encrypted stripe in a 4 KiB block is judged as 1 KiB of ciphertext;
  spans under 64 bytes are not judged, a span of at least 7/8 of its block is judged as the whole
  block (sharing the statistics already computed for it), and at most ``max_samples`` spans are
  judged, spread evenly over the candidates. A block whose bytes all lie in chunks the previous
  version also has is moved, not new (a PDF save shifting a compressed stream): not judged. The
  targeted blocks are judged too but never counted in ``changed_blocks``: they are chosen because
  they changed. 0.0 when nothing was judged, None without a comparable previous version.
- ``header_only_change``: the first block changed and at most 20 % of the other compared blocks did.
- ``chunk_overlap``: share of the previous content's chunk entries whose id the new content has.
- ``kind``: ``magic.detect_kind`` on the head, tail and stat sample; ``kind_matches_ext`` from the
  extension table (None: extension unknown, or empty file); ``type_lost``: the previous kind fitted
  the previous path's extension and the new kind does not (when the new extension says nothing, as
  after a rename to ``.locked``: the kind changed and is not "empty").
- ``entropy``, ``compress_ratio``, ``printable``: over the stat blocks joined (the entropy over at
  most HIST_BUDGET bytes of them: the first bytes of each block); ``prev_*`` over the previous
  version's own stat blocks (what it got when it was new).
- ``looks_encoded``: the new sample is hex/base64-shaped text (``stats.encoded_shape``) and the
  previous content was not (another kind, or text with words); for a file without previous content,
  when the extension expects something else than what the text is.
- ``zero_fill`` / ``constant_fill``: every sampled byte is zero / one repeated byte.
- Tombstones: ``change="deleted"``, size 0, kind "empty", ``prev_*`` from the deleted content's first
  and last blocks.
- ``bytes_sampled``: bytes pread from the live file plus the whole chunks decoded from the vault
  (a vault read decodes at least one chunk: 16..256 KiB, 64 on average).

Everything is a function of the two versions' bytes and the vault's chunk lists: no clock, no
randomness. The live file may change under us after the staleness check; then the features describe
a slightly newer state, which is what the next capture will store anyway.
"""

from __future__ import annotations

import bisect
import errno
import logging
import os
import stat as statmod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from collections import OrderedDict
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import Protocol

from nocry.analyzer import magic, stats
from nocry.analyzer.model import ContentFeatures
from nocry.errors import VaultCorrupt, VaultError
from nocry.vault.model import FTYPE_FILE, VersionRecord

__all__ = ["analyze", "uniform_offsets", "SMALL_FILE", "MAX_TARGETED", "HEADER_REST_CHANGED_MAX", "HIST_BUDGET",
           "VaultReader", "LiveReader"]

log = logging.getLogger(__name__)

#: files up to this size are read and compared whole
SMALL_FILE = 256 * 1024
#: extra blocks taken inside chunks that only the new version has (big files)
MAX_TARGETED = 4
#: header_only_change: at most this share of the non-first compared blocks may have changed
HEADER_REST_CHANGED_MAX = 0.2
#: the aggregate entropy counts at most this many bytes of a version's stat blocks (spread over them)
HIST_BUDGET = 32 * 1024

#: a callable reading the new content: (offset, length) -> bytes
LiveReader = Callable[[int, int], bytes]


class VaultReader(Protocol):
    """What analyze needs of a vault (``nocry.vault.Vault`` has it)."""

    def content_chunks(self, content_hash: bytes) -> list[tuple[bytes, int]]: ...

    def read_range(self, content_hash: bytes, offset: int, length: int) -> bytes: ...


# -- chunk layouts ---------------------------------------------------------------------------------


class _Layout:
    """One content's chunks: ids and end offsets, to map byte ranges to chunks."""

    __slots__ = ("ids", "ends", "size")

    def __init__(self, chunks: list[tuple[bytes, int]]):
        self.ids = [cid for cid, _ in chunks]
        self.ends = list(accumulate(n for _, n in chunks))
        self.size = self.ends[-1] if self.ends else 0

    def start(self, i: int) -> int:
        return self.ends[i - 1] if i else 0

    def span(self, offset: int, length: int) -> range:
        """Indexes of the chunks holding bytes [offset, offset + length)."""
        first = bisect.bisect_right(self.ends, offset)
        last = bisect.bisect_left(self.ends, offset + length)
        return range(first, min(last, len(self.ids) - 1) + 1)

    def pieces(self, offset: int, length: int) -> list[tuple[int, bytes]]:
        return [(self.start(i), self.ids[i]) for i in self.span(offset, length)]


def _read_vault(vault: VaultReader, content_hash: bytes, layout: _Layout | None,
                ranges: Iterable[tuple[int, int]]) -> tuple[dict[int, bytes], int]:
    """Read (offset, length) ranges of a stored content, one read_range per run of touching chunks.
    Returns {offset: bytes} and the bytes decoded (whole chunks: the real cost)."""
    wanted = sorted(set(ranges))
    out: dict[int, bytes] = {}
    if not wanted:
        return out, 0
    if layout is None:
        layout = _Layout(vault.content_chunks(content_hash))
    cost = 0
    groups: list[tuple[int, int, list[tuple[int, int]]]] = []  # first chunk, last chunk, ranges
    for off, n in wanted:
        if n <= 0 or off >= layout.size:
            out[off] = b""
            continue
        sp = layout.span(off, n)
        if groups and sp.start <= groups[-1][1] + 1:
            first, last, rs = groups[-1]
            groups[-1] = (first, max(last, sp.stop - 1), rs + [(off, n)])
        else:
            groups.append((sp.start, sp.stop - 1, [(off, n)]))
    for first, last, rs in groups:
        lo = min(o for o, _ in rs)
        hi = max(o + n for o, n in rs)
        data = vault.read_range(content_hash, lo, hi - lo)
        cost += layout.ends[last] - layout.start(first)
        for o, n in rs:
            out[o] = data[o - lo : o - lo + n]
    return out, cost


# -- the live file ---------------------------------------------------------------------------------


class _Live:
    """The new content read from the file itself, as long as it still is the captured version."""

    def __init__(self, path: bytes, new: VersionRecord, reader: int | LiveReader | None):
        self.new = new
        self.fd = -1
        self.own_fd = False
        self.call: LiveReader | None = None
        if callable(reader):
            self.call = reader  # the caller vouches that it reads the captured version
            return
        if isinstance(reader, int):
            self.fd = reader
        else:
            self.fd = self._open(path)
            self.own_fd = self.fd >= 0

    @staticmethod
    def _open(path: bytes) -> int:
        """An fd on path, or -1 when it cannot be opened (gone, a symlink now, no access, out of
        fds...): then the vault, which has the captured bytes, is read instead."""
        # O_NONBLOCK: a FIFO swapped in at path must not hang us; O_NOATIME: reading for analysis
        # should not change what the user sees (allowed for root and the owner only: EPERM else).
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
        noatime = getattr(os, "O_NOATIME", 0)
        try:
            try:
                return os.open(path, flags | noatime)
            except PermissionError as exc:
                if exc.errno != errno.EPERM or not noatime:
                    raise
                return os.open(path, flags)
        except OSError as exc:
            log.debug("live file not opened path=%r err=%s", path, exc)
            return -1

    def current(self) -> bool:
        """Is the open file still the version that was captured?"""
        if self.call is not None:
            return True
        if self.fd < 0:
            return False
        try:
            st = os.fstat(self.fd)
        except OSError:
            return False
        n = self.new
        return (statmod.S_ISREG(st.st_mode) and st.st_size == n.size
                and (not n.mtime_ns or st.st_mtime_ns == n.mtime_ns)
                and (not n.ino or st.st_ino == n.ino))

    def read(self, offset: int, length: int) -> bytes | None:
        """The bytes, or None when the file came up short (it changed)."""
        want = max(0, min(length, self.new.size - offset))
        try:
            if self.call is not None:
                data = self.call(offset, want)
            else:
                data = os.pread(self.fd, want, offset)
        except OSError as exc:
            log.debug("live read failed path_fd=%d offset=%d err=%s", self.fd, offset, exc)
            return None
        return data if len(data) == want else None

    def close(self) -> None:
        if self.own_fd:
            os.close(self.fd)
            self.own_fd = False


# -- sampling --------------------------------------------------------------------------------------


def uniform_offsets(size: int, block: int, max_samples: int) -> list[int]:
    """The stat blocks: every block when there are at most max_samples + 2 of them, else the first,
    the last (ending at size) and max_samples evenly spaced ones aligned to the block size."""
    if size <= 0:
        return []
    nblocks = -(-size // block)
    if nblocks <= max_samples + 2:
        return [i * block for i in range(nblocks)]
    offs = {0, size - block}
    for i in range(1, max_samples + 1):
        offs.add(i * size // (max_samples + 1) // block * block)
    return sorted(offs)


def _targeted_offsets(new: _Layout, prev_ids: set[bytes], common: int, block: int,
                      taken: set[int]) -> list[int]:
    """Up to MAX_TARGETED blocks in the middle of chunks only the new version has, spread evenly
    over those chunks: where the change is, found without reading a byte."""
    fresh = [i for i, cid in enumerate(new.ids) if cid not in prev_ids and new.start(i) < common]
    out: list[int] = []
    if not fresh:
        return out
    step = max(1, len(fresh) // MAX_TARGETED)
    for i in fresh[::step]:
        lo, hi = new.start(i), new.ends[i]
        off = max(lo, (lo + hi) // 2 - block // 2) // block * block
        off = min(off, max(0, common - 1) // block * block)
        if off not in taken:
            taken.add(off)
            out.append(off)
        if len(out) == MAX_TARGETED:
            break
    return out


def _diff_span(a: bytes, b: bytes) -> tuple[int, int]:
    """[p, q): the smallest range outside which a and b (equal lengths, known to differ) agree.
    Binary search on slices: memcmp in C instead of a byte loop in Python."""
    n = len(a)
    lo, hi = 0, n  # common prefix length is in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    p = lo
    lo, hi = 0, n - p  # common suffix length
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[n - mid :] == b[n - mid :]:
            lo = mid
        else:
            hi = mid - 1
    return p, n - lo


def _spread(items: list, limit: int) -> list:
    """At most limit items, evenly spread over the list (deterministic)."""
    if len(items) <= limit:
        return items
    return [items[i * len(items) // limit] for i in range(limit)]


# -- the whole ---------------------------------------------------------------------------------------


class _Side:
    """Sampled blocks of one version, {offset: SpanStats}; whole-file reads are sliced into it."""

    def __init__(self, B: int) -> None:
        self.B = B
        self.blocks: dict[int, stats.SpanStats] = {}

    def fill(self, data: dict[int, bytes]) -> None:
        for o, b in data.items():
            self.blocks[o] = stats.SpanStats(b)

    def fill_whole(self, whole: bytes, offsets: Iterable[int]) -> None:
        for o in offsets:
            self.blocks[o] = stats.SpanStats(whole[o : o + self.B])

    def data(self, o: int) -> bytes:
        s = self.blocks.get(o)
        return s.data if s is not None else b""


class _Summary:
    """Aggregate statistics of a version over its stat blocks."""

    def __init__(self, side: _Side, offsets: list[int], size: int, tail_off: int):
        spans = [side.blocks[o] for o in offsets if o in side.blocks]
        self.sample = b"".join(s.data for s in spans)
        n = len(self.sample)
        if n:
            # The histogram is the one per-byte cost at Python speed (~17 ns/byte): over the budget,
            # count only the first HIST_BUDGET / len(spans) bytes of each block (~0.01 bit/byte of
            # bias), except for blocks whose histogram the randomness judgement already made.
            each = len(spans[0]) if n <= HIST_BUDGET else -(-HIST_BUDGET // len(spans))
            counted_data = (self.sample if n <= HIST_BUDGET else
                            b"".join(s.data if s.has_hist or len(s) <= each else s.data[:each] for s in spans))
            counted = len(counted_data)
            hist = stats.histogram(counted_data)  # one pass in C over what is counted
            # per block: a UTF-8 check must not run across the gap between two samples
            good = sum(s.printable for s in spans)
            self.entropy = stats.entropy_of(hist, counted)
            self.ratio = stats.compress_ratio(self.sample)
            self.printable = good / n
            # a short sample cannot reach 8 bits/byte: judge it against what random data of that
            # length would show
            self.random = self.ratio >= stats.RANDOM_RATIO and self.entropy >= stats.random_entropy_threshold(counted)
        else:
            self.entropy, self.ratio, self.printable, self.random = 0.0, 1.0, 0.0, False
        self.kind = magic.detect_kind(side.data(0), side.data(tail_off), size, self.sample, self.printable)


@dataclass(frozen=True, slots=True)
class _Known:
    """What a content was, as its analysis as a new version found it (a pure function of the
    content): reused when that content is the previous version of the next change."""

    kind: str
    entropy: float
    ratio: float
    printable: float
    random: bool
    shape: str | None


#: content hash -> _Known, for the last contents analysed (a file saved again and again, branches
#: checked out back and forth): their statistics need not be read back from the vault
_KNOWN: OrderedDict[bytes, _Known] = OrderedDict()
_KNOWN_MAX = 20_000


def _remember(content: bytes, known: _Known) -> None:
    _KNOWN[content] = known
    _KNOWN.move_to_end(content)
    if len(_KNOWN) > _KNOWN_MAX:
        _KNOWN.popitem(last=False)


class _PrevUnavailable(Exception):
    """The previous content went from the vault while we looked (forget/prune ran meanwhile)."""


def analyze(path: bytes, new: VersionRecord, prev: VersionRecord | None, vault: VaultReader, *,
            fd_or_path_reader: int | LiveReader | None = None, sample_block: int = 4096,
            max_samples: int = 16) -> ContentFeatures:
    """Features of ``new`` (just stored in ``vault``) against ``prev`` (the version before it).

    ``fd_or_path_reader``: None to open ``path`` (O_NOFOLLOW) and pread it; an open fd on the file
    (not closed here); or a callable ``(offset, length) -> bytes`` trusted to read the new content.
    VaultCorrupt propagates (integrity errors must be loud); a previous content that vanished from
    the vault meanwhile (VaultError) is treated as no previous content."""
    try:
        return _analyze(path, new, prev, vault, fd_or_path_reader, sample_block, max_samples)
    except _PrevUnavailable as exc:
        log.info("previous content unavailable path=%r err=%s", path, exc.__cause__)
        feats = _analyze(path, new, None, vault, fd_or_path_reader, sample_block, max_samples)
        return replace(feats, created=prev is None or not prev.exists)


def _analyze(path: bytes, new: VersionRecord, prev: VersionRecord | None, vault: VaultReader,
             fd_or_path_reader: int | LiveReader | None, sample_block: int,
             max_samples: int) -> ContentFeatures:
    B = sample_block
    ext = magic.ext_of(path)
    pid = new.subject.pid if new.subject is not None else 0
    base = dict(path=path, time_ns=new.time_ns, subject_pid=pid, ext=ext,
                content_hash=new.content.hex() if new.content else "")
    prev_c = prev if (prev is not None and prev.exists and prev.ftype == FTYPE_FILE
                      and prev.content is not None) else None
    created = prev is None or not prev.exists
    if not new.exists:
        return _deleted(base, prev_c, vault, B)
    if new.ftype != FTYPE_FILE or new.content is None:
        return ContentFeatures(**base, created=created, size=new.size, kind=new.ftype or "unknown")

    # -- chunk layouts: similarity and where the change is, without reading content -------------
    size = new.size
    same = prev_c is not None and prev_c.content == new.content
    lay_new: _Layout | None = None
    lay_prev: _Layout | None = None
    if prev_c is not None and not same:
        lay_new = _Layout(vault.content_chunks(new.content))
        with _prev_reads():
            lay_prev = _Layout(vault.content_chunks(prev_c.content))  # type: ignore[arg-type]
    chunk_overlap: float | None = None
    if same:
        chunk_overlap = 1.0
    elif lay_new is not None and lay_prev is not None and lay_prev.ids:
        have = set(lay_new.ids)
        chunk_overlap = sum(1 for cid in lay_prev.ids if cid in have) / len(lay_prev.ids)
    prev_ids = set(lay_prev.ids) if lay_prev is not None else set()
    prev_size = prev_c.size if prev_c is not None else None

    # -- plan ----------------------------------------------------------------------------------
    stat_offs = uniform_offsets(size, B, max_samples)
    tail_off = max(0, size - B)
    common = min(size, prev_size) if prev_size else 0
    if size <= SMALL_FILE:
        cmp_offs = list(range(0, common, B))
    else:
        cmp_offs = [o for o in stat_offs if o < common]
    targeted: list[int] = []
    if size > SMALL_FILE and lay_new is not None and lay_prev is not None:
        targeted = _targeted_offsets(lay_new, prev_ids, common, B, set(cmp_offs))

    # -- the bytes -----------------------------------------------------------------------------
    new_side = _Side(B)
    new_offs = sorted(set(stat_offs) | set(cmp_offs) | set(targeted) | {0, tail_off})
    cost = _read_new(path, new, vault, lay_new, fd_or_path_reader, new_side, new_offs)
    prev_side = new_side
    prev_stat_offs: list[int] = stat_offs
    prev_tail = tail_off
    known = _KNOWN.get(prev_c.content) if prev_c is not None and prev_c.content is not None and not same else None
    if prev_c is not None and prev_size and not same:
        # the previous version's statistics are over its own plan: what it got when it was new
        # (read only when not known from its own analysis)
        prev_stat_offs = uniform_offsets(prev_size, B, max_samples)
        prev_tail = max(0, prev_size - B)
        prev_side = _Side(B)
        want = set(cmp_offs) | set(targeted)
        if known is None:
            want |= set(prev_stat_offs) | {0, prev_tail}
        with _prev_reads():
            cost += _read_prev(vault, prev_c, prev_side, new_side, lay_new, lay_prev, sorted(want))

    # -- compare -------------------------------------------------------------------------------
    changed_blocks: float | None = None
    changed_random: float | None = None
    header_only = False
    if common > 0:
        compared = changed = 0
        head_changed = False
        candidates: list[tuple[stats.SpanStats, stats.SpanStats]] = []
        target_set = set(targeted)
        for o in sorted(set(cmp_offs) | target_set):
            ns, ps = new_side.blocks[o], prev_side.blocks[o]
            k = min(len(ns), len(ps))
            if k == 0:
                continue
            nb, pb = ns.data[:k], ps.data[:k]
            differs = nb != pb
            if o not in target_set:  # targeted blocks were chosen for changing: not a fair sample
                compared += 1
                if differs:
                    changed += 1
                    head_changed = head_changed or o == 0
            if not differs:
                continue
            if lay_new is not None and prev_ids and all(lay_new.ids[i] in prev_ids for i in lay_new.span(o, k)):
                continue  # moved, not new: every byte of it is in chunks the old version has
            p, q = _diff_span(nb, pb)
            if q - p < stats.MIN_JUDGED:
                continue
            if (q - p) * 8 >= k * 7 and k == len(ns) == len(ps):
                candidates.append((ns, ps))  # (nearly) the whole block: share its cached statistics
            else:
                candidates.append((stats.SpanStats(nb[p:q]), stats.SpanStats(pb[p:q])))
        if compared:
            changed_blocks = changed / compared
            header_only = (head_changed and compared > 1
                           and (changed - 1) / (compared - 1) <= HEADER_REST_CHANGED_MAX)
        judged = _spread(candidates, max_samples)
        became = sum(1 for n_s, p_s in judged if stats.became_random(n_s, p_s))
        changed_random = became / len(judged) if judged else 0.0

    # -- what each version is ------------------------------------------------------------------
    cur = _Summary(new_side, stat_offs, size, tail_off)
    match = magic.kind_matches(ext, cur.kind)
    prev_kind: str | None = None
    prev_ent: float | None = None
    prev_ratio: float | None = None
    prev_match: bool | None = None
    prev_shape: str | None = None
    prev_printable: float | None = None
    prev_random: bool | None = None
    if prev_c is not None:
        if prev_size and known is not None:
            prev_kind, prev_ent, prev_ratio, prev_printable = known.kind, known.entropy, known.ratio, known.printable
            prev_random, prev_shape = known.random, known.shape
        elif prev_size:
            old = cur if same else _Summary(prev_side, prev_stat_offs, prev_size, prev_tail)
            prev_kind, prev_ent, prev_ratio, prev_printable = old.kind, old.entropy, old.ratio, old.printable
            prev_random = old.random
            if old.kind in magic.TEXT_KINDS:
                prev_shape = stats.encoded_shape(old.sample, old.entropy)
        else:
            prev_kind, prev_ent, prev_ratio, prev_printable, prev_random = "empty", 0.0, 1.0, 0.0, False
        prev_match = magic.kind_matches(magic.ext_of(prev_c.path), prev_kind)

    if match is None:  # the new name says nothing (renamed to .locked?): did the content change type?
        type_lost = bool(prev_match) and cur.kind not in ("empty", prev_kind)
    else:
        type_lost = bool(prev_match) and match is False

    shape = stats.encoded_shape(cur.sample, cur.entropy) if cur.kind in magic.TEXT_KINDS else None
    if new.content is not None and size:
        _remember(new.content, _Known(cur.kind, cur.entropy, cur.ratio, cur.printable, cur.random, shape))
    if shape is None:
        looks_encoded = False
    elif prev_c is not None and prev_size:
        looks_encoded = prev_kind not in magic.TEXT_KINDS or prev_shape is None
    else:
        looks_encoded = match is False

    return ContentFeatures(
        **base,
        created=created,
        size=size,
        prev_size=prev_size,
        kind=cur.kind,
        prev_kind=prev_kind,
        kind_matches_ext=match,
        type_lost=type_lost,
        entropy=round(cur.entropy, 4),
        prev_entropy=_round(prev_ent),
        compress_ratio=round(cur.ratio, 4),
        prev_compress_ratio=_round(prev_ratio),
        random=cur.random,
        prev_random=prev_random,
        chunk_overlap=_round(chunk_overlap),
        changed_blocks=_round(changed_blocks),
        changed_blocks_random=_round(changed_random),
        header_only_change=header_only,
        zero_fill=cur.kind == "zeros",
        constant_fill=cur.kind == "constant",
        printable=round(cur.printable, 4),
        prev_printable=_round(prev_printable),
        looks_encoded=looks_encoded,
        bytes_sampled=cost,
    )


@contextmanager
def _prev_reads() -> Iterator[None]:
    """VaultError (not VaultCorrupt) while reading the previous content: it is gone, start over."""
    try:
        yield
    except VaultCorrupt:
        raise
    except VaultError as exc:
        raise _PrevUnavailable() from exc


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _read_new(path: bytes, new: VersionRecord, vault: VaultReader, lay_new: _Layout | None,
              reader: int | LiveReader | None, side: _Side, offsets: list[int]) -> int:
    """Fill side with the new content at offsets: from the live file while it is still the captured
    version, else from the vault. Returns the bytes read (vault: whole chunks decoded)."""
    size, B = new.size, side.B
    whole = size <= SMALL_FILE
    live = _Live(path, new, reader)
    try:
        if live.current():
            if whole:
                data = live.read(0, size)
                if data is not None and live.current():
                    side.fill_whole(data, offsets)
                    return size
            else:
                got: dict[int, bytes] = {}
                for o in offsets:
                    blk = live.read(o, B)
                    if blk is None:
                        break
                    got[o] = blk
                else:
                    if live.current():
                        side.fill(got)
                        return sum(len(b) for b in got.values())
    finally:
        live.close()
    # gone, replaced or changed while we read: the vault has exactly the captured bytes
    assert new.content is not None
    if whole:
        got, cost = _read_vault(vault, new.content, lay_new, [(0, size)])
        side.fill_whole(got.get(0, b""), offsets)
    else:
        got, cost = _read_vault(vault, new.content, lay_new, [(o, B) for o in offsets])
        side.fill(got)
    return cost


def _read_prev(vault: VaultReader, prev: VersionRecord, side: _Side, new_side: _Side,
               lay_new: _Layout | None, lay_prev: _Layout | None, offsets: list[int]) -> int:
    """Fill side with the previous content at offsets; returns the bytes decoded from the vault.
    A block whose chunks (ids and offsets) are the same in both layouts is taken from the new side."""
    assert prev.content is not None
    psize, B = prev.size, side.B
    if psize <= SMALL_FILE:
        got, cost = _read_vault(vault, prev.content, lay_prev, [(0, psize)])
        side.fill_whole(got.get(0, b""), offsets)
        return cost
    need: list[tuple[int, int]] = []
    for o in offsets:
        n = min(B, psize - o)
        ns = new_side.blocks.get(o)
        if (ns is not None and len(ns) >= n and lay_new is not None and lay_prev is not None
                and lay_new.pieces(o, n) == lay_prev.pieces(o, n)):
            side.blocks[o] = ns if len(ns) == n else stats.SpanStats(ns.data[:n])
        else:
            need.append((o, n))
    got, cost = _read_vault(vault, prev.content, lay_prev, need)
    side.fill(got)
    return cost


def _deleted(base: dict, prev: VersionRecord | None, vault: VaultReader, B: int) -> ContentFeatures:
    """A tombstone: describe what went, from the first and last blocks of the deleted content."""
    if prev is None:
        return ContentFeatures(**base, change="deleted", kind="empty")
    assert prev.content is not None
    psize = prev.size
    tail = max(0, psize - B)
    try:
        got, cost = _read_vault(vault, prev.content, None, [(0, B), (tail, B)])
    except VaultCorrupt:
        raise
    except VaultError as exc:
        log.info("deleted content unavailable path=%r err=%s", base["path"], exc)
        return ContentFeatures(**base, change="deleted", kind="empty", prev_size=psize)
    side = _Side(B)
    side.fill(got)
    old = _Summary(side, sorted({0, tail}), psize, tail)
    return ContentFeatures(**base, change="deleted", kind="empty", size=0, prev_size=psize,
                           prev_kind=old.kind, prev_entropy=round(old.entropy, 4),
                           prev_compress_ratio=round(old.ratio, 4), bytes_sampled=cost)
