"""The daemon's CPU priority: lowered while all is calm, back to normal the moment it matters.

Capturing and analysing a file costs CPU that, on a busy machine, the workload that wrote the file
would otherwise get: a parallel build that keeps every CPU busy is slowed by about the daemon's share.
So the daemon runs at ``capture.nice`` (default 10) while nothing is suspicious, and gives up that
discount (nice back to what it started with) for at least ``hold_s`` whenever

- an actor's score reaches a third of the detection threshold, or an incident is open: an attack
  must not be judged at a discount;
- the daemon falls behind: events it handles were read from the kernel more than ``lag_s`` ago,
  captures are that much overdue, or the kernel queue overflowed. A niced daemon under a load that
  never pauses would otherwise lag without bound.

Niceness on Linux belongs to each thread (``setpriority(PRIO_PROCESS, tid)``), so every thread of
the process is set; threads started later inherit their creator's. Raising the priority back needs
CAP_SYS_NICE: without it (a daemon not run as root) the priority is never lowered at all.

The cost of the discount: an attacker that keeps every CPU busy with normal-priority work is
analysed at about a tenth of a CPU until its first few files raise its score. nice 0 turns it off.
"""

from __future__ import annotations

import logging
import os

__all__ = ["Priority"]

log = logging.getLogger(__name__)


class Priority:
    def __init__(self, nice: int, *, hold_s: float = 30.0, lag_s: float = 2.0):
        self.base = os.getpriority(os.PRIO_PROCESS, 0)
        self.low = min(19, self.base + max(0, nice))
        self.hold_s = hold_s
        self.lag_ns = int(lag_s * 1e9)
        self.current = self.base
        self.boosted_until = 0.0
        self.boosts = 0
        self.reason = "start"
        if self.low != self.base and not _can_raise():
            log.warning("event=priority_kept nice=%d reason=no_cap_sys_nice", self.base)
            self.low = self.base

    @property
    def lowered(self) -> bool:
        return self.current != self.base

    def calm(self, now: float) -> None:
        """Nothing is pressing at ``now`` (monotonic s): lower the priority once the hold is over."""
        if self.current == self.base and self.low != self.base and now >= self.boosted_until:
            self._set(self.low)

    def boost(self, now: float, reason: str) -> None:
        """Something is pressing: normal priority for at least ``hold_s`` from ``now``."""
        self.boosted_until = now + self.hold_s
        if self.current != self.base:
            self.boosts += 1
            self.reason = reason
            log.info("event=priority_raised nice=%d reason=%s", self.base, reason)
            self._set(self.base)

    def _set(self, nice: int) -> None:
        for tid in os.listdir("/proc/self/task"):
            try:
                os.setpriority(os.PRIO_PROCESS, int(tid), nice)
            except ProcessLookupError:
                pass  # the thread ended meanwhile
            except PermissionError as exc:
                # never stay low for want of a capability: stop lowering from now on
                log.error("event=priority_set_failed nice=%d tid=%s error=%r effect=priority_no_longer_lowered", nice, tid, str(exc))
                self.low = self.base
        self.current = nice

    def status(self) -> dict:
        return {"nice": self.current, "lowered": self.lowered, "raised": self.boosts, "last_reason": self.reason}


def _can_raise() -> bool:
    try:
        import resource

        if os.geteuid() == 0:
            return True
        # RLIMIT_NICE: a ceiling of 20 - rlim_cur
        soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
        return soft == resource.RLIM_INFINITY or 20 - soft <= os.getpriority(os.PRIO_PROCESS, 0)
    except (OSError, ValueError):
        return False
