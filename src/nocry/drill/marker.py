"""The drill marker, the state directory beside it, and the manifest of every change.

A directory is a drill directory only if it holds the marker file written by ``drill init``; every
drill command checks it first and refuses to act anywhere else::

    DIR/.nocry-drill                 JSON: magic, version, seed, created, files [{path, size, blake3}]
    DIR/.nocry-drill.d/
        README.txt                   how to undo by hand, without nocry
        manifest.jsonl               one JSON object a line, appended (and flushed) BEFORE each change
        runs/RUN/plan.json           what the attacker processes were told to do
        runs/RUN/key                 the run's random AES key (hex; also in the manifest's run line)
        runs/RUN/worker.log          the attacker processes' stderr
        undo/RUN/SEQ.orig            original bytes of a file kept before a wiper destroyed it
        history/STAMP/               manifests and runs moved here by a verified ``drill undo``

    check:   dir = resolve_drill_dir(arg)        # refuses /, system dirs, symlinked DIR
             marker = read_marker(dir)           # refuses a DIR without a valid marker
    record:  m = Manifest(fs); m.append({...})   # one write(2) per line, O_APPEND: safe across workers

Manifest records all carry ``op`` and ``run``; changes carry ``id`` and are followed by a
``{"op": "done", "id": ...}`` line once made. Processes announce themselves with ``op: process``
(pid and start time, so that a later pid reuse is not mistaken for a live attacker).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nocry.drill.safefs import MARKER_NAME, STATE_DIR_NAME, DrillFS
from nocry.errors import UserError

__all__ = [
    "MAGIC",
    "MARKER_VERSION",
    "MARKER_NAME",
    "STATE_DIR_NAME",
    "Marker",
    "Manifest",
    "resolve_drill_dir",
    "refuse_system_dir",
    "read_marker",
    "write_marker",
    "read_manifest",
    "proc_start_time",
    "process_alive",
    "alive_attackers",
    "now_iso",
]

log = logging.getLogger(__name__)

MAGIC = "nocry-drill-marker: every file below this directory may be damaged on purpose by nocry drills"
MARKER_VERSION = 1
MANIFEST = f"{STATE_DIR_NAME}/manifest.jsonl"

# A drill must never run in or on these: equal to or anywhere below them.
SYSTEM_TREES = (
    "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/efi",
    "/proc", "/sys", "/dev", "/run", "/opt", "/snap", "/nix", "/lost+found",
    "/var",  # all of /var except /var/tmp (below)
)
# ... except below these, where scratch data lives.
SCRATCH_TREES = ("/var/tmp",)
# Never the whole of these (a drill dir below them is fine).
WHOLE_TREES = ("/", "/home", "/root", "/tmp", "/var/tmp", "/srv", "/mnt", "/media", "/var")

README = """\
This directory belongs to a nocry drill: simulated, reversible attacks on the files of {dir}.

To undo every change:            nocry drill undo {dir}

Without nocry: manifest.jsonl lists every change, in order, one JSON object a line; undo them from
the last to the first. The key of each run is in its "run-start" line and in runs/RUN/key.
  inplace / rewrite / encrypt-*: AES-256-CTR, key = run key, initial counter block = "nonce" (hex);
      the byte at file offset o is XORed with keystream byte o (counter advanced o//16 blocks).
      "transform" says which bytes of the "size" bytes were XORed: full (all); intermittent
      (o % 32 < 16); header-only (the first 4096, or 1024 when size < 16 KiB); partial-5pct (the
      first max(16, size*5//100) when size < 80 KiB, else round((size*5//100)/4096) stripes of 4096 bytes at
      int(i*size/count) rounded down to 16); bitflip (all, XOR 0xFF, no key).
      rewrite: the file holds base64 of the ciphertext. encrypt-move: "dst" holds the ciphertext
      (behind an 8-byte "WANACRY!" header when fmt is "wncry"). encrypt-replace: in place.
  openssl (fork-per-file): openssl enc -d -aes-256-ctr -pbkdf2 -pass file:runs/RUN/key.pass -in F.enc -out F
  wipe-* and resave: the original bytes are in undo/RUN/SEQ.orig ("keep").
  create: the file did not exist before: delete it. compress: gunzip dst back to src.
Every change lists the BLAKE3 hash of the file before it ("before"); the marker file
../.nocry-drill lists the hash of every generated file.
"""


def now_iso(ns: int | None = None) -> str:
    ns = time.time_ns() if ns is None else ns
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns / 1e9)) + f".{(ns // 1_000_000) % 1000:03d}Z"


def _inside(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def refuse_system_dir(real: str) -> None:
    """Refuse a drill on or in a system directory, or on the whole of a shared top directory."""
    if real in WHOLE_TREES:
        raise UserError(f"refusing a drill on {real}: give a dedicated directory below it, e.g. {real.rstrip('/')}/nocry-drill")
    home = os.environ.get("HOME")
    parts = real.strip("/").split("/")
    if (len(parts) == 2 and parts[0] == "home") or (home and os.path.realpath(home) == real):
        raise UserError(f"refusing a drill on a whole home directory ({real}): use a dedicated directory below it")
    if any(_inside(real, s) for s in SCRATCH_TREES):
        return
    for tree in SYSTEM_TREES:
        if _inside(real, tree):
            raise UserError(f"refusing a drill in the system directory {tree} ({real})")


def resolve_drill_dir(arg: str | os.PathLike[str]) -> Path:
    """The real path of a drill directory argument; refuses a symlink and system directories.

    Only the path as given is accepted: a DIR that is itself a symlink is refused (even when it
    points into a marked tree), and the system-directory rules are checked on the real path, so a
    symlink higher up cannot smuggle a drill into /etc.
    """
    s = os.fspath(arg)
    if not s:
        raise UserError("no drill directory given")
    absolute = os.path.abspath(s)
    refuse_system_dir(absolute)  # as typed, and below as resolved
    if os.path.islink(absolute):
        raise UserError(f"{s} is a symbolic link; drills never follow symlinks: give the real directory")
    real = os.path.realpath(absolute)
    refuse_system_dir(real)
    return Path(real)


@dataclass(frozen=True, slots=True)
class Marker:
    dir: Path
    seed: int
    created: str
    complete: bool
    files: tuple[dict[str, Any], ...]
    raw: dict[str, Any]

    def hashes(self) -> dict[str, str]:
        return {f["path"]: f["blake3"] for f in self.files}


def read_marker(root: Path) -> Marker:
    """The marker of a drill directory; refuses (UserError) when it is missing or not ours."""
    path = root / MARKER_NAME
    hint = f"run `nocry drill init {root}` on a new, empty directory first"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not root.is_dir():
            raise UserError(f"{root} is not a directory") from None
        raise UserError(f"{root} is not a drill directory: no {MARKER_NAME} marker in it", hint=hint) from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{path} is not a regular file (a symlink?): not a drill directory")
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not a valid drill marker ({exc})") from None
    if not isinstance(raw, dict) or raw.get("magic") != MAGIC:
        raise UserError(f"{path} is not a nocry drill marker")
    if raw.get("version") != MARKER_VERSION:
        raise UserError(f"{path} has marker version {raw.get('version')!r}; this nocry reads version {MARKER_VERSION}")
    state = root / STATE_DIR_NAME
    try:
        if not stat.S_ISDIR(os.lstat(state).st_mode):
            raise UserError(f"{state} is not a directory (a symlink?); refusing")
    except FileNotFoundError:
        raise UserError(f"{state} is missing: the drill directory is damaged; init a new one") from None
    return Marker(
        dir=root,
        seed=int(raw.get("seed", 0)),
        created=str(raw.get("created", "")),
        complete=bool(raw.get("complete", False)),
        files=tuple(raw.get("files", ())),
        raw=raw,
    )


def write_marker(fs: DrillFS, record: dict[str, Any]) -> None:
    """Write the marker atomically (temp file + rename) so that a reader never sees half of it."""
    data = json.dumps(record, indent=1, sort_keys=True).encode() + b"\n"
    tmp = MARKER_NAME + ".tmp"
    if fs.exists(tmp):
        fs.unlink(tmp)
    fs.create(tmp, data)
    fs.rename(tmp, MARKER_NAME)


def write_readme(fs: DrillFS) -> None:
    rel = f"{STATE_DIR_NAME}/README.txt"
    if not fs.exists(rel):
        fs.create(rel, README.format(dir=fs.root).encode())


class Manifest:
    """Append-only change log: one ``write(2)`` per line on an ``O_APPEND`` fd, so that cooperating
    worker processes never interleave within a line and each line is out of the process (in the
    page cache, surviving a kill) before the change it announces is made."""

    def __init__(self, fs: DrillFS, run: str | None = None):
        self.run = run
        fs.makedirs(STATE_DIR_NAME)
        dfd, name = fs.dir_fd(STATE_DIR_NAME), "manifest.jsonl"
        self.fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)

    def append(self, record: dict[str, Any]) -> None:
        if self.run is not None:
            record.setdefault("run", self.run)
        record.setdefault("t", time.time_ns())
        record.setdefault("pid", os.getpid())  # which process made the change: attribution for tests
        line = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        n = os.write(self.fd, line)
        if n != len(line):  # a regular file only writes short on a full disk
            raise OSError(f"short write to the drill manifest ({n} of {len(line)} bytes)")

    def close(self) -> None:
        os.close(self.fd)


def read_manifest(root: Path) -> list[dict[str, Any]]:
    path = root / MANIFEST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for i, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            # a torn last line (a worker killed mid-write) is expected; anything else is damage
            log.warning("manifest line unreadable line=%d path=%s", i, path)
    return out


def proc_start_time(pid: int) -> int | None:
    """The start time (clock ticks after boot) of a process: with the pid, its identity."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: fields start after the last ')'
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[19])


def process_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2 :].split()[0].decode()


def process_alive(pid: int, start: int | None) -> bool:
    """True if the process still exists (zombies count as gone) and is the same process."""
    state = process_state(pid)
    if state is None or state in ("Z", "X"):
        return False
    return start is None or proc_start_time(pid) == start


def alive_attackers(records: list[dict[str, Any]], run: str | None = None) -> list[int]:
    """Pids of attacker processes (of one run, or of all runs) that still exist."""
    out = []
    for r in records:
        if r.get("op") == "process" and (run is None or r.get("run") == run):
            if process_alive(int(r["pid"]), r.get("start")):
                out.append(int(r["pid"]))
    return sorted(set(out))
