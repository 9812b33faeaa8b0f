"""The daemon's control socket: one JSON request line in, one JSON answer line out.

    client: {"cmd": "status"} | {"cmd": "sync", "timeout": 30} | {"cmd": "stop"}
    server: {"ok": true, ...} | {"ok": false, "error": "..."}

The socket lives in HOME/run (mode 0700), so only root reaches it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from nocry.errors import DaemonError, NotRunning

__all__ = ["ControlServer", "request"]

log = logging.getLogger(__name__)

_MAX_REQUEST = 1 << 16


class ControlServer:
    def __init__(self, path: Path, daemon):
        self.path = path
        self.daemon = daemon
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            sock.bind(os.fspath(self.path))
        finally:
            os.umask(old)
        sock.listen(16)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="nocry-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            threading.Thread(target=self._handle, args=(conn,), name="nocry-control-conn", daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                data = b""
                while not data.endswith(b"\n") and len(data) < _MAX_REQUEST:
                    part = conn.recv(4096)
                    if not part:
                        break
                    data += part
                req = json.loads(data or b"{}")
                answer = self._dispatch(req)
            except Exception as exc:  # noqa: BLE001 - a bad request must not kill the daemon
                log.warning("event=control_error error=%r", str(exc))
                answer = {"ok": False, "error": str(exc)}
            try:
                conn.settimeout(5)
                conn.sendall(json.dumps(answer).encode() + b"\n")
            except OSError:
                pass

    def _dispatch(self, req: dict[str, Any]) -> dict[str, Any]:
        from nocry.daemon import SyncRequest

        cmd = req.get("cmd")
        d = self.daemon
        if cmd == "status":
            return {"ok": True, "status": d.status()}
        if cmd == "sync":
            timeout = float(req.get("timeout", 60))
            deadline = time.monotonic() + timeout
            barrier = getattr(d.sensor, "barrier", None)
            if barrier is not None and not barrier(timeout):
                return {"ok": False, "error": "the sensor did not drain the kernel queue in time"}
            sync = SyncRequest(rescan=bool(req.get("rescan", False)))
            d.queue.put(sync)
            if not sync.done.wait(max(0.0, deadline - time.monotonic())):
                return {"ok": False, "error": f"capture did not catch up within {timeout:g} s"}
            return {"ok": True, "status": d.status()}
        if cmd in ("incident", "exempt"):
            from nocry.daemon import ActionRequest

            if cmd == "exempt":
                action = ActionRequest(action="exempt", incident=int(req["pid"]))
            else:
                action = ActionRequest(action=str(req["action"]), incident=int(req["id"]))
            d.queue.put(action)
            if not action.done.wait(30.0):
                return {"ok": False, "error": "the daemon did not carry out the action within 30 s"}
            if action.error:
                return {"ok": False, "error": action.error}
            return {"ok": True, "result": action.result}
        if cmd == "stop":
            d.stop()
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {cmd!r}"}


def request(path: Path, cmd: str, *, timeout: float = 60.0, **args: Any) -> dict[str, Any]:
    """Send one request to the daemon; raise NotRunning when nobody listens."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout + 5)
    try:
        try:
            sock.connect(os.fspath(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NotRunning("the nocry daemon is not running", hint=f"no listener on {path}") from None
        sock.sendall(json.dumps({"cmd": cmd, "timeout": timeout, **args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            part = sock.recv(65536)
            if not part:
                break
            data += part
    except TimeoutError:
        raise DaemonError(f"the daemon did not answer {cmd!r} within {timeout:g} s") from None
    finally:
        sock.close()
    if not data:
        raise DaemonError(f"the daemon closed the connection without answering {cmd!r}")
    answer = json.loads(data)
    if not answer.get("ok"):
        raise DaemonError(f"daemon: {answer.get('error')}")
    return answer
