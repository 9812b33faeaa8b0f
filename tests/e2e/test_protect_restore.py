"""End to end: a real daemon watches a real tree; restores reproduce earlier moments exactly."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.harness import Nocry, diff_states, tree_state

pytestmark = pytest.mark.kernel


@pytest.fixture
def work():
    d = Path(tempfile.mkdtemp(prefix="nocry-e2e-"))
    (d / "tree").mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _write(path: Path | bytes, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def test_every_kind_of_change_is_captured_and_undone(work):
    tree = work / "tree"
    (tree / "docs").mkdir()
    _write(tree / "docs" / "a.txt", b"alpha\n" * 100)
    _write(tree / "docs" / "b.bin", os.urandom(300_000))
    (tree / "keep").mkdir()
    _write(tree / "keep" / "c.txt", b"gamma")
    with Nocry(work / "home") as n:
        n.start(tree)
        t0 = time.time_ns()
        s0 = tree_state(tree)
        time.sleep(0.01)
        # content edit, create, delete, file rename, directory rename, chmod, chown, utime
        _write(tree / "docs" / "a.txt", b"changed\n")
        _write(tree / "new.txt", b"created later")
        os.unlink(tree / "keep" / "c.txt")
        os.rename(tree / "docs" / "b.bin", tree / "docs" / "b.renamed")
        os.rename(tree / "docs", tree / "papers")
        os.chmod(tree / "papers" / "a.txt", 0o600)
        os.chown(tree / "new.txt", 1234, 4321)
        n.sync()
        t1 = time.time_ns()
        s1 = tree_state(tree)
        versions = n.cli("versions", tree / "papers" / "b.renamed", check=0).json["versions"]
        assert versions[0]["renamed_from"].endswith("/docs/b.renamed")
        res = n.cli("restore", tree, "--at", str(t0), check=0)
        assert res.json["failed"] == 0
        assert diff_states(s0, tree_state(tree)) == []
        # the restore itself is undoable
        res = n.cli("restore", tree, "--at", str(res.json["undo_at_ns"]), check=0)
        assert diff_states(s1, tree_state(tree)) == []
        # and restoring the same moment twice is harmless
        n.cli("restore", tree, "--at", str(t1), check=0)
        assert diff_states(s1, tree_state(tree)) == []
        n.stop()
    # works without the daemon too
    n2 = Nocry(work / "home")
    res = n2.cli("restore", tree, "--at", str(t0), check=0)
    assert diff_states(s0, tree_state(tree)) == []
    dry = n2.cli("restore", tree, "--at", str(t1), "--dry-run", check=0).json
    assert dry["dry_run"] and dry["counts"].get("write", 0) >= 1
    assert diff_states(s0, tree_state(tree)) == []  # dry run changed nothing


_OPS = ["write", "append", "create", "delete", "rename", "mkdir", "rmdir", "chmod", "chown", "mvdir", "symlink", "truncate"]


def _random_op(rng: random.Random, tree: Path, counter: list[int]) -> None:
    files = [p for p in tree.rglob("*") if p.is_file() and not p.is_symlink()]
    dirs = [tree] + [p for p in tree.rglob("*") if p.is_dir() and not p.is_symlink()]
    op = rng.choice(_OPS)
    counter[0] += 1
    name = f"n{counter[0]}" + rng.choice(["", ".txt", " space", ".docx"])
    if op in ("create", "write", "append", "truncate") and (op == "create" or not files):
        _write(rng.choice(dirs) / name, rng.randbytes(rng.choice([0, 1, 100, 5000, 70_000])))
    elif op == "write":
        _write(rng.choice(files), rng.randbytes(rng.choice([10, 2000, 90_000])))
    elif op == "append":
        with open(rng.choice(files), "ab") as f:
            f.write(rng.randbytes(500))
    elif op == "truncate":
        os.truncate(rng.choice(files), rng.randint(0, 50))
    elif op == "delete" and files:
        rng.choice(files).unlink()
    elif op == "rename" and files:
        src = rng.choice(files)
        os.rename(src, rng.choice(dirs) / name)
    elif op == "mkdir":
        (rng.choice(dirs) / name).mkdir()
    elif op == "rmdir" and len(dirs) > 1:
        shutil.rmtree(rng.choice(dirs[1:]))
    elif op == "chmod" and files:
        os.chmod(rng.choice(files), rng.choice([0o600, 0o644, 0o755, 0o640]))
    elif op == "chown" and files:
        os.chown(rng.choice(files), rng.randint(0, 2000), rng.randint(0, 2000))
    elif op == "mvdir" and len(dirs) > 1:
        src = rng.choice(dirs[1:])
        dst_parent = rng.choice([d for d in dirs if not (d == src or src in d.parents)])
        os.rename(src, dst_parent / name)
    elif op == "symlink":
        os.symlink(rng.choice(["../x", "/etc/passwd", name]), rng.choice(dirs) / (name + ".lnk"))


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1))
def test_random_operations_restore_to_any_moment(seed):
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="nocry-prop-"))
    tree = work / "tree"
    tree.mkdir()
    try:
        for i in range(15):
            _write(tree / f"f{i}.txt", rng.randbytes(rng.randint(0, 20_000)))
        (tree / "sub").mkdir()
        counter = [0]
        moments: list[tuple[int, dict]] = []
        with Nocry(work / "home") as n:
            n.start(tree)
            moments.append((time.time_ns(), tree_state(tree)))
            for _round in range(4):
                for _ in range(rng.randint(3, 12)):
                    _random_op(rng, tree, counter)
                n.sync()
                moments.append((time.time_ns(), tree_state(tree)))
                time.sleep(0.005)
            order = list(range(len(moments)))
            rng.shuffle(order)
            for i in order:
                t, want = moments[i]
                res = n.cli("restore", tree, "--at", str(t))
                assert res.code == 0, res
                problems = diff_states(want, tree_state(tree))
                assert problems == [], f"seed {seed}, moment {i}: {problems[:5]}"
                n.sync()
            n.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_odd_names_sparse_hardlinks_symlinks(work):
    tree = work / "tree"
    odd = [b"caf\xe9-latin1.txt", b"line\nbreak.txt", b"  spaces  .doc", b"\xff\xfe\xfd"]
    for name in odd:
        _write(os.path.join(bytes(tree), name), name * 10)
    outside = work / "outside.txt"
    _write(outside, b"must never be touched")
    os.symlink(outside, tree / "link-out")
    os.symlink("link-target-missing", tree / "dangling")
    _write(tree / "hard1", b"linked content")
    os.link(tree / "hard1", tree / "hard2")
    with Nocry(work / "home") as n:
        n.start(tree)
        sparse = tree / "sparse.img"
        with open(sparse, "wb") as f:
            f.truncate(1 << 30)
            f.seek(512 << 20)
            f.write(b"middle")
        n.sync(timeout=300)
        t0 = time.time_ns()
        s0 = tree_state(tree)
        stored = n.status()["vault"]["bytes_stored"]
        assert stored < 64 << 20, f"a 1 GiB sparse file took {stored} bytes in the vault"
        # destroy everything
        for name in os.listdir(bytes(tree)):
            p = os.path.join(bytes(tree), name)
            if os.path.islink(p) or os.path.isfile(p):
                os.unlink(p)
        n.sync()
        res = n.cli("restore", tree, "--at", str(t0), timeout=600)
        assert res.code == 0, res
        assert diff_states(s0, tree_state(tree)) == []
        assert os.stat(tree / "hard1").st_ino == os.stat(tree / "hard2").st_ino
        assert os.readlink(tree / "link-out") == os.fspath(outside)
        assert outside.read_bytes() == b"must never be touched"
        assert os.stat(sparse).st_blocks * 512 < 16 << 20, "restored sparse file is no longer sparse"
        n.stop()


def test_unreadable_file_is_a_warning_not_a_crash(work):
    """Root reads everything, so the daemon is started without the capabilities that let root read
    files it does not own (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH). Without the second the sensor
    cannot resolve file handles either, so every change arrives as 'unresolved' and is found by a
    rescan: slower, but nothing is missed and the unreadable file is only a warning."""
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed for this test")
    tree = work / "tree"
    _write(tree / "secret", b"nobody may read this")
    os.chown(tree / "secret", 4242, 4242)
    os.chmod(tree / "secret", 0)
    _write(tree / "fine.txt", b"readable")
    home = work / "home"
    log = open(work / "d.log", "wb")
    proc = subprocess.Popen(
        ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search", "--", os.sys.executable, "-m", "nocry", "--home", str(home), "protect", str(tree), "--foreground"],
        stdout=log,
        stderr=log,
    )
    n = Nocry(home)
    n.daemon = proc
    n.logf = log
    n.log_path = work / "d.log"
    try:
        n.wait_state("protecting", 60)
        _write(tree / "fine.txt", b"still captured")
        n.sync()
        st = n.status()
        assert st["state"] == "protecting"
        assert st["unreadable"] >= 1
        assert b"event=unreadable" in (work / "d.log").read_bytes()
        versions = n.cli("versions", tree / "fine.txt", check=0).json["versions"]
        assert len(versions) == 2
    finally:
        n.stop()


def test_a_file_being_rewritten_is_not_captured_half_written(work):
    """A save lands, and within the debounce another writer truncates the file and takes its time
    to write the new content (an image re-encoded in place): the capture that the first save made
    due must wait for the second writer's close, never store the emptied file."""
    tree = work / "tree"
    with Nocry(work / "home") as n:
        n.start(tree)
        for i in range(3):
            path = tree / f"photo{i}.jpg"
            _write(path, b"\xff\xd8\xff\xe0" + os.urandom(50_000))  # first save: captured at once
            time.sleep(0.03)
            _write(path, b"\xff\xd8\xff\xe0" + os.urandom(40_000))  # a second save makes a capture due in 100 ms
            time.sleep(0.02)
            with open(path, "r+b") as f:
                f.truncate(0)  # the third writer empties the file ...
                f.flush()
                time.sleep(0.4)  # ... encodes for longer than the debounce ...
                f.write(b"\xff\xd8\xff\xe0" + os.urandom(30_000))  # ... and writes
        n.sync()
        for i in range(3):
            versions = n.cli("versions", tree / f"photo{i}.jpg", check=0).json["versions"]
            sizes = [v["size"] for v in versions]
            assert 0 not in sizes, sizes
            assert sizes[0] == 30_004, sizes


def test_a_delete_is_recorded_within_its_own_debounce_and_unlink_then_create_is_a_rewrite(work):
    """A deletion reaches the vault (and the detector) after ``delete_debounce_ms``, not after
    the close-write debounce; a file unlinked and created again at once (tar or git replacing
    it) is one rewrite, with no deletion recorded in between."""
    tree = work / "tree"
    for i in range(20):
        _write(tree / f"gone{i}.txt", b"to be deleted %d\n" % i)
        _write(tree / f"kept{i}.txt", b"old content %d\n" % i)
    (work / "home").mkdir()
    # a close-write debounce far longer than the wait below: only the delete debounce can explain
    # a tombstone that is there in time
    (work / "home" / "config.toml").write_text("[canary]\nenabled = false\n[capture]\ndebounce_ms = 5000\nmax_delay_ms = 10000\ndelete_debounce_ms = 10\n")
    with Nocry(work / "home") as n:
        n.start(tree)
        for i in range(20):
            os.unlink(tree / f"kept{i}.txt")
            _write(tree / f"kept{i}.txt", b"new content %d\n" % i)
        os.unlink(tree / "gone0.txt")
        deadline = time.monotonic() + 2.0  # well under the 5 s close-write debounce
        while time.monotonic() < deadline:
            if n.status().get("tombstones_stored"):
                break
            time.sleep(0.05)
        assert n.status().get("tombstones_stored") == 1, n.status()
        n.sync()
        for i in range(20):
            versions = n.cli("versions", tree / f"kept{i}.txt", check=0).json["versions"]
            assert all(v["kind"] != "tombstone" for v in versions), versions
            assert versions[0]["size"] == len(b"new content %d\n" % i), versions
        versions = n.cli("versions", tree / "gone0.txt", check=0).json["versions"]
        assert versions[0]["kind"] == "tombstone", versions


def test_a_paced_writer_shares_commits_and_a_lone_save_is_committed_at_once(work):
    """A writer with short lulls between files (a parallel build) gets a vault commit, with its
    fsyncs, at most every ``group_commit_ms``, not one per lull; a lone save after a quiet while
    is committed right after the lull, not ``group_commit_ms`` later."""
    tree = work / "tree"
    (work / "home").mkdir()
    (work / "home" / "config.toml").write_text("[canary]\nenabled = false\n[capture]\ngroup_commit_ms = 3000\n")
    with Nocry(work / "home") as n:
        n.start(tree)
        time.sleep(3.5)  # the start's own commits are more than group_commit_ms ago
        c0 = n.status()["vault_commits"]
        t0 = time.monotonic()
        _write(tree / "lone.txt", b"a lone save\n")
        while n.status()["vault_commits"] == c0 and time.monotonic() - t0 < 10:
            time.sleep(0.02)
        lone_s = time.monotonic() - t0
        assert lone_s < 2.0, lone_s  # after the 20 ms lull, far sooner than the 3 s group commit
        assert n.cli("versions", tree / "lone.txt").json["versions"]
        time.sleep(3.5)  # whatever followed the lone save is committed by now
        c1 = n.status()["vault_commits"]
        # 30 files 60 ms apart (~1.8 s): every gap is a lull of more than 20 ms
        for i in range(30):
            _write(tree / f"paced{i}.txt", b"paced %d\n" % i)
            time.sleep(0.06)
        st = n.status()
        assert st["versions_stored"] >= 31, st
        # the first file's lull commits at once, the rest wait for group_commit_ms: a commit per
        # lull would have made about thirty
        assert st["vault_commits"] - c1 <= 2, st
        n.sync()
        for i in range(30):
            assert n.cli("versions", tree / f"paced{i}.txt").json["versions"]
