"""Copying trees into the protected area: ``cp -a`` and ``rsync -a`` of a colleague's share (another
realistic tree, outside), and updating an existing mirror inside the tree with a newer version of
that share (30 files changed, 5 new, 3 deleted: ``rsync --delete`` removes those 3)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from bench.benign.common import TREE_FILES, Assets, Workload, asset, nocry, sh

_TEXTY = {".txt", ".md", ".csv", ".eml", ".py", ".c", ".h"}


def _drill_tree(assets: Assets, d: Path, seed: int) -> None:
    shutil.rmtree(d)
    rc, _, out = nocry(assets.root / ".unused-home", "drill", "init", str(d), "--files", str(TREE_FILES), "--seed", str(seed))
    if rc != 0:
        raise RuntimeError(f"nocry drill init failed: {out}")
    shutil.rmtree(assets.root / ".unused-home", ignore_errors=True)
    for p in d.glob(".nocry-drill*"):  # a colleague's share is not a drill tree
        shutil.rmtree(p) if p.is_dir() else p.unlink()


@asset("import")
def _import(assets: Assets, d: Path) -> None:
    """A colleague's share: another realistic tree (drill corpus, seed 2), outside every tree."""
    _drill_tree(assets, d, 2)


@asset("import-v2")
def _import_v2(assets: Assets, d: Path) -> None:
    """The same share a week later: 30 files changed, 5 new, 3 deleted (in 3 folders)."""
    base = assets.get("import")
    other = assets.root / ".import-v2-donor"
    other.mkdir(exist_ok=True)
    _drill_tree(assets, other, 3)
    shutil.rmtree(d)
    sh(["cp", "-a", str(base), str(d)])
    rng = random.Random(5)
    files = sorted(p for p in d.rglob("*") if p.is_file())
    donors: dict[str, list[Path]] = {}
    for p in sorted(other.rglob("*")):
        if p.is_file():
            donors.setdefault(p.suffix.lower(), []).append(p)
    for p in rng.sample(files, 30):
        if p.suffix.lower() in _TEXTY:
            with open(p, "a", encoding="utf-8") as f:
                f.write("\n" + "\n".join(f"update {i}: figures checked again, see the new plan" for i in range(rng.randint(2, 20))) + "\n")
        elif donors.get(p.suffix.lower()):
            shutil.copyfile(rng.choice(donors[p.suffix.lower()]), p)
    for i, src in enumerate(rng.sample(sorted(x for v in donors.values() for x in v), 5)):
        dst = rng.choice([q.parent for q in files]) / f"new-{i} {src.name}"
        shutil.copyfile(src, dst)
    gone_dirs: set[Path] = set()
    for p in rng.sample(files, 40):
        if p.exists() and p.parent not in gone_dirs and len(gone_dirs) < 3:
            gone_dirs.add(p.parent)
            p.unlink()
    shutil.rmtree(other)


def _pre_mirror(tree: Path, assets: Assets, scratch: Path) -> None:
    """Last week's mirror of the share, already in the tree when nocry starts."""
    sh(["cp", "-a", str(assets.get("import")), str(tree / "Mirror")])


WORKLOADS = [
    Workload(
        "cp-a", "copy",
        title="cp -a a 300-file share into the tree; cp -a its newer version over last week's copy",
        script="""
cp -a "$A/import/." Imported/
cp -a "$A/import-v2/." Mirror/
""",
        needs=("cp",), apt=("coreutils",), assets=("import", "import-v2"), pre=_pre_mirror, quick=True, tested=True,
    ),
    Workload(
        "rsync", "copy",
        title="rsync -a a 300-file share into the tree; rsync -a --delete its newer version onto last week's mirror",
        script="""
rsync -a "$A/import/" Imported/
rsync -a --delete "$A/import-v2/" Mirror/
""",
        needs=("rsync",), apt=("rsync",), assets=("import", "import-v2"), pre=_pre_mirror, quick=True, tested=True,
        note="--delete removes the 3 files deleted at the source (3 documents in 3 folders)",
    ),
]  # fmt: skip
