"""Logging for the daemon and the CLI: ``key=value`` lines on stderr (journald), or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["setup_logging"]


class _KVFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        line = f"{ts} level={record.levelname.lower()} logger={record.name} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        rec = {
            "time": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            rec["exception"] = self.formatException(record.exc_info)
        return json.dumps(rec)


def setup_logging(level: int = logging.INFO, json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JSONFormatter() if json_lines else _KVFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
