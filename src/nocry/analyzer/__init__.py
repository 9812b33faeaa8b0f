"""The analyzer: features of each new version of a file against the previous one in the vault.

    from nocry.analyzer import analyze
    feats = analyze(path, new_version, prev_version, vault)   # -> ContentFeatures (plain data)
    detector.feed(feats)

Modules: ``features`` (sampling, comparison, the entry point), ``magic`` (type from signatures and
what each extension should hold), ``stats`` (entropy, compressibility, printable share, encoded-text
shape: pure functions on bytes), ``model`` (ContentFeatures, the record handed to the detector).

``analyze`` is imported lazily: the detector imports ``nocry.analyzer.model`` and must not pull in
the vault (which ``features`` needs for VersionRecord) on the way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nocry.analyzer.model import ContentFeatures

if TYPE_CHECKING:
    from nocry.analyzer.features import analyze

__all__ = ["analyze", "ContentFeatures"]


def __getattr__(name: str) -> Any:
    if name == "analyze":
        from nocry.analyzer.features import analyze

        return analyze
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
