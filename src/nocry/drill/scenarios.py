"""The drill scenarios: what each simulated attack (or benign job) does to one file.

    sc = SCENARIOS["encrypt-in-place"]
    ctx = Context(fs, manifest, run, key, plan)
    for seq, rel in files:                  # sorted by path; the worker sleeps --delay between files
        sc.action(ctx, seq, rel)            # reads, computes, logs the change, makes it, logs "done"

Each action computes the new bytes first, appends the change to the manifest (with the hash of the
file before and, where known, after), then makes the change, then appends ``done``: so ``drill undo``
can tell, for every file, whether the change happened, and reverse it with the recorded key, nonce or
kept copy. Wipers keep the original bytes under ``.nocry-drill.d/undo/RUN/`` before wiping.

``style`` says how the worker runs a scenario: ``single`` (one attacker process), ``workers``
(cooperating processes under one parent), ``shell`` (a /bin/sh loop around the openssl tool).
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import secrets
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nocry.drill.crypto import WNCRY_MAGIC, b64_encrypt, ctr, digest, ranges_for, xor_ranges
from nocry.drill.marker import Manifest
from nocry.drill.safefs import STATE_DIR_NAME, DrillFS

__all__ = ["Scenario", "SCENARIOS", "Context", "RANSOM_NOTE", "RANSOM_NOTE_NAME", "MAX_FILE_SIZE", "select_files"]

log = logging.getLogger(__name__)

RANSOM_NOTE_NAME = "@Please_Read_Me@.txt"
RANSOM_NOTE = b"""\
Ooops, your important files are encrypted.

THIS IS A NOCRY DRILL. Nothing was lost: this note and the .WNCRY files were made by a simulated
attack in a marked drill directory. To put every file back run:  nocry drill undo <drill directory>

(A real ransom note would ask for bitcoin here. Never pay; restore from your versions.)
"""
# bigger files are skipped: the attacks hold a whole file in memory
MAX_FILE_SIZE = 256 * 1024 * 1024


@dataclass
class Context:
    """What an attacker process needs for every file."""

    fs: DrillFS
    manifest: Manifest
    run: str
    key: bytes
    plan: dict[str, Any]
    notes: set[str] = field(default_factory=set)  # folders that got a ransom note
    by_ext: dict[str, list[str]] = field(default_factory=dict)  # wipe-plausible's donors

    def change(self, rec: dict[str, Any]) -> dict[str, Any]:
        self.manifest.append(rec)
        return rec

    def done(self, rec: dict[str, Any]) -> None:
        self.manifest.append({"op": "done", "id": rec["id"]})

    def keep(self, seq: int, rel: str) -> str:
        """Copy the original aside (inside the state dir) before a wiper destroys it."""
        dst = f"{STATE_DIR_NAME}/undo/{self.run}/{seq}.orig"
        if self.fs.exists(dst):
            self.fs.unlink(dst)
        self.fs.copy_to(rel, dst)
        return dst


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # "attack" or "benign"
    summary: str
    action: Callable[[Context, int, str], None] | None
    style: str = "single"  # single | workers | shell
    default_delay: float = 0.0
    needs: tuple[str, ...] = ()  # system commands
    modules: tuple[str, ...] = ("cryptography",)  # Python modules of the drill extra


# ---------------------------------------------------------------------------------------------
# helpers


def _stat_fields(fs: DrillFS, rel: str) -> dict[str, int]:
    st = fs.lstat(rel)
    assert st is not None
    return {"mode": st.st_mode & 0o7777, "mtime_ns": st.st_mtime_ns}


def _read_victim(ctx: Context, rel: str) -> bytes | None:
    st = ctx.fs.lstat(rel)
    if st is not None and st.st_size > MAX_FILE_SIZE:
        ctx.manifest.append({"op": "skip", "path": rel, "reason": f"larger than {MAX_FILE_SIZE} bytes"})
        return None
    return ctx.fs.read(rel)


def _dirname(rel: str) -> str:
    return rel.rpartition("/")[0]


def _join(d: str, name: str) -> str:
    return f"{d}/{name}" if d else name


# ---------------------------------------------------------------------------------------------
# ransomware


def _inplace(transform: str) -> Callable[[Context, int, str], None]:
    def act(ctx: Context, seq: int, rel: str) -> None:
        data = _read_victim(ctx, rel)
        if data is None:
            return
        nonce = os.urandom(16)
        ranges = ranges_for(transform, len(data))
        new = xor_ranges(ctx.key, nonce, data, ranges, transform=transform)
        rec = ctx.change({"op": "inplace", "id": str(seq), "path": rel, "transform": transform, "nonce": nonce.hex(),
                          "size": len(data), "before": digest(data), "after": digest(new), **_stat_fields(ctx.fs, rel)})
        if transform in ("partial-5pct", "header-only"):
            # write only the encrypted stripes, as partial encryptors do
            ctx.fs.pwrite_pieces(rel, [(s, new[s:e]) for s, e in ranges])
        else:
            ctx.fs.overwrite(rel, new)
        ctx.done(rec)

    return act


def _ransom_note(ctx: Context, d: str) -> None:
    if d in ctx.notes:
        return
    ctx.notes.add(d)
    note = _join(d, RANSOM_NOTE_NAME)
    if ctx.fs.exists(note):
        return
    rec = ctx.change({"op": "create", "id": f"note:{d}", "path": note, "hash": digest(RANSOM_NOTE), "what": "ransom-note"})
    ctx.fs.create(note, RANSOM_NOTE)
    ctx.done(rec)


def _encrypt_new_delete(ctx: Context, seq: int, rel: str) -> None:
    # a note in every folder on the way down, the top included, the first time it is entered
    parts = rel.split("/")[:-1]
    for i in range(len(parts) + 1):
        _ransom_note(ctx, "/".join(parts[:i]))
    _encrypt_move(ctx, seq, rel, rel + ".WNCRY", "wncry")


def _random_names(ctx: Context, seq: int, rel: str) -> None:
    ext = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(secrets.choice((3, 4, 5, 6))))
    _encrypt_move(ctx, seq, rel, _join(_dirname(rel), f"{secrets.token_hex(4)}.{ext}"), "raw")


def _encrypt_move(ctx: Context, seq: int, rel: str, dst: str, fmt: str) -> None:
    data = _read_victim(ctx, rel)
    if data is None:
        return
    nonce = os.urandom(16)
    enc = ctr(ctx.key, nonce, data)
    if fmt == "wncry":
        enc = WNCRY_MAGIC + enc
    rec = ctx.change({"op": "encrypt-move", "id": str(seq), "src": rel, "dst": dst, "fmt": fmt, "nonce": nonce.hex(),
                      "before": digest(data), "after": digest(enc), **_stat_fields(ctx.fs, rel)})
    ctx.fs.create(dst, enc, mode=rec["mode"])
    ctx.fs.unlink(rel)
    ctx.done(rec)


def _keep_extension(ctx: Context, seq: int, rel: str) -> None:
    data = _read_victim(ctx, rel)
    if data is None:
        return
    nonce = os.urandom(16)
    enc = ctr(ctx.key, nonce, data)
    tmp = f"{rel}.{secrets.token_hex(3)}.tmp"
    rec = ctx.change({"op": "encrypt-replace", "id": str(seq), "path": rel, "tmp": tmp, "nonce": nonce.hex(),
                      "before": digest(data), "after": digest(enc), **_stat_fields(ctx.fs, rel)})
    ctx.fs.create(tmp, enc, mode=rec["mode"])
    ctx.fs.rename(tmp, rel)
    ctx.done(rec)


def _base64(ctx: Context, seq: int, rel: str) -> None:
    data = _read_victim(ctx, rel)
    if data is None:
        return
    nonce = os.urandom(16)
    new = b64_encrypt(ctx.key, nonce, data)
    rec = ctx.change({"op": "rewrite", "id": str(seq), "path": rel, "transform": "base64", "nonce": nonce.hex(),
                      "before": digest(data), "after": digest(new), **_stat_fields(ctx.fs, rel)})
    ctx.fs.overwrite(rel, new, truncate_first=True)
    ctx.done(rec)


# ---------------------------------------------------------------------------------------------
# wipers


def _wipe(how: str) -> Callable[[Context, int, str], None]:
    def act(ctx: Context, seq: int, rel: str) -> None:
        st = ctx.fs.lstat(rel)
        if st is None:
            return
        if st.st_size > MAX_FILE_SIZE:
            ctx.manifest.append({"op": "skip", "path": rel, "reason": f"larger than {MAX_FILE_SIZE} bytes"})
            return
        donor = _donor(ctx, rel) if how == "plausible" else None
        data = ctx.fs.read(rel)
        keep = ctx.keep(seq, rel)
        rec = ctx.change({"op": "delete" if how == "delete" else "wipe", "id": str(seq), "path": rel, "how": how,
                          "keep": keep, "before": digest(data), **_stat_fields(ctx.fs, rel)})
        if how == "zero":
            ctx.fs.overwrite(rel, bytes(len(data)))
        elif how == "random":
            ctx.fs.overwrite(rel, os.urandom(len(data)))
        elif how == "truncate":
            ctx.fs.truncate(rel, 0)
        elif how == "delete":
            ctx.fs.unlink(rel)
        elif how == "plausible":
            ctx.fs.overwrite(rel, donor if donor is not None else _rotate(data))
        ctx.done(rec)

    return act


def _donor(ctx: Context, rel: str) -> bytes | None:
    """Content of another document of the same type: the next one in path order (cyclic)."""
    ext = _ext(rel)
    if ext not in ctx.by_ext:
        ctx.by_ext[ext] = [p for p in ctx.plan.get("all_files", []) if _ext(p) == ext]
    cands = ctx.by_ext[ext]
    if rel in cands and len(cands) > 1:
        i = cands.index(rel)
        for k in range(1, len(cands)):
            other = cands[(i + k) % len(cands)]
            try:
                return ctx.fs.read(other)
            except OSError:
                continue
    return None


_SAME_TYPE = {"sqlite3": "sqlite", "db": "sqlite", "h": "c", "jpeg": "jpg", "markdown": "md"}


def _ext(rel: str) -> str:
    """The file's type for wipe-plausible: its extension, with aliases folded together."""
    name = rel.rpartition("/")[2]
    ext = name.rpartition(".")[2].lower() if "." in name else ""
    return _SAME_TYPE.get(ext, ext)


def _rotate(data: bytes) -> bytes:
    """No other file of the type: the file's own blocks in another order (still plausible bytes)."""
    half = (len(data) // 2) // 4096 * 4096 or len(data) // 2
    return data[half:] + data[:half]


# ---------------------------------------------------------------------------------------------
# benign jobs (not attacks): ordinary work that must not raise an alarm


def _benign_edit(ctx: Context, seq: int, rel: str) -> None:
    if rel.endswith((".txt", ".md", ".csv", ".py", ".c", ".h")):
        data = ctx.fs.read(rel)
        line = f"\nEdited on {time.strftime('%Y-%m-%d %H:%M')}: {secrets.choice(['checked', 'updated', 'ok', 'see comments'])}\n".encode()
        rec = ctx.change({"op": "append", "id": str(seq), "path": rel, "size_before": len(data), "before": digest(data),
                          "after": digest(data + line), **_stat_fields(ctx.fs, rel)})
        ctx.fs.append(rel, line)
        ctx.done(rec)
    elif rel.endswith(".docx"):
        from docx import Document

        data = ctx.fs.read(rel)
        doc = Document(io.BytesIO(data))
        doc.add_paragraph(f"Reviewed on {time.strftime('%Y-%m-%d')}.")
        buf = io.BytesIO()
        doc.save(buf)
        new = buf.getvalue()
        keep = ctx.keep(seq, rel)
        d, _, name = rel.rpartition("/")
        tmp = _join(d, f"~${name}.{secrets.token_hex(2)}.tmp")
        rec = ctx.change({"op": "resave", "id": str(seq), "path": rel, "tmp": tmp, "keep": keep, "before": digest(data),
                          "after": digest(new), **_stat_fields(ctx.fs, rel)})
        # office suites save to a temp file and rename it over the document
        ctx.fs.create(tmp, new, mode=rec["mode"])
        ctx.fs.rename(tmp, rel)
        ctx.done(rec)


def _benign_compress(ctx: Context, seq: int, rel: str) -> None:
    data = ctx.fs.read(rel)
    st = ctx.fs.lstat(rel)
    assert st is not None
    buf = io.BytesIO()
    with gzip.GzipFile(filename=rel.rpartition("/")[2], mode="wb", fileobj=buf, mtime=int(st.st_mtime), compresslevel=6) as gz:
        gz.write(data)
    new = buf.getvalue()
    rec = ctx.change({"op": "compress", "id": str(seq), "src": rel, "dst": rel + ".gz", "fmt": "gzip",
                      "before": digest(data), "after": digest(new), **_stat_fields(ctx.fs, rel)})
    ctx.fs.create(rel + ".gz", new, mode=rec["mode"])
    ctx.fs.unlink(rel)
    ctx.done(rec)


def benign_extract(ctx: Context, files: list[str]) -> None:
    """Pack some documents into a tar.gz in a temp dir outside the drill dir (a download), then
    unpack it into a new folder of the drill dir, the way ``tar xzf`` would."""
    tmpdir = tempfile.mkdtemp(prefix="nocry-drill-extract-")
    try:
        archive = os.path.join(tmpdir, "documents.tar.gz")
        with tarfile.open(archive, "w:gz") as tar:
            for rel in files:
                data = ctx.fs.read(rel)
                info = tarfile.TarInfo(rel)
                info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
                tar.addfile(info, io.BytesIO(data))
        base = f"Extracted {ctx.run[-4:]}"
        made: set[str] = set()
        with tarfile.open(archive, "r:gz") as tar:
            for k, member in enumerate(tar.getmembers()):
                if not member.isfile():
                    continue
                parts = member.name.split("/")
                for i in range(len(parts)):  # directories first, parents before children
                    d = "/".join([base, *parts[:i]])
                    if d not in made and not ctx.fs.exists(d):
                        rec = ctx.change({"op": "mkdir", "id": f"dir:{d}", "path": d})
                        ctx.fs.makedirs(d)
                        ctx.done(rec)
                    made.add(d)
                f = tar.extractfile(member)
                assert f is not None
                data = f.read()
                path = f"{base}/{member.name}"
                rec = ctx.change({"op": "create", "id": str(k), "path": path, "hash": digest(data), "what": "extracted"})
                ctx.fs.create(path, data)
                ctx.done(rec)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def select_files(name: str, files: list[str], limit: int | None) -> list[str]:
    """The files a scenario works on, from the sorted tree listing."""
    if name == "benign-edit":
        texts = [f for f in files if f.endswith((".txt", ".md"))][:3]
        docx = [f for f in files if f.endswith(".docx")][:1]
        chosen = sorted(texts + docx)
    elif name == "benign-compress-one":
        chosen = ([f for f in files if f.endswith((".csv", ".txt"))] or files)[:1]
    elif name == "benign-extract":
        chosen = files[:20]
    else:
        chosen = files
    return chosen[:limit] if limit is not None else chosen


def _attack(name: str, summary: str, action: Callable[[Context, int, str], None] | None, **kw: Any) -> Scenario:
    return Scenario(name, "attack", summary, action, **kw)


def _benign(name: str, summary: str, action: Callable[[Context, int, str], None] | None, **kw: Any) -> Scenario:
    return Scenario(name, "benign", summary, action, **kw)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        _attack("encrypt-in-place", "AES-CTR over each file, written in place", _inplace("full")),
        _attack("encrypt-new-delete", "WannaCry's way: FILE.WNCRY written, original deleted, ransom note in every folder", _encrypt_new_delete),
        _attack("intermittent", "every other 16 bytes of each file encrypted, in place", _inplace("intermittent")),
        _attack("partial-5pct", "about 5 % of each file encrypted (4 KiB stripes spread evenly; the first 5 % of small files)", _inplace("partial-5pct")),
        _attack("header-only", "only the first 4 KiB (1 KiB for files under 16 KiB) encrypted, in place", _inplace("header-only")),
        _attack("base64", "each file replaced by base64 of its ciphertext (low-entropy output), name kept", _base64),
        _attack("bitflip", "every byte XORed with 0xFF, in place (low-entropy 'encryption')", _inplace("bitflip")),
        _attack("keep-extension", "encrypted to a temp file renamed over the original: same name, same extension", _keep_extension),
        _attack("random-names", "encrypted into a new random name (8 hex chars + random extension), original deleted", _random_names),
        _attack("many-workers", "N cooperating worker processes under one parent (--workers, default 8) split the files, in-place encryption", _inplace("full"), style="workers"),
        _attack("fork-per-file", "a /bin/sh loop runs `openssl enc -aes-256-ctr` once per file (F -> F.enc, rm F): a new process per file", None, style="shell", needs=("openssl",)),
        _attack("slow", "in-place encryption of one file every --delay seconds (default 3)", _inplace("full"), default_delay=3.0),
        _attack("wipe-zero", "wiper: each file overwritten with zeros (same size)", _wipe("zero")),
        _attack("wipe-random", "wiper: each file overwritten with random bytes (same size)", _wipe("random")),
        _attack("wipe-truncate", "wiper: each file truncated to 0 bytes", _wipe("truncate")),
        _attack("wipe-delete", "wiper: each file deleted", _wipe("delete")),
        _attack("wipe-plausible", "wiper: each file overwritten with another document of the same type (plausible data)", _wipe("plausible")),
        _benign("benign-edit", "NOT AN ATTACK: append a line to a few text files and re-save a docx (python-docx, temp + rename)", _benign_edit, modules=("docx",)),
        _benign("benign-compress-one", "NOT AN ATTACK: gzip one file to FILE.gz and delete the original, like `gzip FILE`", _benign_compress, modules=()),
        _benign("benign-extract", "NOT AN ATTACK: tar.gz made from some documents in a temp dir outside the drill dir, extracted into a new folder", None, modules=()),
    )
}
