"""``nocry drill init|list|run|undo``: safe, reversible attack simulations in a marked directory."""

from __future__ import annotations

import sys

from rich.table import Table

from nocry.drill.marker import resolve_drill_dir
from nocry.drill.runner import DEFAULT_FILES, DEFAULT_SEED, init_drill, list_scenarios, start_run
from nocry.drill.undo import undo_drill
from nocry.errors import EXIT_WARNINGS, RestoreFailed

EPILOG = """\
A drill only acts in a directory made by `nocry drill init`, which holds the marker .nocry-drill.
Every change is logged (with its key, or a copy of the original) in DIR/.nocry-drill.d/ before it is
made; `nocry drill undo DIR` reverses all of it, with or without a running nocry.
"""


def register(sub, common) -> None:
    p = sub.add_parser("drill", parents=[common], help="safe, reversible attack simulations (ransomware, wipers) in a marked directory",
                       description="Safe, reversible, built-in attack simulations.", epilog=EPILOG)
    ds = p.add_subparsers(dest="drill_command", metavar="ACTION")
    ds.required = True

    i = ds.add_parser("init", parents=[common], help="create a drill directory with a realistic document tree")
    i.add_argument("dir", metavar="DIR")
    i.add_argument("--files", type=int, default=DEFAULT_FILES, help="how many documents (default %(default)s, at most 100000)")
    i.add_argument("--seed", type=int, default=DEFAULT_SEED, help="same seed, same bytes (default %(default)s)")
    i.set_defaults(func=run_init)

    ls = ds.add_parser("list", parents=[common], help="the scenarios, attacks and benign jobs")
    ls.set_defaults(func=run_list)

    r = ds.add_parser("run", parents=[common], help="run one scenario against a drill directory, from separate processes",
                      epilog="exit status: 0 the attack finished or was stopped (see \"outcome\"), 1 the attacker "
                             "process failed, 2 refused (no marker, bad arguments, attackers of an earlier run alive)")
    r.add_argument("scenario", metavar="SCENARIO")
    r.add_argument("dir", metavar="DIR")
    r.add_argument("--delay", type=float, default=None, help="seconds between files (default 0; 3 for slow)")
    r.add_argument("--limit", type=int, default=None, help="only the first N files in path order")
    r.add_argument("--workers", type=int, default=None, help="processes for many-workers (default 8)")
    r.add_argument("--timeout", type=float, default=60.0,
                   help="stop waiting when the attack has made no progress for --delay plus this many seconds "
                        "(frozen by a defender); the attacker processes are left as they are (default %(default)s)")
    r.set_defaults(func=run_run)

    u = ds.add_parser("undo", parents=[common], help="reverse every recorded change and verify every file",
                      epilog="exit status: 0 every file verified, 1 verified but files not from the drill are present, "
                             "2 refused, 6 not fully restored (the report says which files and why)")
    u.add_argument("dir", metavar="DIR")
    u.set_defaults(func=run_undo)


def run_init(args, printer) -> int:
    def progress(done: int, total: int) -> None:
        if done % 100 == 0 or done == total:
            printer.err.print(f"\r{done}/{total} files", end="", markup=False)
            if done == total:
                printer.err.print("", markup=False)

    show = not printer.json_mode and sys.stderr.isatty() and args.files >= 500
    rec = init_drill(args.dir, args.files, args.seed, progress if show else None)
    printer.emit(rec, lambda c: c.print(
        f"drill directory {rec['dir']}: {rec['files']} files, {rec['bytes'] / 1e6:.1f} MB, seed {rec['seed']} "
        f"({rec['seconds']:.1f} s)", markup=False))
    return 0


def run_list(args, printer) -> int:
    rows = list_scenarios()

    def render(c) -> None:
        for kind, title in (("attack", "attacks"), ("benign", "benign jobs (NOT attacks: ordinary work, for false-alarm tests)")):
            t = Table(title=title, show_lines=False, title_justify="left")
            t.add_column("scenario")
            t.add_column("what it does")
            for r in rows:
                if r["kind"] == kind:
                    t.add_row(r["name"], r["summary"])
            c.print(t)

    printer.emit({"scenarios": rows}, render)
    return 0


def run_run(args, printer) -> int:
    rec = start_run(args.dir, args.scenario, limit=args.limit, delay=args.delay, workers=args.workers, timeout=args.timeout)

    def render(c) -> None:
        state = {"finished": "finished", "killed": "STOPPED (killed)", "timeout": "STOPPED (no progress: frozen?)",
                 "failed": "FAILED"}[rec["outcome"]]
        c.print(f"{rec['scenario']} on {rec['dir']}: {state} after {rec['seconds']:.1f} s", markup=False)
        c.print(f"  files touched {len(rec['files_touched'])} of {rec['files_planned']}, created {len(rec['files_created'])}, "
                f"deleted {len(rec['files_deleted'])}", markup=False)
        c.print(f"  attacker pids: {' '.join(map(str, rec['pids']))}", markup=False)
        if rec["alive_pids"]:
            c.print(f"  still alive (left alone): {' '.join(map(str, rec['alive_pids']))}", markup=False)
        for e in rec["errors"][:10]:
            c.print(f"  error: {e['path']}: {e['error']}", markup=False)
        c.print(f"  undo: {rec['undo']}", markup=False)

    printer.emit(rec, render)
    if rec["outcome"] == "failed":
        printer.warn(f"the attacker process failed (exit status {rec['exit_status']}); see {rec['dir']}/.nocry-drill.d/runs/{rec['run_id']}/worker.log")
        return EXIT_WARNINGS
    return 0


def run_undo(args, printer) -> int:
    rec = undo_drill(resolve_drill_dir(args.dir))

    def render(c) -> None:
        v = rec["verify"]
        c.print(f"undo {rec['dir']}: {rec['undone']} changes undone, {rec['unchanged']} already fine, {len(rec['failed'])} failed; "
                f"{v['ok']} of {v['files']} files verified", markup=False)
        for f in rec["failed"]:
            c.print(f"  failed: {f['path']}: {f['reason']}", markup=False)
        for k in ("missing", "changed", "extra"):
            for p in v[k][:20]:
                c.print(f"  {k}: {p}", markup=False)

    printer.emit(rec, render)
    if not rec["restored"]:
        printer.warn("the drill directory is not fully restored (see above)")
        return RestoreFailed.exit_code
    if rec["verify"]["extra"]:
        printer.warn(f"{len(rec['verify']['extra'])} file(s) not from the drill are in the directory")
        return EXIT_WARNINGS
    return 0
