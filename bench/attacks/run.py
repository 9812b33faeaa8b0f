"""Attack benchmark: every drill scenario against a live nocry daemon, damage before the freeze,
time to freeze, and what `nocry incident restore` brings back.

    sudo .venv/bin/python bench/attacks/run.py             # full: 3 runs per cell, 2,000 files (~25-30 min)
    sudo .venv/bin/python bench/attacks/run.py --src head  # the same, of one commit (src/ edits during the run ignored)
    sudo .venv/bin/python bench/attacks/run.py --runs 5    # 5 runs per cell (~45-50 min)
    sudo .venv/bin/python bench/attacks/run.py --quick     # 1 run per cell, 300 files (~4 min; more under load), docs untouched
    sudo .venv/bin/python bench/attacks/run.py --scenarios encrypt-in-place,wipe-zero --configs off --rates full

For each scenario (17 attacks of `nocry drill list`), configuration (decoys off: content and namespace
evidence only; decoys on: the default configuration) and rate (full speed `--delay 0`; realistic
`--delay 0.01`; `slow` always `--delay 1 --limit 20`), each run:

    cp -a TEMPLATE $T                         (TEMPLATE: nocry drill init --files N --seed S, made once)
    $H/config.toml: [canary] enabled = false|true
    nocry --home $H protect $T                (daemon; returns once protecting)
    nocry --json drill run SCENARIO $T --delay D --timeout 1.5 [--limit 20]
    manifest, incidents, freeze actions -> damaged before the freeze / in total, first write -> freeze
    nocry --home $H sync; nocry --home $H --json incident restore ID   (every incident)
    BLAKE3 of every generated file vs the marker -> lost; files not ours -> left over
    nocry --home $H incident kill ID; nocry --home $H stop; rm -rf

and each scenario once without nocry (attacker speed). Results: bench/results/attacks-full.json
(or attacks-quick.json); a full run also rewrites the results block of the attacks section of
docs/benchmarks.md (between its markers; the hand-written text around it stays).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1] / "core"))  # settings.py (after ours: both have a common.py)

from common import (  # noqa: E402
    NOCRY,
    RESULTS,
    cleanup_cgroups,
    cleanup_daemons,
    fs_type,
    log,
    machine,
    marker_hashes,
    setup_code,
    src_state,
    median,
    nocry,
    rmtree,
    shjoin,
)
from measure import ProtectedRun, copy_tree, unimpeded_run  # noqa: E402
from report import aggregate, markdown, update_docs  # noqa: E402
from settings import config_toml  # noqa: E402

ATTACKS = [
    "encrypt-in-place", "encrypt-new-delete", "intermittent", "partial-5pct", "header-only", "base64", "bitflip",
    "keep-extension", "random-names", "many-workers", "fork-per-file", "slow", "wipe-zero", "wipe-random",
    "wipe-truncate", "wipe-delete", "wipe-plausible",
]  # fmt: skip
DELAYS = {"full": 0.0, "realistic": 0.01, "slow": 1.0}
SLOW_LIMIT = 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 run per cell on 300 files; prints, leaves the docs alone")
    ap.add_argument("--runs", type=int, default=None, help="runs per scenario, rate and configuration (default 3; --quick 1)")
    ap.add_argument("--files", type=int, default=None, help="documents in the drill tree (default 2000; --quick 300)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scenarios", default=",".join(ATTACKS), help="comma-separated (default: all 17 attacks)")
    ap.add_argument("--configs", default="off,on", help="decoys off,on (default both)")
    ap.add_argument("--rates", default="full,realistic", help="full (--delay 0), realistic (--delay 0.01)")
    ap.add_argument("--drill-timeout", type=float, default=None, help="drill run --timeout: seconds without progress = frozen (default 1.5; --quick 0.5)")
    ap.add_argument("--speed-limit", type=int, default=None, help="files for the unimpeded realistic-rate speed run (default 200; --quick 20)")
    ap.add_argument("--src", default="worktree",
                    help="code to measure: worktree (default: the editable .venv install, edits during the run included), "
                         "head or any git REV (a git archive of it on PYTHONPATH: one commit), or a src DIR")
    ap.add_argument("--tmp", default="/var/tmp", help="parent of the work dir (a disk filesystem, not tmpfs)")
    ap.add_argument("--template", default=None, help="reuse this drill tree (made by nocry drill init, never attacked) instead of making one")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--docs", dest="docs", action="store_true", default=None, help="rewrite the docs section (default: full runs of everything)")
    ap.add_argument("--no-docs", dest="docs", action="store_false")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a setting of every daemon's config.toml, TOML value syntax (repeatable), e.g. --set capture.nice=0; "
                         "canary.enabled is --configs' to set")
    a = ap.parse_args(argv)
    a.runs = a.runs or (1 if a.quick else 3)
    a.files = a.files or (300 if a.quick else 2000)
    a.drill_timeout = a.drill_timeout or (0.5 if a.quick else 1.5)
    a.speed_limit = a.speed_limit or (20 if a.quick else 200)
    a.scenarios = [s for s in a.scenarios.split(",") if s]
    a.configs = [c for c in a.configs.split(",") if c]
    a.rates = [r for r in a.rates.split(",") if r]
    bad = [s for s in a.scenarios if s not in ATTACKS] + [c for c in a.configs if c not in ("off", "on")] + [r for r in a.rates if r not in ("full", "realistic")]
    if bad:
        ap.error(f"unknown: {bad}")
    if any(x.replace(" ", "").startswith("canary.enabled=") for x in a.set):
        ap.error("canary.enabled comes from --configs (decoys off,on), not --set")
    # one config.toml per decoy configuration: the settings plus canary.enabled
    a.config_text = {c: config_toml([f"canary.enabled={'true' if c == 'on' else 'false'}", *a.set], NOCRY) for c in a.configs}
    if a.docs is None:
        # figures under other settings never replace the defaults' in the docs unless asked (--docs)
        a.docs = not a.set and not a.quick and a.scenarios == ATTACKS and a.configs == ["off", "on"] and a.rates == ["full", "realistic"]
    return a


def command_line(a: argparse.Namespace, argv: list[str]) -> str:
    return shjoin(["sudo", ".venv/bin/python", "bench/attacks/run.py", *argv])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("the attack benchmark needs root (fanotify filesystem marks, cgroup freeze)")
    atexit.register(_final_cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t_start = time.monotonic()
    started = time.strftime("%Y-%m-%d %H:%M")
    work = Path(tempfile.mkdtemp(prefix="nocry-attacks-", dir=a.tmp))
    if fs_type(work) in ("tmpfs", "ramfs"):
        raise SystemExit(f"{work} is on tmpfs: use --tmp on a disk filesystem")
    name = "quick" if a.quick else "full"
    out_file = RESULTS / f"attacks-{name}.json"
    log(f"work dir {work}; results -> {out_file}")
    code = setup_code(a.src, work / "code")
    result: dict[str, Any] = {
        "benchmark": "attacks", "started": started, "command": command_line(a, argv), "machine": machine(work), "code": code,
        "results_file": str(out_file.relative_to(RESULTS.parents[1])),
        "params": {"quick": a.quick, "runs": a.runs, "files": a.files, "seed": a.seed, "scenarios": a.scenarios, "configs": a.configs,
                   "rates": a.rates, "drill_timeout": a.drill_timeout, "speed_limit": a.speed_limit, "slow": {"delay": 1.0, "limit": SLOW_LIMIT},
                   "realistic_delay": DELAYS["realistic"], "settings": a.set},
        "speeds": {}, "runs": [],
    }
    try:
        if a.template:
            template = Path(a.template).resolve()
        else:
            template = work / "template"
            log(f"drill init --files {a.files} --seed {a.seed}")
            init = nocry(None, "drill", "init", template, "--files", a.files, "--seed", a.seed, timeout=1800)
            result["params"]["init_seconds"] = init["seconds"]
        gen = marker_hashes(template)
        result["params"]["tree_files"] = len(gen)
        result["params"]["tree_bytes"] = sum(f["size"] for f in json.loads((template / ".nocry-drill").read_text())["files"])

        # 1. the attacker alone
        for sc in a.scenarios:
            result["speeds"][sc] = {}
            legs = [("slow", 1.0, 3)] if sc == "slow" else [(r, DELAYS[r], None if r == "full" else a.speed_limit) for r in a.rates]
            for rate, delay, limit in legs:
                u = unimpeded_run(template, work / "u", sc, delay, limit, set(gen))
                result["speeds"][sc][rate] = u
                log(f"speed {sc:18} {rate:9} {u['files_per_s'] or 0:8.1f} files/s ({u['damaged_files']} files)")
        _save(out_file, result)

        # 2. against nocry: alternate configurations and rates inside each repetition
        plan = []
        for rep in range(a.runs):
            for sc in a.scenarios:
                for cfg in a.configs:
                    for rate in (["slow"] if sc == "slow" else a.rates):
                        plan.append((rep, sc, cfg, rate))
        # Overlapping, to keep a full run near 30 min: while run k restores, verifies and cleans up
        # (post), the tree of run k+1 is copied and its daemon started; run k+1's attack begins only
        # once all of that is finished (before_attack), so nothing else of ours runs during an attack.
        copier, poster = Background(), Background()
        dirs = [work / f"run-{k:04d}" for k in range(len(plan) + 1)]
        copier.start(copy_tree, template, dirs[0])
        for k, (rep, sc, cfg, rate) in enumerate(plan):
            copier.join()
            if not (dirs[k] / "tree" / ".nocry-drill").exists():  # the background copy failed
                copy_tree(template, dirs[k])
            pr = ProtectedRun(dirs[k], sc, decoys=(cfg == "on"), delay=DELAYS[rate], limit=SLOW_LIMIT if rate == "slow" else None,
                              drill_timeout=a.drill_timeout, gen_hashes=gen, config_text=a.config_text[cfg])
            pr.rec.update(rep=rep, config=cfg, rate=rate)
            pr.attack(before_attack=poster.join)
            poster.join()  # (when attack() failed before waiting)
            if k and k % 10 == 0:
                _save(out_file, result)  # no post() is running now: the records are quiet
            result["runs"].append(pr.rec)
            if k + 1 < len(plan):
                copier.start(copy_tree, template, dirs[k + 1])
            poster.start(_post, pr, k, len(plan))
        copier.join()
        poster.join()
    finally:
        cleanup_daemons()
        result["cgroups_cleaned"] = cleanup_cgroups()
        if not a.keep:
            rmtree(work)
    result["minutes"] = round((time.monotonic() - t_start) / 60, 1)
    end = src_state()
    # with --src worktree, an edit of src/ (or a commit) during the run means the runs measured mixed code
    result["code"]["changed_during_run"] = a.src == "worktree" and (end["head"], end["src_digest"]) != (code["head"], code["src_digest"])
    result["code"]["at_end"] = end
    if result["code"]["changed_during_run"]:
        log("WARNING: src/ changed while the benchmark ran (--src worktree): the runs measured mixed code; use --src head")
    result["cpu_busy_median"] = median([r.get("cpu_busy_during_attack") for r in result["runs"]])
    result["aggregate"] = {"|".join(k): v for k, v in aggregate(result["runs"]).items()}
    _save(out_file, result)
    md = markdown(result)
    print(md)
    if a.docs:
        update_docs(result)
        log("docs/benchmarks.md: attacks section updated")
    log(f"done in {result['minutes']} min; {out_file}")
    return 0


def _post(pr: ProtectedRun, k: int, n: int) -> None:
    r = pr.post()
    log(f"[{k + 1}/{n}] {r['scenario']:18} decoys {r['config']:3} {r['rate']:9} det={int(bool(r.get('detected')))} inc={r.get('n_incidents')} "
        f"dmg={r.get('damaged_before_freeze')}/{r.get('damaged_total')} t={r.get('t_freeze_s')} lost={r.get('lost')} "
        f"left={r.get('leftover')}{' ERR ' + r['errors'][0][:200] if r.get('errors') else ''}")


class Background:
    """Work of ours that may overlap a run's restore and cleanup, never its attack."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def start(self, fn, *args) -> None:
        t = threading.Thread(target=self._run, args=(fn, *args))
        t.start()
        self.threads.append(t)

    @staticmethod
    def _run(fn, *args) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - reported, the benchmark goes on
            log(f"background {fn.__name__}: {exc}")

    def join(self) -> None:
        for t in self.threads:
            t.join()
        self.threads = []


def _save(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str))
    tmp.replace(path)


def _final_cleanup() -> None:
    cleanup_daemons()
    left = cleanup_cgroups()
    if left:
        log(f"quarantine cgroups of ours removed at exit: {left}")


if __name__ == "__main__":
    sys.exit(main())
