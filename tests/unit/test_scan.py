"""The tree walk and the rescan's reconciliation of the vault with the disk (capture/scan.py).

The rescan merges two path-ordered streams (the walk, the index), so the walk's order must be the
index's: byte order of the whole path. Names are chosen to break a plain sorted-per-directory walk:
``a`` is a directory and ``a-b``/``a.c`` sort between ``a`` and ``a/...`` in byte order.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from nocry.capture.scan import Excluder, ScanReport, rescan_tree, walk_tree
from nocry.config import VaultConfig
from nocry.vault import KIND_TOMBSTONE, Vault
from tests.kernel._require import skip_or_fail

TRICKY = [b"a", b"a-b", b"a.c", b"a0", b"A", b"b\nnewline", b"caf\xe9-latin1", b"\xff\xfe", b"z"]


def make_tree(root: Path) -> list[bytes]:
    """Directories and files whose names interleave with the directories' descendants."""
    r = os.fsencode(root)
    os.makedirs(r, exist_ok=True)
    made = [r]
    for top in TRICKY:
        d = r + b"/" + top
        if top in (b"a", b"a.c", b"\xff\xfe"):
            os.mkdir(d)
            made.append(d)
            for sub in (b"-", b"x", b"x-y", b"\x01ctl", b"deep"):
                p = d + b"/" + sub
                if sub == b"deep":
                    os.mkdir(p)
                    made.append(p)
                    for leaf in (b"1", b"1-1", b"10"):
                        open(p + b"/" + leaf, "wb").write(leaf)
                        made.append(p + b"/" + leaf)
                else:
                    open(p, "wb").write(sub)
                    made.append(p)
        else:
            open(d, "wb").write(top)
            made.append(d)
    return made


def walked(root: Path, excluded=lambda p: False) -> tuple[list[bytes], ScanReport]:
    report = ScanReport(tree=os.fsencode(root))
    return [p for p, _ in walk_tree(os.fsencode(root), excluded, report)], report


def test_the_walk_yields_every_object_in_byte_order_of_the_whole_path(tmp_path: Path) -> None:
    made = make_tree(tmp_path / "t")
    paths, report = walked(tmp_path / "t")
    assert paths == sorted(made)
    assert len(paths) == len(set(paths))
    assert report.unreadable == [] and report.other_fs == []


def test_the_walk_never_follows_a_symlink_and_skips_what_is_excluded(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("not in the tree")
    t = tmp_path / "t"
    (t / "keep").mkdir(parents=True)
    (t / "keep" / "f").write_text("f")
    (t / "cache").mkdir()
    (t / "cache" / "junk").write_text("j")
    (t / "link").symlink_to(outside)
    ex = Excluder([os.fsencode(t)], ["cache"])
    paths, _ = walked(t, ex)
    rel = [p[len(os.fsencode(t)):] for p in paths]
    assert rel == [b"", b"/keep", b"/keep/f", b"/link"]


def mkvault(tmp_path: Path) -> Vault:
    return Vault(tmp_path / "vault", VaultConfig(reserve_mib=0), create=True)


def state(v: Vault, root: Path) -> dict[bytes, bytes | None]:
    return {r.path: r.content for r in v.latest_under(os.fsencode(root)) if r.exists}


def test_a_rescan_stores_what_changed_and_tombstones_what_is_gone_and_nothing_else(tmp_path: Path) -> None:
    t = tmp_path / "t"
    t.mkdir()
    made = make_tree(t)
    v = mkvault(tmp_path)
    root = os.fsencode(t)
    never = lambda p: False  # noqa: E731
    first = rescan_tree(v, root, never, reason="baseline", batch_max_files=4)
    assert first.seen == len(made) and first.stored == len(made) and first.tombstoned == 0
    assert sorted(state(v, t)) == sorted(made)

    again = rescan_tree(v, root, never, reason="rescan", batch_max_files=4)
    assert (again.seen, again.stored, again.tombstoned) == (len(made), 0, 0)

    # a directory removed whose siblings sort between it and its descendants; a file rewritten
    # (new size), one added inside a kept directory, one removed at the end of the order
    for leaf in (b"1", b"1-1", b"10"):
        os.unlink(root + b"/a/deep/" + leaf)
    os.rmdir(root + b"/a/deep")
    with open(root + b"/a.c/x", "wb") as f:
        f.write(b"rewritten, longer than before")
    with open(root + b"/\xff\xfe/new", "wb") as f:
        f.write(b"new")
    os.unlink(root + b"/z")
    gone = {root + b"/a/deep", root + b"/a/deep/1", root + b"/a/deep/1-1", root + b"/a/deep/10", root + b"/z"}

    rep = rescan_tree(v, root, never, reason="rescan", batch_max_files=2)
    assert rep.tombstoned == len(gone)
    # the rewritten file, the new one, and the directories whose entries changed
    changed = {root + b"/a.c/x", root + b"/\xff\xfe/new", root + b"/a", root + b"/\xff\xfe", root}
    assert rep.stored == len(changed)
    now = state(v, t)
    assert set(now) == (set(made) - gone) | {root + b"/\xff\xfe/new"}
    for p in gone:
        assert v.latest(p).kind == KIND_TOMBSTONE
    assert b"".join(v.read_content(v.latest(root + b"/a.c/x").content)) == b"rewritten, longer than before"
    # and the kept descendants of the directories around the removed one were not disturbed
    for p in (root + b"/a-b", root + b"/a/x-y", root + b"/a.c/deep/10"):
        assert len(v.history(p)) == 1


def baselined(tmp_path: Path, files: dict[str, str]) -> tuple[Path, Vault, bytes]:
    """A tree holding ``files`` (relative path -> text) and a vault holding its baseline."""
    t = tmp_path / "t"
    for rel, text in files.items():
        (t / rel).parent.mkdir(parents=True, exist_ok=True)
        (t / rel).write_text(text)
    v = mkvault(tmp_path)
    root = os.fsencode(t)
    rescan_tree(v, root, lambda p: False, reason="baseline")
    return t, v, root


def test_a_rescan_does_not_tombstone_what_the_configuration_now_excludes(tmp_path: Path) -> None:
    """Excluded paths stay as they are in the vault: only proof of absence makes a tombstone."""
    t, v, root = baselined(tmp_path, {"cache/junk": "j", "doc": "d"})
    ex = Excluder([root], ["cache"])
    rep = rescan_tree(v, root, ex, reason="rescan")
    assert rep.tombstoned == 0
    assert v.latest(root + b"/cache/junk").exists


def test_a_rescan_neither_enters_nor_tombstones_another_filesystem(tmp_path: Path) -> None:
    """A file the vault knows under a directory that has since become a mount point: the walk
    yields the mount point, records it, does not enter it, and the file is not declared gone."""
    if os.geteuid() != 0:
        skip_or_fail("mounting a tmpfs needs root")
    t, v, root = baselined(tmp_path, {"mnt/hidden": "on the tree's filesystem, under the mount",
                                      "mnt-side": "a sibling that sorts between mnt and mnt/..."})
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(t / "mnt")], check=True)
    try:
        (t / "mnt" / "other").write_text("on the tmpfs")
        rep = rescan_tree(v, root, lambda p: False, reason="rescan")
    finally:
        subprocess.run(["umount", "-l", str(t / "mnt")], check=True)
    assert rep.other_fs == [root + b"/mnt"]
    assert rep.tombstoned == 0
    assert v.latest(root + b"/mnt/hidden").exists
    assert v.latest(root + b"/mnt/other") is None
