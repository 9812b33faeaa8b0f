"""``nocry status``: what the daemon is doing, what the vault holds, which alarms stand."""

from __future__ import annotations

import os

from nocry.cli.output import size
from nocry.control import request
from nocry.errors import DaemonError
from nocry.home import Home


def register(sub, common) -> None:
    p = sub.add_parser("status", parents=[common], help="state of the daemon and the vault")
    p.set_defaults(func=run_status)


def open_vault(home: Home, *, readonly: bool = True):
    from nocry.errors import UserError
    from nocry.vault import Vault

    if not home.vault_dir.exists():
        raise UserError(f"no vault in {home.root}", hint="run 'nocry protect PATH' first, or pass --home")
    return Vault(home.vault_dir, home.config().vault, readonly=readonly)


def run_status(args, printer) -> int:
    home = Home(args.home)
    status = None
    running = home.daemon_running()
    if running:
        try:
            status = request(home.socket_path, "status", timeout=5)["status"]
        except DaemonError:
            status = home.read_status()
    if status is None or not running:
        last = home.read_status() or {}
        status = {
            "state": "stopped",
            "mode": home.config().mode if home.exists() else "enforce",
            "trees": [os.fsdecode(t) for t in home.read_trees()],
            "events_total": last.get("events_total", 0),
            "overflows": last.get("overflows", 0),
            "last_run": last or None,
        }
    status["home"] = str(home.root)
    if home.vault_dir.exists():
        vault = open_vault(home)
        try:
            status["vault"] = vault.stats().to_record()
        finally:
            vault.close()
    else:
        status["vault"] = {"objects": 0, "bytes_stored": 0, "bytes_logical": 0}
    alerts = home.read_alerts(limit=5)
    status["recent_alerts"] = alerts

    def render(c) -> None:
        v = status["vault"]
        c.print(f"state: {status['state']}   mode: {status['mode']}   home: {status['home']}")
        c.print("trees: " + (", ".join(status["trees"]) or "(none)"))
        c.print(f"events: {status.get('events_total', 0)}   overflows: {status.get('overflows', 0)}   pending: {status.get('pending', 0)}")
        if status.get("capture_paused"):
            c.print(f"[bold red]capture paused: {status['capture_paused']}[/]")
        c.print(f"vault: {v.get('objects', 0)} objects, {v.get('versions', 0)} versions, {size(v.get('bytes_stored', 0))} stored for {size(v.get('bytes_logical', 0))} logical")
        for a in alerts:
            c.print(f"alert: {a.get('alert')}: {a.get('message')}", markup=False)

    printer.emit(status, render)
    return 1 if status.get("capture_paused") else 0

