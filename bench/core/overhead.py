"""Core bench 5 — overhead on real write-heavy workloads: nocry protecting vs not running at all.

    sudo .venv/bin/python bench/core/overhead.py [--quick] [--runs N] [--src worktree|head|DIR]

Same tree, same machine, alternating on/off legs (off,on / on,off / ...) so that drift cancels;
each figure is the median over pairs of the per-pair ratio on / off. "on" means a daemon started
with ``nocry protect TREE`` before the leg (not timed) and idle (``nocry sync``) when the leg
starts; "off" means no daemon at all. Measured per leg: the workload's wall time until its command
returns (what the user feels), and for "on" also until ``nocry sync`` returns after it (capture
lag: everything in the vault), plus the daemon's CPU seconds (utime + stime from /proc/PID/stat)
over that window.

(a) tar: ``tar -xf SRC.tar -C TREE`` of a generated source-like tree (20,000 files, 300 MiB of
    code and text) into an empty protected tree; every "on" leg has a fresh home (the content is
    new to the vault, as for a new tarball). A third leg per round, "outside": the daemon protects
    another small tree on the same filesystem while tar writes into an unprotected directory (the
    cost of a filesystem mark for the rest of the filesystem).
(b) git: a local repository of the same tree (commit A), with a second commit B that rewrites a
    region of 30 % of the files; ``git gc`` packs the objects. Each leg is one ``git checkout``
    flipping between A and B (6,000 files rewritten, .git/index rewritten). One home persists across
    legs (the daemon is stopped for "off" legs and restarted, rescanning, for "on" legs); before the
    legs one warm-up checkout pair runs with the daemon on, so both commits' contents are already in
    the vault (steady state of a developer switching branches).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

from common import (NC, Daemon, Figure, Gen, Work, add_src_arg, common_args, data_tree, describe_tree, finish, flush_disk,
                    log, median, rmtree, run, settle, setup_code, specs, timed)

NAME = "overhead"
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid", "GIT_COMMITTER_NAME": "bench",
           "GIT_COMMITTER_EMAIL": "bench@example.invalid", "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}


def git(repo: Path, *args: str, timeout: float = 1800) -> str:
    env = dict(os.environ, **GIT_ENV)
    return run(["git", "-C", str(repo), "-c", "gc.auto=0", *args], env=env, timeout=timeout).stdout


def build_repo(work: Work, src: Path, frac: float = 0.30) -> tuple[Path, dict]:
    repo = work.fresh("git-repo")
    t0 = time.perf_counter()
    run(["cp", "-a", f"{src}/.", str(repo)])
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "A")
    git(repo, "tag", "A")
    r = random.Random(4242)
    g = Gen(4243)
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts)
    chosen = r.sample(files, round(frac * len(files)))
    for rel in chosen:
        p = repo / rel
        data = p.read_bytes()
        n = len(data)
        k = max(64, int(n * r.uniform(0.1, 0.3)))
        off = r.randrange(max(1, n - k + 1))
        p.write_bytes(data[:off] + g.code(k) + data[off + k :])
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "B")
    git(repo, "tag", "B")
    git(repo, "gc", "-q")
    info = {"files": len(files), "changed": len(chosen), "build_s": round(time.perf_counter() - t0, 1),
            "git_dir_bytes": int(run(["du", "-sb", str(repo / ".git")]).stdout.split()[0])}
    log(f"git repo: {info}")
    return repo, info


def pairs_order(i: int) -> tuple[bool, bool]:
    return (False, True) if i % 2 == 0 else (True, False)


def tar_archive(work: Work, src: Path, meta: dict) -> Path:
    """SRC.tar of the generated source tree, in the shared data cache (made once)."""
    tar = work.data_dir() / f"{meta['spec']['name']}.tar"
    if not tar.exists():
        run(["tar", "-cf", str(tar) + ".tmp", "-C", str(src), "."])
        os.rename(str(tar) + ".tmp", tar)
    return tar


def bench_tar(work: Work, tar: Path, pairs: int, legs: tuple[str, ...] = ("off", "on", "outside")) -> list[dict]:
    """Legs per round, in rotating order: off (no daemon), on (daemon protects the tree tar writes
    into), outside (daemon protects another, small tree on the same filesystem; tar writes into an
    unprotected directory: what a filesystem mark costs the rest of the filesystem). ``legs``
    without "outside" gives plain alternating off,on / on,off pairs."""
    tree = work.path("tar-tree")
    home = work.path("tar-home")
    other = work.path("tar-other")
    out = []
    legs = tuple(legs)
    for i in range(pairs):
        rec: dict = {"pair": i}
        k = i % len(legs)
        for leg in legs[k:] + legs[:k]:
            work.fresh("tar-tree")
            if leg == "off":
                flush_disk()
                rec["settle_off"] = settle()
                rec["off_s"] = round(timed(["tar", "-xf", str(tar), "-C", str(tree)]), 3)
                continue
            rmtree(home)
            protected = tree
            if leg == "outside":
                protected = work.fresh("tar-other")
                for j in range(20):
                    (protected / f"f{j}.txt").write_text(f"file {j}\n" * 100)
            with Daemon(home, protected) as d:
                d.sync()
                flush_disk()
                rec[f"settle_{leg}"] = settle()
                c0 = d.cpu_seconds()
                t0 = time.perf_counter()
                run(["tar", "-xf", str(tar), "-C", str(tree)])
                t1 = time.perf_counter()
                d.sync()
                t2 = time.perf_counter()
                st = d.status()
                if leg == "on":
                    rec["on_s"] = round(t1 - t0, 3)
                    rec["on_sync_s"] = round(t2 - t0, 3)
                    rec["cpu_s"] = round(d.cpu_seconds() - c0, 2)
                    rec["daemon"] = {k: st.get(k) for k in ("events_total", "kernel_events", "overflows", "rescans", "versions_stored")}
                else:
                    rec["outside_s"] = round(t1 - t0, 3)
                    rec["outside_cpu_s"] = round(d.cpu_seconds() - c0, 2)
                    rec["outside_daemon"] = {k: st.get(k) for k in ("events_total", "kernel_events", "overflows", "rescans", "versions_stored")}
            rmtree(home)
        rmtree(other)
        rec["ratio"] = round(rec["on_s"] / rec["off_s"], 3)
        rec["ratio_sync"] = round(rec["on_sync_s"] / rec["off_s"], 3)
        outside = ""
        if "outside_s" in rec:
            rec["ratio_outside"] = round(rec["outside_s"] / rec["off_s"], 3)
            outside = f", outside the tree {rec['outside_s']} s (daemon CPU {rec['outside_cpu_s']} s)"
        log(f"tar round {i}: off {rec['off_s']} s, on {rec['on_s']} s (until sync {rec['on_sync_s']} s, daemon CPU {rec['cpu_s']} s)"
            + outside)
        out.append(rec)
    rmtree(tree)
    return out


def bench_git(work: Work, repo: Path, pairs: int) -> list[dict]:
    home = work.path("git-home")
    rmtree(home)
    state = {"head": "A"}

    def flip() -> list[str]:
        state["head"] = "B" if state["head"] == "A" else "A"
        return ["git", "-C", str(repo), "checkout", "-q", state["head"]]

    def start_from(head: str) -> None:
        """Untimed, no daemon: both legs of a pair check out the same direction (A->B and B->A
        differ in cost, so a pair must not compare one with the other)."""
        if state["head"] != head:
            run(flip())

    with Daemon(home, repo) as d:  # baseline and warm-up (both commits into the vault)
        run(flip())
        d.sync()
        run(flip())
        d.sync()
    out = []
    for i in range(pairs):
        rec: dict = {"pair": i}
        for on in pairs_order(i):
            start_from("A" if i % 2 == 0 else "B")
            if not on:
                flush_disk()
                rec["settle_off"] = settle()
                argv = flip()
                rec["off_s"] = round(timed(argv), 3)
                rec["off_to"] = state["head"]
                continue
            with Daemon(home, repo) as d:  # the rescan at start picks up the previous off leg
                rec["protect_s"] = round(d.protect_s or 0, 2)
                d.sync()
                flush_disk()
                rec["settle_on"] = settle()
                c0 = d.cpu_seconds()
                argv = flip()
                t0 = time.perf_counter()
                run(argv)
                t1 = time.perf_counter()
                d.sync()
                t2 = time.perf_counter()
                rec["on_to"] = state["head"]
                rec["on_s"] = round(t1 - t0, 3)
                rec["on_sync_s"] = round(t2 - t0, 3)
                rec["cpu_s"] = round(d.cpu_seconds() - c0, 2)
                st = d.status()
                rec["daemon"] = {k: st.get(k) for k in ("events_total", "overflows", "rescans", "versions_stored")}
        rec["ratio"] = round(rec["on_s"] / rec["off_s"], 3)
        rec["ratio_sync"] = round(rec["on_sync_s"] / rec["off_s"], 3)
        log(f"git pair {i}: off {rec['off_s']} s, on {rec['on_s']} s (until sync {rec['on_sync_s']} s), daemon CPU {rec['cpu_s']} s")
        out.append(rec)
    rmtree(home)
    return out


TAR_CMD = (f"time tar -xf SRC.tar -C $T   (off)  vs  {NC} --home $H protect $T; time tar -xf SRC.tar -C $T; "
           f"time {NC} --home $H sync   (on)")
GIT_CMD = (f"time git checkout -q A|B   (off)  vs  {NC} --home $H protect $REPO; time git checkout -q A|B; "
           f"time {NC} --home $H sync   (on)")


def _onoff_figures(rows: list[dict], prefix: str, what: str, cpu_what: str, goal: str, cmd: str) -> list[Figure]:
    """The three figures of alternating off/on pairs: wall time until the command returns, until
    ``nocry sync`` returns after it, and the daemon's CPU seconds."""
    n = len(rows)
    return [
        Figure(prefix, what, median([r["on_s"] for r in rows]), "s", ratio=median([r["ratio"] for r in rows]),
               ratio_what=f"on / off (goal {goal})", runs=n, cmd=cmd, raw=[(r["off_s"], r["on_s"]) for r in rows],
               note=f"off median {median([r['off_s'] for r in rows]):.2f} s"),
        Figure(f"{prefix}_sync", "the same until `nocry sync` returns (capture lag included)",
               median([r["on_sync_s"] for r in rows]), "s", ratio=median([r["ratio_sync"] for r in rows]), ratio_what="on+sync / off",
               runs=n, cmd=cmd, raw=[r["on_sync_s"] for r in rows]),
        Figure(f"{prefix}_cpu", cpu_what,
               median([r["cpu_s"] for r in rows]), "CPU s", ratio=median([r["cpu_s"] / r["off_s"] for r in rows]),
               ratio_what="daemon CPU s / off wall s", runs=n, cmd=cmd, raw=[r["cpu_s"] for r in rows]),
    ]


def tar_figures(t: list[dict], meta: dict, goal: str = "<= 1.05", prefix: str = "overhead.tar") -> list[Figure]:
    """The figures of bench_tar's rounds (the outside figure only if those legs ran)."""
    figs = _onoff_figures(t, prefix, f"tar -xf of {describe_tree(meta)}: until tar returns",
                          "daemon CPU seconds per tar extraction (tar start to sync return)", goal, TAR_CMD)
    if all("outside_s" in r for r in t):
        figs.append(Figure(f"{prefix}_outside", "the same tar into an UNPROTECTED directory while nocry protects another tree "
                           "on the same filesystem", median([r["outside_s"] for r in t]), "s",
                           ratio=median([r["ratio_outside"] for r in t]), ratio_what="outside / off", runs=len(t),
                           cmd=f"{NC} --home $H protect $OTHER; time tar -xf SRC.tar -C $T   ($T not protected, same filesystem)",
                           raw=[(r["off_s"], r["outside_s"]) for r in t],
                           note=f"daemon CPU median {median([r['outside_cpu_s'] for r in t])} s per extraction"))
    return figs


def git_figures(g: list[dict], info: dict, goal: str = "<= 1.05", prefix: str = "overhead.git") -> list[Figure]:
    """The figures of bench_git's pairs."""
    what = f"git checkout between two commits ({info['changed']:,} of {info['files']:,} files differ): until git returns"
    return _onoff_figures(g, prefix, what, "daemon CPU seconds per checkout (checkout start to sync return)", goal, GIT_CMD)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_args(ap)
    add_src_arg(ap)
    ap.add_argument("--only", choices=("tar", "git"), default=None)
    args = ap.parse_args()
    pairs = args.runs or (2 if args.quick else 5)
    work = Work.create(args, NAME)
    t_start = time.perf_counter()
    try:
        code = setup_code(args, work)
        src, meta = data_tree(work, specs(args.quick)["source"])
        figs: list[Figure] = []
        raw: dict = {}
        params: dict = {"pairs": pairs, "tree": meta}
        if args.only in (None, "tar"):
            tar = tar_archive(work, src, meta)
            t = raw["tar"] = bench_tar(work, tar, pairs)
            figs += tar_figures(t, meta)
        if args.only in (None, "git"):
            repo, info = build_repo(work, src)
            params["git"] = info
            g = raw["git"] = bench_git(work, repo, pairs)
            rmtree(repo)
            figs += git_figures(g, info)
        finish(NAME, args, work, code, params, figs, raw, t_start)
    finally:
        work.close()


if __name__ == "__main__":
    sys.exit(main())
