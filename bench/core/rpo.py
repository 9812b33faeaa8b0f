"""Core bench 6 — RPO: from a close-write to the version being in the vault.

    sudo .venv/bin/python bench/core/rpo.py [--quick] [--runs N] [--src worktree|head|DIR]

A daemon protects a small tree. A probe rewrites one of 20 files (2-6 KiB of unique text), closes
it, and polls the vault index read-only (HOME/vault/index.sqlite: ``versions`` JOIN ``objects``,
matching the path and the BLAKE3 content hash) every millisecond until the version is there.
Per edit it records

    visible   close() returned -> the version's row is committed and readable (what a restore sees)
    stamped   close() returned -> the version's own time (versions.time_ns, the capture time that
              ``restore --at`` compares against)

then waits 0-20 ms (random) before the next edit. Probe styles:

    quick     open(O_TRUNC), one write, close                (typically one merged kernel event)
    two-step  open(O_TRUNC), write, 20 ms pause, write, close (MODIFY seen before CLOSE_WRITE, like
              an application that takes a moment to save)

Phases: idle (nothing else writes; the probe edits back to back, every ~25-45 ms, so it is a
steady writer itself and its commits come every ``capture.group_commit_ms``); lone (the same
edits LONE_GAP_S apart, longer than the group commit: a save after a quiet while); paced storm: one writer process rewriting 2,000 files of
4-64 KiB (mixed text/random) in the same tree at 500 files/s while the quick probe runs; storm:
the same writer as fast as it can. Each phase stops after N edits or its time cap (a phase whose
edits take seconds ends with few samples: that is the finding). Figures: median and p95 over the
edits of a phase (several hundred for idle and paced in a full run).
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from blake3 import blake3

from common import (NC, PY, Daemon, Figure, Work, add_src_arg, common_args, finish, log, median, pct, rmtree, settle,
                    setup_code)

NAME = "rpo"
FILES = 20
STORM_PACED = 500  # files/s for the paced storm (about 17 MB/s)
LONE_GAP_S = 0.4  # between lone edits: longer than the default group commit (250 ms)

STORM = r"""
import os, random, sys, time
root = sys.argv[1]
rate = float(sys.argv[2])  # files/s; 0: as fast as it can
r = random.Random(7)
words = [bytes(r.choice(b'abcdefghijklmnopqrstuvwxyz') for _ in range(r.randint(2, 9))) for _ in range(3000)]
text = b' '.join(r.choice(words) for _ in range(300000))
rnd = r.randbytes(4 << 20)
for d in range(20):
    os.makedirs(os.path.join(root, 'd%02d' % d), exist_ok=True)
n = nbytes = 0
sys.stdout.write('go\n'); sys.stdout.flush()
t0 = time.monotonic()
try:
    while True:
        j = n % 2000
        size = r.randint(4096, 65536)
        pool = text if j % 2 else rnd
        off = r.randrange(len(pool) - size)
        with open(os.path.join(root, 'd%02d' % (j % 20), 'f%04d' % j), 'wb') as f:
            f.write(b'%d ' % n + pool[off:off + size])
        n += 1
        nbytes += size
        if rate and n % 20 == 0:
            ahead = n / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
except KeyboardInterrupt:
    pass
dt = time.monotonic() - t0
sys.stdout.write('%d %d %.3f\n' % (n, nbytes, dt)); sys.stdout.flush()
"""


class Probe:
    def __init__(self, home: Path, tree: Path, seed: int):
        self.dir = tree / "probe"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(f"file:{home / 'vault' / 'index.sqlite'}?mode=ro", uri=True, isolation_level=None)
        self.r = random.Random(seed)
        self.n = 0

    def edit(self, style: str, timeout: float = 60.0) -> dict:
        self.n += 1
        i = self.n
        path = self.dir / f"p{i % FILES:02d}.txt"
        body = (f"probe edit {i} {time.time_ns()} " + " ".join(str(self.r.random()) for _ in range(self.r.randint(100, 300)))).encode() + b"\n"
        h = blake3(body).digest()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        if style == "quick":
            os.write(fd, body)
        else:
            half = len(body) // 2
            os.write(fd, body[:half])
            time.sleep(0.02)
            os.write(fd, body[half:])
        os.close(fd)
        t_close = time.time_ns()
        p_close = time.perf_counter()
        deadline = p_close + timeout
        q = ("SELECT v.time_ns FROM versions v JOIN objects o ON o.id = v.object_id "
             "WHERE o.path = ? AND v.content = ? LIMIT 1")
        key = os.fsencode(str(path))
        row = None
        while time.perf_counter() < deadline:
            row = self.db.execute(q, (key, h)).fetchone()
            if row:
                break
            time.sleep(0.001)
        p_vis = time.perf_counter()
        time.sleep(self.r.uniform(0, 0.02))
        if not row:
            return {"i": i, "timeout": True}
        return {"i": i, "visible_ms": round((p_vis - p_close) * 1000, 2), "stamped_ms": round((row[0] - t_close) / 1e6, 2)}

    def close(self) -> None:
        self.db.close()


def storm_phase(d: Daemon, home: Path, storm_dir: Path, probe: Probe, n: int, rate: float, max_s: float) -> dict:
    """Run the probe while a writer rewrites 2,000 files in storm_dir at ``rate`` files/s (0: flat
    out). Records the writer's rate, the daemon's CPU and versions, and its backlog at the end:
    ``pending`` paths and ``queued`` event batches (the in-process queue from the sensor thread)."""
    storm_dir.mkdir()
    c0 = d.cpu_seconds()
    v0 = d.status().get("versions_stored", 0)
    w = subprocess.Popen([PY, "-c", STORM, str(storm_dir), str(rate)], stdout=subprocess.PIPE, text=True)
    try:
        assert w.stdout is not None
        w.stdout.readline()
        time.sleep(2.0)  # let the storm build up
        log(f"rpo storm ({rate or 'unpaced'} files/s): up to {n} quick edits, {max_s} s")
        ts = time.monotonic()
        edits = phase(probe, n, "quick", max_s)
        storm_s = time.monotonic() - ts
        st = d.status()
    finally:
        w.send_signal(2)
        line = w.communicate(timeout=60)[0].strip().splitlines()
    cnt, nbytes, dt = line[-1].split()
    out = {"edits": edits,
           "writer": {"target_files_per_s": rate, "files_written": int(cnt), "bytes": int(nbytes), "seconds": float(dt),
                      "files_per_s": round(int(cnt) / float(dt)), "MBps": round(int(nbytes) / 1e6 / float(dt), 1)},
           "daemon": {"cpu_s": round(d.cpu_seconds() - c0, 2), "versions_stored": st.get("versions_stored", 0) - v0,
                      "probe_phase_s": round(storm_s, 1), "overflows": st.get("overflows"),
                      "pending_at_end": st.get("pending"), "queued_batches_at_end": st.get("queued")}}
    t0 = time.perf_counter()
    d.sync()
    out["daemon"]["sync_after_storm_s"] = round(time.perf_counter() - t0, 2)
    rmtree(storm_dir)
    return out


def phase(probe: Probe, n: int, style: str, max_s: float, gap_s: float = 0.0) -> list[dict]:
    out = []
    t0 = time.monotonic()
    for _ in range(n):
        if gap_s:
            time.sleep(gap_s)
        out.append(probe.edit(style))
        if time.monotonic() - t0 > max_s:
            break
    return out


def summary(rows: list[dict]) -> dict:
    vis = [r["visible_ms"] for r in rows if not r.get("timeout")]
    st = [r["stamped_ms"] for r in rows if not r.get("timeout")]
    return {"n": len(rows), "timeouts": sum(1 for r in rows if r.get("timeout")),
            "visible_median_ms": median(vis), "visible_p95_ms": pct(vis, 95), "visible_p99_ms": pct(vis, 99),
            "visible_max_ms": max(vis) if vis else None, "stamped_median_ms": median(st), "stamped_p95_ms": pct(st, 95)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_args(ap)
    add_src_arg(ap)
    args = ap.parse_args()
    n = args.runs or (20 if args.quick else 300)
    n2 = max(5, n // 5)
    max_s = 8 if args.quick else 90
    work = Work.create(args, NAME)
    t_start = time.perf_counter()
    try:
        code = setup_code(args, work)
        tree = work.fresh("tree")
        home = work.path("home")
        rmtree(home)
        raw: dict = {}
        with Daemon(home, tree) as d:
            probe = Probe(home, tree, seed=11)
            try:
                d.sync()
                raw["settle_idle"] = settle()
                log(f"rpo idle: {n} quick edits")
                raw["idle"] = phase(probe, n, "quick", max_s)
                log(f"rpo lone: {n2} quick edits {LONE_GAP_S} s apart")
                raw["lone"] = phase(probe, n2, "quick", max_s, gap_s=LONE_GAP_S)
                log(f"rpo idle: {n2} two-step edits")
                raw["idle_two_step"] = phase(probe, n2, "two-step", max_s)
                for name, rate, mx in (("storm_paced", STORM_PACED, max_s * 2 // 3), ("storm", 0, max_s // 2)):
                    raw[name] = storm_phase(d, home, tree / name, probe, n, rate, mx)
            finally:
                probe.close()
        rmtree(home)
        rmtree(tree)
        s_idle, s_two, s_lone = summary(raw["idle"]), summary(raw["idle_two_step"]), summary(raw["lone"])
        s_paced, s_storm = summary(raw["storm_paced"]["edits"]), summary(raw["storm"]["edits"])
        raw["summary"] = {"idle": s_idle, "lone": s_lone, "idle_two_step": s_two, "storm_paced": s_paced, "storm": s_storm}
        cmd = f"{NC} --home $H protect $T; [write+close $T/probe/pNN.txt; poll sqlite3 file:$H/vault/index.sqlite?mode=ro until the version row appears] x N"
        note_ms = lambda s: (f"p95 {s['visible_p95_ms']:.0f} ms, p99 {s['visible_p99_ms']:.0f} ms, max {s['visible_max_ms']:.0f} ms; "  # noqa: E731
                             f"version time - close: median {s['stamped_median_ms']:.0f} ms, p95 {s['stamped_p95_ms']:.0f} ms; timeouts {s['timeouts']}")

        def storm_note(ph: dict) -> str:
            dd = ph["daemon"]
            return (f"daemon stored {dd['versions_stored']:,} versions with {dd['cpu_s']} CPU s in {dd['probe_phase_s']} s; "
                    f"backlog at the end: {dd['pending_at_end']} paths pending, {dd['queued_batches_at_end']} event batches queued; "
                    f"`nocry sync` after the storm {dd['sync_after_storm_s']} s")

        wp, wf = raw["storm_paced"]["writer"], raw["storm"]["writer"]
        slow = sum(1 for r in raw["idle"] if not r.get("timeout") and r["visible_ms"] > 500)
        figs = [
            Figure("rpo.idle", "idle, edits back to back: close-write -> version visible in the index (median)", s_idle["visible_median_ms"], "ms",
                   runs=s_idle["n"], cmd=cmd, note=note_ms(s_idle) + f"; {slow} of {s_idle['n']} edits took > 500 ms"),
            Figure("rpo.idle_p95", "idle: p95", s_idle["visible_p95_ms"], "ms", runs=s_idle["n"], cmd=cmd),
            Figure("rpo.lone", f"a lone save ({LONE_GAP_S} s after the last): median", s_lone["visible_median_ms"], "ms",
                   ratio=s_lone["visible_median_ms"] / s_idle["visible_median_ms"], ratio_what="lone / back to back",
                   runs=s_lone["n"], cmd=cmd.replace("x N", f"x N, {LONE_GAP_S} s apart"), note=note_ms(s_lone)),
            Figure("rpo.two_step", "idle, writer pauses 20 ms between two writes (median)", s_two["visible_median_ms"], "ms",
                   ratio=s_two["visible_median_ms"] / s_idle["visible_median_ms"], ratio_what="two-step / quick",
                   runs=s_two["n"], cmd=cmd, note=note_ms(s_two)),
            Figure("rpo.storm_paced", f"under a paced write storm ({wp['files_per_s']:,} files/s, {wp['MBps']} MB/s, 1 writer): median",
                   s_paced["visible_median_ms"], "ms", ratio=s_paced["visible_median_ms"] / s_idle["visible_median_ms"],
                   ratio_what="storm / idle", runs=s_paced["n"], cmd=cmd + "  while the storm writer runs",
                   note=note_ms(s_paced) + "; " + storm_note(raw["storm_paced"])),
            Figure("rpo.storm_paced_p95", "under the paced storm: p95", s_paced["visible_p95_ms"], "ms",
                   ratio=s_paced["visible_p95_ms"] / s_idle["visible_p95_ms"], ratio_what="storm / idle", runs=s_paced["n"], cmd=cmd),
            Figure("rpo.storm", f"under an unpaced write storm ({wf['files_per_s']:,} files/s, {wf['MBps']} MB/s, 1 writer): median",
                   s_storm["visible_median_ms"], "ms", ratio=s_storm["visible_median_ms"] / s_idle["visible_median_ms"],
                   ratio_what="storm / idle", runs=s_storm["n"], cmd=cmd + "  while the storm writer runs",
                   note=note_ms(s_storm) + "; " + storm_note(raw["storm"])),
            Figure("rpo.storm_p95", "under the unpaced storm: p95", s_storm["visible_p95_ms"], "ms",
                   ratio=s_storm["visible_p95_ms"] / s_idle["visible_p95_ms"], ratio_what="storm / idle", runs=s_storm["n"], cmd=cmd),
        ]
        finish(NAME, args, work, code, {"edits": n, "two_step_edits": n2, "lone_edits": n2, "lone_gap_s": LONE_GAP_S, "max_phase_s": max_s, "storm_paced_files_per_s": STORM_PACED},
               figs, raw, t_start)
    finally:
        work.close()


if __name__ == "__main__":
    sys.exit(main())
