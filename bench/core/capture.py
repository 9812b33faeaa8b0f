"""Core bench 2 — capture throughput into the vault.

    sudo .venv/bin/python bench/core/capture.py [--quick] [--runs N] [--src worktree|head|DIR]

(a) copy-in: a daemon protects an empty tree (fresh home each run); a generated tree of 2,000
    files / 200 MiB (mixed sizes: text and source ~35 %, half-text documents ~30 %, random
    binaries ~35 % of the bytes) is copied in with ``cp -a``; the clock runs from the start of the
    copy until ``nocry sync`` returns (everything is in the vault). MB/s = tree bytes / that time.
    In the same run, in rotating order: the same copy with nocry not running, and a
    ``restic backup`` of that copy into a fresh repository. Ratios: nocry MB/s / restic MB/s (restic
    timed from the start of the same copy to the end of its backup), and the copy's own wall time
    with nocry on / off.
(b) baseline: ``nocry protect TREE`` on an existing tree of 10,000 files / 1 GiB (fresh home each
    run; protect returns once the baseline is in the vault) vs ``restic backup TREE`` into a fresh
    repository. Both read the tree from the page cache (24 GB of RAM; everything is warm).
"""

from __future__ import annotations

import argparse
import sys
import time

from common import (NC, Daemon, Figure, Restic, Work, add_src_arg, common_args, copy_tree, data_tree, describe_tree, finish,
                    flush_disk, log, median, rmtree, settle, setup_code, specs, vault_sizes)

NAME = "capture"


def copy_in(work: Work, src, meta, i: int) -> dict:
    bytes_ = meta["bytes"]
    out: dict = {"run": i}
    home = work.path("a-home")
    tree = work.path("a-tree")
    off = work.path("a-off")
    repo = Restic(work.path("a-repo"))

    def nocry_leg() -> None:
        rmtree(home)
        work.fresh("a-tree")
        with Daemon(home, tree) as d:
            d.sync()
            flush_disk()
            out["settle_nocry"] = settle()
            c0 = d.cpu_seconds()
            t0 = time.perf_counter()
            copy_tree(src, tree / "in")
            t1 = time.perf_counter()
            d.sync()
            t2 = time.perf_counter()
            out["nocry_cpu_s"] = round(d.cpu_seconds() - c0, 2)
            out["nocry_copy_s"] = round(t1 - t0, 3)
            out["nocry_copy_sync_s"] = round(t2 - t0, 3)
            out["nocry_MBps"] = round(bytes_ / 1e6 / (t2 - t0), 1)
            st = d.status()
            out["status"] = {k: st.get(k) for k in ("events_total", "kernel_events", "overflows", "rescans", "versions_stored")}
        out["vault"] = vault_sizes(home)
        rmtree(home)
        rmtree(tree)

    def off_leg() -> None:
        rmtree(off)
        flush_disk()
        out["settle_off"] = settle()
        t0 = time.perf_counter()
        copy_tree(src, off / "in")
        t1 = time.perf_counter()
        repo.close()
        repo.init()
        flush_disk()
        t2 = time.perf_counter()
        repo.backup(off)
        t3 = time.perf_counter()
        out["off_copy_s"] = round(t1 - t0, 3)
        out["restic_backup_s"] = round(t3 - t2, 3)
        out["restic_copy_backup_s"] = round((t1 - t0) + (t3 - t2), 3)
        out["restic_MBps"] = round(bytes_ / 1e6 / ((t1 - t0) + (t3 - t2)), 1)
        out["restic_backup_only_MBps"] = round(bytes_ / 1e6 / (t3 - t2), 1)
        out["restic_repo_bytes"] = repo.size()
        repo.close()
        rmtree(off)

    legs = [nocry_leg, off_leg] if i % 2 == 0 else [off_leg, nocry_leg]
    for leg in legs:
        leg()
    log(f"copy-in run {i}: nocry {out['nocry_copy_sync_s']} s ({out['nocry_MBps']} MB/s, copy {out['nocry_copy_s']} s), "
        f"off copy {out['off_copy_s']} s, restic backup {out['restic_backup_s']} s")
    return out


def baseline(work: Work, tree, meta, i: int) -> dict:
    bytes_ = meta["bytes"]
    out: dict = {"run": i}
    home = work.path("b-home")
    repo = Restic(work.path("b-repo"))

    def nocry_leg() -> None:
        rmtree(home)
        flush_disk()
        out["settle_nocry"] = settle()
        d = Daemon(home, tree)
        try:
            d.start()
            out["protect_s"] = round(d.protect_s, 3)
            out["nocry_MBps"] = round(bytes_ / 1e6 / d.protect_s, 1)
            out["nocry_cpu_s"] = round(d.cpu_seconds(), 2)  # the daemon's whole life so far = the baseline
        finally:
            d.stop()
        out["vault"] = vault_sizes(home)
        rmtree(home)

    def restic_leg() -> None:
        repo.close()
        repo.init()
        flush_disk()
        out["settle_restic"] = settle()
        s = repo.backup(tree)
        out["restic_backup_s"] = round(s, 3)
        out["restic_MBps"] = round(bytes_ / 1e6 / s, 1)
        out["restic_repo_bytes"] = repo.size()
        repo.close()

    for leg in ([nocry_leg, restic_leg] if i % 2 == 0 else [restic_leg, nocry_leg]):
        leg()
    log(f"baseline run {i}: nocry protect {out['protect_s']} s ({out['nocry_MBps']} MB/s), restic {out['restic_backup_s']} s")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_args(ap)
    add_src_arg(ap)
    args = ap.parse_args()
    runs_a = args.runs or (2 if args.quick else 5)
    runs_b = args.runs or (1 if args.quick else 3)
    work = Work.create(args, NAME)
    t_start = time.perf_counter()
    try:
        code = setup_code(args, work)
        sp = specs(args.quick)
        small, meta_s = data_tree(work, sp["small"])
        big, meta_b = data_tree(work, sp["big"])

        a = [copy_in(work, small, meta_s, i) for i in range(runs_a)]
        tree_b = work.fresh("b-tree")
        copy_tree(big, tree_b)
        b = [baseline(work, tree_b, meta_b, i) for i in range(runs_b)]
        rmtree(tree_b)

        cmd_a = f"{NC} --home $H protect $T; time ( cp -a $SRC/. $T/in && {NC} --home $H sync )"
        cmd_a_r = "time ( cp -a $SRC/. $OFF/in && restic -r $R backup --compression auto $OFF )"
        cmd_b = f"time {NC} --home $H protect $T"
        cmd_b_r = "time restic -r $R backup --compression auto $T"
        figs = [
            Figure("capture.copy_in", f"copy {describe_tree(meta_s)} into a protected tree, until `nocry sync` returns",
                   median([r["nocry_MBps"] for r in a]), "MB/s",
                   ratio=median([r["nocry_MBps"] / r["restic_MBps"] for r in a]),
                   ratio_what="nocry / restic (copy + restic backup) MB/s", runs=runs_a, cmd=f"{cmd_a}  vs  {cmd_a_r}",
                   raw=[r["nocry_MBps"] for r in a],
                   note=f"restic copy+backup median {median([r['restic_MBps'] for r in a])} MB/s, backup alone "
                        f"{median([r['restic_backup_only_MBps'] for r in a])} MB/s; daemon CPU median "
                        f"{median([r['nocry_cpu_s'] for r in a])} s per run"),
            Figure("capture.copy_wall", "the `cp -a` itself (what the user waits for), nocry on / off",
                   median([r["nocry_copy_s"] for r in a]), "s",
                   ratio=median([r["nocry_copy_s"] / r["off_copy_s"] for r in a]), ratio_what="on / off",
                   runs=runs_a, cmd="time cp -a $SRC/. $T/in  (nocry protecting $T vs not running)",
                   raw=[(r["nocry_copy_s"], r["off_copy_s"]) for r in a]),
            Figure("capture.baseline", f"baseline of an existing tree: {describe_tree(meta_b)}",
                   median([r["nocry_MBps"] for r in b]), "MB/s",
                   ratio=median([r["nocry_MBps"] / r["restic_MBps"] for r in b]), ratio_what="nocry protect / restic backup MB/s",
                   runs=runs_b, cmd=f"{cmd_b}  vs  {cmd_b_r}", raw=[r["nocry_MBps"] for r in b],
                   note=f"protect median {median([r['protect_s'] for r in b]):.1f} s, restic backup median "
                        f"{median([r['restic_backup_s'] for r in b]):.1f} s; daemon CPU median {median([r['nocry_cpu_s'] for r in b])} s; "
                        f"vault {b[0]['vault']['bytes_stored'] / 2**20:.0f} MiB in packs vs restic repo "
                        f"{b[0]['restic_repo_bytes'] / 2**20:.0f} MiB"),
        ]
        finish(NAME, args, work, code, {"runs_a": runs_a, "runs_b": runs_b, "tree_a": meta_s, "tree_b": meta_b},
               figs, {"copy_in": a, "baseline": b}, t_start)
    finally:
        work.close()


if __name__ == "__main__":
    sys.exit(main())
