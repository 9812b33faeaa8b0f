"""Archivers and compressors: tar, gzip, zstd, xz, 7z on files and whole folders, including the
modes that replace the originals (``gzip -r``, ``zstd --rm``, ``tar --remove-files``, ``7z -sdel``)."""

from __future__ import annotations

from bench.benign.common import Workload

WORKLOADS = [
    Workload(
        "tar-create-extract", "archive",
        title="tar: archive two folders (plain, gzip), extract both into a new folder",
        script="""
mkdir -p Archives Restored
tar -cf Archives/Projects.tar Projects
tar -czf Archives/Finance.tar.gz Finance
tar -xf Archives/Projects.tar -C Restored
tar -xzf Archives/Finance.tar.gz -C Restored
""",
        needs=("tar", "gzip"), apt=("tar", "gzip"), quick=True, tested=True,
    ),
    Workload(
        "tar-extract-over", "archive",
        title="tar: restore a tarball (made outside the tree) over the existing folders",
        script="""
tar -cf "$W/snapshot.tar" Projects HR
tar -xf "$W/snapshot.tar"
""",
        needs=("tar",), apt=("tar",),
        note="GNU tar replaces an existing file by unlinking it and creating it again",
    ),
    Workload(
        "tar-remove-files", "archive",
        title="tar --remove-files: move old photo and mail folders into compressed archives",
        script="""
mkdir -p Archives
tar -czf Archives/Photos-2023.tar.gz --remove-files Photos/2023
tar -cJf Archives/Mail-Archive.tar.xz --remove-files Mail/Archive
""",
        needs=("tar", "gzip", "xz"), apt=("tar", "gzip", "xz-utils"), quick=True, tested=True,
    ),
    Workload(
        "gzip-r", "archive",
        title="gzip -r two folders in place (originals replaced by .gz), gunzip -r one back",
        script="""
gzip -r Projects/Atlas Mail/Sent
gunzip -r Projects/Atlas
""",
        needs=("gzip",), apt=("gzip",), quick=True, tested=True,
    ),
    Workload(
        "zstd-rm", "archive",
        title="zstd --rm on every file of a folder; a folder to .tar.zst",
        script="""
mkdir -p Archives
find Shared/Templates -type f -exec zstd -q --rm {} +
tar -cf - HR | zstd -q -T2 -o Archives/HR.tar.zst
""",
        needs=("zstd", "tar"), apt=("zstd",), quick=True, tested=True,
    ),
    Workload(
        "xz", "archive",
        title="xz: compress mails in place (originals replaced), a folder to .tar.xz, keep-mode copies",
        script="""
mkdir -p Archives
find Mail/Inbox -name '*.eml' -exec xz -q {} +
tar -cf - Legal | xz -T2 -q > Archives/Legal.tar.xz
xz -k -q Sales/Exports/*
""",
        needs=("xz", "tar"), apt=("xz-utils",),
    ),
    Workload(
        "7z", "archive",
        title="7z: archive a folder, archive another deleting the sources (-sdel), extract",
        script="""
mkdir -p Archives Restored
7z a -bd -bb0 Archives/Projects.7z Projects > /dev/null
7z a -bd -bb0 -sdel Archives/Photos-2024.7z Photos/2024 > /dev/null
7z x -bd -bb0 -oRestored Archives/Projects.7z > /dev/null
""",
        needs=("7z",), apt=("p7zip-full",),
    ),
]  # fmt: skip
