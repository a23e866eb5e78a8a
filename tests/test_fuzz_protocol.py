"""Property-based fuzzing of request parsing (backend.service.protocol), in process and fast: any
frames at all give a Request or a ProtocolError with a documented code that is not
`internal`, never another exception (issue #12: nesting, wrong types, frame counts)."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.service.protocol import (
    MAX_HEADER_BYTES,
    MAX_JSON_DEPTH,
    ProtocolError,
    encode_request,
    json_depth_exceeds,
    parse_request,
    request_id,
)
from backend.wire import ERROR_CODES, PROTOCOL

FIELDS = ["protocol", "op", "id", "width", "height", "pixel_format", "palette", "method",
          "source_palette", "options", "icc_profile"]  # fmt: skip
GOOD = {"protocol": PROTOCOL, "op": "recolor", "id": "x", "width": 4, "height": 2,
        "pixel_format": "RGBA8", "palette": ["#102030", "#ffeedd"]}  # fmt: skip

# Any JSON value, nested a little (deep nesting has its own strategy below).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
    | st.text(max_size=12) | st.sampled_from(["RGBA8", "recolor", "ping", "palettenet", "#fff"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip


def nested(depth: int, inner: str = "0") -> str:
    return "[" * depth + inner + "]" * depth


@st.composite
def headers(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "typed", "nested", "deep_text"]))
    if kind == "bytes":  # anything, JSON or not
        return draw(st.binary(max_size=120))
    header = dict(GOOD, op=draw(st.sampled_from(["recolor", "palette", "ping", "info"])))
    for name in draw(st.sets(st.sampled_from(FIELDS), max_size=4)):  # wrong types, values
        header[name] = draw(json_values)
    if draw(st.booleans()):
        header.pop(draw(st.sampled_from(FIELDS)), None)
    text = json.dumps(header, allow_nan=True)
    if kind == "nested":  # nesting in a known field or one the parser ignores
        depth = draw(st.integers(1, 3000))
        field = draw(st.sampled_from(["palette", "options", "ignored", "pixel_format", "id"]))
        text = text[:-1] + f', "{field}": {nested(depth)}}}'
    elif kind == "deep_text":  # a bare nested value, objects, brackets inside strings
        depth = draw(st.integers(1, 5000))
        text = draw(st.sampled_from([nested(depth), '{"a":' * depth + "1" + "}" * depth,
                                     json.dumps({"s": "[" * depth, **GOOD})]))  # fmt: skip
    return text.encode()


@settings(max_examples=600, deadline=None)
@given(
    header=headers(),
    payload=st.lists(st.binary(max_size=40), max_size=5),
    max_pixels=st.sampled_from([1, 8, 1000]),
)
def test_any_frames_give_a_request_or_a_documented_error_never_internal(
    header, payload, max_pixels
):
    frames = [header, *payload]
    try:
        request = parse_request(frames, max_pixels=max_pixels)
    except ProtocolError as error:
        assert error.code in ERROR_CODES and error.code != "internal", error.code
        assert error.message and len(error.message) < 400  # client values are cut short
        assert error.request_id is None or isinstance(error.request_id, str)
        reply = json.loads(error.reply().encode()[0])
        assert reply["ok"] is False and reply["error"]["code"] == error.code
    else:
        assert request.op in ("ping", "info", "recolor", "palette")
        if request.op in ("recolor", "palette"):
            request.layer()  # the engine's first step: may refuse, never crash
    assert request_id(frames) is None or isinstance(request_id(frames), str)


@settings(max_examples=300, deadline=None)
@given(value=json_values, depth=st.integers(0, 12))
def test_the_depth_scan_agrees_with_the_json_parser(value, depth):
    text = nested(depth, json.dumps(value))
    real = depth + _depth(value)
    assert json_depth_exceeds(text.encode(), MAX_JSON_DEPTH) == (real > MAX_JSON_DEPTH)


def _depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@pytest.mark.parametrize(
    "header",
    [
        nested(100_000).encode()[:MAX_HEADER_BYTES],  # the ~1 KB killer of issue #12, bigger
        json.dumps({**GOOD, "ignored": [[[[[[[[[[[0]]]]]]]]]]]}).encode(),
        b'{"a": "' + b'\\"' * 30_000 + b"[[[[",  # an unterminated string: linear, refused
        b'"' * MAX_HEADER_BYTES,
    ],
)
def test_deep_or_pathological_headers_are_refused_quickly(header):
    import time

    start = time.perf_counter()
    with pytest.raises(ProtocolError) as caught:
        parse_request([header, b"x"])
    assert caught.value.code == "bad_request"
    assert time.perf_counter() - start < 0.5


def test_wrong_types_get_their_documented_codes():
    cases = [
        ({"pixel_format": []}, "unsupported_format"),
        ({"pixel_format": {"a": 1}}, "unsupported_format"),
        ({"op": ["recolor"]}, "bad_request"),
        ({"method": {}}, "bad_request"),
        ({"palette": [["#fff"]]}, "bad_palette"),
        ({"width": "4"}, "bad_request"),
        ({"id": 7}, "bad_request"),
        ({"options": []}, "bad_request"),
    ]
    for edit, code in cases:
        with pytest.raises(ProtocolError) as caught:
            parse_request(encode_request({**GOOD, **edit}, bytes(32)))
        assert caught.value.code == code, (edit, caught.value.message)
        expected_id = "x" if "id" not in edit else None
        assert caught.value.request_id == expected_id


def test_too_many_frames_are_refused_before_the_header_is_parsed():
    with pytest.raises(ProtocolError) as caught:
        parse_request([json.dumps(GOOD).encode()] + [b""] * 10_000)
    assert caught.value.code == "bad_request" and "at most 4 frames" in caught.value.message
    assert caught.value.request_id == "x"


def test_a_mask_selecting_no_visible_pixel_is_bad_request_for_palettenet_pairing(
    tmp_path_factory,
):
    """The one check that reads pixels, made by the engine (in the daemon's workers)."""
    from backend.service.engine import Engine
    from tests.servers import random_weights

    engine = Engine(random_weights(tmp_path_factory.mktemp("weights")), "cpu")

    def answer(header, pixels, mask):
        frames = engine.handle(encode_request(header, pixels, mask), 10**6)
        return json.loads(bytes(frames[0]))

    pixels = np.full((2, 4, 4), 200, np.uint8)
    mask = np.zeros((2, 4), np.uint8)
    reply = answer(GOOD, pixels, mask)
    assert reply["error"]["code"] == "bad_request"
    assert "selects no visible pixel" in reply["error"]["message"]
    # chang2015, a source palette, or an invisible layer: nothing to pair, as before
    for edit in ({"method": "chang2015"}, {"source_palette": ["#000", "#fff"]}):
        assert answer({**GOOD, **edit}, pixels, mask)["ok"]
    transparent = pixels.copy()
    transparent[..., 3] = 0
    assert answer(GOOD, transparent, mask)["ok"]


def test_sizes_too_large_to_print_are_too_large_not_internal():
    """width = height = 10**2200: their product has more digits than str() may print."""
    header = {**GOOD, "width": 10**2200, "height": 10**2200}
    with pytest.raises(ProtocolError) as caught:
        parse_request(encode_request(header, bytes(32)))
    assert caught.value.code == "too_large" and caught.value.request_id == "x"
    assert "digits" in caught.value.message and len(caught.value.message) < 300


def _profile():
    import imagecodecs

    prophoto = (0.7347, 0.2653, 0.1596, 0.8404, 0.0366, 0.0001)
    d50 = (0.3457, 0.3585)
    return imagecodecs.cms_profile("rgb", whitepoint=d50, primaries=prophoto, gamma=1.8)


@st.composite
def icc_profiles(draw) -> str:
    """A real RGB profile with bytes overwritten, cut short or grown; or any base64."""
    import base64

    profile = bytearray(_profile())
    kind = draw(st.sampled_from(["flips", "cut", "grown", "random"]))
    if kind == "flips":  # the 'acsp' signature and colour space kept, so LittleCMS parses it
        for _ in range(draw(st.integers(1, 12))):
            position = draw(st.integers(0, len(profile) - 1))
            if not (16 <= position < 20 or 36 <= position < 40):
                profile[position] = draw(st.integers(0, 255))
    elif kind == "cut":
        profile = profile[: draw(st.integers(132, len(profile)))]
    elif kind == "grown":
        profile += draw(st.binary(max_size=64))
    else:
        profile = bytearray(draw(st.binary(max_size=300)))
    return base64.b64encode(bytes(profile)).decode()


@pytest.fixture(scope="module")
def plain_engine(tmp_path_factory):
    from backend.service.engine import Engine

    return Engine(tmp_path_factory.mktemp("none") / "none.pt", "cpu", load_model=False)


@settings(max_examples=300, deadline=None)
@given(profile=icc_profiles(), pixel_format=st.sampled_from(["BGRA8", "BGRA16", "RGBAF32"]))
def test_any_icc_profile_gives_a_result_or_a_clear_error(plain_engine, profile, pixel_format):
    """A request's icc_profile mangled every way: parsed, then converted by LittleCMS in the
    engine. The answer is a result in the request's format or bad_request naming
    icc_profile, never internal, and the engine answers the next request."""
    header = {"op": "recolor", "width": 3, "height": 2, "pixel_format": pixel_format,
              "palette": ["#102030", "#ffeedd"], "method": "chang2015",
              "icc_profile": profile}  # fmt: skip
    size = {"BGRA8": 4, "BGRA16": 8, "RGBAF32": 16}[pixel_format]
    pixels = np.full(6 * size, 60, np.uint8) if size != 16 else np.full(24, 0.3, np.float32)
    reply = json.loads(bytes(plain_engine.handle(encode_request(header, pixels), 100)[0]))
    if reply["ok"]:
        assert reply["pixel_format"] == pixel_format and reply["icc_profile"] is True
    else:
        assert reply["error"]["code"] == "bad_request", reply
        assert reply["error"].get("field") == "icc_profile", reply
    good = {**header, "icc_profile": None}
    assert json.loads(bytes(plain_engine.handle(encode_request(good, pixels), 100)[0]))["ok"]
