"""``nocry check-config [FILE]`` and ``nocry default-config``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from nocry.config import DEFAULT_TOML, load_config
from nocry.errors import UserError
from nocry.home import Home


def register(sub, common) -> None:
    p = sub.add_parser("check-config", parents=[common], help="check a configuration file (default: HOME/config.toml)")
    p.add_argument("file", nargs="?")
    p.set_defaults(func=run_check)
    d = sub.add_parser("default-config", parents=[common], help="print the commented default configuration")
    d.set_defaults(func=lambda args, printer: printer.emit({"toml": DEFAULT_TOML}, lambda c: c.out(DEFAULT_TOML, end="")) or 0)


def run_check(args, printer) -> int:
    path = Path(args.file) if args.file else Home(args.home).config_path
    if args.file and not path.exists():
        raise UserError(f"no such file: {path}")
    cfg = load_config(path)
    rec = dataclasses.asdict(cfg)
    printer.emit(rec, lambda c: c.print(f"{cfg.source}: ok (mode {cfg.mode})", markup=False))
    return 0
