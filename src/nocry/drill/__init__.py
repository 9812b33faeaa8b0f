"""Drills: safe, reversible, built-in attack simulations inside a marked directory.

    nocry drill init DIR            generate a realistic document tree; write the marker DIR/.nocry-drill
    nocry drill run SCENARIO DIR    attack it from separate processes (see nocry drill list)
    nocry drill undo DIR            reverse every recorded change and verify every hash

Safety rules, enforced in code (marker.py, safefs.py) and tested:

- a drill acts only in a directory that holds the marker written by ``drill init``; never on /, in a
  system directory, on a whole home directory, or through a DIR that is a symlink;
- inside it, every path is opened component by component with O_NOFOLLOW on one filesystem, and
  hard-linked files are refused, so nothing outside the tree is ever read or written;
- every change is appended to the manifest in DIR/.nocry-drill.d/ before it is made, with the run's
  random key (a simulation) and, for wipers, a copy of the original: ``drill undo`` (or a person with
  the README there) reverses everything without nocry;
- no network, no copying of itself, no look at other directories; no real malware anywhere.

Modules: marker (marker, state dir, manifest), safefs (confined file operations), corpus (the tree),
crypto (transforms), scenarios (per-file actions), worker (the attacker process), runner (init and
run for the CLI), undo.
"""

from __future__ import annotations

import importlib.util

from nocry.drill.safefs import MARKER_NAME, STATE_DIR_NAME
from nocry.errors import UserError

__all__ = ["MARKER_NAME", "STATE_DIR_NAME", "require_modules"]


def require_modules(modules: tuple[str, ...] | list[str]) -> None:
    """One clear line when the optional ``drill`` extra is not installed (its libraries are only
    imported where used, so the rest of nocry works without them)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(
            f"the drill extra is not installed (missing Python module{'s' if len(missing) > 1 else ''}: {', '.join(missing)})",
            hint="pip install 'nocry[drill]'",
        )
