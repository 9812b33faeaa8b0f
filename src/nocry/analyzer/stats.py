"""Pure statistics on byte strings: entropy, compressibility, printable share, encoded-text shape.

    h = histogram(block)                     # 256 counts
    entropy_of(h, len(block))                # Shannon bits/byte, 0..8
    compress_ratio(block)                    # zstd level 1: compressed / raw, capped at 1.0
    span = SpanStats(block)                  # the above, computed on first use and kept
    looks_random(span)                       # entropy >= random_entropy_threshold(len) and ratio >= 0.95
    became_random(new_span, old_span)        # absolute or relative jump (see below)
    printable_ratio(block)                   # printable ASCII, plus high bytes when valid UTF-8
    encoded_shape(sample, entropy)           # "base64" / "hex" / None

"Random" (what encryption output looks like), judged on one span of bytes:

- absolute: entropy >= 7.2 bits/byte (spans of 1 KiB or more; shorter spans cannot reach 8, so the
  bar is 7.2 scaled by the entropy that n uniform random bytes have on average, computed exactly:
  6.6 at 256 bytes, 5.3 at 64) and zstd level 1 saves less than 5 % (ratio >= 0.95);
- ``became_random(new, old)``: the new span is random and the old one was not, OR the relative jump
  of intermittent encryption (every other 16 bytes encrypted lifts a text block from ~4.5 to ~6.9
  bits/byte, never to 7.2): entropy up by >= 1.5 bits/byte AND zstd ratio up by >= 0.25.

Nothing here reads files or logs; the only state is a per-thread zstd compressor and a cache of
``expected_random_entropy`` values.
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache

import numpy
import zstandard

__all__ = [
    "RANDOM_ENTROPY",
    "RANDOM_RATIO",
    "JUMP_ENTROPY",
    "JUMP_RATIO",
    "MIN_JUDGED",
    "histogram",
    "entropy_of",
    "entropy",
    "compress_ratio",
    "expected_random_entropy",
    "random_entropy_threshold",
    "looks_random",
    "became_random",
    "SpanStats",
    "printable_counts",
    "printable_ratio",
    "utf8_valid",
    "encoded_shape",
]

#: bits/byte a span of >= 1 KiB needs to count as random (4 KiB of os.urandom: 7.94..7.96)
RANDOM_ENTROPY = 7.2
#: zstd level-1 compressed/raw ratio a span needs to count as incompressible
RANDOM_RATIO = 0.95
#: relative criterion: entropy and ratio increases that make a changed span "became random"
JUMP_ENTROPY = 1.5
JUMP_RATIO = 0.25
#: spans shorter than this are not judged at all: too few bytes to tell noise from an edit
MIN_JUDGED = 64
#: spans at least this long are held to the full RANDOM_ENTROPY
_FULL_LENGTH = 1024

_tls = threading.local()
#: c * log2(c) for the counts a 4 KiB block can have
_XLOGX = [0.0, 0.0] + [c * math.log2(c) for c in range(2, 4097)]

# printable: ASCII 0x20..0x7e plus the usual whitespace controls
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F)) + b"\t\n\r\f\v"
_HIGH = bytes(range(0x80, 0x100))
_WHITESPACE = b" \t\r\n\f\v"
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_"
_HEX = b"0123456789abcdefABCDEF"


def histogram(data: bytes | memoryview) -> list[int]:
    """Counts of each byte value (index = byte value)."""
    # numpy's bincount: ~1.6 ns a byte against ~20 for collections.Counter, and the histogram is
    # the one per-byte cost of the analysis
    return numpy.bincount(numpy.frombuffer(data, dtype=numpy.uint8), minlength=256).tolist()


def entropy_of(hist: list[int], n: int) -> float:
    """Shannon entropy in bits/byte of a histogram over n bytes."""
    if n <= 0:
        return 0.0
    # H = log2 n - (1/n) * sum c log2 c; block-sized counts come from a table (a C-level sum)
    if n < len(_XLOGX):
        s = sum(map(_XLOGX.__getitem__, hist))
    else:
        s = sum(c * math.log2(c) for c in hist if c > 1)
    return max(0.0, math.log2(n) - s / n)


def entropy(data: bytes | memoryview) -> float:
    return entropy_of(histogram(data), len(data))


def _compressor() -> zstandard.ZstdCompressor:
    c = getattr(_tls, "zstd", None)
    if c is None:
        # no checksum or size in the frame: the ratio should measure the data, not the framing
        c = _tls.zstd = zstandard.ZstdCompressor(level=1, write_checksum=False, write_content_size=False)
    return c


def compress_ratio(data: bytes | memoryview) -> float:
    """zstd level-1 compressed size / raw size, capped at 1.0 (1.0: incompressible); 1.0 for b""."""
    n = len(data)
    if n == 0:
        return 1.0
    return min(1.0, len(_compressor().compress(data)) / n)


@lru_cache(maxsize=4096)
def expected_random_entropy(n: int) -> float:
    """The mean Shannon entropy (bits/byte) of n independent uniform random bytes, exactly:
    E[H] = log2 n - (256/n) * sum_j P(Binomial(n, 1/256) = j) * j log2 j."""
    if n <= 1:
        return 0.0
    p = 1.0 / 256
    lp, lq = math.log(p), math.log1p(-p)
    total = 0.0
    for j in range(2, n + 1):
        logpmf = math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * lp + (n - j) * lq
        if logpmf < -50 and j > n * p:  # the tail beyond the mean no longer contributes
            break
        total += math.exp(logpmf) * j * math.log2(j)
    return math.log2(n) - 256 * total / n


def random_entropy_threshold(n: int) -> float:
    """Entropy a span of n bytes needs to count as random: RANDOM_ENTROPY from 1 KiB up, scaled
    below by what random data of that length reaches on average."""
    if n >= _FULL_LENGTH:
        return RANDOM_ENTROPY
    return RANDOM_ENTROPY * expected_random_entropy(n) / expected_random_entropy(_FULL_LENGTH)


class SpanStats:
    """One span of bytes with its histogram, entropy and ratio computed on first use and kept: the
    ratio costs a few µs per 4 KiB, the histogram ~70-110 µs, so callers ask for the ratio first
    and share one SpanStats between the aggregate statistics and the randomness judgement."""

    __slots__ = ("data", "_hist", "_entropy", "_ratio", "_printable")

    def __init__(self, data: bytes):
        self.data = data
        self._hist: list[int] | None = None
        self._entropy: float | None = None
        self._ratio: float | None = None
        self._printable: int | None = None

    def __len__(self) -> int:
        return len(self.data)

    @property
    def has_hist(self) -> bool:
        return self._hist is not None

    @property
    def hist(self) -> list[int]:
        if self._hist is None:
            self._hist = histogram(self.data)
        return self._hist

    @property
    def entropy(self) -> float:
        if self._entropy is None:
            self._entropy = entropy_of(self.hist, len(self.data))
        return self._entropy

    @property
    def ratio(self) -> float:
        if self._ratio is None:
            self._ratio = compress_ratio(self.data)
        return self._ratio

    @property
    def printable(self) -> int:
        """Printable bytes in the span (``printable_counts``)."""
        if self._printable is None:
            self._printable = printable_counts(self.data)[0]
        return self._printable


def looks_random(span: SpanStats) -> bool:
    n = len(span)
    if n < MIN_JUDGED:
        return False
    return span.ratio >= RANDOM_RATIO and span.entropy >= random_entropy_threshold(n)


def became_random(new: SpanStats, old: SpanStats) -> bool:
    """Did a changed span turn into encryption-like data? (module docstring: absolute or jump).
    Ordered so that the cheap ratios settle most spans before any entropy is computed: text edits
    fail both ratio tests, and random-over-random (a zip re-saved) costs the old entropy only."""
    if len(new) < MIN_JUDGED:
        return False
    if new.ratio >= RANDOM_RATIO:
        if looks_random(old):
            return False  # nothing to become; the jump needs an old ratio <= 1 - JUMP_RATIO anyway
        if new.entropy >= random_entropy_threshold(len(new)):
            return True
    return new.ratio - old.ratio >= JUMP_RATIO and new.entropy - old.entropy >= JUMP_ENTROPY


def utf8_valid(data: bytes) -> bool:
    """Is data valid UTF-8, allowing a sequence cut at either end (data is a sampled block)?"""
    start = 0
    while start < min(3, len(data)) and 0x80 <= data[start] <= 0xBF:
        start += 1  # continuation bytes of a character that began before the block
    try:
        data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        # only "unexpected end of data" within the last 3 bytes is a cut, anything else is invalid
        return exc.reason == "unexpected end of data" and exc.start >= len(data) - start - 3
    return True


def printable_counts(data: bytes) -> tuple[int, int]:
    """(printable bytes, total): printable ASCII and whitespace, plus bytes >= 0x80 when data is
    valid UTF-8 (so UTF-8 text of any script counts, random data and bit-flipped text do not)."""
    rest = data.translate(None, _PRINTABLE_ASCII)  # the bytes that are not printable ASCII
    good = len(data) - len(rest)
    if rest:
        high = len(rest) - len(rest.translate(None, _HIGH))
        if high and utf8_valid(data):
            good += high
    return good, len(data)


def printable_ratio(data: bytes) -> float:
    good, n = printable_counts(data)
    return good / n if n else 0.0


def encoded_shape(sample: bytes, entropy_value: float) -> str | None:
    """"hex" or "base64" when sample reads like an encoding of random bytes: (almost) nothing but
    that alphabet outside line breaks, (almost) no spaces, at least 128 such characters and the
    entropy of encoded random data (hex: 4 bits/char, base64: 6; encoded plain text stays lower).
    Words, punctuation and spaces of ordinary text, code and CSV fail the alphabet test."""
    body = sample.translate(None, _WHITESPACE)
    n = len(body)
    if n < 128 or sample.count(b" ") > len(sample) // 200:
        return None
    if len(body.translate(None, _HEX)) <= n // 100 and entropy_value >= 3.7:
        return "hex"
    if len(body.translate(None, _B64)) <= n // 100 and entropy_value >= 5.5:
        return "base64"
    return None
