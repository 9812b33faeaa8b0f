"""Pure decoder: the bytes of one fanotify ``read()`` -> a list of raw records.

No syscalls, no fds opened or closed, no paths resolved: the caller owns every fd the records name
(the event ``fd`` and the ``pidfd``) and must close them, even when this function raises.

A read buffer is a run of events; each is a fixed metadata header followed by variable info
records, each of which starts with a (type, pad, len) header::

    for each event in buf:                     # event_len bytes
        metadata  (event_len, vers, _, metadata_len, mask, fd, pid)
        info*     (type, _, len) + body         # walk by len; unknown types are skipped
            FID / DFID / DFID_NAME / OLD_DFID_NAME / NEW_DFID_NAME:
                  fsid[8] + struct file_handle (+ NUL-terminated name for *_NAME)
            PIDFD: s32 pidfd          ERROR: s32 error, u32 error_count

Speed matters (the sensor drains 100k+ events/s through here), hence the precompiled
:class:`struct.Struct` objects, ``unpack_from`` with offsets and plain tuples.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from nocry.sensor._syscalls import (
    FAN_EVENT_INFO_TYPE_DFID,
    FAN_EVENT_INFO_TYPE_DFID_NAME,
    FAN_EVENT_INFO_TYPE_ERROR,
    FAN_EVENT_INFO_TYPE_FID,
    FAN_EVENT_INFO_TYPE_NEW_DFID_NAME,
    FAN_EVENT_INFO_TYPE_OLD_DFID_NAME,
    FAN_EVENT_INFO_TYPE_PIDFD,
    FAN_NOPIDFD,
    FANOTIFY_METADATA_VERSION,
)

__all__ = ["RawInfo", "RawEvent", "DecodeError", "decode", "pidfds_in", "METADATA", "INFO_HEADER"]

#: struct fanotify_event_metadata: event_len, vers, reserved, metadata_len, mask, fd, pid
METADATA = struct.Struct("=IBBHQii")
#: struct fanotify_event_info_header: info_type, pad, len
INFO_HEADER = struct.Struct("=BBH")
# fid record up to the start of f_handle: header, fsid (kept as 8 raw bytes), handle_bytes, handle_type
_FID_HEAD = struct.Struct("=BBH8sIi")
_PIDFD = struct.Struct("=i")
_ERROR = struct.Struct("=iI")

_META_SIZE = METADATA.size  # 24
_FID_HEAD_SIZE = _FID_HEAD.size  # 20
_HANDLE_OFFSET = 4 + 8  # struct file_handle starts after the info header and the fsid

_FID_TYPES = frozenset(
    {
        FAN_EVENT_INFO_TYPE_FID,
        FAN_EVENT_INFO_TYPE_DFID,
        FAN_EVENT_INFO_TYPE_DFID_NAME,
        FAN_EVENT_INFO_TYPE_OLD_DFID_NAME,
        FAN_EVENT_INFO_TYPE_NEW_DFID_NAME,
    }
)
_NAME_TYPES = frozenset(
    {FAN_EVENT_INFO_TYPE_DFID_NAME, FAN_EVENT_INFO_TYPE_OLD_DFID_NAME, FAN_EVENT_INFO_TYPE_NEW_DFID_NAME}
)


class DecodeError(ValueError):
    """The buffer does not hold well-formed fanotify events (never seen from a real kernel)."""


class RawInfo(NamedTuple):
    """One fid-carrying info record. ``handle`` is the whole ``struct file_handle`` (8-byte header
    included), ready for open_by_handle_at(2); ``name`` is empty for FID and DFID records and
    ``b"."`` when the event is about the directory itself."""

    type: int
    fsid: bytes
    handle: bytes
    name: bytes


class RawEvent(NamedTuple):
    """One event as the kernel wrote it. ``fd`` is FAN_NOFD in fid mode; ``pidfd`` is FAN_NOPIDFD
    when no pidfd record came, FAN_EPIDFD (-2) when the kernel could not make one, else an fd that
    the caller must close."""

    mask: int
    pid: int
    fd: int
    pidfd: int
    infos: tuple[RawInfo, ...]
    error: int = 0
    error_count: int = 0


def decode(buf: bytes, length: int | None = None) -> list[RawEvent]:
    """Decode ``buf[:length]`` into events, in kernel order.

    Raises :class:`DecodeError` on a malformed buffer; a real kernel only ever hands over whole
    events. Unknown info types are skipped by their length, so newer kernels' records do not
    break older nocry."""
    end = len(buf) if length is None else length
    if not isinstance(buf, bytes):
        # slices of a bytes object are bytes; of a bytearray/memoryview they would not be hashable
        buf = bytes(buf[:end])
    unpack_meta = METADATA.unpack_from
    unpack_hdr = INFO_HEADER.unpack_from
    unpack_fid = _FID_HEAD.unpack_from
    find = buf.find
    # tuple.__new__ straight from C: a NamedTuple's own __new__ is Python code, ~3x slower
    new = tuple.__new__
    fid_types = _FID_TYPES
    name_types = _NAME_TYPES
    out: list[RawEvent] = []
    append = out.append
    off = 0
    while off < end:
        if end - off < _META_SIZE:
            raise DecodeError(f"truncated event header at offset {off}")
        event_len, vers, _reserved, meta_len, mask, fd, pid = unpack_meta(buf, off)
        if vers != FANOTIFY_METADATA_VERSION:
            raise DecodeError(f"fanotify metadata version {vers}, expected {FANOTIFY_METADATA_VERSION}")
        if meta_len < _META_SIZE or event_len < meta_len or off + event_len > end:
            raise DecodeError(f"bad event lengths at offset {off}: event_len={event_len} metadata_len={meta_len}")
        ioff = off + meta_len
        iend = off + event_len
        if ioff == iend:
            # overflow and fd-mode events carry no info records
            append(new(RawEvent, (mask, pid, fd, FAN_NOPIDFD, (), 0, 0)))
            off = iend
            continue
        infos: list[RawInfo] = []
        pidfd = FAN_NOPIDFD
        error = error_count = 0
        while ioff < iend:
            # One unpack per record: fid records (nearly all of them) are unpacked whole,
            # header included, after a peek at their type byte.
            itype = buf[ioff]
            if itype in fid_types:
                if iend - ioff < _FID_HEAD_SIZE:
                    raise DecodeError(f"fid record truncated at offset {ioff}")
                _t, _pad, ilen, fsid, handle_bytes, _htype = unpack_fid(buf, ioff)
                rend = ioff + ilen
                hend = ioff + _FID_HEAD_SIZE + handle_bytes
                if ilen < _FID_HEAD_SIZE or rend > iend or hend > rend:
                    raise DecodeError(f"bad fid record (len {ilen}, handle {handle_bytes}) at offset {ioff}")
                if itype in name_types:
                    nul = find(b"\0", hend, rend)
                    name = buf[hend : nul if nul >= 0 else rend]
                else:
                    name = b""
                infos.append(new(RawInfo, (itype, fsid, buf[ioff + _HANDLE_OFFSET : hend], name)))
                ioff = rend
                continue
            if iend - ioff < 4:
                raise DecodeError(f"truncated info header at offset {ioff}")
            ilen = unpack_hdr(buf, ioff)[2]
            if ilen < 4 or ioff + ilen > iend:
                raise DecodeError(f"bad info record length {ilen} at offset {ioff}")
            if itype == FAN_EVENT_INFO_TYPE_PIDFD:
                if ilen < 8:
                    raise DecodeError(f"pidfd record too short ({ilen}) at offset {ioff}")
                (pidfd,) = _PIDFD.unpack_from(buf, ioff + 4)
            elif itype == FAN_EVENT_INFO_TYPE_ERROR:
                if ilen < 12:
                    raise DecodeError(f"error record too short ({ilen}) at offset {ioff}")
                error, error_count = _ERROR.unpack_from(buf, ioff + 4)
            # any other type (RANGE, MNT, future ones): skipped by its length
            ioff += ilen
        append(new(RawEvent, (mask, pid, fd, pidfd, tuple(infos), error, error_count)))
        off = iend
    return out


def pidfds_in(buf: bytes, length: int | None = None) -> list[int]:
    """Best-effort list of the pidfds a buffer installed, for closing them when :func:`decode`
    failed on a malformed buffer. Walks as far as the lengths allow and never raises."""
    end = len(buf) if length is None else length
    out: list[int] = []
    off = 0
    try:
        while end - off >= _META_SIZE:
            event_len, _v, _r, meta_len, _mask, _fd, _pid = METADATA.unpack_from(buf, off)
            if meta_len < _META_SIZE or event_len < meta_len or off + event_len > end:
                break
            ioff, iend = off + meta_len, off + event_len
            while iend - ioff >= 4:
                itype, _pad, ilen = INFO_HEADER.unpack_from(buf, ioff)
                if ilen < 4 or ioff + ilen > iend:
                    break
                if itype == FAN_EVENT_INFO_TYPE_PIDFD and ilen >= 8:
                    (fd,) = _PIDFD.unpack_from(buf, ioff + 4)
                    if fd >= 0:
                        out.append(fd)
                ioff += ilen
            off = iend
    except struct.error:
        pass
    return out

