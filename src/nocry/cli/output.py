"""The one place that prints: text for people (rich tables) or one JSON document for machines.

Library code never prints; a command builds a record (plain dict) and hands it here together with a
function that renders it as text.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

__all__ = ["Printer", "when", "size"]


def when(ns: int) -> str:
    """A moment as people read it: local time to the millisecond."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9)) + f".{(ns // 1_000_000) % 1000:03d}"


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class Printer:
    def __init__(self, json_mode: bool):
        self.json_mode = json_mode
        self.console = Console(file=sys.stdout, highlight=False, soft_wrap=True)
        self.err = Console(file=sys.stderr, highlight=False, soft_wrap=True)

    def emit(self, record: Any, render: Callable[[Console], None] | None = None) -> None:
        if self.json_mode:
            sys.stdout.write(json.dumps(record, sort_keys=True, default=str) + "\n")
            sys.stdout.flush()
        elif render is not None:
            render(self.console)

    def error(self, message: str, code: int) -> None:
        if self.json_mode:
            sys.stdout.write(json.dumps({"error": message, "exit_code": code}) + "\n")
        self.err.print(f"nocry: error: {message}", markup=False)

    def warn(self, message: str) -> None:
        self.err.print(f"nocry: warning: {message}", markup=False)
