"""Scale benchmark: nocry on a tree of 1,000,000 small files, and a burst of file operations.

    sudo .venv/bin/python bench/scale/run.py --isolate --src head   # full: 1,000,000 files (12-18 min here)
    sudo .venv/bin/python bench/scale/run.py --isolate --quick      # 50,000 files, 2 s burst (~3 min)
    sudo .venv/bin/python bench/scale/run.py --files 200000 --isolate --src head
    sudo .venv/bin/python bench/scale/run.py --render-only          # docs from bench/results/scale.json

What it measures (goals of the issue in brackets):

1. tree: ``--files`` small files (100 B - 4 KiB, log-uniform; ~200 per directory, three levels;
   text, source, documents, 10 % random binaries; every file unique), written by bench/scale/gen.py.
2. baseline: ``nocry protect TREE`` with a fresh home, timed until it returns (the baseline is in
   the vault then); the daemon's memory from /proc/PID/status sampled every 0.2 s: peak = VmHWM
   when protect returns, steady = VmRSS (median of samples) over ``--steady`` seconds of idling
   after ``nocry sync`` [RSS <= 300 MB]; the vault: ``du -sb HOME/vault`` and ``nocry vault stats``.
3. rescan after restart: ``nocry stop``, then ``nocry protect TREE`` again on the same home and the
   unchanged tree, timed until it returns; ``last_scan[].seconds`` from ``nocry --json status``
   (the walk + reconciliation itself); the new daemon's VmHWM and steady VmRSS; ``--runs`` times,
   median [rescan <= 60 s].
4. burst: ``--writers`` processes (a C program when a compiler is there, else Python) in
   TREE/burst-N doing create / overwrite / rename / unlink of small files (1:1:1:1, each counted as
   one operation) for ``--burst-seconds``, as fast as they can (or paced with ``--rate``) [target
   100,000 ops/s]; the same burst once with nocry not running (the machine's own ceiling). Then
   ``nocry sync``; overflows, rescans and events from ``nocry --json status`` (before/after), the
   daemon's RSS during the burst; and the check that nothing was missed (bench/scale/burst.py):
   every file on disk is in the vault with its final content (BLAKE3 of the disk == the hash of the
   vault's newest version, from ``nocry --json restore DIR --at T --dry-run``), every path that
   disappeared is absent from the vault's state (tombstone, or never captured), a sample of them
   looked up with ``nocry --json versions PATH``. ``--runs`` bursts, each in a fresh directory;
   then (``--stall``, default 1 s) bursts during whose first second the daemon is stopped with
   SIGSTOP, so that the kernel's event queue overflows: the overflow -> rescan path, same check.

5. bursts on tmpfs (``--tmpfs-bursts``, default 3; --quick 1; 0: none): this VM's ext4 takes only
   ~55,000 of these operations/s with nobody watching, so the same writers also run in a tree on a
   tmpfs of their own (which takes several hundred thousand), protected by a second daemon whose
   home is on the benchmark's ext4: the burst with nocry not running, ``--tmpfs-bursts`` bursts
   with nocry protecting, and one during which the daemon is stopped for the whole burst (every
   event past the kernel's queue is lost at full speed). Same figures and the same check as in 4
   [100,000 ops/s, no overflow or overflow handled with nothing missed].

Protect runs with ``--mode observe`` by default (``--mode``): a burst of renames and unlinks is
exactly what the detector is for, and in enforce mode it may freeze the writers; observe keeps the
detector running (its cost is measured) without stopping them.

``--isolate`` (recommended; how docs/benchmarks.md was made): everything on a fresh ext4 of its
own (a sparse image file under ``--tmp`` on a loop device, direct I/O, inodes for the tree), so
1,000,000 files never touch the root filesystem and no other fanotify group sees the workload.
Everything is removed at the end (daemons stopped with ``nocry stop``, unmounted, image deleted).

Results: bench/results/scale.json (``--quick``: scale.quick.json). A full run rewrites the block
between the ``scale-bench`` markers of docs/benchmarks.md (under "## Scale", created if missing);
a quick run only prints, unless ``--docs``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "core"))
sys.path.insert(0, str(HERE))

import common  # noqa: E402
from common import (PY, REPO, RESULTS, Daemon, Work, du_bytes, flush_disk, fmt_value, fs_source, fs_type,  # noqa: E402
                    kill_under, log, machine, nocry_argv, proc_cpu_s, rmtree, run, settle, setup_code, shjoin,
                    vault_sizes, write_docs_block)

import burst  # noqa: E402
import gen  # noqa: E402

DOC = REPO / "docs" / "benchmarks.md"
BEGIN = "<!-- scale-bench:begin -->"
END = "<!-- scale-bench:end -->"
HEADING = "## Scale"
RSS_GOAL_MB = 300
RESCAN_GOAL_S = 60
BURST_TARGET = 100_000
INTRO = f"""{HEADING}

nocry on a tree of 1,000,000 small files (baseline time, daemon memory, vault size, rescan after a
restart) and under a burst of small-file operations (overflows, and whether anything was missed).
Goals: daemon RSS <= {RSS_GOAL_MB} MB, rescan <= {RESCAN_GOAL_S} s, a burst of {BURST_TARGET:,} operations/s with nothing
missed. Method and options: `bench/scale/run.py --help`; raw values: `bench/results/scale.json`.
"""


# --------------------------------------------------------------------------------------------
# the daemon's memory, sampled from /proc/PID/status
# --------------------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "VmSize", "Threads"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def kernel_unreclaimable_kib() -> int:
    """``SUnreclaim`` of /proc/meminfo: the kernel's slab memory that cannot be reclaimed, where
    queued fanotify events live (and, on tmpfs, the burst's inodes)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("SUnreclaim:"):
                return int(line.split()[1])
    return 0


class MemSampler(threading.Thread):
    """Every ``every`` s: VmRSS / VmHWM (KiB) of the daemon of ``home`` (found by its command line),
    and the kernel's unreclaimable slab memory."""

    def __init__(self, every: float = 0.2):
        super().__init__(daemon=True)
        self.every = every
        self.home: str | None = None
        self.pid: int | None = None
        self.samples: list[tuple[float, int, int, int]] = []  # (monotonic, pid, rss_kib, hwm_kib)
        self.hwm: dict[int, int] = {}
        self.slab: list[tuple[float, int]] = []  # (monotonic, SUnreclaim KiB)
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def watch(self, home: str | Path) -> None:
        with self._lock:
            self.home = str(home)
            self.pid = None

    def run(self) -> None:
        while not self._halt.wait(self.every):
            self.slab.append((time.monotonic(), kernel_unreclaimable_kib()))
            with self._lock:
                home, pid = self.home, self.pid
            if home is None:
                continue
            if pid is None or not os.path.exists(f"/proc/{pid}"):
                pid = daemon_pid(home)
                with self._lock:
                    self.pid = pid
            if pid is None:
                continue
            st = proc_status(pid)
            if "VmRSS" not in st:
                continue
            self.samples.append((time.monotonic(), pid, st["VmRSS"], st.get("VmHWM", 0)))
            self.hwm[pid] = max(self.hwm.get(pid, 0), st.get("VmHWM", 0))

    def stop(self) -> None:
        self._halt.set()

    def slab_rise_mb(self, t0: float, t1: float) -> float | None:
        """How far the kernel's unreclaimable memory rose above its level at ``t0`` (MB)."""
        xs = [kib for t, kib in self.slab if t0 <= t <= t1]
        return mb(max(xs) - xs[0]) if xs else None

    def window(self, t0: float, t1: float, pid: int | None = None) -> list[int]:
        return [s[2] for s in self.samples if t0 <= s[0] <= t1 and (pid is None or s[1] == pid)]

    def timeline(self, t0: float, t1: float, step: float = 2.0) -> list[tuple[float, int]]:
        """(seconds since t0, RSS MiB) every ``step`` s (for the JSON)."""
        out: list[tuple[float, int]] = []
        last = -1e9
        for t, _pid, rss, _hwm in self.samples:
            if t0 <= t <= t1 and t - last >= step:
                out.append((round(t - t0, 1), round(rss / 1024)))
                last = t
        return out


def daemon_pid(home: str | Path) -> int | None:
    """The daemon of ``home`` (``python -m nocry --home H protect --foreground``), not the
    ``nocry protect`` command that spawned it and waits for its baseline."""
    for pid in common._daemon_pids(home):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"--foreground" in f.read().split(b"\0"):
                    return pid
        except OSError:
            continue
    return None


def mb(kib: float) -> float:
    """KiB -> MB (10^6 bytes, as the goal is stated)."""
    return round(kib * 1024 / 1e6, 1)


def memory_now(pid: int) -> dict[str, float]:
    st = proc_status(pid)
    return {"rss_mb": mb(st.get("VmRSS", 0)), "hwm_mb": mb(st.get("VmHWM", 0)), "anon_mb": mb(st.get("RssAnon", 0)),
            "threads": st.get("Threads", 0)}


def steady_rss(sampler: MemSampler, pid: int, seconds: float) -> dict[str, Any]:
    """Idle for ``seconds`` (after a sync); the median VmRSS over that window."""
    t0 = time.monotonic()
    time.sleep(seconds)
    xs = sampler.window(t0, time.monotonic(), pid)
    st = memory_now(pid)
    return {"rss_mb": mb(statistics.median(xs)) if xs else st["rss_mb"], "samples": len(xs), "window_s": seconds,
            "hwm_mb": st["hwm_mb"], "anon_mb": st["anon_mb"], "threads": st["threads"]}


# --------------------------------------------------------------------------------------------
# optional profiling (py-spy, if installed in the venv)
# --------------------------------------------------------------------------------------------


class Profile:
    """``py-spy record -f raw`` of the daemon of ``home`` from start() to stop() (folded stacks)."""

    def __init__(self, enabled: bool, out: Path, home: Path, sampler: MemSampler):
        self.enabled = enabled and os.path.exists(str(common.VENV / "bin" / "py-spy"))
        self.out, self.home, self.sampler = out, home, sampler
        self.proc: subprocess.Popen | None = None
        self._t: threading.Thread | None = None

    def start(self) -> "Profile":
        if not self.enabled:
            return self

        def attach() -> None:  # the daemon's pid appears once protect has spawned it
            for _ in range(600):
                pid = daemon_pid(self.home)
                if pid:
                    self.proc = subprocess.Popen([str(common.VENV / "bin" / "py-spy"), "record", "-p", str(pid), "-f", "raw",
                                                  "-r", "50", "--nonblocking", "-o", str(self.out)],
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    return
                time.sleep(0.05)

        self._t = threading.Thread(target=attach, daemon=True)
        self._t.start()
        return self

    def stop(self) -> str | None:
        if not self.enabled:
            return None
        if self._t:
            self._t.join(5)
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return str(self.out) if self.out.exists() else None


def top_frames(folded: str | None, n: int = 12) -> list[tuple[str, float]]:
    """Share of samples per leaf-most nocry frame (where the time goes), from py-spy raw output."""
    if not folded or not os.path.exists(folded):
        return []
    counts: dict[str, int] = {}
    total = 0
    for line in open(folded):
        stack, _, k = line.rstrip().rpartition(" ")
        if not k.isdigit():
            continue
        total += int(k)
        frames = stack.split(";")
        pick = next((f for f in reversed(frames) if "nocry" in f), frames[-1])
        counts[pick] = counts.get(pick, 0) + int(k)
    return [(f, round(100 * c / max(1, total), 1)) for f, c in sorted(counts.items(), key=lambda kv: -kv[1])[:n]]


# --------------------------------------------------------------------------------------------
# the isolated filesystem
# --------------------------------------------------------------------------------------------


def make_fs(parent: Path, size_gib: int, inodes: int) -> tuple[Path, str]:
    """bench/core's isolated ext4, with enough inodes for the tree."""
    return common.make_isolated(parent, size_gib, inodes=inodes)


def unmount_fs(mnt: Path, dev: str) -> bool:
    return common.unmount_isolated(mnt, dev, tries=30)


# --------------------------------------------------------------------------------------------
# phases
# --------------------------------------------------------------------------------------------


def status(home: Path) -> dict[str, Any]:
    return common.nocry(home, "status", json_out=True, check=False)


def scan_info(st: dict[str, Any]) -> dict[str, Any]:
    scans = st.get("last_scan") or []
    return {"seconds": round(sum(s.get("seconds", 0) for s in scans), 2),
            "seen": sum(s.get("seen", 0) for s in scans), "stored": sum(s.get("stored", 0) for s in scans),
            "tombstoned": sum(s.get("tombstoned", 0) for s in scans), "unreadable": sum(s.get("unreadable", 0) for s in scans),
            "reason": ",".join(sorted({s.get("reason", "?") for s in scans}))}


COUNTERS = ("events_total", "kernel_events", "overflows", "rescans", "versions_stored", "tombstones_stored", "unreadable",
            "detection_errors", "pending", "queued")


def counters(st: dict[str, Any]) -> dict[str, Any]:
    out = {k: st.get(k) for k in COUNTERS}
    det = st.get("detection") or {}
    out["verdicts"] = det.get("verdicts")
    out["open_incidents"] = len(det.get("open_incidents") or [])
    return out


def start_daemon(home: Path, tree: Path, sampler: MemSampler, prof: Profile) -> tuple[Daemon, dict[str, Any]]:
    """``nocry protect TREE``, timed until it returns; memory and scan figures of the start."""
    sampler.watch(home)
    prof.start()
    rec: dict[str, Any] = {"settle": settle()}
    t0m = time.monotonic()
    d = Daemon(home, tree)
    d.start()
    t1m = time.monotonic()
    assert d.pid is not None
    st = status(home)
    rec["protect_s"] = round(d.protect_s or 0.0, 2)
    rec["scan"] = scan_info(st)
    rec["cpu_s"] = round(proc_cpu_s(d.pid), 1)
    rec["at_return"] = memory_now(d.pid)
    xs = sampler.window(t0m, t1m, d.pid)
    rec["rss_max_sampled_mb"] = mb(max(xs)) if xs else None
    rec["peak_mb"] = rec["at_return"]["hwm_mb"]  # VmHWM: the high-water mark since the daemon started
    rec["rss_timeline_mib"] = sampler.timeline(t0m, t1m, step=max(1.0, (t1m - t0m) / 60))
    rec["profile"] = prof.stop()
    rec["profile_top"] = top_frames(rec["profile"])
    rec["counters"] = counters(st)
    return d, rec


#: daemons held with SIGSTOP (a stalled burst); continued in any case at the end
STOPPED: set[int] = set()


def burst_leg(work: Path, tree: Path | None, home: Path | None, d: Daemon | None, args: argparse.Namespace, exe: Path | None,
              idx: int, sampler: MemSampler, stall: float = 0.0) -> dict[str, Any]:
    """One burst: ``--writers`` processes in DIR (inside the protected tree when a daemon runs).
    ``stall``: the daemon is stopped (SIGSTOP) for that long from the start of the burst, so the
    kernel's event queue (16,384 events by default) overflows: the overflow -> rescan path."""
    on = d is not None
    base = (tree if on else work) / f"burst-{idx}{'' if on else '-off'}{'-stall' if stall else ''}"
    base.mkdir(parents=True)
    gone_dir = work / f"gone-{idx}{'' if on else '-off'}"
    gone_dir.mkdir()
    per_writer_rate = args.rate / args.writers if args.rate else 0
    procs = []
    for w in range(args.writers):
        tag = f"w{w}"
        gone = gone_dir / f"{tag}.gone"
        if exe:
            argv = [str(exe), str(base / tag), str(args.burst_seconds), str(per_writer_rate), str(args.pool), tag, "-1", str(gone)]
        else:
            argv = [PY, str(HERE / "burst.py"), str(base / tag), "--seconds", str(args.burst_seconds), "--rate", str(per_writer_rate),
                    "--pool", str(args.pool), "--tag", tag, "--start-at", "-1", "--gone-out", str(gone)]
        procs.append(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    for p in procs:
        line = p.stdout.readline().strip() if p.stdout else ""
        if line != "ready":
            raise RuntimeError(f"burst writer did not start: {line!r}")
    rec: dict[str, Any] = {"dir": str(base), "nocry": on, "stall_s": stall}
    before = {}
    if on:
        assert home is not None
        d.sync()  # the pools are in the vault; the daemon is idle
        before = status(home)
        rec["rss_before_mb"] = memory_now(d.pid)["rss_mb"]
        c0 = proc_cpu_s(d.pid)
    flush_disk()
    rec["settle"] = settle()
    t0m = time.monotonic()
    t0 = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    if stall and d is not None and d.pid:
        STOPPED.add(d.pid)
        os.kill(d.pid, signal.SIGSTOP)
        try:
            time.sleep(stall)
        finally:
            os.kill(d.pid, signal.SIGCONT)
            STOPPED.discard(d.pid)
    writers = []
    for p in procs:
        out, _ = p.communicate(timeout=args.burst_seconds * 20 + 600)
        if p.returncode != 0:
            raise RuntimeError(f"burst writer failed ({p.returncode}): {out[-500:]}")
        writers.append(json.loads(out.strip().splitlines()[-1]))
    t1 = time.perf_counter()
    ops = sum(w["ops"] for w in writers)
    wall = max(w["seconds"] for w in writers)
    rec.update(writers=writers, ops=ops, syscalls=sum(w["syscalls"] for w in writers), wall_s=round(wall, 3),
               ops_per_s=round(ops / wall), syscalls_per_s=round(sum(w["syscalls"] for w in writers) / wall),
               writers_done_s=round(t1 - t0, 3))
    log(f"burst {idx} ({'nocry on' if on else 'nocry off'}{f', daemon stalled {stall:g} s' if stall else ''}): {ops:,} ops in {wall:.2f} s = {ops / wall:,.0f} ops/s "
        f"({args.writers} {writers[0].get('writer', '?')} writers)")
    if not on:
        rmtree(base)
        rmtree(gone_dir)
        return rec
    assert home is not None
    t2 = time.perf_counter()
    d.sync(timeout=3600)
    t3 = time.perf_counter()
    t3m = time.monotonic()
    after = status(home)
    rec["sync_after_s"] = round(t3 - t2, 2)
    rec["until_in_vault_s"] = round(t3 - t0, 2)
    rec["cpu_s"] = round(proc_cpu_s(d.pid) - c0, 1)
    xs = sampler.window(t0m, t3m, d.pid)
    rec["rss_max_mb"] = mb(max(xs)) if xs else None
    rec["hwm_after_mb"] = memory_now(d.pid)["hwm_mb"]
    rec["kernel_slab_rise_mb"] = sampler.slab_rise_mb(t0m, t3m)
    b, a = counters(before), counters(after)
    rec["delta"] = {k: (a[k] - b[k]) if isinstance(a.get(k), int) and isinstance(b.get(k), int) else a.get(k) for k in a}
    rec["overflows"] = rec["delta"]["overflows"]
    rec["rescans"] = rec["delta"]["rescans"]
    rec["last_scan_after"] = scan_info(after) if rec["rescans"] else None
    bl_a, bl_b = after.get("backlog") or {}, before.get("backlog") or {}
    # the daemon's queue of events not yet handled: its highest level so far, and how often the
    # reader waited for room (then the kernel queue overflows: a rescan)
    rec["backlog_peak"] = bl_a.get("peak")
    rec["reader_waits"] = (bl_a.get("reader_waits") or 0) - (bl_b.get("reader_waits") or 0) if bl_a else None
    rec["status_after"] = {k: after.get(k) for k in ("last_error", "capture_paused", "state")}
    at = time.time()
    gone_files = sorted(str(p) for p in gone_dir.glob("*.gone"))
    t4 = time.perf_counter()
    rec["check"] = burst.check_nothing_missed(nocry_argv, str(home), str(base), gone_files, at, sample=args.sample)
    rec["check_s"] = round(time.perf_counter() - t4, 1)
    c = rec["check"]
    log(f"burst {idx}: sync {rec['sync_after_s']} s after the writers, overflows {rec['overflows']}, rescans {rec['rescans']}, "
        f"nothing missed: {'YES' if c['ok'] else 'NO'} ({c['files_ok']}/{c['files_on_disk']} files with their final content, "
        f"missing {c['missing']}, stale {c['stale']}, gone but live in the vault {c['gone_still_live_in_vault']}; "
        f"sample of {sum(c['gone_sample'].values())} gone paths: {c['gone_sample']})")
    rmtree(gone_dir)
    return rec


def tmpfs_bursts(ram: Path, disk: Path, args: argparse.Namespace, exe: Path | None, sampler: MemSampler) -> dict[str, Any]:
    """Phase 5: the bursts in a tree on a tmpfs mounted at RAM (the daemon's home on DISK): with
    nocry not running, ``--tmpfs-bursts`` times with nocry protecting, and once with the daemon
    stopped for the whole burst. The tmpfs is unmounted at the end."""
    ram.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=4g,mode=0755", "nocry-scale-ram", str(ram)])
    try:
        work = ram / "work"
        work.mkdir()
        out: dict[str, Any] = {"fs": fs_type(work), "mount": "tmpfs, size=4g"}
        out["off"] = [burst_leg(work, None, None, None, args, exe, i, sampler) for i in range(1 if args.quick else 2)]
        tree = work / "tree"
        tree.mkdir()
        home = disk / "home-tmpfs"
        d = Daemon(home, tree)
        sampler.watch(home)
        d.start()
        try:
            out["on"] = [burst_leg(work, tree, home, d, args, exe, i, sampler) for i in range(args.tmpfs_bursts)]
            out["stalled"] = [burst_leg(work, tree, home, d, args, exe, args.tmpfs_bursts, sampler, stall=args.burst_seconds)]
            out["final_memory"] = memory_now(d.pid)
        finally:
            d.stop()
        return out
    finally:
        kill_under(ram)
        run(["umount", str(ram)], check=False)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def command_line() -> str:
    """The command as it was typed (relative to the repository)."""
    return "sudo " + shjoin([".venv/bin/python", "bench/scale/run.py", *sys.argv[1:]])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=None, help="files in the tree (default 1,000,000; --quick 50,000)")
    ap.add_argument("--quick", action="store_true", help="50,000 files, one 2 s burst, 1 rescan; docs untouched")
    ap.add_argument("--isolate", action="store_true", help="a fresh ext4 of its own on a loop device (recommended)")
    ap.add_argument("--runs", type=int, default=None, help="rescans after restart, and bursts (default 3; --quick 1)")
    ap.add_argument("--burst-seconds", type=float, default=None, help="length of a burst (default 5; --quick 2)")
    ap.add_argument("--writers", type=int, default=4, help="writer processes of a burst (default 4)")
    ap.add_argument("--rate", type=float, default=0.0, help="pace the burst to this many ops/s in total (default 0: as fast as possible)")
    ap.add_argument("--pool", type=int, default=2000, help="live files per writer (default 2000)")
    ap.add_argument("--stall", type=float, default=1.0,
                    help="also run bursts with the daemon stopped (SIGSTOP) for this many seconds at their start, to force a "
                         "queue overflow and the rescan it triggers (default 1; 0: no such burst)")
    ap.add_argument("--tmpfs-bursts", type=int, default=None,
                    help="bursts in a tree on a tmpfs of its own, where the writers can reach 100,000 ops/s (default 3; --quick 1; "
                         "0: none)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a config.toml setting for every daemon of the run (repeatable), e.g. --set sensor.unlimited_queue=true")
    ap.add_argument("--python-writers", action="store_true", help="Python writers even when a C compiler is there")
    ap.add_argument("--sample", type=int, default=40, help="paths that disappeared looked up with `nocry versions` per burst")
    ap.add_argument("--steady", type=float, default=None, help="idle seconds over which steady RSS is taken (default 10; --quick 3)")
    ap.add_argument("--mode", choices=("observe", "enforce"), default="observe", help="--mode of `nocry protect` (default observe)")
    ap.add_argument("--src", default="worktree", help="code to measure: worktree (default), head or a git REV (git archive), or a src DIR")
    ap.add_argument("--tmp", default="/var/tmp", help="parent of the work dir (a disk filesystem)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (and the image: unmounted)")
    ap.add_argument("--profile", action="store_true", help="py-spy (if in .venv) records the daemon during baseline, rescan and burst")
    ap.add_argument("--settle", type=float, default=None, help="wait at most this long for an idle machine before timed legs (3; --quick 1)")
    ap.add_argument("--docs", action="store_true", help="also rewrite docs/benchmarks.md after a --quick run")
    ap.add_argument("--no-docs", action="store_true", help="never touch docs/benchmarks.md")
    ap.add_argument("--render-only", action="store_true", help="run nothing: render bench/results/scale.json into the docs")
    args = ap.parse_args()
    if args.files is None:
        args.files = 50_000 if args.quick else 1_000_000
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.burst_seconds is None:
        args.burst_seconds = 2.0 if args.quick else 5.0
    if args.steady is None:
        args.steady = 3.0 if args.quick else 10.0
    if args.tmpfs_bursts is None:
        args.tmpfs_bursts = 1 if args.quick else 3
    out_path = RESULTS / f"scale{'.quick' if args.quick else ''}.json"
    if args.render_only:
        res = json.loads((RESULTS / "scale.json").read_text())
        res["summary"] = summarise(res)
        write_docs(render_markdown(res))
        log(f"refreshed {DOC}")
        return 0
    if os.geteuid() != 0:
        print("the scale benchmark needs root (fanotify filesystem marks)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, common._on_signal)
    signal.signal(signal.SIGINT, common._on_signal)
    t_start = time.perf_counter()
    top = Path(tempfile.mkdtemp(prefix="nocry-scale-", dir=args.tmp))
    loop: tuple[Path, str] | None = None
    ram: Path | None = None
    sampler = MemSampler()
    sampler.start()
    result: dict[str, Any] = {"module": "scale", "quick": args.quick, "command": command_line()}
    rc = 0
    try:
        if args.isolate:
            size_gib = max(6, -(-args.files * 24 * 1024 // (1 << 30)) + 4)
            loop = make_fs(top, size_gib, inodes=args.files * 2 + 200_000)
            root = loop[0] / "work"
        else:
            root = top / "work"
        root.mkdir()
        if fs_type(root) in ("tmpfs", "ramfs"):
            raise SystemExit(f"{root} is on tmpfs: use --tmp on a disk filesystem")
        common.WORK_ROOT = root
        common.PROTECT_MODE = args.mode
        common.DAEMON_CONFIG = common.config_toml(args.set, common.NOCRY)
        common.SETTLE_MAX_S = args.settle if args.settle is not None else (1.0 if args.quick else 3.0)
        code = setup_code(args, Work(top, keep=True, owned=True))
        result["code"] = code
        result["machine"] = machine(root)
        result["machine"]["fs_source"] = fs_source(root)
        result["params"] = {k: getattr(args, k) for k in ("files", "runs", "burst_seconds", "writers", "rate", "pool", "mode",
                                                          "steady", "isolate", "sample", "stall", "tmpfs_bursts", "set")}
        result["goals"] = {"rss_mb": RSS_GOAL_MB, "rescan_s": RESCAN_GOAL_S, "burst_ops_per_s": BURST_TARGET}
        tree = root / "tree"
        home = root / "home"
        prof_dir = RESULTS / "scale-profiles"
        if args.profile:
            prof_dir.mkdir(parents=True, exist_ok=True)

        def prof(name: str) -> Profile:
            return Profile(args.profile, prof_dir / f"{name}{'.quick' if args.quick else ''}.txt", home, sampler)

        # 1. the tree
        log(f"generating {args.files:,} files in {tree} ...")
        meta = gen.generate(tree, args.files, seed=1, procs=4)
        t0 = time.perf_counter()
        flush_disk()
        meta["sync_s"] = round(time.perf_counter() - t0, 1)
        meta["du_sb"] = du_bytes(tree)
        meta["fs_used_bytes"] = int(run(["df", "-B1", "--output=used", str(root)]).stdout.split()[-1])
        result["tree"] = meta
        log(f"tree: {meta['files']:,} files, {meta['bytes'] / 1e6:,.0f} MB in {meta['dirs']:,} directories, "
            f"generated in {meta['generate_s']} s (+{meta['sync_s']} s writeback)")

        # 2. baseline
        log("baseline: nocry protect TREE (fresh home) ...")
        d, base = start_daemon(home, tree, sampler, prof("baseline"))
        base["cmd"] = shjoin(["nocry", "--home", "$H", "protect", "--mode", args.mode, "$TREE"])
        d.sync()
        base["steady"] = steady_rss(sampler, d.pid, args.steady)
        base["vault"] = vault_sizes(home)
        base["home_du_sb"] = du_bytes(home)
        result["baseline"] = base
        log(f"baseline: {base['protect_s']} s (scan {base['scan']['seconds']} s, {base['scan']['stored']:,} stored), "
            f"RSS peak {base['peak_mb']} MB, steady {base['steady']['rss_mb']} MB; vault {base['vault']['du_sb_vault'] / 1e6:,.0f} MB")
        d.stop()

        # 4a. the burst with nocry not running: what the machine itself allows
        exe = None if args.python_writers else burst.build_c_writer(root)
        result["burst_off"] = [burst_leg(root, None, None, None, args, exe, i, sampler) for i in range(1 if args.quick else 2)]

        # 3. rescans after restart
        rescans = []
        for i in range(args.runs):
            log(f"rescan {i + 1}/{args.runs}: nocry stop, nocry protect TREE (same home, unchanged tree) ...")
            d, rec = start_daemon(home, tree, sampler, prof(f"rescan{i}"))
            d.sync()
            rec["steady"] = steady_rss(sampler, d.pid, args.steady)
            rescans.append(rec)
            log(f"rescan {i + 1}: protect returned after {rec['protect_s']} s (last_scan {rec['scan']['seconds']} s, "
                f"{rec['scan']['seen']:,} seen, {rec['scan']['stored']} stored), RSS peak {rec['peak_mb']} MB, steady {rec['steady']['rss_mb']} MB")
            if i < args.runs - 1:
                d.stop()
        result["rescans"] = rescans

        # 4b. bursts into the protected tree (the last rescan's daemon)
        bursts = []
        for i in range(args.runs):
            p = prof(f"burst{i}").start()
            rec = burst_leg(root, tree, home, d, args, exe, i, sampler)
            rec["profile"] = p.stop()
            rec["profile_top"] = top_frames(rec["profile"])
            bursts.append(rec)
        result["bursts"] = bursts
        # 4c. the same burst with the daemon stalled at its start: forced overflow -> rescan
        stalled = []
        if args.stall:
            for i in range(1 if args.quick else 2):
                rec = burst_leg(root, tree, home, d, args, exe, i, sampler, stall=args.stall)
                stalled.append(rec)
        result["bursts_stalled"] = stalled
        result["final_status"] = counters(status(home))
        result["final_memory"] = memory_now(d.pid)
        result["vault_after"] = vault_sizes(home)
        d.stop()

        # 5. the same writers on tmpfs, where they can go past 100,000 ops/s
        if args.tmpfs_bursts:
            ram = top / "ram"
            result["tmpfs"] = tmpfs_bursts(ram, root, args, exe, sampler)
        result["summary"] = summarise(result)
    except BaseException as exc:
        rc = 1
        result["error"] = repr(exc)
        log(f"!!! failed: {exc!r}")
        if not isinstance(exc, Exception):
            raise
        import traceback

        traceback.print_exc()
    finally:
        sampler.stop()
        for pid in list(STOPPED):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        try:
            if loop is not None:
                kill_under(loop[0])
            kill_under(top)
            common._cleanup_daemons()
        finally:
            if ram is not None and os.path.ismount(ram):
                run(["umount", str(ram)], check=False)
            ok = True
            if loop is not None:
                ok = unmount_fs(*loop)
            if not args.keep and ok:
                rmtree(top)
            elif loop is not None and not ok:
                log(f"left behind: {top}")
        result["wall_s"] = round(time.perf_counter() - t_start, 1)
        RESULTS.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=1, default=str) + "\n")
        log(f"wrote {out_path}")
    if "summary" in result:
        print(render_text(result))
        if not args.no_docs and (not args.quick or args.docs):
            write_docs(render_markdown(result))
            log(f"refreshed {DOC}")
    return rc


# --------------------------------------------------------------------------------------------
# summary and rendering
# --------------------------------------------------------------------------------------------


def _med(xs: list[float]) -> float:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def summarise(r: dict[str, Any]) -> dict[str, Any]:
    b = r["baseline"]
    rs = r["rescans"]
    bs = r["bursts"]
    off = r["burst_off"]
    files = r["tree"]["files"]
    s = {
        "files": files,
        "baseline_s": b["protect_s"],
        "baseline_files_per_s": round(files / b["protect_s"]) if b["protect_s"] else None,
        "baseline_scan_s": b["scan"]["seconds"],
        "baseline_cpu_s": b["cpu_s"],
        "baseline_rss_peak_mb": b["peak_mb"],
        "baseline_rss_steady_mb": b["steady"]["rss_mb"],
        "vault_du_sb": b["vault"]["du_sb_vault"],
        "vault_du_sb_minus_reserve": b["vault"]["du_sb_vault_minus_reserve"],
        "vault_index_bytes": b["vault"]["index_bytes"],
        "vault_bytes_stored": b["vault"]["bytes_stored"],
        "vault_bytes_logical": b["vault"]["bytes_logical"],
        "tree_bytes": r["tree"]["bytes"],
        "tree_du_sb": r["tree"]["du_sb"],
        "rescan_s": _med([x["protect_s"] for x in rs]),
        "rescan_s_raw": [x["protect_s"] for x in rs],
        "rescan_scan_s": _med([x["scan"]["seconds"] for x in rs]),
        "rescan_scan_s_raw": [x["scan"]["seconds"] for x in rs],
        "rescan_stored_raw": [x["scan"]["stored"] for x in rs],
        "rescan_rss_peak_mb": _med([x["peak_mb"] for x in rs]),
        "rescan_rss_peak_mb_raw": [x["peak_mb"] for x in rs],
        "rescan_rss_steady_mb": _med([x["steady"]["rss_mb"] for x in rs]),
        "rescan_rss_steady_mb_raw": [x["steady"]["rss_mb"] for x in rs],
        "burst_ops_per_s": _med([x["ops_per_s"] for x in bs]),
        "burst_ops_per_s_raw": [x["ops_per_s"] for x in bs],
        "burst_syscalls_per_s": _med([x["syscalls_per_s"] for x in bs]),
        "burst_off_ops_per_s": _med([x["ops_per_s"] for x in off]),
        "burst_off_ops_per_s_raw": [x["ops_per_s"] for x in off],
        "burst_ops": _med([x["ops"] for x in bs]),
        "burst_overflows_raw": [x["overflows"] for x in bs],
        "burst_rescans_raw": [x["rescans"] for x in bs],
        "burst_sync_after_s": _med([x["sync_after_s"] for x in bs]),
        "burst_sync_after_s_raw": [x["sync_after_s"] for x in bs],
        "burst_rss_max_mb": max((x["rss_max_mb"] or 0) for x in bs) if bs else None,
        "burst_cpu_s_raw": [x["cpu_s"] for x in bs],
        "nothing_missed": all(x["check"]["ok"] for x in bs),
        "nothing_missed_raw": [x["check"]["ok"] for x in bs],
        "burst_files_checked_raw": [x["check"]["files_on_disk"] for x in bs],
        "burst_gone_raw": [x["check"]["gone"] for x in bs],
        "writer": bs[0]["writers"][0].get("writer") if bs else None,
    }
    st = r.get("bursts_stalled") or []
    if st:
        s.update({
            "stall_s": st[0]["stall_s"],
            "stall_ops_per_s_raw": [x["ops_per_s"] for x in st],
            "stall_overflows_raw": [x["overflows"] for x in st],
            "stall_rescans_raw": [x["rescans"] for x in st],
            "stall_rescan_scan_s_raw": [(x["last_scan_after"] or {}).get("seconds") for x in st],
            "stall_sync_after_s_raw": [x["sync_after_s"] for x in st],
            "stall_nothing_missed_raw": [x["check"]["ok"] for x in st],
            "stall_rss_max_mb": max((x["rss_max_mb"] or 0) for x in st),
        })
        s["nothing_missed"] = s["nothing_missed"] and all(s["stall_nothing_missed_raw"])
    tm = r.get("tmpfs")
    if tm:
        on, st2 = tm["on"], tm["stalled"]
        s.update({
            "tmpfs_off_ops_per_s": _med([x["ops_per_s"] for x in tm["off"]]),
            "tmpfs_off_ops_per_s_raw": [x["ops_per_s"] for x in tm["off"]],
            "tmpfs_ops_per_s": _med([x["ops_per_s"] for x in on]),
            "tmpfs_ops_per_s_raw": [x["ops_per_s"] for x in on],
            "tmpfs_overflows_raw": [x["overflows"] for x in on],
            "tmpfs_rescans_raw": [x["rescans"] for x in on],
            "tmpfs_sync_after_s_raw": [x["sync_after_s"] for x in on],
            "tmpfs_cpu_s_raw": [x["cpu_s"] for x in on],
            "tmpfs_nothing_missed_raw": [x["check"]["ok"] for x in on + st2],
            "tmpfs_stall_ops_per_s_raw": [x["ops_per_s"] for x in st2],
            "tmpfs_stall_overflows_raw": [x["overflows"] for x in st2],
            "tmpfs_stall_sync_after_s_raw": [x["sync_after_s"] for x in st2],
            "tmpfs_rss_max_mb": max((x["rss_max_mb"] or 0) for x in on + st2),
            "tmpfs_rss_end_mb": (tm.get("final_memory") or {}).get("rss_mb"),
        })
        s["nothing_missed"] = s["nothing_missed"] and all(s["tmpfs_nothing_missed_raw"])
        # the goal: a burst of 100,000 ops/s with no overflow, or with overflows handled and nothing
        # missed. What lands while the daemon runs is what the writers get of the CPUs beside it
        # (overhead); with the daemon stopped the whole burst lands at the writers' own speed and
        # the daemon then has everything to catch up: both are bursts that nocry must handle
        s["burst_goal_met"] = (max(s["tmpfs_ops_per_s"], *s["tmpfs_stall_ops_per_s_raw"]) >= BURST_TARGET
                               and all(s["tmpfs_nothing_missed_raw"]))
    s["rss_end_mb"] = (r.get("final_memory") or {}).get("rss_mb")
    peak = max([s["baseline_rss_peak_mb"], *s["rescan_rss_peak_mb_raw"], s["burst_rss_max_mb"] or 0, s.get("stall_rss_max_mb") or 0,
                s.get("tmpfs_rss_max_mb") or 0])
    s["rss_peak_all_mb"] = peak
    s["rss_goal_met"] = peak <= RSS_GOAL_MB and s["baseline_rss_steady_mb"] <= RSS_GOAL_MB
    s["rescan_goal_met"] = s["rescan_s"] <= RESCAN_GOAL_S
    return s


def _yes(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _mbs(b: int) -> str:
    return f"{b / 1e6:,.0f} MB"


def render_text(r: dict[str, Any]) -> str:
    s = r["summary"]
    lines = ["", f"nocry scale benchmark — {r['wall_s'] / 60:.1f} min, {s['files']:,} files", ""]
    for k, v in s.items():
        lines.append(f"  {k:32} {v}")
    lines.append(f"\n  command: {r['command']}")
    return "\n".join(lines)


def render_markdown(r: dict[str, Any]) -> str:
    s = r["summary"]
    m = r["machine"]
    t = r["tree"]
    code = r.get("code", {})
    src = code.get("source", "?")
    if src.startswith("git archive "):
        sha = src.split()[2]
        subj = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s", sha], capture_output=True, text=True).stdout.strip()
        src = f"`git archive` of commit {subj or sha}"
        last = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s", sha, "--", "src"], capture_output=True,
                              text=True).stdout.strip()
        if last and not last.startswith(sha[:7]):
            src += f" (src/ as of {last})"
    elif code.get("head"):
        src = f"{src}, HEAD {code['head'][:7]}" + (" with uncommitted changes in src/" if code.get("src_dirty") else "")
    n = len(r["rescans"])
    nb = len(r["bursts"])
    b = r["baseline"]
    out = [BEGIN, "",
           f"Last run {m['date'][:16].replace('T', ' ')} ({r['wall_s'] / 60:.0f} min{', quick' if r['quick'] else ''}): `{r['command']}`",
           "",
           f"- machine: {m['nproc']} vCPU ({m['cpu']}), {m['ram_gib']} GiB RAM, kernel {m['kernel']}, Python {m['python']}; "
           f"load average at start {' '.join(m['loadavg_start'])}",
           f"- filesystem: {m['fs']} on {m.get('fs_source', '?')}",
           f"- code under test: {src}; `nocry protect --mode {r['params']['mode']}`, "
           + (f"configuration `{'`, `'.join(r['params']['set'])}`" if r["params"].get("set") else "default configuration otherwise"),
           f"- tree: {t['files']:,} files, {t['bytes'] / 1e6:,.0f} MB ({t['du_sb'] / 1e6:,.0f} MB `du -sb`), {t['dirs']:,} directories "
           f"({t['dirs_leaf']:,} holding files), sizes {t['size_range'][0]} B - {t['size_range'][1] // 1024} KiB log-uniform; "
           f"generated by bench/scale/gen.py in {t['generate_s']:.0f} s; page cache warm (no cache drop)",
           "- values with `n` > 1 are medians, every raw value in brackets; RSS in MB (10^6 bytes) from /proc/PID/status",
           "",
           "| figure | value | goal | n | raw / notes |",
           "|---|---|---|---|---|",
           f"| baseline: `nocry protect TREE` until it returns (fresh home) | **{fmt_value(s['baseline_s'])} s** "
           f"({s['baseline_files_per_s']:,} files/s) | | 1 | scan {fmt_value(s['baseline_scan_s'])} s; daemon CPU {fmt_value(s['baseline_cpu_s'])} s |",
           f"| daemon RSS peak during the baseline (VmHWM) | **{fmt_value(s['baseline_rss_peak_mb'])} MB** | <= {RSS_GOAL_MB} MB: "
           f"{_yes(s['baseline_rss_peak_mb'] <= RSS_GOAL_MB)} | 1 | RssAnon at return {fmt_value(b['at_return']['anon_mb'])} MB |",
           f"| daemon RSS steady after the baseline (VmRSS, median over {r['params']['steady']:g} s idle after `nocry sync`) | "
           f"**{fmt_value(s['baseline_rss_steady_mb'])} MB** | <= {RSS_GOAL_MB} MB: {_yes(s['baseline_rss_steady_mb'] <= RSS_GOAL_MB)} | 1 | |",
           f"| vault after the baseline: `du -sb HOME/vault` | **{_mbs(s['vault_du_sb'])}** | | 1 | "
           f"{_mbs(s['vault_du_sb_minus_reserve'])} without the reserve file; index {_mbs(s['vault_index_bytes'])}; "
           f"packs (`vault stats` bytes_stored) {_mbs(s['vault_bytes_stored'])} for {_mbs(s['vault_bytes_logical'])} logical; "
           f"tree `du -sb` {_mbs(s['tree_du_sb'])} |",
           f"| rescan after restart: `nocry stop`, `nocry protect TREE` (same home, unchanged tree) until it returns | "
           f"**{fmt_value(s['rescan_s'])} s** | <= {RESCAN_GOAL_S} s: {_yes(s['rescan_goal_met'])} | {n} | "
           f"[{', '.join(fmt_value(x) for x in s['rescan_s_raw'])}] |",
           f"| the rescan itself (`last_scan[].seconds` of `nocry --json status`) | **{fmt_value(s['rescan_scan_s'])} s** | | {n} | "
           f"[{', '.join(fmt_value(x) for x in s['rescan_scan_s_raw'])}]; stored [{', '.join(str(x) for x in s['rescan_stored_raw'])}] |",
           f"| daemon RSS peak during the rescan (VmHWM of the new daemon) | **{fmt_value(s['rescan_rss_peak_mb'])} MB** | <= {RSS_GOAL_MB} MB: "
           f"{_yes(s['rescan_rss_peak_mb'] <= RSS_GOAL_MB)} | {n} | [{', '.join(fmt_value(x) for x in s['rescan_rss_peak_mb_raw'])}] |",
           f"| daemon RSS steady after the rescan | **{fmt_value(s['rescan_rss_steady_mb'])} MB** | <= {RSS_GOAL_MB} MB: "
           f"{_yes(s['rescan_rss_steady_mb'] <= RSS_GOAL_MB)} | {n} | [{', '.join(fmt_value(x) for x in s['rescan_rss_steady_mb_raw'])}] |",
           f"| burst: {r['params']['writers']} {s['writer']} writers, create/overwrite/rename/unlink 1:1:1:1, "
           f"{r['params']['burst_seconds']:g} s{', paced to ' + format(int(r['params']['rate']), ',') + ' ops/s' if r['params']['rate'] else ', as fast as they can'}: "
           f"file operations/s achieved, nocry protecting | **{fmt_value(s['burst_ops_per_s'])} ops/s** | {BURST_TARGET:,} ops/s: "
           f"{_yes(s['burst_ops_per_s'] >= BURST_TARGET) if 'tmpfs_ops_per_s' not in s else 'beyond this ext4 (tmpfs rows below)'} | {nb} | [{', '.join(fmt_value(x) for x in s['burst_ops_per_s_raw'])}]; "
           f"{fmt_value(s['burst_syscalls_per_s'])} syscalls/s |",
           f"| the same burst with nocry not running (what this machine's ext4 allows) | **{fmt_value(s['burst_off_ops_per_s'])} ops/s** | | "
           f"{len(s['burst_off_ops_per_s_raw'])} | [{', '.join(fmt_value(x) for x in s['burst_off_ops_per_s_raw'])}] |",
           f"| overflows during a burst (`overflows` of `nocry --json status`, after - before) | **{', '.join(str(x) for x in s['burst_overflows_raw'])}** | | {nb} | "
           f"rescans triggered: {', '.join(str(x) for x in s['burst_rescans_raw'])} |",
           f"| `nocry sync` after the writers finished, until everything is in the vault | **{fmt_value(s['burst_sync_after_s'])} s** | | {nb} | "
           f"[{', '.join(fmt_value(x) for x in s['burst_sync_after_s_raw'])}]; daemon CPU s per burst [{', '.join(fmt_value(x) for x in s['burst_cpu_s_raw'])}] |",
           f"| nothing missed: every file on disk in the vault with its final content, every vanished path absent from the vault's state | "
           f"**{'yes' if s['nothing_missed'] else 'NO'}** | nothing missed: {_yes(s['nothing_missed'])} | {nb} | "
           f"files checked [{', '.join(str(x) for x in s['burst_files_checked_raw'])}], vanished paths [{', '.join(str(x) for x in s['burst_gone_raw'])}] |",
           *([f"| burst with the daemon stopped (SIGSTOP) for its first {s['stall_s']:g} s, forcing a kernel queue overflow: "
              f"overflows, rescans, `nocry sync` after the writers | **overflows {', '.join(str(x) for x in s['stall_overflows_raw'])}; "
              f"rescans {', '.join(str(x) for x in s['stall_rescans_raw'])}; sync {', '.join(fmt_value(x) for x in s['stall_sync_after_s_raw'])} s** | | "
              f"{len(s['stall_overflows_raw'])} | ops/s [{', '.join(fmt_value(x) for x in s['stall_ops_per_s_raw'])}]; the rescan "
              f"(`last_scan`) [{', '.join(fmt_value(x) if x is not None else '-' for x in s['stall_rescan_scan_s_raw'])}] s; nothing missed: "
              f"{', '.join('yes' if x else 'NO' for x in s['stall_nothing_missed_raw'])} |"] if "stall_s" in s else []),
           f"| daemon RSS, highest sample during the bursts | **{fmt_value(max(s['burst_rss_max_mb'] or 0, s.get('stall_rss_max_mb') or 0))} MB** | <= {RSS_GOAL_MB} MB: "
           f"{_yes(max(s['burst_rss_max_mb'] or 0, s.get('stall_rss_max_mb') or 0) <= RSS_GOAL_MB)} | {nb + len(s.get('stall_overflows_raw', []))} | |",
           f"| daemon RSS at the end, after every burst (and the rescans of the stalled ones), in sync | **{fmt_value(s.get('rss_end_mb'))} MB** | "
           f"<= {RSS_GOAL_MB} MB: {_yes((s.get('rss_end_mb') or 0) <= RSS_GOAL_MB)} | 1 | |",
           *(tmpfs_rows(r) if "tmpfs_ops_per_s" in s else []),
           ""]
    out.append("Per burst (nocry on; `tmpfs`: the tree on a tmpfs of its own):")
    out.append("")
    out.append("| # | daemon stalled (s) | ops | ops/s | overflows | rescans | queued events: highest so far, reader waits | kernel memory rise (MB) | sync after (s) | files on disk: final content in vault | missing / stale | vanished paths: absent from vault state | sample of vanished (`nocry versions`) |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    tm = r.get("tmpfs") or {}
    for i, x in enumerate(r["bursts"] + (r.get("bursts_stalled") or []) + tm.get("on", []) + tm.get("stalled", [])):
        c = x["check"]
        smp = c["gone_sample"]
        backlog = f"{x['backlog_peak']:,}, {x['reader_waits']}" if x.get("backlog_peak") is not None else "–"
        rise = x.get("kernel_slab_rise_mb")
        out.append(f"| {i}{' tmpfs' if '/ram/' in x['dir'] else ''} | {x.get('stall_s') or 0:g} | {x['ops']:,} | {x['ops_per_s']:,} | {x['overflows']} | {x['rescans']} | {backlog} | "
                   f"{'–' if rise is None else fmt_value(rise)} | {x['sync_after_s']} | "
                   f"{c['files_ok']:,} / {c['files_on_disk']:,} | {c['missing']} / {c['stale']} | "
                   f"{c['gone'] - c['gone_still_live_in_vault']:,} / {c['gone']:,} | {smp['tombstone']} tombstone, "
                   f"{smp['never_captured']} never captured, {smp['live_version']} live |")
    out.append("")
    out.append("Commands (`$H` the home, `$TREE` the tree, on the benchmark's own filesystem):")
    out.append("")
    out.append(f"- baseline: `nocry --home $H protect --mode {r['params']['mode']} $TREE` (timed until it returns); "
               "`nocry --home $H sync`; `du -sb $H/vault`; `nocry --home $H --json vault stats`")
    out.append(f"- rescan: `nocry --home $H stop`; `nocry --home $H protect --mode {r['params']['mode']} $TREE`; "
               "`nocry --home $H --json status` (`last_scan`)")
    out.append("- burst: `bench/scale/burst.py` writers (C source inside) in `$TREE/burst-N/wK`; `nocry --home $H sync`; "
               "`nocry --home $H --json restore $TREE/burst-N --at T --dry-run` (vault state vs BLAKE3 of the disk); "
               "`nocry --home $H --json versions PATH` (sample of vanished paths)")
    if tm:
        out.append("- tmpfs bursts: the same writers in `$RAM/work/tree/burst-N/wK`, `$RAM` a tmpfs of their own "
                   "(`mount -t tmpfs -o size=4g`), protected by a second daemon whose home is on the benchmark's ext4")
    out.append("")
    out.append(END)
    return "\n".join(out)


def tmpfs_rows(r: dict[str, Any]) -> list[str]:
    """The table rows of phase 5 (bursts on tmpfs)."""
    s = r["summary"]
    n = len(s["tmpfs_ops_per_s_raw"])

    def raw(xs: list[Any]) -> str:
        return ", ".join(fmt_value(x) if isinstance(x, float) else f"{x:,}" if isinstance(x, int) else str(x) for x in xs)

    return [
        f"| burst on tmpfs: the same writers in a tree on a tmpfs of its own, with nocry not running (what the writers reach there) | "
        f"**{fmt_value(s['tmpfs_off_ops_per_s'])} ops/s** | | {len(s['tmpfs_off_ops_per_s_raw'])} | [{raw(s['tmpfs_off_ops_per_s_raw'])}] |",
        f"| burst on tmpfs, nocry protecting: file operations/s achieved (the daemon takes its share of the CPUs) | "
        f"**{fmt_value(s['tmpfs_ops_per_s'])} ops/s** | {BURST_TARGET:,} ops/s with nothing missed (this row or the next): "
        f"{_yes(s['burst_goal_met'])} | {n} | [{raw(s['tmpfs_ops_per_s_raw'])}]; "
        f"overflows [{raw(s['tmpfs_overflows_raw'])}], rescans [{raw(s['tmpfs_rescans_raw'])}]; `nocry sync` after the writers "
        f"[{raw(s['tmpfs_sync_after_s_raw'])}] s; daemon CPU s [{raw(s['tmpfs_cpu_s_raw'])}] |",
        f"| burst on tmpfs with the daemon stopped (SIGSTOP) for the whole burst: ops/s, overflows, `nocry sync` after | "
        f"**{raw(s['tmpfs_stall_ops_per_s_raw'])} ops/s; overflows {raw(s['tmpfs_stall_overflows_raw'])}; "
        f"sync {raw(s['tmpfs_stall_sync_after_s_raw'])} s** | | {len(s['tmpfs_stall_ops_per_s_raw'])} | |",
        f"| tmpfs bursts: nothing missed (the check above, per burst) | **{', '.join('yes' if x else 'NO' for x in s['tmpfs_nothing_missed_raw'])}** | "
        f"nothing missed: {_yes(all(s['tmpfs_nothing_missed_raw']))} | {len(s['tmpfs_nothing_missed_raw'])} | |",
        f"| tmpfs bursts: daemon RSS, highest sample; at the end | **{fmt_value(s['tmpfs_rss_max_mb'])} MB; {fmt_value(s['tmpfs_rss_end_mb'])} MB** | "
        f"<= {RSS_GOAL_MB} MB: {_yes(max(s['tmpfs_rss_max_mb'] or 0, s['tmpfs_rss_end_mb'] or 0) <= RSS_GOAL_MB)} | {n + 1} | |",
    ]


def write_docs(block: str) -> None:
    write_docs_block(DOC, BEGIN, END, block, lambda text, block: text.rstrip() + "\n\n" + INTRO + "\n" + block + "\n")


if __name__ == "__main__":
    sys.exit(main())
