"""Fast, deterministic generator of a big tree of small files (pure Python, several processes).

    .venv/bin/python bench/scale/gen.py DIR --files 1000000 [--seed 1] [--procs 4]

A home directory's worth of small files, as ``find ~ -size -4k`` shows on a developer's machine:

- sizes log-uniform between 100 B and 4 KiB (median ~640 B);
- about 200 files per directory on average (30..400, varying), in three levels
  ``area/project/part`` with word-like names (``docs/oval-fable/2019``, ``src/kelp_mirth/lib``);
- names and extensions by kind: text and notes (.txt .md .csv .log .json .yaml), source (.py .c .h
  .js .go .rs .sh), documents (.docx .odt .pdf .xlsx: half text, half random), and ~10 % random
  binaries (.jpg .png .gz .bin);
- every file is unique (its first line names its path and number), so the vault cannot dedup one
  file against another: each file costs a chunk, an object and a version.

The content comes from two 1 MiB pools (text, source) built once from bench/core's generator and
sliced at random offsets, so writing 1,000,000 files is bound by the filesystem, not by Python.
Directories are split between worker processes; the same seed gives the same tree.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))

from common import VOCAB, Gen  # noqa: E402

MIN_SIZE = 100
MAX_SIZE = 4096
AREAS = ["docs", "src", "notes", "photos", "projects", "data", "mail", "work", "music", "backup", "books", "config"]
KINDS = [  # (kind, weight, extensions)
    ("text", 0.40, [".txt", ".md", ".csv", ".log", ".json", ".yaml"]),
    ("code", 0.35, [".py", ".c", ".h", ".js", ".go", ".rs", ".sh"]),
    ("doc", 0.15, [".docx", ".odt", ".pdf", ".xlsx"]),
    ("binary", 0.10, [".jpg", ".png", ".gz", ".bin"]),
]
_CUM_KIND = []
_acc = 0.0
for _k, _w, _e in KINDS:
    _acc += _w
    _CUM_KIND.append(_acc)

_POOL: dict[str, bytes] = {}


def _pools(seed: int) -> dict[str, bytes]:
    if not _POOL:
        g = Gen(seed)
        _POOL["text"] = g.text(1 << 20)
        _POOL["code"] = g.code(1 << 20)
    return _POOL


def layout(files: int, seed: int) -> list[tuple[str, int, int]]:
    """[(directory relative path, number of files, first file number)], deterministic."""
    r = random.Random(seed)
    dirs: list[tuple[str, int, int]] = []
    n = 0
    used: set[str] = set()
    while n < files:
        area = r.choice(AREAS)
        project = f"{r.choice(VOCAB)}{r.choice(['-', '_', ''])}{r.choice(VOCAB)}"
        for part in range(r.randint(1, 8)):
            sub = r.choice([f"{r.randint(2008, 2026)}", r.choice(VOCAB), f"v{part}", "lib", "old", "misc", "tests"])
            rel = f"{area}/{project}/{sub}"
            if rel in used:
                rel = f"{rel}-{len(dirs)}"
            used.add(rel)
            k = min(files - n, r.randint(30, 400))
            dirs.append((rel, k, n))
            n += k
            if n >= files:
                break
    return dirs


def _write_dir(job: tuple[str, str, int, int, int]) -> tuple[int, int]:
    root, rel, count, first, seed = job
    pools = _pools(seed)
    r = random.Random(f"{seed}:{rel}")
    d = os.path.join(root, rel)
    os.makedirs(d, exist_ok=True)
    lo, hi = math.log(MIN_SIZE), math.log(MAX_SIZE)
    total = 0
    for i in range(first, first + count):
        x = r.random()
        kind, _w, exts = KINDS[0]
        for j, c in enumerate(_CUM_KIND):
            if x < c:
                kind, _w, exts = KINDS[j]
                break
        name = f"{r.choice(VOCAB)}_{r.choice(VOCAB)}_{i:07d}{r.choice(exts)}"
        size = int(math.exp(r.uniform(lo, hi)))
        head = f"{rel}/{name} #{i}\n".encode()
        body = size - len(head)
        if kind == "binary":
            data = head + r.randbytes(max(0, body))
        elif kind == "doc":
            half = max(0, body // 2)
            off = r.randrange(len(pools["text"]) - MAX_SIZE)
            data = head + pools["text"][off : off + half] + r.randbytes(max(0, body - half))
        else:
            pool = pools[kind]
            off = r.randrange(len(pool) - MAX_SIZE)
            data = head + pool[off : off + max(0, body)]
        fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        total += len(data)
    return count, total


def generate(root: str | Path, files: int, seed: int = 1, procs: int = 4) -> dict:
    """Write the tree under ``root`` (created); returns its description."""
    root = str(root)
    os.makedirs(root, exist_ok=True)
    t0 = time.perf_counter()
    dirs = layout(files, seed)
    jobs = [(root, rel, k, first, seed) for rel, k, first in dirs]
    n = total = 0
    with Pool(procs) as pool:
        for k, b in pool.imap_unordered(_write_dir, jobs, chunksize=8):
            n += k
            total += b
        # let the workers exit by themselves: leaving the block terminates the pool, and a
        # terminate once left a worker hanging on the task queue's lock for 5 minutes
        pool.close()
        pool.join()
    return {
        "files": n,
        "bytes": total,
        "dirs_leaf": len(dirs),
        "dirs": len({d for rel, _k, _f in dirs for d in _parents(rel)}),
        "size_range": [MIN_SIZE, MAX_SIZE],
        "seed": seed,
        "generate_s": round(time.perf_counter() - t0, 1),
        "procs": procs,
    }


def _parents(rel: str) -> list[str]:
    parts = rel.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--procs", type=int, default=4)
    args = ap.parse_args()
    print(json.dumps(generate(args.dir, args.files, args.seed, args.procs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
