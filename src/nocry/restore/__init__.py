"""Restore: plans (what must change) and their safe application (capture first, verify after)."""

from nocry.restore.apply import Outcome, RestoreReport, apply_plan
from nocry.restore.plan import Plan, PlanItem, make_plan, make_plan_at

__all__ = ["Plan", "PlanItem", "make_plan", "make_plan_at", "apply_plan", "RestoreReport", "Outcome"]
