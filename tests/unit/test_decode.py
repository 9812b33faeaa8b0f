"""The fanotify decoder against kernel structs packed by hand (layouts from <linux/fanotify.h>)."""

from __future__ import annotations

import errno
import os
import struct

import pytest

from nocry.events import Op, Overflow
from nocry.sensor import _syscalls as sc
from nocry.sensor._syscalls import Syscalls
from nocry.sensor.decode import DecodeError, RawEvent, RawInfo, decode, pidfds_in
from nocry.sensor.fanotify import FanotifySensor, ops_from_mask

FSID = b"\xb2\xbf\x9aq\x90R\xe1\xe1"
DIR_FH = bytes.fromhex("d5e52000b44b4c7a")  # ext4 FILEID_INO32_GEN: inode, generation
FILE_FH = bytes.fromhex("d7e52000d490c8e1")


def handle(fh: bytes, handle_type: int = 1) -> bytes:
    """struct file_handle: handle_bytes, handle_type, f_handle[]"""
    return struct.pack("=Ii", len(fh), handle_type) + fh


def fid_info(info_type: int, fh: bytes, name: bytes | None = None, fsid: bytes = FSID, pad_to: int = 4) -> bytes:
    body = fsid + handle(fh)
    if name is not None:
        body += name + b"\0"
    body += b"\0" * (-(4 + len(body)) % pad_to)  # the kernel pads records to 4 bytes
    return struct.pack("=BBH", info_type, 0, 4 + len(body)) + body


def pidfd_info(pidfd: int) -> bytes:
    return struct.pack("=BBHi", sc.FAN_EVENT_INFO_TYPE_PIDFD, 0, 8, pidfd)


def error_info(error: int, count: int) -> bytes:
    return struct.pack("=BBHiI", sc.FAN_EVENT_INFO_TYPE_ERROR, 0, 12, error, count)


def event(mask: int, pid: int, *infos: bytes, fd: int = sc.FAN_NOFD, vers: int = 3) -> bytes:
    body = b"".join(infos)
    return struct.pack("=IBBHQii", 24 + len(body), vers, 0, 24, mask, fd, pid) + body


def test_metadata_struct_is_24_bytes() -> None:
    assert len(event(0, 0)) == 24


def test_create_with_name_target_and_pidfd() -> None:
    buf = event(
        sc.FAN_CREATE,
        1234,
        fid_info(sc.FAN_EVENT_INFO_TYPE_DFID_NAME, DIR_FH, b"report.docx"),
        fid_info(sc.FAN_EVENT_INFO_TYPE_FID, FILE_FH),
        pidfd_info(17),
    )
    [ev] = decode(buf)
    assert ev == RawEvent(
        mask=sc.FAN_CREATE,
        pid=1234,
        fd=sc.FAN_NOFD,
        pidfd=17,
        infos=(
            RawInfo(sc.FAN_EVENT_INFO_TYPE_DFID_NAME, FSID, handle(DIR_FH), b"report.docx"),
            RawInfo(sc.FAN_EVENT_INFO_TYPE_FID, FSID, handle(FILE_FH), b""),
        ),
    )


def test_merged_mask_is_kept_whole_and_mapped_to_ops() -> None:
    mask = sc.FAN_CREATE | sc.FAN_OPEN | sc.FAN_MODIFY | sc.FAN_CLOSE_WRITE
    [ev] = decode(event(mask, 5, fid_info(sc.FAN_EVENT_INFO_TYPE_DFID_NAME, DIR_FH, b"f")))
    assert ev.mask == mask
    assert ops_from_mask(ev.mask) == Op.CREATE | Op.OPEN | Op.MODIFY | Op.CLOSE_WRITE


def test_ops_from_mask_covers_every_op_and_ignores_ondir() -> None:
    assert ops_from_mask(sc.FAN_ACCESS | sc.FAN_CLOSE_NOWRITE | sc.FAN_ONDIR) == Op.ACCESS | Op.CLOSE_NOWRITE
    assert ops_from_mask(sc.FAN_DELETE | sc.FAN_DELETE_SELF | sc.FAN_ATTRIB) == Op.DELETE | Op.DELETE_SELF | Op.ATTRIB
    assert ops_from_mask(sc.FAN_RENAME) == Op.RENAME
    assert ops_from_mask(sc.FAN_Q_OVERFLOW) == Op(0)


def test_rename_carries_old_and_new_dir_and_name() -> None:
    other_dir = bytes.fromhex("aaaa2000bbbbbbbb")
    buf = event(
        sc.FAN_RENAME | sc.FAN_ONDIR,
        42,
        fid_info(sc.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME, DIR_FH, b"d"),
        fid_info(sc.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME, other_dir, b"e"),
        fid_info(sc.FAN_EVENT_INFO_TYPE_FID, FILE_FH),
        pidfd_info(9),
    )
    [ev] = decode(buf)
    assert ev.mask & sc.FAN_ONDIR
    old, new, target = ev.infos
    assert (old.type, old.handle, old.name) == (sc.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME, handle(DIR_FH), b"d")
    assert (new.type, new.handle, new.name) == (sc.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME, handle(other_dir), b"e")
    assert target.type == sc.FAN_EVENT_INFO_TYPE_FID and target.name == b""
    assert ev.pidfd == 9


def test_overflow_event_has_no_info_records() -> None:
    [ev] = decode(event(sc.FAN_Q_OVERFLOW, 0))
    assert ev.mask == sc.FAN_Q_OVERFLOW
    assert ev.infos == ()
    assert ev.pidfd == sc.FAN_NOPIDFD


def test_unknown_info_types_are_skipped_by_length() -> None:
    unknown = struct.pack("=BBH", 99, 0, 16) + b"\x01" * 12  # a record type from a future kernel
    range_info = struct.pack("=BBHIQQ", sc.FAN_EVENT_INFO_TYPE_RANGE, 0, 24, 0, 0, 4096)
    buf = event(
        sc.FAN_MODIFY,
        7,
        unknown,
        fid_info(sc.FAN_EVENT_INFO_TYPE_DFID_NAME, DIR_FH, b"x"),
        range_info,
        pidfd_info(11),
    ) + event(sc.FAN_ATTRIB, 8, fid_info(sc.FAN_EVENT_INFO_TYPE_DFID_NAME, DIR_FH, b"y"))
    first, second = decode(buf)
    assert [i.name for i in first.infos] == [b"x"]
    assert first.pidfd == 11
    assert (second.pid, second.infos[0].name) == (8, b"y")


@pytest.mark.parametrize("pidfd", [sc.FAN_NOPIDFD, sc.FAN_EPIDFD, 0, 4095])
def test_pidfd_info_values_pass_through(pidfd: int) -> None:
    [ev] = decode(event(sc.FAN_OPEN, 3, fid_info(sc.FAN_EVENT_INFO_TYPE_DFID_NAME, DIR_FH, b"f"), pidfd_info(pidfd)))
    assert ev.pidfd == pidfd


def test_no_pidfd_record_means_nopidfd() -> None:
    [ev] = decode(event(sc.FAN_OPEN, 3, fid_info(sc.FAN_EVENT_INFO_TYPE_DFID_NAME, DIR_FH, b"f")))
    assert ev.pidfd == sc.FAN_NOPIDFD


def test_error_record() -> None:
    [ev] = decode(event(sc.FAN_FS_ERROR, 0, error_info(-5, 3), fid_info(sc.FAN_EVENT_INFO_TYPE_FID, FILE_FH)))
    assert (ev.error, ev.error_count) == (-5, 3)
    assert ev.infos[0].type == sc.FAN_EVENT_INFO_TYPE_FID


def test_dfid_record_without_name_and_self_event_dot() -> None:
    buf = event(sc.FAN_ATTRIB | sc.FAN_ONDIR, 1, fid_info(sc.FAN_EVENT_INFO_TYPE_DFID, DIR_FH)) + event(
        sc.FAN_ATTRIB | sc.FAN_ONDIR, 1, fid_info(sc.FAN_EVENT_INFO_TYPE_DFID_NAME, DIR_FH, b".")
    )
    a, b = decode(buf)
    assert a.infos[0].name == b""
    assert b.infos[0].name == b"."


@pytest.mark.parametrize(
    "name",
    [b"a", b"abc", b"abcd", b"caf\xe9.txt", b"line\nbreak", b"x" * 255, "résumé.pdf".encode()],
)
def test_names_of_every_length_and_byte(name: bytes) -> None:
    # padding varies with the name length: the name ends at the first NUL, not the record end
    for pad_to in (4, 8):
        [ev] = decode(event(sc.FAN_DELETE, 1, fid_info(sc.FAN_EVENT_INFO_TYPE_DFID_NAME, DIR_FH, name, pad_to=pad_to)))
        assert ev.infos[0].name == name


def test_handles_of_other_sizes_and_types() -> None:
    fh = bytes(range(20))  # e.g. a btrfs or xfs handle
    [ev] = decode(event(sc.FAN_CREATE, 1, fid_info(sc.FAN_EVENT_INFO_TYPE_DFID_NAME, fh, b"n")))
    info = ev.infos[0]
    assert info.handle == handle(fh)
    assert struct.unpack_from("=Ii", info.handle) == (20, 1)


def test_many_events_length_argument_and_buffer_types() -> None:
    one = event(sc.FAN_CLOSE_WRITE, 9, fid_info(sc.FAN_EVENT_INFO_TYPE_DFID_NAME, DIR_FH, b"f"), pidfd_info(3))
    buf = one * 100
    assert len(decode(buf)) == 100
    assert len(decode(buf + b"garbage", len(buf))) == 100
    evs = decode(bytearray(buf))
    assert len(evs) == 100 and isinstance(evs[0].infos[0].handle, bytes)
    assert decode(memoryview(buf))[5] == evs[5]
    assert decode(b"") == []


@pytest.mark.parametrize(
    "buf",
    [
        event(sc.FAN_CREATE, 1)[:20],  # truncated metadata
        event(sc.FAN_CREATE, 1, vers=2),  # other metadata version
        struct.pack("=IBBHQii", 100, 3, 0, 24, sc.FAN_CREATE, -1, 1),  # event_len past the end
        struct.pack("=IBBHQii", 20, 3, 0, 24, sc.FAN_CREATE, -1, 1),  # event_len < metadata_len
        event(sc.FAN_CREATE, 1, struct.pack("=BBH", 2, 0, 40) + b"\0" * 8),  # info len past the event
        event(sc.FAN_CREATE, 1, struct.pack("=BBH", 2, 0, 0)),  # zero info len would loop forever
        event(sc.FAN_CREATE, 1, struct.pack("=BBH", 2, 0, 8) + b"\0" * 4),  # fid record too short
        event(sc.FAN_CREATE, 1, struct.pack("=BBH8sIi", 2, 0, 20, FSID, 64, 1)),  # handle past the record
        event(sc.FAN_CREATE, 1, struct.pack("=BBH", 4, 0, 4)),  # pidfd record too short
    ],
)
def test_malformed_buffers_raise(buf: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(buf)


def test_pidfds_in_finds_fds_even_when_decode_fails() -> None:
    good = event(sc.FAN_OPEN, 1, fid_info(sc.FAN_EVENT_INFO_TYPE_DFID_NAME, DIR_FH, b"f"), pidfd_info(21))
    nopidfd = event(sc.FAN_OPEN, 1, pidfd_info(sc.FAN_EPIDFD))
    bad = event(sc.FAN_OPEN, 1, pidfd_info(22), vers=2)
    with pytest.raises(DecodeError):
        decode(good + nopidfd + bad)
    assert pidfds_in(good + nopidfd + bad) == [21, 22]
    assert pidfds_in(b"\xff" * 10) == []


# --- from raw records to events: FanotifySensor.convert with a fake Syscalls (no root) ------


class FakeSyscalls(Syscalls):
    """Kernel stand-in: the group is /dev/null, marks are no-ops, and a handle opens the real
    directory it is mapped to (so /proc/self/fd readlink works as with the kernel)."""

    def __init__(self) -> None:
        super().__init__()
        self.dirs: dict[bytes, bytes] = {}
        self.opens = 0

    def fanotify_init(self, flags: int, event_f_flags: int) -> int:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def fanotify_mark(self, group_fd: int, flags: int, mask: int, dirfd: int, path: bytes | None) -> None:
        pass

    def name_to_handle_at(self, dirfd: int, path: bytes, flags: int = 0) -> tuple[bytes, int]:
        raise OSError(errno.EOPNOTSUPP, "not in the fake")

    def open_by_handle_at(self, mount_fd: int, handle: bytes, flags: int) -> int:
        self.opens += 1
        path = self.dirs.get(handle)
        if path is None:
            raise OSError(errno.ESTALE, os.strerror(errno.ESTALE))
        return os.open(path, os.O_PATH | os.O_CLOEXEC)


@pytest.fixture
def fake(tmp_path):
    tree = os.path.realpath(tmp_path / "tree").encode()
    outside = os.path.realpath(tmp_path / "outside").encode()
    for d in (tree, tree + b"/a", outside):
        os.mkdir(d)
    syscalls = FakeSyscalls()
    syscalls.dirs = {handle(b"TREE"): tree, handle(b"A"): tree + b"/a", handle(b"OUT"): outside}
    sensor = FanotifySensor([tree], lambda batch: None, ignore_pids=(99,), syscalls=syscalls)
    sensor.open()
    fsid = syscalls.fstatfs(sensor._mount_fds[next(iter(sensor._mount_fds))]).fsid
    yield sensor, syscalls, tree, outside, fsid
    sensor.stop()


def raw(mask: int, *infos: RawInfo, pid: int = 1000) -> RawEvent:
    return RawEvent(mask, pid, sc.FAN_NOFD, sc.FAN_NOPIDFD, tuple(infos))


def named(fsid: bytes, dir_fh: bytes, name: bytes, info_type: int = sc.FAN_EVENT_INFO_TYPE_DFID_NAME) -> RawInfo:
    return RawInfo(info_type, fsid, handle(dir_fh), name)


def target(fsid: bytes, fh: bytes) -> RawInfo:
    return RawInfo(sc.FAN_EVENT_INFO_TYPE_FID, fsid, handle(fh), b"")


def convert(sensor: FanotifySensor, *raws: RawEvent) -> list:
    return sensor.convert(list(raws), T_NS, 0.0)


T_NS = 1_700_000_000_000_000_000


def test_convert_builds_file_events_and_filters(fake) -> None:
    sensor, _sc, tree, outside, fsid = fake
    out = convert(
        sensor,
        raw(sc.FAN_CREATE | sc.FAN_MODIFY, named(fsid, b"A", b"f\xff"), target(fsid, b"F")),
        raw(sc.FAN_CREATE, named(fsid, b"OUT", b"g")),  # outside the tree
        raw(sc.FAN_CREATE, named(fsid, b"A", b"mine"), pid=99),  # ignored pid
        raw(sc.FAN_ATTRIB | sc.FAN_ONDIR, named(fsid, b"TREE", b".")),  # the tree root itself
    )
    assert [(e.ops, e.path, e.is_dir) for e in out] == [
        (Op.CREATE | Op.MODIFY, tree + b"/a/f\xff", False),
        (Op.ATTRIB, tree, True),
    ]
    assert [e.seq for e in out] == [1, 2] and all(e.time_ns == T_NS for e in out)
    assert out[0].subject.pid == 1000  # no pidfd: the bare pid
    assert sensor.events_total == 4


def test_convert_queue_overflow(fake) -> None:
    sensor, _sc, tree, _outside, _fsid = fake
    [ov] = convert(sensor, RawEvent(sc.FAN_Q_OVERFLOW, 0, sc.FAN_NOFD, sc.FAN_NOPIDFD, ()))
    assert isinstance(ov, Overflow) and ov.reason == "queue_overflow" and ov.trees == (tree,)
    assert sensor.overflows == 1


def test_convert_rename_and_directory_cache_invalidation(fake) -> None:
    sensor, syscalls, tree, outside, fsid = fake
    convert(sensor, raw(sc.FAN_MODIFY, named(fsid, b"A", b"x")), raw(sc.FAN_MODIFY, named(fsid, b"OUT", b"y")))
    opens = syscalls.opens
    # a directory renamed outside every tree keeps the cache
    convert(
        sensor,
        raw(
            sc.FAN_RENAME | sc.FAN_ONDIR,
            named(fsid, b"OUT", b"o1", sc.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME),
            named(fsid, b"OUT", b"o2", sc.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME),
            target(fsid, b"O1"),
        ),
    )
    convert(sensor, raw(sc.FAN_MODIFY, named(fsid, b"A", b"x")))
    assert syscalls.opens == opens
    # a directory renamed inside the tree flushes it; the renamed one is known at its new path
    [ren] = convert(
        sensor,
        raw(
            sc.FAN_RENAME | sc.FAN_ONDIR,
            named(fsid, b"TREE", b"a", sc.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME),
            named(fsid, b"TREE", b"b", sc.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME),
            target(fsid, b"A"),
        ),
    )
    assert (ren.ops, ren.old_path, ren.path, ren.is_dir) == (Op.RENAME, tree + b"/a", tree + b"/b", True)
    opens = syscalls.opens
    [ev] = convert(sensor, raw(sc.FAN_MODIFY, named(fsid, b"A", b"x")))
    assert ev.path == tree + b"/b/x" and syscalls.opens == opens
    # moved out of the tree: still reported (it left the tree), with both paths
    [out] = convert(
        sensor,
        raw(
            sc.FAN_RENAME,
            named(fsid, b"TREE", b"doc", sc.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME),
            named(fsid, b"OUT", b"doc", sc.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME),
        ),
    )
    assert (out.old_path, out.path) == (tree + b"/doc", outside + b"/doc")


def test_convert_unresolved_is_one_overflow_per_batch_and_only_for_changes(fake) -> None:
    sensor, _sc, tree, _outside, fsid = fake
    out = convert(
        sensor,
        raw(sc.FAN_MODIFY, named(fsid, b"GONE", b"a")),
        raw(sc.FAN_DELETE, named(fsid, b"GONE2", b"b")),
        raw(sc.FAN_OPEN, named(fsid, b"GONE3", b"c")),
    )
    assert [(type(e), getattr(e, "reason", None)) for e in out] == [(Overflow, "unresolved")]
    assert out[0].trees == (tree,)
    assert sensor.unresolved == 3
    assert convert(sensor, raw(sc.FAN_OPEN, named(fsid, b"GONE3", b"c"))) == []


def test_convert_finds_a_gone_directory_later_in_the_batch(fake) -> None:
    sensor, _sc, tree, _outside, fsid = fake
    out = convert(
        sensor,
        raw(sc.FAN_DELETE, named(fsid, b"GONE", b"f")),
        raw(sc.FAN_DELETE_SELF | sc.FAN_ATTRIB, target(fsid, b"F")),  # a file's own event: skipped
        raw(sc.FAN_DELETE | sc.FAN_ONDIR, named(fsid, b"A", b"gone"), target(fsid, b"GONE")),
    )
    assert [(e.ops, e.path) for e in out] == [(Op.DELETE, tree + b"/a/gone/f"), (Op.DELETE, tree + b"/a/gone")]
    assert sensor.unresolved == 0 and sensor.stale_self == 1


def test_convert_remembers_directories_created_in_the_batch(fake) -> None:
    sensor, _sc, tree, _outside, fsid = fake
    out = convert(
        sensor,
        raw(sc.FAN_CREATE | sc.FAN_DELETE | sc.FAN_ONDIR, named(fsid, b"A", b"tmp"), target(fsid, b"TMP")),
        raw(sc.FAN_CREATE | sc.FAN_DELETE, named(fsid, b"TMP", b"x")),
    )
    assert [(e.ops, e.path) for e in out] == [
        (Op.CREATE | Op.DELETE, tree + b"/a/tmp"),
        (Op.CREATE | Op.DELETE, tree + b"/a/tmp/x"),
    ]


def test_convert_announces_a_moved_tree(fake) -> None:
    sensor, _sc, tree, _outside, fsid = fake
    parent = os.path.dirname(tree)
    sensor._sc.dirs[handle(b"PARENT")] = parent
    out = convert(
        sensor,
        raw(
            sc.FAN_RENAME | sc.FAN_ONDIR,
            named(fsid, b"PARENT", b"tree", sc.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME),
            named(fsid, b"PARENT", b"elsewhere", sc.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME),
            target(fsid, b"TREE"),
        ),
    )
    kinds = [(type(e).__name__, getattr(e, "reason", None)) for e in out]
    assert ("Overflow", "tree_moved") in kinds and ("FileEvent", None) in kinds
