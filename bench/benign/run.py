#!/usr/bin/env python3
"""The benign workload suite: real programs on a realistic tree inside a protected directory.

    sudo .venv/bin/python bench/benign/run.py            # everything (~30 min), rewrites the
                                                          # benign section of docs/benchmarks.md
    sudo .venv/bin/python bench/benign/run.py --quick    # a fast subset, 1 run each; prints only
    sudo .venv/bin/python bench/benign/run.py --only gzip-r,rsync --runs 5
    sudo .venv/bin/python bench/benign/run.py --list

For each workload and each repetition: a fresh copy of the realistic tree (``nocry drill init DIR
--files 300 --seed 1``, plus what the workload needs to find there, e.g. a git clone or a build
directory made before protection), then the workload's script once with nocry protecting the
tree (enforce mode, default configuration) and once with nocry not running, in alternating order.
Recorded: events the daemon saw (``status.events_total`` after vs before), incidents (must be
0; each one is released so the work finishes, and its evidence kept), wall time on/off (the
median of the per-repetition ratios), and the daemon's CPU seconds (/proc/PID/stat utime+stime,
from just before the workload until ``nocry sync`` returns after it).

Missing programs are installed with apt-get (``--no-install`` to skip that); a workload whose
program or input cannot be had is skipped with the reason.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# not this directory (its module names must not shadow the standard library): the repository
sys.path[0] = str(Path(__file__).resolve().parents[2])

from bench.benign import archive, backup, build, copies, crypto, data, media, office, userops, vcs  # noqa: E402
from bench.benign.common import PY, REPO, Assets, Leg, Missing, Workload, describe_incidents, ensure_programs, log, run_leg  # noqa: E402

FAMILIES = [archive, crypto, copies, backup, vcs, build, office, media, data, userops]
RESULTS = REPO / "bench" / "results" / "benign.json"
EVIDENCE = REPO / "bench" / "results" / "benign-incidents"
DOCS = REPO / "docs" / "benchmarks.md"
BEGIN = "<!-- benign:begin"
END = "<!-- benign:end -->"


def all_workloads() -> list[Workload]:
    out: list[Workload] = []
    for fam in FAMILIES:
        out.extend(fam.WORKLOADS)
    return out


def machine() -> dict:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    except OSError:
        rev = "?"
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_gib": round(mem / 2**30, 1), "kernel": platform.release(),
            "python": platform.python_version(), "code": rev, "debian": Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else ""}  # fmt: skip


def src_fingerprint() -> str:
    """A hash of src/nocry/**/*.py as they are on disk now (the editable install runs them)."""
    h = hashlib.sha256()
    for p in sorted((REPO / "src" / "nocry").rglob("*.py")):
        h.update(str(p.relative_to(REPO)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def select_code(src: str, work: Path) -> dict:
    """What the daemon and the CLI run: the working tree (the editable .venv install, default), or
    ``git archive REV src`` (``head`` or a REV) put first on PYTHONPATH, so that a run measures one
    commit even while src/ is being edited; or a DIR holding the nocry package."""
    if src == "worktree":
        os.environ.pop("PYTHONPATH", None)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "src"], capture_output=True, text=True).stdout.strip()
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        label = f"working tree at {head}" + (" with uncommitted changes to src/" if dirty else "") + f" (src fingerprint {src_fingerprint()})"
    elif os.path.isdir(src):
        os.environ["PYTHONPATH"] = str(Path(src).resolve())
        label = f"src dir {src}"
    else:
        rev = "HEAD" if src == "head" else src
        sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", rev + "^{commit}"], capture_output=True, text=True, check=True).stdout.strip()
        subject = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%s", sha], capture_output=True, text=True).stdout.strip()
        dest = work / "code"
        dest.mkdir(parents=True, exist_ok=True)
        tar = subprocess.run(["git", "-C", str(REPO), "archive", sha, "src"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
        os.environ["PYTHONPATH"] = str(dest / "src")
        label = f"git archive {sha[:7]} ({subject[:70]})"
    probe = subprocess.run([PY, "-c", "import nocry; print(nocry.__file__)"], capture_output=True, text=True).stdout.strip()
    log(f"code under test: {label} -> {probe}")
    return {"label": label, "module": probe, "src": src}


def fs_type(path: Path) -> str:
    best, fstype = "", "?"
    try:
        for line in open("/proc/self/mounts"):
            dev, mnt, typ = line.split()[:3]
            if str(path).startswith(mnt) and len(mnt) > len(best):
                best, fstype = mnt, typ
    except OSError:
        pass
    return fstype


def foreign_daemons(own: set[int]) -> int:
    """Other nocry daemons on the machine (other sessions' benchmarks and tests): noise."""
    n = 0
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) in own:
            continue
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"nocry" in b" ".join(cmd[:3]) and b"protect" in cmd and b"--foreground" in cmd:
            n += 1
    return n


def summarize(wl: Workload, legs: list[tuple[Leg, Leg]]) -> dict:
    ons = [on for on, _ in legs]
    ratios = [on.wall / off.wall for on, off in legs if on.ok and off.ok and not on.freezes and off.wall > 0]
    incidents = [i for on in ons for i in on.incidents]
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    return {
        "workload": wl.name,
        "family": wl.family,
        "title": wl.title,
        "script": wl.script.strip(),
        "runs": len(legs),
        "events": med([on.events for on in ons if on.events is not None]),
        "kernel_events": med([on.kernel_events for on in ons if on.kernel_events is not None]),
        "incidents": len(incidents),
        "runs_with_incident": sum(1 for on in ons if on.incidents),
        "ratio": med(ratios),
        "ratios": [round(r, 3) for r in ratios],
        "off_s": med([off.wall for _, off in legs if off.ok]),
        "on_s": med([on.wall for on in ons if on.ok]),
        "sync_s": med([on.sync_s for on in ons if on.sync_s is not None]),
        "cpu_s": med([on.cpu for on in ons if on.cpu is not None]),
        "errors": sorted({leg.error for pair in legs for leg in pair if leg.error}),
        "incident_summaries": incidents,
        "freezes": [f for on in ons for f in on.freezes],
        "legs": [{"on": on.record(), "off": off.record()} for on, off in legs],
        "note": wl.note,
    }


def marathon(wls: list[Workload], assets: Assets, work: Path, evidence: Path | None = None) -> dict:
    """A working day compressed: ONE daemon protecting one directory that holds a fresh tree per
    workload (each prepared before protection), and ONE terminal session (a bash) running every
    workload's script one after the other. Evidence that is harmless per program can add up at
    the session, the shell and the uid (all workloads run as root): this row shows whether it does."""
    from bench.benign.common import Daemon, execute, fresh_tree, incident_evidence, prepare

    root = work / "marathon"
    shutil.rmtree(root, ignore_errors=True)
    day = root / "day"
    steps = []
    for wl in wls:
        tree = fresh_tree(assets, day / wl.name)
        env = prepare(wl, tree, assets, root / "scratch" / wl.name)
        exports = " ".join(f"{k}={shlex.quote(env[k])}" for k in ("T", "A", "W", "PY", "HOME"))
        steps.append(f"( cd {shlex.quote(str(tree))} && export {exports} && bash -c {shlex.quote('set -euo pipefail' + chr(10) + wl.script)} ) || echo \"FAILED {wl.name}\"")
    driver = Workload("marathon", "all", "\n".join(steps), title=f"all {len(wls)} workloads above, one daemon, one terminal session", timeout=3600)
    d = Daemon(root / "home", day)
    try:
        d.start(timeout=600)
        d.sync()
        st0, cpu0 = d.status(), d.cpu()
        env = dict(prepare(driver, day, assets, root / "scratch" / "driver"))
        ex = execute(driver, day, env, root / "marathon.log", daemon_pid=d.pid, home=d.home)
        d.sync(timeout=600)
        cpu = d.cpu() - cpu0
        time.sleep(0.3)
        st1 = d.status()
        ev = incident_evidence(d.home)
        if ev and evidence is not None:
            evidence.parent.mkdir(parents=True, exist_ok=True)
            evidence.write_text(json.dumps([e["show"] for e in ev], indent=1, default=str))
    finally:
        d.stop()
    failed = [line.split()[1] for line in ex.log_tail.splitlines() if line.startswith("FAILED ")]
    return {
        "workload": "marathon", "family": "all", "title": driver.title, "script": "every script above in turn, in one bash session",
        "runs": 1, "events": st1["events_total"] - st0["events_total"], "kernel_events": None,
        "incidents": len(ev), "runs_with_incident": 1 if ev else 0, "ratio": None, "ratios": [], "off_s": None,
        "on_s": ex.wall, "sync_s": None, "cpu_s": cpu, "errors": [f"failed: {', '.join(failed)}"] if failed else [],
        "incident_summaries": [e["summary"] for e in ev], "freezes": ex.freezes, "legs": [], "note": "",
    }  # fmt: skip


def fmt(x, nd=2, suffix="") -> str:
    return "–" if x is None else f"{x:,.{nd}f}{suffix}"


def _inc(r: dict | None) -> str:
    if r is None:
        return "–"
    if r.get("skipped"):
        return "skipped"
    return (f"**{r['incidents']}** ({r['runs_with_incident']}/{r['runs']} runs)" if r["incidents"] else "0") + (" (errors)" if r["errors"] else "")


def table(rows: list[dict], baseline: dict | None = None) -> str:
    """The results table; with ``baseline`` (an earlier results file) a column of its incidents."""
    before = {r["workload"]: r for r in (baseline or {}).get("workloads", [])}
    bcol = f" incidents at {baseline['meta']['code']['label'].split(' (')[0].replace('git archive ', '')} |" if baseline else ""
    out = [f"| workload | what runs | events | incidents |{bcol} wall on/off (median) | off s | nocry CPU s | n |",
           "|---|---|---|---|" + ("---|" if baseline else "") + "---|---|---|---|"]
    for r in rows:
        b = f" {_inc(before.get(r['workload']))} |" if baseline else ""
        if r.get("skipped"):
            out.append(f"| {r['workload']} | {r['title']} | – | skipped |{b} – | – | – | 0 |")
            continue
        out.append(f"| {r['workload']} | {r['title']} | {fmt(r['events'], 0)} | {_inc(r)} |{b} {fmt(r['ratio'], 2)} | {fmt(r['off_s'], 2)} | {fmt(r['cpu_s'], 2)} | {r['runs']} |")
    return "\n".join(out)


def incident_text(rows: list[dict]) -> str:
    out = []
    for r in rows:
        if r.get("skipped") or not r["incidents"]:
            continue
        out.append(f"- **{r['workload']}** ({r['runs_with_incident']}/{r['runs']} runs):")
        seen = set()
        for s in r["incident_summaries"]:
            key = (s["exe"], tuple(s["indicators"]))
            if key in seen:
                continue
            seen.add(key)
            parts = []
            for name, b in s["indicators"].items():
                ex = b["examples"][0] if b["examples"] else {}
                parts.append(f"`{name}` x{b['n']} (weight {b['weight']:g}; e.g. `{os.path.basename(str(ex.get('path') or ''))}`: {ex.get('detail')})")
            wid = f", widened {len(s['widened'])}x from {s.get('widened_from')}" if s.get("widened") else ""
            out.append(f"  - actor {s['actor']} (`{s['exe']}`{wid}), score {s['score']}: " + "; ".join(parts))
    return "\n".join(out) if out else "None."


def docs_section(rows: list[dict], meta: dict, baseline: dict | None = None) -> str:
    m = meta["machine"]
    skipped = [r for r in rows if r.get("skipped")]
    errs = [r for r in rows if not r.get("skipped") and r["errors"]]
    lines = [
        f"{BEGIN} (generated by bench/benign/run.py; edits inside are overwritten) -->",
        "",
        "## Benign workloads: false alarms and overhead",
        "",
        "Real programs from Debian and PyPI run on a realistic tree inside a protected directory, nocry",
        "in enforce mode with its default configuration (decoys on). Goal: **zero incidents**, reached",
        "by better indicators, never by allowlisting a program. Each repetition copies a fresh tree",
        "(`nocry drill init DIR --files 300 --seed 1`: 300 docx/xlsx/pptx/odt/pdf/jpg/png/sqlite/eml/csv/",
        "code/text files, 35 MB, plus what the workload finds there, e.g. a clone or a build directory made",
        "before protection), runs the workload's script (bash, its own session, like a terminal) once",
        "with nocry protecting the tree and once with nocry not running, alternating the order.",
        "`events`: `status.events_total` after minus before (median of the protected runs); `incidents`:",
        "`nocry incidents` after `nocry sync` (a frozen workload is released so it finishes; its time is",
        "then left out of the ratio); `wall on/off`: median of the per-repetition ratios of the script's",
        "wall time; `nocry CPU s`: the daemon's utime+stime from just before the script until `nocry sync`",
        "returns after it. Scripts, every raw value and each incident's full evidence:",
        "`bench/results/benign.json`, `bench/results/benign-incidents/STAMP/` (not versioned).",
        "",
        f"Run of {meta['date']} ({meta['kind']}, {meta['minutes']:.1f} min): `{meta['command']}`"
        + (f"; this report rendered from its saved results with `{meta['rendered']}`" if meta.get("rendered") else ""),
        "",
        f"- machine: {m['nproc']} vCPU ({m['cpu']}), {m['mem_gib']} GiB RAM, kernel {m['kernel']}, Debian {m['debian']}, "
        f"work dir on {meta['fs']}, Python {m['python']}",
        f"- code under test: {meta['code']['label']}",
        f"- noise: load average at start {meta['load']}; other nocry daemons running meanwhile (other sessions' "
        f"tests and benchmarks on the same VM): {meta['foreign_daemons']} at start, {meta['foreign_daemons_end']} at the end. "
        "Timings are noisy; incidents are not timing-dependent in the same way.",
        "",
        table(rows, baseline),
        "",
    ]
    if baseline:
        bm = baseline["meta"]
        lines += [f"The column of earlier incidents comes from the run of {bm['date']} (`{bm['command']}`, code: {bm['code']['label']});",
                  "its evidence:", "", incident_text(baseline["workloads"]), ""]
    lines += [
        "### Incidents raised (false alarms), with the indicators that fired",
        "",
        incident_text(rows),
        "",
    ]
    if skipped:
        lines += ["### Skipped", ""] + [f"- {r['workload']}: {r['reason']}" for r in skipped] + [""]
    if errs:
        lines += ["### Workload errors", ""] + [f"- {r['workload']}: {'; '.join(e[:300] for e in r['errors'])}" for r in errs] + [""]
    if any(r["workload"] == "marathon" for r in rows):
        lines += ["The `marathon` row runs every workload's script in turn in ONE bash session under ONE daemon",
                  "(each on its own fresh tree, all inside one protected directory): a working day compressed into",
                  "a minute. After a first verdict on the session, later evidence attaches to that judged actor and",
                  "raises no new incident, so its count is a floor: read its incident's `widened` history.", ""]
    lines += ["`–` in the ratio column: every protected run was frozen (and released), so no clean timing.", ""]
    lines += ["### Commands", "",
              "Each workload's script runs as `bash -c` with `set -euo pipefail`, the tree as working directory,",
              "`$A` the inputs made once outside the tree, `$W` a scratch directory outside the tree (also `HOME`),",
              "`$PY` Python 3.11; what the workload finds in the tree before protection is made by its `pre()`",
              "in `bench/benign/<family>.py`.", "", "<details><summary>the scripts</summary>", ""]
    for r in rows:
        if not r.get("skipped") and r["workload"] != "marathon":
            lines += [f"**{r['workload']}** ({r.get('family', '')})", "", "```sh", r["script"], "```", ""]
    lines += ["</details>", "", END]
    return "\n".join(lines)


def write_docs(section: str) -> None:
    """Replace only our section of docs/benchmarks.md (other helpers write other sections):
    re-read right before writing, write a temp file, rename it over."""
    text = DOCS.read_text() if DOCS.exists() else "# nocry — benchmarks\n"
    a = text.find(BEGIN)
    b = text.find(END)
    if a >= 0 and b > a:
        new = text[:a] + section + text[b + len(END) :]
    else:
        new = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = DOCS.with_name(f".{DOCS.name}.benign-{os.getpid()}")
    tmp.write_text(new)
    os.replace(tmp, DOCS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the fast subset, 1 run each; does not touch the docs unless --docs")
    ap.add_argument("--runs", type=int, help="repetitions (on+off) per workload (default 3; --quick: 1)")
    ap.add_argument("--only", help="comma-separated workload names or families")
    ap.add_argument("--tmp", default="/var/tmp", help="where the work dir goes (a disk filesystem)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install missing programs")
    ap.add_argument("--docs", action="store_true", help="write docs/benchmarks.md even with --quick/--only")
    ap.add_argument("--no-docs", action="store_true", help="never write docs/benchmarks.md")
    ap.add_argument("--marathon", action="store_true", help="also run the selected workloads one after another under one daemon and one session (default in a full run)")
    ap.add_argument("--no-marathon", action="store_true")
    ap.add_argument("--src", default="worktree", help="code to measure: worktree (default: the editable .venv install), head or a git REV (git archive of it, first on PYTHONPATH), or a src DIR")
    ap.add_argument("--baseline", metavar="RESULTS", help="an earlier results file (bench/results/benign*.json): its incidents become a column of the table")
    ap.add_argument("--from-results", metavar="RESULTS", help="run nothing: print (and with --docs write) the report of a saved results file")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)

    baseline = json.loads(Path(args.baseline).read_text()) if args.baseline else None
    if args.from_results:
        saved = json.loads(Path(args.from_results).read_text())
        saved["meta"]["rendered"] = "sudo .venv/bin/python bench/benign/run.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
        print(table(saved["workloads"], baseline))
        print()
        print(incident_text(saved["workloads"]))
        if args.docs and not args.no_docs:
            write_docs(docs_section(saved["workloads"], saved["meta"], baseline))
            log(f"wrote the benign section of {DOCS}")
        return 0
    wls = all_workloads()
    if args.list:
        for w in wls:
            print(f"{w.name:24} {w.family:8} {'quick ' if w.quick else '      '}{'tested ' if w.tested else '       '}{w.title}")
        return 0
    if args.only:
        names = {x.strip() for x in args.only.split(",") if x.strip()}
        unknown = names - {w.name for w in wls} - {w.family for w in wls}
        if unknown:
            ap.error(f"unknown workloads: {', '.join(sorted(unknown))}")
        wls = [w for w in wls if w.name in names or w.family in names]
    elif args.quick:
        wls = [w for w in wls if w.quick]
    if os.geteuid() != 0:
        print("the benign suite needs root (fanotify filesystem marks)", file=sys.stderr)
        return 2
    runs = args.runs or (1 if args.quick else 3)
    write = (args.docs or not (args.quick or args.only)) and not args.no_docs

    t_start = time.time()
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(t_start)),
        "stamp": time.strftime("%Y%m%d-%H%M%S", time.localtime(t_start)),
        "command": "sudo .venv/bin/python bench/benign/run.py" + ("".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))),
        "kind": "partial run" if args.only else ("quick run" if args.quick else "full run"),
        "machine": machine(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "foreign_daemons": foreign_daemons({os.getpid()}),
    }
    skipped = ensure_programs(wls, install=not args.no_install)
    work = Path(tempfile.mkdtemp(prefix="nocry-benign-", dir=args.tmp))
    meta["fs"] = fs_type(work)
    meta["code"] = select_code(args.src, work)
    assets = Assets(work / "assets")
    rows: list[dict] = []
    log(f"work dir {work}; {len(wls)} workloads x {runs} runs")
    try:
        for wl in wls:
            if wl.name in skipped:
                log(f"SKIP {wl.name}: {skipped[wl.name]}")
                rows.append({"workload": wl.name, "title": wl.title, "skipped": True, "reason": skipped[wl.name]})
                continue
            legs: list[tuple[Leg, Leg]] = []
            n = wl.runs if (wl.runs and not args.runs and not args.quick) else runs
            try:
                for name in ("template", *wl.assets):
                    assets.get(name)
                for r in range(n):
                    order = (False, True) if r % 2 == 0 else (True, False)
                    got: dict[bool, Leg] = {}
                    for on in order:
                        evidence = EVIDENCE / meta["stamp"] / f"{wl.name}-run{r}.json"
                        got[on] = run_leg(wl, on, work / "legs" / wl.name, assets, keep_evidence=evidence)
                    on_leg, off_leg = got[True], got[False]
                    legs.append((on_leg, off_leg))
                    ratio = on_leg.wall / off_leg.wall if off_leg.wall else float("nan")
                    log(f"{wl.name} run {r + 1}/{n}: off {off_leg.wall:.2f}s on {on_leg.wall:.2f}s (x{ratio:.2f}) events {on_leg.events} "
                        f"cpu {on_leg.cpu:.2f}s incidents {len(on_leg.incidents)}{' ERROR ' + on_leg.error[:200] if on_leg.error else ''}"
                        f"{' OFF-ERROR ' + off_leg.error[:200] if off_leg.error else ''}")  # fmt: skip
                    if on_leg.incidents:
                        log(describe_incidents([{"summary": s} for s in on_leg.incidents]))
            except Missing as exc:
                log(f"SKIP {wl.name}: {exc}")
                rows.append({"workload": wl.name, "title": wl.title, "skipped": True, "reason": str(exc)})
                continue
            finally:
                shutil.rmtree(work / "legs" / wl.name, ignore_errors=True)
            rows.append(summarize(wl, legs))
        if (args.marathon or not (args.quick or args.only)) and not args.no_marathon:
            ok = [w for w in wls if not any(r["workload"] == w.name and r.get("skipped") for r in rows)]
            log(f"marathon: {len(ok)} workloads, one daemon, one session")
            row = marathon(ok, assets, work, EVIDENCE / meta["stamp"] / "marathon.json")
            log(f"marathon: {row['on_s']:.1f}s, events {row['events']}, cpu {row['cpu_s']:.1f}s, incidents {row['incidents']}")
            if row["incidents"]:
                log(describe_incidents([{"summary": s} for s in row["incident_summaries"]]))
            rows.append(row)
            shutil.rmtree(work / "marathon", ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")
    meta["minutes"] = (time.time() - t_start) / 60
    if args.src == "worktree":
        end = src_fingerprint()
        meta["code"]["changed_during_run"] = end not in meta["code"]["label"]
        if meta["code"]["changed_during_run"]:
            meta["code"]["label"] += f"; CHANGED during the run (fingerprint at the end {end}): the rows mix code versions"
            log("WARNING: src/ changed during the run")
    meta["foreign_daemons_end"] = foreign_daemons({os.getpid()})
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"meta": meta, "workloads": rows}, indent=1, default=str))
    print(table(rows, baseline))
    print()
    print(incident_text(rows))
    if write:
        write_docs(docs_section(rows, meta, baseline))
        log(f"wrote the benign section of {DOCS}")
    log(f"results: {RESULTS}")
    bad = sum(r.get("incidents", 0) for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
