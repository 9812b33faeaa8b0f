"""Real programs doing ordinary work inside a protected tree raise no incident (enforce mode).

A representative, fast subset of the benign workload suite (bench/benign/, the scripts are
shared): tar create + extract, tar --remove-files, gzip -r, zstd --rm, gpg on one file, cp -a and
rsync into the tree, git clone + commit + gc + checkout of a generated 300-commit repository,
SQLite inserts + VACUUM, an editor's atomic save, rm -rf of a build directory made before
protection, and reorganising folders with mv. Each test copies a fresh realistic tree
(``nocry drill init --files 300 --seed 1``), lets the workload prepare what it must find there
(before protection), starts a real daemon with the default configuration (decoys on), runs the
workload's script as its own session, syncs, and asserts that ``nocry incidents`` is empty.

If nocry freezes the workload (a false alarm), the test releases it so that it can finish and
fails with the evidence: the actor and every indicator that fired (name, count, weight, example).

Programs missing -> skip with the apt package to install (a failure under
NOCRY_TEST_DISALLOW_SKIP=1, see tests/conftest.py). Debian packages these tests use beyond a
minimal Debian 12: xz-utils, zstd, gnupg, rsync, git, make, gcc, libc6-dev.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest

from bench.benign import archive, backup, build, copies, crypto, data, media, office, userops, vcs
from bench.benign.common import Assets, Missing, describe_incidents, execute, fresh_tree, incident_evidence, missing_programs, prepare, remove_quarantine
from tests.e2e.harness import Nocry

pytestmark = pytest.mark.kernel

WORKLOADS = {w.name: w for fam in (archive, crypto, copies, backup, vcs, build, office, media, data, userops) for w in fam.WORKLOADS}
TESTED = [name for name, w in WORKLOADS.items() if w.tested]


@pytest.fixture(scope="module")
def assets():
    d = Path(tempfile.mkdtemp(prefix="nocry-benign-assets-"))
    yield Assets(d)
    shutil.rmtree(d, ignore_errors=True)


def test_the_subset_is_the_representative_one():
    assert set(TESTED) == {
        "tar-create-extract", "tar-remove-files", "gzip-r", "zstd-rm", "gpg-symmetric", "cp-a", "rsync",
        "git-clone-commit-gc", "sqlite", "editor-atomic-save", "rm-rf-build", "mass-mv", "mogrify-resize",
    }  # fmt: skip


@pytest.mark.parametrize("name", TESTED)
def test_real_program_raises_no_incident(name, assets):
    wl = WORKLOADS[name]
    miss = missing_programs(wl)
    if miss:
        pytest.skip(f"{name}: {', '.join(miss)} not installed (apt-get install {' '.join(wl.apt)})")
    work = Path(tempfile.mkdtemp(prefix=f"nocry-benign-{name}-"))
    pid = 0
    try:
        try:
            tree = fresh_tree(assets, work / "tree")
            env = prepare(wl, tree, assets, work / "scratch")
        except Missing as exc:
            pytest.skip(f"{name}: {exc}")
        with Nocry(work / "home") as n:
            n.start(tree)
            pid = n.daemon.pid
            n.sync()
            ex = execute(wl, tree, env, work / "workload.log", daemon_pid=pid, home=n.home, timeout=120)
            n.sync()
            time.sleep(0.3)
            evidence = incident_evidence(n.home)
            n.stop()
        assert ex.rc == 0 and not ex.timed_out, f"{name}: the workload itself failed (exit {ex.rc}): {ex.log_tail}"
        assert not evidence, f"{name}: false alarm(s) in enforce mode:\n{describe_incidents(evidence)}"
    finally:
        if pid:
            remove_quarantine(pid)
        shutil.rmtree(work, ignore_errors=True)
