"""One attack run: with nocry (detect, freeze, restore, verify) or without it (attacker speed).

    ProtectedRun(...)     cp -a TEMPLATE TREE; HOME/config.toml ([canary] enabled = ...)
                          nocry --home HOME protect TREE               (daemon, returns once protecting)
                          nocry --json drill run SC TREE --delay D --timeout T [--limit N]
                          read the manifest (before the restore, which removes it: the attacker wrote it)
                          nocry --home HOME --json incidents / incident show ID
                          nocry --home HOME sync; nocry --home HOME --json incident restore ID (each incident)
                          BLAKE3 of every generated file vs the marker; files left over
                          nocry --home HOME incident kill ID; nocry --home HOME stop; rm -rf
    unimpeded_run(...)    cp -a TEMPLATE TREE; nocry --json drill run ... (no nocry running); rm -rf

The manifest (TREE/.nocry-drill.d/manifest.jsonl) has one line per change: an intent line (op
inplace, encrypt-move, wipe, ...) written before the change, then a "done" line with its time ``t``
(ns, wall clock) once the file is changed. fork-per-file's /bin/sh loop writes "done" lines without
``t``: for those the mtime of the F.enc file openssl wrote is used (stat'ed before the restore).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from nocry.drill.runner import effects  # noqa: E402  (one reading of the drill manifest)
from common import (
    NC,
    OUR_CGROUPS,
    STATE_DIR,
    CpuSampler,
    alive,
    cgroup_of,
    compare_tree,
    kill_pid,
    loadavg,
    log,
    nocry,
    rmtree,
    run,
    shjoin,
    start_daemon,
    stop_daemon,
)

CHANGE_OPS = ("inplace", "rewrite", "encrypt-move", "encrypt-replace", "create", "mkdir", "wipe", "delete", "append",
              "resave", "compress")
BOOKKEEPING_OPS = ("run-start", "run-end", "process")


def read_manifest(tree: Path) -> list[dict[str, Any]]:
    out = []
    try:
        data = (tree / STATE_DIR / "manifest.jsonl").read_bytes()
    except FileNotFoundError:
        return out
    for line in data.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a torn last line of a frozen writer
    return out


def dst_mtimes(tree: Path, records: list[dict[str, Any]]) -> dict[str, int]:
    """mtime of every file a change created (F.enc of fork-per-file): the time its write ended."""
    out = {}
    for r in records:
        if r.get("op") in CHANGE_OPS and r.get("dst"):
            try:
                out[r["dst"]] = os.lstat(tree / r["dst"]).st_mtime_ns
            except OSError:
                pass
    return out


def analyse_manifest(records: list[dict[str, Any]], run_id: str, gen: set[str], mtimes: dict[str, int]) -> dict[str, Any]:
    recs = [r for r in records if r.get("run") == run_id]
    intents: dict[str, dict[str, Any]] = {}
    for r in recs:
        if r.get("op") in CHANGE_OPS and "id" in r:
            intents[str(r["id"])] = r
    done: list[dict[str, Any]] = []  # one per completed change: t, generated files damaged, decoy?, note?
    done_ids = set()
    t_from_mtime = 0
    for r in recs:
        if r.get("op") != "done":
            continue
        rid = str(r.get("id"))
        done_ids.add(rid)
        rec = intents.get(rid, {})
        t = r.get("t")
        if t is None and rec.get("dst") in mtimes:
            t = mtimes[rec["dst"]]
            t_from_mtime += 1
        touched, _created, _deleted = effects(rec)
        done.append({
            "t": t,
            "id": rid,
            "damaged": [p for p in touched if p in gen],
            "decoy": any(p.startswith("!") for p in touched),
            "note": rec.get("what") == "ransom-note",
            "paths": touched + _created,
        })
    damaged = [d for d in done if d["damaged"]]
    damaged_files = {p for d in damaged for p in d["damaged"]}
    times = sorted(d["t"] for d in done if d["t"] is not None)
    dtimes = sorted(d["t"] for d in damaged if d["t"] is not None)
    shell = any(r.get("op") == "process" and r.get("role") == "shell" for r in recs)
    in_flight = None
    if not shell:  # fork-per-file logs every intent up front
        in_flight = sum(1 for rid, r in intents.items() if rid not in done_ids and any(p in gen for p in effects(r)[0]))
    attacker_lines = [r["t"] for r in recs if r.get("op") not in ("run-start", "run-end") and r.get("t") is not None]
    first_intent = min((r["t"] for r in intents.values() if r.get("t") is not None), default=None)
    return {
        "done": done,
        "done_lines": len(done),
        "damaged_files": len(damaged_files),
        "decoys_touched": sum(1 for d in done if d["decoy"]),
        "notes": sum(1 for d in done if d["note"]),
        "in_flight": in_flight,
        "first_done_ns": times[0] if times else None,
        "first_damage_ns": dtimes[0] if dtimes else None,
        "last_done_ns": times[-1] if times else None,
        "last_attacker_line_ns": max(attacker_lines) if attacker_lines else None,
        "first_intent_ns": first_intent,
        "done_t_from_mtime": t_from_mtime,
        "damaged_times": dtimes,
    }


def speed(an: dict[str, Any]) -> float | None:
    """Files/s between the first and the last damaged file (steady state, no process start-up)."""
    ts = an["damaged_times"]
    if len(ts) < 2 or ts[-1] <= ts[0]:
        return None
    return (len(ts) - 1) / ((ts[-1] - ts[0]) / 1e9)


def drill_argv(scenario: str, tree: Path, delay: float, timeout: float, limit: int | None) -> list[str]:
    argv = ["drill", "run", scenario, str(tree), "--delay", f"{delay:g}", "--timeout", f"{timeout:g}"]
    if limit is not None:
        argv += ["--limit", str(limit)]
    return argv


def drill_summary(d: dict[str, Any] | None) -> dict[str, Any]:
    if not d:
        return {}
    return {k: d.get(k) for k in ("run_id", "outcome", "exit_status", "seconds", "files_planned", "pids", "alive_pids",
                                  "started_at_ns", "ended_at_ns")} | {
        "files_touched": len(d.get("files_touched", [])), "errors": len(d.get("errors", []))}


# --------------------------------------------------------------------------------------------


def unimpeded_run(template: Path, work: Path, scenario: str, delay: float, limit: int | None, gen: set[str]) -> dict[str, Any]:
    """The attacker alone (no nocry running): its speed."""
    tree = work / "tree"
    rmtree(work)
    work.mkdir(parents=True)
    run(["cp", "-a", str(template), str(tree)])
    argv = drill_argv(scenario, tree, delay, 60, limit)
    try:
        d = nocry(None, *argv, ok=(0, 1), timeout=1800)
        records = read_manifest(tree)
        an = analyse_manifest(records, d["run_id"], gen, dst_mtimes(tree, records))
        rec = {
            "scenario": scenario, "delay": delay, "limit": limit,
            "cmd": shjoin([NC, "--json", *argv]).replace(str(tree), "$T"),
            "drill": drill_summary(d),
            "damaged_files": an["damaged_files"],
            "files_per_s": speed(an),
            "seconds_first_to_last": (an["damaged_times"][-1] - an["damaged_times"][0]) / 1e9 if len(an["damaged_times"]) > 1 else None,
        }
        if d.get("alive_pids"):
            rec["alive_pids"] = d["alive_pids"]
        return rec
    finally:
        rmtree(work)


def copy_tree(template: Path, work: Path) -> None:
    """WORK/tree: a fresh ``cp -a`` of the drill template."""
    rmtree(work)
    work.mkdir(parents=True)
    run(["cp", "-a", str(template), str(work / "tree")])


def finish(home: Path, work: Path) -> None:
    """Stop the run's daemon, remove its tree and home."""
    stop_daemon(home)
    rmtree(work)


class ProtectedRun:
    """One run against a live daemon, in two halves so that the second can overlap the next run's
    start (never its attack):

        attack():  HOME/config.toml, nocry protect, [before_attack()], drill run, incidents, manifest
        post():    sync, incident restore, verify, incident kill, stop, rm   (safe after a failed attack())

    WORK/tree must hold a fresh copy (copy_tree) before attack()."""

    def __init__(self, work: Path, scenario: str, *, decoys: bool, delay: float, limit: int | None, drill_timeout: float,
                 gen_hashes: dict[str, str], config_text: str | None = None):
        self.work, self.tree, self.home = work, work / "tree", work / "home"
        #: HOME/config.toml (None: only ``[canary] enabled`` from ``decoys``)
        self.config_text = config_text
        self.gen_hashes = gen_hashes
        self.argv = drill_argv(scenario, self.tree, delay, drill_timeout, limit)
        self.rec: dict[str, Any] = {"scenario": scenario, "decoys": decoys, "delay": delay, "limit": limit, "errors": [],
                                    "cmd": shjoin([NC, "--json", *self.argv]).replace(str(self.tree), "$T"), "phase_s": {}}
        self.decoys = decoys
        self.attackers: list[tuple[int, int | None]] = []
        self.incidents: list[dict[str, Any]] = []
        self._t = time.monotonic()

    def _phase(self, name: str) -> None:
        now = time.monotonic()
        self.rec["phase_s"][name] = round(now - self._t, 3)
        self._t = now

    def attack(self, before_attack: Callable[[], None] = lambda: None) -> None:
        rec, tree, home = self.rec, self.tree, self.home
        try:
            home.mkdir()
            (home / "config.toml").write_text(self.config_text or f"[canary]\nenabled = {'true' if self.decoys else 'false'}\n")
            self._t = time.monotonic()
            rec["daemon_pid"], rec["daemon_start_s"] = start_daemon(home, tree)
            rec["daemon_pythonpath"] = _environ(rec["daemon_pid"]).get("PYTHONPATH")  # the code it runs (--src)
            self._phase("protect")
            before_attack()
            self._phase("wait_background")
            rec["loadavg"] = loadavg()
            cpu = CpuSampler()
            cpu.start()
            d = nocry(None, *self.argv, ok=(0, 1), timeout=1800)
            rec["cpu_busy_during_attack"] = cpu.stop()
            rec["drill"] = drill_summary(d)
            self._phase("drill")
            # an incident is recorded before the freeze returns; a late verdict gets a moment
            deadline = time.monotonic() + 2.0
            while True:
                self.incidents = nocry(home, "incidents")["incidents"]
                if self.incidents or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            records = read_manifest(tree)  # before the restore: it removes the manifest (attacker-written)
            self.run_id = run_id = d["run_id"]
            self.attackers = [(int(r["pid"]), r.get("start")) for r in records if r.get("run") == run_id and r.get("op") == "process"]
            self._analyse(records)
            self._phase("read_results")
        except Exception as exc:  # noqa: BLE001 - one failed run is a result, the benchmark goes on
            log(f"  run failed: {exc}")
            rec["errors"].append(str(exc)[-2000:])

    def _analyse(self, records: list[dict[str, Any]]) -> None:
        """Damage and timeline from the manifest and the incident list (actions, evidence times)."""
        rec, gen = self.rec, set(self.gen_hashes)
        self.n_records = len(records)
        an = analyse_manifest(records, self.run_id, gen, dst_mtimes(self.tree, records))
        rec["manifest"] = {k: v for k, v in an.items() if k not in ("done", "damaged_times")}
        rec["n_incidents"] = len(self.incidents)
        rec["detected"] = bool(self.incidents)
        rec["incidents"] = [_incident_summary(i) for i in self.incidents]
        rec.update(_timeline(an, self.incidents, self.tree))
        # processes that made changes (done lines; the /bin/sh loop of fork-per-file)
        rid = self.run_id
        self.writers = {int(r["pid"]) for r in records if r.get("run") == rid and r.get("op") == "done" and r.get("pid")}
        self.writers |= {int(r["pid"]) for r in records if r.get("run") == rid and r.get("op") == "process" and r.get("role") == "shell"}

    def _freeze_check(self) -> None:
        """Does anything still change (the freeze must hold)? Which writers run unfrozen? The freeze
        records (cgroup, method, errors) of every incident."""
        rec = self.rec
        time.sleep(0.3)
        records = read_manifest(self.tree)
        rec["changes_after_return"] = len(records) - self.n_records
        if rec["changes_after_return"] > 0:
            self._analyse(records)
        shows = [nocry(self.home, "incident", "show", i["id"]) for i in self.incidents]
        cgs = set()
        for s, summary in zip(shows, rec["incidents"]):
            frs = (s.get("freeze") or {}).get("records", [])
            summary["freeze_methods"] = [fr.get("method") for fr in frs]
            summary["freeze_errors"] = [e for fr in frs for e in fr.get("errors", [])]
            for fr in frs:
                if fr.get("cgroup"):
                    OUR_CGROUPS.add(fr["cgroup"])
                    cgs.add(os.path.basename(fr["cgroup"]))
        rec["unfrozen_attackers"] = [p for p, st in self.attackers if p in self.writers and st is not None and alive(p, st)
                                     and os.path.basename(cgroup_of(p) or "") not in cgs]

    def post(self) -> dict[str, Any]:
        rec, home = self.rec, self.home
        self._t = time.monotonic()
        try:
            if not rec["errors"]:
                self._freeze_check()
                # restore every incident (the daemon keeps running, as a user would do it)
                restores = []
                if self.incidents:
                    nocry(home, "sync", "--timeout", "300", timeout=400)
                    for i in self.incidents:
                        t0 = time.monotonic()
                        r = nocry(home, "incident", "restore", i["id"], ok=(0, 1, 6), timeout=900)
                        restores.append({"id": i["id"], "seconds": round(time.monotonic() - t0, 3), "counts": r.get("counts"),
                                         "restored": r.get("restored"), "failed": r.get("failed"), "warnings": len(r.get("warnings", []))})
                self._phase("sync_restore")
                rec["restore"] = restores
                rec["restore_failed"] = sum(r["failed"] or 0 for r in restores)
                v = compare_tree(self.tree, self.gen_hashes)
                rec["verify"] = {"files": v["files"], "ok": v["ok"], "lost": v["lost"], "changed": v["changed"][:10],
                                 "missing": v["missing"][:10], "leftover": len(v["leftover"]), "leftover_sample": v["leftover"][:10]}
                rec["lost"] = v["lost"]
                rec["leftover"] = len(v["leftover"])
                self._phase("verify")
        except Exception as exc:  # noqa: BLE001
            log(f"  run failed: {exc}")
            rec["errors"].append(str(exc)[-2000:])
        finally:
            self._t = time.monotonic()
            rec["cleanup"] = _cleanup(home, self.incidents, self.attackers)
            self._phase("kill")
            finish(home, self.work)
            self._phase("finish")
        return rec


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = open(f"/proc/{pid}/environ", "rb").read()
    except OSError:
        return {}
    return dict(x.decode(errors="replace").split("=", 1) for x in raw.split(b"\0") if b"=" in x)


def _incident_summary(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": s["id"], "state": s["state"], "started_ns": s["started_ns"], "detected_ns": s["detected_ns"],
        "score": s["score"], "objects_touched": s["objects_touched"], "actor": s["actor"].get("label"),
        "pids": s["actor"].get("pids"), "indicators": sorted({i["name"] for i in s["indicators"]}),
        "first_indicators": [{k: i[k] for k in ("name", "time_ns", "weight")} | {"path": i["path"]} for i in s["indicators"][:6]],
        "actions": [a for a in s["actions"] if a.get("action") in ("freeze", "widen", "alert")],
    }


def _timeline(an: dict[str, Any], shows: list[dict[str, Any]], tree: Path) -> dict[str, Any]:
    """Where the time between the first write and the freeze went, and what was damaged meanwhile."""
    done = an["done"]
    out: dict[str, Any] = {
        "damaged_total": an["damaged_files"],
        "first_write_ns": an["first_done_ns"],
    }
    if not shows:
        out.update(damaged_before_freeze=an["damaged_files"], freeze_ns=None, t_freeze_s=None)
        return out
    first = min(shows, key=lambda s: s["id"])
    acts = [a for s in shows for a in s["actions"] if a.get("action") in ("freeze", "widen") and "time" in a]
    # a freeze action is stored after the freeze returned: time - seconds >= when it began (the
    # brake, SIGSTOP through pidfds, comes first, microseconds after it began)
    began = lambda a: int((a["time"] - a["seconds"]) * 1e9)  # noqa: E731
    fr0 = min((a for a in acts if a["action"] == "freeze"), key=lambda a: a["time"], default=None)
    freeze_ns = began(fr0) if fr0 else None
    # the attacker is stopped by the last freeze (or widening to more processes) that froze anything:
    # a verdict on one worker of many freezes that worker; its siblings go on until the widening
    froze = [a for a in acts if a.get("pids")]
    stop_ns = max(began(a) for a in froze) if froze else None

    def upto(t: int | None) -> int | None:
        if t is None:
            return None
        return len({p for d in done if d["damaged"] and d["t"] is not None and d["t"] <= t for p in d["damaged"]})

    fw = an["first_done_ns"]
    started, detected = min(s["started_ns"] for s in shows), first["detected_ns"]
    s_ = lambda a, b: round((b - a) / 1e9, 4) if a is not None and b is not None else None  # noqa: E731
    # capture lag of each piece of evidence: its version's time minus the attacker's "done" for that path
    done_at: dict[str, int] = {}
    for d in done:
        for p in d["paths"]:
            if d["t"] is not None:
                done_at.setdefault(str(tree / p), d["t"])
    lags = [(i["time_ns"] - done_at[i["path"]]) / 1e6 for s in shows for i in s["indicators"] if i["path"] in done_at]
    out.update(
        freeze_ns=freeze_ns,
        stop_ns=stop_ns,
        freeze_seconds=fr0["seconds"] if fr0 else None,
        damaged_by_first_evidence=upto(started),
        damaged_by_detection=upto(detected),
        damaged_before_first_freeze=upto(freeze_ns),
        damaged_before_freeze=upto(stop_ns) if stop_ns else an["damaged_files"],
        damaged_after_freeze=(an["damaged_files"] - upto(stop_ns)) if stop_ns else None,
        # first write -> the freeze that stopped the attacker began (0: frozen before any write completed)
        t_freeze_s=s_(fw, stop_ns) if fw is not None else (0.0 if stop_ns else None),
        frozen_before_first_write=fw is None and stop_ns is not None,
        pipeline={
            "first_write_to_first_evidence_s": s_(fw, started),   # capture + analysis of the first damaged file
            "first_evidence_to_detected_s": s_(started, detected),  # evidence accumulating to the threshold
            "detected_to_freeze_s": s_(detected, freeze_ns),        # deciding version stored -> first freeze began
            "freeze_s": fr0["seconds"] if fr0 else None,          # brake + cgroup quarantine
            "first_freeze_to_stop_s": s_(freeze_ns, stop_ns),       # > 0: the first freeze missed processes
            "last_write_to_stop_s": s_(stop_ns, an["last_done_ns"]),  # > 0: completed writes after the stop began
            "evidence_capture_lag_ms": sorted(round(x, 1) for x in lags)[:50],
        },
    )
    return out


def _cleanup(home: Path, incidents: list[dict[str, Any]], attackers: list[tuple[int, int | None]]) -> dict[str, Any]:
    """Kill frozen attackers through nocry (incident kill), then by pid whatever of ours is left."""
    out: dict[str, Any] = {"killed_by_incident": [], "killed_by_pid": []}
    for i in incidents:
        try:
            r = nocry(home, "incident", "kill", i["id"], ok=(0, 1), check=False)
            out["killed_by_incident"].append({"id": i["id"], "errors": (r or {}).get("errors")})
        except Exception as exc:  # noqa: BLE001
            out["killed_by_incident"].append({"id": i["id"], "errors": [str(exc)]})
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(st is not None and alive(p, st) for p, st in attackers):
        time.sleep(0.05)
    for p, st in attackers:
        if st is not None and alive(p, st) and kill_pid(p, st):
            out["killed_by_pid"].append(p)
    return out
