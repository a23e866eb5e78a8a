"""Request checking and fair queueing (backend.service: protocol, fairqueue), no sockets."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.service.fairqueue import FairQueue
from backend.service.protocol import ProtocolError, encode_request, parse_request
from backend.wire import PROTOCOL, bytes_per_pixel

SEGMENT = "palettenet-42-" + "a" * 32  # well-formed shared memory file names
OTHER = "palettenet-42-" + "b" * 32


@settings(max_examples=300, deadline=None)
@given(
    header=st.one_of(
        st.binary(max_size=80),
        st.dictionaries(
            st.sampled_from(["protocol", "op", "id", "width", "height", "pixel_format",
                             "palette", "method", "source_palette", "options", "reference",
                             "shared_memory"]),
            st.one_of(st.none(), st.integers(-5, 2**40), st.floats(), st.text(max_size=10),
                      st.lists(st.text(max_size=8), max_size=13), st.dictionaries(
                          st.sampled_from(["k", "max_side", "x", "width", "height"]),
                          st.integers(-3, 20)),
                      st.fixed_dictionaries({"width": st.integers(-1, 40), "height":
                          st.integers(-1, 3), "pixel_format": st.sampled_from(
                              ["RGBA8", "RGB8", "x"])}),
                      st.dictionaries(st.sampled_from(["pixels", "mask", "reply", "x"]),
                          st.sampled_from([SEGMENT, OTHER, "../x", 3]))),
        ).map(lambda h: json.dumps(h).encode()),
    ),
    payload=st.lists(st.binary(max_size=40), max_size=4),
)  # fmt: skip
def test_any_frames_give_a_request_or_a_protocol_error(header, payload):
    try:
        request = parse_request([header, *payload], max_pixels=1000)
    except ProtocolError as error:
        assert error.message
        return
    if request.shared_memory is not None:  # the daemon checks the files' sizes
        assert request.pixels is None and set(request.shared_memory) <= {"pixels", "mask", "reply"}
    elif request.op in ("recolor", "palette"):
        per_pixel = bytes_per_pixel(request.pixel_format)
        assert len(request.pixels) == request.width * request.height * per_pixel
    if request.reference is not None:
        reference = request.reference
        per_pixel = bytes_per_pixel(reference.pixel_format)
        assert len(reference.pixels) == reference.width * reference.height * per_pixel


def test_too_large_is_decided_before_the_pixel_frame_is_looked_at():
    header = {"op": "recolor", "width": 10**6, "height": 10**6, "pixel_format": "RGBA8",
              "palette": ["#fff"]}  # fmt: skip
    with pytest.raises(ProtocolError) as caught:
        parse_request(encode_request(header, b"tiny"), max_pixels=10**8)
    assert caught.value.code == "too_large"


def test_a_valid_request_is_parsed_to_srgb_palettes_and_zero_copy_pixels():
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = {"op": "recolor", "id": "a", "width": 3, "height": 2, "pixel_format": "RGBA8",
              "palette": ["#ffffff", "#000"], "method": "chang2015",
              "source_palette": ["#f00", "#00f"], "options": {"max_side": 64}}  # fmt: skip
    request = parse_request(encode_request(header, pixels))
    assert (request.op, request.id, request.method, request.max_side) == (
        "recolor", "a", "chang2015", 64
    )  # fmt: skip
    np.testing.assert_array_equal(request.palette, [[1, 1, 1], [0, 0, 0]])  # sRGB; LAB: engine
    np.testing.assert_array_equal(request.source_palette, [[1, 0, 0], [0, 0, 1]])
    assert request.pixel_format == "RGBA8"
    assert bytes(request.pixels) == pixels.tobytes()
    assert json.loads(encode_request(header)[0])["protocol"] == PROTOCOL


def test_clients_are_served_in_turn_whatever_their_backlog():
    queue = FairQueue(max_jobs=100, max_per_client=10)
    for index in range(5):
        assert queue.put(b"busy artist", f"a{index}") is None
    assert queue.put(b"other", "b0") is None
    order = [queue.take(0)[0] for _ in range(6)]
    assert order[:2] == ["a0", "b0"] and order[2:] == ["a1", "a2", "a3", "a4"]
    assert queue.take(0.01) == []


def test_queue_limits_and_batches_of_one_kind():
    queue = FairQueue(max_jobs=4, max_per_client=2)
    assert queue.put(b"a", ("net", 1)) is None and queue.put(b"a", ("net", 2)) is None
    assert "already has 2" in queue.put(b"a", ("net", 3))
    assert queue.put(b"b", ("chang", 1)) is None and queue.put(b"c", ("net", 4)) is None
    assert "full" in queue.put(b"d", ("net", 5))
    batch = queue.take(0, max_batch=3, key=lambda job: job[0])
    assert batch == [("net", 1), ("net", 4), ("net", 2)]  # a, then c, then a again; not b
    assert queue.take(0, max_batch=3, key=lambda job: job[0]) == [("chang", 1)]


def shared(names: dict, **more) -> dict:
    return {"op": "recolor", "id": "s", "width": 3, "height": 2, "pixel_format": "RGBA8",
            "palette": ["#fff"], "shared_memory": names, **more}  # fmt: skip


def test_shared_memory_names_are_checked_before_anything_is_opened():
    request = parse_request(encode_request(shared({"pixels": SEGMENT})))
    assert request.shared_memory == {"pixels": SEGMENT} and request.pixels is None
    assert request.segment_sizes() == {"pixels": 24, "mask": 6, "reply": 24}
    refused = [
        ({"pixels": "/etc/passwd"}, {}, [], "not a name"),
        ({"pixels": "../" + SEGMENT}, {}, [], "not a name"),
        ({"pixels": SEGMENT + "/x"}, {}, [], "not a name"),
        ({"pixels": "palettenet-1-" + "A" * 32}, {}, [], "not a name"),
        ({"pixels": 7}, {}, [], "not a name"),
        ({"mask": SEGMENT}, {}, [], "pixels is missing"),
        ({"pixels": SEGMENT, "reply": SEGMENT}, {}, [], "of its own"),
        ({"pixels": SEGMENT, "input": OTHER}, {}, [], "unknown role"),
        ({"pixels": SEGMENT, "reply": OTHER}, {"options": {"max_side": 64}}, [], "full-size"),
        ([SEGMENT], {}, [], "JSON object"),
        ({"pixels": SEGMENT}, {}, [bytes(24)], "no frame but the reference"),
    ]
    for names, more, payload, reason in refused:
        with pytest.raises(ProtocolError) as caught:
            parse_request(encode_request(shared(names, **more)) + payload)
        assert caught.value.field == "shared_memory" and reason in caught.value.message
        assert caught.value.reply().header["error"]["field"] == "shared_memory"
        assert caught.value.request_id == "s"  # echoed in the reply


def test_a_reference_frame_comes_alone_after_a_shared_memory_header():
    header = shared({"pixels": SEGMENT, "reply": OTHER},
                    reference={"width": 1, "height": 1, "pixel_format": "RGBA8"})  # fmt: skip
    request = parse_request(encode_request(header, reference=bytes(4)))
    assert bytes(request.reference.pixels) == bytes(4) and request.pixels is None
    with pytest.raises(ProtocolError, match="no reference frame"):
        parse_request(encode_request(header))
