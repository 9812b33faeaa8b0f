"""Incidents: the record of every verdict, its response and its restore."""

from nocry.incidents.store import Incident, IncidentStore

__all__ = ["Incident", "IncidentStore"]
