"""``nocry restore PATH... --at TIME``: bring paths or whole trees back to a moment."""

from __future__ import annotations

import os

from nocry.capture.scan import Excluder
from nocry.cli.cmd_incidents import _exempt_self
from nocry.cli.cmd_status import open_vault
from nocry.cli.output import when
from nocry.errors import EXIT_WARNINGS, RestoreFailed
from nocry.home import Home
from nocry.restore import apply_plan, make_plan
from nocry.restore.plan import KEEP
from nocry.timeparse import parse_time_ns


def register(sub, common) -> None:
    p = sub.add_parser("restore", parents=[common], help="restore paths or trees to their state at a moment")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--at", required=True, metavar="TIME", help="ISO-8601, Unix seconds, or relative ('10 minutes ago')")
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.set_defaults(func=run_restore)



def run_restore(args, printer) -> int:
    home = Home(args.home)
    at_ns = parse_time_ns(args.at)
    excluded = Excluder(home.read_trees(), home.config().capture.exclude, prefixes=[os.fsencode(home.root)])
    vault = open_vault(home, readonly=args.dry_run)
    try:
        plan = make_plan(vault, args.paths, at_ns, excluded)
        if args.dry_run:
            rec = {"at_ns": at_ns, "at": at_ns / 1e9, "dry_run": True, "counts": plan.counts(), "plan": [it.to_record() for it in plan.items], "warnings": plan.warnings}

            def render_plan(c) -> None:
                c.print(f"restore to {when(at_ns)} (dry run): " + ", ".join(f"{n} {a}" for a, n in sorted(plan.counts().items())))
                for it in plan.changes:
                    c.print(f"  {it.action:7} {os.fsdecode(it.path)}" + (f"  ({it.why})" if it.why else ""), markup=False)
                for w in plan.warnings:
                    c.print(f"  warning: {w}", markup=False)

            printer.emit(rec, render_plan)
            return EXIT_WARNINGS if plan.warnings else 0
        _exempt_self(home)
        report = apply_plan(vault, plan)
    finally:
        vault.close()
    rec = {
        "at_ns": at_ns,
        "at": at_ns / 1e9,
        "undo_at_ns": report.undo_at_ns,
        "counts": report.counts(),
        "outcomes": [o.to_record() for o in report.outcomes if o.action != KEEP or o.result != "ok"],
        "failed": len(report.failed),
        "warnings": report.warnings,
    }

    def render(c) -> None:
        c.print(f"restored to {when(at_ns)}: " + ", ".join(f"{n} {a}" for a, n in sorted(report.counts().items())))
        for o in report.failed:
            c.print(f"  FAILED {o.action} {os.fsdecode(o.path)}: {o.detail}", markup=False)
        for w in report.warnings:
            c.print(f"  warning: {w}", markup=False)
        c.print(f"undo with: nocry --home {home.root} restore {' '.join(args.paths)} --at {report.undo_at_ns / 1e9:.6f}", markup=False)

    printer.emit(rec, render)
    if report.failed:
        raise RestoreFailed(f"{len(report.failed)} object(s) were not restored; see the report above")
    return EXIT_WARNINGS if report.warnings else 0
