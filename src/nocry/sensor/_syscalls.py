"""Thin ctypes binding to the few Linux calls the sensor needs that :mod:`os` lacks.

Nothing here interprets events or keeps state beyond the loaded libc: the sensor receives a
:class:`Syscalls` instance, so a test can hand it a fake instead of patching module names::

    sc = Syscalls()
    gfd = sc.fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_DFID_NAME_TARGET, os.O_RDONLY)
    sc.fanotify_mark(gfd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_CREATE, AT_FDCWD, b"/srv")
    fd = sc.open_by_handle_at(mount_fd, handle_bytes_from_event, os.O_PATH)

Every failure raises :class:`OSError` carrying the C ``errno`` (and the path when there is one).
Constants mirror ``<linux/fanotify.h>``; the kernel ABI is stable, so they are spelled out here
rather than read from headers at run time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import NamedTuple

__all__ = [
    "Syscalls",
    "StatFs",
    "AT_FDCWD",
    "AT_EMPTY_PATH",
    "AT_HANDLE_FID",
    "PIDFS_MAGIC",
    "FANOTIFY_METADATA_VERSION",
    "FAN_NOFD",
    "FAN_NOPIDFD",
    "FAN_EPIDFD",
]

# --- event mask bits -------------------------------------------------------------------------
FAN_ACCESS = 0x00000001
FAN_MODIFY = 0x00000002
FAN_ATTRIB = 0x00000004
FAN_CLOSE_WRITE = 0x00000008
FAN_CLOSE_NOWRITE = 0x00000010
FAN_OPEN = 0x00000020
FAN_MOVED_FROM = 0x00000040
FAN_MOVED_TO = 0x00000080
FAN_CREATE = 0x00000100
FAN_DELETE = 0x00000200
FAN_DELETE_SELF = 0x00000400
FAN_MOVE_SELF = 0x00000800
FAN_OPEN_EXEC = 0x00001000
FAN_Q_OVERFLOW = 0x00004000
FAN_FS_ERROR = 0x00008000
FAN_OPEN_PERM = 0x00010000
FAN_ACCESS_PERM = 0x00020000
FAN_OPEN_EXEC_PERM = 0x00040000
FAN_EVENT_ON_CHILD = 0x08000000
FAN_RENAME = 0x10000000
FAN_ONDIR = 0x40000000

# --- fanotify_init flags ---------------------------------------------------------------------
FAN_CLOEXEC = 0x00000001
FAN_NONBLOCK = 0x00000002
FAN_CLASS_NOTIF = 0x00000000
FAN_CLASS_CONTENT = 0x00000004
FAN_CLASS_PRE_CONTENT = 0x00000008
FAN_UNLIMITED_QUEUE = 0x00000010
FAN_UNLIMITED_MARKS = 0x00000020
FAN_ENABLE_AUDIT = 0x00000040
FAN_REPORT_PIDFD = 0x00000080
FAN_REPORT_TID = 0x00000100
FAN_REPORT_FID = 0x00000200
FAN_REPORT_DIR_FID = 0x00000400
FAN_REPORT_NAME = 0x00000800
FAN_REPORT_TARGET_FID = 0x00001000
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME
FAN_REPORT_DFID_NAME_TARGET = FAN_REPORT_DFID_NAME | FAN_REPORT_FID | FAN_REPORT_TARGET_FID

# --- fanotify_mark flags ---------------------------------------------------------------------
FAN_MARK_ADD = 0x00000001
FAN_MARK_REMOVE = 0x00000002
FAN_MARK_DONT_FOLLOW = 0x00000004
FAN_MARK_ONLYDIR = 0x00000008
FAN_MARK_FLUSH = 0x00000080
FAN_MARK_INODE = 0x00000000
FAN_MARK_MOUNT = 0x00000010
FAN_MARK_FILESYSTEM = 0x00000100

# --- event records ---------------------------------------------------------------------------
FANOTIFY_METADATA_VERSION = 3
FAN_EVENT_INFO_TYPE_FID = 1
FAN_EVENT_INFO_TYPE_DFID_NAME = 2
FAN_EVENT_INFO_TYPE_DFID = 3
FAN_EVENT_INFO_TYPE_PIDFD = 4
FAN_EVENT_INFO_TYPE_ERROR = 5
FAN_EVENT_INFO_TYPE_RANGE = 6
FAN_EVENT_INFO_TYPE_MNT = 7
FAN_EVENT_INFO_TYPE_OLD_DFID_NAME = 10
FAN_EVENT_INFO_TYPE_NEW_DFID_NAME = 12

FAN_NOFD = -1
FAN_NOPIDFD = FAN_NOFD
#: the kernel could not make a pidfd (typically: the process had already exited)
FAN_EPIDFD = -2

# --- misc ------------------------------------------------------------------------------------
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
#: name_to_handle_at: a handle only for identification (cannot be opened); 6.5+
AT_HANDLE_FID = 0x200
MAX_HANDLE_SZ = 128
#: statfs f_type of the pidfs filesystem (kernel >= 6.9: pidfd inode numbers are unique)
PIDFS_MAGIC = 0x50494446


class _KernelFsid(ctypes.Structure):
    _fields_ = [("val", ctypes.c_int * 2)]


class _StatFsStruct(ctypes.Structure):
    # struct statfs from <bits/statfs.h> (64-bit file offsets); the kernel and glibc share the layout
    # on the 64-bit architectures nocry targets. __fsword_t is a long.
    _fields_ = [
        ("f_type", ctypes.c_long),
        ("f_bsize", ctypes.c_long),
        ("f_blocks", ctypes.c_uint64),
        ("f_bfree", ctypes.c_uint64),
        ("f_bavail", ctypes.c_uint64),
        ("f_files", ctypes.c_uint64),
        ("f_ffree", ctypes.c_uint64),
        ("f_fsid", _KernelFsid),
        ("f_namelen", ctypes.c_long),
        ("f_frsize", ctypes.c_long),
        ("f_flags", ctypes.c_long),
        ("f_spare", ctypes.c_long * 4),
    ]


class StatFs(NamedTuple):
    """What the sensor needs from fstatfs(2): the filesystem type and its id.

    ``fsid`` is the 8 raw bytes of ``f_fsid``, in the same layout as the ``fsid`` field of a
    fanotify fid record, so the two compare equal byte for byte."""

    f_type: int
    fsid: bytes


class Syscalls:
    """The kernel calls the sensor makes through libc. One instance per sensor (cheap)."""

    def __init__(self, libc_path: str | None = None) -> None:
        libc = ctypes.CDLL(libc_path or ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

        self._fanotify_init = libc.fanotify_init
        self._fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
        self._fanotify_init.restype = ctypes.c_int

        self._fanotify_mark = libc.fanotify_mark
        self._fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
        self._fanotify_mark.restype = ctypes.c_int

        # The handle is passed as c_char_p: a bytes object's buffer is handed over without a copy,
        # and the kernel only reads it. That keeps the hot resolve path to one ctypes call.
        self._open_by_handle_at = libc.open_by_handle_at
        self._open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self._open_by_handle_at.restype = ctypes.c_int

        self._name_to_handle_at = libc.name_to_handle_at
        self._name_to_handle_at.argtypes = [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_int,
        ]
        self._name_to_handle_at.restype = ctypes.c_int

        self._fstatfs = libc.fstatfs
        self._fstatfs.argtypes = [ctypes.c_int, ctypes.POINTER(_StatFsStruct)]
        self._fstatfs.restype = ctypes.c_int

    @staticmethod
    def _raise(filename: bytes | str | None = None) -> None:
        err = ctypes.get_errno()
        if filename is None:
            raise OSError(err, os.strerror(err))
        raise OSError(err, os.strerror(err), filename)

    def fanotify_init(self, flags: int, event_f_flags: int) -> int:
        """Create a notification group; returns its fd."""
        fd = self._fanotify_init(flags, event_f_flags)
        if fd < 0:
            self._raise()
        return fd

    def fanotify_mark(self, group_fd: int, flags: int, mask: int, dirfd: int, path: bytes | None) -> None:
        if self._fanotify_mark(group_fd, flags, mask, dirfd, path) < 0:
            self._raise(path)

    def open_by_handle_at(self, mount_fd: int, handle: bytes, flags: int) -> int:
        """``handle`` is a whole ``struct file_handle`` (handle_bytes, handle_type, f_handle), exactly
        as a fanotify fid record carries it. Needs CAP_DAC_READ_SEARCH."""
        fd = self._open_by_handle_at(mount_fd, handle, flags)
        if fd < 0:
            self._raise()
        return fd

    def name_to_handle_at(self, dirfd: int, path: bytes, flags: int = 0) -> tuple[bytes, int]:
        """Returns (``struct file_handle`` bytes, mount id)."""
        buf = ctypes.create_string_buffer(8 + MAX_HANDLE_SZ)
        ctypes.c_uint.from_buffer(buf).value = MAX_HANDLE_SZ
        mount_id = ctypes.c_int(0)
        if self._name_to_handle_at(dirfd, path, buf, ctypes.byref(mount_id), flags) < 0:
            self._raise(path)
        nbytes = ctypes.c_uint.from_buffer(buf).value
        return buf.raw[: 8 + nbytes], mount_id.value

    def fstatfs(self, fd: int) -> StatFs:
        st = _StatFsStruct()
        if self._fstatfs(fd, ctypes.byref(st)) < 0:
            self._raise()
        return StatFs(f_type=st.f_type & 0xFFFFFFFF, fsid=bytes(st.f_fsid))
