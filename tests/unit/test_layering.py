"""Dependencies point one way (docs/design.md §2). Walk every module's imports and check them."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "nocry"

#: package -> nocry packages/modules it must never import
FORBIDDEN = {
    "sensor": {"vault", "capture", "restore", "detector", "responder", "analyzer", "cli", "daemon", "defence", "incidents"},
    "detector": {"sensor", "vault", "capture", "restore", "responder", "cli", "daemon", "defence", "incidents"},
    "analyzer": {"sensor", "restore", "detector", "responder", "cli", "daemon", "defence", "incidents"},
    "vault": {"sensor", "capture", "restore", "detector", "responder", "analyzer", "cli", "daemon", "defence", "incidents"},
    "capture": {"sensor", "restore", "detector", "responder", "cli", "daemon", "defence"},
    "restore": {"sensor", "detector", "responder", "cli", "daemon", "defence"},
    "responder": {"sensor", "vault", "capture", "restore", "detector", "analyzer", "cli", "daemon"},
    "drill": {"sensor", "vault", "capture", "restore", "detector", "responder", "analyzer", "daemon", "defence"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nocry."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("nocry."):
                    out.add(a.name.split(".")[1])
    return out


def test_dependencies_point_one_way():
    problems = []
    for pkg, forbidden in FORBIDDEN.items():
        for f in sorted((SRC / pkg).rglob("*.py")):
            bad = _imports(f) & forbidden
            if bad:
                problems.append(f"{f.relative_to(SRC)} imports {sorted(bad)}")
    assert problems == []


def test_cli_holds_no_logic_it_only_calls_stages():
    # the CLI may import anything, but nothing imports the CLI
    for f in SRC.rglob("*.py"):
        if "cli" in f.relative_to(SRC).parts:
            continue
        assert "cli" not in _imports(f) or f.name == "__main__.py", f
