"""nocry's overhead benchmark, one command: wall time with nocry protecting the target vs no daemon.

    sudo .venv/bin/python bench/overhead/run.py                  # full: ~11-15 min, refreshes docs/benchmarks.md
    sudo .venv/bin/python bench/overhead/run.py --quick          # smoke run, ~3 min, docs untouched
    sudo .venv/bin/python bench/overhead/run.py --label before --src head   # a named result ...
    sudo .venv/bin/python bench/overhead/run.py --label after               # ... and its counterpart
    sudo .venv/bin/python bench/overhead/run.py --render-only    # rebuild the docs section from the JSON

Workloads (each in its own protected tree on a fresh ext4 of its own, see --isolate):

  tar      ``tar -xf SRC.tar -C TREE``: 20,000 source-like files / 300 MiB into an empty tree
           (bench/core/overhead.py's bench_tar; a fresh home per "on" leg). Goal <= 1.25.
  build    ``make -j2`` from clean of a generated C project (385 .c files, 361 headers, 12
           static libraries, 24 programs; -O2 -g, .d files; build/ inside the protected tree).
           A fresh home per "on" leg: the objects are new to the vault. Goal <= 1.05.
  git      ``git checkout`` flipping between two commits of the same 20,000-file tree (6,000
           files differ), contents already in the vault (bench/core/overhead.py's bench_git).
           Goal <= 1.05.
  fio-seq  ``fio`` sequential buffered writes of a new 512 MiB file, bs=1M, end_fsync=1 (job file
           and data inside the protected tree). Goal <= 1.25.
  fio-rand ``fio`` random buffered 4 KiB writes over an existing 512 MiB file, end_fsync=1.
           Goal <= 1.25.

Method (bench/README.md "Rules the harness keeps"): per pair one "off" leg (no daemon at all) and
one "on" leg (``nocry protect TREE`` started before the leg, untimed, idle after ``nocry sync``),
alternating off,on / on,off so drift cancels; each figure is the median over pairs of the per-pair
ratio on / off, reported with every raw value. Per "on" leg: the workload's wall time until its
command returns, until ``nocry sync`` returns after it, and the daemon's CPU seconds (utime+stime
of /proc/PID/stat) over that window. Before each timed leg: ``sync`` and up to --settle seconds of
waiting for an idle machine. In enforce mode a false alarm would freeze the workload: a watcher
releases it (``nocry incident release``), the leg is flagged and the freeze recorded.

Results: bench/results/overhead.json (``--quick``: overhead.quick.json), keyed by ``--label``
(default ``last``), so ``--label before`` and ``--label after`` are kept side by side; the docs
section (between the overhead-bench markers under "## Overhead" in docs/benchmarks.md) shows the
run just made and a before/after table when both labels exist.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench" / "core"))
sys.path.insert(0, str(REPO))

import overhead as core  # noqa: E402  bench/core/overhead.py: tar and git legs
from common import (NC, RESULTS, Daemon, Work, add_src_arg, common_args, data_tree, describe_tree, flush_disk,  # noqa: E402
                    fmt_value, fs_type, git_info, kill_under, log, machine, make_isolated, median, rmtree, run, settle,
                    setup_code, shjoin, specs, unmount_isolated, write_docs_block)

from bench.benign.common import FreezeWatcher, release_frozen, remove_quarantine  # noqa: E402
from bench.overhead.cproject import write_cproject  # noqa: E402

NAME = "overhead"
WORKLOADS = ("tar", "build", "git", "fio-seq", "fio-rand")
GOALS = {"tar": 1.25, "build": 1.05, "git": 1.05, "fio-seq": 1.25, "fio-rand": 1.25}
DOC = REPO / "docs" / "benchmarks.md"
BEGIN = "<!-- overhead-bench:begin -->"
END = "<!-- overhead-bench:end -->"
HEADING = "## Overhead"
STATUS_KEYS = ("events_total", "kernel_events", "overflows", "rescans", "versions_stored")


# --------------------------------------------------------------------------------------------
# programs the workloads need
# --------------------------------------------------------------------------------------------


def ensure_programs(names: dict[str, str], install: bool) -> list[str]:
    """``apt-get install -y PKG`` for each missing program (name -> Debian package); returns what
    is still missing."""
    missing = {p: pkg for p, pkg in names.items() if not shutil.which(p)}
    if missing and install:
        pkgs = sorted(set(missing.values()))
        log(f"installing {' '.join(pkgs)} (apt-get)")
        p = run(["apt-get", "install", "-y", *pkgs], check=False, timeout=900)
        if p.returncode != 0:
            log(f"apt-get install failed: {(p.stderr or '')[-500:]}")
    return [p for p in names if not shutil.which(p)]


# --------------------------------------------------------------------------------------------
# one workload in alternating on/off legs (build, fio; tar and git come from bench/core/overhead.py)
# --------------------------------------------------------------------------------------------


@dataclass
class Job:
    name: str
    #: the protected tree (the workload writes inside it)
    tree: Path
    #: the timed command (run with cwd)
    argv: list[str]
    cwd: Path
    #: untimed, daemon off, before every leg (make clean; rm the fio file; ...)
    prepare: Callable[[], None] = lambda: None
    #: values read after each leg (fio's JSON): () -> dict
    collect: Callable[[], dict[str, Any]] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def timed_watched(argv: list[str], cwd: Path, daemon: Daemon | None) -> tuple[float, list[dict], str]:
    """Run argv (timed); with a daemon, a watcher releases any freeze of ours (false alarm)."""
    t0 = time.perf_counter()
    watcher = None
    if daemon is not None:
        home = daemon.home
        watcher = FreezeWatcher(daemon.pid, lambda: release_frozen(home), t0)
        watcher.start()
    p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if watcher is not None:
        watcher.stop_ev.set()
        watcher.join(10)
    if p.returncode != 0:
        raise RuntimeError(f"command failed ({p.returncode}): {shjoin(argv)}\n{p.stderr[-2000:]}{p.stdout[-500:]}")
    return wall, (watcher.freezes if watcher else []), p.stdout


def bench_onoff(work: Work, job: Job, pairs: int) -> list[dict]:
    """``pairs`` pairs of legs off,on / on,off; a fresh home per "on" leg."""
    home = work.path(f"{job.name}-home")
    out = []
    for i in range(pairs):
        rec: dict[str, Any] = {"pair": i}
        for on in core.pairs_order(i):
            job.prepare()
            if not on:
                flush_disk()
                rec["settle_off"] = settle()
                rec["off_s"] = round(timed_watched(job.argv, job.cwd, None)[0], 3)
                if job.collect:
                    rec["off_x"] = job.collect()
                continue
            rmtree(home)
            with Daemon(home, job.tree) as d:
                rec["protect_s"] = round(d.protect_s or 0, 2)
                d.sync()
                flush_disk()
                rec["settle_on"] = settle()
                c0 = d.cpu_seconds()
                t0 = time.perf_counter()
                wall, freezes, _ = timed_watched(job.argv, job.cwd, d)
                t1 = t0 + wall
                d.sync()
                t2 = time.perf_counter()
                rec["on_s"] = round(t1 - t0, 3)
                rec["on_sync_s"] = round(t2 - t0, 3)
                rec["cpu_s"] = round(d.cpu_seconds() - c0, 2)
                st = d.status()
                rec["daemon"] = {k: st.get(k) for k in STATUS_KEYS}
                rec["daemon"]["open_incidents"] = len((st.get("detection") or {}).get("open_incidents") or [])
                if freezes:
                    rec["freezes"] = freezes
                if job.collect:
                    rec["on_x"] = job.collect()
                pid = d.pid
            if pid:
                remove_quarantine(pid)
            rmtree(home)
        rec["ratio"] = round(rec["on_s"] / rec["off_s"], 3)
        rec["ratio_sync"] = round(rec["on_sync_s"] / rec["off_s"], 3)
        if "off_x" in rec and rec["off_x"].get("bw_bytes") and rec["on_x"].get("bw_bytes"):
            rec["bw_ratio"] = round(rec["on_x"]["bw_bytes"] / rec["off_x"]["bw_bytes"], 3)
        log(f"{job.name} pair {i}: off {rec['off_s']} s, on {rec['on_s']} s (until sync {rec['on_sync_s']} s), "
            f"daemon CPU {rec['cpu_s']} s, ratio {rec['ratio']}" + (f", bw on/off {rec['bw_ratio']}" if "bw_ratio" in rec else "")
            + (f", FROZEN {rec['freezes']}" if rec.get("freezes") else ""))
        out.append(rec)
    return out


# --- build ------------------------------------------------------------------------------------


def build_job(work: Work, quick: bool) -> Job:
    tree = work.fresh("build-tree")
    proj = tree / "proj"
    info = write_cproject(proj, modules=60 if quick else 360)
    log(f"C project: {info}")

    def prepare() -> None:
        run(["make", "-s", "clean"], cwd=proj)

    return Job("build", tree, ["make", "-j2"], proj, prepare=prepare, info=info)


# --- fio --------------------------------------------------------------------------------------

FIO_JOB = """; generated by bench/overhead/run.py
[global]
directory={dir}
filename={file}
size={size}
ioengine=psync
direct=0
end_fsync=1
group_reporting=1

[{name}]
rw={rw}
bs={bs}
"""


def fio_job(work: Work, name: str, rw: str, bs: str, size: str) -> Job:
    tree = work.fresh(f"{name}-tree")
    data = tree / "data"
    data.mkdir()
    jobfile = tree / f"{name}.fio"
    jobfile.write_text(FIO_JOB.format(dir=data, file=f"{name}.dat", size=size, name=name, rw=rw, bs=bs))
    out = work.path(f"{name}.json")  # fio's report, outside the protected tree
    datafile = data / f"{name}.dat"
    argv = ["fio", "--output-format=json", f"--output={out}", str(jobfile)]

    def prepare() -> None:
        if rw == "write":  # a new file every leg
            if datafile.exists():
                datafile.unlink()
        elif not datafile.exists():  # randwrite: lay the file out once (fio --create_only)
            run(["fio", "--create_only=1", "--output-format=terse", f"--output={out}", str(jobfile)], cwd=tree)
        if out.exists():
            out.unlink()

    def collect() -> dict[str, Any]:
        rep = json.loads(out.read_text())
        j = rep["jobs"][0]
        w = j["write"]
        return {"bw_bytes": w["bw_bytes"], "io_bytes": w["io_bytes"], "runtime_ms": w["runtime"], "iops": round(w["iops"], 1),
                "job_runtime_ms": j.get("job_runtime"), "elapsed_s": j.get("elapsed"),
                "sync_lat_ns": (j.get("sync") or {}).get("lat_ns", {}).get("mean")}

    info = {"rw": rw, "bs": bs, "size": size, "ioengine": "psync", "direct": 0, "end_fsync": 1,
            "fio": run(["fio", "--version"]).stdout.strip(), "jobfile": jobfile.read_text()}
    return Job(name, tree, argv, tree, prepare=prepare, collect=collect, info=info)


# --------------------------------------------------------------------------------------------
# summary of one workload (uniform over tar/git/build/fio records)
# --------------------------------------------------------------------------------------------

CMDS = {
    "tar": core.TAR_CMD,
    "git": core.GIT_CMD,
    "build": f"make clean; time make -j2   (off)  vs  {NC} --home $H protect $T; time make -j2; time {NC} --home $H sync   (on)",
    "fio-seq": f"rm -f $T/data/*; time fio $T/fio-seq.fio   (off)  vs  {NC} --home $H protect $T; time fio $T/fio-seq.fio; time {NC} --home $H sync   (on)",
    "fio-rand": f"time fio $T/fio-rand.fio   (off)  vs  {NC} --home $H protect $T; time fio $T/fio-rand.fio; time {NC} --home $H sync   (on)",
}


def summarize(name: str, recs: list[dict], title: str) -> dict[str, Any]:
    ok = [r for r in recs if not r.get("freezes")]  # a frozen leg's time says nothing about overhead
    use = ok or recs
    s: dict[str, Any] = {
        "workload": name, "title": title, "goal": GOALS[name], "cmd": CMDS[name], "n": len(use),
        "frozen_pairs": len(recs) - len(ok),
        "off_s": median([r["off_s"] for r in use]), "on_s": median([r["on_s"] for r in use]),
        "on_sync_s": median([r["on_sync_s"] for r in use]),
        "ratio": median([r["ratio"] for r in use]), "ratio_sync": median([r["ratio_sync"] for r in use]),
        "cpu_s": median([r["cpu_s"] for r in use]),
        "raw": {"off_s": [r["off_s"] for r in recs], "on_s": [r["on_s"] for r in recs], "on_sync_s": [r["on_sync_s"] for r in recs],
                "ratio": [r["ratio"] for r in recs], "ratio_sync": [r["ratio_sync"] for r in recs], "cpu_s": [r["cpu_s"] for r in recs]},
    }
    s["goal_met"] = s["ratio"] <= s["goal"]
    if all("bw_ratio" in r for r in use) and use:
        s["bw_ratio"] = median([r["bw_ratio"] for r in use])
        s["off_bw_mib_s"] = median([r["off_x"]["bw_bytes"] / (1 << 20) for r in use])
        s["on_bw_mib_s"] = median([r["on_x"]["bw_bytes"] / (1 << 20) for r in use])
        s["raw"]["bw_ratio"] = [r.get("bw_ratio") for r in recs]
        s["raw"]["off_bw_mib_s"] = [round(r["off_x"]["bw_bytes"] / (1 << 20), 1) for r in recs]
        s["raw"]["on_bw_mib_s"] = [round(r["on_x"]["bw_bytes"] / (1 << 20), 1) for r in recs]
    if "outside_s" in (recs[0] if recs else {}):
        s["ratio_outside"] = median([r["ratio_outside"] for r in use])
        s["raw"]["outside_s"] = [r["outside_s"] for r in recs]
    return s


# --------------------------------------------------------------------------------------------
# results file (labels) and docs
# --------------------------------------------------------------------------------------------


def results_path(quick: bool) -> Path:
    return RESULTS / f"overhead{'.quick' if quick else ''}.json"


def load_results(quick: bool) -> dict[str, Any]:
    p = results_path(quick)
    if p.exists():
        try:
            data = json.loads(p.read_text())
            if isinstance(data, dict) and "results" in data:
                return data
        except json.JSONDecodeError:
            pass
    return {"format": 1, "last_label": None, "results": {}}


def save_results(label: str, result: dict[str, Any], quick: bool) -> Path:
    data = load_results(quick)
    data["results"][label] = result
    data["last_label"] = label
    RESULTS.mkdir(parents=True, exist_ok=True)
    p = results_path(quick)
    p.write_text(json.dumps(data, indent=1, default=str) + "\n")
    log(f"wrote {p} (label {label!r})")
    return p


def _r(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:.2f}"


def _r3(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:.3f}"


def _list(xs: list) -> str:
    return ", ".join(fmt_value(x) if isinstance(x, float) else str(x) for x in xs)


def _commit_line(res: dict) -> str:
    code = res["code"]
    head = code.get("head", "?")
    src = code.get("source", "?")
    subj = run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s", head], check=False).stdout.strip() or head[:7]
    if src.startswith("git archive "):
        sha = src.split()[2]
        what = f"`git archive` of {sha}" + (" (= HEAD)" if head.startswith(sha) else "")
    else:
        what = src + (" — src/ had uncommitted changes" if code.get("src_dirty") else "")
    return f"HEAD {subj}; code under test: {what}"


def render_text(res: dict) -> str:
    lines = ["", f"nocry overhead benchmark — label {res['label']!r}, {res['wall_s'] / 60:.1f} min", ""]
    hdr = f"{'workload':9} {'off s':>7} {'on s':>7} {'on/off':>7} {'goal':>6} {'':6} {'+sync/off':>9} {'CPU s':>6} {'bw on/off':>9}  n"
    lines += [hdr, "-" * len(hdr)]
    for s in res["summary"].values():
        lines.append(f"{s['workload']:9} {fmt_value(s['off_s']):>7} {fmt_value(s['on_s']):>7} {_r3(s['ratio']):>7} {'<=' + str(s['goal']):>6} "
                     f"{'met' if s['goal_met'] else 'MISSED':6} {_r(s['ratio_sync']):>9} {fmt_value(s['cpu_s']):>6} "
                     f"{_r(s.get('bw_ratio')) if 'bw_ratio' in s else '':>9}  {s['n']}"
                     + (f"  ({s['frozen_pairs']} frozen pairs left out)" if s["frozen_pairs"] else ""))
    lines.append("")
    lines.append("raw (per pair, in order):")
    for s in res["summary"].values():
        raw = s["raw"]
        lines.append(f"  {s['workload']}: off {_list(raw['off_s'])} | on {_list(raw['on_s'])} | on+sync {_list(raw['on_sync_s'])} | "
                     f"ratio {_list(raw['ratio'])} | CPU s {_list(raw['cpu_s'])}"
                     + (f" | bw ratio {_list(raw['bw_ratio'])}" if "bw_ratio" in raw else ""))
    lines.append("")
    lines.append(f"command: {res['command']}")
    for s in res["summary"].values():
        lines.append(f"  {s['workload']}: $ {s['cmd']}")
    return "\n".join(lines)


def render_markdown(data: dict[str, Any], label: str, compare: tuple[str, str]) -> str:
    res = data["results"][label]
    m = res["machine"]
    out = [BEGIN, ""]
    out.append(f"Generated by `bench/overhead/run.py` (edits between the markers are overwritten). Run shown: label "
               f"**`{label}`**, {m['date'][:16].replace('T', ' ')}, {res['wall_s'] / 60:.1f} min:")
    out.append("")
    out.append(f"    {res['command']}")
    out.append("")
    out.append(f"- machine: {m['nproc']} vCPU ({m['cpu']}), {m['ram_gib']} GiB RAM, kernel {m['kernel']}, Python {m['python']}, "
               f"{m.get('git')}, {res['params'].get('fio') or 'fio n/a'}, gcc {res['params'].get('gcc', '?')}")
    out.append(f"- filesystem of trees and homes: {m['fs']} on {m.get('fs_source', '?')}")
    out.append(f"- commit: {_commit_line(res)}")
    settings = "; settings: " + ", ".join(f"`{x}`" for x in res["settings"]) if res.get("settings") else ""
    out.append(f"- protect mode: {res['protect_mode']}{settings}; load average at start: {' '.join(m['loadavg_start'])}; "
               f"legs that started with another process's fanotify group on the filesystem: {res['foreign_legs'][0]} of {res['foreign_legs'][1]}; "
               f"legs that started busy (CPU >= 35 % after the settle wait): {res['busy_legs'][0]} of {res['busy_legs'][1]}")
    out.append("- each ratio is the median over pairs of the per-pair ratio (legs alternate off,on / on,off); "
               "`on` is until the command returns, `on+sync` until `nocry sync` returns after it; daemon CPU is utime+stime "
               "of the daemon from the workload's start to the sync's return")
    out.append("")
    out.append("| workload | off (s) | on (s) | **on / off** | goal | on+sync / off | daemon CPU s | fio bw on / off | n |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for s in res["summary"].values():
        frozen = f" ({s['frozen_pairs']} frozen pairs left out)" if s["frozen_pairs"] else ""
        out.append(f"| {s['workload']}: {s['title']} | {fmt_value(s['off_s'])} | {fmt_value(s['on_s'])} | **{s['ratio']:.3f}** | "
                   f"<= {s['goal']} {'met' if s['goal_met'] else '**missed**'} | {_r(s['ratio_sync'])} | {fmt_value(s['cpu_s'])} | "
                   f"{_r(s['bw_ratio']) if 'bw_ratio' in s else ''} | {s['n']}{frozen} |")
    out.append("")
    out.append("Raw values per pair (in run order; s):")
    out.append("")
    out.append("| workload | off | on | on+sync | on / off | daemon CPU s | fio MiB/s off / on |")
    out.append("|---|---|---|---|---|---|---|")
    for s in res["summary"].values():
        raw = s["raw"]
        bw = ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(raw["off_bw_mib_s"], raw["on_bw_mib_s"])) if "off_bw_mib_s" in raw else ""
        out.append(f"| {s['workload']} | {_list(raw['off_s'])} | {_list(raw['on_s'])} | {_list(raw['on_sync_s'])} | "
                   f"{_list(raw['ratio'])} | {_list(raw['cpu_s'])} | {bw} |")
    out.append("")
    out.append("Commands (`$T` the protected tree, `$H` a nocry home outside it):")
    out.append("")
    for s in res["summary"].values():
        out.append(f"- {s['workload']}: `{s['cmd']}`")
    out.append("")
    a, b = compare
    if a in data["results"] and b in data["results"]:
        ra, rb = data["results"][a], data["results"][b]
        out.append(f"**{a} / {b}** (`--label {a}`: {_short(ra)}; `--label {b}`: {_short(rb)}):")
        out.append("")
        out.append(f"| workload | on / off {a} | on / off {b} | goal | on+sync / off {a} | {b} | daemon CPU s {a} | {b} | fio bw on / off {a} | {b} |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for w in WORKLOADS:
            sa, sb = ra["summary"].get(w), rb["summary"].get(w)
            if not sa and not sb:
                continue

            def g(s: dict | None, k: str, f: Callable = _r) -> str:
                return f(s[k]) if s and k in s else "–"

            out.append(f"| {w} | {g(sa, 'ratio', _r3)} | **{g(sb, 'ratio', _r3)}** | <= {GOALS[w]} | {g(sa, 'ratio_sync')} | {g(sb, 'ratio_sync')} | "
                       f"{g(sa, 'cpu_s', fmt_value)} | {g(sb, 'cpu_s', fmt_value)} | {g(sa, 'bw_ratio')} | {g(sb, 'bw_ratio')} |")
        out.append("")
    others = sorted(k for k in data["results"] if k != label)
    if others:
        out.append("Other stored labels (bench/results/overhead.json): "
                   + "; ".join(f"`{k}` ({_short(data['results'][k])})" for k in others))
        out.append("")
    out.append(END)
    return "\n".join(out)


def _short(res: dict) -> str:
    code = res["code"]
    src = code.get("source", "?")
    what = src.split()[2] if src.startswith("git archive ") else f"worktree at {code.get('head', '?')[:7]}" + ("+dirty" if code.get("src_dirty") else "")
    busy = res.get("busy_legs") or [0, 0]
    return f"{what}, {res['machine']['date'][:16].replace('T', ' ')}, {busy[0]} of {busy[1]} legs started busy"


def write_docs(block: str) -> None:
    def place(text: str, block: str) -> str:  # under the heading, or a new section at the end
        if HEADING + "\n" in text:
            i = text.index(HEADING + "\n") + len(HEADING) + 1
            return text[:i] + "\n" + block + "\n" + text[i:]
        return text.rstrip() + f"\n\n{HEADING}\n\n" + block + "\n"

    write_docs_block(DOC, BEGIN, END, block, place)
    log(f"refreshed the overhead section of {DOC}")


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def _walk_settles(x: Any, acc: list[dict]) -> None:
    if isinstance(x, dict):
        for k, v in x.items():
            if k.startswith("settle") and isinstance(v, dict) and "foreign_fanotify" in v:
                acc.append(v)
            else:
                _walk_settles(v, acc)
    elif isinstance(x, list):
        for v in x:
            _walk_settles(v, acc)


def command_line(argv: list[str]) -> str:
    return "sudo .venv/bin/python bench/overhead/run.py" + ("" if not argv else " " + shjoin(argv))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_args(ap)
    add_src_arg(ap)
    ap.add_argument("--label", default="last", help="name the stored result (e.g. before, after); default 'last'")
    ap.add_argument("--compare", default="before,after", help="two labels for the docs' comparison table (default before,after)")
    ap.add_argument("--only", default=",".join(WORKLOADS), help=f"comma-separated subset of {','.join(WORKLOADS)}")
    ap.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                    help="run on a fresh ext4 of its own (sparse image under --tmp, loop device, direct I/O); default on")
    ap.add_argument("--fs-gib", type=int, default=None, help="size of the isolated filesystem (default 16, --quick 6)")
    ap.add_argument("--outside", action="store_true",
                    help="tar: also a third leg per round, tar into an unprotected directory while nocry protects another tree")
    ap.add_argument("--fio-size", default=None, help="fio file size (default 512M, --quick 64M)")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install missing programs (fio, make, gcc)")
    ap.add_argument("--docs", action="store_true", help="also refresh docs/benchmarks.md after a --quick run")
    ap.add_argument("--no-docs", action="store_true", help="never touch docs/benchmarks.md")
    ap.add_argument("--render-only", action="store_true", help="run nothing: re-render the docs section from bench/results/overhead.json")
    ap.set_defaults(gap=2.0)
    args = ap.parse_args()
    compare = tuple(args.compare.split(",", 1)) if "," in args.compare else ("before", "after")
    if args.render_only:
        data = load_results(args.quick)
        label = args.label if args.label in data["results"] else data.get("last_label")
        if not label:
            print(f"no results in {results_path(args.quick)}", file=sys.stderr)
            return 1
        print(render_text(data["results"][label]))
        write_docs(render_markdown(data, label, compare))  # type: ignore[arg-type]
        return 0
    if os.geteuid() != 0:
        print("the overhead benchmark needs root (fanotify filesystem marks, loop mounts)", file=sys.stderr)
        return 2
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    bad = [w for w in wanted if w not in WORKLOADS]
    if bad:
        print(f"unknown workloads {bad}; choose from {','.join(WORKLOADS)}", file=sys.stderr)
        return 2
    need = {"tar": "tar", "git": "git"}
    if "build" in wanted:
        need.update(make="make", gcc="gcc")
    if any(w.startswith("fio") for w in wanted):
        need["fio"] = "fio"
    missing = ensure_programs(need, not args.no_install)
    if missing:
        log(f"missing programs {missing}: skipping the workloads that need them")
        wanted = [w for w in wanted if not ((w == "build" and {"make", "gcc"} & set(missing))
                                            or (w.startswith("fio") and "fio" in missing) or (w == "git" and "git" in missing))]
    default_pairs = {"tar": 5, "git": 10, "build": 3, "fio-seq": 5, "fio-rand": 5}
    pairs = {w: args.runs or (2 if args.quick else default_pairs[w]) for w in wanted}
    fio_size = args.fio_size or ("64M" if args.quick else "512M")
    t_start = time.perf_counter()
    load_start = open("/proc/loadavg").read().split()[:3]
    base = Path(tempfile.mkdtemp(prefix="nocry-overhead-", dir=args.tmp))
    loop: tuple[Path, str] | None = None
    work: Work | None = None
    try:
        if args.isolate:
            loop = make_isolated(base, args.fs_gib or (6 if args.quick else 16))
            args.workdir = str(loop[0])
        else:
            args.workdir = str(base)
        work = Work.create(args, NAME)
        code = setup_code(args, work)
        mach = machine(work.root)
        mach["loadavg_start"] = load_start
        gcc = run(["gcc", "-dumpfullversion"], check=False).stdout.strip() if shutil.which("gcc") else None
        fio_v = run(["fio", "--version"], check=False).stdout.strip() if shutil.which("fio") else None
        params: dict[str, Any] = {"pairs": pairs, "fio_size": fio_size, "gcc": gcc, "fio": fio_v, "isolate": args.isolate,
                                  "outside": args.outside, "goals": GOALS}
        raw: dict[str, Any] = {}
        summary: dict[str, Any] = {}
        figures: list[dict] = []
        src = meta = None
        if {"tar", "git"} & set(wanted):
            src, meta = data_tree(work, specs(args.quick)["source"])
            params["tree"] = meta
        for w in wanted:
            log(f"=== {w}: {pairs[w]} pairs")
            t0 = time.perf_counter()
            if w == "tar":
                tar = core.tar_archive(work, src, meta)
                legs = ("off", "on", "outside") if args.outside else ("off", "on")
                recs = core.bench_tar(work, tar, pairs[w], legs=legs)
                figures += [f.to_dict() for f in core.tar_figures(recs, meta, goal=f"<= {GOALS[w]}")]
                title = f"`tar -xf` of {meta['files']:,} source files, {meta['bytes'] / (1 << 20):.0f} MiB"
            elif w == "git":
                repo, info = core.build_repo(work, src)
                params["git"] = info
                recs = core.bench_git(work, repo, pairs[w])
                rmtree(repo)
                figures += [f.to_dict() for f in core.git_figures(recs, info, goal=f"<= {GOALS[w]}")]
                title = f"`git checkout` A<->B, {info['changed']:,} of {info['files']:,} files differ"
            elif w == "build":
                job = build_job(work, args.quick)
                params["build"] = job.info
                recs = bench_onoff(work, job, pairs[w])
                rmtree(job.tree)
                title = f"`make -j2` from clean, C project of {job.info['c_files']} .c / {job.info['h_files']} .h files"
            else:
                rw, bs = ("write", "1M") if w == "fio-seq" else ("randwrite", "4k")
                job = fio_job(work, w, rw, bs, fio_size)
                params[w] = job.info
                recs = bench_onoff(work, job, pairs[w])
                rmtree(job.tree)
                title = f"`fio` {rw} bs={bs}, {fio_size}, buffered, end_fsync"
            raw[w] = recs
            summary[w] = summarize(w, recs, title)
            summary[w]["seconds"] = round(time.perf_counter() - t0, 1)
            s = summary[w]
            log(f"=== {w}: on/off {_r(s['ratio'])} (goal <= {s['goal']}: {'met' if s['goal_met'] else 'MISSED'}), "
                f"on+sync/off {_r(s['ratio_sync'])}, daemon CPU {fmt_value(s['cpu_s'])} s, {s['seconds']} s")
        settles: list[dict] = []
        _walk_settles(raw, settles)
        result = {
            "label": args.label, "quick": args.quick, "command": command_line(sys.argv[1:]), "machine": mach, "code": code,
            "protect_mode": args.mode or "configuration default", "settings": args.set, "params": params, "summary": summary, "figures": figures,
            "runs": raw, "wall_s": round(time.perf_counter() - t_start, 1),
            "foreign_legs": [sum(1 for s in settles if s["foreign_fanotify"]), len(settles)],
            "busy_legs": [sum(1 for s in settles if s["busy"] >= 0.35), len(settles)],
            "fs_type": fs_type(work.root),
        }
        save_results(args.label, result, args.quick)
        print(render_text(result), flush=True)
        if not args.no_docs and (not args.quick or args.docs):
            write_docs(render_markdown(load_results(args.quick), args.label, compare))  # type: ignore[arg-type]
        return 0
    finally:
        if work is not None:
            work.close()
        killed = kill_under(base)
        if killed:
            log(f"killed leftover daemons: {killed}")
        if loop is not None:  # never leave a loop mount behind, --keep or not
            unmount_isolated(*loop)
        if args.keep and loop is None:
            log(f"kept {base}")
        else:
            rmtree(base)
            log(f"cleaned up {base}" + (f" (unmounted {loop[0]}, detached {loop[1]})" if loop else ""))


if __name__ == "__main__":
    sys.exit(main())
