"""Detection: pure scoring of actors from events and content features (see engine.py)."""

from nocry.detector.engine import KNOWN_EXTS, Detector, extension
from nocry.detector.model import ActorRef, Indicator, Verdict

__all__ = ["Detector", "Verdict", "Indicator", "ActorRef", "extension", "KNOWN_EXTS"]
