"""The detector: a pure, deterministic function of the record stream.

    for record in stream:                      # FileEvent | ProcessSeen | ContentFeatures
        indicators = evidence about this one record (content compared with the previous version,
                     renames to new extensions, originals replaced, ransom notes, canaries, deletes)
        for each actor of the record's subject  (the process, each ancestor, its session, its uid):
            score = score * 2^(-dt / half_life) + weight      (time from the records, never a clock)
        the lowest actor whose score >= threshold and that damaged >= min_objects objects
            -> Verdict (actor, evidence, offending pids, objects changed since the first damage)

Scoring every level of the process tree is what makes many cooperating workers, a fork per file,
or a trusted tool driven from a shell loop add up: each short-lived process scores little, their
common parent scores the sum. Choosing the lowest actor over the threshold freezes the smallest
group that holds every offending subject. The detector never reads files, /proc or the clock; the
same recording always gives the same verdicts.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field

from nocry.analyzer.model import ContentFeatures
from nocry.config import DetectConfig
from nocry.detector.model import ActorRef, Indicator, Verdict
from nocry.events import CHANGE_OPS, FileEvent, Op, ProcessSeen, Subject

__all__ = ["Detector", "extension", "KNOWN_EXTS"]

#: extensions ordinary software produces; a rename *to* anything else is suspicious
KNOWN_EXTS = frozenset(
    """
    doc docx docm dot dotx xls xlsx xlsm xlt ppt pptx pptm odt ods odp odg rtf txt csv tsv md rst tex pdf
    jpg jpeg png gif bmp tif tiff webp heic svg ico psd raw cr2 nef mp3 wav flac ogg m4a aac mp4 m4v mkv
    avi mov webm eml msg mbox pst ics vcf sqlite sqlite3 db dbf mdb accdb sql zip 7z rar tar gz tgz bz2
    xz zst zstd lz4 lzma cab iso img dmg deb rpm jar war whl egg gpg pgp asc sig p7s key pem crt py pyc
    pyo c h cc cpp hpp cxx o a so la lo obj exe dll class java js mjs ts tsx jsx go rs rb php pl pm sh bash
    zsh fish bat ps1 lua r m swift kt kts scala cs fs vb html htm xhtml css scss less json jsonl xml yaml
    yml toml ini cfg conf config properties env lock log out err tmp temp swp swo bak old orig rej diff
    patch part partial crdownload download cache idx pack rev map min ttf otf woff woff2 eot
    dwg dxf stl blend fbx kml gpx parquet feather avro orc npy npz pkl pickle h5 hdf5 mat ipynb
    """.split()
)

_MAX_TOUCHED_PER_PID = 100_000
#: paths remembered for all processes together (~150 bytes each): past it, the maps of the
#: processes idle longest are dropped, unless they belong to an actor with evidence. Without it a
#: flood of short-lived writers (one process per few thousand files) kept every path for 10 minutes
_MAX_TOUCHED = 250_000
_MAX_INDICATORS = 200
_PRUNE_EVERY = 5000
#: kinds that say nothing about a file's structure: a rewrite keeping them can still be damage
_SHAPELESS = frozenset({"unknown", "zeros", "constant", "empty"})
#: names compressors and archivers write: deleting originals after writing one is archiving
ARCHIVE_EXTS = frozenset({"gz", "tgz", "zst", "zstd", "xz", "txz", "bz2", "tbz", "lz4", "lzma", "7z", "zip", "tar", "rar", "cab"})
#: indicators that mean an object was harmed (a verdict needs min_objects of these); the others
#: (a random new file, a same-type rewrite, breadth) only add to the score
DAMAGE = frozenset(
    {"type_lost", "random_rewrite", "partial_encryption", "header_rewrite", "encoded", "zero_fill", "truncate",
     "delete", "replace_original", "rename_new_ext", "canary", "copied_over"}
)  # fmt: skip
_MAX_CREATED = 200_000


def extension(path: bytes) -> str:
    name = path.rsplit(b"/", 1)[-1]
    dot = name.rfind(b".")
    if dot <= 0 or dot == len(name) - 1:
        return ""
    ext = name[dot + 1 :]
    if len(ext) > 10:
        return ""
    try:
        return ext.decode("ascii").lower()
    except UnicodeDecodeError:
        return ""


def _backup_ext(ext: str) -> bool:
    """Editors' and rotators' names: file~, file.1, file.2 ..."""
    return ext.endswith("~") or ext.isdigit()


def _dirname(path: bytes) -> bytes:
    return path.rsplit(b"/", 1)[0]


#: the metadata directories of version control: a process that writes one (git's index.lock)
#: while it deletes files of the working tree around it is checking out or resetting, and the
#: repository holds what it deletes
_REPO_META = (b"/.git/", b"/.hg/", b"/.svn/", b"/.bzr/")


@dataclass
class _Family:
    """Deletions by one process tree (keyed by its topmost known ancestor) within replace_window_s."""

    since: int = 0
    deleted_doc: int = 0
    deleted_other: int = 0
    #: files written (created, saved, renamed into place) outside hidden directories
    written: int = 0


@dataclass
class _Actor:
    ref: ActorRef
    score: float = 0.0
    last_ns: int = 0
    first_damage_ns: int = 0
    damaged: dict[bytes, int] = field(default_factory=dict)
    dirs: set[bytes] = field(default_factory=set)
    pids: set[int] = field(default_factory=set)
    indicators: list[Indicator] = field(default_factory=list)
    breadth_given: bool = False
    judged: bool = False
    #: decayed weight so far of evidence that is no damage (deleting non-documents)
    no_damage: float = 0.0


#: evidence that is no damage by itself: its weight per actor adds up to threshold / 2 at most
_NO_DAMAGE = frozenset({"delete_other", "truncate_other"})

_CREATE, _RENAME = Op.CREATE.value, Op.RENAME.value
_WRITTEN = (Op.CREATE | Op.CLOSE_WRITE | Op.RENAME).value
_CANARY_HIT = (Op.MODIFY | Op.CLOSE_WRITE | Op.RENAME | Op.DELETE).value

#: smaller "notes" are placeholders (.gitkeep, empty READMEs), not ransom notes
_NOTE_MIN = 128


class Detector:
    def __init__(self, cfg: DetectConfig, *, canaries: frozenset[bytes] | set[bytes] = frozenset()):
        self.cfg = cfg
        self.canaries = frozenset(canaries)
        self.documents = frozenset(cfg.document_exts)
        self.procs: dict[int, Subject] = {}
        self.actors: dict[tuple, _Actor] = {}
        self.touched: dict[int, dict[bytes, int]] = {}  # pid -> path -> first change time
        self.touched_last: dict[int, int] = {}
        self.touched_dropped = 0  # paths forgotten by _bound_touched
        self.notes: dict[str, tuple[set[bytes], set[bytes]]] = {}  # content hash -> (dirs, paths)
        self.recent_deletes: deque[tuple[int, int, bytes, int]] = deque()  # (time, size, path, pid)
        self.recent_new: deque[tuple[int, int, bytes, int]] = deque()
        self.created: dict[bytes, int] = {}  # path -> pid that created it (bounded, oldest dropped)
        self.families: dict[int, _Family] = {}
        self.archive_writes: deque[tuple[int, int]] = deque()  # (time, pid) of archive/compressed outputs
        self.dir_writers: dict[bytes, tuple[int, int]] = {}  # directory -> (time, pid) of its last writer
        self.repo_writers: dict[bytes, tuple[int, int]] = {}  # working tree -> (time, pid) of its repository's last writer
        self.verdicts: list[Verdict] = []
        self.judged_parents: dict[int, int] = {}  # parent of a process judged -> time of that verdict
        self._n = 0
        self.now_ns = 0
        #: time of the last record that left an actor at a third of the threshold or more (the
        #: daemon stops discounting its own CPU priority from then on, see nocry.priority)
        self.suspect_ns = 0

    # -- input ---------------------------------------------------------------------------------

    def feed(self, record) -> list[Verdict]:
        """Take one record; return the verdicts it caused (usually none)."""
        self._n += 1
        if self._n % _PRUNE_EVERY == 0:
            self._prune()
        if isinstance(record, ContentFeatures):
            self.now_ns = max(self.now_ns, record.time_ns)
            return self._features(record)
        if isinstance(record, FileEvent):
            self.now_ns = max(self.now_ns, record.time_ns)
            return self._event(record)
        if isinstance(record, ProcessSeen):
            self._learn(record.subject)
        return []

    def feed_all(self, records) -> list[Verdict]:
        out: list[Verdict] = []
        for r in records:
            out.extend(self.feed(r))
        return out

    def _learn(self, s: Subject | None) -> None:
        if s is None or s.pid <= 0:
            return
        known = self.procs.get(s.pid)
        if known is None or s.ppid or s.start_time != known.start_time:
            if known is not None and not s.ppid and s.start_time in (0, known.start_time):
                # keep the richer record: a bare pid (its process was gone when its event was
                # read) says nothing new, and is no sign of the pid's reuse either
                return
            self.procs[s.pid] = s

    def lineage(self, pid: int) -> list[int]:
        """pid, its parent, grandparent, ... (stops before pid 1, at unknown parents and cycles)."""
        out: list[int] = []
        seen: set[int] = set()
        while pid > 1 and pid not in seen and len(out) < 64:
            out.append(pid)
            seen.add(pid)
            s = self.procs.get(pid)
            if s is None:
                break
            pid = s.ppid
        return out

    # -- file events: namespace evidence ----------------------------------------------------------

    def _event(self, ev: FileEvent) -> list[Verdict]:
        s = ev.subject
        self._learn(s)
        if not ev.ops & CHANGE_OPS or s is None or s.pid <= 0:
            return []
        pid = s.pid
        self._touch(pid, ev.path, ev.time_ns)
        if ev.old_path is not None:
            self._touch(pid, ev.old_path, ev.time_ns)
        ops = ev.ops._value_  # plain ints: enum arithmetic is slow on this hot path
        if ops & _CREATE and not ev.is_dir:
            self._note_created(ev.path, pid)
        if ops & _WRITTEN and not ev.is_dir:
            if len(self.dir_writers) >= _MAX_CREATED:
                self.dir_writers.clear()
            self.dir_writers[_dirname(ev.path)] = (ev.time_ns, pid)
            if b"/." not in ev.path:
                self._family(pid, ev.time_ns).written += 1
            else:
                self._note_repo_writer(ev.path, pid, ev.time_ns)
            if extension(ev.path) in ARCHIVE_EXTS and (not self.archive_writes or self.archive_writes[-1][1] != pid):
                self.archive_writes.append((ev.time_ns, pid))
        found: list[Indicator] = []
        hit_canary = ev.path in self.canaries or (ev.old_path is not None and ev.old_path in self.canaries)
        if hit_canary and ops & _RENAME and ev.old_path is not None and ev.old_path.rsplit(b"/", 1)[-1] == ev.path.rsplit(b"/", 1)[-1]:
            hit_canary = False  # moved to another folder under its own name: reorganising, not damage
        if hit_canary and ops & _CANARY_HIT:
            found.append(Indicator("canary", self.cfg.w_canary, ev.old_path or ev.path, ev.time_ns, pid, f"decoy {ev.ops.names}"))
        if ops & _RENAME and ev.old_path is not None and not ev.is_dir:
            old_ext, new_ext = extension(ev.old_path), extension(ev.path)
            if new_ext != old_ext and new_ext and not _backup_ext(new_ext) and new_ext not in KNOWN_EXTS and not self._created_by_same_actor(ev.old_path, pid):
                found.append(Indicator("rename_new_ext", self.cfg.w_rename_new_ext, ev.old_path, ev.time_ns, pid, f".{old_ext or '(none)'} -> .{new_ext}"))
        if ops & _RENAME and ev.old_path is not None and ev.old_path in self.created:
            self._note_created(ev.path, self.created[ev.old_path])
        return self._score(s, found, ev.time_ns)

    def _family(self, pid: int, t: int) -> _Family:
        key = (self.lineage(pid) or [pid])[-1]
        fam = self.families.get(key)
        if fam is None or t - fam.since > self.cfg.replace_window_s * 1_000_000_000:
            fam = self.families[key] = _Family(since=t)
        return fam

    def _ordinary_delete(self, fam: _Family, path: bytes, pid: int, t: int, in_repo: bool | None = None) -> str | None:
        """Why deleting this document is ordinary work, or None when it is damage. ``in_repo``:
        whether the repository around it holds its content (the analyzer looked; None: it could
        not tell, e.g. a Mercurial tree or a recording made before it looked)."""
        window = t - self.cfg.replace_window_s * 1_000_000_000
        while self.archive_writes and self.archive_writes[0][0] < window:
            self.archive_writes.popleft()
        if any(self._related(w, pid) for _, w in self.archive_writes):
            return "archived: a related process just wrote an archive or compressed file"
        last = self.dir_writers.get(_dirname(path))
        if last is not None and last[0] >= window and self._related(last[1], pid):
            return "synchronised: a related process writes files in this directory (checkout, sync, extract)"
        if fam.deleted_other > fam.deleted_doc:
            return "mostly non-documents deleted (a build tree, a cache, a virtualenv)"
        if fam.written >= fam.deleted_doc:
            return "churn: the same process tree writes at least as many files as it deletes (a mirror, a sync)"
        if in_repo is not False and self._repo_of(path, pid, window):
            return "checkout: a related process writes the repository this file is in (its .git); the repository holds the file"
        return None

    def _note_repo_writer(self, path: bytes, pid: int, t: int) -> None:
        for meta in _REPO_META:
            i = path.find(meta)
            if i > 0:
                if len(self.repo_writers) >= _MAX_CREATED:
                    self.repo_writers.clear()
                self.repo_writers[path[:i]] = (t, pid)
                return

    def repository_written_above(self, path: bytes, t: int) -> bool:
        """Whether any process wrote, within ``replace_window_s`` before ``t``, the repository
        metadata of a working tree that holds ``path``: only then can the checkout rule excuse
        its deletion, and only then does the analyzer look the file up in the repository."""
        return self._repo_of(path, None, t - self.cfg.replace_window_s * 1_000_000_000)

    def _repo_of(self, path: bytes, pid: int | None, since: int) -> bool:
        """A related process (any, for ``pid`` None) wrote, since ``since``, the repository
        metadata of a working tree that holds ``path``. git checkout removes the files the target
        commit lacks before it writes any file of the working tree: only its index.lock comes
        first."""
        if not self.repo_writers:
            return False
        d = _dirname(path)
        for _ in range(64):
            w = self.repo_writers.get(d)
            if w is not None and w[0] >= since and (pid is None or self._related(w[1], pid)):
                return True
            if b"/" not in d:
                return False
            d = _dirname(d)
        return False

    def _bound_touched(self) -> None:
        """Keep at most ``_MAX_TOUCHED`` remembered paths: drop whole maps, the processes idle
        longest first. Processes of an actor with evidence (or judged) keep theirs: those maps are
        what its incident's objects are made of (:meth:`objects_of`)."""
        total = sum(len(d) for d in self.touched.values())
        if total <= _MAX_TOUCHED:
            return
        keep = {p for a in self.actors.values() if a.judged or a.first_damage_ns for p in a.pids}
        dropped = 0
        for pid in sorted(self.touched_last, key=self.touched_last.__getitem__):
            if total <= _MAX_TOUCHED:
                break
            if pid in keep:
                continue
            n = len(self.touched.pop(pid, ()))
            del self.touched_last[pid]
            total -= n
            dropped += n
        self.touched_dropped += dropped

    def _touch(self, pid: int, path: bytes, t: int) -> None:
        d = self.touched.get(pid)
        if d is None:
            d = self.touched[pid] = {}
        if path not in d and len(d) < _MAX_TOUCHED_PER_PID:
            d[path] = t
        self.touched_last[pid] = t

    # -- content evidence ------------------------------------------------------------------------

    def _features(self, f: ContentFeatures) -> list[Verdict]:
        pid = f.subject_pid
        if pid <= 0:
            return []
        s = self.procs.get(pid) or Subject(pid=pid)
        self._touch(pid, f.path, f.time_ns)
        c = self.cfg
        t = f.time_ns
        found: list[Indicator] = []
        doc = f.ext in self.documents
        if f.path in self.canaries:
            found.append(Indicator("canary", c.w_canary, f.path, t, pid, f"decoy {f.change}"))
        if f.change == "deleted":
            # removing what you made yourself (build outputs, temp files) is no damage at all
            if f.prev_size and not self._created_by_same_actor(f.path, pid):
                fam = self._family(pid, t)
                fam.deleted_doc += doc
                fam.deleted_other += not doc
                why = self._ordinary_delete(fam, f.path, pid, t, f.in_repo) if doc else "not a document"
                if why is None:
                    detail = f"{f.prev_kind or '?'} of {f.prev_size} bytes"
                    if f.in_repo is False and self._repo_of(f.path, pid, t - c.replace_window_s * 1_000_000_000):
                        detail += "; a related process writes the repository above it, which does not hold it"
                    found.append(Indicator("delete", c.w_delete_document, f.path, t, pid, detail))
                elif c.w_delete_other:
                    found.append(Indicator("delete_other", c.w_delete_other if not doc else 0.0, f.path, t, pid, why))
                match = self._match(self.recent_new, f.prev_size, pid, t, f.path)
                if match is not None:
                    found.append(Indicator("replace_original", c.w_replace_original, f.path, t, pid, f"original deleted after {os.fsdecode(match)} was written"))
                self.recent_deletes.append((t, f.prev_size, f.path, pid))
            return self._score(s, found, t)

        random_now = f.random
        if f.created or f.prev_size is None:
            suspicious_new = random_now and (f.kind == "unknown" and (not f.ext or f.ext not in KNOWN_EXTS or f.kind_matches_ext is False))
            if suspicious_new:
                if c.w_random_new_file:
                    found.append(Indicator("random_new_file", c.w_random_new_file, f.path, t, pid, f"entropy {f.entropy:.2f}, unknown type, .{f.ext}"))
                match = self._match(self.recent_deletes, f.size, pid, t, f.path)
                if match is not None:
                    found.append(Indicator("replace_original", c.w_replace_original, match, t, pid, f"replaced by {os.fsdecode(f.path)}"))
                self.recent_new.append((t, f.size, f.path, pid))
            if f.content_hash and f.kind == "text" and 0 < f.size <= 65536:
                found.extend(self._ransom_note(f, pid))
            return self._score(s, found, t)

        # a new version of an existing object
        self._rewrite(f, pid, doc, found)
        return self._score(s, found, t)

    def _rewrite(self, f: ContentFeatures, pid: int, doc: bool, found: list[Indicator]) -> list[Indicator]:
        """What a new version of an existing object shows by itself, whoever wrote it; added to
        ``found`` (which may hold a canary's indicator already)."""
        c = self.cfg
        t = f.time_ns
        random_now = f.random
        prev_size = f.prev_size or 0
        if prev_size > 0 and f.size == 0:
            found.append(Indicator("truncate" if doc else "truncate_other", c.w_truncate if doc else c.w_truncate / 8, f.path, t, pid, f"{prev_size} -> 0 bytes"))
        elif (f.zero_fill or f.constant_fill) and prev_size > 0 and f.prev_kind not in ("zeros", "constant"):
            found.append(Indicator("zero_fill", c.w_zero_fill, f.path, t, pid, f"{f.prev_kind} -> {'zeros' if f.zero_fill else 'one repeated byte'}"))
        else:
            if f.type_lost:
                found.append(Indicator("type_lost", c.w_type_lost, f.path, t, pid, f".{f.ext}: {f.prev_kind} -> {f.kind}"))
            if f.looks_encoded and f.prev_kind != f.kind:
                found.append(Indicator("encoded", c.w_encoded, f.path, t, pid, f"{f.prev_kind} -> base64/hex-like text"))
            prev_random = bool(f.prev_random)
            # a file that still is what it was (jpeg -> jpeg, pdf -> pdf) was re-encoded, not
            # encrypted: its randomness says nothing (compressed formats look random anyway)
            same_type = f.kind == f.prev_kind and f.kind not in _SHAPELESS
            if same_type:
                pass
            elif random_now and not prev_random:
                found.append(Indicator("random_rewrite", c.w_random_rewrite, f.path, t, pid, f"entropy {f.prev_entropy or 0:.2f} -> {f.entropy:.2f}, ratio {f.compress_ratio:.2f}"))
            elif f.changed_blocks_random is not None and f.changed_blocks and f.changed_blocks_random >= 0.5:
                if f.header_only_change:
                    found.append(Indicator("header_rewrite", c.w_header_rewrite, f.path, t, pid, "header turned random, rest unchanged"))
                else:
                    found.append(Indicator("partial_encryption", c.w_partial_encryption, f.path, t, pid, f"{f.changed_blocks:.0%} of blocks changed, {f.changed_blocks_random:.0%} of them random"))
            if not found and f.chunk_overlap == 0 and (f.changed_blocks or 0) >= 0.95 and f.kind == f.prev_kind and prev_size > 0:
                if f.copied_from is not None and doc:
                    # plausible data: the content of another file written over this one
                    found.append(Indicator("copied_over", c.w_copied_over, f.path, t, pid, f"now holds the content of {os.fsdecode(f.copied_from)}"))
                elif c.w_content_replaced:
                    found.append(Indicator("content_replaced", c.w_content_replaced, f.path, t, pid, f"same type ({f.kind}), every block different"))
        return found

    def unattributed(self, f: ContentFeatures) -> list[Indicator]:
        """The damage a rewrite of a document shows when no process can be named (a rescan after
        the kernel dropped events found it): the content evidence alone, no actor, no score."""
        if f.change == "deleted" or f.created or f.prev_size is None or f.ext not in self.documents:
            return []
        return [i for i in self._rewrite(f, 0, True, []) if i.name in DAMAGE]

    def _ransom_note(self, f: ContentFeatures, pid: int) -> list[Indicator]:
        # a note is written to be read: never hidden (nor in a hidden folder such as .git), never
        # a few bytes, never a copy of a file
        # the tree already held (an archive extracted, a folder copied)
        if f.copied_from is not None or f.size < _NOTE_MIN or b"/." in f.path:
            return []
        dirs, paths = self.notes.setdefault(f.content_hash, (set(), set()))
        dirs.add(_dirname(f.path))
        paths.add(f.path)
        if len(dirs) < self.cfg.note_dirs:
            return []
        # the note itself is damage to undo: every copy is one object
        return [Indicator("ransom_note", self.cfg.w_ransom_note if len(dirs) == self.cfg.note_dirs else 1.0, f.path, f.time_ns, pid, f"same new file in {len(dirs)} directories")]

    def related(self, a: int, b: int) -> bool:
        """Do two processes belong to one actor (a common ancestor below pid 1, or a session)?"""
        return self._related(a, b)

    def _related(self, a: int, b: int) -> bool:
        if a == b:
            return True
        la, lb = self.lineage(a), self.lineage(b)
        if set(la) & set(lb):
            return True
        sa, sb = self.procs.get(a), self.procs.get(b)
        return bool(sa and sb and sa.sid and sa.sid == sb.sid and sa.sid > 1)

    def _match(self, recent: deque, size: int, pid: int, t: int, near: bytes) -> bytes | None:
        """A recent counterpart of similar size, from a related process, in the same directory
        (ransomware writes its output next to the original; git gc's objects elsewhere are not)."""
        window = self.cfg.replace_window_s * 1_000_000_000
        while recent and recent[0][0] < t - window:
            recent.popleft()
        where = _dirname(near)
        for i, (tt, sz, path, p) in enumerate(recent):
            if abs(sz - size) <= max(4096, size // 10) and _dirname(path) == where and self._related(pid, p):
                del recent[i]
                return path
        return None

    def _created_by_same_actor(self, path: bytes, pid: int) -> bool:
        creator = self.created.get(path)
        return creator is not None and bool(set(self.lineage(creator) or [creator]) & set(self.lineage(pid) or [pid]))

    def _note_created(self, path: bytes, pid: int) -> None:
        if len(self.created) >= _MAX_CREATED:
            self.created.pop(next(iter(self.created)))
        self.created[path] = pid

    # -- scoring -----------------------------------------------------------------------------------

    def _actor_levels(self, s: Subject) -> list[tuple]:
        keys: list[tuple] = []
        for p in self.lineage(s.pid):
            st = self.procs.get(p)
            keys.append(("process", p, st.start_time if st else 0))
        sub = self.procs.get(s.pid) or s
        if sub.sid > 1:
            keys.append(("session", sub.sid))
        if sub.uid >= 0:
            keys.append(("uid", sub.uid))
        return keys

    def _score(self, s: Subject, found: list[Indicator], t: int) -> list[Verdict]:
        if not found:
            return []
        c = self.cfg
        levels = self._actor_levels(s)
        decided: list[Verdict] = []
        chosen: tuple | None = None
        # a subject inside an actor already judged adds evidence to it, never a new verdict
        covered = any(k in self.actors and self.actors[k].judged for k in levels)
        for key in levels:
            a = self.actors.get(key)
            if a is None:
                ref = ActorRef(kind=key[0], key=key[1], pid=key[1] if key[0] == "process" else 0, start_time=key[2] if key[0] == "process" else 0)
                a = self.actors[key] = _Actor(ref=ref)
            if a.last_ns:
                decay = 2.0 ** (-(max(0, t - a.last_ns)) / (c.half_life_s * 1e9))
                a.score *= decay
                a.no_damage *= decay
            a.last_ns = t
            for ind in found:
                if ind.name == "ransom_note" and not a.damaged:
                    # the same small file in many folders is also a LICENSE in every vendored
                    # package: it only weighs when the same actor is already damaging files
                    if len(a.indicators) < _MAX_INDICATORS:
                        a.indicators.append(ind)
                    continue
                if ind.name in _NO_DAMAGE:
                    # a long session (pip uninstalls, rm -rf of a venv, git checkouts) deletes
                    # thousands of non-documents: that helps judge an actor that also destroys
                    # documents, but never carries a verdict on its own
                    w = max(0.0, min(ind.weight, c.threshold / 2 - a.no_damage))
                    a.no_damage += w
                    a.score += w
                else:
                    a.score += ind.weight
                if ind.name in DAMAGE:
                    if ind.path not in a.damaged:
                        a.damaged[ind.path] = ind.time_ns
                    if ind.name != "delete":  # deleting across folders is what cleaning up does
                        a.dirs.add(_dirname(ind.path))
                if a.first_damage_ns == 0 or ind.time_ns < a.first_damage_ns:
                    a.first_damage_ns = ind.time_ns
                if len(a.indicators) < _MAX_INDICATORS:
                    a.indicators.append(ind)
            a.pids.add(s.pid)
            if a.score >= c.threshold / 3:
                self.suspect_ns = max(self.suspect_ns, t)
            if a.judged:
                # already judged: its evidence grows, but nothing above it is judged again for it
                break
            if not a.breadth_given and len(a.dirs) >= c.breadth_dirs and a.score >= c.threshold / 3:
                a.breadth_given = True
                a.score += c.w_breadth
                a.indicators.append(Indicator("breadth", c.w_breadth, found[0].path, t, s.pid, f"damage in {len(a.dirs)} directories"))
            if chosen is None and not covered and not a.judged and a.score >= c.threshold and (len(a.damaged) >= c.min_objects or any(i.name == "canary" for i in a.indicators)):
                chosen = key
        if not covered and self.judged_parents and any(i.name in DAMAGE and i.weight for i in found):
            pool = self._pool_of(levels, t)
            if pool is not None and (chosen is None or levels.index(chosen) > levels.index(pool)):
                chosen = pool  # the lowest actor to judge: the pool, not its session or uid
        if chosen is not None:
            chosen = self._widen(chosen, levels)
            a = self.actors[chosen]
            a.judged = True
            if chosen[0] == "process":
                judged = self.procs.get(chosen[1])
                if judged is not None and judged.ppid > 1:
                    self.judged_parents[judged.ppid] = t
            # the same evidence counted for every actor above: they need no verdict of their own
            above = levels[levels.index(chosen) + 1 :]
            for key in above:
                up = self.actors.get(key)
                if up is not None:
                    up.score = max(0.0, up.score - a.score)
            v = Verdict(
                actor=a.ref,
                score=a.score,
                detected_ns=t,
                started_ns=a.first_damage_ns,
                offending_pids=tuple(sorted(a.pids)),
                # what the actor did shortly before its first damage belongs to the attack too (the
                # ransom note written before the first file is encrypted, the copy written before
                # the original is deleted)
                objects=tuple(sorted(self.objects_of(a, since=a.first_damage_ns - c.lookback_s * 1_000_000_000).items())),
                indicators=tuple(a.indicators),
            )
            self.verdicts.append(v)
            decided.append(v)
        return decided

    def _pool_of(self, levels: list[tuple], t: int) -> tuple | None:
        """The parent of a judged process, as soon as another of its children damages a file
        within ``lookback_s`` of that verdict: workers of one pool are one attacker, and waiting
        for each sibling's evidence to reach the threshold on its own lets the rest of the pool
        run on (many-workers). A shell's later, unrelated commands are not the pool."""
        for key in levels[1:]:
            if key[0] != "process":
                return None
            since = self.judged_parents.get(key[1])
            if since is not None and t - since <= self.cfg.lookback_s * 1_000_000_000 and not self.actors[key].judged:
                return key
        return None

    def _widen(self, chosen: tuple, levels: list[tuple]) -> tuple:
        """Cooperating siblings (workers of one parent) are one actor: while the next process up
        holds damage from processes outside the chosen subtree, judge that one instead."""
        i = levels.index(chosen)
        while i + 1 < len(levels) and levels[i + 1][0] == "process":
            cur, up = self.actors[levels[i]], self.actors.get(levels[i + 1])
            if up is None or up.judged:
                break
            outside = {p for p in up.pids if not self._pid_in_actor(p, cur.ref)}
            if not outside or not any(i_.name in DAMAGE and i_.pid in outside for i_ in up.indicators):
                break
            i += 1
        return levels[i]

    def objects_of(self, a: _Actor, since: int = 0) -> dict[bytes, int]:
        """Every object the actor changed at or after ``since`` (path -> first change time)."""
        out: dict[bytes, int] = {}
        for pid, paths in self.touched.items():
            if not self._pid_in_actor(pid, a.ref):
                continue
            for path, first in paths.items():
                if first >= since and (path not in out or first < out[path]):
                    out[path] = first
        for path, first in a.damaged.items():
            if path not in out or first < out[path]:
                out[path] = first
        return out

    def verdict_objects(self, v: Verdict) -> dict[bytes, int]:
        """The objects of a verdict, computed again (after more is known about who is whose
        parent: a process that exited before its events were read may be linked only later)."""
        for a in self.actors.values():
            if a.ref == v.actor:
                return self.objects_of(a, since=a.first_damage_ns - self.cfg.lookback_s * 1_000_000_000)
        return dict(v.objects)

    def orphans(self) -> list[int]:
        """Processes that changed objects but whose parent is unknown."""
        return [p for p in self.touched if (s := self.procs.get(p)) is None or s.ppid <= 0]

    def _pid_in_actor(self, pid: int, ref: ActorRef) -> bool:
        if ref.kind == "process":
            return ref.pid in self.lineage(pid)
        s = self.procs.get(pid)
        if s is None:
            return False
        return (ref.kind == "session" and s.sid == ref.key) or (ref.kind == "uid" and s.uid == ref.key)

    def actor_contains(self, ref: ActorRef, pid: int) -> bool:
        return self._pid_in_actor(pid, ref)

    # -- housekeeping ------------------------------------------------------------------------------

    def _prune(self) -> None:
        horizon = self.now_ns - 4 * self.cfg.half_life_s * 1_000_000_000
        for key in [k for k, a in self.actors.items() if not a.judged and a.last_ns < horizon]:
            del self.actors[key]
        idle = self.now_ns - 600 * 1_000_000_000
        for pid in [p for p, last in self.touched_last.items() if last < idle]:
            self.touched.pop(pid, None)
            self.touched_last.pop(pid, None)
        self._bound_touched()
        if len(self.notes) > 10_000:
            self.notes.clear()
        window = self.now_ns - self.cfg.replace_window_s * 1_000_000_000
        for key in [k for k, f in self.families.items() if f.since < window]:
            del self.families[key]
        # a verdict hands itself to the pool's parent only within lookback_s (_pool_of)
        stale = self.now_ns - self.cfg.lookback_s * 1_000_000_000
        for ppid in [p for p, since in self.judged_parents.items() if since < stale]:
            del self.judged_parents[ppid]
