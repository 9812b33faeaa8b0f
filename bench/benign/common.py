"""Shared machinery of the benign workload suite (bench/benign/run.py, tests/e2e/test_benign.py).

    wl = Workload(name, family, script, ...)   # a bash script of real programs, run in the tree
    assets = Assets(dir)                       # inputs built once, OUTSIDE the tree (a bare git
                                               # repo, a C project, wheels, videos, a second tree)
    leg = run_leg(wl, on=True, ...)            # fresh copy of the tree -> pre() -> (nocry protect)
                                               # -> time the script -> sync -> incidents -> stop

A workload's script runs as ``bash -c`` in its own session (like a user's terminal), with the tree
as working directory and these variables: ``T`` the protected tree, ``A`` the assets directory,
``W`` a scratch directory outside the tree (HOME, GNUPGHOME, caches live there), ``PY`` a Python
3.11 interpreter. ``PATH`` is the system's (/usr/sbin:/usr/bin:/sbin:/bin) so that the real
programs run, never a stand-in from /usr/local.

If nocry freezes a workload (a false alarm in enforce mode), the watcher releases it through
``nocry incident release`` so the workload finishes and the incident stays on record with its
evidence; a run with a freeze is flagged and its time is not used for the ratio.

Nothing here changes nocry: the daemon and CLI run exactly as a user runs them
(``.venv/bin/nocry --home H ...``), with the default configuration (enforce mode, decoys on).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
VENV_PY = str(REPO / ".venv" / "bin" / "python")
PY = VENV_PY if os.path.exists(VENV_PY) else sys.executable
NOCRY_SHOWN = ".venv/bin/nocry"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SYS_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
#: the realistic tree: ``nocry drill init DIR --files 300 --seed 1``
TREE_FILES = 300
TREE_SEED = 1


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def nocry_argv(home: Path | str, *args: str, json_out: bool = True) -> list[str]:
    return [PY, "-m", "nocry", "--home", str(home), *(["--json"] if json_out else []), *map(str, args)]


def nocry(home: Path | str, *args: str, timeout: float = 300, json_out: bool = True) -> tuple[int, Any, str]:
    p = subprocess.run(nocry_argv(home, *args, json_out=json_out), capture_output=True, text=True, timeout=timeout, errors="replace")
    data = None
    if json_out and p.stdout.strip():
        try:
            data = json.loads(p.stdout)
        except json.JSONDecodeError:
            data = None
    return p.returncode, data, (p.stdout + p.stderr)[-3000:]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    # fields after "(comm)": state=0 ... utime=11 stime=12 cutime=13 cstime=14
    return (int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])) / CLK_TCK


def find_cgroup2() -> Path | None:
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                sep = parts.index("-")
                if parts[sep + 1] == "cgroup2":
                    return Path(parts[4])
    except OSError:
        pass
    return None


QUARANTINE = (find_cgroup2() or Path("/sys/fs/cgroup")) / "nocry-quarantine"


def quarantine_of(daemon_pid: int) -> list[Path]:
    """The quarantine cgroups a given daemon made (named incident-ID-DAEMONPID-NS)."""
    try:
        return sorted(p for p in QUARANTINE.iterdir() if p.is_dir() and re.fullmatch(rf"incident-\d+-{daemon_pid}-\d+", p.name))
    except OSError:
        return []


def remove_quarantine(daemon_pid: int) -> int:
    """Kill and remove whatever is left in the quarantine cgroups of *our* daemon."""
    n = 0
    for cg in quarantine_of(daemon_pid):
        for name, val in (("cgroup.kill", "1"), ("cgroup.freeze", "0")):
            try:
                (cg / name).write_text(val)
            except OSError:
                pass
        for _ in range(50):
            try:
                cg.rmdir()
                n += 1
                break
            except OSError:
                time.sleep(0.05)
    return n


# --------------------------------------------------------------------------------------------
# workloads and their inputs
# --------------------------------------------------------------------------------------------


@dataclass
class Workload:
    name: str
    family: str
    #: bash, run with cwd = the tree; $T tree, $A assets, $W scratch outside the tree, $PY python
    script: str
    #: what it is, in a few words (the docs' "workload" column)
    title: str
    #: programs that must exist (checked with shutil.which on the system PATH)
    needs: tuple[str, ...] = ()
    #: Debian packages providing them
    apt: tuple[str, ...] = ()
    #: named assets (built once per suite, outside the tree) the workload uses
    assets: tuple[str, ...] = ()
    #: untimed preparation of the fresh tree copy BEFORE nocry protects it: (tree, assets, scratch)
    pre: Callable[[Path, "Assets", Path], None] | None = None
    #: in the --quick subset / in tests/e2e/test_benign.py (each under ~10 s with the tree's setup)
    quick: bool = False
    tested: bool = False
    #: repetitions in a full run (None: the suite's --runs)
    runs: int | None = None
    timeout: float = 600.0
    note: str = ""


class Missing(Exception):
    """A workload cannot run here: a program or an asset is missing (the message says what)."""


ASSET_BUILDERS: dict[str, Callable[["Assets", Path], None]] = {}


def asset(name: str):
    """Register a builder: ``fn(assets, target_dir)`` fills target_dir (created empty)."""

    def deco(fn):
        ASSET_BUILDERS[name] = fn
        return fn

    return deco


class Assets:
    """Inputs built once per suite, outside every protected tree, on demand."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.failed: dict[str, str] = {}

    def get(self, name: str) -> Path:
        if name in self.failed:
            raise Missing(self.failed[name])
        d = self.root / name
        if (self.root / f".{name}.done").exists():
            return d
        if name not in ASSET_BUILDERS:
            raise KeyError(name)
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        t0 = time.perf_counter()
        try:
            ASSET_BUILDERS[name](self, d)
        except Missing as exc:
            self.failed[name] = str(exc)
            raise
        except Exception as exc:  # noqa: BLE001 - a failed asset skips its workloads, with the reason
            self.failed[name] = f"building asset {name!r} failed: {exc}"
            raise Missing(self.failed[name]) from exc
        (self.root / f".{name}.done").write_text(f"{time.perf_counter() - t0:.2f}\n")
        return d


@asset("template")
def _template(assets: Assets, d: Path) -> None:
    """The realistic tree: ``nocry drill init DIR --files 300 --seed 1``."""
    shutil.rmtree(d)
    rc, _, out = nocry(assets.root / ".unused-home", "drill", "init", str(d), "--files", str(TREE_FILES), "--seed", str(TREE_SEED))
    if rc != 0:
        raise RuntimeError(f"nocry drill init failed: {out}")
    shutil.rmtree(assets.root / ".unused-home", ignore_errors=True)


def system_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {"PATH": SYS_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC", "TERM": "dumb"}
    env.update(extra or {})
    return env


def sh(cmd: list[str] | str, *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    p = subprocess.run(cmd, cwd=cwd, env=env or system_env(), shell=isinstance(cmd, str), capture_output=True, text=True, timeout=timeout, errors="replace")
    if p.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed ({p.returncode}): {(p.stderr or p.stdout)[-1500:]}")
    return p.stdout


def missing_programs(wl: Workload) -> list[str]:
    return [n for n in wl.needs if shutil.which(n, path=SYS_PATH) is None]


def ensure_programs(workloads: list[Workload], install: bool) -> dict[str, str]:
    """Install (apt-get) what the workloads need; return {workload: reason} for those that still cannot run."""
    want = sorted({pkg for wl in workloads if missing_programs(wl) for pkg in wl.apt})
    if want and install and os.geteuid() == 0:
        log(f"installing with apt-get: {' '.join(want)}")
        env = {**system_env(), "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=900)
        p = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *want], env=env, capture_output=True, text=True, timeout=1800)
        if p.returncode != 0:
            log(f"apt-get install failed ({p.returncode}): {p.stderr[-800:]}")
    out = {}
    for wl in workloads:
        miss = missing_programs(wl)
        if miss:
            out[wl.name] = f"{', '.join(miss)} not installed (apt-get install {' '.join(wl.apt)})"
    return out


def fresh_tree(assets: Assets, dest: Path) -> Path:
    """A fresh copy of the realistic tree (cp -a of the template)."""
    tpl = assets.get("template")
    dest.parent.mkdir(parents=True, exist_ok=True)
    sh(["cp", "-a", str(tpl), str(dest)])
    return dest


def prepare(wl: Workload, tree: Path, assets: Assets, scratch: Path) -> dict[str, str]:
    """Build the workload's assets, run its pre() on the fresh tree; return the script's env."""
    for name in wl.assets:
        assets.get(name)
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "home").mkdir(exist_ok=True)
    if wl.pre is not None:
        wl.pre(tree, assets, scratch)
    return system_env({"T": str(tree), "A": str(assets.root), "W": str(scratch), "PY": PY, "HOME": str(scratch / "home")})


# --------------------------------------------------------------------------------------------
# running one workload
# --------------------------------------------------------------------------------------------


@dataclass
class Execution:
    wall: float
    rc: int
    log_tail: str
    freezes: list[dict] = field(default_factory=list)  # {"cgroup", "seen_s", "released": [ids]}
    timed_out: bool = False


class FreezeWatcher(threading.Thread):
    """Releases our daemon's freezes (false alarms) so the workload can finish; records them.

    Polls the quarantine cgroup directory (a listdir every 0.1 s, nothing else), and only when a
    cgroup of *our* daemon appears asks nocry (``incident release ID``) to let the work go on."""

    def __init__(self, daemon_pid: int, release: Callable[[], list[int]], t0: float):
        super().__init__(daemon=True)
        self.pid = daemon_pid
        self.release = release
        self.t0 = t0
        self.stop_ev = threading.Event()
        self.seen: set[str] = {p.name for p in quarantine_of(daemon_pid)}
        self.freezes: list[dict] = []

    def run(self) -> None:
        while not self.stop_ev.wait(0.1):
            new = [p for p in quarantine_of(self.pid) if p.name not in self.seen]
            if not new:
                continue
            seen_s = time.perf_counter() - self.t0
            released: list[int] = []
            for _ in range(30):  # the incident row is written just after the freeze
                released += self.release()
                if released:
                    break
                time.sleep(0.1)
            for p in new:
                self.seen.add(p.name)
            self.freezes.append({"cgroups": [p.name for p in new], "seen_s": round(seen_s, 3), "released": released})


def release_frozen(home: Path | str) -> list[int]:
    """``nocry incident release ID`` for every frozen incident of this home; returns the ids."""
    rc, data, _ = nocry(home, "incidents")
    out = []
    for inc in (data or {}).get("incidents", []):
        if inc.get("state") == "frozen":
            nocry(home, "incident", "release", str(inc["id"]))
            out.append(inc["id"])
    return out


def execute(wl: Workload, tree: Path, env: dict[str, str], logfile: Path, *, daemon_pid: int | None = None,
            home: Path | None = None, timeout: float | None = None) -> Execution:
    """Run the workload's script (timed) as its own session; with a daemon, release its freezes."""
    script = "set -euo pipefail\n" + wl.script
    timeout = timeout or wl.timeout
    with open(logfile, "ab") as lf:
        t0 = time.perf_counter()
        watcher = None
        if daemon_pid is not None and home is not None:
            watcher = FreezeWatcher(daemon_pid, lambda: release_frozen(home), t0)
            watcher.start()
        proc = subprocess.Popen(["bash", "-c", script], cwd=tree, env=env, stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            rc = proc.wait(30)
        wall = time.perf_counter() - t0
        if watcher is not None:
            watcher.stop_ev.set()
            watcher.join(10)
    tail = logfile.read_text(errors="replace")[-1500:] if logfile.exists() else ""
    return Execution(wall=wall, rc=rc, log_tail=tail, freezes=watcher.freezes if watcher else [], timed_out=timed_out)


def summarize_incident(show: dict) -> dict:
    """The evidence of one incident, compact: actor, which indicators fired (count, weight), examples."""
    inds = show.get("indicators") or []
    by: dict[str, dict] = {}
    for i in inds:
        b = by.setdefault(i["name"], {"n": 0, "weight": 0.0, "examples": []})
        b["n"] += 1
        b["weight"] += float(i.get("weight") or 0)
        if len(b["examples"]) < 3:
            b["examples"].append({"path": i.get("path"), "detail": i.get("detail"), "pid": i.get("pid")})
    actor = show.get("actor") or {}
    procs = actor.get("processes") or []
    widened = [a.get("to") for a in show.get("actions") or [] if a.get("action") == "widen"]
    return {
        "id": show.get("id"),
        "state": show.get("state"),
        "score": show.get("score"),
        "actor": actor.get("label"),
        "exe": actor.get("exe"),
        "comms": sorted({p.get("comm") or "" for p in procs}),
        "indicators": {k: {**v, "weight": round(v["weight"], 2)} for k, v in sorted(by.items(), key=lambda kv: -kv[1]["weight"])},
        "objects_touched": show.get("objects_touched"),
        "widened": widened,
        "widened_from": actor.get("widened_from"),
    }


def incident_evidence(home: Path | str) -> list[dict]:
    """Every incident of a home with its full ``incident show`` record and a summary."""
    rc, data, out = nocry(home, "incidents")
    if rc not in (0, 1) or data is None:
        raise RuntimeError(f"nocry incidents failed: {out}")
    res = []
    for inc in data.get("incidents", []):
        rc, show, _ = nocry(home, "incident", "show", str(inc["id"]))
        show = show or inc
        res.append({"summary": summarize_incident(show), "show": show})
    return res


def describe_incidents(evidence: list[dict]) -> str:
    """One line per incident: actor, exe, indicators with counts and weights, one example."""
    lines = []
    for e in evidence:
        s = e["summary"]
        parts = []
        for name, b in s["indicators"].items():
            ex = b["examples"][0] if b["examples"] else {}
            parts.append(f"{name} x{b['n']} (={b['weight']:g}; e.g. {os.path.basename(str(ex.get('path') or ''))}: {ex.get('detail')})")
        wid = f" (widened from {s.get('widened_from')}, {len(s.get('widened') or [])}x)" if s.get("widened") else ""
        lines.append(f"incident {s['id']} [{s['state']}] {s['actor']}{wid} exe={s['exe']} comms={','.join(s['comms'])} score={s['score']}: " + "; ".join(parts))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# a daemon for the benchmark (the tests use tests/e2e/harness.Nocry)
# --------------------------------------------------------------------------------------------


class Daemon:
    """``nocry --home H protect TREE --foreground`` as our child (so the runner, its ancestor, is
    never frozen), stopped with ``nocry --home H stop``."""

    def __init__(self, home: Path, tree: Path):
        self.home = home
        self.tree = tree
        self.proc: subprocess.Popen | None = None
        self.pid = 0

    def start(self, timeout: float = 180) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.logf = open(self.home.parent / (self.home.name + ".daemon.log"), "ab")
        self.proc = subprocess.Popen(nocry_argv(self.home, "protect", str(self.tree), "--foreground", json_out=False),
                                     stdin=subprocess.DEVNULL, stdout=self.logf, stderr=self.logf)  # fmt: skip
        self.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}")
            try:
                st = json.loads((self.home / "run" / "status.json").read_text())
            except (OSError, json.JSONDecodeError):
                st = None
            if st and st.get("pid") == self.pid and st.get("state") == "protecting":
                return
            time.sleep(0.05)
        raise RuntimeError("daemon never reached 'protecting'")

    def status(self) -> dict:
        rc, data, out = nocry(self.home, "status")
        if data is None:
            raise RuntimeError(f"nocry status failed: {out}")
        return data

    def sync(self, timeout: float = 300) -> dict:
        rc, data, out = nocry(self.home, "sync", "--timeout", str(timeout), timeout=timeout + 30)
        if rc != 0:
            raise RuntimeError(f"nocry sync failed ({rc}): {out}")
        return data

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            nocry(self.home, "stop", timeout=90, json_out=False)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        remove_quarantine(self.pid)
        self.logf.close()
        self.proc = None


@dataclass
class Leg:
    on: bool
    wall: float
    ok: bool
    error: str = ""
    events: int | None = None
    kernel_events: int | None = None
    cpu: float | None = None
    sync_s: float | None = None
    incidents: list[dict] = field(default_factory=list)  # summaries
    freezes: list[dict] = field(default_factory=list)
    overflows: int | None = None

    def record(self) -> dict:
        return self.__dict__.copy()


def run_leg(wl: Workload, on: bool, legdir: Path, assets: Assets, *, keep_evidence: Path | None = None) -> Leg:
    """One timed execution on a fresh copy of the tree, with nocry protecting it (on) or not running."""
    shutil.rmtree(legdir, ignore_errors=True)
    legdir.mkdir(parents=True)
    tree = fresh_tree(assets, legdir / "tree")
    scratch = legdir / "scratch"
    env = prepare(wl, tree, assets, scratch)
    logfile = legdir / "workload.log"
    d = None
    try:
        if on:
            d = Daemon(legdir / "home", tree)
            d.start()
            d.sync()
            st0 = d.status()
            cpu0 = d.cpu()
        os.sync()  # one leg's dirty pages are not written back during the timed part
        ex = execute(wl, tree, env, logfile, daemon_pid=d.pid if d else None, home=d.home if d else None)
        leg = Leg(on=on, wall=ex.wall, ok=ex.rc == 0 and not ex.timed_out, freezes=ex.freezes)
        if not leg.ok:
            leg.error = f"exit {ex.rc}{' (timed out)' if ex.timed_out else ''}: {ex.log_tail[-600:]}"
        if d is not None:
            t1 = time.perf_counter()
            d.sync()
            leg.sync_s = time.perf_counter() - t1
            leg.cpu = d.cpu() - cpu0
            time.sleep(0.3)
            st1 = d.status()
            leg.events = st1["events_total"] - st0["events_total"]
            leg.kernel_events = st1.get("kernel_events", 0) - st0.get("kernel_events", 0)
            leg.overflows = st1.get("overflows", 0) - st0.get("overflows", 0)
            ev = incident_evidence(d.home)
            leg.incidents = [e["summary"] for e in ev]
            if ev and keep_evidence is not None:
                keep_evidence.parent.mkdir(parents=True, exist_ok=True)
                keep_evidence.write_text(json.dumps([e["show"] for e in ev], indent=1, default=str))
        return leg
    finally:
        if d is not None:
            d.stop()
