"""One helper for end-to-end tests: run the real ``nocry`` CLI and a real daemon in subprocesses.

    with Nocry(tmp) as n:                 # a fresh home
        n.start(tree)                     # nocry protect TREE --foreground, waits for 'protecting'
        ... change files ...
        n.sync()                          # everything so far is in the vault
        n.cli("restore", tree, "--at", t) # any command, returns CompletedProcess (+ .json)
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PY = sys.executable


class CLIResult:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.proc = proc
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f"<exit {self.code} out={self.out[-2000:]!r} err={self.err[-2000:]!r}>"


class Nocry:
    def __init__(self, home: Path | str):
        self.home = Path(home)
        self.daemon: subprocess.Popen | None = None
        self.log_path = self.home.parent / (self.home.name + ".daemon.log")

    def __enter__(self) -> "Nocry":
        return self

    def __exit__(self, *exc) -> None:
        self.stop(check=False)

    def cli(self, *args: str | bytes | os.PathLike, json_out: bool = True, timeout: float = 300, check: int | None = None) -> CLIResult:
        argv = [PY, "-m", "nocry", "--home", str(self.home)]
        if json_out:
            argv.append("--json")
        argv += [os.fsdecode(a) if not isinstance(a, bytes) else a for a in args]  # type: ignore[misc]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, errors="replace")
        res = CLIResult(proc)
        if check is not None:
            assert res.code == check, res
        return res

    def start(self, *trees: str | os.PathLike, extra: tuple[str, ...] = (), wait: float = 120) -> None:
        argv = [PY, "-m", "nocry", "--home", str(self.home), "protect", *map(os.fspath, trees), "--foreground", *extra]
        self.logf = open(self.log_path, "ab")
        self.daemon = subprocess.Popen(argv, stdout=self.logf, stderr=self.logf, stdin=subprocess.DEVNULL)
        self.wait_state("protecting", wait)

    def status_file(self) -> dict | None:
        try:
            return json.loads((self.home / "run" / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def wait_state(self, state: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.daemon is not None and self.daemon.poll() is not None:
                raise AssertionError(f"daemon exited with {self.daemon.returncode}: {self.log()[-3000:]}")
            st = self.status_file()
            if st and st.get("state") == state and (self.daemon is None or st.get("pid") == self.daemon.pid):
                return st
            time.sleep(0.05)
        raise AssertionError(f"daemon never reached {state!r}: {self.log()[-3000:]}")

    def sync(self, timeout: float = 120, rescan: bool = False) -> dict:
        args = ["sync", "--timeout", str(timeout)] + (["--rescan"] if rescan else [])
        res = self.cli(*args, timeout=timeout + 30)
        assert res.code == 0, res
        return res.json

    def status(self) -> dict:
        res = self.cli("status")
        assert res.code in (0, 1), res
        return res.json

    def kill9(self) -> None:
        assert self.daemon is not None
        self.daemon.send_signal(signal.SIGKILL)
        self.daemon.wait(30)
        self.daemon = None

    def stop(self, check: bool = True) -> int | None:
        if self.daemon is None:
            return None
        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(60)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait(10)
                if check:
                    raise AssertionError("daemon did not stop on SIGTERM within 60 s")
        rc = self.daemon.returncode
        self.daemon = None
        self.logf.close()
        if check:
            assert rc == 0, f"daemon exit {rc}: {self.log()[-3000:]}"
        return rc

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def tree_state(root: str | bytes, *, dir_mtime: bool = True) -> dict[bytes, tuple]:
    """What a restore must reproduce: per path, type, mode, owner, mtime, content hash / link."""
    root_b = os.fsencode(root)
    out: dict[bytes, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root_b):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = p[len(root_b) :]
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    h = hashlib.blake2b(f.read()).hexdigest()
                out[rel] = ("f", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, st.st_size, h)
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", st.st_uid, st.st_gid, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns if dir_mtime else 0)
            else:
                out[rel] = ("o", stat.S_IMODE(st.st_mode))
    return out


def diff_states(want: dict, got: dict) -> list[str]:
    problems = []
    for k in sorted(set(want) | set(got)):
        if want.get(k) != got.get(k):
            problems.append(f"{k!r}: want {want.get(k)} got {got.get(k)}")
    return problems
