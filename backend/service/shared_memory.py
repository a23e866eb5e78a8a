"""Pixels through shared memory, for clients on the daemon's own machine.

A 24-megapixel RGBA8 layer is 96 MB. Through ZeroMQ on loopback the kernel copies it into
and out of socket buffers both ways: measured 0.17 s on a quiet machine and 0.4 s on a busy
one, against 0.36 s for chang2015's whole recolour. A client on the same machine can instead
put the pixels (and the mask) in files of SHARED_MEMORY_FOLDER (/dev/shm: memory, not disk)
and name them in the header's `shared_memory` (docs/PROTOCOL.md); the daemon maps them, and
writes the result straight into a reply file the client names. Only the header crosses
ZeroMQ.

Both sides keep their mappings between requests: a fresh 96 MB file costs 0.1-0.2 s in page
allocation alone (tmpfs, 4 KiB pages), a file mapped once costs one memcpy per request.
ClientSegments is the client's side; MappedSegments the daemon's.

To the daemon every name is hostile input. It opens only names matching SHARED_MEMORY_NAME,
inside the folder it opened at start (a name has no slash, so no path is ever followed), with
O_NOFOLLOW (a symlink is refused) and O_NONBLOCK (a FIFO cannot hang it), and maps the file
only if it is a regular file with one name, owned by the daemon's own user, readable and
writable by that user alone, of exactly the size the header implies; a reply file must have
all its pages allocated (posix_fallocate), so that writing it cannot fault on a full
/dev/shm. What it cannot guard against: a process of its own user truncating a file while
the daemon reads or writes it (the daemon then dies of SIGBUS); such a process could as well
kill the daemon, and no other user can do either.
"""

import mmap
import os
import re
import secrets
import stat
import time
import weakref
from dataclasses import dataclass

import numpy as np

from backend.service.protocol import ProtocolError
from backend.wire import SHARED_MEMORY_FOLDER, SHARED_MEMORY_NAME

NAME = re.compile(SHARED_MEMORY_NAME)
NAME_PARTS = re.compile(r"palettenet-([0-9]+)-[0-9a-f]{32}")
# MAP_POPULATE maps every page at once: for a file whose pages exist, 2-4 times faster than
# taking a page fault per 4 KiB page on first touch (Linux; Python 3.10+).
POPULATE = getattr(mmap, "MAP_POPULATE", 0)
MAX_KEPT = 4  # the daemon keeps the mappings of this many files (one client: pixels, reply)
MAX_IDLE_S = 10.0  # and drops one unused for this long


def refused(code: str, message: str) -> ProtocolError:
    """An error about the shared_memory field: the reply's error says field
    "shared_memory", which tells a client to send the same request with frames instead."""
    return ProtocolError(code, f"shared memory: {message}", field="shared_memory")


# --- the daemon's side ----------------------------------------------------------------------
@dataclass
class _Kept:
    fd: int  # kept open: fstat tells when the client has removed the file
    key: tuple  # (device, inode, size, writable): the same file as mapped
    mapping: mmap.mmap
    used: float  # time.monotonic() of the last request that named it


class MappedSegments:
    """The files clients name, opened with every check of the module docstring and mapped,
    the last few kept mapped for their next request. Used by the daemon's main thread only;
    the workers use the buffers it hands out (each request holds its own reference, so
    dropping a kept mapping never pulls it from under a running job)."""

    def __init__(self, folder: str = SHARED_MEMORY_FOLDER):
        self.folder = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.uid = os.geteuid()
        self.kept: dict[str, _Kept] = {}  # name -> mapping, least recently used first

    def attach(self, request, sizes: dict) -> None:
        """Map the request's named files: request.pixels and request.mask become read-only
        buffers, request.reply a writable one. sizes: role -> bytes its file must have.
        ProtocolError (field shared_memory) if any file is refused (files mapped before it
        stay kept: they passed every check)."""
        names = request.shared_memory
        seen = set()
        for role in ("pixels", "mask", "reply"):
            if role not in names:
                continue
            writable = role == "reply"
            key, buffer = self._open(names[role], sizes[role], writable)
            if key[:2] in seen:  # the same file under two names: a reply over its own input
                raise refused("bad_request", f"{role} is the same file as another segment")
            seen.add(key[:2])
            setattr(request, role, buffer)

    def _open(self, name: str, size: int, writable: bool) -> tuple[tuple, object]:
        if not isinstance(name, str) or NAME.fullmatch(name) is None:
            raise refused("bad_request", f"{name!r} is not a segment name")
        flags = os.O_RDWR if writable else os.O_RDONLY
        flags |= os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, dir_fd=self.folder)
        except OSError as error:
            why = error.strerror or str(error)
            raise refused("bad_request", f"cannot open {name}: {why}") from None
        try:
            key = self._checked(fd, name, size, writable)
            kept = self.kept.pop(name, None)
            if kept is not None and kept.key == key:
                os.close(fd)
            else:
                if kept is not None:
                    os.close(kept.fd)
                try:
                    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
                    mapping = mmap.mmap(fd, size, mmap.MAP_SHARED | POPULATE, prot)
                except OSError as error:
                    raise refused("bad_request", f"cannot map {name}: {error}") from None
                kept = _Kept(fd, key, mapping, 0.0)
        except BaseException:
            os.close(fd)
            raise
        kept.used = time.monotonic()
        self.kept[name] = kept  # last: most recently used
        while len(self.kept) > MAX_KEPT:
            self._drop(next(iter(self.kept)))
        return key, kept.mapping

    def _checked(self, fd: int, name: str, size: int, writable: bool) -> tuple:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise refused("bad_request", f"{name} is not a regular file")
        if info.st_nlink != 1:
            raise refused("bad_request", f"{name} has {info.st_nlink} names; it must have one")
        if info.st_uid != self.uid:
            raise refused("bad_request", f"{name} belongs to another user than the daemon's")
        if stat.S_IMODE(info.st_mode) & 0o077:
            message = f"{name} is open to other users (mode {stat.S_IMODE(info.st_mode):o})"
            raise refused("bad_request", message + "; it must be 600")
        if info.st_size != size:
            message = f"{name} has {info.st_size} bytes; it needs {size}"
            raise refused("size_mismatch", message)
        if writable and info.st_blocks * 512 < size:
            message = f"{name} is not allocated (posix_fallocate it): writing it could fail"
            raise refused("bad_request", message)
        return info.st_dev, info.st_ino, size, writable

    def purge(self, now: float | None = None) -> None:
        """Drop the mappings of files removed by their client or unused for MAX_IDLE_S, so
        that a client's memory is given back soon after it lets go of it."""
        now = time.monotonic() if now is None else now
        for name, kept in list(self.kept.items()):
            if now - kept.used > MAX_IDLE_S or os.fstat(kept.fd).st_nlink == 0:
                self._drop(name)

    def _drop(self, name: str) -> None:
        kept = self.kept.pop(name)
        os.close(kept.fd)  # the mapping itself goes with the last buffer that uses it

    def close(self) -> None:
        for name in list(self.kept):
            self._drop(name)
        os.close(self.folder)


# --- the client's side ----------------------------------------------------------------------
class _Segment:
    """A file of SHARED_MEMORY_FOLDER this client made: allocated, mapped read-write."""

    def __init__(self, folder: int, size: int):
        self.name = f"palettenet-{os.getpid()}-{secrets.token_hex(16)}"
        self.size = size
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.name, flags, 0o600, dir_fd=folder)
        try:
            os.posix_fallocate(fd, 0, size)  # no page missing later: a full /dev/shm says so now
            self.mapping = mmap.mmap(fd, size, mmap.MAP_SHARED)
        except BaseException:
            os.close(fd)
            os.unlink(self.name, dir_fd=folder)
            raise
        os.close(fd)
        self.array = np.frombuffer(self.mapping, np.uint8)
        self.handed_out = None  # a weak reference to the reply array last given to the caller

    def held(self) -> bool:
        """Whether the caller still holds the reply array last handed out over this file."""
        return self.handed_out is not None and self.handed_out() is not None


class ClientSegments:
    """A client's files, one per role (pixels, mask, reply), each kept for the next request
    of the same size. A reply is handed to the caller as an array over its file, without a
    copy; the file is used again only once the caller has let go of that array (else a new
    one is made), so a result never changes under its holder. Files are removed on close()
    and at exit; a client killed outright leaves them, and the next client removes those of
    processes that no longer run."""

    def __init__(self, folder: str = SHARED_MEMORY_FOLDER):
        """OSError if the folder cannot be used."""
        self.folder = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.segments: dict[str, _Segment] = {}
        self._finalizer = weakref.finalize(self, _remove, self.folder, self.segments)
        _remove_orphans(self.folder)

    def prepare(self, pixels, mask, reply_size: int | None) -> dict:
        """Files holding copies of pixels (and mask, if not None), and an allocated reply
        file of reply_size bytes (None: none); returns the header's shared_memory field.
        A role this request does not use keeps its file for a later one. OSError if a file
        cannot be made (/dev/shm full, say)."""
        names = {}
        for role, content in (("pixels", pixels), ("mask", mask)):
            if content is not None:
                data = np.frombuffer(memoryview(content).cast("B"), np.uint8)
                segment = self._segment(role, data.size)
                np.copyto(segment.array, data)
                names[role] = segment.name
        if reply_size is not None:
            names["reply"] = self._segment("reply", reply_size).name
        return names

    def _segment(self, role: str, size: int) -> _Segment:
        """This role's file if it has `size` bytes and no reply array handed out over it is
        still held, else a new one."""
        segment = self.segments.get(role)
        if segment is None or segment.size != size or segment.held():
            self.forget(role)
            segment = self.segments[role] = _Segment(self.folder, size)
        return segment

    def reply(self) -> np.ndarray:
        """The reply file's bytes (uint8), as the daemon wrote them: an array over the file,
        not a copy. The file is not used again while this array (or a view of it) lives."""
        segment = self.segments["reply"]
        array = np.frombuffer(segment.mapping, np.uint8)
        segment.handed_out = weakref.ref(array)
        return array

    def forget(self, role: str | None = None) -> None:
        """Remove the files (of one role, or all): the next request makes new ones. For a
        request that may still be running in the daemon (timed out), whose files must not be
        written again by this client, nor read back."""
        roles = list(self.segments) if role is None else [role]
        for name in roles:
            segment = self.segments.pop(name, None)
            if segment is not None:
                _unlink(self.folder, segment.name)  # arrays handed out keep their memory

    def close(self) -> None:
        self._finalizer()


def _unlink(folder: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=folder)
    except FileNotFoundError:
        pass


def _remove(folder: int, segments: dict) -> None:
    for segment in segments.values():
        _unlink(folder, segment.name)
    segments.clear()
    os.close(folder)


def _remove_orphans(folder: int) -> None:
    """Remove the files of this user's clients that no longer run (killed before close)."""
    uid = os.geteuid()
    for name in os.listdir(folder):
        match = NAME_PARTS.fullmatch(name)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        try:
            if os.stat(name, dir_fd=folder, follow_symlinks=False).st_uid != uid:
                continue
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            _unlink(folder, name)
        except OverflowError:  # no process can have that number
            _unlink(folder, name)
        except OSError:  # gone already, or a process of another user: not ours to judge
            pass
