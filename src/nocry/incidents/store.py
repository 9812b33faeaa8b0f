"""Incidents: recorded verdicts with their actor, rollback point, objects, evidence and actions.

    HOME/incidents.sqlite
        incidents(id, state, mode, started_ns, detected_ns, actor json, score, indicators json,
                  freeze json, actions json, restored_ns)
        incident_objects(incident_id, path BLOB, first_ns)      -- grows while the incident is open

States: observed (observe mode: alarm only), frozen, killed, released. ``restored_ns`` is set once
an incident restore ran.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nocry.errors import UserError
from nocry.events import path_to_json

__all__ = ["IncidentStore", "Incident"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL,
    mode TEXT NOT NULL,
    started_ns INTEGER NOT NULL,
    detected_ns INTEGER NOT NULL,
    actor TEXT NOT NULL,
    score REAL NOT NULL,
    indicators TEXT NOT NULL,
    freeze TEXT,
    actions TEXT NOT NULL DEFAULT '[]',
    restored_ns INTEGER
);
CREATE TABLE IF NOT EXISTS incident_objects (
    incident_id INTEGER NOT NULL REFERENCES incidents(id),
    path BLOB NOT NULL,
    first_ns INTEGER NOT NULL,
    PRIMARY KEY (incident_id, path)
);
"""


@dataclass
class Incident:
    id: int
    state: str
    mode: str
    started_ns: int
    detected_ns: int
    actor: dict[str, Any]
    score: float
    indicators: list[dict[str, Any]]
    freeze: dict[str, Any] | None
    actions: list[dict[str, Any]] = field(default_factory=list)
    restored_ns: int | None = None
    objects: dict[bytes, int] = field(default_factory=dict)
    object_count: int = 0

    def to_record(self, *, with_objects: bool = False) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "mode": self.mode,
            "actor": self.actor,
            "started_at": self.started_ns / 1e9,
            "started_ns": self.started_ns,
            "detected_at": self.detected_ns / 1e9,
            "detected_ns": self.detected_ns,
            "detection_delay_s": round((self.detected_ns - self.started_ns) / 1e9, 3),
            "score": round(self.score, 2),
            "objects_touched": self.object_count,
            "indicators": self.indicators,
            "actions": self.actions,
            "restored_at": self.restored_ns / 1e9 if self.restored_ns else None,
        }
        if with_objects:
            rec["objects"] = [{**path_to_json(p), "first_ns": t} for p, t in sorted(self.objects.items())]
            rec["freeze"] = self.freeze
        return rec


class IncidentStore:
    def __init__(self, path: Path):
        self.path = path
        self.db = sqlite3.connect(os.fspath(path), timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        try:
            os.chmod(path, 0o600)
        except OSError:
            pass

    def close(self) -> None:
        self.db.close()

    def create(self, *, state: str, mode: str, started_ns: int, detected_ns: int, actor: dict, score: float, indicators: list[dict], objects: dict[bytes, int]) -> int:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            cur = self.db.execute(
                "INSERT INTO incidents(state, mode, started_ns, detected_ns, actor, score, indicators) VALUES (?,?,?,?,?,?,?)",
                (state, mode, started_ns, detected_ns, json.dumps(actor), score, json.dumps(indicators)),
            )
            iid = int(cur.lastrowid)
            self.db.executemany("INSERT OR IGNORE INTO incident_objects VALUES (?,?,?)", [(iid, p, t) for p, t in objects.items()])
        return iid

    def add_objects(self, iid: int, objects: dict[bytes, int]) -> None:
        if not objects:
            return
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for p, t in objects.items():
                self.db.execute(
                    "INSERT INTO incident_objects VALUES (?,?,?) ON CONFLICT(incident_id, path) DO UPDATE SET first_ns=min(first_ns, excluded.first_ns)",
                    (iid, p, t),
                )

    def widen(self, iid: int, *, actor: dict, score: float, indicators: list[dict], freeze: dict[str, Any], state: str) -> None:
        """The same attack turned out to be bigger (cooperating workers of one parent): the
        incident's actor becomes the wider one."""
        self.db.execute(
            "UPDATE incidents SET actor=?, score=?, indicators=?, freeze=?, state=? WHERE id=?",
            (json.dumps(actor), score, json.dumps(indicators), json.dumps(freeze), state, iid),
        )

    def set_freeze(self, iid: int, freeze: dict[str, Any]) -> None:
        self.db.execute("UPDATE incidents SET freeze=? WHERE id=?", (json.dumps(freeze), iid))

    def set_state(self, iid: int, state: str, action: dict[str, Any] | None = None) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute("SELECT actions FROM incidents WHERE id=?", (iid,)).fetchone()
            actions = json.loads(row[0]) if row else []
            if action is not None:
                actions.append({"time": time.time(), **action})
            self.db.execute("UPDATE incidents SET state=?, actions=? WHERE id=?", (state, json.dumps(actions), iid))

    def add_action(self, iid: int, action: dict[str, Any]) -> None:
        inc = self.get(iid)
        self.set_state(iid, inc.state, action)

    def set_restored(self, iid: int, when_ns: int, action: dict[str, Any]) -> None:
        self.db.execute("UPDATE incidents SET restored_ns=? WHERE id=?", (when_ns, iid))
        self.add_action(iid, action)

    def get(self, iid: int) -> Incident:
        row = self.db.execute(
            "SELECT id, state, mode, started_ns, detected_ns, actor, score, indicators, freeze, actions, restored_ns FROM incidents WHERE id=?",
            (iid,),
        ).fetchone()
        if row is None:
            raise UserError(f"no incident {iid}", hint="nocry incidents lists them")
        inc = self._from_row(row)
        inc.objects = {bytes(p): t for p, t in self.db.execute("SELECT path, first_ns FROM incident_objects WHERE incident_id=?", (iid,))}
        inc.object_count = len(inc.objects)
        return inc

    def list(self) -> list[Incident]:
        rows = self.db.execute(
            "SELECT id, state, mode, started_ns, detected_ns, actor, score, indicators, freeze, actions, restored_ns FROM incidents ORDER BY id"
        ).fetchall()
        out = []
        counts = dict(self.db.execute("SELECT incident_id, count(*) FROM incident_objects GROUP BY incident_id").fetchall())
        for row in rows:
            inc = self._from_row(row)
            inc.object_count = counts.get(inc.id, 0)
            out.append(inc)
        return out

    @staticmethod
    def _from_row(row) -> Incident:
        return Incident(
            id=row[0],
            state=row[1],
            mode=row[2],
            started_ns=row[3],
            detected_ns=row[4],
            actor=json.loads(row[5]),
            score=row[6],
            indicators=json.loads(row[7]),
            freeze=json.loads(row[8]) if row[8] else None,
            actions=json.loads(row[9]),
            restored_ns=row[10],
        )
