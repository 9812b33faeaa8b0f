"""``nocry incidents`` and ``nocry incident show|kill|release|restore ID``."""

from __future__ import annotations

import os
import time

from rich.table import Table

from nocry.capture.scan import Excluder
from nocry.cli.cmd_status import open_vault
from nocry.cli.output import when
from nocry.config import RespondConfig
from nocry.control import request
from nocry.errors import EXIT_WARNINGS, DaemonError, NotRunning, RestoreFailed, UserError
from nocry.home import Home
from nocry.incidents import IncidentStore
from nocry.restore import apply_plan, make_plan_at
from nocry.restore.plan import KEEP


def register(sub, common) -> None:
    p = sub.add_parser("incidents", parents=[common], help="list incidents (detected attacks)")
    p.set_defaults(func=run_list)
    i = sub.add_parser("incident", parents=[common], help="show, kill, release or restore one incident")
    i.add_argument("action", choices=("show", "kill", "release", "restore"))
    i.add_argument("id", type=int)
    i.add_argument("--dry-run", action="store_true", help="restore: print the plan, change nothing")
    i.set_defaults(func=run_incident)


def _store(home: Home) -> IncidentStore:
    path = home.root / "incidents.sqlite"
    if not path.exists():
        raise UserError(f"no incidents recorded in {home.root}")
    return IncidentStore(path)



def run_list(args, printer) -> int:
    home = Home(args.home)
    if not (home.root / "incidents.sqlite").exists():
        printer.emit({"incidents": []}, lambda c: c.print("no incidents"))
        return 0
    store = _store(home)
    try:
        incs = store.list()
    finally:
        store.close()
    recs = [i.to_record() for i in incs]

    def render(c) -> None:
        if not incs:
            c.print("no incidents")
            return
        t = Table()
        for col in ("id", "state", "actor", "pids", "started", "detected after", "objects", "indicators"):
            t.add_column(col)
        for r in recs:
            names = sorted({x["name"] for x in r["indicators"]})
            t.add_row(str(r["id"]), r["state"], f"{r['actor'].get('label')} {r['actor'].get('exe')}", ",".join(map(str, r["actor"].get("pids", []))), when(r["started_ns"]), f"{r['detection_delay_s']} s", str(r["objects_touched"]), ", ".join(names))
        c.print(t)

    printer.emit({"incidents": recs}, render)
    return 0


def run_incident(args, printer) -> int:
    home = Home(args.home)
    if args.action == "show":
        return _show(home, args, printer)
    if args.action in ("kill", "release"):
        return _act(home, args, printer)
    return _restore(home, args, printer)


def _show(home: Home, args, printer) -> int:
    store = _store(home)
    try:
        inc = store.get(args.id)
    finally:
        store.close()
    rec = inc.to_record(with_objects=True)

    def render(c) -> None:
        c.print(f"incident {inc.id}: {inc.state} ({inc.mode} mode), score {inc.score:.1f}", markup=False)
        a = inc.actor
        c.print(f"actor: {a.get('label')}  exe {a.get('exe')}  uid {a.get('uid')}  session {a.get('session')}", markup=False)
        if a.get("cmdline"):
            c.print(f"  cmdline: {a['cmdline']}", markup=False)
        for p in a.get("processes", []):
            c.print(f"  pid {p['pid']} ({p['comm']}) {p['cmdline'][:100]}", markup=False)
        c.print(f"started {when(inc.started_ns)}, detected {when(inc.detected_ns)} ({rec['detection_delay_s']} s later)")
        c.print("evidence:")
        for ind in inc.indicators[:40]:
            c.print(f"  {ind['name']:18} +{ind['weight']:<5} pid {ind['pid']:<7} {ind['path']}  {ind['detail']}", markup=False)
        c.print(f"objects touched: {len(inc.objects)}")
        for act in inc.actions:
            c.print(f"action: {act}", markup=False)

    printer.emit(rec, render)
    return 0


def _act(home: Home, args, printer) -> int:
    """Through the daemon when it runs (it owns the freeze); directly otherwise."""
    try:
        result = request(home.socket_path, "incident", action=args.action, id=args.id, timeout=30)["result"]
    except NotRunning:
        from nocry.defence import freeze_records
        from nocry.responder import Responder

        store = _store(home)
        try:
            inc = store.get(args.id)
            responder = Responder(home.config().respond if home.exists() else RespondConfig())
            errors = []
            for rec in freeze_records(inc.freeze):
                errors += responder.kill(rec) if args.action == "kill" else responder.release(rec)
            state = "killed" if args.action == "kill" else "released"
            store.set_state(args.id, state, {"action": args.action, "errors": errors, "by": "cli"})
            result = {"id": args.id, "state": state, "errors": errors}
        finally:
            store.close()
    except DaemonError:
        raise
    printer.emit(result, lambda c: c.print(f"incident {args.id}: {result['state']}" + (f" (errors: {result['errors']})" if result.get("errors") else "")))
    return EXIT_WARNINGS if result.get("errors") else 0


def _restore(home: Home, args, printer) -> int:
    store = _store(home)
    try:
        inc = store.get(args.id)
        if inc.state == "frozen" and not args.dry_run:
            printer.warn(f"the actor of incident {inc.id} is still frozen; it cannot interfere. 'nocry incident kill {inc.id}' ends it")
        if inc.state in ("released", "unfrozen") and not args.dry_run:
            printer.warn(f"the actor of incident {inc.id} is not frozen: if it still runs it may damage files again")
        if not inc.objects:
            raise UserError(f"incident {inc.id} touched no objects")
        roots = [(p, max(0, t - 1)) for p, t in inc.objects.items()]
        excluded = Excluder(home.read_trees(), home.config().capture.exclude, prefixes=[os.fsencode(home.root)])
        if not args.dry_run:
            _exempt_self(home)
        vault = open_vault(home, readonly=args.dry_run)
        try:
            plan = make_plan_at(vault, roots, excluded, unknown_ok=True)
            if args.dry_run:
                rec = {"incident": inc.id, "dry_run": True, "counts": plan.counts(), "plan": [it.to_record() for it in plan.items], "warnings": plan.warnings}

                def render_plan(c) -> None:
                    c.print(f"incident {inc.id} restore (dry run): " + ", ".join(f"{n} {a}" for a, n in sorted(plan.counts().items())))
                    for it in plan.changes:
                        c.print(f"  {it.action:7} {os.fsdecode(it.path)}", markup=False)

                printer.emit(rec, render_plan)
                return 0
            report = apply_plan(vault, plan)
        finally:
            vault.close()
        store.set_restored(inc.id, time.time_ns(), {"action": "restore", "counts": report.counts(), "failed": len(report.failed), "undo_at_ns": report.undo_at_ns})
    finally:
        store.close()
    rec = {
        "incident": inc.id,
        "counts": report.counts(),
        "restored": sum(1 for o in report.outcomes if o.result == "ok" and o.action != KEEP),
        "failed": len(report.failed),
        "outcomes": [o.to_record() for o in report.outcomes if o.action != KEEP or o.result != "ok"],
        "undo_at_ns": report.undo_at_ns,
        "warnings": report.warnings,
    }

    def render(c) -> None:
        c.print(f"incident {inc.id} restored: " + ", ".join(f"{n} {a}" for a, n in sorted(report.counts().items())))
        for o in report.failed:
            c.print(f"  FAILED {o.action} {os.fsdecode(o.path)}: {o.detail}", markup=False)

    printer.emit(rec, render)
    if report.failed:
        raise RestoreFailed(f"{len(report.failed)} object(s) were not restored")
    return EXIT_WARNINGS if report.warnings else 0


def _exempt_self(home: Home) -> None:
    """A restore rewrites what an attacker touched, decoys included: the daemon must not judge it."""
    try:
        request(home.socket_path, "exempt", pid=os.getpid(), timeout=10)
    except DaemonError:
        pass
