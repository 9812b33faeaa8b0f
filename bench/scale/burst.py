"""Burst of small-file operations in a protected tree, and the check that nothing was missed.

Writer (one process each, started by run.py; also runnable alone):

    .venv/bin/python bench/scale/burst.py DIR --seconds 5 [--rate OPS_PER_S] [--pool 2000] [--tag w0] [--gone-out FILE]

works in DIR (created): first a pool of ``--pool`` files (not timed), then, for ``--seconds``, a
rotating mix of file operations on them, as fast as it can (or paced to ``--rate`` operations per
second), each one counted as ONE operation:

    create    open(O_CREAT|O_EXCL) + write 100..2000 B + close of a new name
    overwrite open(O_TRUNC) + write + close of a live file (new, unique content)
    rename    rename of a live file to a new name (the old name is gone)
    unlink    unlink of a live file

in the proportions 1:1:1:1 (the number of live files stays about the pool size). Every write has
unique content, so a version captured before the last write differs from the disk. At the end it
prints one JSON line (operations by kind, seconds, syscalls) and writes the paths it made
disappear (unlinked or renamed away) to ``--gone-out`` (default ``DIR.gone``; one per line).
``C_WRITER`` is the same loop in C (run.py compiles and prefers it: on this VM Python reaches ~60 %
of the operations/s the kernel allows, C ~95 %).

Check (``check_nothing_missed``, run after ``nocry sync``): the vault's state of the burst
directory at a moment after the sync (``nocry --json restore DIR --at T --dry-run``: per path, the
newest version <= T and what a restore would do) compared with the disk:

- every file on disk is in the vault with its final content: BLAKE3 of the disk file == the
  version's hash (computed here from the disk, not taken from the plan's ``keep``);
- every path that disappeared is absent from the vault's state at T: either its newest version
  is a tombstone, or it never had a version (lived less than the capture delay); a sample is
  looked up with ``nocry --json versions PATH`` to tell the two apart.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import blake3

CREATE, OVERWRITE, RENAME, UNLINK = range(4)
OP_NAMES = ("create", "overwrite", "rename", "unlink")
SYSCALLS = (3, 3, 1, 1)


def writer(d: str, seconds: float, rate: float, pool: int, tag: str, seed: int, start_at: float | None = None,
           gone_out: str | None = None) -> dict[str, Any]:
    os.makedirs(d, exist_ok=True)
    os.chdir(d)
    r = random.Random(f"{seed}:{tag}")
    filler = r.randbytes(4096).hex().encode()  # 8 KiB of hex text
    n = 0
    live: list[str] = []
    gone: set[str] = set()

    def content(k: int) -> bytes:
        size = 100 + (k * 7919) % 1900
        head = f"{tag} {k} {time.time_ns()}\n".encode()
        off = (k * 104729) % (len(filler) - 2100)
        return head + filler[off : off + size - len(head)]

    for _ in range(pool):
        name = f"{tag}-{n:08d}.dat"
        with open(name, "wb") as f:
            f.write(content(n))
        live.append(name)
        n += 1
    ops = [0, 0, 0, 0]
    if start_at is not None and start_at < 0:  # handshake: "ready", then wait for a line on stdin
        print("ready", flush=True)
        if not sys.stdin.readline():
            raise SystemExit(1)
    elif start_at is not None:  # all writers start together
        time.sleep(max(0.0, start_at - time.time()))
    t0 = time.perf_counter()
    end = t0 + seconds
    step = 0
    O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    O_OVER = os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC
    randrange = r.randrange
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        if rate > 0:  # paced: never ahead of the schedule
            ahead = step / rate - (now - t0)
            if ahead > 0:
                time.sleep(ahead)
        for _ in range(64):
            kind = step & 3
            step += 1
            if kind == CREATE or not live:
                name = f"{tag}-{n:08d}.dat"
                fd = os.open(name, O_NEW, 0o644)
                os.write(fd, content(n))
                os.close(fd)
                live.append(name)
                gone.discard(name)
                n += 1
                ops[CREATE] += 1
                continue
            i = randrange(len(live))
            name = live[i]
            if kind == OVERWRITE:
                fd = os.open(name, O_OVER)
                os.write(fd, content(n))
                os.close(fd)
                n += 1
            elif kind == RENAME:
                new = f"{tag}-{n:08d}.dat"
                n += 1
                os.rename(name, new)
                live[i] = new
                gone.add(name)
            else:
                os.unlink(name)
                live[i] = live[-1]
                live.pop()
                gone.add(name)
            ops[kind] += 1
    elapsed = time.perf_counter() - t0
    Path(gone_out or d + ".gone").write_text("".join(os.path.join(d, g) + "\n" for g in sorted(gone)))
    total = sum(ops)
    return {
        "tag": tag,
        "seconds": round(elapsed, 3),
        "ops": total,
        "ops_by_kind": dict(zip(OP_NAMES, ops)),
        "syscalls": sum(k * s for k, s in zip(ops, SYSCALLS)),
        "ops_per_s": round(total / elapsed, 1),
        "live_at_end": len(live),
        "gone": len(gone),
        "pool": pool,
    }


# ------------------------------------------------------------------------------------------
# the same writer in C: on this VM the Python loop is CPU bound at ~60 % of what the kernel
# allows (ext4 create/unlink), the C one at ~95 %; run.py uses it when a C compiler is there
# ------------------------------------------------------------------------------------------

C_WRITER = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

static double mono(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static double wall(void) { struct timespec t; clock_gettime(CLOCK_REALTIME, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static long long wall_ns(void) { struct timespec t; clock_gettime(CLOCK_REALTIME, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }

static const char *tag;
static char filler[8192];
static char buf[4096];
static unsigned char *gone; static long gone_cap;

static void mark_gone(long k, int v) {
    if (k >= gone_cap) { long c = gone_cap ? gone_cap : 1 << 20; while (c <= k) c *= 2;
        gone = realloc(gone, c); memset(gone + gone_cap, 0, c - gone_cap); gone_cap = c; }
    gone[k] = v;
}
static size_t content(long k) {  /* unique: tag, number, time */
    size_t size = 100 + (k * 7919) % 1900;
    int h = snprintf(buf, sizeof buf, "%s %ld %lld\n", tag, k, wall_ns());
    size_t off = (k * 104729) % (sizeof filler - 2100);
    memcpy(buf + h, filler + off, size - h);
    return size;
}
static void die(const char *what, const char *name) { perror(what); fprintf(stderr, "%s\n", name); exit(1); }

int main(int argc, char **argv) {
    if (argc != 8) { fprintf(stderr, "usage: DIR SECONDS RATE POOL TAG START_AT GONE_OUT\n"); return 2; }
    const char *dir = argv[1]; double seconds = atof(argv[2]), rate = atof(argv[3]);
    int pool = atoi(argv[4]); tag = argv[5]; double start_at = atof(argv[6]); const char *gone_out = argv[7];
    mkdir(dir, 0755);
    if (chdir(dir)) die("chdir", dir);
    unsigned s = 12345; for (char *c = argv[5]; *c; c++) s = s * 31 + *c;
    for (size_t i = 0; i < sizeof filler; i++) { s = s * 1103515245 + 12345; filler[i] = "0123456789abcdef"[(s >> 16) & 15]; }
    long cap = pool + 1024, nl = 0, n = 0; long *live = malloc(cap * sizeof(long));
    char name[128], name2[128];
    for (int i = 0; i < pool; i++) {
        snprintf(name, sizeof name, "%s-%08ld.dat", tag, n);
        int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644); if (fd < 0) die("open", name);
        if (write(fd, buf, content(n)) < 0) die("write", name); close(fd);
        live[nl++] = n++;
    }
    if (start_at < 0) {  /* handshake: "ready", then wait for a line on stdin */
        char line[64]; printf("ready\n"); fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) return 1;
    }
    while (start_at > 0 && wall() < start_at) usleep(1000);
    long ops[4] = {0, 0, 0, 0}; long step = 0;
    double t0 = mono(), end = t0 + seconds, now;
    while ((now = mono()) < end) {
        if (rate > 0) { double ahead = step / rate - (now - t0); if (ahead > 0) usleep((useconds_t)(ahead * 1e6)); }
        for (int j = 0; j < 64; j++) {
            int kind = step & 3; step++;
            if (kind == 0 || nl == 0) {
                snprintf(name, sizeof name, "%s-%08ld.dat", tag, n);
                int fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644); if (fd < 0) die("open", name);
                if (write(fd, buf, content(n)) < 0) die("write", name); close(fd);
                if (nl == cap) { cap *= 2; live = realloc(live, cap * sizeof(long)); }
                live[nl++] = n++; ops[0]++; continue;
            }
            s = s * 1103515245 + 12345; long i = (s >> 4) % nl;
            snprintf(name, sizeof name, "%s-%08ld.dat", tag, live[i]);
            if (kind == 1) {
                int fd = open(name, O_WRONLY | O_TRUNC | O_CLOEXEC); if (fd < 0) die("open", name);
                if (write(fd, buf, content(n)) < 0) die("write", name); close(fd); n++;
            } else if (kind == 2) {
                snprintf(name2, sizeof name2, "%s-%08ld.dat", tag, n);
                if (rename(name, name2)) die("rename", name);
                mark_gone(live[i], 1); live[i] = n++;
            } else {
                if (unlink(name)) die("unlink", name);
                mark_gone(live[i], 1); live[i] = live[--nl];
            }
            ops[kind]++;
        }
    }
    double el = mono() - t0;
    FILE *g = fopen(gone_out, "w"); long ngone = 0;
    if (!g) die("fopen", gone_out);
    char cwd[4096]; if (!getcwd(cwd, sizeof cwd)) die("getcwd", dir);
    for (long k = 0; k < gone_cap; k++) if (gone[k]) { fprintf(g, "%s/%s-%08ld.dat\n", cwd, tag, k); ngone++; }
    fclose(g);
    long total = ops[0] + ops[1] + ops[2] + ops[3];
    printf("{\"tag\": \"%s\", \"seconds\": %.3f, \"ops\": %ld, \"ops_by_kind\": {\"create\": %ld, \"overwrite\": %ld, "
           "\"rename\": %ld, \"unlink\": %ld}, \"syscalls\": %ld, \"ops_per_s\": %.1f, \"live_at_end\": %ld, \"gone\": %ld, "
           "\"pool\": %d, \"writer\": \"c\"}\n",
           tag, el, total, ops[0], ops[1], ops[2], ops[3], 3 * (ops[0] + ops[1]) + ops[2] + ops[3], total / el, nl, ngone, pool);
    return 0;
}
"""


def build_c_writer(dest: Path) -> Path | None:
    """Compile the C writer into DEST (a directory); None without a C compiler."""
    import shutil

    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    src = dest / "burst_writer.c"
    exe = dest / "burst_writer"
    src.write_text(C_WRITER)
    subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True, capture_output=True)
    return exe


# ------------------------------------------------------------------------------------------
# the check
# ------------------------------------------------------------------------------------------


def hash_file(path: str) -> str:
    h = blake3.blake3()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def disk_state(root: str) -> dict[str, str]:
    """{path: BLAKE3 hex} of every regular file under root."""
    out = {}
    for dp, _dn, fn in os.walk(root):
        for f in fn:
            p = os.path.join(dp, f)
            out[p] = hash_file(p)
    return out


def check_nothing_missed(nocry_argv, home: str, root: str, gone_files: list[str], at: float, sample: int = 40) -> dict[str, Any]:
    """Compare the vault's state of ``root`` at ``at`` (Unix seconds, after the sync) with the disk."""
    disk = disk_state(root)
    argv = nocry_argv(home, "restore", root, "--at", f"{at:.6f}", "--dry-run", json_out=True)
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    plan_s = time.perf_counter() - t0
    if not p.stdout.strip():
        raise RuntimeError(f"restore --dry-run printed nothing (rc {p.returncode}): {p.stderr[-2000:]}")
    plan = json.loads(p.stdout)
    items = {it["path"]: it for it in plan["plan"]}
    missing, stale, meta_only, ghosts, other = [], [], [], [], []
    files_ok = 0
    for path, h in disk.items():
        it = items.get(path)
        if it is None or it["action"] == "remove" or it.get("hash") is None:
            missing.append(path)  # on disk, not in the vault's state at T
        elif it["hash"] != h:
            stale.append(path)  # in the vault, but not its final content
        elif it["action"] not in ("keep",):
            meta_only.append((path, it["action"], it.get("why", "")))
        else:
            files_ok += 1
    gone = []
    for f in gone_files:
        gone += [x for x in Path(f).read_text().splitlines() if x]
    gone_set = set(gone) - set(disk)
    for path, it in items.items():
        if path in disk:
            continue
        if it.get("ftype") == "file" or path in gone_set:
            ghosts.append((path, it["action"]))  # the vault says it exists; the disk says it is gone
        elif it["action"] not in ("keep",) and it.get("ftype") != "dir":
            other.append((path, it["action"]))
    dirs_meta = [(path, it["action"]) for path, it in items.items() if it.get("ftype") == "dir" and it["action"] != "keep"]
    # a sample of the paths that disappeared: tombstone, or never captured?
    rng = random.Random(7)
    picked = rng.sample(sorted(gone_set), min(sample, len(gone_set)))
    kinds = {"tombstone": 0, "never_captured": 0, "live_version": 0}
    examples: dict[str, list[str]] = {k: [] for k in kinds}
    for path in picked:
        q = subprocess.run(nocry_argv(home, "versions", path, json_out=True), capture_output=True, text=True, timeout=120)
        if q.returncode != 0 or not q.stdout.strip():
            k = "never_captured"
        else:
            vs = json.loads(q.stdout)["versions"]
            newest = max(vs, key=lambda v: (v["time_ns"], v["id"]))
            k = "tombstone" if newest["kind"] == "tombstone" else "live_version"
        kinds[k] += 1
        if len(examples[k]) < 3:
            examples[k].append(path)
    ok = not missing and not stale and not ghosts and kinds["live_version"] == 0
    return {
        "ok": ok,
        "files_on_disk": len(disk),
        "files_ok": files_ok,
        "missing": len(missing),
        "stale": len(stale),
        "meta_only": len(meta_only),
        "gone": len(gone_set),
        "gone_still_live_in_vault": len(ghosts),
        "dirs_meta_differ": len(dirs_meta),
        "other_differences": len(other),
        "gone_sample": kinds,
        "gone_sample_examples": examples,
        "examples": {"missing": missing[:5], "stale": stale[:5], "meta_only": meta_only[:5], "ghosts": ghosts[:5],
                     "dirs_meta": dirs_meta[:5], "other": other[:5]},
        "plan_counts": plan.get("counts"),
        "plan_warnings": plan.get("warnings", [])[:5],
        "plan_s": round(plan_s, 1),
        "at": at,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=0.0, help="operations per second of this writer (0: as fast as it can)")
    ap.add_argument("--pool", type=int, default=2000)
    ap.add_argument("--tag", default="w0")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start-at", type=float, default=None, help="Unix time at which the timed part starts; -1: print \"ready\" and wait for a line on stdin")
    ap.add_argument("--gone-out", default=None, help="where to list the paths that disappeared (default DIR.gone)")
    args = ap.parse_args()
    res = writer(os.path.abspath(args.dir), args.seconds, args.rate, args.pool, args.tag, args.seed, args.start_at, args.gone_out)
    res["writer"] = "python"
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
