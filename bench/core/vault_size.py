"""Core bench 3 — vault size vs restic, for the same tree and the same edits.

    sudo .venv/bin/python bench/core/vault_size.py [--quick] [--runs N] [--src worktree|head|DIR]

Each run: a fresh copy of the generated 2,000-file / 200 MiB tree (text, source, half-text
documents, random binaries); ``nocry protect`` (baseline) and ``restic backup`` (snapshot 0,
repository format 2, compression auto). Then 5 rounds of the same edits, each followed by
``nocry sync`` (nocry captures continuously) and ``restic backup`` (one snapshot per round):

    append to 10 % of the files (kind-appropriate bytes, max(512 B, 2 % of the size) up to 64 KiB)
    rewrite 5 % in place: 1-4 ranges of 16-512 bytes overwritten at random offsets, size unchanged
    add 2 % new files (sizes and kinds drawn like the tree's)
    delete 1 %

Sizes after the last round: ``du -sb HOME/vault`` (shown with and without the preallocated 32 MiB
reserve file; the ratio uses the figure without it), ``bytes_stored`` from ``nocry --json vault
stats`` (pack bytes), and ``du -sb REPO`` for restic. Each run uses its own edit seed; the figure
is the median over runs.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

from common import (_EXT, NC, Daemon, Figure, Gen, Restic, Work, add_src_arg, common_args, copy_tree, data_tree,
                    describe_tree, du_bytes, finish, flush_disk, log, median, mib, rmtree, setup_code, specs, tree_bytes,
                    vault_sizes)

NAME = "vault_size"
ROUNDS = 5
KIND_OF_EXT = {e: k for k, exts in _EXT.items() for e in exts}


def files_of(tree: Path) -> list[str]:
    out = []
    for dp, dn, fn in os.walk(tree):
        dn.sort()
        for f in sorted(fn):
            out.append(os.path.relpath(os.path.join(dp, f), tree))
    return out


def edit_round(tree: Path, seed: int, rnd: int) -> dict:
    r = random.Random(seed)
    g = Gen(seed + 7)
    files = files_of(tree)
    n = len(files)
    k_app, k_rw, k_add, k_del = round(0.10 * n), round(0.05 * n), round(0.02 * n), round(0.01 * n)
    chosen = r.sample(files, k_app + k_rw + k_del)
    app, rw, dele = chosen[:k_app], chosen[k_app : k_app + k_rw], chosen[k_app + k_rw :]
    st = {"files_before": n, "appended": k_app, "rewritten": k_rw, "added": k_add, "deleted": k_del,
          "bytes_appended": 0, "bytes_overwritten": 0, "bytes_added": 0, "bytes_deleted": 0}
    for rel in app:
        p = tree / rel
        kind = KIND_OF_EXT.get(os.path.splitext(rel)[1], "text")
        size = p.stat().st_size
        k = max(512, min(64 << 10, size // 50))
        with open(p, "ab") as f:
            f.write(g.of_kind("text" if kind in ("text", "code") else kind, k))
        st["bytes_appended"] += k
    for rel in rw:
        p = tree / rel
        kind = KIND_OF_EXT.get(os.path.splitext(rel)[1], "text")
        size = p.stat().st_size
        if size == 0:
            continue
        fd = os.open(p, os.O_WRONLY)
        try:
            for _ in range(r.randint(1, 4)):
                off = r.randrange(size)
                k = min(r.randint(16, 512), size - off)
                os.pwrite(fd, g.of_kind(kind, k), off)
                st["bytes_overwritten"] += k
        finally:
            os.close(fd)
    sizes = [(tree / f).stat().st_size for f in r.sample(files, min(n, 200))]
    for j in range(k_add):
        size = int(r.choice(sizes) * r.uniform(0.5, 1.5))
        kind = g.pick_kind(size)
        d = os.path.dirname(r.choice(files))
        p = tree / d / f"new-r{rnd}-{j:04d}{r.choice(_EXT[kind])}"
        p.write_bytes(g.of_kind(kind, size))
        st["bytes_added"] += size
    for rel in dele:
        p = tree / rel
        st["bytes_deleted"] += p.stat().st_size
        p.unlink()
    return st


def one_run(work: Work, src: Path, i: int) -> dict:
    tree = work.fresh("tree")
    copy_tree(src, tree)
    home = work.path("home")
    rmtree(home)
    repo = Restic(work.path("repo"))
    repo.close()
    out: dict = {"run": i, "rounds": []}
    d = Daemon(home, tree)
    try:
        d.start()
        out["restic_repo"] = repo.init()
        repo.backup(tree)
        rec0 = {"round": 0, "nocry": vault_sizes(home), "restic_du": repo.size(), "tree_bytes": tree_bytes(tree)[1]}
        out["rounds"].append(rec0)
        for rnd in range(1, ROUNDS + 1):
            ed = edit_round(tree, seed=1000 * (i + 1) + rnd, rnd=rnd)
            t0 = time.perf_counter()
            d.sync()
            t_sync = time.perf_counter() - t0
            t_restic = repo.backup(tree)
            out["rounds"].append({"round": rnd, "edits": ed, "sync_s": round(t_sync, 3), "restic_backup_s": round(t_restic, 3),
                                  "nocry": vault_sizes(home), "restic_du": repo.size(), "tree_bytes": tree_bytes(tree)[1]})
        st = d.status()
        out["daemon"] = {k: st.get(k) for k in ("versions_stored", "tombstones_stored", "overflows", "rescans", "unreadable")}
    finally:
        d.stop()
    flush_disk()
    out["final"] = {"nocry": vault_sizes(home), "restic_du": repo.size(), "restic_du_data": du_bytes(repo.repo / "data"),
                    "restic_snapshots": ROUNDS + 1}
    f = out["final"]
    log(f"vault-size run {i}: nocry vault {mib(f['nocry']['du_sb_vault_minus_reserve']):.1f} MiB "
        f"(packs {mib(f['nocry']['bytes_stored']):.1f} MiB), restic {mib(f['restic_du']):.1f} MiB")
    repo.close()
    rmtree(home)
    rmtree(tree)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_args(ap)
    add_src_arg(ap)
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    work = Work.create(args, NAME)
    t_start = time.perf_counter()
    try:
        code = setup_code(args, work)
        src, meta = data_tree(work, specs(args.quick)["small"])
        raw = [one_run(work, src, i) for i in range(runs)]

        def nc(r, key, rnd=None):  # noqa: ANN001
            return (r["final"]["nocry"] if rnd is None else r["rounds"][rnd]["nocry"])[key]

        def rs(r, rnd=None):  # noqa: ANN001
            return r["final"]["restic_du"] if rnd is None else r["rounds"][rnd]["restic_du"]

        du_nc = [nc(r, "du_sb_vault_minus_reserve") for r in raw]
        packs = [nc(r, "bytes_stored") for r in raw]
        du_r = [rs(r) for r in raw]
        base_nc = [nc(r, "du_sb_vault_minus_reserve", 0) for r in raw]
        base_r = [rs(r, 0) for r in raw]
        grow_nc = [a - b for a, b in zip(du_nc, base_nc)]
        grow_r = [a - b for a, b in zip(du_r, base_r)]
        edits = raw[0]["rounds"][1]["edits"]
        cmd = (f"{NC} --home $H protect $T; restic -r $R init --repository-version 2; restic -r $R backup --compression auto $T; "
               f"5x (edit; {NC} --home $H sync; restic -r $R backup --compression auto $T); {NC} --home $H stop; "
               f"du -sb $H/vault $R; {NC} --home $H --json vault stats")
        figs = [
            Figure("size.final", f"after baseline + {ROUNDS} edit rounds: nocry vault (du -sb, without the 32 MiB reserve) vs restic repo (du -sb)",
                   mib(median(du_nc)), "MiB", ratio=median([a / b for a, b in zip(du_nc, du_r)]), ratio_what="nocry / restic",
                   runs=runs, cmd=cmd, raw=[(a, b) for a, b in zip(du_nc, du_r)],
                   note=f"restic median {mib(median(du_r)):.1f} MiB; nocry with reserve {mib(median([nc(r, 'du_sb_vault') for r in raw])):.1f} MiB; "
                        f"index.sqlite {mib(median([nc(r, 'index_bytes') for r in raw])):.1f} MiB"),
            Figure("size.packs", "nocry bytes_stored (pack bytes, `vault stats`) vs restic repo", mib(median(packs)), "MiB",
                   ratio=median([a / b for a, b in zip(packs, du_r)]), ratio_what="nocry packs / restic du", runs=runs, cmd=cmd, raw=packs),
            Figure("size.baseline", "after the baseline only (round 0)", mib(median(base_nc)), "MiB",
                   ratio=median([a / b for a, b in zip(base_nc, base_r)]), ratio_what="nocry / restic", runs=runs, cmd=cmd,
                   raw=[(a, b) for a, b in zip(base_nc, base_r)], note=f"tree: {describe_tree(meta)}"),
            Figure("size.growth", f"growth over the {ROUNDS} edit rounds (final - baseline)", mib(median(grow_nc)), "MiB",
                   ratio=median([a / b for a, b in zip(grow_nc, grow_r)]), ratio_what="nocry / restic", runs=runs, cmd=cmd,
                   raw=[(a, b) for a, b in zip(grow_nc, grow_r)],
                   note=f"per round (run 0, round 1): {edits['appended']} appended, {edits['rewritten']} rewritten in place, "
                        f"{edits['added']} added ({mib(edits['bytes_added']):.1f} MiB), {edits['deleted']} deleted"),
        ]
        finish(NAME, args, work, code, {"runs": runs, "rounds": ROUNDS, "tree": meta, "restic_repository_version": raw[0]["restic_repo"]},
               figs, raw, t_start)
    finally:
        work.close()


if __name__ == "__main__":
    sys.exit(main())
