"""Defence: wires analyzer -> detector -> responder -> incidents for the daemon.

    on_events(events)          sensor events (subjects completed from the process table) -> detector
    on_versions(stored)        each new version vs the previous one -> analyzer -> detector
    verdict                    -> freeze (enforce) or alarm only (observe) -> incident recorded
    later events of an actor   -> its incident's objects (what a restore must undo)

Everything the detector sees is also handed to the recorder (when recording), so a replay of the
recording reproduces the same verdicts.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import time
import zlib
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

# imported with the defence, not at the first analysis: numpy's import takes a tenth of a
# second, which belongs to the daemon's start, not to the middle of the first burst of writes
from nocry.analyzer.features import analyze
from nocry.analyzer.gitrepo import GitObjects
from nocry.analyzer.model import ContentFeatures
from nocry.config import Config
from nocry.detector import KNOWN_EXTS, Detector, Verdict, extension
from nocry.events import FileEvent, Op, ProcessSeen, Subject
from nocry.home import Home
from nocry.incidents import IncidentStore
from nocry.responder import FreezeRecord, RecordingResponder, Responder
from nocry.responder.procs import ProcSnapshot, read_stat
from nocry.vault.model import FTYPE_FILE, VersionRecord

__all__ = ["Defence", "plant_canaries", "freeze_records", "CANARY_FILE"]

log = logging.getLogger(__name__)

CANARY_FILE = "canaries.json"
#: new files remembered for a later replacement check (a bounded window)
_MAX_NEW_FILES = 20_000
#: names a ransom note is written under
_NOTE_EXTS = frozenset({"txt", "html", "htm", "hta", "rtf", "md", "url", "log"})
_NOTE_MAX = 65536
_WATCH_OPS = (Op.CREATE | Op.MODIFY | Op.CLOSE_WRITE | Op.RENAME | Op.DELETE | Op.ATTRIB).value


class Defence:
    def __init__(
        self,
        home: Home,
        config: Config,
        trees: list[bytes],
        *,
        recorder: Callable[[list], None] | None = None,
        process_table: Any = None,
        responder: Any = None,
    ):
        self.home = home
        self.config = config
        self.mode = config.mode
        self.recorder = recorder
        self.table = process_table
        self.canaries = read_canaries(home)
        self.detector = Detector(config.detect, canaries=self.canaries)
        protected = {os.getpid(), *ProcSnapshot.take().ancestors(os.getpid())}
        if responder is not None:
            self.responder = responder
        elif self.mode == "enforce":
            self.responder = Responder(config.respond, protected_pids=protected)
        else:
            self.responder = RecordingResponder()
        self.incidents = IncidentStore(home.root / "incidents.sqlite")
        self._announced: dict[int, int] = {}  # pid -> start_time told to the detector
        self.open: dict[int, Any] = {}  # incident id -> ActorRef, for attaching later objects
        self.freezes: dict[int, FreezeRecord] = {}
        self.analyzed = 0
        self.analyze_seconds = 0.0
        self.verdicts = 0
        self.unattributed_damage = 0  # damaged documents found by rescans, nobody to name
        self._exempt: dict[int, int] = {}  # pid -> start time of processes never judged
        self._new_files: deque = deque()  # (version, vault) of recent new files not analysed
        self._first_seen: dict[bytes, int] = {}  # content of a new small file -> when first seen
        self._git = GitObjects()  # the checkout rule's proof: does the repository hold a deleted file?

    def close(self) -> None:
        self._git.close()
        self.incidents.close()

    def exempt(self, pid: int) -> None:
        """Do not judge this process (a ``nocry restore`` writing the trees back): its pid and
        start time are pinned so a later process with the same pid is judged normally."""
        e = read_stat(pid)
        if e is not None:
            self._exempt[pid] = e.start_time

    def _is_exempt(self, s: Subject | None) -> bool:
        if not self._exempt or s is None:
            return False
        for pid in [s.pid, *self.detector.lineage(s.pid)[1:]]:
            st = self._exempt.get(pid)
            if st is not None:
                known = self.detector.procs.get(pid)
                if known is None or not known.start_time or not st or known.start_time == st:
                    return True
        return False

    def earliest_open_start(self) -> int | None:
        """Start of the oldest incident not yet restored: retention keeps what came before it."""
        starts = [i.started_ns for i in self.incidents.list() if i.restored_ns is None and i.state in ("frozen", "observed", "unfrozen")]
        return min(starts) - self.config.detect.lookback_s * 1_000_000_000 if starts else None

    def stats(self) -> dict[str, Any]:
        return {
            "verdicts": self.verdicts,
            "open_incidents": sorted(self.open),
            "versions_analyzed": self.analyzed,
            "analyze_seconds": round(self.analyze_seconds, 3),
            # deleted documents looked up in a git repository's object store (the checkout rule)
            "repository_lookups": self._git.lookups,
            # paths changed per process, kept to name an incident's objects; bounded (a flood of writers)
            "touched_paths": sum(len(d) for d in self.detector.touched.values()),
            "touched_dropped": self.detector.touched_dropped,
            "unattributed_damage": self.unattributed_damage,
            "canaries": len(self.canaries),
            "process_table": self.table is not None,
        }

    # -- input from the daemon --------------------------------------------------------------------

    def on_events(self, events: list) -> None:
        batch: list = []
        for ev in events:
            if not isinstance(ev, FileEvent) or not ev.ops._value_ & _WATCH_OPS:
                continue
            subj = self._complete(ev.subject)
            if subj is not ev.subject:
                ev = FileEvent(ops=ev.ops, path=ev.path, time_ns=ev.time_ns, seq=ev.seq, is_dir=ev.is_dir, old_path=ev.old_path, subject=subj)
            if subj is not None:
                self._announce(subj, ev.time_ns, batch)
                if self._is_exempt(subj):
                    continue
            batch.append(ev)
        self._feed(batch)

    def on_versions(self, stored: list[tuple[VersionRecord, VersionRecord | None]], vault) -> None:
        """Analyse each new file version (or deletion) against the previous one.

        A new file under a familiar extension harms nothing by itself, and extracting a tarball
        makes thousands of them: it is only remembered (size, actor), and analysed later if a
        deletion of a similar-sized original by the same actor makes it a replacement suspect.
        A new file under an unknown extension (.WNCRY, .enc, random names) is analysed at once."""
        for rec, prev in stored:
            subj = rec.subject
            old = prev if prev is not None and prev.exists else None
            if old is not None and old.size == 0 and rec.exists and rec.size:
                old = self._before_truncation(rec, old, vault)
            if rec.exists:
                if rec.ftype != FTYPE_FILE or rec.content is None or (old is not None and old.content == rec.content):
                    continue
                if old is None and extension(rec.path) in KNOWN_EXTS:
                    self._remember_new(rec, vault)
                    continue
                f = self._analyze(rec, old, vault)
                if f is None:
                    continue
            else:
                if old is None or old.ftype != FTYPE_FILE or rec.renamed_to is not None:
                    continue
                self._analyze_suspects(rec, old, vault)
                f = ContentFeatures(
                    path=rec.path,
                    time_ns=rec.time_ns,
                    subject_pid=subj.pid if subj else 0,
                    size=0,
                    prev_size=old.size,
                    ext=extension(rec.path),
                    kind="deleted",
                    change="deleted",
                    in_repo=self._in_repo(rec.path, rec.time_ns, old, vault),
                )
            self._judge(f, subj, rec.time_ns)

    def on_rescan(self, tree: bytes, changed: list[tuple[VersionRecord, VersionRecord]], vault, lost_since: float | None) -> int:
        """Documents a rescan found rewritten, whose events were lost (the kernel's queue
        overflowed, or nocry was not running): no process can be named or frozen, but their
        content still shows damage. ``min_objects`` of them or more raise the alarm
        ``unattributed_damage``, with the command that rolls them back. Returns how many."""
        damaged = []
        for rec, prev in changed:
            if rec.ftype != FTYPE_FILE or rec.content is None or extension(rec.path) not in self.detector.documents:
                continue
            f = self._analyze(rec, prev, vault)
            found = self.detector.unattributed(f) if f is not None else []
            if found:
                damaged.append(found[0])
        self.unattributed_damage += len(damaged)
        if len(damaged) < self.config.detect.min_objects:
            return len(damaged)
        names = sorted({i.name for i in damaged})
        where = os.fsdecode(tree)
        if lost_since is not None:
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(lost_since - 1))
            when, undo = "after the kernel dropped events", f"nocry restore {shlex.quote(where)} --at '{at}'"
        else:
            when, undo = "with their events lost (nocry was not running or not capturing)", "nocry versions PATH, then nocry restore PATH --at TIME"
        log.critical("event=unattributed_damage alarm=1 tree=%r documents=%d indicators=%s", tree, len(damaged), names)
        self.home.alert(
            "unattributed_damage",
            f"{len(damaged)} documents under {where} were found rewritten {when} ({', '.join(names)}); no process can "
            f"be named or frozen; every earlier version is in the vault: {undo}",
            tree=where, documents=len(damaged), sample=[os.fsdecode(i.path) for i in damaged[:20]],
            lost_since=lost_since,
        )
        return len(damaged)

    def _in_repo(self, path: bytes, time_ns: int, old: VersionRecord, vault) -> bool | None:
        """For a deleted document that the checkout rule could excuse (a process has written the
        metadata of a repository above it lately): does that repository hold its content? The
        content is read back from the vault and hashed only then."""
        if old.content is None or extension(path) not in self.detector.documents or not self.detector.repository_written_above(path, time_ns):
            return None
        try:
            return self._git.holds(path, old.size, vault.read_content(old.content))
        except Exception:  # noqa: BLE001 - unverifiable (content gone from the vault, odd repository)
            log.info("event=repo_check_failed path=%r", path, exc_info=True)
            return None

    def _before_truncation(self, rec: VersionRecord, empty: VersionRecord, vault) -> VersionRecord:
        """A file emptied and then written again (opened with O_TRUNC, captured in between) is
        judged against what it held before it was emptied: a re-encoded image against the old
        image, an encrypted document against the plain one. That holds across a rename away or
        a deletion just before (mogrify renames the original to NAME~, creates NAME empty, then
        writes it; some ransomware does the same), within the detector's lookback."""
        lookback = self.config.detect.lookback_s * 1_000_000_000
        for v in vault.history(rec.path):
            if v.time_ns > empty.time_ns or v.id == empty.id or not v.exists:
                continue
            if v.time_ns < rec.time_ns - lookback:
                break
            if v.size and v.ftype == FTYPE_FILE:
                return v
        return empty

    def _judge(self, f: ContentFeatures, subj: Subject | None, t: int) -> None:
        batch: list = []
        subj = self._complete(subj)
        if subj is not None:
            self._announce(subj, t, batch)
            if self._is_exempt(subj):
                return
        batch.append(f)
        # file by file: a verdict must not wait for the analysis of a whole batch
        self._feed(batch)

    def _analyze(self, rec: VersionRecord, old: VersionRecord | None, vault) -> ContentFeatures | None:
        t0 = time.perf_counter()
        try:
            f = analyze(rec.path, rec, old, vault)
            # the donor of a copy is looked up only where the detector would use it: a rewrite
            # that shares no chunk with the old content, or a small new file (a note?)
            wholly_new = f.chunk_overlap == 0 and (f.changed_blocks or 0) >= 0.95
            copied = self._copy_source(rec, old is None, vault) if old is None or wholly_new else None
        except Exception:  # noqa: BLE001 - one odd file must not stop detection
            log.exception("event=analyze_failed path=%r", rec.path)
            return None
        finally:
            self.analyze_seconds += time.perf_counter() - t0
        self.analyzed += 1
        return _with(f, rec, old, rec.subject, copied)

    def _copy_source(self, rec: VersionRecord, created: bool, vault) -> bytes | None:
        """Another file that held this content before: for a rewrite, one under another name
        (a document overwritten with another's content, as wipers do; the same name elsewhere is
        a mirror being updated); for a small new file, one from before the first copy of this
        content appeared (a file extracted or copied from the tree is not a ransom note)."""
        if rec.content is None:
            return None
        if not created:
            return vault.other_path_with_content(rec.content, rec.path, rec.time_ns, other_name=True)
        if rec.size > _NOTE_MAX:
            return None
        if len(self._first_seen) > 10_000:
            self._first_seen.clear()
        first = self._first_seen.setdefault(rec.content, rec.time_ns)
        return vault.other_path_with_content(rec.content, rec.path, first)

    def _remember_new(self, rec: VersionRecord, vault) -> None:
        window = self.config.detect.replace_window_s * 1_000_000_000
        while self._new_files and self._new_files[0][0].time_ns < rec.time_ns - window:
            self._new_files.popleft()
        if len(self._new_files) < _MAX_NEW_FILES:
            # the daemon's view of the vault: while the file's batch is open (group commit) its
            # chunk list is in the batch; once committed, the batch drops what it knew and the
            # view reads the vault itself
            self._new_files.append((rec, vault))
        # a ransom note needs no analysis: the same small new file in several folders
        if rec.size <= _NOTE_MAX and extension(rec.path) in _NOTE_EXTS:
            f = ContentFeatures(path=rec.path, time_ns=rec.time_ns, subject_pid=rec.subject.pid if rec.subject else 0, size=rec.size,
                                ext=extension(rec.path), kind="text", content_hash=rec.content.hex() if rec.content else "", created=True,
                                copied_from=self._copy_source(rec, True, vault))  # fmt: skip
            self._judge(f, rec.subject, rec.time_ns)

    def _analyze_suspects(self, gone: VersionRecord, old: VersionRecord, vault) -> None:
        """An original was deleted: analyse the new files of similar size that its deleter (or
        a process related to it) wrote lately, so that a replacement is seen for what it is."""
        pid = gone.subject.pid if gone.subject else 0
        if not pid or not self._new_files:
            return
        keep: deque = deque()
        for rec, v in self._new_files:
            cand = rec.subject.pid if rec.subject else 0
            if cand and abs(rec.size - old.size) <= max(4096, old.size // 10) and self.detector.related(cand, pid):
                f = self._analyze(rec, None, v)
                if f is not None:
                    self._judge(f, rec.subject, rec.time_ns)
            else:
                keep.append((rec, v))
        self._new_files = keep

    # -- internals ---------------------------------------------------------------------------------

    def _complete(self, s: Subject | None) -> Subject | None:
        """The sensor knows little about processes that exited before their event was read; the
        process table (fed by the kernel's fork/exec/exit events) still knows their parent."""
        if s is None or self.table is None:
            return s
        if s.ppid and s.exe:
            return s
        try:
            known = self.table.subject(s.pid)
        except Exception:  # noqa: BLE001
            return s
        return known if known is not None else s

    def _announce(self, s: Subject, t: int, out: list) -> None:
        """Tell the detector who this process and its ancestors are (once per process)."""
        pid, cur = s.pid, s
        for _ in range(64):
            if pid <= 1 or self._announced.get(pid) == cur.start_time:
                return
            self._announced[pid] = cur.start_time
            out.append(ProcessSeen(time_ns=t, subject=cur))
            pid = cur.ppid
            if pid <= 1:
                return
            nxt = self._lookup(pid)
            if nxt is None:
                return
            cur = nxt
        if len(self._announced) > 500_000:
            self._announced.clear()

    def _lookup(self, pid: int) -> Subject | None:
        if self.table is not None:
            try:
                s = self.table.subject(pid)
                if s is not None:
                    return s
            except Exception:  # noqa: BLE001
                pass
        e = read_stat(pid)
        if e is None:
            return None
        return Subject(pid=pid, start_time=e.start_time, exe=e.exe, comm=e.comm, uid=e.uid, ppid=e.ppid, sid=e.sid)

    def _feed(self, batch: list) -> None:
        if not batch:
            return
        if self.recorder is not None:
            self.recorder(batch)
        for item in batch:
            for v in self.detector.feed(item):
                self._respond(v)
            self._attach(item)

    def _attach(self, item) -> None:
        if not self.open:
            return
        if isinstance(item, FileEvent) and item.subject is not None:
            pid, paths, t = item.subject.pid, [item.path] + ([item.old_path] if item.old_path else []), item.time_ns
        elif isinstance(item, ContentFeatures) and item.subject_pid:
            pid, paths, t = item.subject_pid, [item.path], item.time_ns
        else:
            return
        for iid, ref in self.open.items():
            if self.detector.actor_contains(ref, pid):
                self.incidents.add_objects(iid, {p: t for p in paths})

    # -- response -------------------------------------------------------------------------------------

    def _respond(self, v: Verdict) -> None:
        self.verdicts += 1
        roots = [v.actor.pid] if v.actor.kind == "process" else list(v.offending_pids)
        freeze = self.responder.freeze(0, roots, list(v.offending_pids)) if self.mode == "enforce" else FreezeRecord(method="none")
        v = self._relink(v)
        state = "frozen" if freeze.pids else ("observed" if self.mode == "observe" else "unfrozen")
        actor = self._describe_actor(v, freeze)
        for iid, ref in list(self.open.items()):
            if ref.kind == "process" and self.detector.actor_contains(v.actor, ref.pid):
                self._widen(iid, v, actor, freeze)
                return
        iid = self.incidents.create(
            state=state,
            mode=self.mode,
            started_ns=v.started_ns,
            detected_ns=v.detected_ns,
            actor=actor,
            score=v.score,
            indicators=[i.to_record() for i in v.indicators],
            objects=dict(v.objects),
        )
        self.incidents.set_freeze(iid, {"records": [freeze.to_record()]})
        self.incidents.add_action(iid, {"action": "freeze" if self.mode == "enforce" else "alert", "method": freeze.method, "pids": [p for p, _ in freeze.pids], "refused": freeze.refused, "errors": freeze.errors, "seconds": round(freeze.seconds, 4)})
        self.open[iid] = v.actor
        self.freezes[iid] = [freeze]
        names = sorted({i.name for i in v.indicators})
        log.critical(
            "event=incident id=%d mode=%s actor=%s pids=%s frozen=%d method=%s score=%.1f objects=%d indicators=%s",
            iid, self.mode, v.actor.label, list(v.offending_pids), len(freeze.pids), freeze.method, v.score, len(v.objects), names,
        )  # fmt: skip
        self.home.alert(
            "incident",
            f"incident {iid}: {v.actor.label} ({actor.get('exe')}) judged hostile: {', '.join(names)}; "
            + (f"{len(freeze.pids)} process(es) frozen" if freeze.pids else "not frozen (observe mode or nothing left to freeze)")
            + f"; undo with: nocry incident restore {iid}",
            incident=iid,
        )
        if self.mode == "enforce" and self.config.respond.after_freeze == "kill" and freeze.pids:
            self.kill(iid)

    def _relink(self, v: Verdict) -> Verdict:
        """Short-lived processes (an ``rm`` per file) may have exited before the process table
        had their fork; by now it has. Tell the detector (and the recording) their parents, then
        take the verdict's objects again so that none of the actor's changes is left out."""
        if self.table is None:
            return v
        learnt: list = []
        for pid in self.detector.orphans():
            try:
                s = self.table.subject(pid)
            except Exception:  # noqa: BLE001
                s = None
            if s is not None and s.ppid > 0:
                learnt.append(ProcessSeen(time_ns=v.detected_ns, subject=s))
        if not learnt:
            return v
        if self.recorder is not None:
            self.recorder(learnt)
        for item in learnt:
            self.detector.feed(item)
        objects = self.detector.verdict_objects(v)
        from dataclasses import replace

        return replace(v, objects=tuple(sorted(objects.items())))

    def _widen(self, iid: int, v: Verdict, actor: dict[str, Any], freeze: FreezeRecord) -> None:
        inc = self.incidents.get(iid)
        records = self.freezes.get(iid) or freeze_records(inc.freeze)
        records.append(freeze)
        self.freezes[iid] = records
        frozen = any(r.pids for r in records)
        self.incidents.widen(
            iid,
            actor={**actor, "widened_from": inc.actor.get("label")},
            score=max(v.score, inc.score),
            indicators=inc.indicators + [i.to_record() for i in v.indicators if i.to_record() not in inc.indicators],
            freeze={"records": [r.to_record() for r in records]},
            state="frozen" if frozen else inc.state,
        )
        self.incidents.add_objects(iid, dict(v.objects))
        self.incidents.add_action(iid, {"action": "widen", "to": v.actor.label, "pids": [p for p, _ in freeze.pids], "seconds": round(freeze.seconds, 4)})
        self.open[iid] = v.actor
        log.critical("event=incident_widened id=%d actor=%s frozen=%d", iid, v.actor.label, len(freeze.pids))

    def _describe_actor(self, v: Verdict, freeze: FreezeRecord) -> dict[str, Any]:
        pids = sorted({*v.offending_pids, *(p for p, _ in freeze.pids)})
        procs = []
        for p in pids:
            s = self.detector.procs.get(p) or self._lookup(p)
            procs.append(
                {
                    "pid": p,
                    "exe": os.fsdecode(s.exe) if s else "",
                    "comm": s.comm if s else "",
                    "uid": s.uid if s else -1,
                    "ppid": s.ppid if s else 0,
                    "session": s.sid if s else 0,
                    "cmdline": _cmdline(p),
                }
            )
        root = self.detector.procs.get(v.actor.pid) if v.actor.kind == "process" else None
        return {
            **v.actor.to_record(),
            "label": v.actor.label,
            "pids": pids,
            "exe": os.fsdecode(root.exe) if root else (procs[0]["exe"] if procs else ""),
            "uid": root.uid if root else (procs[0]["uid"] if procs else -1),
            "session": root.sid if root else (procs[0]["session"] if procs else 0),
            "cmdline": _cmdline(v.actor.pid) if v.actor.kind == "process" else "",
            "processes": procs,
        }

    # -- operator actions (also used by the CLI when the daemon runs) -------------------------------------

    def kill(self, iid: int) -> dict[str, Any]:
        inc = self.incidents.get(iid)
        errors: list[str] = []
        for rec in self.freezes.get(iid) or freeze_records(inc.freeze):
            errors += self.responder.kill(rec)
        self.incidents.set_state(iid, "killed", {"action": "kill", "errors": errors})
        self.open.pop(iid, None)
        log.warning("event=incident_kill id=%d errors=%s", iid, errors)
        return {"id": iid, "state": "killed", "errors": errors}

    def release(self, iid: int) -> dict[str, Any]:
        inc = self.incidents.get(iid)
        errors: list[str] = []
        for rec in self.freezes.get(iid) or freeze_records(inc.freeze):
            errors += self.responder.release(rec)
        self.incidents.set_state(iid, "released", {"action": "release", "errors": errors})
        self.open.pop(iid, None)
        log.warning("event=incident_release id=%d errors=%s", iid, errors)
        return {"id": iid, "state": "released", "errors": errors}


def freeze_records(stored: dict[str, Any] | None) -> list[FreezeRecord]:
    """The freezes of an incident as stored (one per widening)."""
    if not stored:
        return []
    return [FreezeRecord.from_record(r) for r in stored.get("records", [stored])]


def _with(f: ContentFeatures, rec: VersionRecord, prev: VersionRecord | None, subj: Subject | None, copied: bytes | None) -> ContentFeatures:
    from dataclasses import replace

    return replace(
        f,
        path=rec.path,
        time_ns=rec.time_ns,
        subject_pid=subj.pid if subj else 0,
        content_hash=rec.content.hex() if rec.content else "",
        change="content",
        created=prev is None or not prev.exists,
        copied_from=copied,
    )


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").strip().decode("utf-8", "replace")
    except OSError:
        return ""


# -- canaries ----------------------------------------------------------------------------------------


def read_canaries(home: Home) -> frozenset[bytes]:
    try:
        data = json.loads((home.root / CANARY_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return frozenset()
    return frozenset(os.fsencode(p) for p in data.get("paths", []))


def plant_canaries(home: Home, config: Config, trees: list[bytes]) -> list[bytes]:
    """Plant decoy files at the root of each tree (never overwriting anything) and remember them."""
    if not config.canary.enabled:
        (home.root / CANARY_FILE).unlink(missing_ok=True)
        return []
    from nocry.canary import decoy_bytes

    paths: list[bytes] = []
    for tree in trees:
        for name in config.canary.names:
            p = os.path.join(tree, os.fsencode(name))
            if not os.path.lexists(p):
                try:
                    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                except OSError as exc:
                    log.warning("event=canary_not_planted path=%r error=%r", p, exc.strerror)
                    continue
                with os.fdopen(fd, "wb") as f:
                    f.write(decoy_bytes(name, seed=zlib.crc32(p)))
            elif not os.path.isfile(p) or os.path.islink(p):
                continue
            paths.append(p)
    Path(home.root / CANARY_FILE).write_text(json.dumps({"paths": [os.fsdecode(p) for p in paths]}))
    return paths
