"""One mapping for many pieces: recolor requests that carry the same reference image (an
animation's frames, a sprite set, a folder of files, side by side) give one colour one
result in every piece, with PaletteNet as with chang2015."""

import numpy as np
import pytest

from backend import DEFAULT_WEIGHTS
from backend.service.engine import Engine
from backend.service.protocol import (
    ProtocolError,
    decode_reply,
    encode_request,
    parse_request,
)
from tests.conftest import small_photo

PALETTE = ["#264653", "#2a9d8f", "#e9c46a", "#f4a261", "#e76f51", "#8ab17d"]


@pytest.fixture(scope="module")
def engine():
    return Engine(DEFAULT_WEIGHTS, "cpu")


def frames_of_a_pan(count=3, shift=12):
    """An animation's frames: a camera pan over one photo (RGBA8, opaque, 96 x 64)."""
    photo = small_photo("astronaut", 128)
    frames = []
    for index in range(count):
        rgb = photo[10 : 10 + 64, index * shift : index * shift + 96]
        alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
        frames.append(np.ascontiguousarray(np.concatenate([rgb, alpha], axis=2)))
    return frames


def stacked(frames):
    return np.ascontiguousarray(np.concatenate(frames, axis=0))


def header_for(pixels, method, reference=None, **more):
    height, width = pixels.shape[:2]
    header = {"op": "recolor", "id": "t", "width": width, "height": height,
              "pixel_format": "RGBA8", "method": method, "palette": PALETTE, **more}  # fmt: skip
    if reference is not None:
        header["reference"] = {"width": reference.shape[1], "height": reference.shape[0],
                               "pixel_format": "RGBA8"}  # fmt: skip
    return header


def recolored(engine, pixels, method, reference=None, mask=None, **more):
    frames = encode_request(header_for(pixels, method, reference, **more), pixels, mask, reference)
    reply, payload = decode_reply(engine.handle(frames, 1 << 24))
    assert reply["ok"], reply
    return np.frombuffer(payload[0], np.uint8).reshape(pixels.shape)


def largest_spread_of_one_colour(frames, results) -> int:
    """The largest difference (0..255 per channel) between the results that one input
    colour gets, over every pixel of every frame."""
    codes = np.concatenate([f[..., :3].reshape(-1, 3) for f in frames]).astype(np.int64)
    codes = (codes[:, 0] << 16) | (codes[:, 1] << 8) | codes[:, 2]
    out = np.concatenate([r[..., :3].reshape(-1, 3) for r in results]).astype(np.int64)
    order = np.argsort(codes, kind="stable")
    codes, out = codes[order], out[order]
    first = np.searchsorted(codes, codes)  # each pixel's first pixel of the same colour
    return int(np.abs(out - out[first]).max())


@pytest.mark.parametrize("method", ["palettenet", "chang2015"])
def test_frames_sent_with_one_reference_are_recoloured_alike(engine, method):
    frames = frames_of_a_pan()
    reference = stacked(frames)
    results = [recolored(engine, frame, method, reference) for frame in frames]
    assert largest_spread_of_one_colour(frames, results) == 0
    for frame, result in zip(frames, results):
        assert np.abs(result.astype(int) - frame).mean() > 5  # really recoloured
        assert (result[..., 3] == frame[..., 3]).all()  # alpha kept


def test_without_a_reference_palettenet_frames_differ(engine):
    """What the reference is for: each frame mapped on its own varies from frame to frame
    (the network sees different surroundings), visibly."""
    frames = frames_of_a_pan()
    results = [recolored(engine, frame, "palettenet") for frame in frames]
    assert largest_spread_of_one_colour(frames, results) > 10


def test_a_reference_with_a_source_palette_and_a_mask(engine):
    frames = frames_of_a_pan(2)
    reference = stacked(frames)
    source = ["#1b1b2f", "#4a4e69", "#9a8c98", "#c9ada7", "#f2e9e4", "#22223b"]
    mask = np.zeros(frames[0].shape[:2], np.uint8)
    mask[:, :40] = 255
    results = [recolored(engine, f, "palettenet", reference, mask, source_palette=source)
               for f in frames]  # fmt: skip
    assert largest_spread_of_one_colour([f[:, :40] for f in frames],
                                        [r[:, :40] for r in results]) == 0  # fmt: skip
    for frame, result in zip(frames, results):
        assert (result[:, 40:] == frame[:, 40:]).all()  # outside the mask untouched
        assert (result[:, :40] != frame[:, :40]).any()


@pytest.mark.parametrize("method", ["palettenet", "chang2015"])
def test_a_transparent_reference_leaves_the_piece_as_it_was(engine, method):
    """A reference of pieces with nothing visible: there is nothing to map by."""
    frame = frames_of_a_pan(1)[0]
    reference = np.zeros((8, 8, 4), np.uint8)
    assert (recolored(engine, frame, method, reference) == frame).all()


def test_the_mapping_is_found_once_per_reference(engine):
    frames = frames_of_a_pan()
    reference = stacked(frames)
    engine.shared_maps.cache.clear()
    for frame in frames:
        recolored(engine, frame, "palettenet", reference)
    assert len(engine.shared_maps.cache) == 1
    recolored(engine, frames[0], "palettenet", reference, source_palette=PALETTE[::-1])
    assert len(engine.shared_maps.cache) == 2


def parse(header, *payload, max_pixels=1 << 24):
    return parse_request(encode_request(header, *payload), max_pixels)


@pytest.mark.parametrize(
    "change, payload, code, words",
    [
        ({}, "no reference frame", "bad_request", "no reference frame"),
        ({"reference": [8, 8]}, "reference", "bad_request", "must be a JSON object"),
        ({"reference": {"width": 8, "height": 0, "pixel_format": "RGBA8"}}, "reference",
         "bad_request", "reference.height"),
        ({"reference": {"width": 8, "height": 8, "pixel_format": "CMYK"}}, "reference",
         "unsupported_format", "reference.pixel_format"),
        ({"reference": {"width": 4096, "height": 4096, "pixel_format": "RGBA8"}}, "reference",
         "too_large", "reduce it"),
        ({"reference": {"width": 9, "height": 8, "pixel_format": "RGBA8"}}, "reference",
         "size_mismatch", "reference frame"),
        ({"op": "palette"}, "reference", "bad_request", "palette takes no reference"),
    ],
)  # fmt: skip
def test_a_bad_reference_is_refused_before_any_pixel_is_read(change, payload, code, words):
    pixels = np.zeros((4, 4, 4), np.uint8)
    reference = np.zeros((8, 8, 4), np.uint8)
    header = header_for(pixels, "palettenet", reference)
    header.update(change)
    frames = (pixels, None, None) if payload == "no reference frame" else (pixels, None, reference)
    with pytest.raises(ProtocolError) as error:
        parse(header, *frames)
    assert error.value.code == code
    assert words in error.value.message


def test_a_reference_pixel_that_is_not_a_number_is_named(engine):
    pixels = np.zeros((4, 4, 4), np.float32)
    reference = np.zeros((2, 2, 4), np.float32)
    reference[1, 0, 0] = np.nan
    header = header_for(pixels, "palettenet", reference, pixel_format="RGBAF32")
    header["reference"]["pixel_format"] = "RGBAF32"
    reply, _ = decode_reply(engine.handle(encode_request(header, pixels, None, reference), 64))
    assert reply["error"]["code"] == "bad_request"
    assert "reference pixel at x=0, y=1" in reply["error"]["message"]


def test_previews_with_a_reference_encode_it_once_and_follow_each_palette(engine, monkeypatch):
    """A swatch dragged while several frames are shown: each new palette costs the decoder
    and the mapping's fit, not the encoder (the reference's encoding is kept)."""
    import backend.service.engine as engine_module

    encodings = []
    encode = engine_module.encode
    monkeypatch.setattr(engine_module, "encode", lambda *a: encodings.append(1) or encode(*a))
    frames = frames_of_a_pan()
    reference = stacked(frames)
    engine.shared_maps.cache.clear()
    results = []
    for target in (PALETTE, PALETTE[:5] + ["#ff00aa"], PALETTE[:5] + ["#00ffee"]):
        options = {"options": {"max_side": 48}}
        results.append(recolored_preview(engine, frames[0], reference, target, options))
    assert len(encodings) == 1
    assert results[0].shape == (32, 48, 4)
    assert not np.array_equal(results[0], results[1])  # each palette shown


def recolored_preview(engine, pixels, reference, palette, more):
    header = header_for(pixels, "palettenet", reference, **more)
    header["palette"] = palette
    reply, payload = decode_reply(engine.handle(encode_request(header, pixels, None, reference),
                                                1 << 24))  # fmt: skip
    assert reply["ok"], reply
    return np.frombuffer(payload[0], np.uint8).reshape(reply["height"], reply["width"], 4)
