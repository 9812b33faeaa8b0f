"""The reversible transforms the attack scenarios apply, and their inverses.

Every encrypting scenario uses AES-256-CTR with the run's random key and a random 16-byte initial
counter block ("nonce") per file. The keystream is tied to file offsets (byte ``o`` is XORed with
keystream byte ``o``), so encrypting only some ranges, and undoing them, needs nothing but the key,
the nonce and the list of ranges::

    ranges = ranges_for("partial-5pct", len(data))      # [(start, end), ...]
    enc    = xor_ranges(key, nonce, data, ranges)       # XOR is its own inverse:
    assert xor_ranges(key, nonce, enc, ranges) == data

``fork-per-file`` lets the system's ``openssl enc -aes-256-ctr -pbkdf2`` do the encryption;
``openssl_decrypt`` reverses it without openssl.
"""

from __future__ import annotations

import base64
import hashlib

from blake3 import blake3

__all__ = [
    "digest",
    "ranges_for",
    "xor_ranges",
    "bitflip",
    "b64_encrypt",
    "b64_decrypt",
    "WNCRY_MAGIC",
    "openssl_decrypt",
    "INPLACE_TRANSFORMS",
]

WNCRY_MAGIC = b"WANACRY!"
PAGE = 4096
# transforms that XOR some byte ranges of a file and keep its length
INPLACE_TRANSFORMS = ("full", "intermittent", "partial-5pct", "header-only", "bitflip")


def digest(data: bytes) -> str:
    return blake3(data).hexdigest()


def _cipher(key: bytes, nonce: bytes, offset: int):
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    counter = (int.from_bytes(nonce, "big") + offset // 16) % (1 << 128)
    enc = Cipher(algorithms.AES(key), modes.CTR(counter.to_bytes(16, "big"))).encryptor()
    if offset % 16:
        enc.update(b"\0" * (offset % 16))
    return enc


def ctr(key: bytes, nonce: bytes, data: bytes, offset: int = 0) -> bytes:
    """AES-CTR of ``data`` as if it sat at ``offset`` in the file."""
    return _cipher(key, nonce, offset).update(data)


def ranges_for(transform: str, size: int) -> list[tuple[int, int]]:
    """The byte ranges a transform changes, in ascending order (also the order they are written)."""
    if size == 0:
        return []
    if transform in ("full", "bitflip"):
        return [(0, size)]
    if transform == "intermittent":
        # every other 16 bytes: 16 encrypted, 16 left alone
        return [(o, min(o + 16, size)) for o in range(0, size, 32)]
    if transform == "header-only":
        return [(0, min(size, 1024 if size < 16 * 1024 else PAGE))]
    if transform == "partial-5pct":
        want = max(16, size * 5 // 100)
        if size < 20 * PAGE:
            return [(0, min(size, want))]  # small file: the first 5 %
        # stripes of 4 KiB spread evenly over the file, adding up to about 5 %
        count = max(1, round(want / PAGE))
        step = size / count
        out = []
        for i in range(count):
            start = int(i * step) // 16 * 16
            out.append((start, min(size, start + PAGE)))
        return out
    raise ValueError(f"unknown transform {transform!r}")


_FLIP = bytes(255 - i for i in range(256))


def bitflip(data: bytes) -> bytes:
    return data.translate(_FLIP)


def xor_ranges(key: bytes, nonce: bytes, data: bytes, ranges: list[tuple[int, int]], *, transform: str = "") -> bytes:
    """Apply (or, XOR being its own inverse, undo) a ranged transform."""
    if transform == "bitflip":
        return bitflip(data)
    if not ranges:
        return data
    if transform == "intermittent" or (len(ranges) > 1 and all(e - s <= 16 for s, e in ranges)):
        # the keystream of the whole file, kept on every other 16-byte block: 16 strided copies
        enc = ctr(key, nonce, data)
        out = bytearray(data)
        for j in range(16):
            out[j::32] = enc[j::32]
        return bytes(out)
    out = bytearray(data)
    for s, e in ranges:
        out[s:e] = ctr(key, nonce, data[s:e], s)
    return bytes(out)


def b64_encrypt(key: bytes, nonce: bytes, data: bytes) -> bytes:
    """Base64 of the ciphertext: a low-entropy encrypted file (76-character lines)."""
    return base64.encodebytes(ctr(key, nonce, data))


def b64_decrypt(key: bytes, nonce: bytes, data: bytes) -> bytes:
    return ctr(key, nonce, base64.decodebytes(data))


def openssl_decrypt(password: bytes, data: bytes) -> bytes:
    """Reverse ``openssl enc -aes-256-ctr -pbkdf2 -pass file:F`` (OpenSSL >= 1.1.1 defaults:
    ``Salted__`` + 8-byte salt, PBKDF2-HMAC-SHA256 with 10000 iterations giving key and IV)."""
    if data[:8] != b"Salted__" or len(data) < 16:
        raise ValueError("not an openssl salted file")
    salt = data[8:16]
    kiv = hashlib.pbkdf2_hmac("sha256", password, salt, 10000, 48)
    return ctr(kiv[:32], kiv[32:], data[16:])


def torn_candidates(current: bytes, transformed: bytes, ranges: list[tuple[int, int]]) -> list[bytes]:
    """Possible originals of a file whose in-place write was cut short (a kill mid-write).

    A killed write leaves the first ``c`` bytes new and the rest old, with ``c`` at a page boundary
    or a range boundary; ``transformed`` (the transform applied to ``current``) gives the old bytes
    of the new part. Rare; the caller checks each candidate against the recorded hash.
    """
    cuts: set[int] = set()
    for s, e in ranges:
        cuts.add(s)
        cuts.add(e)
        cuts.update(range((s // PAGE + 1) * PAGE, e, PAGE))
    return [transformed[:c] + current[c:] for c in sorted(cuts) if 0 < c < len(current)]
