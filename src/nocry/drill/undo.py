"""``nocry drill undo DIR``: reverse every change the manifest records, then verify every hash.

    refuse while any attacker process of any run still exists (it could go on writing)
    for change in reversed(manifest changes), skipping those an earlier undo logged as "undone":
        look at the file(s) now:  original hash?  -> nothing to do (never done, or nocry restored it)
                                  known damage?   -> decrypt / restore the kept copy / delete ours
                                  anything else   -> leave it, report it (never destroy unknown data)
    verify every file of the marker's list; report missing, changed and extra files
    all good -> move the manifest and runs to history/, drop the kept copies

Judging each change by the file's current hash makes undo idempotent and safe after a partial run
(a frozen or killed attacker), after nocry itself restored some files, and after a second undo.
"""

from __future__ import annotations

import gzip
import logging
import os
import time
from pathlib import Path
from typing import Any

from nocry.drill import require_modules
from nocry.drill.crypto import (
    WNCRY_MAGIC,
    b64_decrypt,
    ctr,
    digest,
    openssl_decrypt,
    ranges_for,
    torn_candidates,
    xor_ranges,
)
from nocry.drill.marker import Manifest, Marker, alive_attackers, read_manifest, read_marker
from nocry.drill.safefs import MARKER_NAME, STATE_DIR_NAME, DrillFS
from nocry.errors import UserError

__all__ = ["undo_drill", "verify_tree", "CHANGE_OPS"]

log = logging.getLogger(__name__)

CHANGE_OPS = ("inplace", "rewrite", "encrypt-move", "encrypt-replace", "create", "mkdir", "wipe", "delete", "append",
              "resave", "compress")


class UndoFailed(Exception):
    pass


class Undoer:
    def __init__(self, fs: DrillFS, keys: dict[str, bytes]):
        self.fs = fs
        self.keys = keys

    def _key(self, rec: dict[str, Any]) -> bytes:
        key = self.keys.get(rec.get("run", ""))
        if key is None:
            raise UndoFailed("the run's key is missing")
        return key

    def _read(self, rel: str) -> bytes | None:
        if self.fs.lstat(rel) is None:
            return None
        return self.fs.read(rel)

    def _put(self, rel: str, data: bytes, rec: dict[str, Any]) -> None:
        """Write the original back: in place if the name exists, else as a new file."""
        if self.fs.lstat(rel) is None:
            self.fs.create(rel, data, mode=rec.get("mode", 0o644), make_dirs=True)
        else:
            self.fs.overwrite(rel, data)
        if "mtime_ns" in rec:
            dfd, name = self.fs._where(rel)
            os.utime(name, ns=(time.time_ns(), rec["mtime_ns"]), dir_fd=dfd, follow_symlinks=False)

    def _drop(self, rel: str | None) -> None:
        """Remove a file the drill created (a temp file, an encrypted copy)."""
        if rel and self.fs.lstat(rel) is not None:
            self.fs.unlink(rel)

    def undo(self, rec: dict[str, Any]) -> str:
        """'undone' or 'unchanged'; raises UndoFailed with the reason otherwise."""
        return getattr(self, "_" + rec["op"].replace("-", "_"))(rec)

    # -- one method per change --------------------------------------------------------------------

    def _inplace(self, rec: dict[str, Any]) -> str:
        cur = self._read(rec["path"])
        if cur is None:
            raise UndoFailed("the file is gone")
        if digest(cur) == rec["before"]:
            return "unchanged"
        if len(cur) != rec["size"]:
            raise UndoFailed("the file's size changed since the attack")
        tf = rec["transform"]
        ranges = ranges_for(tf, rec["size"])
        back = xor_ranges(self._key(rec), bytes.fromhex(rec["nonce"]), cur, ranges, transform=tf)
        if digest(back) != rec["before"]:
            # a write cut short by a kill: part new, part old
            written = ranges if tf in ("partial-5pct", "header-only") else [(0, rec["size"])]
            back = next((c for c in torn_candidates(cur, back, written) if digest(c) == rec["before"]), None)
            if back is None:
                raise UndoFailed("content is neither the original nor the encrypted version")
        self._put(rec["path"], back, rec)
        return "undone"

    def _rewrite(self, rec: dict[str, Any]) -> str:
        cur = self._read(rec["path"])
        if cur is None:
            raise UndoFailed("the file is gone")
        h = digest(cur)
        if h == rec["before"]:
            return "unchanged"
        if h != rec["after"]:
            raise UndoFailed("content is neither the original nor the encoded version")
        back = b64_decrypt(self._key(rec), bytes.fromhex(rec["nonce"]), cur)
        self._put(rec["path"], back, rec)
        return "undone"

    def _decode(self, rec: dict[str, Any], data: bytes) -> bytes:
        fmt = rec["fmt"]
        if fmt == "gzip":
            return gzip.decompress(data)
        if fmt == "openssl":
            return openssl_decrypt(self._key(rec).hex().encode(), data)
        if fmt == "wncry":
            if not data.startswith(WNCRY_MAGIC):
                raise UndoFailed("the .WNCRY file lost its header")
            data = data[len(WNCRY_MAGIC) :]
        return ctr(self._key(rec), bytes.fromhex(rec["nonce"]), data)

    def _encrypt_move(self, rec: dict[str, Any]) -> str:
        src, dst = rec["src"], rec["dst"]
        cur = self._read(src)
        if cur is not None:
            if digest(cur) != rec["before"]:
                raise UndoFailed(f"{src} exists but is not the original")
            # the original survived (never done, cut short, or already restored): only our copy goes
            existed = self.fs.lstat(dst) is not None
            self._drop(dst)
            return "undone" if existed else "unchanged"
        data = self._read(dst)
        if data is None:
            raise UndoFailed(f"both {src} and {dst} are gone")
        try:
            back = self._decode(rec, data)
        except (ValueError, OSError, EOFError) as exc:
            raise UndoFailed(f"cannot decode {dst}: {exc}") from None
        if digest(back) != rec["before"]:
            raise UndoFailed(f"{dst} does not decode to the original")
        self._put(src, back, rec)
        self.fs.unlink(dst)
        return "undone"

    _compress = _encrypt_move

    def _encrypt_replace(self, rec: dict[str, Any]) -> str:
        cur = self._read(rec["path"])
        if cur is None:
            raise UndoFailed("the file is gone")
        h = digest(cur)
        if h == rec["before"]:
            existed = self.fs.lstat(rec["tmp"]) is not None
            self._drop(rec["tmp"])
            return "undone" if existed else "unchanged"
        if h != rec["after"]:
            raise UndoFailed("content is neither the original nor the encrypted version")
        self._put(rec["path"], ctr(self._key(rec), bytes.fromhex(rec["nonce"]), cur), rec)
        return "undone"

    def _create(self, rec: dict[str, Any]) -> str:
        cur = self._read(rec["path"])
        if cur is None:
            return "unchanged"
        if digest(cur) != rec["hash"]:
            raise UndoFailed("changed since the drill created it; left in place")
        self.fs.unlink(rec["path"])
        return "undone"

    def _mkdir(self, rec: dict[str, Any]) -> str:
        if self.fs.lstat(rec["path"]) is None:
            return "unchanged"
        try:
            self.fs.rmdir(rec["path"])
        except OSError as exc:
            raise UndoFailed(f"cannot remove the directory the drill made: {exc.strerror}") from None
        return "undone"

    def _wipe(self, rec: dict[str, Any]) -> str:
        cur = self._read(rec["path"])
        if cur is not None and digest(cur) == rec["before"]:
            self._drop(rec.get("tmp"))
            return "unchanged"
        kept = self._read(rec["keep"])
        if kept is None or digest(kept) != rec["before"]:
            raise UndoFailed("the kept copy of the original is missing or damaged")
        self._put(rec["path"], kept, rec)
        self._drop(rec.get("tmp"))
        return "undone"

    _delete = _wipe
    _resave = _wipe

    def _append(self, rec: dict[str, Any]) -> str:
        cur = self._read(rec["path"])
        if cur is None:
            raise UndoFailed("the file is gone")
        if digest(cur) == rec["before"]:
            return "unchanged"
        n = rec["size_before"]
        if len(cur) < n or digest(cur[:n]) != rec["before"]:
            raise UndoFailed("the file changed beyond the appended line")
        self.fs.truncate(rec["path"], n)
        if "mtime_ns" in rec:
            dfd, name = self.fs._where(rec["path"])
            os.utime(name, ns=(time.time_ns(), rec["mtime_ns"]), dir_fd=dfd, follow_symlinks=False)
        return "undone"


def verify_tree(fs: DrillFS, marker: Marker) -> dict[str, Any]:
    """Every file of the marker's list present with its hash; extra files listed."""
    want = marker.hashes()
    have = set(fs.walk())
    missing, changed = [], []
    for rel, h in sorted(want.items()):
        if rel not in have:
            missing.append(rel)
            continue
        try:
            if digest(fs.read(rel)) != h:
                changed.append(rel)
        except OSError:
            changed.append(rel)
    extra = sorted(have - set(want))
    return {"files": len(want), "ok": len(want) - len(missing) - len(changed), "missing": missing, "changed": changed, "extra": extra}


def _remove_tree(fs: DrillFS, rel_dir: str) -> None:
    """rm -r of a directory inside the state dir, without following symlinks."""
    if fs.lstat(rel_dir) is None:
        return
    dfd = fs.dir_fd(rel_dir)
    with os.scandir(os.dup(dfd)) as it:
        entries = list(it)
    for e in entries:
        rel = f"{rel_dir}/{e.name}"
        if e.is_dir(follow_symlinks=False):
            _remove_tree(fs, rel)
        else:
            os.unlink(e.name, dir_fd=dfd)
    fs.rmdir(rel_dir)


def _archive(fs: DrillFS) -> str:
    """After a verified undo: manifest and runs to history/STAMP/, kept copies deleted."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{time.time_ns() % 1_000_000:06d}"
    dest = f"{STATE_DIR_NAME}/history/{stamp}"
    fs.makedirs(dest)
    for name in ("manifest.jsonl", "runs"):
        if fs.lstat(f"{STATE_DIR_NAME}/{name}") is not None:
            fs.rename(f"{STATE_DIR_NAME}/{name}", f"{dest}/{name}")
    _remove_tree(fs, f"{STATE_DIR_NAME}/undo")
    return dest


def undo_drill(root: Path) -> dict[str, Any]:
    marker = read_marker(root)
    records = read_manifest(root)
    alive = alive_attackers(records)
    if alive:
        raise UserError(f"attacker processes of a drill run still exist (pids {' '.join(map(str, alive))}); they could go on writing",
                        hint="kill them (or let them finish) first")
    keys: dict[str, bytes] = {}
    runs: list[str] = []
    for r in records:
        if r.get("op") == "run-start":
            keys[r["run"]] = bytes.fromhex(r["key"])
            runs.append(r["run"])
    changes = [r for r in records if r.get("op") in CHANGE_OPS and "id" in r]
    if any("nonce" in r or r.get("fmt") == "openssl" for r in changes):
        require_modules(("cryptography",))
    # changes an earlier (partly failed) undo already reversed: judging them again against their
    # "before" would be wrong once the changes before them were reversed too
    reversed_already = {(r.get("run"), r.get("id")) for r in records if r.get("op") == "undone"}
    t0 = time.monotonic()
    counts = {"undone": 0, "unchanged": 0}
    failed: list[dict[str, Any]] = []
    with DrillFS(root) as fs:
        for run in {r.get("run") for r in changes}:  # a key file survives a lost run-start line
            if run and run not in keys:
                try:
                    keys[run] = bytes.fromhex(fs.read(f"{STATE_DIR_NAME}/runs/{run}/key").decode().strip())
                except OSError:
                    pass
        u = Undoer(fs, keys)
        log_undone = Manifest(fs) if changes else None  # no manifest, nothing to log
        for rec in reversed(changes):
            where = rec.get("path") or rec.get("src")
            if (rec.get("run"), rec["id"]) in reversed_already:
                counts["unchanged"] += 1
                continue
            try:
                counts[u.undo(rec)] += 1
                assert log_undone is not None
                log_undone.append({"op": "undone", "run": rec.get("run"), "id": rec["id"]})
            except (UndoFailed, OSError, UserError) as exc:
                log.info("drill undo failed run=%s id=%s path=%s reason=%s", rec.get("run"), rec.get("id"), where, exc)
                failed.append({"run": rec.get("run"), "id": rec.get("id"), "op": rec["op"], "path": str(root / where) if where else None, "reason": str(exc)})
        if log_undone is not None:
            log_undone.close()
        verify = verify_tree(fs, marker)
        restored = not failed and not verify["missing"] and not verify["changed"]
        archived = _archive(fs) if restored and records else None
    return {
        "dir": str(root),
        "runs": runs,
        "changes": len(changes),
        "undone": counts["undone"],
        "unchanged": counts["unchanged"],
        "failed": failed,
        "verify": {**verify, "missing": [str(root / p) for p in verify["missing"]],
                   "changed": [str(root / p) for p in verify["changed"]], "extra": [str(root / p) for p in verify["extra"]]},
        "restored": restored,
        "archived": str(root / archived) if archived else None,
        "seconds": round(time.monotonic() - t0, 3),
        "marker": str(root / MARKER_NAME),
    }
