"""Errors that nocry reports to its user, each with its message and exit code.

Exit codes come in bands (documented in README and ``nocry --help``)::

    0   ok
    1   finished with warnings (some files skipped, unreadable, ...)
    2   usage or user error (bad path, bad time, bad arguments)
    3   configuration error
    4   the daemon is not running / already running / cannot be reached
    5   vault integrity damage found (verify) or vault unusable
    6   restore finished but some files failed or did not verify
    7   no space left for the vault
    70  internal error (a bug: the traceback is printed)

The tree::

    NocryError
     +-- UserError              (2)
     +-- ConfigError            (3)
     +-- DaemonError            (4)
     |    +-- AlreadyRunning
     |    +-- NotRunning
     +-- VaultError             (5)
     |    +-- VaultCorrupt
     |    +-- VaultLocked
     +-- RestoreFailed          (6)
     +-- VaultFull              (7)
"""

from __future__ import annotations

__all__ = [
    "EXIT_OK",
    "EXIT_WARNINGS",
    "EXIT_INTERNAL",
    "NocryError",
    "UserError",
    "ConfigError",
    "DaemonError",
    "AlreadyRunning",
    "NotRunning",
    "VaultError",
    "VaultCorrupt",
    "VaultLocked",
    "RestoreFailed",
    "VaultFull",
]

EXIT_OK = 0
EXIT_WARNINGS = 1
EXIT_INTERNAL = 70


class NocryError(Exception):
    """Base of every error meant for the user: one line, no traceback."""

    exit_code = 2
    traceback = False

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UserError(NocryError):
    exit_code = 2


class ConfigError(NocryError):
    exit_code = 3


class DaemonError(NocryError):
    exit_code = 4


class AlreadyRunning(DaemonError):
    pass


class NotRunning(DaemonError):
    pass


class VaultError(NocryError):
    exit_code = 5


class VaultCorrupt(VaultError):
    # integrity errors deserve a traceback: they may be bugs
    traceback = True


class VaultLocked(VaultError):
    pass


class RestoreFailed(NocryError):
    exit_code = 6


class VaultFull(NocryError):
    exit_code = 7
