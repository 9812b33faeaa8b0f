"""Response: freeze the actor (cgroup v2 quarantine, SIGSTOP through pidfds as fallback), then
kill or release it; never pid 1, kernel threads, nocry, its ancestors or critical services."""

from nocry.responder.freeze import FreezeRecord, RecordingResponder, Responder, find_cgroup2
from nocry.responder.procs import ProcSnapshot, read_stat

__all__ = ["Responder", "RecordingResponder", "FreezeRecord", "find_cgroup2", "ProcSnapshot", "read_stat"]
