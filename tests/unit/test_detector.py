"""The detector is pure: hand-made streams in, verdicts out."""

from __future__ import annotations

from dataclasses import replace

from nocry.analyzer.model import ContentFeatures
from nocry.config import DetectConfig
from nocry.detector import Detector
from nocry.events import FileEvent, Op, ProcessSeen, Subject

S = 1_000_000_000
SHELL = Subject(pid=100, start_time=5, exe=b"/bin/sh", comm="sh", uid=1000, ppid=50, sid=50)
LOGIN = Subject(pid=50, start_time=1, exe=b"/bin/bash", comm="bash", uid=1000, ppid=1, sid=50)


def proc(pid: int, parent: Subject = SHELL, exe: bytes = b"/usr/bin/openssl") -> Subject:
    return Subject(pid=pid, start_time=pid * 10, exe=exe, comm=exe.rsplit(b"/", 1)[-1].decode(), uid=1000, ppid=parent.pid, sid=parent.sid)


def encrypted(path: bytes, pid: int, t: int, *, kind="ooxml", ext="docx") -> ContentFeatures:
    return ContentFeatures(
        path=path, time_ns=t, subject_pid=pid, size=20_000, prev_size=20_000, ext=ext, kind="unknown", prev_kind=kind,
        kind_matches_ext=False, type_lost=True, entropy=7.98, prev_entropy=7.6, compress_ratio=1.0, prev_compress_ratio=0.99,
        random=True, prev_random=kind == "ooxml",
        chunk_overlap=0.0, changed_blocks=1.0, changed_blocks_random=0.0 if kind == "ooxml" else 1.0,
    )  # fmt: skip


def edited_text(path: bytes, pid: int, t: int) -> ContentFeatures:
    return ContentFeatures(
        path=path, time_ns=t, subject_pid=pid, size=5100, prev_size=5000, ext="txt", kind="text", prev_kind="text",
        kind_matches_ext=True, entropy=4.5, prev_entropy=4.5, compress_ratio=0.4, prev_compress_ratio=0.4,
        chunk_overlap=0.0, changed_blocks=0.5, changed_blocks_random=0.0,
    )  # fmt: skip


def base(det: Detector) -> None:
    det.feed(ProcessSeen(time_ns=0, subject=LOGIN))
    det.feed(ProcessSeen(time_ns=0, subject=SHELL))


def test_in_place_encryption_by_one_process_is_judged_within_a_few_files():
    det = Detector(DetectConfig())
    base(det)
    attacker = proc(200, exe=b"/usr/bin/python3")
    det.feed(ProcessSeen(time_ns=0, subject=attacker))
    verdicts = []
    for i in range(10):
        verdicts += det.feed(encrypted(b"/t/d%d/f%d.docx" % (i % 4, i), 200, (i + 1) * S // 10))
        if verdicts:
            break
    assert len(verdicts) == 1
    v = verdicts[0]
    assert i + 1 <= 3, f"needed {i + 1} files"
    assert v.actor.kind == "process" and v.actor.pid == 200
    assert v.started_ns == S // 10
    assert {p for p, _ in v.objects} >= {b"/t/d0/f0.docx", b"/t/d1/f1.docx"}
    assert {i.name for i in v.indicators} <= {"type_lost", "breadth"}


def _process_per_file(det: Detector, *, bare_sighting: bool = False) -> list:
    """A shell loop running one process per file; ``bare_sighting``: each process is seen again
    by its pid alone (it had exited when a version of its file was captured)."""
    verdicts = []
    for i in range(10):
        p = proc(300 + i)
        det.feed(ProcessSeen(time_ns=i * S, subject=p))
        if bare_sighting:
            det.feed(ProcessSeen(time_ns=i * S, subject=Subject(pid=p.pid)))
        verdicts += det.feed(encrypted(b"/t/f%d.docx" % i, p.pid, i * S + 1))
        if verdicts:
            break
    return verdicts


def test_a_process_per_file_adds_up_at_the_driving_shell():
    det = Detector(DetectConfig())
    base(det)
    verdicts = _process_per_file(det)
    assert verdicts and verdicts[0].actor.pid == SHELL.pid
    assert len(verdicts[0].offending_pids) == len(verdicts[0].objects) <= 3


def test_a_bare_pid_seen_later_does_not_erase_what_is_known_of_the_process():
    # a process per file that has exited by the time its event is read: the process table told
    # who it was; a later sighting that knows only its pid (a version captured after the fact)
    # must not cut it off from the shell driving the loop
    det = Detector(DetectConfig())
    base(det)
    verdicts = _process_per_file(det, bare_sighting=True)
    assert verdicts and verdicts[0].actor.pid == SHELL.pid
    assert det.lineage(300) == [300, SHELL.pid, LOGIN.pid]


def test_ordinary_editing_and_one_compression_raise_nothing():
    det = Detector(DetectConfig())
    base(det)
    editor = proc(400, exe=b"/usr/bin/vim")
    gz = proc(401, exe=b"/usr/bin/gzip")
    stream = [ProcessSeen(time_ns=0, subject=editor), ProcessSeen(time_ns=0, subject=gz)]
    for i in range(50):
        stream.append(edited_text(b"/t/notes%d.txt" % (i % 5), 400, i * S))
    stream.append(FileEvent(ops=Op.CREATE | Op.CLOSE_WRITE, path=b"/t/big.csv.gz", time_ns=60 * S, subject=gz))
    stream.append(ContentFeatures(path=b"/t/big.csv.gz", time_ns=60 * S, subject_pid=401, size=3000, ext="gz", kind="gzip", kind_matches_ext=True, entropy=7.9, compress_ratio=1.0, created=True))
    stream.append(ContentFeatures(path=b"/t/big.csv", time_ns=61 * S, subject_pid=401, size=0, prev_size=30000, ext="csv", kind="deleted", change="deleted"))
    assert det.feed_all(stream) == []


def test_wannacry_style_new_files_deleted_originals_and_notes():
    det = Detector(DetectConfig())
    base(det)
    w = proc(500, exe=b"/tmp/wcry")
    det.feed(ProcessSeen(time_ns=0, subject=w))
    verdicts = []
    for i in range(6):
        t = (i + 1) * S
        d = b"/t/dir%d" % i
        verdicts += det.feed(ContentFeatures(path=d + b"/a.docx.WNCRY", time_ns=t, subject_pid=500, size=20016, ext="wncry", kind="unknown", entropy=7.99, compress_ratio=1.0, random=True, created=True))
        verdicts += det.feed(ContentFeatures(path=d + b"/a.docx", time_ns=t + 1, subject_pid=500, size=0, prev_size=20000, ext="docx", kind="deleted", change="deleted"))
        verdicts += det.feed(ContentFeatures(path=d + b"/@Please_Read_Me@.txt", time_ns=t + 2, subject_pid=500, size=900, ext="txt", kind="text", entropy=4.4, compress_ratio=0.5, created=True, content_hash="ab" * 32))
        if verdicts:
            break
    assert verdicts, "not detected"
    assert i + 1 <= 3
    names = {x.name for x in verdicts[0].indicators}
    assert "replace_original" in names


def test_canary_touch_is_judged_at_once():
    det = Detector(DetectConfig(), canaries={b"/t/!Accounts-2025.xlsx"})
    base(det)
    p = proc(600, exe=b"/usr/bin/python3")
    v = det.feed(FileEvent(ops=Op.MODIFY, path=b"/t/!Accounts-2025.xlsx", time_ns=S, subject=p))
    assert v and v[0].actor.pid == 600 and v[0].indicators[0].name == "canary"
    # moving a decoy to another folder under its own name is reorganising, not damage
    det2 = Detector(DetectConfig(), canaries={b"/t/!Accounts-2025.xlsx"})
    assert det2.feed(FileEvent(ops=Op.RENAME, old_path=b"/t/!Accounts-2025.xlsx", path=b"/t/old/!Accounts-2025.xlsx", time_ns=S, subject=p)) == []


def test_replays_give_the_same_verdicts():
    def run():
        det = Detector(DetectConfig())
        base(det)
        out = []
        for i in range(8):
            p = proc(700 + i)
            out += det.feed(ProcessSeen(time_ns=i * S, subject=p))
            out += det.feed(encrypted(b"/t/x%d.docx" % i, p.pid, i * S + 5))
        return [v.to_record() for v in out]

    assert run() == run() != []


def test_deleting_what_you_created_is_no_damage():
    det = Detector(DetectConfig())
    base(det)
    cc = proc(800, exe=b"/usr/bin/cc")
    rm = proc(801, exe=b"/usr/bin/rm")
    out = det.feed(ProcessSeen(time_ns=0, subject=rm))
    for i in range(200):
        out += det.feed(FileEvent(ops=Op.CREATE | Op.CLOSE_WRITE, path=b"/t/build/o%d.o" % i, time_ns=i, subject=cc))
    for i in range(200):
        out += det.feed(ContentFeatures(path=b"/t/build/o%d.o" % i, time_ns=10 * S + i, subject_pid=801, size=0, prev_size=4000, ext="o", kind="deleted", change="deleted"))
    assert out == []


def test_evidence_after_a_verdict_never_judges_the_ancestors_too():
    det = Detector(DetectConfig())
    base(det)
    attacker = proc(900, exe=b"/usr/bin/python3")
    det.feed(ProcessSeen(time_ns=0, subject=attacker))
    out = []
    for i in range(100):  # events still queued when the attacker was frozen keep arriving
        out += det.feed(encrypted(b"/t/d%d/f%d.docx" % (i % 7, i), 900, (i + 1) * S // 100))
    assert len(out) == 1 and out[0].actor.pid == 900


def test_renaming_your_own_new_files_is_no_damage():
    det = Detector(DetectConfig())
    base(det)
    tool = proc(950, exe=b"/usr/bin/python3")
    out = []
    for i in range(50):
        out += det.feed(FileEvent(ops=Op.CREATE | Op.CLOSE_WRITE, path=b"/t/f%d" % i, time_ns=i, subject=tool))
        out += det.feed(FileEvent(ops=Op.RENAME, old_path=b"/t/f%d" % i, path=b"/t/f%d.r" % i, time_ns=i + 1, subject=tool))
    assert out == []
    # but renaming files that were there before is
    for i in range(5):
        out += det.feed(FileEvent(ops=Op.RENAME, old_path=b"/t/old%d.docx" % i, path=b"/t/old%d.docx.locked" % i, time_ns=100 + i, subject=tool))
    assert out and out[0].actor.pid == 950


def test_removing_an_old_build_tree_is_no_attack():
    det = Detector(DetectConfig())
    base(det)
    rm = proc(960, exe=b"/usr/bin/rm")
    det.feed(ProcessSeen(time_ns=0, subject=rm))
    out = []
    for i in range(2000):  # created before nocry started: no creator known
        out += det.feed(ContentFeatures(path=b"/t/build/d%d/o%d.o" % (i % 40, i), time_ns=i, subject_pid=960, size=0, prev_size=4000, ext="o", kind="deleted", change="deleted"))
    assert out == []


def _note_after_damage(det: Detector, name: bytes, size: int, copied_from: bytes | None) -> set[str]:
    """Two files destroyed, then the same small text file written into three folders."""
    base(det)
    w = proc(510, exe=b"/tmp/x")
    det.feed(ProcessSeen(time_ns=0, subject=w))
    seen: set[str] = set()
    for i in range(2):
        for v in det.feed(encrypted(b"/t/e%d/f.docx" % i, 510, S + i)):
            seen |= {x.name for x in v.indicators}
    for i in range(3):
        note = ContentFeatures(path=b"/t/d%d/" % i + name, time_ns=2 * S + i, subject_pid=510, size=size, ext="txt", kind="text",
                               created=True, content_hash="cd" * 32, copied_from=copied_from)  # fmt: skip
        det.feed(note)
    return seen | {x.name for a in det.actors.values() for x in a.indicators}


def test_a_ransom_note_is_new_visible_and_more_than_a_few_bytes():
    assert "ransom_note" in _note_after_damage(Detector(DetectConfig()), b"README.txt", 900, None)
    # the same file extracted from an archive or copied from elsewhere in the tree
    assert "ransom_note" not in _note_after_damage(Detector(DetectConfig()), b"README.txt", 900, b"/t/old/README.txt")
    # a placeholder, and a hidden file
    assert "ransom_note" not in _note_after_damage(Detector(DetectConfig()), b"README.txt", 40, None)
    assert "ransom_note" not in _note_after_damage(Detector(DetectConfig()), b".README.txt", 900, None)


def _deleted(path: bytes, pid: int, t: int, ext: str) -> ContentFeatures:
    return ContentFeatures(path=path, time_ns=t, subject_pid=pid, size=0, prev_size=9000, ext=ext, kind="deleted", change="deleted")


def test_mass_deletion_of_non_documents_never_carries_a_verdict_alone():
    """git checkout of an old commit removes two CSV exports, then hundreds of files that are not
    documents (the benign suite's git-checkout-existing): no incident."""
    det = Detector(DetectConfig())
    base(det)
    git = proc(800, exe=b"/usr/bin/git")
    verdicts = det.feed(ProcessSeen(time_ns=0, subject=git))
    for i in range(2):
        verdicts += det.feed(_deleted(b"/t/app/exports/old%d.csv" % i, 800, S + i, "csv"))
    for i in range(400):
        verdicts += det.feed(_deleted(b"/t/app/config/m%d/x%d.json" % (i % 40, i), 800, S + 1000 + i * 1000, "json"))
    assert verdicts == []
    # the cap holds for the non-documents only: deletions of documents still add up
    login = Subject(pid=60, start_time=2, exe=b"/bin/bash", comm="bash", uid=1000, ppid=1, sid=60)
    wiper = proc(900, parent=login, exe=b"/tmp/w")
    verdicts += det.feed(ProcessSeen(time_ns=0, subject=login)) + det.feed(ProcessSeen(time_ns=0, subject=wiper))
    for i in range(10):
        verdicts += det.feed(_deleted(b"/t/docs/d%d/report%d.docx" % (i % 3, i), 900, 4 * S + i, "docx"))
    assert verdicts and 900 in verdicts[0].offending_pids, "deleting documents is still judged"


def _checkout(det: Detector, pid: int, parent: Subject, *, repo_write: bool, in_repo: bool | None = True) -> list:
    """git checkout of an old commit as the benign suite's git-checkout-existing does it: the
    index.lock first, then the removals in index order (22 JSON files, then 30 CSV exports) before
    any file of the working tree is written. ``in_repo``: what the analyzer found in the
    repository's object store for each deleted file."""
    git = proc(pid, parent=parent, exe=b"/usr/bin/git")
    verdicts = det.feed(ProcessSeen(time_ns=0, subject=git))
    if repo_write:
        verdicts += det.feed(FileEvent(ops=Op.CREATE, path=b"/t/app/.git/index.lock", time_ns=S, subject=git))
    for i in range(22):
        verdicts += det.feed(replace(_deleted(b"/t/app/config/c%d.json" % i, pid, S + 1000 + i, "json"), in_repo=in_repo))
    for i in range(30):
        verdicts += det.feed(replace(_deleted(b"/t/app/data/d%d.csv" % i, pid, S + 2000 + i, "csv"), in_repo=in_repo))
    return verdicts


def test_a_checkout_that_removes_documents_before_writing_anything_is_no_attack():
    """A process that writes a repository's metadata (.git) deletes documents of the working tree
    around it: the repository holds them. Without that write, the same deletions are judged, and
    a repository written by an unrelated process excuses nothing."""
    det = Detector(DetectConfig())
    base(det)
    assert _checkout(det, 800, SHELL, repo_write=True) == []
    det = Detector(DetectConfig())
    base(det)
    assert _checkout(det, 800, SHELL, repo_write=False), "30 CSV exports deleted with nothing else to explain it"
    det = Detector(DetectConfig())
    base(det)
    assert _checkout(det, 800, SHELL, repo_write=True, in_repo=None) == [], "unverifiable (an .hg tree): the write is trusted"
    det = Detector(DetectConfig())
    base(det)
    judged = _checkout(det, 800, SHELL, repo_write=True, in_repo=False)
    assert judged, "a .git written, but the repository lacks the files"
    assert all("which does not hold it" in i.detail for i in judged[0].indicators if i.name == "delete"), judged[0].indicators
    det = Detector(DetectConfig())
    base(det)
    det.feed(FileEvent(ops=Op.CREATE, path=b"/t/app/.git/index.lock", time_ns=S, subject=proc(700, exe=b"/usr/bin/git")))
    login = Subject(pid=60, start_time=2, exe=b"/bin/bash", comm="bash", uid=1000, ppid=1, sid=60)
    det.feed(ProcessSeen(time_ns=0, subject=login))
    assert _checkout(det, 900, login, repo_write=False), "another session's git excuses nothing"
    # but the analyzer still looks the files up (it asks before the relation is known)
    assert det.repository_written_above(b"/t/app/data/d0.csv", 2 * S)
    assert not det.repository_written_above(b"/t/elsewhere/d0.csv", 2 * S)
    assert not det.repository_written_above(b"/t/app/data/d0.csv", 1000 * S), "long after the write"


def test_a_sibling_of_a_judged_worker_hands_the_verdict_to_their_parent_at_its_first_damaged_file():
    """Workers of one pool: once one is judged, the next damaged file by any sibling judges the
    parent (the whole pool is frozen), without waiting for that sibling's own evidence to reach
    the threshold. One damaged file by a process outside that parent is still just evidence."""
    det = Detector(DetectConfig())
    base(det)
    pool = proc(300, exe=b"/usr/bin/python3")
    workers = [proc(301 + i, parent=pool, exe=b"/usr/bin/python3") for i in range(3)]
    login = Subject(pid=60, start_time=2, exe=b"/bin/bash", comm="bash", uid=1000, ppid=1, sid=60)
    other = proc(400, parent=login, exe=b"/usr/bin/python3")  # another session of the same user
    for p in (pool, *workers, login, other):
        det.feed(ProcessSeen(time_ns=0, subject=p))
    verdicts = []
    for i in range(5):
        verdicts += det.feed(encrypted(b"/t/w0/f%d.docx" % i, 301, S + i))
        if verdicts:
            break
    assert [v.actor.pid for v in verdicts] == [301], "the first worker alone"
    assert det.feed(encrypted(b"/t/x/f.docx", 400, 2 * S)) == [], "one file by an unrelated process"
    later = det.feed(encrypted(b"/t/w1/f0.docx", 302, 2 * S + 1))
    assert [v.actor.pid for v in later] == [300], "the sibling's first damaged file judges the pool"
    assert det.feed(encrypted(b"/t/w2/f0.docx", 303, 2 * S + 2)) == [], "the pool is judged once"
    # long after a verdict, a sibling's single damaged file is evidence, not a verdict on the parent
    det = Detector(DetectConfig())
    base(det)
    for p in (pool, *workers):
        det.feed(ProcessSeen(time_ns=0, subject=p))
    for i in range(3):
        det.feed(encrypted(b"/t/w0/f%d.docx" % i, 301, S + i))
    assert det.judged_parents == {300: S + 2}
    assert det.feed(encrypted(b"/t/w1/f0.docx", 302, 400 * S)) == []
    det._prune()  # (every few thousand records) a verdict older than lookback_s is forgotten
    assert det.judged_parents == {}


def test_paths_remembered_per_process_are_bounded_but_an_attackers_are_kept(monkeypatch):
    """A flood of writers (each process a few thousand new files) must not hold every path for
    ten minutes: past the bound the maps of the processes idle longest go, but not the map of a
    process with damage, which names its incident's objects."""
    import nocry.detector.engine as engine

    monkeypatch.setattr(engine, "_MAX_TOUCHED", 1000)
    det = Detector(DetectConfig())
    base(det)
    attacker = proc(200, exe=b"/usr/bin/python3")
    det.feed(ProcessSeen(time_ns=0, subject=attacker))
    det.feed(FileEvent(ops=Op.MODIFY | Op.CLOSE_WRITE, path=b"/t/early.txt", time_ns=1, seq=0, subject=attacker))
    det.feed(encrypted(b"/t/a/f0.docx", 200, 2))
    t = 10
    for w in range(20):
        writer = proc(1000 + w, exe=b"/usr/bin/tar")
        det.feed(ProcessSeen(time_ns=t, subject=writer))
        for i in range(300):
            t += 1
            det.feed(FileEvent(ops=Op.CREATE, path=b"/t/w%d/f%d" % (w, i), time_ns=t, seq=t, subject=writer))
        det._prune()
    total = sum(len(d) for d in det.touched.values())
    assert total <= 1000 + 300, total
    assert det.touched_dropped >= 20 * 300 - 1300
    assert b"/t/early.txt" in det.touched[200], "the attacker's map is kept"
    assert 1019 in det.touched, "the writer active last is kept"
    assert 1000 not in det.touched, "the writer idle longest is dropped"
    verdicts = []
    for i in range(1, 10):
        verdicts += det.feed(encrypted(b"/t/a%d/f%d.docx" % (i % 4, i), 200, t + i))
        if verdicts:
            break
    assert verdicts and b"/t/early.txt" in dict(verdicts[0].objects)


def test_a_rewrite_nobody_can_be_named_for_is_judged_by_its_content_alone():
    """What a rescan hands over after lost events: no process, no score, only what the content
    shows. Damage to a document counts; an ordinary edit, a non-document, a new file or a
    deletion does not."""
    det = Detector(DetectConfig())
    damage = det.unattributed(replace(encrypted(b"/t/a.docx", 0, S), subject_pid=0))
    assert damage and {i.name for i in damage} <= {"type_lost", "random_rewrite"} and damage[0].pid == 0
    assert det.unattributed(replace(edited_text(b"/t/notes.txt", 0, S), subject_pid=0)) == []
    assert det.unattributed(replace(encrypted(b"/t/a.o", 0, S, ext="o"), subject_pid=0)) == []
    assert det.unattributed(replace(encrypted(b"/t/a.docx", 0, S), created=True)) == []
    assert det.unattributed(replace(encrypted(b"/t/a.docx", 0, S), change="deleted")) == []
    assert det.actors == {} and det.touched == {}, "nothing is remembered"
