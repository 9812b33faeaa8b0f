"""Plain data the analyzer hands to the detector: what changed between two versions of one object.

Every field is computed from the new version and, when there is one, the previous version in the
vault. ``None`` means "not applicable" (no previous version, or too small to say).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from nocry.events import path_from_json, path_to_json

__all__ = ["ContentFeatures"]


@dataclass(frozen=True, slots=True)
class ContentFeatures:
    type: str = "features"  # record type in recordings
    path: bytes = b""
    time_ns: int = 0  # capture time of the new version (the detector's clock for this record)
    subject_pid: int = 0  # the subject that produced the version (0: unknown)
    size: int = 0
    prev_size: int | None = None
    ext: str = ""  # lower-case extension without dot, "" if none
    kind: str = "unknown"  # detected type family of the new content: zip, ooxml, odf, pdf, jpeg, png, gif, sqlite, gzip, zstd, xz, bzip2, 7z, rar, gpg, text, empty, zeros, constant, unknown, ...
    prev_kind: str | None = None
    #: does the detected type fit the extension? None when the extension says nothing
    kind_matches_ext: bool | None = None
    #: the previous version's type fitted its extension and the new one does not (or is unknown)
    type_lost: bool = False
    entropy: float = 0.0  # Shannon bits/byte over the sampled blocks of the new content (0..8)
    prev_entropy: float | None = None
    #: zstd(level 1) compressed / raw size over the sampled blocks (1.0: incompressible)
    compress_ratio: float = 1.0
    prev_compress_ratio: float | None = None
    #: the sampled content looks like random data (ciphertext), judged against what random data
    #: of the sample's length shows: a short sample cannot reach 8 bits/byte
    random: bool = False
    prev_random: bool | None = None
    #: fraction of the previous version's chunks (by id) still present in the new one (0..1)
    chunk_overlap: float | None = None
    #: fraction of compared fixed-size blocks that differ from the previous version
    changed_blocks: float | None = None
    #: fraction of the *changed* blocks whose new content looks random (high entropy, incompressible)
    #: while the same block before did not: partial / intermittent encryption
    changed_blocks_random: float | None = None
    #: the first 4 KiB changed while most of the rest did not (header-only encryption / corruption)
    header_only_change: bool = False
    #: the new content is all zero bytes, or one repeated byte
    zero_fill: bool = False
    constant_fill: bool = False
    #: fraction of printable ASCII/UTF-8 bytes in the samples (base64 output is ~1.0 with entropy ~6)
    printable: float = 0.0
    #: the same for the previous version: bit-flipped text keeps its entropy but drops from ~1.0 to ~0
    prev_printable: float | None = None
    #: base64/hex-looking text replacing content of another type
    looks_encoded: bool = False
    #: bytes actually read for the analysis (cost accounting)
    bytes_sampled: int = 0
    #: BLAKE3 of the new content, hex ("" for tombstones): the same ransom note in many folders
    content_hash: str = ""
    #: the new content is exactly what another object held before (copied over from another
    #: file: a wiper writing plausible data, or ``cp a b``)
    copied_from: bytes | None = None
    #: "content" for a new version, "deleted" for a tombstone (then size is 0 and prev_* describe
    #: what was deleted)
    change: str = "content"
    #: the object did not exist before this version (a new file)
    created: bool = False
    #: for a deletion inside a git working tree whose metadata a related process writes: whether
    #: the repository holds the deleted content as a blob (None: not looked up, or unverifiable)
    in_repo: bool | None = None

    def to_record(self) -> dict[str, Any]:
        rec = asdict(self)
        rec.update(path_to_json(self.path))
        rec.pop("copied_from", None)
        if self.copied_from is not None:
            rec.update(path_to_json(self.copied_from, "copied_from"))
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> ContentFeatures:
        data = {k: v for k, v in rec.items() if k in cls.__dataclass_fields__ and not k.endswith("_b64")}
        data["path"] = path_from_json(rec)
        data["copied_from"] = path_from_json(rec, "copied_from") if rec.get("copied_from") is not None else None
        return cls(**data)
