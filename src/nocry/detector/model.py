"""Plain data of the detector: indicators (evidence about one event) and verdicts (about an actor)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nocry.events import path_to_json

__all__ = ["Indicator", "ActorRef", "Verdict"]


@dataclass(frozen=True, slots=True)
class Indicator:
    name: str  # e.g. type_lost, partial_encryption, rename_new_ext, ransom_note, canary
    weight: float
    path: bytes
    time_ns: int
    pid: int
    detail: str = ""  # human-readable values, e.g. "docx: ooxml -> unknown, entropy 3.1 -> 8.0"

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"name": self.name, "weight": self.weight, "time_ns": self.time_ns, "pid": self.pid, "detail": self.detail}
        rec.update(path_to_json(self.path))
        return rec


@dataclass(frozen=True, slots=True)
class ActorRef:
    """Who is judged: ``kind`` is "process" (a process and its descendants, rooted at ``pid``),
    "session" (``key`` = session id) or "uid" (``key`` = uid)."""

    kind: str
    key: int
    pid: int = 0  # root of the process tree for kind == "process"
    start_time: int = 0

    def to_record(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "pid": self.pid, "start_time": self.start_time}

    @property
    def label(self) -> str:
        return f"process tree of pid {self.pid}" if self.kind == "process" else f"{self.kind} {self.key}"


@dataclass(frozen=True, slots=True)
class Verdict:
    actor: ActorRef
    score: float
    detected_ns: int
    #: time of the first damaging event of this actor: the rollback point
    started_ns: int
    #: every subject (pid) whose events contributed evidence
    offending_pids: tuple[int, ...]
    #: every object the actor changed since it started (path -> first change time)
    objects: tuple[tuple[bytes, int], ...]
    indicators: tuple[Indicator, ...] = field(default_factory=tuple)

    def to_record(self) -> dict[str, Any]:
        return {
            "actor": self.actor.to_record(),
            "score": round(self.score, 3),
            "detected_ns": self.detected_ns,
            "started_ns": self.started_ns,
            "offending_pids": list(self.offending_pids),
            "objects": [{**path_to_json(p), "first_ns": t} for p, t in self.objects],
            "indicators": [i.to_record() for i in self.indicators],
        }
