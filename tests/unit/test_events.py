import json

from nocry.events import FileEvent, Op, Overflow, Subject, event_from_record, event_to_record


def test_round_trip_with_odd_bytes():
    subj = Subject(pid=42, start_time=99, exe=b"/usr/bin/\xffodd", comm="odd", uid=1000, ppid=1, sid=42)
    ev = FileEvent(ops=Op.RENAME | Op.ATTRIB, path=b"/t/new\nname\xe9", old_path=b"/t/old", time_ns=5, seq=3, is_dir=True, subject=subj)
    rec = json.loads(json.dumps(event_to_record(ev)))
    assert rec["path_b64"]
    assert event_from_record(rec) == ev


def test_overflow_round_trip():
    ev = Overflow(time_ns=7, seq=1, trees=(b"/a", b"/b\xff"), reason="unresolved")
    assert event_from_record(json.loads(json.dumps(event_to_record(ev)))) == ev
