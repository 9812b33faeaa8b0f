"""What a user does by hand: an editor's atomic save (temp file, fsync, rename over; three rounds
of autosave over 40 documents), real vim saving 20 files with its default settings (swap file,
backup-by-rename), and reorganising folders with mv (renaming folders, moving many files)."""

from __future__ import annotations

from bench.benign.common import Workload

_ATOMIC_SAVE = r'''
"$PY" - <<'PYEOF'
import os, tempfile
files = []
for dirpath, dirs, names in os.walk("."):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    files += [os.path.join(dirpath, n) for n in sorted(names) if n.rsplit(".", 1)[-1] in ("txt", "md", "csv", "eml", "py", "c", "h")]
files = files[:40]
for rnd in range(3):
    for p in files:
        with open(p, "rb") as f:
            data = f.read()
        data += b"\nEdited in round %d.\n" % rnd
        st = os.stat(p)
        d, name = os.path.split(p)
        fd, tmp = tempfile.mkstemp(prefix="." + name + ".", suffix="~", dir=d)   # like gedit / VS Code / Emacs
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, st.st_mode & 0o7777)
        os.replace(tmp, p)
        dfd = os.open(d, os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)
print(len(files), "files saved 3 times")
PYEOF
'''

_MASS_MV = r'''
mkdir -p "Archive/Photos" "Archive/Mail" "Mail/All"
mv Photos/2023 "Archive/Photos/2023"
mv "Projects/Atlas" "Projects/Atlas (closed 2025)"
mv Sales "Sales and Marketing"
mv HR/Payslips "HR/Payroll"
find Mail -name '*.eml' ! -path 'Mail/All/*' | sort | while IFS= read -r f; do
  d=$(dirname "$f"); d=${d#Mail/}; mv "$f" "Mail/All/${d//\//-} - $(basename "$f")"
done
find Mail -mindepth 1 -type d -empty -delete
for f in Finance/2024/*; do mv "$f" "Finance/2024/2024 - $(basename "$f")"; done
for f in Notes/*.txt; do mv "$f" "${f%.txt}.md"; done
mkdir -p "Users/Anna Adams/Old"
find "Users/Anna Adams" -mindepth 1 -maxdepth 1 ! -name Old -exec mv -t "Users/Anna Adams/Old" {} +
mv Shared/Templates Shared/templates-2025
'''

WORKLOADS = [
    Workload(
        "editor-atomic-save", "userops",
        title="an editor's atomic save (temp, fsync, rename over) of 40 text files, 3 rounds",
        script=_ATOMIC_SAVE,
        needs=(), apt=(), quick=True, tested=True,
    ),
    Workload(
        "vim-save", "userops",
        title="vim (defaults: swap file, writebackup) editing and saving 20 text files",
        script=r"""
find . -path ./.nocry-drill.d -prune -o -type f \( -name '*.txt' -o -name '*.md' -o -name '*.py' \) -print | sort | head -20 > "$W/vimfiles"
while IFS= read -r f; do
  vim -N -i NONE -es -c 'normal! Go' -c 'call setline(".", "Edited with vim.")' -c 'wq' "$f" < /dev/null
done < "$W/vimfiles"
""",
        needs=("vim",), apt=("vim",),
    ),
    Workload(
        "mass-mv", "userops",
        title="reorganising with mv: move/rename 6 folders, 37 mails from 12 folders into one under new names, prefix 10 reports, 6 notes .txt -> .md",
        script=_MASS_MV,
        needs=("mv",), apt=("coreutils",), quick=True, tested=True,
    ),
]  # fmt: skip
