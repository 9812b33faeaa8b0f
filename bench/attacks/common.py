"""Shared helpers of the attack benchmark (bench/attacks/run.py).

Nothing here changes nocry: the daemon and the drills are run exactly as a user runs them
(``.venv/bin/nocry --home H protect TREE``, ``.venv/bin/nocry drill run ...``). Everything started
here is tracked by pid (daemons, attacker processes, quarantine cgroups of our daemons) so that it
can be stopped, killed or removed by id, never by name.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import blake3

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv"
PY = str(VENV / "bin" / "python")
NOCRY = str(VENV / "bin" / "nocry")
RESULTS = REPO / "bench" / "results"
DOCS = REPO / "docs" / "benchmarks.md"
#: how commands are shown (relative to the repository, as a user types them)
NC = ".venv/bin/nocry"
MARKER = ".nocry-drill"
STATE_DIR = ".nocry-drill.d"

# every daemon we started: home -> pid (stopped at exit); every quarantine cgroup of ours
LIVE_HOMES: dict[str, int] = {}
OUR_DAEMON_PIDS: set[int] = set()
OUR_CGROUPS: set[str] = set()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def shjoin(argv: Sequence[Any]) -> str:
    return shlex.join(str(a) for a in argv)


def run(argv: Sequence[Any], *, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    argv = [str(a) for a in argv]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, errors="replace")
    if check and p.returncode != 0:
        raise RuntimeError(f"command failed ({p.returncode}): {shjoin(argv)}\n{p.stderr[-3000:]}{p.stdout[-1000:]}")
    return p


def nocry(home: str | Path | None, *args: Any, json_out: bool = True, check: bool = True, timeout: float = 900,
          ok: tuple[int, ...] = (0,)) -> Any:
    """Run the nocry CLI; the parsed JSON document (or the CompletedProcess when json_out=False)."""
    argv = [NOCRY] + (["--home", str(home)] if home is not None else []) + (["--json"] if json_out else []) + [str(a) for a in args]
    p = run(argv, check=False, timeout=timeout)
    if check and p.returncode not in ok:
        raise RuntimeError(f"command failed ({p.returncode}): {shjoin(argv)}\n{p.stderr[-3000:]}{p.stdout[-1000:]}")
    if not json_out:
        return p
    try:
        return json.loads(p.stdout)
    except ValueError:
        if check:
            raise RuntimeError(f"no JSON from {shjoin(argv)} (exit {p.returncode}): {p.stdout[-1000:]} {p.stderr[-2000:]}") from None
        return None


def median(xs: Sequence[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def worst(xs: Sequence[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return max(xs) if xs else None


# --------------------------------------------------------------------------------------------
# machine


def fs_type(path: str | Path) -> str:
    p = run(["findmnt", "-n", "-o", "FSTYPE", "-T", str(path)], check=False)
    return p.stdout.strip().splitlines()[0] if p.stdout.strip() else "?"


def machine(work_dir: str | Path) -> dict[str, Any]:
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    git = run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"], check=False).stdout.strip()
    dirty = bool(run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"], check=False).stdout.strip())
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kib / (1 << 20), 1),
        "kernel": platform.release(),
        "fs": fs_type(work_dir),
        "python": platform.python_version(),
        "nocry": run([NOCRY, "--version"], check=False).stdout.strip(),
        "git_head": git,
        "src_dirty": dirty,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
    }


class CpuSampler:
    """Machine-wide CPU busy fraction between start() and stop() (/proc/stat): how noisy the
    neighbours were while an attack ran."""

    @staticmethod
    def _read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
        idle = vals[3] + vals[4]  # idle + iowait
        return sum(vals), idle

    def start(self) -> None:
        self.t0 = self._read()

    def stop(self) -> float | None:
        tot, idle = self._read()
        dt = tot - self.t0[0]
        return round(1 - (idle - self.t0[1]) / dt, 3) if dt > 0 else None


def loadavg() -> list[str]:
    return open("/proc/loadavg").read().split()[:3]


# --------------------------------------------------------------------------------------------
# which nocry is measured (as bench/core: --src worktree | head | REV | DIR)


def src_state() -> dict[str, Any]:
    """HEAD and a digest of the uncommitted changes under src/: compared at the start and the end
    of a run, it tells whether the worktree code changed while it was measured."""
    head = run(["git", "-C", str(REPO), "rev-parse", "HEAD"], check=False).stdout.strip()
    diff = run(["git", "-C", str(REPO), "diff", "HEAD", "--", "src"], check=False).stdout
    untracked = run(["git", "-C", str(REPO), "ls-files", "--others", "--exclude-standard", "--", "src"], check=False).stdout
    return {"head": head, "src_dirty": bool(diff.strip() or untracked.strip()),
            "src_digest": blake3.blake3((diff + untracked).encode()).hexdigest()[:16]}


def setup_code(src: str, dest: Path) -> dict[str, Any]:
    """Point every nocry process of the benchmark (CLI, daemons, drill workers) at the code to measure.

    ``worktree``: the editable install of src/ that ``.venv/bin/nocry`` runs, uncommitted changes
    included (and whatever is edited while the benchmark runs). ``head`` or any git REV: ``git
    archive REV src`` into DEST, first on PYTHONPATH (daemons and drill workers inherit it), so the
    figures belong to one commit. A directory: that ``src`` directory."""
    info: dict[str, Any] = {"requested": src, **src_state()}
    if src == "worktree":
        os.environ.pop("PYTHONPATH", None)
        info["source"] = "worktree (editable install of src/)"
    elif os.path.isdir(src):
        os.environ["PYTHONPATH"] = str(Path(src).resolve())
        info["source"] = f"directory {Path(src).resolve()}"
    else:
        rev = "HEAD" if src == "head" else src
        sha = run(["git", "-C", str(REPO), "rev-parse", "--verify", rev + "^{commit}"]).stdout.strip()
        subject = run(["git", "-C", str(REPO), "log", "-1", "--format=%s", sha]).stdout.strip()
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", sha, "src"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        os.environ["PYTHONPATH"] = str(dest / "src")
        info.update(source=f"git archive {sha[:7]} ({subject[:70]})", sha=sha)
    info["nocry_module"] = run([PY, "-c", "import nocry; print(nocry.__file__)"]).stdout.strip()
    if src != "worktree" and not info["nocry_module"].startswith(os.environ["PYTHONPATH"]):
        raise SystemExit(f"--src {src}: nocry still imports from {info['nocry_module']}")
    log(f"code under test: {info['source']} -> {info['nocry_module']}")
    return info


# --------------------------------------------------------------------------------------------
# trees


def marker_hashes(tree: Path) -> dict[str, str]:
    marker = json.loads((tree / MARKER).read_text())
    return {f["path"]: f["blake3"] for f in marker["files"]}


def bookkeeping(rel: str) -> bool:
    return rel.startswith(MARKER)  # .nocry-drill, .nocry-drill.tmp, .nocry-drill.d/...


def disk_files(tree: Path) -> list[str]:
    """Regular files under tree (relative paths), symlinks not followed."""
    out = []
    for dp, dn, fn in os.walk(tree):
        for name in fn:
            p = os.path.join(dp, name)
            out.append(os.path.relpath(p, tree))
    return out


def compare_tree(tree: Path, want: dict[str, str]) -> dict[str, Any]:
    """Every generated file against its BLAKE3 in the marker; files that are not ours left over."""
    have = set(disk_files(tree))
    ok, changed, missing = 0, [], []
    for rel, h in want.items():
        p = tree / rel
        if rel not in have or not p.is_file() or p.is_symlink():
            missing.append(rel)
            continue
        with open(p, "rb") as f:
            got = blake3.blake3(f.read(), max_threads=blake3.blake3.AUTO).hexdigest()
        if got == h:
            ok += 1
        else:
            changed.append(rel)
    extra = sorted(r for r in have - set(want) if not r.startswith("!") and not bookkeeping(r))
    return {"files": len(want), "ok": ok, "changed": sorted(changed), "missing": sorted(missing), "lost": len(changed) + len(missing),
            "leftover": extra}


def rmtree(p: str | Path) -> None:
    if os.path.lexists(p):
        run(["rm", "-rf", "--one-file-system", str(p)])


# --------------------------------------------------------------------------------------------
# processes


def proc_start(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def alive(pid: int, start: int | None) -> bool:
    st = proc_start(pid)
    return st is not None and (start is None or st == start)


def cgroup_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        return None
    return None


def kill_pid(pid: int, start: int | None) -> bool:
    """SIGKILL one process of ours, only if it is still the same process (start time)."""
    if not alive(pid, start):
        return False
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if start is not None and proc_start(pid) != start:
            return False
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# daemons


def daemon_pid(home: Path) -> int | None:
    try:
        st = json.loads((home / "run" / "status.json").read_text())
    except (OSError, ValueError):
        return None
    return int(st["pid"]) if st.get("pid") else None


def start_daemon(home: Path, tree: Path) -> tuple[int, float]:
    t0 = time.monotonic()
    nocry(home, "protect", tree, json_out=False, timeout=600)
    seconds = time.monotonic() - t0
    pid = daemon_pid(home)
    if pid is None:
        raise RuntimeError(f"daemon of {home} has no pid in run/status.json")
    LIVE_HOMES[str(home)] = pid
    OUR_DAEMON_PIDS.add(pid)
    return pid, seconds


def stop_daemon(home: Path | str) -> None:
    pid = LIVE_HOMES.pop(str(home), None)
    p = nocry(home, "stop", json_out=False, check=False, timeout=120)
    if pid is None:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and alive(pid, None) and _is_our_daemon(pid, home):
        time.sleep(0.05)
    if alive(pid, None) and _is_our_daemon(pid, home):
        log(f"daemon {pid} of {home} did not stop ({p.returncode}: {p.stderr.strip()[-300:]}); SIGKILL")
        kill_pid(pid, proc_start(pid))


def _is_our_daemon(pid: int, home: Path | str) -> bool:
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        return False
    return os.fsencode(str(home)) in cmd


def cleanup_daemons() -> None:
    for home in list(LIVE_HOMES):
        try:
            stop_daemon(home)
        except Exception as exc:  # noqa: BLE001 - cleanup goes on
            log(f"stop {home}: {exc}")


# --------------------------------------------------------------------------------------------
# quarantine cgroups


def cgroup2_root() -> Path | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            if parts[sep + 1] == "cgroup2":
                return Path(parts[4])
    return None


def our_leftover_cgroups() -> list[Path]:
    """Quarantine cgroups made by one of our daemons (incident-<id>-<daemon pid>-<ns>) or recorded in
    one of our incidents, that still exist."""
    root = cgroup2_root()
    out: set[Path] = {Path(c) for c in OUR_CGROUPS if os.path.isdir(c)}
    q = root / "nocry-quarantine" if root else None
    if q and q.is_dir():
        for d in q.iterdir():
            parts = d.name.split("-")
            if d.is_dir() and len(parts) >= 4 and parts[0] == "incident" and parts[2].isdigit() and int(parts[2]) in OUR_DAEMON_PIDS:
                out.add(d)
    return sorted(out)


def remove_cgroup(cg: Path) -> str:
    """cgroup.kill, thaw (so the kill is delivered), rmdir."""
    for name, val in (("cgroup.kill", "1"), ("cgroup.freeze", "0")):
        try:
            (cg / name).write_text(val)
        except OSError:
            pass
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            cg.rmdir()
            return "removed"
        except FileNotFoundError:
            return "gone"
        except OSError:
            time.sleep(0.02)
    return "still there"


def cleanup_cgroups() -> list[dict[str, str]]:
    out = []
    for cg in our_leftover_cgroups():
        out.append({"cgroup": str(cg), "result": remove_cgroup(cg)})
    return out
