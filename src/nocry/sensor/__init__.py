"""The sensor stage: sees file operations under the protected trees and hands them on as events.

    sensor = FanotifySensor([b"/srv/share"], sink=queue_batch)   # sink(list[Event]) per batch
    sensor.start(); ...; sensor.stop()

``FanotifySensor`` watches the real kernel (root, Linux >= 5.17 for FAN_RENAME; >= 6.9 for the
cheap pidfs-keyed subject cache). ``ReplaySensor`` feeds a recording made by ``Recorder`` through
the same interface, for golden tests and for reproducing a field incident.
"""

from nocry.sensor._syscalls import Syscalls
from nocry.sensor.decode import DecodeError, RawEvent, RawInfo, decode
from nocry.sensor.fanotify import FanotifySensor, ops_from_mask
from nocry.sensor.procs import SubjectCache, read_proc_subject
from nocry.sensor.proctrack import ProcessTable, ProcInfo
from nocry.sensor.record import Recorder, ReplaySensor, read_recording

__all__ = [
    "FanotifySensor",
    "ReplaySensor",
    "Recorder",
    "read_recording",
    "SubjectCache",
    "ProcessTable",
    "ProcInfo",
    "read_proc_subject",
    "Syscalls",
    "decode",
    "DecodeError",
    "RawEvent",
    "RawInfo",
    "ops_from_mask",
]
