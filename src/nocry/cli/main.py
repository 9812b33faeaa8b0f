"""The ``nocry`` command: parse arguments, run one subcommand, map errors to exit codes.

    nocry [--home DIR] [--json] [--log-json] [-v] COMMAND ...

Each subcommand lives in its own module (cli/cmd_*.py) and returns an exit code; the modules hold
no logic beyond calling the stages and printing through one Printer.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from nocry import __version__
from nocry.cli import cmd_config, cmd_drill, cmd_incidents, cmd_protect, cmd_restore, cmd_status, cmd_vault, cmd_versions
from nocry.cli.logs import setup_logging
from nocry.cli.output import Printer
from nocry.errors import EXIT_INTERNAL, NocryError
from nocry.home import DEFAULT_HOME

__all__ = ["main", "build_parser"]

EXIT_CODES = """\
exit codes:
  0   ok                                  5   vault damaged or unusable
  1   finished with warnings              6   restore incomplete (some files failed)
  2   usage or user error                 7   no space left for the vault
  3   configuration error                 70  internal error (a bug; traceback printed)
  4   daemon not running / already running
"""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON document")

    p = argparse.ArgumentParser(
        prog="nocry",
        description="Protect file trees against ransomware, wipers and bulk theft; bring every file back.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--home", default=os.environ.get("NOCRY_HOME", DEFAULT_HOME), help="state directory of this instance (env NOCRY_HOME, default %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--log-json", action="store_true", help="log JSON lines on stderr instead of key=value")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("--version", action="version", version=f"nocry {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    for mod in (cmd_protect, cmd_status, cmd_versions, cmd_restore, cmd_vault, cmd_config, cmd_incidents, cmd_drill):
        mod.register(sub, common)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    if getattr(args, "daemon_logging", False):
        level = min(level, logging.INFO)
    setup_logging(level, json_lines=args.log_json)
    printer = Printer(json_mode=bool(getattr(args, "json", False)))
    try:
        return int(args.func(args, printer) or 0)
    except NocryError as exc:
        if exc.traceback:
            traceback.print_exc()
        printer.error(str(exc), exc.exit_code)
        return exc.exit_code
    except KeyboardInterrupt:
        printer.error("interrupted", 130)
        return 130
    except BrokenPipeError:
        return 0
    except Exception:  # noqa: BLE001 - a bug: show it, with its own exit code
        traceback.print_exc()
        printer.error("internal error (this is a bug in nocry; the traceback is above)", EXIT_INTERNAL)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
