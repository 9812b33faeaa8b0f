"""Capture: turn what is on disk into versions in the vault (one path, or a whole tree)."""

from nocry.capture.scan import Excluder, ScanReport, rescan_tree, walk_tree
from nocry.capture.snapshot import ChangedWhileRead, Unreadable, snapshot, tombstone

__all__ = ["Excluder", "ScanReport", "rescan_tree", "walk_tree", "snapshot", "tombstone", "ChangedWhileRead", "Unreadable"]
