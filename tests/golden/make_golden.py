"""Regenerate the golden recordings: each drill against a real daemon, recorded, then replayed.

    sudo .venv/bin/python tests/golden/make_golden.py [SCENARIO...]

For each scenario: a fresh 30-file drill tree (seed 11), a daemon with decoys off recording what
its detector sees (``protect --record``), the drill at 10 ms per file, then the recording is
replayed through a fresh detector and its verdicts are written next to it. The replay must agree
with the live daemon on whether there was an incident; tests/unit/test_golden.py then holds every
later detector to these verdicts. Rerun after a deliberate change of weights or indicators and
review the diff of the .expected.json files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from nocry.replay import read_stream, replay, summarise  # noqa: E402
from tests.e2e.harness import Nocry  # noqa: E402

SCENARIOS = [
    "encrypt-in-place", "encrypt-new-delete", "intermittent", "partial-5pct", "header-only", "base64", "bitflip",
    "keep-extension", "random-names", "many-workers", "fork-per-file", "wipe-zero", "wipe-random", "wipe-truncate",
    "wipe-delete", "wipe-plausible", "benign-edit", "benign-compress-one", "benign-extract",
]  # fmt: skip


def make(scenario: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="nocry-golden-"))
    try:
        tree = work / "tree"
        n = Nocry(work / "home")
        assert n.cli("drill", "init", tree, "--files", "30", "--seed", "11").code == 0
        (work / "home").mkdir()
        (work / "home" / "config.toml").write_text("[canary]\nenabled = false\n")
        rec = work / "rec.jsonl"
        n.start(tree, extra=("--record", str(rec)))
        n.cli("drill", "run", scenario, tree, "--timeout", "3", "--delay", "0.01", timeout=120)
        time.sleep(0.5)
        n.sync()
        live = n.cli("incidents").json["incidents"]
        for inc in live:
            n.cli("incident", "kill", str(inc["id"]))
        n.stop()
        verdicts = summarise(replay(read_stream(rec)))
        if bool(verdicts) != bool(live):
            raise SystemExit(f"{scenario}: replay gave {len(verdicts)} verdicts, the live daemon {len(live)} incidents")
        shutil.copy(rec, HERE / f"{scenario}.jsonl")
        (HERE / f"{scenario}.expected.json").write_text(json.dumps(verdicts, indent=1, sort_keys=True) + "\n")
        print(f"{scenario}: {len(verdicts)} verdict(s), {sum(1 for _ in open(rec))} records")
    finally:
        subprocess.run(["umount", "-l", str(work)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    for sc in sys.argv[1:] or SCENARIOS:
        make(sc)
