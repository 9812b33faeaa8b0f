"""``--set SECTION.KEY=VALUE`` of the benchmarks -> the text of a nocry config.toml.

Self-contained (no import of ``common``), so that benchmarks with a ``common`` module of their own
(bench/attacks) can use it too."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path


def config_toml(settings: Sequence[str], nocry: str) -> str | None:
    """``["capture.nice=0", ...]`` -> the text of a config.toml (None for no settings); checked
    with ``nocry check-config``, so a typo fails here and not in the first daemon."""
    if not settings:
        return None
    sections: dict[str, list[str]] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise SystemExit(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. capture.nice=0")
        sections.setdefault(section, []).append(f"{name} = {value.strip()}")
    text = "".join(f"[{sec}]\n" + "\n".join(lines) + "\n" for sec, lines in sections.items())
    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "config.toml"
        cfg.write_text(text)
        probe = subprocess.run([nocry, "check-config", str(cfg)], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise SystemExit(f"--set: nocry rejects this configuration:\n{text}{(probe.stderr.strip().splitlines() or ['?'])[-1]}")
    return text
