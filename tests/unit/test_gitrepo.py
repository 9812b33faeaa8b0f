"""The checkout rule's proof, against real repositories made by git."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nocry.analyzer.gitrepo import GitObjects

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

DOC = b"region,total\nnorth,12\nsouth,7\n"


def git(*args: str | os.PathLike) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *map(str, args)], check=True, capture_output=True)


def repo(tmp_path: Path, fmt: str = "sha1") -> Path:
    r = tmp_path / f"repo-{fmt}"
    git("init", "-q", f"--object-format={fmt}", r)
    (r / "data").mkdir()
    (r / "data" / "sales.csv").write_bytes(DOC)
    git("-C", r, "add", ".")
    git("-C", r, "commit", "-qm", "first")
    return r


def holds(g: GitObjects, path: Path, content: bytes, pieces: int = 1) -> bool | None:
    step = max(1, len(content) // pieces)
    return g.holds(os.fsencode(path), len(content), [content[i : i + step] for i in range(0, len(content), step)])


@pytest.mark.parametrize("fmt", ["sha1", "sha256"])
def test_a_committed_file_is_held_loose_and_after_gc_in_a_pack(tmp_path, fmt):
    r = repo(tmp_path, fmt)
    g = GitObjects()
    assert holds(g, r / "data" / "sales.csv", DOC) is True
    assert holds(g, r / "data" / "sales.csv", DOC + b"east,1\n") is False, "another content"
    git("-C", r, "gc", "-q")
    assert not list((r / ".git" / "objects").glob("??/*")), "every object is packed"
    assert holds(g, r / "data" / "sales.csv", DOC, pieces=3) is True
    assert holds(g, r / "data" / "gone.csv", b"never committed\n") is False
    g.close()


def test_a_fake_repository_holds_nothing_and_outside_any_repository_nothing_is_held(tmp_path):
    """``mkdir .git`` above the documents (the cheap way to look like a checkout) proves nothing."""
    fake = tmp_path / "fake"
    (fake / ".git" / "objects").mkdir(parents=True)
    (fake / ".git" / "config").write_bytes(b"[core]\n")
    (fake / "a.csv").write_bytes(DOC)
    g = GitObjects()
    assert holds(g, fake / "a.csv", DOC) is False
    (fake / ".git" / "config").unlink()
    assert holds(g, fake / "a.csv", DOC) is False, "a bare mkdir .git"
    assert holds(g, tmp_path / "elsewhere" / "a.csv", DOC) is False


def test_linked_worktrees_and_alternates_are_followed(tmp_path):
    r = repo(tmp_path)
    wt = tmp_path / "wt"
    git("-C", r, "worktree", "add", "-q", wt)
    assert (wt / ".git").is_file()
    shared = tmp_path / "shared"
    git("clone", "-q", "--shared", r, shared)
    assert (shared / ".git" / "objects" / "info" / "alternates").exists()
    g = GitObjects()
    assert holds(g, wt / "data" / "sales.csv", DOC) is True
    assert holds(g, shared / "data" / "sales.csv", DOC) is True


def test_another_version_control_system_or_a_huge_file_cannot_be_told(tmp_path):
    hg = tmp_path / "hgtree"
    (hg / ".hg").mkdir(parents=True)
    g = GitObjects(max_bytes=16)
    assert holds(g, hg / "a.csv", DOC) is None
    r = repo(tmp_path)
    assert holds(g, r / "data" / "sales.csv", DOC) is None, "above max_bytes"


def test_a_repository_made_after_a_miss_is_found(tmp_path):
    """A clone made a moment after a deletion outside any repository (nothing cached for it)."""
    g = GitObjects()
    later = tmp_path / "repo-sha1" / "data" / "sales.csv"
    assert holds(g, later, DOC) is False
    repo(tmp_path)
    assert holds(g, later, DOC) is True
