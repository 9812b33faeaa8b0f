"""``nocry vault verify|stats|prune``."""

from __future__ import annotations

import time

from nocry.cli.cmd_status import open_vault
from nocry.cli.output import size
from nocry.errors import EXIT_WARNINGS, VaultCorrupt
from nocry.home import Home


def register(sub, common) -> None:
    p = sub.add_parser("vault", parents=[common], help="vault maintenance: verify, stats, prune")
    vs = p.add_subparsers(dest="vault_command", metavar="ACTION")
    vs.required = True
    v = vs.add_parser("verify", parents=[common], help="re-read and re-hash everything; report damage precisely")
    v.add_argument("--metadata-only", action="store_true", help="check the index and pack listing without reading pack data")
    v.set_defaults(func=run_verify)
    s = vs.add_parser("stats", parents=[common], help="sizes and counts")
    s.set_defaults(func=run_stats)
    r = vs.add_parser("prune", parents=[common], help="apply the retention policy and reclaim space")
    r.set_defaults(func=run_prune)


def run_verify(args, printer) -> int:
    vault = open_vault(Home(args.home))
    try:
        report = vault.verify(read_data=not args.metadata_only)
    finally:
        vault.close()
    rec = report.to_record()

    def render(c) -> None:
        c.print(f"vault verify: {'ok' if report.ok else 'DAMAGED'}", markup=False)
        for e in report.errors:
            c.print(f"  error: {e}", markup=False)
        for w in report.warnings:
            c.print(f"  warning: {w}", markup=False)

    printer.emit(rec, render)
    if not report.ok:
        raise VaultCorrupt(f"the vault is damaged: {len(report.errors)} problem(s)")
    return EXIT_WARNINGS if report.warnings else 0


def run_stats(args, printer) -> int:
    vault = open_vault(Home(args.home))
    try:
        stats = vault.stats().to_record()
    finally:
        vault.close()
    printer.emit(
        stats,
        lambda c: c.print(
            f"{stats.get('objects')} objects, {stats.get('versions')} versions, {stats.get('chunks')} chunks in {stats.get('packs')} packs; "
            f"{size(stats.get('bytes_stored', 0))} stored for {size(stats.get('bytes_logical', 0))} logical"
        ),
    )
    return 0


def run_prune(args, printer) -> int:
    home = Home(args.home)
    hold = _open_incidents_start(home)
    vault = open_vault(home, readonly=False)
    try:
        forget = vault.forget(home.config().retention, time.time_ns(), hold_after_ns=hold)
        prune = vault.prune()
    finally:
        vault.close()
    rec = {"forget": forget.to_record(), "prune": prune.to_record()}
    printer.emit(rec, lambda c: c.print(f"forget: {rec['forget']}\nprune: {rec['prune']}", markup=False))
    return 0


def _open_incidents_start(home: Home) -> int | None:
    """Nothing an open incident's restore needs may be thinned away."""
    path = home.root / "incidents.sqlite"
    if not path.exists():
        return None
    from nocry.incidents import IncidentStore

    store = IncidentStore(path)
    try:
        starts = [i.started_ns for i in store.list() if i.restored_ns is None and i.state in ("frozen", "observed", "unfrozen")]
    finally:
        store.close()
    return min(starts) - home.config().detect.lookback_s * 1_000_000_000 if starts else None
