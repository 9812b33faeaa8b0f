"""The home directory: everything one nocry instance keeps, in one place.

    HOME/                 (mode 0700, root)
        config.toml       the configuration (optional; defaults otherwise)
        trees.json        the protected trees (written by ``protect``)
        vault/            packs and index (see docs/vault-format.md)
        run/              daemon.lock, daemon.pid, control.sock, status.json
        alerts.jsonl      alarms raised (incident, vault full, stopped, overflow, unattributed damage), one JSON object a line
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from nocry.config import Config, load_config
from nocry.errors import AlreadyRunning, UserError
from nocry.events import path_from_json, path_to_json

__all__ = ["Home", "DEFAULT_HOME"]

DEFAULT_HOME = "/var/lib/nocry"


class Home:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(os.path.abspath(root))
        self.config_path = self.root / "config.toml"
        self.trees_path = self.root / "trees.json"
        self.vault_dir = self.root / "vault"
        self.run_dir = self.root / "run"
        self.lock_path = self.run_dir / "daemon.lock"
        self.pid_path = self.run_dir / "daemon.pid"
        self.socket_path = self.run_dir / "control.sock"
        self.status_path = self.run_dir / "status.json"
        self.alerts_path = self.root / "alerts.jsonl"
        self._lock_fd: int | None = None

    # -- layout -----------------------------------------------------------------------------

    def create(self) -> None:
        for d in (self.root, self.run_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(d, 0o700)

    def exists(self) -> bool:
        return self.root.is_dir()

    def config(self) -> Config:
        return load_config(self.config_path)

    # -- trees --------------------------------------------------------------------------------

    def read_trees(self) -> list[bytes]:
        try:
            data = json.loads(self.trees_path.read_text())
        except FileNotFoundError:
            return []
        return [path_from_json(t) for t in data.get("trees", [])]

    def write_trees(self, trees: list[bytes]) -> None:
        self._write_json(self.trees_path, {"trees": [path_to_json(t) for t in trees]})

    # -- daemon lock and status -----------------------------------------------------------------

    def acquire_daemon_lock(self) -> None:
        """Take the per-home daemon lock (released by the kernel when the process dies, however)."""
        self.create()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise AlreadyRunning(f"a nocry daemon already runs for {self.root}", hint=f"pid {self.daemon_pid()}") from None
            raise
        self._lock_fd = fd
        self.pid_path.write_text(f"{os.getpid()}\n")

    def release_daemon_lock(self) -> None:
        if self._lock_fd is not None:
            try:
                self.pid_path.unlink(missing_ok=True)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def daemon_running(self) -> bool:
        """True when some process holds the daemon lock."""
        try:
            fd = os.open(self.lock_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    def daemon_pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def write_status(self, status: dict[str, Any]) -> None:
        self._write_json(self.status_path, status)

    def read_status(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.status_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def alert(self, kind: str, message: str, **fields: Any) -> dict[str, Any]:
        rec = {"time": time.time(), "alert": kind, "message": message, **fields}
        self.create()
        with open(self.alerts_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
        return rec

    def read_alerts(self, limit: int = 50) -> list[dict[str, Any]]:
        try:
            lines = self.alerts_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines[-limit:]:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    @staticmethod
    def _write_json(path: Path, data: Any) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def check_tree_paths(paths: list[bytes], home: Home) -> list[bytes]:
    """Normalise trees and refuse unsafe ones: the home inside a tree (nocry would capture its own
    vault) or a tree inside the home."""
    home_b = os.fsencode(os.path.realpath(home.root))
    out: list[bytes] = []
    for p in paths:
        real = os.path.realpath(p)
        if not os.path.isdir(real):
            raise UserError(f"not a directory: {os.fsdecode(p)}")
        if real == b"/":
            raise UserError("refusing to protect / as one tree; name the directories that hold data")
        if home_b == real or home_b.startswith(real + b"/"):
            raise UserError(
                f"the nocry home {home.root} lies inside the tree {os.fsdecode(real)}",
                hint="use --home outside every protected tree",
            )
        if real.startswith(home_b + b"/"):
            raise UserError(f"the tree {os.fsdecode(real)} lies inside the nocry home {home.root}")
        out.append(real)
    # drop trees nested in other trees: the outer one covers them
    out = sorted(set(out))
    return [t for t in out if not any(t != o and t.startswith(o + b"/") for o in out)]
