"""The attacker process: ``python -m nocry.drill.worker DIR RUN [--shard I --shards N]``.

Started by ``nocry drill run`` as a separate process, so that a defender sees (and can freeze or
kill) it and its children, and never the CLI that waits for it::

    check DIR's marker again (this entry point can be run by hand)
    plan = DIR/.nocry-drill.d/runs/RUN/plan.json      # scenario, files, delay, workers
    announce {"op": "process", pid, start time} in the manifest
    single:  for each file: action(file); sleep(delay)
    workers: spawn N members (--shard i), each takes every N-th file; wait for them
    shell:   log every intended change, then run /bin/sh on a loop of openssl + rm; wait for it

It never touches the network, never copies itself and never looks outside DIR (the temp archive of
``benign-extract`` excepted). Exit status: 0 done, 3 a child process was killed, 1 an error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from nocry.drill.crypto import digest
from nocry.drill.marker import Manifest, proc_start_time, read_marker, resolve_drill_dir
from nocry.drill.safefs import STATE_DIR_NAME, DrillFS
from nocry.drill.scenarios import MAX_FILE_SIZE, SCENARIOS, Context, benign_extract
from nocry.errors import NocryError

__all__ = ["main", "SHELL_SCRIPT"]

log = logging.getLogger("nocry.drill.worker")

EXIT_CHILD_KILLED = 3

SHELL_SCRIPT = """\
#!/bin/sh
# nocry drill "fork-per-file": one openssl process per file, driven by this loop. A SIMULATION:
# undo with `nocry drill undo DIR`, or by hand with
#   openssl enc -d -aes-256-ctr -pbkdf2 -pass file:{key} -in F.enc -out F
# Runs in the drill directory; each line of the list is "SEQ<TAB>./relative/path".
set -u
set -C   # noclobber: '>' creates with O_EXCL, so a planted F.enc (or a symlink) is never followed
run='{run}'
manifest='{state}/manifest.jsonl'
key='{key}'
delay='{delay}'
while IFS= read -r line; do
    seq=${{line%%\t*}}
    f=${{line#*\t}}
    if [ -h "$f" ] || [ ! -f "$f" ]; then continue; fi
    openssl enc -aes-256-ctr -pbkdf2 -pass "file:$key" -in "$f" >"$f.enc" &
    p=$!
    printf '{{"op":"process","run":"%s","pid":%d,"role":"openssl"}}\\n' "$run" "$p" >>"$manifest"
    if wait "$p"; then
        rm -f -- "$f"
        printf '{{"op":"done","run":"%s","id":"%s"}}\\n' "$run" "$seq" >>"$manifest"
    fi
    if [ "$delay" != 0 ]; then sleep "$delay"; fi
done <'{files}'
"""


def _announce(manifest: Manifest, pid: int, ppid: int, role: str, **extra: object) -> None:
    """Log an attacker process with its start time, so a later check is not fooled by pid reuse."""
    manifest.append({"op": "process", "pid": pid, "ppid": ppid, "start": proc_start_time(pid), "role": role, **extra})


def run_files(ctx: Context, files: list[tuple[int, str]], delay: float) -> int:
    action = SCENARIOS[ctx.plan["scenario"]].action
    assert action is not None
    for k, (seq, rel) in enumerate(files):
        if k and delay > 0:
            time.sleep(delay)
        try:
            action(ctx, seq, rel)
        except (OSError, NocryError) as exc:
            # an attacker goes on past a file it cannot take; the error is data for the report
            log.warning("drill file failed path=%s error=%s", rel, exc)
            ctx.manifest.append({"op": "error", "id": str(seq), "path": rel, "error": str(exc)})
    return 0


def run_workers(root: Path, ctx: Context, n: int) -> int:
    members = []
    for i in range(n):
        p = subprocess.Popen(
            [sys.executable, "-m", "nocry.drill.worker", str(root), ctx.run, "--shard", str(i), "--shards", str(n)],
            cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, close_fds=True,
        )
        _announce(ctx.manifest, p.pid, os.getpid(), "member", shard=i)
        members.append(p)
    codes = [p.wait() for p in members]
    return EXIT_CHILD_KILLED if any(c < 0 for c in codes) else (1 if any(codes) else 0)


def run_shell(root: Path, ctx: Context, files: list[tuple[int, str]], delay: float) -> int:
    fs = ctx.fs
    rundir = f"{STATE_DIR_NAME}/runs/{ctx.run}"
    keyfile = f"{rundir}/key.pass"
    # openssl's -pass file: reads the first line; the run key, in hex, is the password
    fs.create(keyfile, ctx.key.hex().encode() + b"\n", mode=0o600)
    lines = []
    for seq, rel in files:
        if "\n" in rel:
            ctx.manifest.append({"op": "skip", "path": rel, "reason": "newline in name"})
            continue
        st = fs.lstat(rel)
        if st is None or st.st_size > MAX_FILE_SIZE:
            continue
        data = fs.read(rel)
        # logged before the shell starts: openssl cannot log its own changes
        ctx.manifest.append({"op": "encrypt-move", "id": str(seq), "src": rel, "dst": rel + ".enc", "fmt": "openssl",
                             "before": digest(data), "mode": st.st_mode & 0o7777, "mtime_ns": st.st_mtime_ns})
        lines.append(f"{seq}\t./{rel}\n")
    fs.create(f"{rundir}/files.list", "".join(lines).encode())
    script = SHELL_SCRIPT.format(run=ctx.run, state=STATE_DIR_NAME, key=keyfile, delay=_sh_number(delay),
                                 files=f"{rundir}/files.list")
    fs.create(f"{rundir}/fork-per-file.sh", script.encode(), mode=0o700)
    sh = subprocess.Popen(["/bin/sh", f"{rundir}/fork-per-file.sh"], cwd=root, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, close_fds=True)
    _announce(ctx.manifest, sh.pid, os.getpid(), "shell")
    code = sh.wait()
    return EXIT_CHILD_KILLED if code < 0 else (1 if code else 0)


def _sh_number(x: float) -> str:
    return "0" if x <= 0 else (f"{x:.3f}".rstrip("0").rstrip("."))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nocry.drill.worker", description="nocry drill attacker process (started by `nocry drill run`)")
    ap.add_argument("dir")
    ap.add_argument("run")
    ap.add_argument("--shard", type=int)
    ap.add_argument("--shards", type=int)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s drill-worker[%(process)d] %(levelname)s %(message)s")
    try:
        root = resolve_drill_dir(args.dir)
        read_marker(root)  # again: this process may have been started by hand
        if "/" in args.run or args.run.startswith("."):
            raise NocryError(f"bad run id {args.run!r}")
        with DrillFS(root) as fs:
            plan = json.loads(fs.read(f"{STATE_DIR_NAME}/runs/{args.run}/plan.json"))
            key = bytes.fromhex(fs.read(f"{STATE_DIR_NAME}/runs/{args.run}/key").decode().strip())
            manifest = Manifest(fs, args.run)
            ctx = Context(fs, manifest, args.run, key, plan)
            sc = SCENARIOS[plan["scenario"]]
            files = list(enumerate(plan["files"]))
            delay = float(plan["delay"])
            if args.shard is not None:
                _announce(manifest, os.getpid(), os.getppid(), "member", shard=args.shard)
                return run_files(ctx, files[args.shard :: args.shards], delay)
            _announce(manifest, os.getpid(), os.getppid(), "leader", scenario=sc.name)
            if sc.style == "workers":
                return run_workers(root, ctx, int(plan["workers"]))
            if sc.style == "shell":
                return run_shell(root, ctx, files, delay)
            if sc.name == "benign-extract":
                benign_extract(ctx, [rel for _, rel in files])
                return 0
            return run_files(ctx, files, delay)
    except NocryError as exc:
        log.error("drill worker refused: %s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
