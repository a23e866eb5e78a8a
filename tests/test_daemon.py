"""The daemon as clients see it: a real `palettenet serve` on loopback, over tcp and ipc.

Every reply is checked against the same request run in this process by the Engine (the
CLI's path), pixel for pixel, besides what a user would look at: alpha unchanged, invisible
pixels unchanged, the picture actually recoloured.
"""

import json
import random
import shutil
import tempfile
import threading
import time

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.cli.main import main
from backend.service.client import Client
from backend.service.engine import Engine
from backend.service.protocol import decode_reply, encode_request
from backend.wire import PROTOCOL
from tests.conftest import small_photo
from tests.servers import PALETTE, Server, as_pixels, photo_pixels, random_weights, recolor_header

FORMATS = ("RGBA8", "BGRA8", "RGB8", "RGBA16", "RGBAF32")
MAX_PIXELS = 1_000_000


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def engine(weights):
    return Engine(weights, "cpu")


def start_daemon(bind, weights) -> Server:
    return Server("serve", "--bind", bind, "--weights", weights, "--device", "cpu",
                  "--max-pixels", MAX_PIXELS)  # fmt: skip


@pytest.fixture(scope="module")
def daemon(weights):
    server = start_daemon("tcp://127.0.0.1:*", weights)
    yield server
    assert server.stop() == 0, "".join(server.lines)


@pytest.fixture
def client(daemon):
    with Client(daemon.address, timeout_s=60) as client:
        yield client


def in_process(engine, header, pixels=None, mask=None):
    return decode_reply(engine.handle(encode_request(header, pixels, mask), MAX_PIXELS))


@pytest.mark.parametrize("method", ["palettenet", "chang2015"])
@pytest.mark.parametrize("pixel_format", FORMATS)
def test_every_format_and_method_matches_the_in_process_result(
    client, engine, pixel_format, method
):
    pixels = photo_pixels(small_photo("astronaut", 40), pixel_format)
    header = recolor_header(pixels, pixel_format, method)
    reply, frames = client.request(header, pixels)
    assert reply["ok"], reply
    assert (reply["id"], reply["width"], reply["height"]) == (header["id"], 40, 40)
    assert reply["pixel_format"] == pixel_format and "total" in reply["timing_ms"]
    out = as_pixels(frames[0], pixels)
    expected = as_pixels(in_process(engine, header, pixels)[1][0], pixels)
    np.testing.assert_array_equal(out, expected)
    if pixels.shape[2] == 4:
        np.testing.assert_array_equal(out[..., 3], pixels[..., 3])  # alpha: last in all
        invisible = pixels[..., 3] == 0
        np.testing.assert_array_equal(out[invisible], pixels[invisible])
    seen = slice(20, None)  # the opaque lower half must have been recoloured
    change = np.abs(out[seen].astype(np.float64) - pixels[seen]).mean() / pixels.max()
    assert change > 0.01


def test_every_op_and_format_over_ipc(weights, engine):
    folder = tempfile.mkdtemp(prefix="pn-", dir="/tmp")  # ipc paths must be short
    server = start_daemon(f"ipc://{folder}/daemon.sock", weights)
    try:
        with Client(server.address, timeout_s=60) as client:
            for op in ("ping", "info"):
                assert client.request({"op": op})[0]["model"] == "palettenet"
            for pixel_format in FORMATS:
                pixels = photo_pixels(small_photo("chelsea", 24), pixel_format)
                header = recolor_header(pixels, pixel_format)
                reply, frames = client.request(header, pixels)
                expected = in_process(engine, header, pixels)[1][0]
                np.testing.assert_array_equal(
                    as_pixels(frames[0], pixels), as_pixels(expected, pixels)
                )
                height, width = pixels.shape[:2]
                header = {"op": "palette", "width": width, "height": height,
                          "pixel_format": pixel_format}  # fmt: skip
                reply, _ = client.request(header, pixels)
                local = in_process(engine, header, pixels)[0]
                assert (reply["palette"], reply["weights"]) == (local["palette"], local["weights"])
    finally:
        assert server.stop() == 0
        shutil.rmtree(folder)


def test_selection_mask_keeps_blends_and_recolours(client):
    pixels = photo_pixels(small_photo("coffee", 48), "RGBA8")[16:]  # fully opaque rows
    # An explicit source palette: without one, chang2015 takes it from the selected pixels.
    source = ["#201810", "#503020", "#806040", "#a08060", "#c0a080", "#e0d0c0"]
    header = recolor_header(pixels, "RGBA8", "chang2015", source_palette=source)
    mask = np.zeros(pixels.shape[:2], np.uint8)
    mask[:, 16:32], mask[:, 32:] = 128, 255
    _, full = client.request(header, pixels)
    reply, masked = client.request(header, pixels, mask)
    assert reply["ok"]
    full, masked = as_pixels(full[0], pixels), as_pixels(masked[0], pixels)
    np.testing.assert_array_equal(masked[:, :16], pixels[:, :16])
    np.testing.assert_array_equal(masked[:, 32:], full[:, 32:])
    halfway = pixels[:, 16:32] + (128 / 255) * (full[:, 16:32].astype(float) - pixels[:, 16:32])
    assert np.abs(masked[:, 16:32] - halfway).max() <= 1


@pytest.mark.parametrize("method", ["palettenet", "chang2015"])
def test_a_16_bit_gradient_stays_smooth(client, method):
    # 1024 wide: palettenet runs at 512 and its result is carried back to every pixel
    ramp = np.linspace(0, 1, 1024)
    rgb = np.stack([ramp, 0.3 + 0.5 * ramp, 0.8 - 0.6 * ramp], axis=-1)
    pixels = np.ones((8, 1024, 4))
    pixels[..., :3] = rgb
    pixels = np.round(pixels * 65535).astype("<u2")
    reply, frames = client.request(recolor_header(pixels, "RGBA16", method), pixels)
    assert reply["ok"], reply
    out = as_pixels(frames[0], pixels)
    assert np.abs(out[..., :3].astype(float) - pixels[..., :3]).mean() > 500  # recoloured
    for channel in range(3):
        assert len(np.unique(out[..., channel])) > 256  # not an 8-bit round trip


@pytest.mark.parametrize("pixel_format", ["RGBA8", "RGBAF32"])
def test_palette_ignores_transparent_pixels(client, pixel_format):
    rgb = np.zeros((32, 64, 3), np.uint8)
    rgb[:, :32] = (40, 90, 160)  # visible blue
    rgb[:, 32:] = (255, 0, 255)  # magenta, but fully transparent
    pixels = photo_pixels(rgb, pixel_format)
    pixels[:8] = pixels[-1]  # no transparent stripe at the top here
    pixels[:, 32:, 3] = 0
    height, width = pixels.shape[:2]
    header = {"op": "palette", "id": "p", "width": width, "height": height,
              "pixel_format": pixel_format, "options": {"k": 3}}  # fmt: skip
    reply, _ = client.request(header, pixels)
    # the visible pixels are one colour: one swatch, not three copies of it
    assert reply["ok"] and len(reply["palette"]) == 1, reply
    assert abs(sum(reply["weights"]) - 1) < 1e-3
    # only the visible blue: the transparent magenta is not counted
    colours = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in reply["palette"]])
    assert np.abs(colours - (40, 90, 160)).max() <= 3, reply["palette"]


def test_max_side_returns_a_downscaled_preview(client):
    pixels = photo_pixels(small_photo("chelsea", 120), "RGBA8")
    header = recolor_header(pixels, "RGBA8", "chang2015", options={"max_side": 30})
    reply, frames = client.request(header, pixels)
    assert reply["ok"], reply
    assert max(reply["width"], reply["height"]) == 30
    assert len(frames[0]) == reply["width"] * reply["height"] * 4


def test_ping_and_info_describe_the_daemon(client, weights):
    for op in ("ping", "info"):
        reply, frames = client.request({"op": op, "id": op})
        assert reply["ok"] and reply["id"] == op and frames == []
        assert reply["protocol"] == PROTOCOL and reply["device"] == "cpu"
        assert reply["model"] == "palettenet"
        assert reply["model_metadata"]["file"] == str(weights)
        assert reply["methods"] == ["palettenet", "chang2015"]
        assert reply["limits"]["max_pixels"] == MAX_PIXELS
        assert reply["limits"]["max_message_bytes"] >= MAX_PIXELS * 16


def raw(header) -> bytes:
    return json.dumps({"protocol": PROTOCOL, **header}).encode()


GOOD = {"op": "recolor", "id": "x", "width": 4, "height": 2, "pixel_format": "RGBA8",
        "palette": ["#102030", "#ffeedd"]}  # fmt: skip
NAN = np.full((2, 4, 4), np.nan, "<f4")
ERRORS = [
    ([b"{not json"], "bad_request", "JSON"),
    ([raw({**GOOD, "op": "frobnicate"}), bytes(32)], "bad_request", "frobnicate"),
    ([raw({k: v for k, v in GOOD.items() if k != "width"}), bytes(32)], "bad_request", "width"),
    ([raw({**GOOD, "pixel_format": "RGB565"}), bytes(16)], "unsupported_format", "RGB565"),
    ([raw(GOOD), bytes(31)], "size_mismatch", "needs 32"),
    ([raw(GOOD), bytes(32), bytes(7)], "size_mismatch", "mask frame"),
    ([raw({**GOOD, "palette": ["#fff", "#12"]}), bytes(32)], "bad_palette", "entry 2"),
    ([raw({**GOOD, "palette": []}), bytes(32)], "bad_palette", "1 to 12"),
    (
        [raw({**GOOD, "method": "chang2015", "source_palette": ["#000"]}), bytes(32)],
        "bad_palette",
        "correspond",
    ),
    ([raw({**GOOD, "width": 10**6, "height": 10**6}), bytes(32)], "too_large", "at most"),
    ([raw({**GOOD, "pixel_format": "RGBAF32"}), NAN.tobytes()], "bad_request", "NaN"),
    ([raw({**GOOD, "options": {"max_sid": 3}}), bytes(32)], "bad_request", "max_sid"),
]


@pytest.mark.parametrize("frames,code,words", ERRORS)
def test_every_failure_is_one_frame_naming_what_was_wrong(client, frames, code, words):
    reply = client.exchange(frames)
    assert len(reply) == 1
    header = json.loads(reply[0])
    assert header["ok"] is False and header["error"]["code"] == code, header
    assert words in header["error"]["message"]
    if frames[0].startswith(b'{"'):
        assert header["id"] == "x"


def test_too_large_is_refused_from_the_header_alone(client):
    # A trillion pixels claimed, 32 bytes sent: refused without trying to read them.
    start = time.perf_counter()
    frames = [raw({**GOOD, "width": 10**6, "height": 10**6, "pixel_format": "RGBAF32"}),
              bytes(32)]  # fmt: skip
    header = json.loads(client.exchange(frames)[0])
    assert header["error"]["code"] == "too_large"
    assert time.perf_counter() - start < 2
    pixels = np.zeros((1001, 1000, 4), np.uint8)  # just over the daemon's 1 MP limit, sent
    reply, _ = client.request(recolor_header(pixels, "RGBA8"), pixels)
    assert reply["error"]["code"] == "too_large" and "1000000" in reply["error"]["message"]
    assert client.request({"op": "ping"})[0]["ok"]


def test_ping_is_answered_while_a_long_job_runs(daemon):
    pixels = photo_pixels(small_photo("astronaut", 1000), "RGBA8")
    replies = {}

    def long_job():
        with Client(daemon.address, timeout_s=120) as client:
            replies["job"] = client.request(recolor_header(pixels, "RGBA8"), pixels)[0]
            replies["job_done"] = time.perf_counter()

    worker = threading.Thread(target=long_job)
    worker.start()
    with Client(daemon.address, timeout_s=10) as client:
        while client.request({"op": "info"})[0]["running"] == 0 and "job" not in replies:
            time.sleep(0.02)
        start = time.perf_counter()
        assert client.request({"op": "ping"})[0]["ok"]
        answered = time.perf_counter()
    worker.join()
    assert replies["job"]["ok"], replies["job"]
    assert answered - start < 0.5 and answered < replies["job_done"]


def test_16_concurrent_clients_with_random_requests_all_get_their_own_reply(daemon, engine):
    rng = random.Random(4)
    cases = []
    for index in range(16):
        pixel_format, method = rng.choice(FORMATS), rng.choice(["palettenet", "chang2015"])
        height, width = rng.randint(4, 72), rng.randint(4, 72)
        rgb = np.random.default_rng(index).integers(0, 256, (height, width, 3), np.uint8)
        pixels = photo_pixels(rgb, pixel_format)
        mask = np.random.default_rng(index).integers(0, 256, (height, width), np.uint8)
        header = recolor_header(pixels, pixel_format, method, id=f"client-{index}")
        cases.append((header, pixels, mask if index % 3 == 0 else None))
    results = [None] * len(cases)
    start_together = threading.Barrier(len(cases))

    def run(index):
        header, pixels, mask = cases[index]
        with Client(daemon.address, timeout_s=120) as client:
            start_together.wait()
            results[index] = client.request(header, pixels, mask)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(cases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for (header, pixels, mask), (reply, frames) in zip(cases, results):
        assert reply["ok"] and reply["id"] == header["id"], reply
        expected = in_process(engine, header, pixels, mask)[1][0]
        np.testing.assert_array_equal(as_pixels(frames[0], pixels), as_pixels(expected, pixels))


def test_a_client_vanishing_mid_request_does_not_disturb_others(daemon):
    pixels = photo_pixels(small_photo("astronaut", 600), "RGBA8")
    context = zmq.Context()
    leaving = context.socket(zmq.REQ)
    leaving.linger = 0
    leaving.connect(daemon.address)
    leaving.send_multipart(encode_request(recolor_header(pixels, "RGBA8"), pixels))
    leaving.close()
    context.term()
    small = photo_pixels(small_photo("coffee", 32), "RGBA8")
    with Client(daemon.address, timeout_s=60) as client:
        reply, frames = client.request(recolor_header(small, "RGBA8", "chang2015"), small)
        assert reply["ok"] and len(frames[0]) == small.nbytes
        assert client.request({"op": "ping"})[0]["ok"]


def test_server_and_in_process_cli_write_the_same_pixels(daemon, weights, tmp_path):
    source = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray(photo_pixels(small_photo("rocket", 64), "RGBA8")).save(source)
    common = ["recolor", str(source), "-p", ",".join(PALETTE), "--weights", str(weights)]
    main([*common, "-o", str(tmp_path / "local.png"), "--device", "cpu"])
    main([*common, "-o", str(tmp_path / "remote.png"), "--server", daemon.address])
    local = np.asarray(Image.open(tmp_path / "local.png"))
    remote = np.asarray(Image.open(tmp_path / "remote.png"))
    np.testing.assert_array_equal(local, remote)
    assert not np.array_equal(local, np.asarray(Image.open(source)))


# --- fuzzing ------------------------------------------------------------------------------
def mutated_headers():
    values = st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
        st.text(max_size=12), st.lists(st.text(max_size=8), max_size=14),
        st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
    )  # fmt: skip
    fields = list(GOOD) + ["method", "source_palette", "options", "protocol"]
    edits = st.dictionaries(st.sampled_from(fields), values, max_size=4)
    dropped = st.sets(st.sampled_from(list(GOOD)), max_size=2)
    ops = st.sampled_from(["recolor", "palette", "ping", "info"])

    def build(op, edit, drop):
        header = {"protocol": PROTOCOL, **GOOD, "op": op, **edit}
        return json.dumps({k: v for k, v in header.items() if k not in drop}).encode()

    return st.builds(build, ops, edits, dropped)


frames_strategy = st.tuples(
    st.one_of(st.binary(max_size=64), mutated_headers()),
    st.lists(st.binary(max_size=48), max_size=3),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(message=frames_strategy)
def test_fuzzed_requests_each_get_one_reply_and_the_daemon_keeps_answering(daemon, message):
    header, payload = message
    with Client(daemon.address, timeout_s=20) as client:
        reply = client.exchange([header, *payload])
        decoded = json.loads(reply[0])
        assert isinstance(decoded["ok"], bool)
        if not decoded["ok"]:
            assert len(reply) == 1 and decoded["error"]["message"]
        assert client.request({"op": "ping"})[0]["ok"]
