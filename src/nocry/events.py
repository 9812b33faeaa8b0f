"""Events: the plain data that flows from the sensor to every later stage.

Everything here is a frozen, slotted dataclass with ``bytes`` paths and no file descriptors, so that
an event can be recorded, replayed, compared and handed between threads without owning anything
of the kernel's. Each record type carries ``type`` and the module's ``SCHEMA_VERSION`` when
serialised, so that recordings stay readable as the schema grows.

    sensor  --FileEvent / Overflow-->  daemon  --paths-->  capture  --VersionRecord-->  vault

Serialisation (JSON lines): paths travel as ``path`` (UTF-8 with surrogateescape replaced) plus
``path_b64`` whenever the bytes are not valid UTF-8, in the manner of borg's JSON output.
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "SCHEMA_VERSION",
    "Op",
    "Subject",
    "FileEvent",
    "Overflow",
    "ProcessSeen",
    "Event",
    "event_to_record",
    "event_from_record",
    "path_to_json",
    "path_from_json",
]

SCHEMA_VERSION = 1


class Op(enum.IntFlag):
    """What happened to an object. The kernel merges queued events for one object, so an event may
    carry several operations at once."""

    CREATE = 0x001
    MODIFY = 0x002
    CLOSE_WRITE = 0x004
    RENAME = 0x008
    DELETE = 0x010
    ATTRIB = 0x020
    OPEN = 0x040
    ACCESS = 0x080
    CLOSE_NOWRITE = 0x100
    DELETE_SELF = 0x200

    @property
    def names(self) -> list[str]:
        return [m.name.lower() for m in Op if m in self and m.name]


#: Operations that change the namespace or content and so may need a new version.
CHANGE_OPS = Op.CREATE | Op.MODIFY | Op.CLOSE_WRITE | Op.RENAME | Op.DELETE | Op.ATTRIB | Op.DELETE_SELF
#: Operations that only read.
READ_OPS = Op.OPEN | Op.ACCESS | Op.CLOSE_NOWRITE


@dataclass(frozen=True, slots=True)
class Subject:
    """A process as it was seen when it acted. ``(pid, start_time)`` names it uniquely across pid
    reuse; ``start_time`` is in clock ticks since boot (field 22 of /proc/PID/stat)."""

    pid: int
    start_time: int = 0
    exe: bytes = b""
    comm: str = ""
    uid: int = -1
    ppid: int = 0
    sid: int = 0

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.start_time)

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "pid": self.pid,
            "start_time": self.start_time,
            "comm": self.comm,
            "uid": self.uid,
            "ppid": self.ppid,
            "sid": self.sid,
        }
        rec.update(path_to_json(self.exe, "exe"))
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Subject:
        return cls(
            pid=rec["pid"],
            start_time=rec.get("start_time", 0),
            exe=path_from_json(rec, "exe"),
            comm=rec.get("comm", ""),
            uid=rec.get("uid", -1),
            ppid=rec.get("ppid", 0),
            sid=rec.get("sid", 0),
        )


@dataclass(frozen=True, slots=True)
class FileEvent:
    """One observed operation (or several merged by the kernel) on one object.

    ``path`` is absolute. For a rename, ``old_path`` is where the object was and ``path`` where it
    is now. ``time_ns`` is wall-clock time (CLOCK_REALTIME) when the sensor read the event: the only
    clock the detector may use."""

    type: ClassVar[str] = "file"
    ops: Op
    path: bytes
    time_ns: int
    seq: int = 0
    is_dir: bool = False
    old_path: bytes | None = None
    subject: Subject | None = None


@dataclass(frozen=True, slots=True)
class Overflow:
    """The kernel dropped events (queue overflow) or the sensor could not resolve some: every tree
    listed must be rescanned against the vault index."""

    type: ClassVar[str] = "overflow"
    time_ns: int
    seq: int = 0
    trees: tuple[bytes, ...] = field(default_factory=tuple)
    reason: str = "queue_overflow"


@dataclass(frozen=True, slots=True)
class ProcessSeen:
    """A process the daemon learnt about (from fanotify's pidfd or the process table): lets the
    detector, which never reads /proc itself, know who is whose parent. Recorded like events so
    that a replay sees the same process tree."""

    type: ClassVar[str] = "process"
    time_ns: int
    subject: Subject


Event = FileEvent | Overflow


def path_to_json(path: bytes | None, key: str = "path") -> dict[str, Any]:
    """``{key: text}`` plus ``{key_b64: ...}`` when the bytes are not valid UTF-8."""
    if path is None:
        return {key: None}
    try:
        return {key: path.decode("utf-8")}
    except UnicodeDecodeError:
        return {
            key: path.decode("utf-8", "backslashreplace"),
            key + "_b64": base64.b64encode(path).decode("ascii"),
        }


def path_from_json(rec: dict[str, Any], key: str = "path") -> bytes:
    b64 = rec.get(key + "_b64")
    if b64 is not None:
        return base64.b64decode(b64)
    text = rec.get(key)
    return b"" if text is None else text.encode("utf-8")


def event_to_record(ev: Event | ProcessSeen) -> dict[str, Any]:
    if isinstance(ev, FileEvent):
        rec: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "type": ev.type,
            "seq": ev.seq,
            "time_ns": ev.time_ns,
            "ops": ev.ops.names,
            "is_dir": ev.is_dir,
        }
        rec.update(path_to_json(ev.path))
        if ev.old_path is not None:
            rec.update(path_to_json(ev.old_path, "old_path"))
        rec["subject"] = ev.subject.to_record() if ev.subject else None
        return rec
    if isinstance(ev, Overflow):
        return {
            "v": SCHEMA_VERSION,
            "type": ev.type,
            "seq": ev.seq,
            "time_ns": ev.time_ns,
            "reason": ev.reason,
            "trees": [path_to_json(t)["path"] for t in ev.trees],
            "trees_b64": [base64.b64encode(t).decode("ascii") for t in ev.trees],
        }
    if isinstance(ev, ProcessSeen):
        return {"v": SCHEMA_VERSION, "type": ev.type, "time_ns": ev.time_ns, "subject": ev.subject.to_record()}
    raise TypeError(f"not an event: {ev!r}")


def event_from_record(rec: dict[str, Any]) -> Event | ProcessSeen:
    version = rec.get("v", 1)
    if version > SCHEMA_VERSION:
        raise ValueError(f"event schema version {version} is newer than this nocry ({SCHEMA_VERSION})")
    kind = rec.get("type")
    if kind == FileEvent.type:
        ops = Op(0)
        for name in rec["ops"]:
            ops |= Op[name.upper()]
        subj = rec.get("subject")
        return FileEvent(
            ops=ops,
            path=path_from_json(rec),
            time_ns=rec["time_ns"],
            seq=rec.get("seq", 0),
            is_dir=rec.get("is_dir", False),
            old_path=path_from_json(rec, "old_path") if "old_path" in rec else None,
            subject=Subject.from_record(subj) if subj else None,
        )
    if kind == Overflow.type:
        return Overflow(
            time_ns=rec["time_ns"],
            seq=rec.get("seq", 0),
            trees=tuple(base64.b64decode(t) for t in rec.get("trees_b64", [])),
            reason=rec.get("reason", "queue_overflow"),
        )
    if kind == ProcessSeen.type:
        return ProcessSeen(time_ns=rec["time_ns"], subject=Subject.from_record(rec["subject"]))
    raise ValueError(f"unknown event type {kind!r}")
