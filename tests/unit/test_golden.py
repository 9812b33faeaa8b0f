"""Golden replays: recorded streams of every drill give the same verdicts, every time.

The recordings in tests/golden/ are what a live daemon's detector saw during each drill
(tests/golden/make_golden.py made them). The detector is a pure function of its input, so a
replay must reproduce the verdicts pinned in the .expected.json files exactly, twice in a row.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nocry.replay import read_stream, replay, summarise

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CASES = sorted(p.name[: -len(".jsonl")] for p in GOLDEN.glob("*.jsonl"))


def test_there_are_golden_recordings():
    assert len(CASES) >= 3


@pytest.mark.parametrize("case", CASES)
def test_replay_gives_the_recorded_verdicts(case):
    want = json.loads((GOLDEN / f"{case}.expected.json").read_text())
    first = summarise(replay(read_stream(GOLDEN / f"{case}.jsonl")))
    second = summarise(replay(read_stream(GOLDEN / f"{case}.jsonl")))
    assert first == second == want
    if case.startswith("benign-"):
        assert want == []
    else:
        # one verdict, or a second that widens it to the parent of cooperating workers
        assert 1 <= len(want) <= 2
