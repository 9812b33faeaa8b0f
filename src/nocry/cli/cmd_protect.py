"""``nocry protect``, ``nocry stop``, ``nocry sync``: start, stop and catch up the daemon."""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
import time

from nocry.config import DEFAULT_TOML
from nocry.control import request
from nocry.errors import AlreadyRunning, DaemonError, NotRunning, UserError
from nocry.home import Home, check_tree_paths

log = logging.getLogger(__name__)


def register(sub, common) -> None:
    p = sub.add_parser("protect", parents=[common], help="protect trees: baseline them, then capture every change")
    p.add_argument("paths", nargs="*", metavar="PATH", help="directories to protect (default: the trees protected last time)")
    p.add_argument("--foreground", action="store_true", help="run in the foreground until SIGTERM/SIGINT")
    p.add_argument("--mode", choices=("observe", "enforce"), help="observe: alert only; enforce: act (default from config: enforce)")
    p.add_argument("--record", metavar="FILE", help="also write everything the detector sees to FILE (JSON lines) for replay")
    p.set_defaults(func=run_protect, daemon_logging=True)

    s = sub.add_parser("stop", parents=[common], help="stop the daemon (raises the 'stopped' alarm)")
    s.add_argument("--timeout", type=float, default=60.0)
    s.set_defaults(func=run_stop)

    y = sub.add_parser("sync", parents=[common], help="wait until every change made so far is in the vault")
    y.add_argument("--timeout", type=float, default=60.0)
    y.add_argument("--rescan", action="store_true", help="also rescan every tree against the vault")
    y.set_defaults(func=run_sync)


def run_protect(args, printer) -> int:
    home = Home(args.home)
    if home.daemon_running():
        raise AlreadyRunning(f"a nocry daemon already runs for {home.root}", hint="nocry stop, then protect again")
    home.create()
    if not home.config_path.exists():
        home.config_path.write_text(DEFAULT_TOML)
        os.chmod(home.config_path, 0o600)
    config = home.config()
    if args.mode:
        config = config.replace(mode=args.mode)
    raw = [os.fsencode(p) for p in args.paths] or home.read_trees()
    if not raw:
        raise UserError("name at least one directory to protect")
    trees = check_tree_paths(raw, home)
    home.write_trees(trees)
    if args.foreground:
        return _run_foreground(home, trees, config, args.record)
    return _spawn(home, args, printer)


def _run_foreground(home: Home, trees, config, record: str | None) -> int:
    from nocry import sdnotify
    from nocry.daemon import Daemon

    daemon = Daemon(home, trees, config, record_path=os.path.abspath(record) if record else None)
    daemon.install_signal_handlers()
    try:
        return daemon.run(on_ready=lambda: sdnotify.notify("READY=1"))
    finally:
        sdnotify.notify("STOPPING=1")


def _spawn(home: Home, args, printer) -> int:
    """Start the daemon in its own session and wait until it protects (or fails)."""
    log_path = home.root / "daemon.log"
    cmd = [sys.executable, "-m", "nocry", "--home", str(home.root), "protect", "--foreground"]
    if args.mode:
        cmd += ["--mode", args.mode]
    if args.record:
        cmd += ["--record", os.path.abspath(args.record)]
    with open(log_path, "ab") as logf:
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True, close_fds=True)
    while True:
        rc = child.poll()
        if rc is not None:
            tail = log_path.read_bytes()[-2000:].decode("utf-8", "replace").strip().splitlines()[-3:]
            raise DaemonError(f"the daemon exited with code {rc}: {' | '.join(tail)}", hint=f"log: {log_path}")
        st = home.read_status()
        if st and st.get("pid") == child.pid and st.get("state") == "protecting":
            break
        time.sleep(0.1)
    printer.emit(st, lambda c: c.print(f"nocry protects {', '.join(st['trees'])} (pid {child.pid}, mode {st['mode']}); log: {log_path}"))
    return 0


def run_stop(args, printer) -> int:
    home = Home(args.home)
    if not home.daemon_running():
        raise NotRunning(f"no nocry daemon runs for {home.root}")
    pid = home.daemon_pid()
    # held before asking, so that a recycled pid cannot be mistaken for the daemon afterwards
    try:
        pidfd = os.pidfd_open(pid) if pid else None
    except OSError:
        pidfd = None
    try:
        try:
            request(home.socket_path, "stop", timeout=10)
        except DaemonError:
            if pid:
                os.kill(pid, 15)
        deadline = time.monotonic() + args.timeout
        while home.daemon_running():
            if time.monotonic() > deadline:
                raise DaemonError(f"the daemon (pid {pid}) did not stop within {args.timeout:g} s")
            time.sleep(0.1)
        # the lock goes before the process does (the interpreter still frees its heap): return
        # only once it has exited, so that a script's next step finds no daemon at all
        if pidfd is not None and not select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise DaemonError(f"the daemon (pid {pid}) released its lock but did not exit within {args.timeout:g} s")
    finally:
        if pidfd is not None:
            os.close(pidfd)
    printer.emit({"stopped": True, "pid": pid}, lambda c: c.print(f"nocry stopped (pid {pid}); the trees are no longer protected"))
    return 0


def run_sync(args, printer) -> int:
    home = Home(args.home)
    answer = request(home.socket_path, "sync", timeout=args.timeout, rescan=args.rescan)
    st = answer["status"]
    printer.emit(st, lambda c: c.print(f"in sync: {st['versions_stored']} versions stored, {st['pending']} pending"))
    return 0
