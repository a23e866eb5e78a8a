"""The engine's batching: several palettenet requests through the network at once give what
each gives alone (the daemon batches on CUDA; here on the CPU, with --max-batch)."""

import threading

import numpy as np
import pytest

from backend.service.client import Client
from backend.service.daemon import Daemon, Settings
from backend.service.engine import Engine
from backend.service.protocol import decode_reply, encode_request, parse_request
from tests.conftest import small_photo
from tests.servers import as_pixels, photo_pixels, random_weights, recolor_header


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(random_weights(tmp_path_factory.mktemp("weights")), "cpu")


def requests(count):
    photos = ("astronaut", "coffee", "chelsea", "rocket")
    pixels = [photo_pixels(small_photo(photos[i % 4], 48)[:32], "RGBA8") for i in range(count)]
    return [(recolor_header(p, "RGBA8", id=f"r{i}"), p) for i, p in enumerate(pixels)]


def test_a_batch_gives_each_request_its_own_result(engine):
    cases = requests(3)
    parsed = [parse_request(encode_request(header, pixels)) for header, pixels in cases]
    assert len({engine.batch_key(request) for request in parsed}) == 1
    together = engine.run(parsed)
    for request, reply, (_, pixels) in zip(parsed, together, cases):
        (alone,) = engine.run([request])
        assert reply.header["id"] == request.id
        difference = as_pixels(reply.frames[0], pixels).astype(int) - as_pixels(
            alone.frames[0], pixels
        )
        assert np.abs(difference).max() <= 1  # batched convolutions may round differently


def test_a_daemon_with_batching_answers_concurrent_clients(engine):
    daemon = Daemon(engine, Settings(bind="tcp://127.0.0.1:*", max_batch=4))
    address = daemon.start()
    serving = threading.Thread(target=daemon.serve)
    serving.start()
    cases, results = requests(4), [None] * 4

    def run(index):
        with Client(address, timeout_s=60) as client:
            results[index] = client.request(*cases[index])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    daemon.stop()
    serving.join()
    for (header, pixels), (reply, frames) in zip(cases, results):
        assert reply["ok"] and reply["id"] == header["id"]
        alone = decode_reply(engine.handle(encode_request(header, pixels), 10**6))[1][0]
        difference = as_pixels(frames[0], pixels).astype(int) - as_pixels(alone, pixels)
        assert np.abs(difference).max() <= 1


@pytest.mark.parametrize("method", ["palettenet", "chang2015"])
@pytest.mark.parametrize("pixel_format", ["RGBA8", "RGBAF32", "RGBA16_LINEAR"])
def test_an_identity_edit_gives_the_layer_back_bit_for_bit(engine, method, pixel_format):
    """source_palette equal to the palette maps every colour to itself: nothing may move."""
    pixels = photo_pixels(small_photo("coffee", 40), pixel_format.removesuffix("_LINEAR"))
    palette = ["#0b1d51", "#725ac1", "#f7ece1"]
    header = recolor_header(pixels, pixel_format, method, palette=palette,
                            source_palette=palette)  # fmt: skip
    reply = decode_reply(engine.handle(encode_request(header, pixels), 10**6))
    assert reply[0]["ok"] and bytes(reply[1][0]) == pixels.tobytes()


def test_the_palette_step_shares_its_flat_art_answer_and_changes_no_result(engine):
    """The palette step counts the layer's colours once for the palette and the flat-art
    check; finish then skips its own count, and the reply is the same as without it."""
    from backend.core.colormap import is_flat_art
    from backend.core.pixels import FORMATS, Layer
    from backend.core.recolor import finish, predict, prepare

    flat = np.zeros((96, 128, 4), np.uint8)
    flat[..., 3] = 255
    flat[:, :64, :3] = (200, 40, 30)
    flat[:48, 64:, :3] = (20, 90, 200)
    flat[48:, 64:, :3] = (240, 240, 220)
    for pixels in (flat, photo_pixels(small_photo("astronaut", 700), "RGBA8")):
        layer = Layer(np.ascontiguousarray(pixels), FORMATS["RGBA8"])
        target = np.array([[30.0, 20, -40], [60, 40, 30], [90, -5, 10]])
        paired, source, flat_art = engine.palettes.pair(target, layer)
        assert flat_art == is_flat_art(*layer.palette_sample())
        working = prepare(layer)
        (result,) = predict(engine.model, [working.rgb], [paired], sources=[source])
        shared, own = np.empty_like(pixels), np.empty_like(pixels)
        finish(layer, working, result, own)
        working.flat_art = flat_art
        finish(layer, working, result, shared)
        assert np.array_equal(shared, own)
    assert is_flat_art(flat[..., :3])
