"""What fanotify itself costs a writer, before nocry's daemon does anything: the floor under the
overhead figures of bench/overhead/run.py.

    sudo .venv/bin/python bench/overhead/floor.py            # ~4 min: tar and git, 5 legs per variant
    sudo .venv/bin/python bench/overhead/floor.py --runs 9

A fanotify group with the daemon's flags (``nocry.sensor.fanotify.INIT_FLAGS``, unlimited queue) and
a filesystem mark with the daemon's event mask (``BASE_MASK``), or a variant of it, on a fresh ext4
of the benchmark's own; a bare thread reads the queue and closes the pidfds the kernel installs,
nothing else. Variants:

  none        no fanotify group at all (the reference)
  poll        the reader waits in poll() and reads at once (the sensor before sensor.coalesce_ms)
  nap         the reader sleeps 5 ms before each read (the sensor until 4ec62dc)
  nap1, nap2  the same with a 1 ms / 2 ms nap (nap1: what the sensor does now)
  nap-nomod   nap, mask without FAN_MODIFY
  nap-noattr  nap, mask without FAN_ATTRIB
  nap-close   nap, FAN_CLOSE_WRITE only
  split-mod   nap, two groups: FAN_MODIFY in a second one that reports only the file's own handle
              (FAN_REPORT_FID: no parent handle, no name), the rest as the daemon's
  split-modattr  the same with FAN_ATTRIB in the second group too
  busy-spin   no group; a shell loop spins on the other CPU (CPU time, no memory traffic)
  busy-zstd   no group; ``zstd -1`` compresses the workload's archive over and over on the other
              CPU (the kind of work a capture does: streaming data through the caches)

Workloads (the same trees as run.py): ``tar -xf`` of 20,000 source files into an empty directory;
``git checkout`` between two commits of that tree (6,000 files differ), each direction timed on its
own (A->B and B->A differ in cost). Variants rotate within each round. Each figure is the median
over rounds of the leg's time divided by the median ``none`` time of the same workload.

Results: bench/results/floor.json and a markdown table on stdout (pasted in docs/benchmarks.md by
hand, under "Overhead").
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench" / "core"))
sys.path.insert(0, str(REPO / "src"))

import overhead as core  # noqa: E402
from common import RESULTS, Work, common_args, data_tree, flush_disk, log, machine, make_isolated, median, rmtree, run, specs, unmount_isolated  # noqa: E402

from nocry.sensor import _syscalls as sc  # noqa: E402
from nocry.sensor.decode import pidfds_in  # noqa: E402
from nocry.sensor.fanotify import BASE_MASK, INIT_FLAGS  # noqa: E402

#: a group that reports only the object's own file handle (no parent, no name): cheaper to encode
FID_FLAGS = sc.FAN_CLASS_NOTIF | sc.FAN_CLOEXEC | sc.FAN_NONBLOCK | sc.FAN_REPORT_FID | sc.FAN_REPORT_PIDFD
_PER_WRITE = sc.FAN_MODIFY | sc.FAN_ATTRIB

#: variant -> (nap before each read, [(fanotify_init flags, mark mask), ...]) or None for no group
VARIANTS: dict[str, tuple[float, list[tuple[int, int]]] | None] = {
    "none": None,
    "poll": (0.0, [(INIT_FLAGS, BASE_MASK)]),
    "nap": (0.005, [(INIT_FLAGS, BASE_MASK)]),
    "nap1": (0.001, [(INIT_FLAGS, BASE_MASK)]),
    "nap2": (0.002, [(INIT_FLAGS, BASE_MASK)]),
    "nap-nomod": (0.005, [(INIT_FLAGS, BASE_MASK & ~sc.FAN_MODIFY)]),
    "nap-noattr": (0.005, [(INIT_FLAGS, BASE_MASK & ~sc.FAN_ATTRIB)]),
    "nap-close": (0.005, [(INIT_FLAGS, sc.FAN_CLOSE_WRITE)]),
    "split-mod": (0.005, [(INIT_FLAGS, BASE_MASK & ~sc.FAN_MODIFY), (FID_FLAGS, sc.FAN_MODIFY)]),
    "split-modattr": (0.005, [(INIT_FLAGS, BASE_MASK & ~_PER_WRITE), (FID_FLAGS, _PER_WRITE)]),
    "busy-spin": None,
    "busy-zstd": None,
}

#: variants with no fanotify group but another process at work on the other CPU during the leg
#: (``{tar}``: the workload's archive, which sits in the page cache): is it the daemon's CPU time
#: that slows a writer, or what that time does?
COMPETITORS: dict[str, str] = {
    "busy-spin": "while :; do :; done",  # CPU only: registers and L1, no memory traffic
    "busy-zstd": "while :; do zstd -q -1 -c {tar} >/dev/null; done",  # what a capture does: stream and compress
}


class Group:
    """fanotify groups on ``mnt`` with a thread that drains them (closing pidfds), nothing more."""

    def __init__(self, mnt: Path, nap: float, groups: list[tuple[int, int]]):
        self.sys = sc.Syscalls()
        self.fds = []
        for flags, mask in groups:
            fd = self.sys.fanotify_init(flags | sc.FAN_UNLIMITED_QUEUE, os.O_RDONLY | os.O_LARGEFILE)
            self.sys.fanotify_mark(fd, sc.FAN_MARK_ADD | sc.FAN_MARK_FILESYSTEM, mask, sc.AT_FDCWD, os.fsencode(mnt))
            self.fds.append(fd)
        self.nap = nap
        self.stop = threading.Event()
        self.bytes = 0
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        import select

        poller = select.poll()
        for fd in self.fds:
            poller.register(fd, select.POLLIN)
        while not self.stop.is_set():
            if not poller.poll(50):
                continue
            if self.nap:
                time.sleep(self.nap)
            for fd in self.fds:
                while True:
                    try:
                        buf = os.read(fd, 1 << 18)
                    except BlockingIOError:
                        break
                    self.bytes += len(buf)
                    for pidfd in pidfds_in(buf):
                        os.close(pidfd)

    def close(self) -> None:
        time.sleep(0.2)  # let it drain what the workload left
        self.stop.set()
        self.thread.join()
        for fd in self.fds:
            os.close(fd)


def leg(mnt: Path, variant: str, argv: list[str], tar: Path, before=None) -> float:
    if before is not None:
        before()
    flush_disk()
    time.sleep(0.3)
    spec = VARIANTS[variant]
    g = Group(mnt, *spec) if spec else None
    busy = None
    if variant in COMPETITORS:
        busy = subprocess.Popen(["bash", "-c", COMPETITORS[variant].format(tar=shlex.quote(str(tar)))], start_new_session=True)
        time.sleep(0.3)
    try:
        t0 = time.perf_counter()
        run(argv)
        return time.perf_counter() - t0
    finally:
        if g is not None:
            g.close()
        if busy is not None:
            os.killpg(busy.pid, signal.SIGKILL)
            busy.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_args(ap)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset (none is always run)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (fanotify filesystem marks, loop mounts)", file=sys.stderr)
        return 2
    variants = ["none"] + [v for v in args.variants.split(",") if v in VARIANTS and v != "none"]
    runs = args.runs or (2 if args.quick else 5)
    base = Path(tempfile.mkdtemp(prefix="nocry-floor-", dir=args.tmp))
    mnt, dev = make_isolated(base, 6 if args.quick else 12)
    try:
        args.workdir = str(mnt)
        work = Work.create(args, "floor")
        src, meta = data_tree(work, specs(args.quick)["source"])
        tar = core.tar_archive(work, src, meta)
        repo, info = core.build_repo(work, src)
        head = {"at": "B"}

        def checkout(to: str) -> list[str]:
            return ["git", "-C", str(repo), "checkout", "-q", to]

        def start_from(frm: str):
            def go() -> None:
                if head["at"] != frm:
                    run(checkout(frm))
                    head["at"] = frm
            return go

        times: dict[str, dict[str, list[float]]] = {w: {v: [] for v in variants} for w in ("tar", "git A->B", "git B->A")}
        for r in range(runs):
            order = variants[r % len(variants):] + variants[: r % len(variants)]
            for v in order:
                tree = work.fresh("tar-tree")
                times["tar"][v].append(leg(mnt, v, ["tar", "-xf", str(tar), "-C", str(tree)], tar))
                rmtree(tree)
                for frm, to in (("A", "B"), ("B", "A")):
                    t = leg(mnt, v, checkout(to), tar, before=start_from(frm))
                    head["at"] = to
                    times[f"git {frm}->{to}"][v].append(t)
            log(f"round {r + 1}/{runs}: " + ", ".join(f"{w} {v} {ts[v][-1]:.3f}" for w, ts in times.items() for v in variants))
        ratios = {w: {v: round(median(ts[v]) / median(ts["none"]), 3) for v in variants} for w, ts in times.items()}
        result = {"command": "sudo .venv/bin/python bench/overhead/floor.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""),
                  "machine": machine(mnt), "tree": meta, "git": info, "runs": runs, "times": times, "ratios": ratios,
                  "date": time.strftime("%Y-%m-%d %H:%M")}
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "floor.json").write_text(json.dumps(result, indent=1))
        print(f"\n{result['command']} ({result['date']}, {runs} legs per cell; time / median time without fanotify)\n")
        print("| workload | none (s) | " + " | ".join(variants[1:]) + " |")
        print("|---|---|" + "---|" * (len(variants) - 1))
        for w, ts in times.items():
            print(f"| {w} | {median(ts['none']):.3f} | " + " | ".join(f"{ratios[w][v]:.2f}" for v in variants[1:]) + " |")
        work.close()
    finally:
        unmount_isolated(mnt, dev)
        rmtree(base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
