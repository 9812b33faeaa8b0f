"""The responder against real processes: freeze a tree, prove it stops, release or kill it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from nocry.config import RespondConfig
from nocry.responder import FreezeRecord, Responder
from nocry.responder.procs import ProcSnapshot
from tests.kernel._require import require_root

pytestmark = pytest.mark.kernel

# a parent that forks two children; all three append to a counter file every 10 ms
TREE = """
import os, sys, time
out = sys.argv[1]
for _ in range(2):
    if os.fork() == 0:
        break
while True:
    with open(out, "a") as f:
        f.write("x")
    time.sleep(0.01)
"""


def _progress(path: Path, wait: float = 0.3) -> int:
    before = path.stat().st_size if path.exists() else 0
    time.sleep(wait)
    return path.stat().st_size - before


@pytest.fixture
def tree():
    require_root()
    d = Path(tempfile.mkdtemp())
    out = d / "counter"
    proc = subprocess.Popen([sys.executable, "-c", TREE, str(out)])
    time.sleep(0.3)
    yield proc, out
    for p in [proc.pid, *ProcSnapshot.take().descendants(proc.pid)]:
        try:
            os.kill(p, 18)  # SIGCONT
            os.kill(p, 9)
        except OSError:
            pass
    proc.wait()


@pytest.mark.parametrize("method", ["cgroup", "sigstop"])
def test_freeze_release_kill(tree, method):
    proc, out = tree
    cfg = RespondConfig(cgroup_root="auto" if method == "cgroup" else "/nonexistent")
    r = Responder(cfg)
    assert _progress(out) > 0
    rec = r.freeze(1, [proc.pid], [proc.pid])
    assert rec.method == method, rec
    assert len(rec.pids) == 3, rec
    assert rec.seconds < 0.5
    assert _progress(out) == 0, "frozen processes still write"
    # the record survives a round trip through JSON (the CLI acts on it without the daemon)
    rec = FreezeRecord.from_record(rec.to_record())
    assert r.release(rec) == []
    assert _progress(out) > 0, "released processes do not carry on"
    rec = r.freeze(2, [proc.pid], [proc.pid])
    assert r.kill(rec) == []
    proc.wait(5)
    time.sleep(0.2)
    assert _progress(out) == 0
    if method == "cgroup":
        assert not Path(rec.cgroup).exists(), "quarantine cgroup left behind"


def test_never_touches_pid1_itself_or_its_ancestors(tree):
    proc, _out = tree
    me = os.getpid()
    snap = ProcSnapshot.take()
    r = Responder(RespondConfig(), protected_pids={me, *snap.ancestors(me)})
    pids, refused = r.targets([1, me, snap.entries[me].ppid], [proc.pid], snap)
    assert 1 not in pids and me not in pids and snap.entries[me].ppid not in pids
    assert proc.pid in pids  # the offending process replaces the refused roots
    assert {p for p, _ in refused} >= {1, me}


def test_a_subtree_snapshot_finds_the_same_descendants_as_a_walk_of_all_of_proc(tree):
    """The responder looks up the tree it freezes from the roots down (each thread's children
    file) instead of reading every process: the same processes, and nothing outside the tree."""
    proc, _ = tree
    outsider = subprocess.Popen(["sleep", "30"])  # not in the tree: a child of this test
    try:
        whole = ProcSnapshot.take().descendants(proc.pid)
        sub = ProcSnapshot.subtree([proc.pid])
        assert len(whole) == 2
        assert sorted(sub.descendants(proc.pid)) == sorted(whole)
        assert set(sub.entries) == {proc.pid, *whole}
        assert sub.entry(proc.pid).start_time == ProcSnapshot.take().entry(proc.pid).start_time
        assert ProcSnapshot.subtree([999_999_999]).entries == {}
    finally:
        outsider.kill()
        outsider.wait()
