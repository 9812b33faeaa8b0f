"""Core bench 1 — the sensor: runs bench/sensor_bench.py (unchanged) several times and records its
figures: events/s the parser drains (decode alone; decode + resolve + filter + attribute), and the
sustained events/s a real reader thread drains while writers hammer a tree, with overflows.

    sudo .venv/bin/python bench/core/sensor.py [--quick] [--runs N] [--src worktree|head|DIR]

Ratio columns: process/decode (what resolution and attribution cost on top of parsing) and, for the
sustained workloads, writer seconds / seconds until drained (1.00 = the sensor kept up live).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from common import (PY, REPO, RESULTS, Figure, Work, add_src_arg, common_args, finish, log, median, run, settle,
                    setup_code, shjoin)

NAME = "sensor"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_args(ap)
    add_src_arg(ap)
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    seconds = 1.0 if args.quick else 5.0
    work = Work.create(args, NAME)
    t_start = time.perf_counter()
    try:
        code = setup_code(args, work)
        argv = [PY, str(REPO / "bench" / "sensor_bench.py"), "--seconds", str(seconds),
                "--out", str(RESULTS / "sensor_bench.jsonl")]
        cmd = shjoin([".venv/bin/python", "bench/sensor_bench.py", "--seconds", str(seconds)])
        raw = []
        for i in range(runs):
            quiet = settle()
            log(f"sensor run {i + 1}/{runs}: {cmd}")
            env = dict(os.environ, TMPDIR=str(work.root))  # its temp trees go to our work dir (and filesystem)
            out = run(argv, timeout=600, env=env).stdout.strip().splitlines()[-1]
            rec = json.loads(out)
            rec["settle"] = quiet
            raw.append(rec)

        def col(f):  # noqa: ANN001
            return [f(r) for r in raw]

        def sus(r, w):  # noqa: ANN001
            return next(s for s in r["sustained"] if s["workload"] == w)

        dec = col(lambda r: r["drain"]["decode_events_per_s"])
        proc = col(lambda r: r["drain"]["process_events_per_s"])
        figs = [
            Figure("sensor.decode", "parser: decode one 256 KiB read buffer", median(dec), "events/s", runs=runs, cmd=cmd, raw=dec),
            Figure("sensor.process", "parser: decode + resolve + filter + attribute (FanotifySensor.process)", median(proc), "events/s",
                   ratio=median([p / d for p, d in zip(proc, dec)]), ratio_what="process / decode", runs=runs, cmd=cmd, raw=proc),
        ]
        for w, what in (("files", "sustained: 1 writer creating/writing/closing/deleting small files"),
                        ("renames", "sustained: 1 writer renaming one file through new names (drain limit)")):
            ev = col(lambda r, w=w: sus(r, w)["raw_events_per_s"])
            em = col(lambda r, w=w: sus(r, w)["emitted_events_per_s"])
            ovf = col(lambda r, w=w: sus(r, w)["overflows"])
            keep = col(lambda r, w=w: sus(r, w)["seconds"] / max(1e-9, sus(r, w).get("drained_after_s", sus(r, w)["seconds"])))
            figs.append(Figure(f"sensor.{w}", what + " — raw kernel events/s read", median(ev), "events/s",
                               ratio=median(keep), ratio_what="writer s / drained-after s (1 = kept up)", runs=runs, cmd=cmd,
                               raw=ev, note=f"overflows per run {ovf}; emitted (tree) events/s median {median(em):.0f}"))
        clean = [s["raw_events_per_s"] for r in raw for s in r["sustained"] if s["overflows"] == 0]
        total = sum(len(r["sustained"]) for r in raw)
        figs.append(Figure("sensor.no_overflow", "sustained: raw events/s of the runs (both workloads) with 0 overflows",
                           median(clean) if clean else float("nan"), "events/s", runs=len(clean), cmd=cmd, raw=clean,
                           note=f"{len(clean)}/{total} sustained runs without overflow; max_queued_events {raw[0]['max_queued_events']}"))
        finish(NAME, args, work, code, {"runs": runs, "seconds": seconds}, figs, raw, t_start)
    finally:
        work.close()


if __name__ == "__main__":
    sys.exit(main())
