"""FanotifySensor against the real kernel: real marks, real processes, real overflow.

Every operation is done by an *actor*: a child Python process that runs a snippet, reports, and
stays alive until released, so its pidfd is still valid when the sensor reads the event (a process
reaped before the read is reported by the kernel with no pidfd). The test process's own pid is
passed explicitly in ``ignore_pids`` wherever the test itself touches the tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from tests.kernel._require import require_root

from nocry.events import Event, FileEvent, Op, Overflow
from nocry.sensor import FanotifySensor

pytestmark = pytest.mark.kernel

ACTOR = r"""
import os, sys
if len(sys.argv) > 2:
    uid = int(sys.argv[2])
    os.setgroups([]); os.setgid(uid); os.setuid(uid)
exec(sys.argv[1])
sys.stdout.write("done\n"); sys.stdout.flush()
sys.stdin.readline()
"""

PYTHON_EXE = os.path.realpath(sys.executable).encode()
NOBODY = 65534


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()


@pytest.fixture
def tree() -> Iterator[bytes]:
    base = tempfile.mkdtemp(prefix="nocry-sensor-")
    os.chmod(base, 0o755)
    path = os.path.join(base, "tree")
    os.mkdir(path)
    os.chmod(path, 0o777)  # actors may drop to nobody
    yield os.path.realpath(path).encode()
    shutil.rmtree(base, ignore_errors=True)


class Collector:
    """A sink that keeps everything and lets the test wait for what it expects."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.batches = 0
        self._cond = threading.Condition()

    def __call__(self, batch: list[Event]) -> None:
        with self._cond:
            self.events.extend(batch)
            self.batches += 1
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[Event], bool], timeout: float = 10.0) -> Event:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events:
                    if pred(ev):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching event within {timeout}s; got {self.events!r}")
                self._cond.wait(left)

    def file_events(self) -> list[FileEvent]:
        with self._cond:
            return [e for e in self.events if isinstance(e, FileEvent)]


class Actor:
    """A live child process that performs ``code`` and waits to be released."""

    def __init__(self, code: str, cwd: bytes, uid: int | None = None) -> None:
        argv = [sys.executable, "-c", ACTOR, code] + ([str(uid)] if uid is not None else [])
        self.proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line != b"done\n":
            self.release()
            raise AssertionError(f"actor failed: {code!r} -> {line!r}")
        self.pid = self.proc.pid

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> Actor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def act(code: str, cwd: bytes, uid: int | None = None) -> Actor:
    return Actor(code, cwd, uid)


@pytest.fixture
def running() -> Iterator[Callable[..., tuple[FanotifySensor, Collector]]]:
    started: list[FanotifySensor] = []

    def start(trees: list[bytes], **kw: object) -> tuple[FanotifySensor, Collector]:
        col = Collector()
        kw.setdefault("ignore_pids", (os.getpid(),))
        sensor = FanotifySensor(trees, col, **kw)  # type: ignore[arg-type]
        sensor.start()
        started.append(sensor)
        return sensor, col

    yield start
    for s in started:
        s.stop()


def is_file_event(path: bytes, op: Op | None = None, pid: int | None = None) -> Callable[[Event], bool]:
    def pred(ev: Event) -> bool:
        return (
            isinstance(ev, FileEvent)
            and ev.path == path
            and (op is None or op in ev.ops)
            and (pid is None or (ev.subject is not None and ev.subject.pid == pid))
        )

    return pred


def ops_seen(col: Collector, path: bytes, pid: int) -> Op:
    ops = Op(0)
    for ev in col.file_events():
        if ev.path == path and ev.subject is not None and ev.subject.pid == pid:
            ops |= ev.ops
    return ops


def wait_ops(col: Collector, path: bytes, pid: int, want: Op, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (ops_seen(col, path, pid) & want) != want:
        if time.monotonic() > deadline:
            raise AssertionError(f"{path!r}: wanted {want!r}, saw {ops_seen(col, path, pid)!r} in {col.events!r}")
        time.sleep(0.01)


# --- operations, each seen with the acting process -----------------------------------------


def test_create_write_close_with_subject(running, tree: bytes) -> None:
    sensor, col = running([tree])
    f = tree + b"/doc.txt"
    with act("with open('doc.txt', 'wb') as fh: fh.write(b'hello')", tree) as a:
        wait_ops(col, f, a.pid, Op.CREATE | Op.MODIFY | Op.CLOSE_WRITE | Op.OPEN)
        ev = col.wait_for(is_file_event(f, Op.CREATE, a.pid))
    assert isinstance(ev, FileEvent) and ev.subject is not None
    s = ev.subject
    assert (s.pid, s.exe, s.uid, s.ppid) == (a.pid, PYTHON_EXE, 0, os.getpid())
    # the child inherits our session; under CI that can be session 0 (no setsid anywhere)
    assert s.start_time > 0 and s.comm.startswith("python") and s.sid == os.getsid(0)
    assert ev.is_dir is False and ev.old_path is None
    assert abs(ev.time_ns - time.time_ns()) < 30e9
    seqs = [e.seq for e in col.events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert sensor.events_emitted >= 1 and sensor.read_batches >= 1


def test_subject_uid_is_the_real_uid_of_the_actor(running, tree: bytes) -> None:
    _, col = running([tree])
    f = tree + b"/nobody.txt"
    with act("open('nobody.txt', 'wb').close()", tree, uid=NOBODY) as a:
        ev = col.wait_for(is_file_event(f, Op.CREATE, a.pid))
    assert isinstance(ev, FileEvent) and ev.subject is not None
    assert (ev.subject.uid, ev.subject.exe) == (NOBODY, PYTHON_EXE)


def test_rename_file_gives_old_and_new_path(running, tree: bytes) -> None:
    with open(tree + b"/a.txt", "wb") as fh:
        fh.write(b"x")
    _, col = running([tree])
    with act("os.rename('a.txt', 'b.txt')", tree) as a:
        ev = col.wait_for(is_file_event(tree + b"/b.txt", Op.RENAME, a.pid))
    assert isinstance(ev, FileEvent)
    assert ev.old_path == tree + b"/a.txt" and ev.is_dir is False


def test_rename_directory_and_later_events_use_the_new_path(running, tree: bytes) -> None:
    os.makedirs(tree + b"/d/sub")
    _, col = running([tree])
    # 1st: an event inside puts d/sub (and d) into the directory cache
    with act("open('d/sub/x', 'wb').close()", tree) as a:
        col.wait_for(is_file_event(tree + b"/d/sub/x", Op.CREATE, a.pid))
    with act("os.rename('d', 'e')", tree) as a:
        ev = col.wait_for(is_file_event(tree + b"/e", Op.RENAME, a.pid))
    assert isinstance(ev, FileEvent) and ev.is_dir and ev.old_path == tree + b"/d"
    # 2nd: the cached d/sub must not resurface under its old name
    with act("open('e/sub/y', 'wb').close()", tree) as a:
        col.wait_for(is_file_event(tree + b"/e/sub/y", Op.CREATE, a.pid))
    later = [e for e in col.file_events() if e.seq > ev.seq]
    assert later and not [e for e in later if e.path.startswith(tree + b"/d/")]


def test_rename_directory_within_one_batch(running, tree: bytes) -> None:
    # mkdir, fill, rename and write again before the reader gets to any of it
    _, col = running([tree])
    code = "os.mkdir('p'); open('p/one','wb').close(); os.rename('p','q'); open('q/two','wb').close()"
    with act(code, tree) as a:
        col.wait_for(is_file_event(tree + b"/q/two", Op.CREATE, a.pid))
        ren = col.wait_for(is_file_event(tree + b"/q", Op.RENAME, a.pid))
    assert isinstance(ren, FileEvent) and ren.old_path == tree + b"/p"
    creates = {e.path for e in col.file_events() if Op.CREATE in e.ops}
    assert tree + b"/q/two" in creates
    assert creates & {tree + b"/p/one", tree + b"/q/one"}  # either name is right for a then-renamed file


def test_delete_file_and_directory(running, tree: bytes) -> None:
    os.mkdir(tree + b"/gone")
    with open(tree + b"/gone/f", "wb") as fh:
        fh.write(b"data")
    sensor, col = running([tree])
    with act("os.unlink('gone/f'); os.rmdir('gone')", tree) as a:
        col.wait_for(is_file_event(tree + b"/gone/f", Op.DELETE, a.pid))
        d = col.wait_for(is_file_event(tree + b"/gone", Op.DELETE, a.pid))
    assert isinstance(d, FileEvent) and d.is_dir
    assert sensor.overflows == 0


def test_short_lived_directory_still_resolves(running, tree: bytes) -> None:
    # the directory is gone before the reader sees the events inside it: its CREATE event
    # taught the sensor its path
    sensor, col = running([tree])
    code = "os.mkdir('tmp'); open('tmp/x','wb').write(b'1'); os.unlink('tmp/x'); os.rmdir('tmp')"
    with act(code, tree) as a:
        col.wait_for(is_file_event(tree + b"/tmp", Op.DELETE, a.pid))
        assert ops_seen(col, tree + b"/tmp/x", a.pid) & (Op.CREATE | Op.DELETE), col.events
    assert not [e for e in col.events if isinstance(e, Overflow)]


def test_attrib_chmod_chown_and_on_tree_root(running, tree: bytes) -> None:
    with open(tree + b"/m", "wb"):
        pass
    _, col = running([tree])
    with act("os.chmod('m', 0o600); os.chown('m', 1000, 1000); os.chmod('.', 0o775)", tree) as a:
        col.wait_for(is_file_event(tree + b"/m", Op.ATTRIB, a.pid))
        root = col.wait_for(is_file_event(tree, Op.ATTRIB, a.pid))
    assert isinstance(root, FileEvent) and root.is_dir


def test_read_open_and_close_nowrite(running, tree: bytes) -> None:
    with open(tree + b"/secret.pdf", "wb") as fh:
        fh.write(b"%PDF-1.7 secret")
    _, col = running([tree])
    with act("open('secret.pdf', 'rb').read()", tree) as a:
        wait_ops(col, tree + b"/secret.pdf", a.pid, Op.OPEN | Op.CLOSE_NOWRITE)


def test_reads_not_watched_when_disabled(running, tree: bytes) -> None:
    with open(tree + b"/r", "wb") as fh:
        fh.write(b"r")
    _, col = running([tree], watch_reads=False)
    with act("open('r', 'rb').read(); open('w', 'wb').close()", tree) as a:
        col.wait_for(is_file_event(tree + b"/w", Op.CREATE, a.pid))
    assert not [e for e in col.file_events() if e.ops & (Op.OPEN | Op.ACCESS | Op.CLOSE_NOWRITE) and e.path == tree + b"/r"]


# --- filtering -------------------------------------------------------------------------------


def test_events_outside_the_tree_are_not_delivered(running, tree: bytes) -> None:
    base = os.path.dirname(tree)
    os.mkdir(tree + b"2")  # shares the prefix "tree" but is not inside it
    os.mkdir(base + b"/other")
    _, col = running([tree])
    code = "open('../tree2/x','wb').close(); open('../other/y','wb').close(); open('../z','wb').close(); open('in','wb').close()"
    with act(code, tree) as a:
        col.wait_for(is_file_event(tree + b"/in", Op.CREATE, a.pid))
    stray = [e for e in col.file_events() if not (e.path == tree or e.path.startswith(tree + b"/"))]
    assert stray == []


def test_non_utf8_and_newline_names(running, tree: bytes) -> None:
    _, col = running([tree])
    names = [b"caf\xe9.txt", b"line\nbreak", b"\xff\xfe", "résumé".encode()]
    code = "for n in %r: open(n, 'wb').close()" % (names,)
    with act(code, tree) as a:
        for n in names:
            col.wait_for(is_file_event(tree + b"/" + n, Op.CREATE, a.pid))
    code = "os.mkdir(b'd\\xe9\\n'); open(b'd\\xe9\\n/f', 'wb').close()"
    with act(code, tree) as a:
        col.wait_for(is_file_event(tree + b"/d\xe9\n/f", Op.CREATE, a.pid))


def test_exclude_prefixes(running, tree: bytes) -> None:
    os.mkdir(tree + b"/cache")
    os.mkdir(tree + b"/cachetoo")
    _, col = running([tree], exclude_prefixes=[tree + b"/cache"])
    code = "open('cache/a','wb').close(); os.chmod('cache', 0o700); open('cachetoo/b','wb').close()"
    with act(code, tree) as a:
        col.wait_for(is_file_event(tree + b"/cachetoo/b", Op.CREATE, a.pid))
    paths = {e.path for e in col.file_events()}
    assert tree + b"/cache/a" not in paths and tree + b"/cache" not in paths


def test_ignore_pids(running, tree: bytes) -> None:
    _, col = running([tree], ignore_pids=(os.getpid(),))
    with open(tree + b"/mine", "wb"):
        pass
    with act("open('theirs','wb').close()", tree) as a:
        col.wait_for(is_file_event(tree + b"/theirs", Op.CREATE, a.pid))
    assert not [e for e in col.file_events() if e.path == tree + b"/mine"]

    _, col2 = running([tree], ignore_pids=())
    with open(tree + b"/mine2", "wb"):
        pass
    ev = col2.wait_for(is_file_event(tree + b"/mine2", Op.CREATE))
    assert isinstance(ev, FileEvent) and ev.subject is not None and ev.subject.pid == os.getpid()


def test_two_trees_on_one_filesystem_share_one_mark(running, tree: bytes) -> None:
    other = os.path.dirname(tree) + b"/second"
    os.mkdir(other)
    os.chmod(other, 0o777)
    sensor, col = running([tree, other, tree + b"/"])
    assert sensor.trees == (tree, other)
    assert len(set(sensor._mount_fds.values())) == 1
    with act("open('a','wb').close(); open('../second/b','wb').close()", tree) as a:
        col.wait_for(is_file_event(tree + b"/a", Op.CREATE, a.pid))
        col.wait_for(is_file_event(other + b"/b", Op.CREATE, a.pid))


# --- loss is never silent ----------------------------------------------------------------


class StalledSink(Collector):
    """Blocks in the reader thread on its first batch until released."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, batch: list[Event]) -> None:
        super().__call__(batch)
        self.entered.set()
        assert self.release.wait(120)


@pytest.mark.parametrize("how", ["rename", pytest.param("create", marks=pytest.mark.slow)])
def test_queue_overflow_becomes_an_overflow_event(tree: bytes, how: str) -> None:
    limit = int(open("/proc/sys/fs/fanotify/max_queued_events").read())
    sink = StalledSink()
    sensor = FanotifySensor([tree], sink, ignore_pids=(os.getpid(),), watch_reads=False)
    sensor.start()
    try:
        with act("open('trigger','wb').close()", tree):
            assert sink.entered.wait(10)  # the reader is now stuck in the sink
        # Creating n files: one merged CREATE|OPEN|CLOSE_WRITE event each, but slow on this VM's
        # ext4 (~0.2-0.5 ms per create, seconds in all). Renaming to ever new names is cheap and
        # also one event each (the kernel merges identical renames, a->b->a->b, but not these).
        n = limit + 4000
        if how == "create":
            code = f"os.mkdir('many')\nfor i in range({n}): os.close(os.open('many/%d' % i, os.O_CREAT | os.O_WRONLY))"
        else:
            code = f"os.mkdir('many'); open('many/0','wb').close()\nfor i in range({n}): os.rename('many/%d' % i, 'many/%d' % (i + 1))"
        with act(code, tree):
            pass
        sink.release.set()
        # other processes on the same filesystem may add Overflow(unresolved) of their own
        ov = sink.wait_for(lambda e: isinstance(e, Overflow) and e.reason == "queue_overflow", timeout=30)
        assert isinstance(ov, Overflow)
        assert ov.trees == (tree,)
        deadline = time.monotonic() + 10
        while sensor.overflows < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sensor.overflows >= 1
        op = Op.CREATE if how == "create" else Op.RENAME
        seen = [e for e in sink.file_events() if e.path.startswith(tree + b"/many/") and op in e.ops]
        # some delivered, the rest lost and announced. Not "a queue's worth": the mark covers the
        # whole filesystem, so other processes' events share the queue on a busy machine
        assert 0 < len(seen) < n
    finally:
        sink.release.set()
        sensor.stop()


def test_rm_r_of_an_unseen_tree_resolves_through_the_batch(tree: bytes) -> None:
    os.makedirs(tree + b"/old/deep")  # exists before the sensor: not in its directory cache
    sink = StalledSink()
    sensor = FanotifySensor([tree], sink, ignore_pids=(os.getpid(),), watch_reads=False)
    sensor.start()
    try:
        with act("open('trigger','wb').close()", tree):
            assert sink.entered.wait(10)
        code = "for i in range(5): open('old/deep/%d' % i, 'wb').write(b'x')\nimport shutil; shutil.rmtree('old')"
        with act(code, tree):
            pass
        sink.release.set()
        sink.wait_for(is_file_event(tree + b"/old", Op.DELETE))
        for i in range(5):
            sink.wait_for(is_file_event(tree + b"/old/deep/%d" % i, Op.CLOSE_WRITE))
            sink.wait_for(is_file_event(tree + b"/old/deep/%d" % i, Op.DELETE))
        sink.wait_for(is_file_event(tree + b"/old/deep", Op.DELETE))
        assert not [e for e in sink.events if isinstance(e, Overflow)]
        assert sensor.unresolved == 0
    finally:
        sink.release.set()
        sensor.stop()


def test_unresolvable_directory_becomes_one_unresolved_overflow(tree: bytes) -> None:
    os.makedirs(tree + b"/old/deep")  # exists before the sensor: not in its directory cache
    sink = StalledSink()
    # small reads: the directory's removal lands in a later batch than the writes inside it
    sensor = FanotifySensor([tree], sink, ignore_pids=(os.getpid(),), watch_reads=False, read_size=4096)
    sensor.start()
    try:
        with act("open('trigger','wb').close()", tree):
            assert sink.entered.wait(10)
        code = "for i in range(300): open('old/deep/%d' % i, 'wb').write(b'x')\nimport shutil; shutil.rmtree('old')"
        with act(code, tree):
            pass
        sink.release.set()
        ov = sink.wait_for(lambda e: isinstance(e, Overflow) and e.reason == "unresolved")
        assert isinstance(ov, Overflow) and ov.trees == (tree,)
        sink.wait_for(is_file_event(tree + b"/old", Op.DELETE))  # the parent of "old" still resolves
        unresolved = [e for e in sink.events if isinstance(e, Overflow) and e.reason == "unresolved"]
        assert len(unresolved) <= sink.batches  # coalesced: at most one per batch
        assert 1 <= len(unresolved) and sensor.unresolved >= len(unresolved)
    finally:
        sink.release.set()
        sensor.stop()


def test_tree_root_moved_is_announced(running, tree: bytes) -> None:
    sensor, col = running([tree])
    moved = tree + b"-moved"
    with act(f"os.rename({tree!r}, {moved!r})", tree) as a:
        col.wait_for(is_file_event(moved, Op.RENAME, a.pid))
        ov = col.wait_for(lambda e: isinstance(e, Overflow) and e.reason == "tree_moved")
    assert isinstance(ov, Overflow) and ov.trees == (tree,)
    os.rename(moved, tree)


# --- resources -----------------------------------------------------------------------------


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_stop_is_idempotent_and_closes_every_fd(tree: bytes) -> None:
    before = open_fds()
    col = Collector()
    with FanotifySensor([tree], col, ignore_pids=(os.getpid(),)) as sensor:
        assert sensor.running
        code = "for i in range(300): open('f%d' % i, 'wb').write(b'x')"
        with act(code, tree) as a:
            wait_ops(col, tree + b"/f299", a.pid, Op.CLOSE_WRITE)
    assert not sensor.running
    sensor.stop()
    sensor.stop()
    assert open_fds() == before  # group fd, wake pipe, mount fds and every pidfd closed
    with pytest.raises(RuntimeError):
        sensor.start()


def test_open_failure_leaves_no_fd(tmp_path) -> None:
    before = open_fds()
    sensor = FanotifySensor([str(tmp_path / "missing").encode()], Collector())
    with pytest.raises(FileNotFoundError):
        sensor.start()
    assert open_fds() == before


def test_sink_errors_do_not_kill_the_reader(running, tree: bytes) -> None:
    got: list[Event] = []
    calls = 0

    def flaky(batch: list[Event]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("consumer bug")
        got.extend(batch)

    sensor = FanotifySensor([tree], flaky, ignore_pids=(os.getpid(),))
    sensor.start()
    try:
        with act("open('one','wb').close()", tree):
            deadline = time.monotonic() + 10
            while calls < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
        with act("open('two','wb').close()", tree) as a:
            deadline = time.monotonic() + 10
            while not any(is_file_event(tree + b"/two", Op.CREATE, a.pid)(e) for e in got):
                assert time.monotonic() < deadline, got
                time.sleep(0.01)
        assert sensor.sink_errors == 1 and sensor.running
    finally:
        sensor.stop()


# --- subjects ----------------------------------------------------------------------------


def test_subject_cache_keys_on_the_pidfd_and_refreshes(tmp_path) -> None:
    from nocry.sensor import SubjectCache

    clock = [100.0]
    cache = SubjectCache(max_age_s=1.0, clock=lambda: clock[0])
    with act("pass", os.fsencode(tmp_path)) as a:
        pidfd = os.pidfd_open(a.pid)
        try:
            s1 = cache.lookup(pidfd, a.pid)
            assert (s1.pid, s1.exe, s1.uid, s1.ppid) == (a.pid, PYTHON_EXE, 0, os.getpid())
            assert cache.lookup(pidfd, a.pid) is s1 and cache.hits == 1
            clock[0] += 2  # older than max_age: read again from /proc
            assert cache.lookup(pidfd, a.pid) == s1 and cache.misses == 2
        finally:
            os.close(pidfd)
    # gone and reaped: without a pidfd the pid is looked up among recent sightings only
    assert cache.lookup(-1, a.pid) == s1
    clock[0] += 5
    assert cache.lookup(-1, a.pid) == type(s1)(pid=a.pid)
    assert cache.lookup(-2, 999_999) == type(s1)(pid=999_999)


def test_subject_of_a_reaped_process_with_a_stale_pidfd(tmp_path) -> None:
    from nocry.sensor import SubjectCache

    cache = SubjectCache()
    a = act("pass", os.fsencode(tmp_path))
    pidfd = os.pidfd_open(a.pid)
    try:
        a.release()  # exits and is reaped: /proc/PID is gone (or, later, someone else's)
        s = cache.lookup(pidfd, a.pid)
        assert s.pid == a.pid and s.exe == b"" and s.start_time == 0
        assert cache.gone == 1
    finally:
        os.close(pidfd)


def test_barrier_returns_only_after_every_earlier_event_was_delivered(tmp_path):
    require_root()
    tree = tmp_path / "t"
    tree.mkdir()
    got: list = []
    sensor = FanotifySensor([bytes(tree)], got.extend, watch_reads=False, ignore_pids=())
    sensor.start()
    try:
        subprocess.run([sys.executable, "-c", f"import os\nfor i in range(2000):\n    open(os.path.join({str(tree)!r}, 'f%d' % i), 'wb').close()"], check=True)
        assert sensor.barrier(30)
        created = {e.path for e in got if isinstance(e, FileEvent) and e.ops & Op.CREATE}
        assert len(created) == 2000
    finally:
        sensor.stop()
    assert not sensor.barrier(0.1)  # not running: no promise


@pytest.mark.parametrize("coalesce_s", [0.0, 0.3])
def test_a_burst_is_read_in_one_go_when_the_reader_coalesces(running, tree: bytes, coalesce_s: float) -> None:
    # 40 files written 5 ms apart (~0.2 s): a reader that reads at once wakes for nearly every
    # one of them; one that lets a burst gather for 0.3 s reads them in a batch or two, and
    # still reads the first no later than the coalescing time (plus scheduling slack) after it
    # was written (FileEvent.time_ns is the read time; the file's mtime, the write time)
    sensor, col = running([tree], coalesce_s=coalesce_s)
    code = "import time\nfor i in range(40):\n    open(f'f{i}', 'w').close(); time.sleep(0.005)\n"
    with act(code, tree) as a:
        first = col.wait_for(is_file_event(tree + b"/f0", Op.CLOSE_WRITE, a.pid))
        wait_ops(col, tree + b"/f39", a.pid, Op.CLOSE_WRITE)
    if coalesce_s:
        assert col.batches <= 3, col.batches
    else:
        assert col.batches >= 10, col.batches
    waited_s = (first.time_ns - os.stat(tree + b"/f0").st_mtime_ns) / 1e9
    assert waited_s < coalesce_s + 0.25, waited_s


# In a fresh interpreter with a second thread (the daemon has several): the fd table's size
# before and after the sensor opens, and after a burst that comes in one read. /proc's FDSize is
# the number of slots the kernel's fd table has now (it grows in powers of two, never shrinks).
_FD_TABLE_PROBE = r"""
import os, sys, threading, time
from nocry.events import FileEvent
from nocry.sensor import FanotifySensor

def fdsize():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("FDSize:"))

threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
tree = sys.argv[1].encode()
got = []
before = fdsize()
sensor = FanotifySensor([tree], got.extend, coalesce_s=0.5, ignore_pids=(os.getpid(),))
sensor.start()
opened = fdsize()
n = int(sys.argv[2])
code = f"for i in range({n}):\n    open(f'f{{i}}', 'w').close()\n"
import subprocess
subprocess.run([sys.executable, "-c", code], cwd=tree, check=True)
deadline = time.monotonic() + 20
while sum(isinstance(e, FileEvent) for e in got) < n and time.monotonic() < deadline:
    time.sleep(0.05)
print(before, opened, fdsize(), sensor._pidfds_per_read(), sum(isinstance(e, FileEvent) for e in got), sensor.read_batches)
sensor.stop()
"""


def test_the_fd_table_is_grown_once_when_the_group_opens_not_during_a_burst(tree: bytes) -> None:
    # Each read installs one pidfd per event. Were the fd table still small when the first burst
    # of an attack arrives, the kernel would grow it several times inside that read, and in a
    # multithreaded process every growth waits for an RCU grace period (8-23 ms each on a VM):
    # 30-45 ms lost before the first evidence, in one attack run in three (docs/benchmarks.md).
    n = 1500
    out = subprocess.run([sys.executable, "-c", _FD_TABLE_PROBE, tree.decode(), str(n)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    before, opened, after, per_read, seen, reads = map(int, out.stdout.split())
    assert seen >= n, out.stdout
    assert before < 1024, f"the probe's fd table started at {before} slots: it cannot show a growth"
    assert opened >= per_read, f"fd table {before} -> {opened} slots at open; a full read can install {per_read} pidfds"
    assert after == opened, f"a burst of {n} files ({reads} reads) grew the fd table from {opened} to {after} slots"
