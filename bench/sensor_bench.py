"""Sensor benchmark: how fast the fanotify sensor drains events. Root only; about 30 s.

    sudo .venv/bin/python bench/sensor_bench.py [--seconds 5] [--out bench/results/sensor_bench.jsonl]

(a) drain: one real read() buffer (256 KiB of events from a writer that creates, writes and
    deletes small files, process still alive so every event has a live pidfd) is captured, then
    decoded alone, and decoded + resolved + filtered + attributed (``FanotifySensor.process``)
    over and over: events/s of the parser itself, with warm directory and subject caches. The
    close() of each pidfd is not in this figure (the buffer's pidfds are reused).
(b) sustained: the sensor runs as in the daemon (reader thread, counting sink) while writer
    processes hammer a temporary tree for ``--seconds``: ``files`` creates/writes/closes/deletes
    small files as fast as it can; ``renames`` renames one file through ever new names, the
    cheapest way to make the kernel queue events, to find the drain limit. Reports raw events/s
    read, events/s emitted, overflows and unresolved.

Prints one JSON line and appends it to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from nocry.events import Event, Overflow
from nocry.sensor import FanotifySensor
from nocry.sensor.decode import decode, pidfds_in

FILES_WRITER = r"""
import os, sys, time
end = time.monotonic() + float(sys.argv[1])
for d in range(16):
    os.makedirs('d%d' % d, exist_ok=True)
n = 0
payload = b'x' * 200
sys.stdout.write('go\n'); sys.stdout.flush()
while time.monotonic() < end:
    for _ in range(100):
        p = 'd%d/f%d' % (n % 16, n)
        fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
        os.write(fd, payload)
        os.close(fd)
        os.unlink(p)
        n += 1
sys.stdout.write('%d\n' % n); sys.stdout.flush()
sys.stdin.readline()
"""

RENAMES_WRITER = r"""
import os, sys, time
end = time.monotonic() + float(sys.argv[1])
tag = sys.argv[2]
os.makedirs('r' + tag, exist_ok=True)
cur = 'r%s/0' % tag
open(cur, 'wb').close()
n = 0
sys.stdout.write('go\n'); sys.stdout.flush()
while time.monotonic() < end:
    for _ in range(200):
        n += 1
        nxt = 'r%s/%d' % (tag, n)
        os.rename(cur, nxt)
        cur = nxt
sys.stdout.write('%d\n' % n); sys.stdout.flush()
sys.stdin.readline()
"""

CAPTURE_WRITER = r"""
import os, sys
for d in range(8):
    os.mkdir('c%d' % d)
for i in range(4000):
    p = 'c%d/f%d' % (i % 8, i)
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b'x' * 100)
    os.close(fd)
    os.unlink(p)
sys.stdout.write('done\n'); sys.stdout.flush()
sys.stdin.readline()
"""


def spawn(code: str, cwd: str, *args: str) -> subprocess.Popen[bytes]:
    p = subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout is not None
    p.stdout.readline()  # "go" / "done"
    return p


def finish(p: subprocess.Popen[bytes], read_count: bool) -> int:
    assert p.stdout is not None and p.stdin is not None
    n = int(p.stdout.readline()) if read_count else 0
    p.stdin.close()
    p.wait(30)
    p.stdout.close()
    return n


def bench_drain(tree: str, seconds: float) -> dict[str, float]:
    sensor = FanotifySensor([tree.encode()], lambda batch: None, ignore_pids=(os.getpid(),))
    sensor.open()
    writer = spawn(CAPTURE_WRITER, tree)
    try:
        buf = sensor.read_buffer(timeout=5)
        while len(buf) < sensor.read_size // 2:  # make sure it is a full-size batch
            for fd in pidfds_in(buf):
                os.close(fd)
            buf = sensor.read_buffer(timeout=5)
            if not buf:
                raise SystemExit("no events captured")
        events = len(decode(buf))
        sensor.process(buf, close_fds=False)  # warm caches, as in steady state
        emitted = len(sensor.process(buf, close_fds=False))

        def rate(fn: object) -> float:
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                for _ in range(10):
                    fn()  # type: ignore[operator]
                n += 10
            return n * events / (time.perf_counter() - t0)

        decode_rate = rate(lambda: decode(buf))
        process_rate = rate(lambda: sensor.process(buf, close_fds=False))
        for fd in pidfds_in(buf):
            os.close(fd)
    finally:
        finish(writer, read_count=False)
        sensor.stop()
    return {
        "buffer_bytes": len(buf),
        "buffer_events": events,
        "buffer_emitted": emitted,
        "decode_events_per_s": round(decode_rate),
        "process_events_per_s": round(process_rate),
    }


def bench_sustained(tree: str, workload: str, seconds: float, writers: int) -> dict[str, float]:
    emitted = 0
    overflows = 0

    def sink(batch: list[Event]) -> None:
        nonlocal emitted, overflows
        emitted += len(batch)
        overflows += sum(1 for e in batch if isinstance(e, Overflow) and e.reason == "queue_overflow")

    sensor = FanotifySensor([tree.encode()], sink, ignore_pids=(os.getpid(),))
    sensor.start()
    try:
        t0 = time.monotonic()
        if workload == "files":
            procs = [spawn(FILES_WRITER, tree, str(seconds)) for _ in range(writers)]
        else:
            procs = [spawn(RENAMES_WRITER, tree, str(seconds), str(i)) for i in range(writers)]
        ops = sum(finish(p, read_count=True) for p in procs)
        wall = time.monotonic() - t0
        # Let the reader drain what is still queued. The filesystem mark also sees the rest of
        # the system (a trickle of a few events/s), so "drained" means: under 20 new events in
        # 100 ms. The rates count up to that point.
        last, deadline = sensor.events_total, time.monotonic() + 10
        drained_at = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now_total = sensor.events_total
            if now_total - last < 20:
                break
            last, drained_at = now_total, time.monotonic()
        drain_wall = drained_at - t0
    finally:
        sensor.stop()
    return {
        "workload": workload,
        "writers": writers,
        "seconds": round(wall, 2),
        "drained_after_s": round(drain_wall, 2),
        "writer_ops": ops,
        "writer_ops_per_s": round(ops / wall),
        "raw_events": sensor.events_total,
        "raw_events_per_s": round(sensor.events_total / drain_wall),
        "emitted_events": emitted,
        "emitted_events_per_s": round(emitted / drain_wall),
        "read_batches": sensor.read_batches,
        "overflows": sensor.overflows,
        "unresolved": sensor.unresolved,
        "errors": sensor.errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each sustained workload")
    ap.add_argument("--writers", type=int, default=1, help="writer processes per sustained workload")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "sensor_bench.jsonl"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("sensor_bench needs root (fanotify filesystem marks)")
    base = tempfile.mkdtemp(prefix="nocry-bench-")
    try:
        result = {
            "bench": "sensor",
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "max_queued_events": int(open("/proc/sys/fs/fanotify/max_queued_events").read()),
            "drain": bench_drain(tempfile.mkdtemp(dir=base), min(args.seconds, 3.0)),
            "sustained": [
                bench_sustained(tempfile.mkdtemp(dir=base), w, args.seconds, args.writers) for w in ("files", "renames")
            ],
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)
    line = json.dumps(result)
    print(line)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "a") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
