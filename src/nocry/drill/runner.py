"""What ``nocry drill init`` and ``nocry drill run`` do (the CLI only parses and prints).

    init:  refuse /, system dirs, symlinks, non-empty unmarked dirs
           write the marker (complete: false), generate the tree, rewrite the marker with the hashes
    run:   check the marker; refuse while attackers of an earlier run live on
           plan = sorted files (--limit), random key -> runs/RUN/{plan.json,key}; log "run-start"
           spawn `python -m nocry.drill.worker DIR RUN` (stdout to /dev/null, stderr to a log file,
           so a frozen worker holds none of the CLI's pipes)
           wait until it exits, or until it has made no progress for --delay + --timeout seconds
           (frozen by a defender): then report stopped and return, leaving it alone
           report = what the manifest says was done
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nocry
from nocry.drill import require_modules
from nocry.drill.corpus import MAX_FILES, build_tree
from nocry.drill.marker import (
    MAGIC,
    MARKER_NAME,
    MARKER_VERSION,
    STATE_DIR_NAME,
    Manifest,
    alive_attackers,
    now_iso,
    process_alive,
    read_manifest,
    read_marker,
    refuse_system_dir,
    resolve_drill_dir,
    write_marker,
    write_readme,
)
from nocry.drill.safefs import DrillFS
from nocry.drill.scenarios import SCENARIOS, select_files
from nocry.drill.worker import EXIT_CHILD_KILLED
from nocry.errors import UserError

__all__ = ["init_drill", "start_run", "list_scenarios", "DEFAULT_SEED", "DEFAULT_FILES"]

log = logging.getLogger(__name__)

DEFAULT_SEED = 1
DEFAULT_FILES = 200
CORPUS_MODULES = ("docx", "openpyxl", "pptx", "odf", "fpdf", "PIL")


def list_scenarios() -> list[dict[str, str]]:
    return [{"name": s.name, "kind": s.kind, "summary": s.summary} for s in SCENARIOS.values()]


# ---------------------------------------------------------------------------------------------
# init


def init_drill(arg: str, n_files: int = DEFAULT_FILES, seed: int = DEFAULT_SEED,
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    require_modules(CORPUS_MODULES)
    if not 1 <= n_files <= MAX_FILES:
        raise UserError(f"--files must be between 1 and {MAX_FILES}")
    absolute = os.path.abspath(arg)
    refuse_system_dir(absolute)  # as typed, and below as resolved
    if os.path.islink(absolute):
        raise UserError(f"{arg} is a symbolic link; give a real directory")
    real = os.path.realpath(absolute)
    refuse_system_dir(real)
    if os.path.lexists(real):
        if not stat.S_ISDIR(os.lstat(real).st_mode):
            raise UserError(f"{real} exists and is not a directory")
        if os.path.lexists(os.path.join(real, MARKER_NAME)):
            raise UserError(f"{real} is already a drill directory", hint=f"use it, undo it (nocry drill undo {real}), or delete it and init again")
        if os.listdir(real):
            raise UserError(f"{real} is not empty and has no drill marker: a drill only starts in a new or empty directory")
    else:
        os.makedirs(real, mode=0o755)
    root = Path(real)
    t0 = time.monotonic()
    with DrillFS(root) as fs:
        fs.makedirs(STATE_DIR_NAME)
        record: dict[str, Any] = {
            "magic": MAGIC, "version": MARKER_VERSION, "seed": seed, "created": now_iso(),
            "nocry_version": nocry.__version__, "files_requested": n_files, "complete": False, "files": [],
        }
        # marked before the first file is written: a half-built tree is still recognisably ours
        write_marker(fs, record)
        write_readme(fs)
        files = build_tree(fs, n_files, seed, progress)
        record.update(complete=True, files=files)
        write_marker(fs, record)
    seconds = time.monotonic() - t0
    by_type: dict[str, int] = {}
    for f in files:
        by_type[f["type"]] = by_type.get(f["type"], 0) + 1
    return {"dir": str(root), "seed": seed, "files": len(files), "bytes": sum(f["size"] for f in files),
            "by_type": by_type, "marker": str(root / MARKER_NAME), "seconds": round(seconds, 3)}


# ---------------------------------------------------------------------------------------------
# run


def _check_ready(root: Path) -> None:
    marker = read_marker(root)
    if not marker.complete:
        raise UserError(f"{root}: the drill init did not finish; delete the directory and init again")
    alive = alive_attackers(read_manifest(root))
    if alive:
        raise UserError(f"attacker processes of an earlier drill run still exist (pids {' '.join(map(str, alive))})",
                        hint="let them finish, or kill them, then try again")


def start_run(arg: str, name: str, *, limit: int | None = None, delay: float | None = None, workers: int | None = None,
              timeout: float = 60.0) -> dict[str, Any]:
    sc = SCENARIOS.get(name)
    if sc is None:
        raise UserError(f"unknown scenario {name!r}", hint="nocry drill list")
    if limit is not None and limit < 1:
        raise UserError("--limit must be at least 1")
    if delay is not None and delay < 0:
        raise UserError("--delay cannot be negative")
    if workers is not None and sc.style != "workers":
        raise UserError(f"--workers applies to many-workers only, not to {name}")
    n_workers = 8 if workers is None else workers
    if not 1 <= n_workers <= 256:
        raise UserError("--workers must be between 1 and 256")
    if timeout <= 0:
        raise UserError("--timeout must be positive")
    require_modules(sc.modules)
    for cmd in sc.needs:
        if shutil.which(cmd) is None:
            raise UserError(f"scenario {name} needs the {cmd} command, which is missing", hint=f"apt-get install {cmd}")
    root = resolve_drill_dir(arg)
    _check_ready(root)
    delay = sc.default_delay if delay is None else delay

    run = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{name}-{secrets.token_hex(2)}"
    key = os.urandom(32)  # random per run; kept in the manifest: this is a simulation
    with DrillFS(root) as fs:
        if sc.style == "shell":
            _check_no_foreign_dirs(fs)
        all_files = fs.walk()
        if sc.kind == "benign":
            # ordinary work touches the user's documents, not whatever else lies in the tree
            # (a defender's decoys, say): only the files the drill generated
            generated = {f["path"] for f in json.loads(fs.read(MARKER_NAME)).get("files", [])}
            all_files = [f for f in all_files if f in generated]
        files = select_files(name, all_files, limit)
        if not files:
            raise UserError(f"no files to work on in {root}")
        rundir = f"{STATE_DIR_NAME}/runs/{run}"
        fs.makedirs(rundir)
        fs.create(f"{rundir}/key", key.hex().encode() + b"\n", mode=0o600)
        plan = {"run": run, "scenario": name, "files": files, "delay": delay, "workers": n_workers,
                "all_files": all_files if name == "wipe-plausible" else []}
        fs.create(f"{rundir}/plan.json", json.dumps(plan).encode())
        manifest = Manifest(fs, run)
        started_ns = time.time_ns()
        manifest.append({"op": "run-start", "scenario": name, "key": key.hex(), "files": len(files), "delay": delay,
                         "workers": n_workers if sc.style == "workers" else None, "started_at": now_iso(started_ns)})
        dfd = fs.dir_fd(rundir)
        log_fd = os.open("worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        env = dict(os.environ)
        # the worker must import this very nocry, wherever it was imported from
        pkg_parent = str(Path(nocry.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([pkg_parent, *filter(None, [env.get("PYTHONPATH")])])
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "nocry.drill.worker", str(root), run],
                cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_fd, close_fds=True, env=env,
            )
        finally:
            os.close(log_fd)
        outcome, code = _wait(proc, root / f"{STATE_DIR_NAME}/manifest.jsonl", delay, timeout)
        ended_ns = time.time_ns()
        manifest.append({"op": "run-end", "outcome": outcome, "exit_status": code, "ended_at": now_iso(ended_ns)})
        manifest.close()
        report = _report(root, run, name, sc.kind, proc.pid, len(files), started_ns, ended_ns, outcome, code)
        fs.create(f"{rundir}/result.json", json.dumps(report, indent=1, sort_keys=True).encode())
    # after a timeout the worker is left alone: the defender that froze it owns it
    return report


def _check_no_foreign_dirs(fs: DrillFS) -> None:
    """openssl and sh follow symlinks; the loop checks each file just before, which only holds if
    nobody else can swap names in the tree meanwhile: every directory ours, writable by us alone."""
    uid = os.geteuid()
    for rel in ["", *fs.dirs()]:
        st = os.fstat(fs.dir_fd(rel)) if rel else os.fstat(fs.root_fd)
        if st.st_uid != uid or st.st_mode & 0o022:
            raise UserError(f"{fs.root}/{rel}: fork-per-file needs every directory of the drill tree owned by uid {uid} "
                            "and not writable by group or others (openssl follows symlinks)")


def _wait(proc: subprocess.Popen, manifest: Path, delay: float, timeout: float) -> tuple[str, int | None]:
    """Wait for the worker; give up when nothing was logged for delay + timeout seconds."""
    last_size, last_change = -1, time.monotonic()
    while True:
        try:
            code = proc.wait(timeout=0.05 if time.monotonic() - last_change < 1 else 0.2)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None:
            if code == 0:
                return "finished", 0
            if code < 0 or code == EXIT_CHILD_KILLED:
                return "killed", code
            return "failed", code
        try:
            size = manifest.stat().st_size
        except FileNotFoundError:
            size = 0
        now = time.monotonic()
        if size != last_size:
            last_size, last_change = size, now
        elif now - last_change > delay + timeout:
            log.info("drill run gave up waiting pid=%d idle_seconds=%.1f", proc.pid, now - last_change)
            return "timeout", None


def effects(rec: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(touched, created, deleted) paths of one manifest change."""
    op = rec.get("op")
    if op in ("inplace", "rewrite", "wipe", "encrypt-replace", "append", "resave"):
        return [rec["path"]], [], []
    if op in ("encrypt-move", "compress"):
        return [rec["src"]], [rec["dst"]], [rec["src"]]
    if op == "delete":
        return [rec["path"]], [], [rec["path"]]
    if op == "create":
        return [], [rec["path"]], []
    return [], [], []


def _report(root: Path, run: str, name: str, kind: str, leader: int, planned: int, started_ns: int, ended_ns: int,
            outcome: str, code: int | None) -> dict[str, Any]:
    records = [r for r in read_manifest(root) if r.get("run") == run]
    done = {r["id"] for r in records if r.get("op") == "done"}
    touched: list[str] = []
    created: list[str] = []
    deleted: list[str] = []
    for r in records:
        if "id" in r and r.get("op") not in ("done", "error") and r["id"] in done:
            t, c, d = effects(r)
            touched += t
            created += c
            deleted += d
    pids = [leader] + [int(r["pid"]) for r in records if r.get("op") == "process"]
    pids = list(dict.fromkeys(pids))  # unique, first seen first
    alive = []
    if outcome == "timeout":
        alive = sorted(set(alive_attackers(records)) | ({leader} if process_alive(leader, None) else set()))
    ab = lambda rels: [str(root / p) for p in rels]  # noqa: E731
    return {
        "scenario": name,
        "kind": kind,
        "dir": str(root),
        "run_id": run,
        "pids": pids,
        "files_planned": planned,
        "files_touched": ab(touched),
        "files_created": ab(created),
        "files_deleted": ab(deleted),
        "errors": [{"path": str(root / r["path"]), "error": r["error"]} for r in records if r.get("op") == "error"],
        "started_at": now_iso(started_ns),
        "ended_at": now_iso(ended_ns),
        "started_at_ns": started_ns,
        "ended_at_ns": ended_ns,
        "seconds": round((ended_ns - started_ns) / 1e9, 3),
        "finished": outcome == "finished",
        "stopped": outcome in ("killed", "timeout"),
        "outcome": outcome,
        "exit_status": code,
        "alive_pids": alive,
        "manifest": str(root / STATE_DIR_NAME / "manifest.jsonl"),
        "undo": f"nocry drill undo {root}",
    }
