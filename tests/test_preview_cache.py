"""The live preview's cache: bounded in bytes and age, keyed by what decides the working image."""

from dataclasses import dataclass

import pytest

from backend.service.preview_cache import MAX_CACHED_PIXELS, PreviewCache, layer_key


@dataclass
class FakeRequest:
    width: int = 4
    height: int = 3
    pixel_format: str = "RGBA8"
    max_side: int | None = 512
    pixels: bytes = bytes(48)
    mask: bytes | None = None


@dataclass
class Entry:
    nbytes: int


def test_the_key_changes_with_anything_that_changes_the_working_image():
    base = layer_key(FakeRequest(), "palettenet")
    assert base == layer_key(FakeRequest(), "palettenet")
    changed = [
        FakeRequest(pixels=bytes(47) + b"\x01"),
        FakeRequest(width=3, height=4),
        FakeRequest(pixel_format="BGRA8"),
        FakeRequest(max_side=256),
        FakeRequest(mask=bytes(12)),
    ]
    assert all(layer_key(request, "palettenet") != base for request in changed)
    assert layer_key(FakeRequest(), "chang2015") != base


def test_large_layers_are_not_cached():
    side = int(MAX_CACHED_PIXELS**0.5) + 1
    assert layer_key(FakeRequest(width=side, height=side, pixels=b""), "palettenet") is None
    cache = PreviewCache()
    cache.put(None, Entry(10))
    assert len(cache) == 0 and cache.get(None) is None


def test_the_cache_never_holds_more_than_its_byte_bound():
    cache = PreviewCache(max_bytes=100)
    for index in range(10):
        cache.put(bytes([index]), Entry(30))
        assert cache.nbytes <= 100
    assert len(cache) == 3
    assert cache.get(bytes([9])) is not None and cache.get(bytes([0])) is None
    cache.put(b"huge", Entry(1000))  # larger than the whole cache: simply not kept
    assert cache.get(b"huge") is None and cache.nbytes <= 100


def test_entries_expire_by_age():
    clock = [0.0]
    cache = PreviewCache(max_bytes=100, max_age_s=10, clock=lambda: clock[0])
    cache.put(b"a", Entry(1))
    clock[0] = 5
    assert cache.get(b"a") is not None
    clock[0] = 11
    assert cache.get(b"a") is None


@pytest.mark.parametrize("count", [1, 50])
def test_recently_used_entries_survive(count):
    cache = PreviewCache(max_bytes=3)
    cache.put(b"keep", Entry(1))
    for index in range(count):
        assert cache.get(b"keep") is not None
        cache.put(bytes([index]), Entry(1))
    assert cache.get(b"keep") is not None


# --- in the engine ------------------------------------------------------------------------
def test_a_dragged_swatch_reuses_the_layer_encoding_and_gives_the_uncached_result(tmp_path):
    """Successive previews of one layer with new palettes run the encoder once, and each
    answer is exactly what a fresh engine (nothing cached) gives for that palette."""
    import numpy as np

    from backend.service.engine import Engine
    from backend.service.protocol import encode_request, parse_request
    from tests.conftest import small_photo
    from tests.servers import photo_pixels, random_weights, recolor_header

    weights = random_weights(tmp_path)
    engine = Engine(weights, "cpu")
    encoder_calls = []
    original_encode = engine.model.encode
    engine.model.encode = lambda lab: encoder_calls.append(lab.shape) or original_encode(lab)
    pixels = photo_pixels(small_photo("astronaut", 96), "RGBA8")
    palettes = [
        ["#0b1d51", "#725ac1", "#8d86c9", "#cac4ce", "#f7ece1", "#e0b1cb"],
        ["#264653", "#2a9d8f", "#e9c46a", "#f4a261", "#e76f51", "#ffffff"],
        ["#000000", "#ff0000", "#00ff00", "#0000ff", "#ffff00", "#ffffff"],
    ]

    def preview(an_engine, palette):
        header = recolor_header(pixels, "RGBA8", palette=palette, options={"max_side": 64})
        (reply,) = an_engine.run([parse_request(encode_request(header, pixels))])
        assert reply.header["ok"], reply.header
        return np.frombuffer(reply.frames[0], np.uint8)

    answers = [preview(engine, palette) for palette in palettes]
    assert len(encoder_calls) == 1 and len(engine.previews) == 1
    for palette, answer in zip(palettes, answers):
        assert np.array_equal(answer, preview(Engine(weights, "cpu"), palette))
    assert not np.array_equal(answers[0], answers[2])

    pixels = pixels.copy()
    pixels[0, 0, 0] ^= 1  # the layer changed: a new encoding
    preview(engine, palettes[0])
    assert len(encoder_calls) == 2


def test_the_latency_benchmark_drags_one_swatch_round_the_hue_circle():
    import colorsys

    from backend.cli.preview_bench import dragged_palettes

    source = ["#000000", "#336699", "#ffffff"]
    palettes = dragged_palettes(source, swatch=1, count=30)
    assert len(palettes) == 30 and len({p[1] for p in palettes}) == 30
    assert all(p[0] == "#000000" and p[2] == "#ffffff" for p in palettes)
    hues = [colorsys.rgb_to_hsv(*(int(p[1][i : i + 2], 16) / 255 for i in (1, 3, 5)))[0]
            for p in palettes]  # fmt: skip
    start = colorsys.rgb_to_hsv(0x33 / 255, 0x66 / 255, 0x99 / 255)[0]
    assert abs(hues[-1] - start) < 0.01  # a full turn ends where it began
