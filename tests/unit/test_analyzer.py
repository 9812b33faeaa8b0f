"""Analyzer tests: statistics, type detection, Vault.read_range, and analyze() on real documents
against the damage the design names (full, intermittent, partial and header-only encryption,
base64/hex output, bit flips, zero/constant fill, plausible-data wipes) and ordinary work (edits,
appends, re-encodes, new archives).

Every scenario stores the old and the new content in a real vault in a temp dir, writes the new
content to the live file, and checks the features. Content is generated deterministically (seeded
random words, a hash-based keystream standing in for a cipher).
"""

from __future__ import annotations

import base64
import dataclasses
import bz2
import gzip
import hashlib
import io
import lzma
import os
import random
import sqlite3
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import zstandard

from nocry.analyzer import ContentFeatures, analyze, magic, stats
from nocry.analyzer.features import SMALL_FILE, uniform_offsets
from nocry.config import VaultConfig
from nocry.errors import VaultCorrupt, VaultError
from nocry.events import Subject
from nocry.vault import Vault, VersionRecord
from nocry.vault.packs import BLOB_HEADER_SIZE

KIB = 1024
MIB = 1 << 20
WORDS = ("the quarterly budget report shows revenue growth in every region while costs of the new "
         "office remained within plan and the board approved hiring for sales support research "
         "marketing engineering next year with a review in march").split()


# -- content makers --------------------------------------------------------------------------------


def words(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    out, line = [], []
    for _ in range(n):
        line.append(rng.choice(WORDS))
        if len(line) >= 12:
            out.append(" ".join(line).capitalize() + ".")
            line = []
    return ("\n".join(out) + "\n").encode()


def text_of(size: int, seed: int) -> bytes:
    data = words(size // 5 + 100, seed)
    while len(data) < size:
        data += words(size // 5, seed + len(data))
    return data[:size]


def csv_of(rows: int, seed: int) -> bytes:
    rng = random.Random(seed)
    lines = [b"id,name,amount,date"]
    lines += [b"%d,%s,%d.%02d,2024-%02d-%02d" % (i, rng.choice(WORDS).encode(), rng.randint(0, 9999),
                                                 rng.randint(0, 99), rng.randint(1, 12), rng.randint(1, 28))
              for i in range(rows)]
    return b"\n".join(lines) + b"\n"


def keystream(n: int, key: bytes = b"k") -> bytes:
    """A deterministic stand-in for AES-CTR output: BLAKE2b in counter mode."""
    out = bytearray()
    ctr = 0
    while len(out) < n:
        out += hashlib.blake2b(ctr.to_bytes(8, "little"), key=key).digest()
        ctr += 1
    return bytes(out[:n])


def encrypt(data: bytes, key: bytes = b"k") -> bytes:
    return bytes(a ^ b for a, b in zip(data, keystream(len(data), key)))


def every_other_16(data: bytes) -> bytes:
    """Intermittent encryption: bytes 0-15 encrypted, 16-31 kept, 32-47 encrypted, ..."""
    ks = keystream(len(data))
    out = bytearray(data)
    for i in range(0, len(out), 32):
        for j in range(i, min(i + 16, len(out))):
            out[j] ^= ks[j]
    return bytes(out)


def encrypt_range(data: bytes, start: int, n: int) -> bytes:
    return data[:start] + encrypt(data[start : start + n]) + data[start + n :]


def docx_of(paragraphs: list[str]) -> bytes:
    import docx  # python-docx (test extras)

    d = docx.Document()
    for p in paragraphs:
        d.add_paragraph(p)
    bio = io.BytesIO()
    d.save(bio)
    return bio.getvalue()


def paragraphs(n: int, seed: int) -> list[str]:
    return [words(40, seed + i).decode().strip() for i in range(n)]


def xlsx_of(rows: int, seed: int) -> bytes:
    import openpyxl

    rng = random.Random(seed)
    wb = openpyxl.Workbook()
    ws = wb.active
    for r in range(rows):
        ws.append([r, rng.choice(WORDS), rng.random()])
    bio = io.BytesIO()
    wb.save(bio)
    return bio.getvalue()


def jpeg_of(quality: int) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (160, 120))
    img.putdata([((x * 7 + y) % 256, (x * y) % 256, (x + y * 3) % 256) for y in range(120) for x in range(160)])
    bio = io.BytesIO()
    img.save(bio, "JPEG", quality=quality)
    return bio.getvalue()


def sqlite_of(tmp_path: Path, rows: int, extra: int = 0) -> bytes:
    p = tmp_path / f"db-{rows}-{extra}.sqlite"
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, note TEXT)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, WORDS[i % len(WORDS)], words(8, i).decode()) for i in range(rows)])
    con.commit()
    if extra:
        con.executemany("INSERT INTO t (name, note) VALUES (?, ?)", [("added", "more text") for _ in range(extra)])
        con.execute("UPDATE t SET note = 'changed' WHERE id < 20")
        con.commit()
    con.close()
    return p.read_bytes()


def pdf_of(size: int, seed: int) -> bytes:
    """A PDF-shaped file: header, text objects and a deflated (random-looking) stream."""
    body = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    while len(body) < size // 4:
        body += b"(" + words(20, seed + len(body)).replace(b"\n", b" ") + b") Tj\n"
    body += b"4 0 obj\n<< /Length 5 0 R /Filter /FlateDecode >>\nstream\n" + keystream(size // 2, b"pdf") + b"\nendstream\nendobj\n"
    while len(body) < size - 64:
        body += b"(" + words(20, seed + len(body)).replace(b"\n", b" ") + b") Tj\n"
    return body[: size - 6] + b"%%EOF\n"


# -- a vault and a way to run a scenario -----------------------------------------------------------


class Lab:
    """A temp dir with a vault: store versions as capture would, run analyze on them."""

    def __init__(self, tmp_path: Path):
        self.dir = tmp_path / "files"
        self.dir.mkdir()
        self.vault = Vault(tmp_path / "vault", VaultConfig(reserve_mib=0), create=True)
        self.t = 1_700_000_000 * 10**9

    def store(self, path: bytes, data: bytes, **kw: object) -> VersionRecord:
        self.t += 10**9
        with self.vault.batch() as b:
            h, n = b.put_bytes(data)
            b.add(VersionRecord(path=path, time_ns=self.t, kind="content", ftype="file", size=n, content=h,
                                mode=0o100644, subject=Subject(pid=4242), **kw))  # type: ignore[arg-type]
        rec = self.vault.latest(path)
        assert rec is not None
        return rec

    def path(self, name: str) -> bytes:
        return os.fsencode(self.dir / name)

    def run(self, name: str, old: bytes | None, new: bytes, *, write: bool = True, **kw: object) -> ContentFeatures:
        p = self.path(name)
        prev = self.store(p, old) if old is not None else None
        cur = self.store(p, new)
        if write:
            Path(os.fsdecode(p)).write_bytes(new)
        return analyze(p, cur, prev, self.vault, **kw)  # type: ignore[arg-type]


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


# -- stats -----------------------------------------------------------------------------------------


def test_entropy_bounds() -> None:
    assert stats.entropy(b"") == 0.0
    assert stats.entropy(b"a" * 1000) == 0.0
    assert stats.entropy(bytes(range(256)) * 16) == pytest.approx(8.0)
    assert stats.entropy(b"ab" * 100) == pytest.approx(1.0)
    big = bytes(range(256)) * 300  # counts beyond the c*log2(c) table
    assert stats.entropy(big) == pytest.approx(8.0)


def test_expected_random_entropy_matches_simulation() -> None:
    rng = random.Random(7)
    for n in (64, 256, 1024, 4096):
        sim = sum(stats.entropy(rng.randbytes(n)) for _ in range(300)) / 300
        assert stats.expected_random_entropy(n) == pytest.approx(sim, abs=0.02)
    thresholds = [stats.random_entropy_threshold(n) for n in (64, 128, 256, 512, 1024, 4096)]
    assert thresholds == sorted(thresholds)
    assert thresholds[-1] == thresholds[-2] == stats.RANDOM_ENTROPY
    # random data of every judged length passes its threshold
    for n in (64, 100, 256, 700, 1024, 4096):
        assert all(stats.looks_random(stats.SpanStats(rng.randbytes(n))) for _ in range(50)), n


def test_became_random() -> None:
    text = text_of(4096, 1)
    S = stats.SpanStats
    assert stats.became_random(S(encrypt(text)), S(text))
    assert stats.became_random(S(every_other_16(text)), S(text))  # the relative criterion
    assert not stats.looks_random(S(every_other_16(text)))  # ... which the absolute one misses
    assert not stats.became_random(S(text_of(4096, 2)), S(text))  # other text
    assert not stats.became_random(S(keystream(4096, b"a")), S(keystream(4096, b"b")))  # random before
    assert not stats.became_random(S(encrypt(text[:40])), S(text[:40]))  # too short to judge
    assert stats.became_random(S(encrypt(text[:256])), S(text[:256]))  # short, scaled threshold
    assert not stats.became_random(S(base64.b64encode(text[:3000])), S(text[:4000]))


def test_printable() -> None:
    text = text_of(8192, 3)
    assert stats.printable_ratio(text) == 1.0
    assert stats.printable_ratio("Καλημέρα κόσμε, 你好世界\n".encode() * 50) == 1.0
    assert stats.printable_ratio(bytes(b ^ 0xFF for b in text)) < 0.05  # bit flip
    assert 0.3 < stats.printable_ratio(keystream(8192)) < 0.5
    assert stats.printable_ratio("le café est très bon aujourd'hui et demain\n".encode("latin-1") * 50) > 0.9
    assert stats.utf8_valid("é".encode() * 10)
    assert stats.utf8_valid("é".encode()[1:] + b"abc" + "é".encode()[:1])  # cut at both ends
    assert not stats.utf8_valid(b"abc\xff\xfeabc")


def test_encoded_shape() -> None:
    ct = keystream(6000)
    b64 = base64.encodebytes(ct)
    assert stats.encoded_shape(b64, stats.entropy(b64)) == "base64"
    hx = ct.hex().encode()
    assert stats.encoded_shape(hx, stats.entropy(hx)) == "hex"
    for normal in (text_of(8000, 4), csv_of(300, 4), Path(__file__).read_bytes()[:8000]):
        assert stats.encoded_shape(normal, stats.entropy(normal)) is None
    digits = b"".join(b"%d" % random.Random(1).randint(0, 9) for _ in range(2000))
    assert stats.encoded_shape(digits, stats.entropy(digits)) is None  # decimal: not hex-of-random


# -- magic -----------------------------------------------------------------------------------------


def kind_of(data: bytes) -> str:
    B = 4096
    offs = uniform_offsets(len(data), B, 16)
    sample = b"".join(data[o : o + B] for o in offs)
    printable = sum(stats.printable_counts(data[o : o + B])[0] for o in offs) / len(sample) if sample else 0.0
    return magic.detect_kind(data[:B], data[-B:], len(data), sample, printable)


def _zip(members: list[tuple[str, bytes]], stored_first: bool = False) -> bytes:
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as z:
        for i, (name, data) in enumerate(members):
            z.writestr(name, data, compress_type=zipfile.ZIP_STORED if (stored_first and i == 0) else zipfile.ZIP_DEFLATED)
    return bio.getvalue()


def _tar() -> bytes:
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w") as t:
        info = tarfile.TarInfo("a.txt")
        data = text_of(3000, 9)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return bio.getvalue()


def _image(fmt: str) -> bytes:
    from PIL import Image

    bio = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(bio, fmt)
    return bio.getvalue()


def test_detect_kind_documents(tmp_path: Path) -> None:
    import pptx
    from odf.opendocument import OpenDocumentText
    from odf.text import P

    assert kind_of(docx_of(["hello"])) == "ooxml"
    assert kind_of(xlsx_of(5, 1)) == "ooxml"  # openpyxl writes [Content_Types].xml last
    bio = io.BytesIO()
    pptx.Presentation().save(bio)
    assert kind_of(bio.getvalue()) == "ooxml"
    doc = OpenDocumentText()
    doc.text.addElement(P(text="hello"))
    odt = tmp_path / "a.odt"
    doc.save(str(odt))
    assert kind_of(odt.read_bytes()) == "odf"
    assert kind_of(_zip([("mimetype", b"application/epub+zip"), ("a.xhtml", b"<html/>")], stored_first=True)) == "epub"
    assert kind_of(_zip([("notes.txt", text_of(5000, 1)), ("b.bin", keystream(5000))])) == "zip"
    assert kind_of(pdf_of(20000, 1)) == "pdf"
    assert kind_of(sqlite_of(tmp_path, 50)) == "sqlite"
    assert kind_of(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600)) == "ole"
    assert kind_of(b"{\\rtf1\\ansi hello}") == "rtf"


def test_detect_kind_media_and_archives() -> None:
    assert kind_of(jpeg_of(80)) == "jpeg"
    for fmt, kind in (("PNG", "png"), ("GIF", "gif"), ("TIFF", "tiff"), ("BMP", "bmp"), ("WEBP", "webp")):
        assert kind_of(_image(fmt)) == kind, fmt
    text = text_of(5000, 2)
    assert kind_of(gzip.compress(text)) == "gzip"
    assert kind_of(bz2.compress(text)) == "bzip2"
    assert kind_of(lzma.compress(text)) == "xz"
    assert kind_of(zstandard.ZstdCompressor().compress(text)) == "zstd"
    assert kind_of(_tar()) == "tar"
    assert kind_of(b"7z\xbc\xaf\x27\x1c\x00\x04" + keystream(500)) == "7z"
    assert kind_of(b"Rar!\x1a\x07\x01\x00" + keystream(500)) == "rar"
    assert kind_of(Path(sys.executable).resolve().read_bytes()[:8192]) == "elf"
    assert kind_of(b"\x00\x00\x00\x20ftypisom" + keystream(500)) == "mp4"
    assert kind_of(b"\x1a\x45\xdf\xa3" + keystream(500)) == "mkv"
    assert kind_of(b"ID3\x04\x00" + keystream(500)) == "mp3"


def test_detect_kind_gpg() -> None:
    # gpg -c: SKESK v4 (AES256, iterated+salted S2K) then SEIPD, as gpg 2.2 writes it
    skesk = bytes.fromhex("8c0d04090302") + bytes.fromhex("9fafafbd137d6c60ff") + b"\xd2\x47\x01" + keystream(80)
    assert kind_of(skesk) == "gpg"
    # gpg -e: PKESK v3 with an 8-byte key id and algorithm 18 (ECDH)
    assert kind_of(b"\x84\x5e\x03" + bytes(range(8)) + b"\x12" + keystream(100)) == "gpg"
    # gpg -s: compressed packet, ZIP
    assert kind_of(b"\xa3\x01" + keystream(100)) == "gpg"
    assert kind_of(b"-----BEGIN PGP MESSAGE-----\n\n" + base64.encodebytes(keystream(300))) == "gpg"
    # random data rarely passes for gpg (or anything else)
    rng = random.Random(3)
    kinds = [kind_of(rng.randbytes(4096)) for _ in range(3000)]
    assert kinds.count("unknown") >= 2990


def test_detect_kind_text_and_fills() -> None:
    assert kind_of(b"") == "empty"
    assert kind_of(bytes(5000)) == "zeros"
    assert kind_of(bytes(3)) == "zeros"
    assert kind_of(b"\xff" * 5000) == "constant"
    assert kind_of(b"A" * 10) == "text"  # too short to call a fill
    assert kind_of(text_of(30000, 1)) == "text"
    assert kind_of(csv_of(100, 1)) == "text"
    assert kind_of("Grüße aus Köln\n".encode() * 100) == "text"
    assert kind_of(("Grüße aus Köln\r\n" * 100).encode("utf-16")) == "text"
    eml = (b"Return-Path: <a@example.com>\nReceived: from mx.example.com by x\nFrom: A <a@example.com>\n"
           b"To: b@example.com\nSubject: budget\nDate: Tue, 1 Oct 2024 10:00:00 +0000\n\n" + text_of(2000, 5))
    assert kind_of(eml) == "eml"
    assert kind_of(b"From a@example.com Tue Oct  1 10:00:00 2024\n" + eml) == "eml"
    assert kind_of(b"Name: value\nOther: thing\n\nbody\n") == "text"  # headers, but not mail
    assert kind_of(bytes(b ^ 0xFF for b in text_of(5000, 1))) == "unknown"
    assert kind_of(keystream(5000)) == "unknown"


def test_extension_table() -> None:
    assert magic.ext_of(b"/a/b/Report.DOCX") == "docx"
    assert magic.ext_of(b"/a/.bashrc") == ""
    assert magic.ext_of(b"/a/b.tar.gz") == "gz"
    assert magic.ext_of(b"/a/noext") == "" and magic.ext_of(b"/a/x.") == ""
    assert magic.kind_matches("docx", "ooxml") is True
    assert magic.kind_matches("docx", "zip") is False
    assert magic.kind_matches("zip", "ooxml") is True
    assert magic.kind_matches("odt", "odf") is True
    assert magic.kind_matches("eml", "text") is True and magic.kind_matches("txt", "eml") is True
    assert magic.kind_matches("txt", "unknown") is False
    assert magic.kind_matches("txt", "empty") is None
    assert magic.kind_matches("locked", "unknown") is None
    assert magic.kind_matches("jpg", "jpeg") and magic.kind_matches("db", "sqlite") and magic.kind_matches("tgz", "gzip")
    assert magic.kind_matches("asc", "gpg") and magic.kind_matches("gpg", "gpg")


# -- Vault.read_range ------------------------------------------------------------------------------


def test_read_range(tmp_path: Path) -> None:
    v = Vault(tmp_path / "v", VaultConfig(chunk_avg_kib=1, reserve_mib=0), create=True)
    rng = random.Random(11)
    data = rng.randbytes(300_000)
    with v.batch() as b:
        h, n = b.put_bytes(data)
        b.put_bytes(b"")
    assert len(v.content_chunks(h)) > 50
    for _ in range(200):
        off = rng.randrange(0, n + 100)
        length = rng.choice([0, 1, 100, 4096, 20000, n])
        assert v.read_range(h, off, length) == data[off : off + length]
    assert v.read_range(h, 0, n) == data
    assert v.read_range(h, n - 5, 4096) == data[-5:]
    assert v.read_range(h, n, 10) == b""
    with pytest.raises(ValueError):
        v.read_range(h, -1, 10)
    with pytest.raises(VaultError, match="not in the vault"):
        v.read_range(b"\x01" * 32, 0, 10)


def test_read_range_verifies_chunks(tmp_path: Path) -> None:
    v = Vault(tmp_path / "v", VaultConfig(reserve_mib=0), create=True)
    data = random.Random(12).randbytes(600_000)
    with v.batch() as b:
        h, _ = b.put_bytes(data)
    cids = v.content_chunks(h)
    cid, raw_len = cids[1]
    start = cids[0][1]
    con = sqlite3.connect(v.root / "index.sqlite")
    pack, off, stored = con.execute("SELECT pack, offset, stored_len FROM chunks WHERE id = ?", (cid,)).fetchone()
    con.close()
    path = v.root / "packs" / pack[:2] / pack
    raw = bytearray(path.read_bytes())
    raw[off + BLOB_HEADER_SIZE + stored // 2] ^= 0x01
    path.write_bytes(raw)
    assert v.read_range(h, 0, 100) == data[:100]  # the damaged chunk is not read
    with pytest.raises(VaultCorrupt, match=f"pack {pack} offset {off}"):
        v.read_range(h, start + raw_len // 2, 100)


# -- ordinary work ---------------------------------------------------------------------------------


def test_text_edit(lab: Lab) -> None:
    old = text_of(100 * KIB, 1)
    f = lab.run("notes.txt", old, old[:5000] + b"A NEW SENTENCE WAS TYPED HERE. " + old[5000:])
    assert (f.prev_kind, f.kind, f.kind_matches_ext, f.type_lost) == ("text", "text", True, False)
    assert f.changed_blocks_random == 0.0
    assert not f.looks_encoded and not f.header_only_change and not f.zero_fill
    assert f.printable == 1.0 and abs(f.entropy - f.prev_entropy) < 0.1
    assert f.subject_pid == 4242 and f.path == lab.path("notes.txt") and f.ext == "txt" and not f.created
    assert f.change == "content" and f.content_hash == lab.vault.latest(f.path).content.hex()


def test_csv_append(lab: Lab) -> None:
    old = csv_of(8000, 2)
    f = lab.run("ledger.csv", old, old + b"8000,added,1.00,2024-12-31\n")
    assert (f.kind, f.type_lost, f.changed_blocks, f.changed_blocks_random) == ("text", False, 0.0, 0.0)
    assert f.chunk_overlap >= 0.5 and f.size == f.prev_size + 27


def test_docx_edit(lab: Lab) -> None:
    paras = paragraphs(30, 1)
    f = lab.run("report.docx", docx_of(paras), docx_of(paras[:10] + ["An inserted paragraph."] + paras[10:]))
    assert (f.prev_kind, f.kind, f.kind_matches_ext, f.type_lost) == ("ooxml", "ooxml", True, False)
    assert f.changed_blocks_random <= 0.25  # deflate was random before and after
    assert not f.looks_encoded


def test_xlsx_and_sqlite_edits(lab: Lab, tmp_path: Path) -> None:
    f = lab.run("book.xlsx", xlsx_of(400, 1), xlsx_of(410, 1))
    assert (f.kind, f.type_lost) == ("ooxml", False) and f.changed_blocks_random <= 0.25
    f = lab.run("app.db", sqlite_of(tmp_path, 3000), sqlite_of(tmp_path, 3000, extra=200))
    assert (f.prev_kind, f.kind, f.type_lost, f.changed_blocks_random) == ("sqlite", "sqlite", False, 0.0)


def test_jpeg_reencoded(lab: Lab) -> None:
    f = lab.run("photo.jpg", jpeg_of(90), jpeg_of(60))
    assert (f.prev_kind, f.kind, f.type_lost, f.changed_blocks_random) == ("jpeg", "jpeg", False, 0.0)


def test_new_gzip_file(lab: Lab) -> None:
    f = lab.run("notes.txt.gz", None, gzip.compress(text_of(100 * KIB, 3)))
    assert (f.kind, f.kind_matches_ext, f.created, f.type_lost) == ("gzip", True, True, False)
    assert f.prev_size is None and f.prev_kind is None and f.chunk_overlap is None
    assert f.changed_blocks is None and f.changed_blocks_random is None
    assert f.entropy > 7.5 and not f.looks_encoded


def test_unchanged_content_metadata_version(lab: Lab) -> None:
    data = text_of(50 * KIB, 4)
    f = lab.run("same.txt", data, data)
    assert (f.chunk_overlap, f.changed_blocks, f.changed_blocks_random) == (1.0, 0.0, 0.0)
    assert f.prev_kind == f.kind == "text" and f.prev_entropy == f.entropy


# -- encryption ------------------------------------------------------------------------------------


def test_full_encryption(lab: Lab) -> None:
    for name, old in (("plan.docx", docx_of(paragraphs(30, 2))), ("plan.txt", text_of(100 * KIB, 5)),
                      ("plan.pdf", pdf_of(200 * KIB, 1))):
        f = lab.run(name, old, encrypt(old))
        assert f.type_lost and f.kind == "unknown" and f.kind_matches_ext is False, name
        assert f.entropy > 7.9 and f.compress_ratio >= 0.99 and f.chunk_overlap == 0.0, name
        assert f.changed_blocks == 1.0 and f.printable < 0.5, name
    assert f.changed_blocks_random >= 0.4  # pdf: its stream was random already
    f = lab.run("plan2.txt", text_of(100 * KIB, 5), encrypt(text_of(100 * KIB, 5)))
    assert f.changed_blocks_random == 1.0


def test_intermittent_every_other_16_bytes(lab: Lab) -> None:
    for name, old in (("memo.txt", text_of(100 * KIB, 6)), ("big.csv", csv_of(40000, 6))):
        f = lab.run(name, old, every_other_16(old))
        assert f.entropy < stats.RANDOM_ENTROPY  # an entropy threshold alone misses it ...
        assert f.changed_blocks == 1.0 and f.changed_blocks_random >= 0.9, name  # ... the jump does not
        assert f.type_lost and f.kind == "unknown", name
    assert f.size > SMALL_FILE  # the second one was sampled


def test_intermittent_database(lab: Lab, tmp_path: Path) -> None:
    old = sqlite_of(tmp_path, 3000)
    f = lab.run("crm.sqlite", old, every_other_16(old))
    assert f.type_lost and f.changed_blocks_random >= 0.9


def test_five_percent_header_big_file(lab: Lab) -> None:
    old = csv_of(60000, 7)
    assert len(old) > 1 * MIB
    f = lab.run("big.csv", old, encrypt_range(old, 0, len(old) // 20))
    assert f.header_only_change and f.type_lost
    assert f.changed_blocks_random == 1.0 and 0 < f.changed_blocks <= 0.2
    assert f.chunk_overlap >= 0.8
    assert f.bytes_sampled <= 2 * (16 + 2 + 4) * 4 * KIB + 8 * 256 * KIB  # samples + a few chunks


def test_five_percent_header_small_file(lab: Lab) -> None:
    old = text_of(100 * KIB, 8)
    f = lab.run("small.txt", old, encrypt_range(old, 0, len(old) // 20))
    assert f.header_only_change and f.type_lost and f.changed_blocks_random == 1.0
    assert f.changed_blocks <= 0.1


def test_five_percent_in_stripes(lab: Lab) -> None:
    old = csv_of(60000, 9)
    new = old
    stripe, period = len(old) // 100, len(old) // 5  # 5 stripes of 1 % each, the first at 0
    for start in range(0, len(old) - stripe, period):
        new = encrypt_range(new, start, stripe)
    f = lab.run("striped.csv", old, new)
    assert f.changed_blocks_random >= 0.8
    assert f.header_only_change or f.changed_blocks > 0.05
    assert f.type_lost
    # a stripe inside a block, past the header: judged on the changed span only
    old = text_of(200 * KIB, 10)
    f = lab.run("inner.txt", old, encrypt_range(old, 50 * KIB + 1000, 1500))
    assert f.changed_blocks_random == 1.0 and not f.type_lost and f.changed_blocks < 0.05


def test_header_only(lab: Lab) -> None:
    old = pdf_of(1 * MIB, 2)
    f = lab.run("scan.pdf", old, encrypt_range(old, 0, 4096))
    assert f.header_only_change and f.type_lost and (f.prev_kind, f.kind) == ("pdf", "unknown")
    assert f.changed_blocks_random == 1.0 and f.chunk_overlap > 0.9


def test_rename_to_new_extension(lab: Lab) -> None:
    old = docx_of(paragraphs(10, 3))
    prev = lab.store(lab.path("cv.docx"), old)
    p = lab.path("cv.docx.locked")
    cur = lab.store(p, encrypt(old), renamed_from=lab.path("cv.docx"))
    Path(os.fsdecode(p)).write_bytes(encrypt(old))
    f = analyze(p, cur, prev, lab.vault)
    assert f.kind_matches_ext is None and f.type_lost and f.ext == "locked"
    same = lab.store(lab.path("cv2.docx.bak"), old)
    assert not analyze(lab.path("cv2.docx.bak"), same, prev, lab.vault).type_lost


# -- low-entropy output ----------------------------------------------------------------------------


def test_base64_of_ciphertext(lab: Lab) -> None:
    doc = docx_of(paragraphs(20, 4))
    f = lab.run("offer.docx", doc, base64.encodebytes(encrypt(doc)))
    assert f.kind == "text" and f.type_lost and f.looks_encoded
    assert 5.5 < f.entropy < 6.2 and f.printable == 1.0
    txt = text_of(60 * KIB, 11)
    f = lab.run("diary.txt", txt, base64.b64encode(encrypt(txt)))
    assert f.kind == "text" and not f.type_lost and f.looks_encoded  # the extension still fits: looks_encoded tells
    f = lab.run("table.csv", csv_of(2000, 1), encrypt(csv_of(2000, 1)).hex().encode())
    assert f.looks_encoded
    # base64 replacing base64 (an attachment re-saved) is no news
    f = lab.run("blob.txt", base64.encodebytes(keystream(30000, b"x")), base64.encodebytes(keystream(30000, b"y")))
    assert not f.looks_encoded


def test_bit_flip(lab: Lab) -> None:
    old = text_of(80 * KIB, 12)
    f = lab.run("minutes.txt", old, bytes(b ^ 0xFF for b in old))
    assert f.type_lost and (f.prev_kind, f.kind) == ("text", "unknown")
    assert f.entropy == pytest.approx(f.prev_entropy, abs=1e-6)  # entropy cannot see it ...
    assert f.printable < 0.1 and f.prev_printable == 1.0  # ... printable can
    csv = csv_of(3000, 3)
    f = lab.run("flip.csv", csv, bytes(b ^ 0xFF for b in csv))
    assert f.type_lost and f.printable < 0.1


# -- wipers ----------------------------------------------------------------------------------------


def test_zero_and_constant_fill(lab: Lab) -> None:
    doc = docx_of(paragraphs(10, 5))
    f = lab.run("zeroed.docx", doc, bytes(len(doc)))
    assert f.zero_fill and not f.constant_fill and f.kind == "zeros" and f.type_lost
    f = lab.run("filled.txt", text_of(20000, 1), b"\xaa" * 20000)
    assert f.constant_fill and not f.zero_fill and f.type_lost
    f = lab.run("bigzero.bin", keystream(2 * MIB), bytes(2 * MIB))
    assert f.zero_fill and f.type_lost is False  # .bin says nothing


def test_plausible_data_wipe(lab: Lab) -> None:
    f = lab.run("contract.docx", docx_of(paragraphs(40, 100)), docx_of(paragraphs(40, 200)))
    assert (f.prev_kind, f.kind, f.type_lost) == ("ooxml", "ooxml", False)
    assert f.chunk_overlap == 0.0 and f.changed_blocks >= 0.9
    f = lab.run("essay.txt", text_of(300 * KIB, 1), text_of(300 * KIB, 2))
    assert (f.kind, f.type_lost, f.chunk_overlap, f.changed_blocks) == ("text", False, 0.0, 1.0)
    assert f.changed_blocks_random == 0.0


def test_truncation_and_empty(lab: Lab) -> None:
    f = lab.run("gone.docx", docx_of(["x"]), b"")
    assert (f.kind, f.size, f.kind_matches_ext, f.type_lost) == ("empty", 0, None, False)
    assert f.prev_size > 0 and f.changed_blocks is None
    f = lab.run("fresh.txt", b"", b"hello\n")
    assert f.prev_kind == "empty" and f.kind == "text" and not f.type_lost


# -- sampling, sources, costs ----------------------------------------------------------------------


def test_big_file_one_block_changed_reads_little(lab: Lab) -> None:
    old = keystream(8 * MIB, b"big")
    new = old[: 3 * MIB] + bytes(4096) + old[3 * MIB + 4096 :]
    f = lab.run("disk.img", old, new)
    assert f.chunk_overlap > 0.95 and f.changed_blocks <= 0.1 and not f.header_only_change
    live = (16 + 2 + 4) * 4 * KIB  # stat blocks + targeted blocks from the file
    assert f.bytes_sampled <= live + 4 * 256 * KIB  # + at most a few (max-size) chunks from the vault


def test_uniform_offsets() -> None:
    assert uniform_offsets(0, 4096, 16) == []
    assert uniform_offsets(10_000, 4096, 16) == [0, 4096, 8192]
    offs = uniform_offsets(50 * MIB, 4096, 16)
    assert len(offs) == 18 and offs[0] == 0 and offs[-1] == 50 * MIB - 4096
    assert all(o % 4096 == 0 for o in offs[:-1])


def test_stale_live_file_falls_back_to_vault(lab: Lab) -> None:
    old, new = text_of(40 * KIB, 1), encrypt(text_of(40 * KIB, 1))
    p = lab.path("moving.txt")
    prev = lab.store(p, old)
    cur = lab.store(p, new)
    Path(os.fsdecode(p)).write_bytes(old + b"more")  # written again after capture: size differs
    f = analyze(p, cur, prev, lab.vault)
    assert f.kind == "unknown" and f.type_lost  # the captured (encrypted) bytes were analysed
    os.unlink(p)
    assert analyze(p, cur, prev, lab.vault) == f  # gone: same answer from the vault
    os.symlink(b"/etc/hostname", p)
    assert analyze(p, cur, prev, lab.vault) == f  # a symlink swapped in is not followed
    os.unlink(p)
    os.mkfifo(p)
    assert analyze(p, cur, prev, lab.vault) == f  # nor does a FIFO hang us
    calls = []

    def reader(off: int, n: int) -> bytes:
        calls.append((off, n))
        return new[off : off + n]

    assert analyze(p, cur, prev, lab.vault, fd_or_path_reader=reader) == f and calls == [(0, len(new))]
    fd = os.open(lab.dir / "fd.txt", os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, new)
        assert analyze(p, cur, prev, lab.vault, fd_or_path_reader=fd) == f
        os.fstat(fd)  # still open: not ours to close
    finally:
        os.close(fd)


def test_same_size_rewrite_detected_by_mtime(lab: Lab) -> None:
    p = lab.path("m.txt")
    old = text_of(20 * KIB, 3)
    Path(os.fsdecode(p)).write_bytes(encrypt(old))
    st = os.stat(p)
    prev = lab.store(p, old)
    cur = lab.store(p, encrypt(old), mtime_ns=st.st_mtime_ns, ino=st.st_ino)
    f = analyze(p, cur, prev, lab.vault)
    Path(os.fsdecode(p)).write_bytes(old)  # same size, different bytes and mtime
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert analyze(p, cur, prev, lab.vault) == f and f.type_lost


def test_previous_content_gone_meanwhile(lab: Lab) -> None:
    """forget/prune removed the previous content between capture and analysis: no comparison."""
    old, new = text_of(30 * KIB, 2), encrypt(text_of(30 * KIB, 2))

    class Forgetful:
        def content_chunks(self, h: bytes) -> list[tuple[bytes, int]]:
            if h == prev.content:
                raise VaultError(f"content {h.hex()} is not in the vault")
            return lab.vault.content_chunks(h)

        def read_range(self, h: bytes, off: int, n: int) -> bytes:
            return lab.vault.read_range(h, off, n)

    p = lab.path("forgotten.txt")
    prev = lab.store(p, old)
    cur = lab.store(p, new)
    Path(os.fsdecode(p)).write_bytes(new)
    f = analyze(p, cur, prev, Forgetful())
    assert f.prev_size is None and f.changed_blocks is None and not f.created and f.kind == "unknown"


def test_tombstone(lab: Lab) -> None:
    p = lab.path("deleted.docx")
    prev = lab.store(p, docx_of(["bye"]))
    lab.t += 10**9
    with lab.vault.batch() as b:
        b.add(VersionRecord(path=p, time_ns=lab.t, kind="tombstone"))
    tomb = lab.vault.latest(p)
    f = analyze(p, tomb, prev, lab.vault)
    assert (f.change, f.size, f.prev_size, f.prev_kind, f.content_hash) == ("deleted", 0, prev.size, "ooxml", "")
    assert f.bytes_sampled > 0


def test_deterministic_and_recordable(lab: Lab) -> None:
    old = csv_of(20000, 4)
    p = lab.path("d.csv")
    prev = lab.store(p, old)
    cur = lab.store(p, every_other_16(old))
    Path(os.fsdecode(p)).write_bytes(every_other_16(old))
    a = analyze(p, cur, prev, lab.vault)
    assert a == analyze(p, cur, prev, lab.vault)
    assert ContentFeatures.from_record(a.to_record()) == a


@pytest.mark.parametrize("block,samples", [(4096, 16), (1024, 4), (65536, 2)])
def test_any_sizes_any_edits(lab: Lab, block: int, samples: int) -> None:
    """Sizes around every boundary, growing and shrinking, with odd sampling settings: no crash,
    fractions in range, and a big live file is never read beyond its samples."""
    rng = random.Random(block)
    sizes = [0, 1, 63, 64, 4095, 4096, 4097, SMALL_FILE - 1, SMALL_FILE, SMALL_FILE + 1, 700 * KIB]
    for i in range(12):
        a, b = rng.choice(sizes), rng.choice(sizes)
        old = text_of(a, i) if a else b""
        new = rng.choice([text_of(b, i + 1), keystream(b, b"%d" % i), old[:b] + bytes(max(0, b - a))])[:b]
        f = lab.run(f"any{block}-{i}.txt", old, new, sample_block=block, max_samples=samples)
        assert f.size == b and f.prev_size == a
        for v in (f.chunk_overlap, f.changed_blocks, f.changed_blocks_random, f.printable, f.prev_printable):
            assert v is None or 0.0 <= v <= 1.0
        assert 0.0 <= f.entropy <= 8.0 and 0.0 <= f.compress_ratio <= 1.0
        if b > SMALL_FILE:
            blocks = (samples + 2 + 4 + 2) * block  # stat + targeted + head/tail from the file
            assert f.bytes_sampled <= blocks + (samples + 8) * 256 * KIB + SMALL_FILE, (a, b)


@pytest.mark.parametrize("make_new", [lambda d: d + b"one more line\n", encrypt, lambda d: base64.b64encode(d)])
def test_a_known_previous_content_gives_the_same_features(lab: Lab, make_new) -> None:
    """The statistics of a content analysed before (saved again, a branch checked out back) are
    reused, not read back from the vault: the features must be exactly those of a cold analysis."""
    from nocry.analyzer import features

    old = text_of(40 * KIB, 7)
    new = make_new(old)
    features._KNOWN.clear()
    cold = lab.run("a.txt", old, new)
    features._KNOWN.clear()
    p = lab.path("b.txt")
    first = lab.store(p, old)
    Path(os.fsdecode(p)).write_bytes(old)
    analyze(p, first, None, lab.vault)  # analysed as new: now known
    assert first.content in features._KNOWN
    cur = lab.store(p, new)
    Path(os.fsdecode(p)).write_bytes(new)
    warm = analyze(p, cur, first, lab.vault)
    strip = dict(path=b"", time_ns=0, bytes_sampled=0)
    assert dataclasses.replace(warm, **strip) == dataclasses.replace(cold, **strip)
    assert warm.bytes_sampled <= cold.bytes_sampled
