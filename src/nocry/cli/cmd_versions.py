"""``nocry versions PATH``: every stored version of one object, newest first."""

from __future__ import annotations

import os
import stat

from rich.table import Table

from nocry.cli.cmd_status import open_vault
from nocry.cli.output import when
from nocry.errors import UserError
from nocry.home import Home
from nocry.restore.plan import normalise


def register(sub, common) -> None:
    p = sub.add_parser("versions", parents=[common], help="list the versions of one object, newest first")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=run_versions)


def run_versions(args, printer) -> int:
    home = Home(args.home)
    path = normalise(args.path)
    vault = open_vault(home)
    try:
        history = vault.history(path)
    finally:
        vault.close()
    if not history:
        raise UserError(f"no versions of {os.fsdecode(path)} in the vault")
    records = [r.to_record() for r in history]

    def render(c) -> None:
        t = Table(title=os.fsdecode(path), show_lines=False)
        for col in ("id", "time", "kind", "size", "mode", "hash", "by"):
            t.add_column(col)
        for r in history:
            by = f"{r.subject.comm or os.fsdecode(r.subject.exe)}[{r.subject.pid}]" if r.subject else r.reason
            extra = ""
            if r.renamed_to:
                extra = f" -> {os.fsdecode(r.renamed_to)}"
            elif r.renamed_from:
                extra = f" <- {os.fsdecode(r.renamed_from)}"
            t.add_row(
                str(r.id),
                when(r.time_ns),
                r.kind + extra,
                str(r.size) if r.exists else "",
                oct(stat.S_IMODE(r.mode)) if r.exists else "",
                r.content.hex()[:16] if r.content else "",
                f"{by} ({r.reason})",
            )
        c.print(t)

    printer.emit({"path": os.fsdecode(path), "versions": records}, render)
    return 0
