"""Backup programs whose repository lives INSIDE the protected tree: restic and borg. init, a
backup, some ordinary edits, a second backup, then prune (forget --prune / prune + compact) and
check. Caches and configs go to $W (outside the tree), like a user's ~/.cache."""

from __future__ import annotations

from bench.benign.common import Workload

#: ordinary edits between two backups: appends, an in-place sed, a new file, a deleted temp file
_EDITS = """
for f in Notes/*.txt Notes/*.md; do printf 'Reviewed on 2025-11-29\\n' >> "$f"; done
sed -i 's/the/THE/' Mail/Inbox/*.eml
cp "Finance/2025/$(ls Finance/2025 | head -1)" "Finance/2025/copy for review.bin"
"""

WORKLOADS = [
    Workload(
        "restic", "backup",
        title="restic: init a repo in the tree, backup, edits, backup, forget --prune, check",
        script=f"""
export RESTIC_PASSWORD=benign RESTIC_CACHE_DIR="$W/restic-cache"
R=Backups/restic
mkdir -p Backups
restic -r $R init --repository-version 2 -q
restic -r $R backup -q --compression auto Projects Finance HR Legal Mail Notes
{_EDITS}
restic -r $R backup -q --compression auto Projects Finance HR Legal Mail Notes
restic -r $R forget -q --keep-last 1 --prune
restic -r $R check -q
""",
        needs=("restic", "sed"), apt=("restic",), runs=3, timeout=900,
    ),
    Workload(
        "borg", "backup",
        title="borg: init a repo in the tree, create, edits, create, prune + compact, check",
        script=f"""
export BORG_PASSPHRASE=benign BORG_BASE_DIR="$W/borg" BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
R=Backups/borg
mkdir -p Backups
borg init -e repokey $R
borg create --compression zstd,3 $R::one Projects Finance HR Legal Mail Notes
{_EDITS}
borg create --compression zstd,3 $R::two Projects Finance HR Legal Mail Notes
borg prune --keep-last 1 $R
borg compact $R
borg check $R
""",
        needs=("borg", "sed"), apt=("borgbackup",), runs=3, timeout=900,
    ),
]  # fmt: skip
