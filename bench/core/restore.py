"""Core bench 4 — restore a whole tree: nocry vs restic.

    sudo .venv/bin/python bench/core/restore.py [--quick] [--runs N] [--src worktree|head|DIR]

Setup (not timed): a copy of the generated 10,000-file / 1 GiB tree (many small text and source
files, documents, some big random binaries); ``nocry protect`` (baseline), T = now, ``nocry
stop``; ``restic backup`` of the same tree into a fresh repository (format 2, compression auto).

Each run, in rotating order, after ``sync`` (writeback) of the previous step:
  nocry        everything under the tree deleted, daemon STOPPED; time ``nocry restore TREE --at T``
               (plan, write, set metadata, record, and verify every object: BLAKE3 of the content)
  restic       time ``restic restore latest --target DIR`` into an empty directory
  restic -v    the same with ``--verify`` (restic re-reads and checks what it wrote)
Then, with the daemon RUNNING (``nocry protect TREE`` first, tree deleted while it protects,
``nocry sync``): time ``nocry restore TREE --at T`` until it returns, and until ``nocry sync``
returns after it (the daemon sees all the writes of the restore).

Vault and repository are read from the page cache (warm; the machine has far more RAM than the
data), so this compares the restore code paths, not the disk.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time

from common import (NC, Daemon, Figure, Restic, Work, add_src_arg, common_args, copy_tree, data_tree, describe_tree, finish,
                    flush_disk, log, median, nocry, rmtree, settle, setup_code, specs, tree_bytes)

NAME = "restore"


def empty(tree) -> None:  # noqa: ANN001
    """Delete everything under the tree (keep the directory itself)."""
    for e in list(tree.iterdir()):
        rmtree(e)


def restore_nocry(home, tree, at: str) -> tuple[float, dict]:  # noqa: ANN001
    t0 = time.perf_counter()
    out = nocry(home, "restore", str(tree), "--at", at, json_out=True, timeout=3600)
    return time.perf_counter() - t0, out


def versions_since(home, t_ns: int) -> dict:  # noqa: ANN001
    """{"reason/kind": count} of the versions stored since t_ns (read-only look at the index): shows
    whether the running daemon re-captured what the restore wrote."""
    db = sqlite3.connect(f"file:{home}/vault/index.sqlite?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT reason, kind, COUNT(*) FROM versions WHERE time_ns >= ? GROUP BY reason, kind", (t_ns,)).fetchall()
    finally:
        db.close()
    return {f"{r}/{k}": n for r, k, n in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_args(ap)
    add_src_arg(ap)
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 5)
    runs_live = args.runs or (1 if args.quick else 3)
    work = Work.create(args, NAME)
    t_start = time.perf_counter()
    try:
        code = setup_code(args, work)
        src, meta = data_tree(work, specs(args.quick)["big"])
        n_files, n_bytes = tree_bytes(src)
        tree = work.fresh("tree")
        copy_tree(src, tree)
        home = work.path("home")
        rmtree(home)
        d = Daemon(home, tree)
        with d:
            pass  # baseline, then stop
        at = f"{time.time():.6f}"
        repo = Restic(work.path("repo"))
        repo.close()
        repo_info = repo.init()
        backup_s = repo.backup(tree)
        target = work.path("target")

        raw = []
        for i in range(runs):
            rec: dict = {"run": i}

            def leg_nocry() -> None:
                empty(tree)
                flush_disk()
                rec["settle_nocry"] = settle()
                s, out = restore_nocry(home, tree, at)
                rec["nocry_s"] = round(s, 3)
                rec["nocry_counts"] = out.get("counts")
                rec["nocry_failed"] = out.get("failed")
                got = tree_bytes(tree)
                rec["nocry_ok"] = got == (n_files, n_bytes)

            def leg_restic(verify: bool) -> None:
                rmtree(target)
                target.mkdir()
                flush_disk()
                rec["settle_restic" + ("_verify" if verify else "")] = settle()
                s = repo.restore(target, *(["--verify"] if verify else []))
                key = "restic_verify_s" if verify else "restic_s"
                rec[key] = round(s, 3)
                got = tree_bytes(target)
                rec[key.replace("_s", "_ok")] = got == (n_files, n_bytes)
                rmtree(target)

            legs = [leg_nocry, lambda: leg_restic(False), lambda: leg_restic(True)]
            k = i % 3
            for leg in legs[k:] + legs[:k]:
                leg()
            log(f"restore run {i}: nocry {rec['nocry_s']} s, restic {rec['restic_s']} s, restic --verify {rec['restic_verify_s']} s")
            raw.append(rec)

        # with the daemon running
        live = []
        for i in range(runs_live):
            rec = {"run": i}
            with Daemon(home, tree) as dl:  # tree holds the last restore: the rescan finds nothing new
                empty(tree)
                dl.sync()
                flush_disk()
                rec["settle"] = settle()
                c0 = dl.cpu_seconds()
                t_ns = time.time_ns()
                t0 = time.perf_counter()
                out = nocry(home, "restore", str(tree), "--at", at, json_out=True, timeout=3600)
                t1 = time.perf_counter()
                dl.sync()
                t2 = time.perf_counter()
                rec["restore_s"] = round(t1 - t0, 3)
                rec["restore_sync_s"] = round(t2 - t0, 3)
                rec["daemon_cpu_s"] = round(dl.cpu_seconds() - c0, 2)
                rec["counts"] = out.get("counts")
                st = dl.status()
                rec["daemon"] = {k: st.get(k) for k in ("versions_stored", "tombstones_stored", "overflows", "rescans")}
                rec["versions_since_restore_start"] = versions_since(home, t_ns)
            rec["ok"] = tree_bytes(tree) == (n_files, n_bytes)
            log(f"restore (daemon running) run {i}: {rec['restore_s']} s, until sync {rec['restore_sync_s']} s")
            live.append(rec)
        repo.close()
        rmtree(tree)
        rmtree(home)

        stopped = [r["nocry_s"] for r in raw]
        figs = [
            Figure("restore.nocry", f"restore {describe_tree(meta)} into the emptied tree, daemon stopped",
                   median(stopped), "s", ratio=median([r["nocry_s"] / r["restic_s"] for r in raw]), ratio_what="nocry / restic restore time",
                   runs=runs, cmd=f"rm -rf $T/*; time {NC} --home $H restore $T --at $T0  vs  time restic -r $R restore latest --target $DIR",
                   raw=stopped, note=f"nocry {n_bytes / 1e6 / median(stopped):.0f} MB/s; restic median {median([r['restic_s'] for r in raw]):.2f} s; "
                                     f"all restores complete and byte-exact in size: {all(r['nocry_ok'] and r['restic_ok'] for r in raw)}"),
            Figure("restore.vs_restic_verify", "the same vs `restic restore --verify` (nocry always verifies every object)",
                   median([r["restic_verify_s"] for r in raw]), "s", ratio=median([r["nocry_s"] / r["restic_verify_s"] for r in raw]),
                   ratio_what="nocry / restic --verify", runs=runs,
                   cmd="time restic -r $R restore latest --target $DIR --verify", raw=[r["restic_verify_s"] for r in raw]),
            Figure("restore.daemon_running", "nocry restore with the daemon running (until the command returns)",
                   median([r["restore_s"] for r in live]), "s",
                   ratio=median([r["restore_s"] for r in live]) / median(stopped), ratio_what="running / stopped (medians)",
                   runs=runs_live, cmd=f"{NC} --home $H protect $T; rm -rf $T/*; {NC} --home $H sync; time {NC} --home $H restore $T --at $T0",
                   raw=[r["restore_s"] for r in live],
                   note=f"until `nocry sync` returns after it: median {median([r['restore_sync_s'] for r in live]):.2f} s; daemon CPU "
                        f"{median([r['daemon_cpu_s'] for r in live])} s per restore; versions stored meanwhile (run 0): "
                        f"{live[0]['versions_since_restore_start']}"),
        ]
        finish(NAME, args, work, code, {"runs": runs, "runs_live": runs_live, "tree": meta, "restic": repo_info,
                                         "protect_s": d.protect_s, "restic_backup_s": backup_s, "at": at},
               figs, {"stopped": raw, "running": live}, t_start)
    finally:
        work.close()


if __name__ == "__main__":
    sys.exit(main())
