"""End to end under stress: kill -9 mid-capture, a full vault disk, a kernel queue overflow."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import blake3
import pytest

from tests.e2e.harness import Nocry

pytestmark = pytest.mark.kernel


@pytest.fixture
def work():
    d = Path(tempfile.mkdtemp(prefix="nocry-res-"))
    (d / "tree").mkdir()
    yield d
    subprocess.run(["umount", "-l", str(d / "small")], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


def _writer(tree: Path, seconds: float, seed: int) -> subprocess.Popen:
    """A separate process that writes, rewrites, renames and deletes files as fast as it can."""
    code = f"""
import os, random, time
rng = random.Random({seed})
root = {str(tree)!r}
end = time.monotonic() + {seconds}
i = 0
while time.monotonic() < end:
    i += 1
    d = os.path.join(root, "d%d" % (i % 7))
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, "f%d" % (i % 60))
    with open(p, "wb") as f:
        f.write(rng.randbytes(rng.choice([100, 4000, 150000])))
    if i % 9 == 0 and os.path.exists(p):
        os.rename(p, p + ".r")
    if i % 13 == 0 and os.path.exists(p + ".r"):
        os.unlink(p + ".r")
"""
    return subprocess.Popen([sys.executable, "-c", code])


def _disk_hashes(tree: Path) -> dict[bytes, bytes]:
    out = {}
    for p in tree.rglob("*"):
        if p.is_file() and not p.is_symlink():
            out[os.fsencode(p)] = blake3.blake3(p.read_bytes()).digest()
    return out


def _vault_latest(home: Path, tree: Path) -> dict[bytes, bytes]:
    from nocry.config import VaultConfig
    from nocry.vault import Vault

    v = Vault(home / "vault", VaultConfig(), readonly=True)
    try:
        return {r.path: r.content for r in v.latest_under(os.fsencode(tree)) if r.exists and r.ftype == "file"}
    finally:
        v.close()


def test_kill9_during_heavy_capture_never_damages_the_vault(work):
    tree = work / "tree"
    rng = random.Random(7)
    n = Nocry(work / "home")
    for round_ in range(5):
        # observe mode: this writer renames other rounds' files to an unknown extension en masse,
        # which is what ransomware does; this test is about the vault, not about judging it
        n.start(tree, extra=("--mode", "observe"))
        writer = _writer(tree, 3.0, seed=round_)
        time.sleep(rng.uniform(0.3, 2.5))
        n.kill9()
        writer.wait(30)
        res = n.cli("vault", "verify")
        assert res.code in (0, 1), f"round {round_}: {res}"
        assert res.json["ok"], res.json
    # a restart's rescan picks up everything missed while the daemon was dead
    n.start(tree, extra=("--mode", "observe"))
    n.sync()
    assert _vault_latest(work / "home", tree) == _disk_hashes(tree)
    n.stop()


def test_full_vault_disk_pauses_with_alarm_and_resumes(work):
    small = work / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(small)], check=True)
    home = small / "home"
    (home).mkdir()
    (home / "config.toml").write_text("[vault]\nreserve_mib = 8\nmin_free_mib = 8\ncompression_level = 1\n")
    tree = work / "tree"
    for i in range(20):
        (tree / f"doc{i}.txt").write_bytes(os.urandom(1000))
    with Nocry(home) as n:
        n.start(tree)
        # fill the vault's disk from outside
        filler = small / "filler"
        with open(filler, "wb") as f:
            free = shutil.disk_usage(small).free
            f.write(b"\0" * (free - (14 << 20)))
        # new data now no longer fits
        for i in range(8):
            (tree / f"big{i}.bin").write_bytes(os.urandom(3 << 20))
        deadline = time.monotonic() + 30
        while n.status().get("capture_paused") != "vault_full":
            assert time.monotonic() < deadline, n.status()
            time.sleep(0.2)
        st = n.status()
        assert any(a["alert"] == "vault_full" for a in st["recent_alerts"])
        res = n.cli("vault", "verify")
        assert res.json["ok"], res
        # space comes back: capture resumes with a rescan, nothing written meanwhile is missed
        filler.unlink()
        deadline = time.monotonic() + 30
        while n.status().get("capture_paused"):
            assert time.monotonic() < deadline, n.status()
            time.sleep(0.2)
        n.sync()
        assert _vault_latest(home, tree) == _disk_hashes(tree)
        assert n.cli("vault", "verify").json["ok"]
        n.stop()


def test_queue_overflow_is_detected_and_rescanned(work):
    tree = work / "tree"
    knob = Path("/proc/sys/fs/fanotify/max_queued_events")
    old = knob.read_text()
    knob.write_text("64\n")  # applies to groups created from now on
    burst = f"import os\nfor i in range(4000):\n    open(os.path.join({str(tree)!r}, 'x%d' % i), 'wb').write(b'%d' % i)"
    try:
        with Nocry(work / "home") as n:
            n.start(tree)
            knob.write_text(old)
            # stall the whole daemon (its reader too) while a burst far larger than the queue lands
            os.kill(n.daemon.pid, signal.SIGSTOP)
            try:
                subprocess.run([sys.executable, "-c", burst], check=True)
            finally:
                os.kill(n.daemon.pid, signal.SIGCONT)
            n.sync()
            st = n.status()
            assert st["overflows"] >= 1, st
            assert any(a["alert"] == "overflow" for a in st["recent_alerts"])
            assert _vault_latest(work / "home", tree) == _disk_hashes(tree)
            n.stop()
    finally:
        knob.write_text(old)


def test_a_flood_that_keeps_overflowing_the_queue_gets_one_rescan_after_it_not_one_per_overflow(work):
    """A writer that overflows a small kernel queue again and again: the rescan waits until the
    overflows stop (each one mid-flood would be stale at once), then runs by itself, without a
    ``nocry sync`` asking for it, and leaves the vault equal to the disk."""
    tree = work / "tree"
    knob = Path("/proc/sys/fs/fanotify/max_queued_events")
    old = knob.read_text()
    knob.write_text("64\n")  # applies to groups created from now on
    try:
        with Nocry(work / "home") as n:
            n.start(tree, extra=("--mode", "observe"))  # the writer renames and deletes en masse
            knob.write_text(old)
            before = n.status()
            w = _writer(tree, 3.5, seed=5)
            # a flood the daemon cannot keep up with: it falls behind for 100 ms every 250 ms
            # (stopped), and each time the writer overflows the kernel's queue
            for _ in range(12):
                os.kill(n.daemon.pid, signal.SIGSTOP)
                try:
                    time.sleep(0.1)
                finally:
                    os.kill(n.daemon.pid, signal.SIGCONT)
                time.sleep(0.15)
            assert w.wait(timeout=60) == 0
            deadline = time.monotonic() + 10
            while (st := n.status())["rescans"] == before["rescans"] and time.monotonic() < deadline:
                time.sleep(0.2)
            overflows = st["overflows"] - before["overflows"]
            rescans = st["rescans"] - before["rescans"]
            assert overflows >= 10, st
            timeline = [line for line in n.log_path.read_text().splitlines() if "event=scan" in line or "event=overflow" in line]
            assert 1 <= rescans <= 2, (overflows, rescans, timeline)
            n.sync()
            assert _vault_latest(work / "home", tree) == _disk_hashes(tree)
            n.stop()
    finally:
        knob.write_text(old)


def test_a_rescan_leaves_what_the_events_named_to_the_process_that_wrote_it(work):
    """A change the events already named, still waiting for its capture (a writer that keeps the
    file open), is captured with its process before a rescan walks the tree: the rescan would
    store it as nobody's, and the capture after it would find nothing new to judge."""
    tree = work / "tree"
    doc = tree / "report.txt"
    doc.write_text("first draft\n")
    (work / "home").mkdir()
    (work / "home" / "config.toml").write_text("[capture]\ndebounce_ms = 5000\nmax_delay_ms = 30000\n")
    code = f"f = open({str(doc)!r}, 'r+')\nf.write('second draft, kept open\\n')\nf.flush()\nprint('written', flush=True)\ninput()"
    with Nocry(work / "home") as n:
        n.start(tree)
        writer = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert writer.stdout.readline().strip() == "written"
            time.sleep(0.5)  # the reader has the events; the capture waits for the writer
            n.sync(rescan=True)
            newest = n.cli("versions", doc).json["versions"][0]
            assert newest["reason"] == "event" and newest["subject"]["pid"] == writer.pid, newest
        finally:
            writer.kill()
            writer.wait()
        n.stop()


def test_events_piling_up_while_capture_is_stuck_are_bounded_and_nothing_is_missed(work):
    """``sensor.queue_size`` bounds the daemon's queue of events: with the capture loop stuck in a
    commit (another process holds the index's write lock) while a burst lands, the reader waits
    for room instead of queueing every event (a rescan during a big burst once queued a million,
    ~300 MB), the kernel's queue overflows, and the rescan that follows leaves the vault equal
    to the disk."""
    import sqlite3

    tree, home = work / "tree", work / "home"
    home.mkdir()
    (home / "config.toml").write_text("[sensor]\nqueue_size = 200\n")
    knob = Path("/proc/sys/fs/fanotify/max_queued_events")
    old = knob.read_text()
    burst = f"import os\nfor i in range(3000):\n    open(os.path.join({str(tree)!r}, 'b%d' % i), 'wb').write(b'%d' % i)"
    try:
        with Nocry(home) as n:
            knob.write_text("512\n")  # applies to groups created from now on: the daemon's
            n.start(tree)
            knob.write_text(old)
            con = sqlite3.connect(home / "vault" / "index.sqlite", timeout=5, isolation_level=None)
            con.execute("BEGIN EXCLUSIVE")
            try:
                (tree / "first.txt").write_bytes(b"its commit waits for the lock\n")
                time.sleep(1.0)  # captured at once, committed after a 20 ms lull: now stuck
                subprocess.run([sys.executable, "-c", burst], check=True)
                deadline = time.monotonic() + 30
                while not n.status()["backlog"]["reader_waits"]:
                    assert time.monotonic() < deadline, f"the reader never waited: {n.status()['backlog']}"
                    time.sleep(0.2)
            finally:
                con.execute("ROLLBACK")
                con.close()
            n.sync()
            st = n.status()
            assert st["overflows"] >= 1, st
            # at most one read's worth of events beyond the limit (a read holds <= 4096 events)
            assert 200 <= st["backlog"]["peak"] <= 200 + 4096, st["backlog"]
            assert st["state"] == "protecting" and st["capture_errors"] == 0, st
            assert _vault_latest(home, tree) == _disk_hashes(tree)
            n.stop()
    finally:
        knob.write_text(old)


def test_a_failed_index_commit_is_a_warning_and_a_rescan_not_a_crash(work):
    """Another process holds the vault index's write lock past SQLite's busy timeout (30 s): the
    daemon's commit fails, its open batch is dropped, and the rescan that follows stores the files'
    current state. Nothing is lost and the daemon goes on."""
    import sqlite3

    tree = work / "tree"
    with Nocry(work / "home") as n:
        n.start(tree)
        con = sqlite3.connect(work / "home" / "vault" / "index.sqlite", timeout=5, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")  # the daemon cannot commit until this ends
        try:
            (tree / "during.txt").write_bytes(b"written while the index was locked\n")
            deadline = time.monotonic() + 60
            while n.status()["capture_errors"] == 0:
                assert time.monotonic() < deadline, "the commit never failed"
                time.sleep(0.5)
        finally:
            con.execute("ROLLBACK")
            con.close()
        n.sync()
        st = n.status()
        assert st["state"] == "protecting" and st["rescans"] >= 2  # baseline + the rescan
        versions = n.cli("versions", tree / "during.txt", check=0).json["versions"]
        assert versions and versions[0]["size"] == len(b"written while the index was locked\n")
