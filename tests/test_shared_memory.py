"""Pixels through shared memory files (/dev/shm) between a client and a daemon on one machine
(backend.service.shared_memory, docs/PROTOCOL.md "Shared memory").

A real `palettenet serve` on loopback. A layer sent through shared memory gets exactly the
answer the same request gets with frames; a file a broken or hostile client names (a bad
name, a symlink, a FIFO, a folder, the wrong size, another owner, a mode open to others, a
second name, truncated, vanished, an unallocated reply file) gets an error reply that says
so, with field "shared_memory", and the daemon goes on serving; the client falls back to
frames where shared memory is refused, and nothing it made is left behind.
"""

import os
import secrets
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backend.service.client import SHARED_MEMORY_MIN_BYTES, Client
from backend.service.engine import Engine
from backend.service.protocol import decode_reply, encode_request
from backend.service.shared_memory import ClientSegments
from backend.wire import SHARED_MEMORY_FOLDER
from tests.conftest import small_photo
from tests.servers import Server, as_pixels, photo_pixels, random_weights, recolor_header

FOLDER = Path(SHARED_MEMORY_FOLDER)
pytestmark = pytest.mark.skipif(not FOLDER.is_dir(), reason="no /dev/shm on this system")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def engine(weights):
    return Engine(weights, "cpu")


@pytest.fixture(scope="module")
def daemon(weights):
    server = Server("serve", "--bind", "tcp://127.0.0.1:*", "--weights", weights,
                    "--device", "cpu")  # fmt: skip
    yield server
    assert server.stop() == 0, "".join(server.lines)


def large_photo(pixel_format="RGBA8") -> np.ndarray:
    """A photo just over SHARED_MEMORY_MIN_BYTES in RGBA8, so the client uses shared memory."""
    pixels = photo_pixels(small_photo("astronaut", 600), pixel_format)
    assert pixels.nbytes >= SHARED_MEMORY_MIN_BYTES
    return pixels


def in_process(engine, header, pixels, mask=None, reference=None):
    frames = encode_request(header, pixels, mask, reference)
    return decode_reply(engine.handle(frames, 1 << 27))


# --- what a user sees: the same answers, faster -----------------------------------------------
@pytest.mark.parametrize("method", ["palettenet", "chang2015"])
@pytest.mark.parametrize("pixel_format", ["RGBA8", "RGBA16"])
def test_a_large_layer_through_shared_memory_gets_the_frames_answer(
    daemon, engine, method, pixel_format
):
    pixels = large_photo(pixel_format)
    header = recolor_header(pixels, pixel_format, method)
    with Client(daemon.address, 120) as client:
        reply, frames = client.request(header, pixels)
        assert client.no_shared_memory is None and reply["ok"], reply
        assert "shared_memory" in reply and len(frames) == 1  # no pixel frame came back
    out = as_pixels(frames[0], pixels)
    np.testing.assert_array_equal(out, as_pixels(in_process(engine, header, pixels)[1][0], pixels))
    np.testing.assert_array_equal(out[..., 3], pixels[..., 3])
    assert not (out[..., :3] == pixels[..., :3]).all()  # recoloured indeed


def test_masks_palettes_previews_and_references_through_shared_memory(daemon, engine):
    pixels = large_photo()
    height, width = pixels.shape[:2]
    mask = np.zeros((height, width), np.uint8)
    mask[:, width // 2 :] = 255
    reference = np.ascontiguousarray(pixels[::4, ::4])
    described = {"width": reference.shape[1], "height": reference.shape[0], "pixel_format": "RGBA8"}
    cases = [
        (recolor_header(pixels, "RGBA8", "chang2015"), mask, None),
        (recolor_header(pixels, "RGBA8", options={"max_side": 100}), None, None),
        (recolor_header(pixels, "RGBA8", reference=described), None, reference),
        (
            {
                "op": "palette",
                "id": "p",
                "width": width,
                "height": height,
                "pixel_format": "RGBA8",
                "options": {"k": 4},
            },
            mask,
            None,
        ),  # fmt: skip
    ]
    with Client(daemon.address, 120) as client:
        for header, layer_mask, ref in cases:
            reply, frames = client.request(header, pixels, layer_mask, ref)
            assert client.no_shared_memory is None and reply["ok"], reply
            expected, expected_frames = in_process(engine, header, pixels, layer_mask, ref)
            assert reply.get("palette") == expected.get("palette")
            for got, wanted in zip(frames, expected_frames, strict=True):
                assert bytes(got) == bytes(wanted)


def test_a_result_the_caller_holds_is_never_written_again(daemon):
    pixels = large_photo()
    with Client(daemon.address, 120) as client:
        first = client.request(recolor_header(pixels, "RGBA8", "chang2015"), pixels)[1][0]
        kept = bytes(first)
        other = recolor_header(pixels, "RGBA8", "chang2015", palette=["#ff0000", "#00ff00"])
        second = client.request(other, pixels)[1][0]
        assert bytes(first) == kept and bytes(second) != kept
        reply_file = client.segments.segments["reply"].name
        del first, second  # let go: the next request may use the same file again
        client.request(other, pixels)
        assert client.segments.segments["reply"].name == reply_file


def test_the_client_falls_back_to_frames_when_the_daemon_refuses_its_files(daemon, engine):
    pixels = large_photo()
    header = recolor_header(pixels, "RGBA8", "chang2015")
    with Client(daemon.address, 120) as client:
        assert "shared_memory" in client.request(header, pixels)[0]
        os.chmod(FOLDER / client.segments.segments["pixels"].name, 0o644)  # now refused
        reply, frames = client.request(header, pixels)
        assert reply["ok"] and "shared_memory" not in reply, reply
        assert "open to other users" in client.no_shared_memory
        expected = in_process(engine, header, pixels)[1][0]
        assert bytes(frames[0]) == bytes(expected)
        assert client.segments is None  # its files removed


def test_files_are_removed_and_the_daemon_lets_go_of_them(daemon):
    pixels = large_photo()
    with Client(daemon.address, 120) as client:
        client.request(recolor_header(pixels, "RGBA8", "chang2015"), pixels)
        names = [segment.name for segment in client.segments.segments.values()]
        assert all((FOLDER / name).exists() for name in names)
        assert mapped_by(daemon.process.pid) & set(names)  # kept mapped for the next request
    assert not any((FOLDER / name).exists() for name in names)
    deadline = time.monotonic() + 5
    while mapped_by(daemon.process.pid) & set(names) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not mapped_by(daemon.process.pid) & set(names)  # the memory is given back


def mapped_by(pid: int) -> set:
    """Names of shared memory files a process has mapped (Linux: /proc/PID/maps)."""
    names = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        path = line.split(maxsplit=5)[5:]
        if path and path[0].startswith(str(FOLDER) + "/"):
            names.add(path[0].split("/")[-1].split(" ")[0])
    return names


def test_files_of_clients_that_were_killed_are_removed_by_the_next_client():
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    orphan = FOLDER / f"palettenet-{finished.stdout.strip()}-{secrets.token_hex(16)}"
    alive = FOLDER / f"palettenet-{os.getppid()}-{secrets.token_hex(16)}"
    for path in (orphan, alive):
        path.write_bytes(b"x")
    try:
        ClientSegments().close()
        assert not orphan.exists() and alive.exists()
    finally:
        for path in (orphan, alive):
            path.unlink(missing_ok=True)


def test_in_process_there_is_no_shared_memory(engine):
    header = {"op": "recolor", "id": "e", "width": 1, "height": 1, "pixel_format": "RGBA8",
              "palette": ["#fff"], "shared_memory": {"pixels": name()}}  # fmt: skip
    reply, _ = decode_reply(engine.handle(encode_request(header), 100))
    assert reply["error"]["field"] == "shared_memory" and reply["id"] == "e"


def test_through_a_brokers_worker_frames_are_used(weights, engine):
    broker = Server("broker", "--frontend", "tcp://127.0.0.1:*", "--backend", "tcp://127.0.0.1:*")
    worker = Server("serve", "--connect", broker.backend, "--weights", weights,
                    "--device", "cpu", "--heartbeat", 0.3)  # fmt: skip
    try:
        pixels = large_photo()
        header = recolor_header(pixels, "RGBA8", "chang2015")
        with Client(broker.address, 120) as client:
            reply, frames = client.request(header, pixels)
            assert reply["ok"] and client.no_shared_memory == "the daemon takes no shared memory"
            assert bytes(frames[0]) == bytes(in_process(engine, header, pixels)[1][0])
            with Segment(pixels.nbytes) as segment:  # named anyway: the worker refuses
                reply = raw(client, dict(header, shared_memory={"pixels": segment.name}))
            assert "broker's worker" in reply["error"]["message"], reply
    finally:
        worker.stop()
        broker.stop()


# --- hostile and broken files ---------------------------------------------------------------
def name() -> str:
    return f"palettenet-{os.getpid()}-{secrets.token_hex(16)}"


class Segment:
    """A file of /dev/shm made by hand, as a hostile or broken client could make it."""

    def __init__(self, size: int, mode=0o600, allocate=True, content=None):
        self.name = name()
        self.path = FOLDER / self.name
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.fchmod(fd, mode)  # whatever the umask
            if allocate:
                os.posix_fallocate(fd, 0, size)
            else:
                os.ftruncate(fd, size)
            if content is not None:
                os.pwrite(fd, bytes(content), 0)
        finally:
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


def raw(client: Client, header: dict, *payload) -> dict:
    """One request as it is, through the client's socket (no shared memory of its own)."""
    return decode_reply(client.exchange(encode_request(header) + list(payload)))[0]


def hostile_cases(pixels: np.ndarray):
    """(what, header's shared_memory, expected words in the error) for each kind of bad file,
    and the files made (removed by the caller)."""
    size = pixels.nbytes
    good = Segment(size, content=pixels.tobytes())
    reply = Segment(size)
    made = [good, reply]

    def segment(**kwargs):
        made.append(Segment(size, **kwargs) if "size" not in kwargs else Segment(**kwargs))
        return made[-1].name

    symlink, fifo, folder, hard = name(), name(), name(), name()
    (FOLDER / symlink).symlink_to(good.path)
    os.mkfifo(FOLDER / fifo, 0o600)
    os.mkdir(FOLDER / folder, 0o700)
    target = Segment(size)
    made.append(target)
    os.link(target.path, FOLDER / hard)
    links = [symlink, fifo, folder, hard]
    cases = [
        ("missing", {"pixels": name()}, "No such file"),
        ("symlink", {"pixels": symlink}, "cannot open"),
        ("FIFO", {"pixels": fifo}, "not a regular file"),
        ("folder", {"pixels": folder}, "not a regular file"),
        ("second name", {"pixels": hard}, "has 2 names"),
        ("too small", {"pixels": segment(size=size - 1)}, f"needs {size}"),
        ("too large", {"pixels": segment(size=size + 4096)}, f"needs {size}"),
        ("open to others", {"pixels": segment(mode=0o644)}, "open to other users"),
        (
            "reply not allocated",
            {"pixels": good.name, "reply": segment(allocate=False)},
            "not allocated",
        ),  # fmt: skip
        ("reply too small", {"pixels": good.name, "reply": segment(size=8)}, f"needs {size}"),
        ("mask of the layer's size", {"pixels": good.name, "mask": segment()}, "needs"),
    ]
    if os.geteuid() == 0:  # only root can give a file away
        other = segment()
        os.chown(FOLDER / other, 65534, 65534)
        cases.append(("another owner", {"pixels": other}, "another user"))
    return cases, made, links, good, reply


def test_every_bad_file_gets_an_error_and_the_daemon_goes_on(daemon, engine):
    pixels = large_photo()
    header = recolor_header(pixels, "RGBA8", "chang2015")
    cases, made, links, good, reply_file = hostile_cases(pixels)
    try:
        with Client(daemon.address, 60, shared_memory=False) as client:
            for what, names, words in cases:
                reply = raw(client, dict(header, shared_memory=names))
                error = reply.get("error", {})
                assert error.get("field") == "shared_memory", (what, reply)
                assert error["code"] in ("bad_request", "size_mismatch"), (what, reply)
                assert words in error["message"], (what, error)
            # ... and a good pair of files is still served, straight into the reply file
            names = {"pixels": good.name, "reply": reply_file.name}
            reply = raw(client, dict(header, shared_memory=names))
            assert reply["ok"] and reply["shared_memory"] == {"reply": reply_file.name}, reply
            expected = in_process(engine, header, pixels)[1][0]
            assert reply_file.path.read_bytes() == bytes(expected)
            # the same file as input and reply, under its one name or another
            same = raw(
                client, dict(header, shared_memory={"pixels": good.name, "reply": good.name})
            )
            assert same["error"]["field"] == "shared_memory"
            # a file cut short after the daemon mapped (and kept) it: refused, not read
            os.truncate(good.path, 4096)
            cut = raw(client, dict(header, shared_memory=names))
            assert cut["error"]["code"] == "size_mismatch", cut
            # removed between requests: the kept mapping is not used
            good.path.unlink()
            gone = raw(client, dict(header, shared_memory=names))
            assert "No such file" in gone["error"]["message"], gone
            assert client.request({"op": "ping"})[0]["ok"]
        assert daemon.alive()
    finally:
        for segment in made:
            segment.__exit__()
        for link in links:
            path = FOLDER / link
            path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink(
                missing_ok=True
            )


def test_files_are_made_private_and_allocated_by_the_client(daemon):
    pixels = large_photo()
    with Client(daemon.address, 120) as client:
        client.request(recolor_header(pixels, "RGBA8", "chang2015"), pixels)
        for segment in client.segments.segments.values():
            info = os.stat(FOLDER / segment.name, follow_symlinks=False)
            assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.geteuid()
            assert info.st_blocks * 512 >= info.st_size  # no page left to fault later
