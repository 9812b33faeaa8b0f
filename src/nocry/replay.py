"""Replay a recording (``nocry protect --record FILE``) through the detector.

    for record in read_stream(FILE):   # events, processes, content features, in the order seen
        verdicts += detector.feed(record)

The detector is a pure function of this stream, so the same recording always gives the same
verdicts: a field incident recorded once becomes a golden test.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from nocry.analyzer.model import ContentFeatures
from nocry.config import DetectConfig
from nocry.detector.engine import Detector
from nocry.detector.model import Verdict
from nocry.sensor.record import read_recording

__all__ = ["read_stream", "replay", "summarise"]


def read_stream(path: str | os.PathLike[str]) -> Iterator[object]:
    return read_recording(path, extra={"features": ContentFeatures.from_record})


def replay(records: Iterable[object], cfg: DetectConfig | None = None, canaries: Iterable[bytes] = ()) -> list[Verdict]:
    det = Detector(cfg or DetectConfig(), canaries=set(canaries))
    return det.feed_all(records)


def summarise(verdicts: list[Verdict]) -> list[dict]:
    """What a golden file pins down: who was judged, on which evidence, over which objects (pids
    and times differ from one recording to the next, so they are left out)."""
    out = []
    for v in verdicts:
        out.append(
            {
                "actor_kind": v.actor.kind,
                "score": round(v.score, 3),
                "indicators": sorted({i.name for i in v.indicators}),
                "objects": sorted(os.fsdecode(p).rsplit("/tree/", 1)[-1] for p, _ in v.objects),
                "offending": len(v.offending_pids),
            }
        )
    return out
