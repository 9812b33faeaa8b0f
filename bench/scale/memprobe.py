"""Where the daemon's memory and time go in a rescan: the reconciliation of rescan_tree, measured
piece by piece outside the daemon (tracemalloc, RSS, timings).

    sudo .venv/bin/python bench/scale/memprobe.py [--files 200000] [--src head]

On a fresh ext4 of its own (as run.py --isolate): a generated tree (bench/scale/gen.py), a baseline
with ``nocry protect`` (daemon stopped afterwards), then a child process with the code under test
on PYTHONPATH that does what ``nocry.capture.scan.rescan_tree`` does at the start of every rescan:

    known = {rec.path: rec for rec in vault.latest_under(root) if rec.exists}

and reports, per object in ``known``: traced bytes (tracemalloc), RSS growth, the allocation sites
(file:line) that hold them, the sizes of one record's parts (sys.getsizeof), and RSS after ``del
known`` and after glibc ``malloc_trim(0)`` (how much of it the process gives back). Then the time
of the parts of a rescan: the index query alone, the walk alone (``walk_tree``), and both with the
``stat_key`` comparison. Results: bench/results/scale-memprobe.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "core"))
sys.path.insert(0, str(HERE))

import common  # noqa: E402
from common import PY, RESULTS, Daemon, Work, log, machine, rmtree, setup_code  # noqa: E402

import gen  # noqa: E402
from run import make_fs, unmount_fs  # noqa: E402

PROBE = r"""
import ctypes, gc, json, os, sys, time, tracemalloc
from pathlib import Path
from nocry.config import load_config
from nocry.vault import Vault
from nocry.capture.scan import walk_tree, ScanReport
from nocry.capture.snapshot import stat_key

home, tree = sys.argv[1], os.fsencode(sys.argv[2])

def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) * 1024
    return 0

def hwm():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) * 1024
    return 0

config = load_config(Path(home) / 'config.toml')
vault = Vault(os.path.join(home, 'vault'), config.vault, readonly=True)
out = {}
gc.collect()
r0 = rss()
t0 = time.perf_counter()
known = {rec.path: rec for rec in vault.latest_under(tree) if rec.exists}
out['query_s'] = round(time.perf_counter() - t0, 2)
n = len(known)
r1 = rss()
out['objects'] = n
out['rss_before'] = r0
out['rss_with_known'] = r1
out['rss_per_object'] = round((r1 - r0) / max(1, n))
rec = next(iter(known.values()))
parts = {}
for f in rec.__slots__:
    v = getattr(rec, f)
    parts[f] = [type(v).__name__, sys.getsizeof(v)]
out['record_getsizeof'] = sys.getsizeof(rec)
out['record_fields'] = parts
vals = list(known.values())[:1000]
shared = {}
for f in ('kind', 'ftype', 'reason'):
    shared[f] = len({id(getattr(v, f)) for v in vals})
out['distinct_string_objects_in_1000_records'] = shared
out['dict_getsizeof'] = sys.getsizeof(known)
del vals, rec
del known
gc.collect()
out['rss_after_del'] = rss()
try:
    ctypes.CDLL('libc.so.6').malloc_trim(0)
    out['rss_after_malloc_trim'] = rss()
except OSError:
    pass
# traced: the same again under tracemalloc
tracemalloc.start(8)
known = {rec.path: rec for rec in vault.latest_under(tree) if rec.exists}
snap = tracemalloc.take_snapshot()
cur, peak = tracemalloc.get_traced_memory()
out['traced_current'] = cur
out['traced_peak'] = peak
out['traced_per_object'] = round(cur / max(1, len(known)))
stats = snap.statistics('lineno')
out['top_sites'] = [[str(s.traceback[0]), s.size, s.count] for s in stats[:12]]
tracemalloc.stop()
del known
gc.collect()
# time of the parts of a rescan
t0 = time.perf_counter()
k = 0
for _ in vault.latest_under(tree):
    k += 1
out['query_only_s'] = round(time.perf_counter() - t0, 2)
t0 = time.perf_counter()
rep = ScanReport(tree=tree)
w = sum(1 for _ in walk_tree(tree, lambda p: False, rep))
out['walk_only_s'] = round(time.perf_counter() - t0, 2)
out['walk_entries'] = w
t0 = time.perf_counter()
known = {rec.path: rec for rec in vault.latest_under(tree) if rec.exists}
diff = 0
for path, st in walk_tree(tree, lambda p: False, ScanReport(tree=tree)):
    prev = known.pop(path, None)
    if prev is None or stat_key(prev) != stat_key(st):
        diff += 1
out['reconcile_s'] = round(time.perf_counter() - t0, 2)
out['reconcile_differs'] = diff
out['hwm'] = hwm()
vault.close()
print(json.dumps(out))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=200_000)
    ap.add_argument("--src", default="worktree", help="worktree (default), head or a git REV, or a src DIR")
    ap.add_argument("--tmp", default="/var/tmp")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, common._on_signal)
    signal.signal(signal.SIGINT, common._on_signal)
    top = Path(tempfile.mkdtemp(prefix="nocry-memprobe-", dir=args.tmp))
    loop = None
    try:
        loop = make_fs(top, max(6, args.files * 24 * 1024 // (1 << 30) + 4), args.files * 2 + 200_000)
        root = loop[0] / "work"
        root.mkdir()
        common.WORK_ROOT = root
        common.PROTECT_MODE = "observe"
        args.quick = True
        code = setup_code(args, Work(top, keep=True))
        tree, home = root / "tree", root / "home"
        meta = gen.generate(tree, args.files, seed=1, procs=4)
        log(f"tree: {meta['files']:,} files; baseline ...")
        d = Daemon(home, tree).start()
        d.stop()
        log("probe ...")
        p = subprocess.run([PY, "-c", PROBE, str(home), str(tree)], capture_output=True, text=True, timeout=3600)
        if p.returncode != 0:
            raise RuntimeError(p.stderr[-3000:])
        res = {"files": args.files, "tree": meta, "code": code, "machine": machine(root), "probe": json.loads(p.stdout)}
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / "scale-memprobe.json"
        out.write_text(json.dumps(res, indent=1) + "\n")
        print(json.dumps(res["probe"], indent=1))
        log(f"wrote {out}")
        return 0
    finally:
        common._cleanup_daemons()
        if loop is not None:
            common.kill_under(loop[0])
            if unmount_fs(*loop):
                rmtree(top)


if __name__ == "__main__":
    sys.exit(main())
