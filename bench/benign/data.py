"""Data files: SQLite databases of the tree (inserts in transactions, deletes, VACUUM, a WAL
database), and log rotation with logrotate (copytruncate and create modes, compress,
delaycompress) of an application's logs that already have rotated generations from earlier days."""

from __future__ import annotations

import gzip
import os
import random
from pathlib import Path

from bench.benign.common import Assets, Workload

_SQLITE = r'''
"$PY" - <<'PYEOF'
import glob, random, sqlite3
rng = random.Random(3)
dbs = sorted(set(glob.glob("**/*.db", recursive=True) + glob.glob("**/*.sqlite", recursive=True) + glob.glob("**/*.sqlite3", recursive=True)))
assert dbs, "no database in the tree"
for n, path in enumerate(dbs):
    con = sqlite3.connect(path)
    if n == 0:
        con.execute("pragma journal_mode=wal")
    con.execute("create table if not exists ledger(id integer primary key, day text, who text, amount real, note text)")
    for batch in range(20):
        rows = [(f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", rng.choice(["anna", "ben", "chloe", "dan"]),
                 round(rng.uniform(-5000, 5000), 2), "posted " + "x" * rng.randint(0, 80)) for _ in range(1000)]
        with con:
            con.executemany("insert into ledger(day, who, amount, note) values (?, ?, ?, ?)", rows)
    with con:
        con.execute("delete from ledger where id % 3 != 0")
    con.execute("vacuum")
    con.close()
print(len(dbs), "databases")
PYEOF
'''

_LOGS = ("web", "worker", "api", "audit")


def _line(rng: random.Random, i: int) -> str:
    return f"2025-11-2{rng.randint(0, 8)}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z {rng.choice(['INFO', 'INFO', 'WARN', 'DEBUG'])} req={i:08d} path=/api/v1/{rng.choice(['orders', 'users', 'meters'])} status={rng.choice([200, 200, 201, 404, 500])} ms={rng.randint(1, 900)}\n"


def _pre_logs(tree: Path, assets: Assets, scratch: Path) -> None:
    """Logs with the generations earlier rotations left: X.log, X.log.1, X.log.2.gz .. X.log.4.gz."""
    rng = random.Random(8)
    d = tree / "Logs" / "app"
    d.mkdir(parents=True)
    for name in _LOGS:
        (d / f"{name}.log").write_text("".join(_line(rng, i) for i in range(3000)))
        (d / f"{name}.log.1").write_text("".join(_line(rng, i) for i in range(3000)))
        for g in (2, 3, 4):
            with gzip.open(d / f"{name}.log.{g}.gz", "wt") as f:
                f.write("".join(_line(rng, i) for i in range(3000)))
    conf = scratch / "logrotate.conf"
    conf.write_text(
        f'"{d}/web.log" "{d}/worker.log" {{\n  rotate 4\n  copytruncate\n  compress\n  delaycompress\n  missingok\n}}\n'
        f'"{d}/api.log" "{d}/audit.log" {{\n  rotate 4\n  create 0640 root root\n  compress\n  delaycompress\n  missingok\n}}\n'
    )
    os.chmod(conf, 0o644)


WORKLOADS = [
    Workload(
        "sqlite", "data",
        title="SQLite (python3 sqlite3): 20,000 inserts in 20 transactions, deletes, VACUUM on each of the 4 databases (one in WAL mode)",
        script=_SQLITE,
        needs=(), apt=(), quick=True, tested=True,
    ),
    Workload(
        "logrotate", "data",
        title="logrotate -f: 4 logs with 4 older generations (2 copytruncate, 2 create; compress, delaycompress)",
        script="""
for i in $(seq 1 200); do for n in web worker api audit; do echo "2025-11-29T12:00:00Z INFO req=$i path=/api/v1/orders status=200" >> Logs/app/$n.log; done; done
logrotate -f -s "$W/logrotate.state" "$W/logrotate.conf"
for n in web worker api audit; do echo "2025-11-29T12:00:01Z INFO rotated" >> Logs/app/$n.log; done
""",
        needs=("logrotate", "gzip"), apt=("logrotate",), pre=_pre_logs,
    ),
]  # fmt: skip
