"""The wire protocol palettenet/1: requests and replies as ZeroMQ multipart messages.

docs/PROTOCOL.md is the reference for client writers; this module is its one implementation,
used by the daemon, the broker, the client and the in-process CLI alike. A request is a JSON
header frame, then for `recolor` and `palette` a pixel frame and an optional mask frame, and
for a `recolor` that names a reference image (one mapping for many pieces) its pixel frame.
Everything a request claims is checked here against the limits before any pixel is touched:
a malformed or oversized request costs the daemon a JSON parse, never a big allocation.
Every input is untrusted: the header's size and nesting depth are bounded before json.loads
sees it, and every field's type is checked before it is used, so any bytes at all give a
Request or a ProtocolError with a documented code, never another exception.

Standard library and numpy only (the wire's constants are in backend.wire): the broker, which
imports this to route messages, never loads torch. Colours stay sRGB here; the engine turns
them into LAB.
"""

import base64
import binascii
import json
import re
from dataclasses import dataclass, field

import numpy as np

from backend.wire import (
    DEFAULT_PALETTE_COLORS,
    ERROR_CODES,
    MAX_ICC_PROFILE_BYTES,
    MAX_PALETTE_COLORS,
    MAX_REFERENCE_PIXELS,
    METHODS,
    OPS,
    PIXEL_FORMATS,
    PROTOCOL,
    SHARED_MEMORY_NAME,
    bytes_per_pixel,
)

OPTIONS = {"recolor": ("max_side",), "palette": ("k",), "ping": (), "info": ()}
MAX_HEADER_BYTES = 64 * 1024
# A valid header nests two deep ({"options": {...}}, {"palette": [...]}); deeper is refused
# before json.loads, whose recursion a few thousand brackets would exhaust.
MAX_JSON_DEPTH = 8
MAX_REQUEST_FRAMES = 4  # header, pixels, mask, reference
# A broker's workers (daemons run with --connect) send these after an empty frame: READY
# with their capacity on connecting and as a heartbeat, BYE when they stop taking work.
READY, BYE = b"READY", b"BYE"
DEFAULT_MAX_PIXELS = 1 << 27  # 134 megapixels: a 100-megapixel canvas with room to spare
LARGEST_PIXEL = max(bytes_per_pixel(name) for name in PIXEL_FORMATS)
_HEX = re.compile(r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_SEGMENT_NAME = re.compile(SHARED_MEMORY_NAME)
SEGMENT_ROLES = ("pixels", "mask", "reply")  # the shared_memory field's keys
# An ICC profile's fixed header and tag count: anything shorter is no profile.
ICC_HEADER_BYTES = 132


class ProtocolError(Exception):
    """A request that gets an error reply; `code` is one of ERROR_CODES, `request_id` the
    request's id when its header could be read (to echo in the reply), `field` the header
    field at fault where the reply says so ("shared_memory": the same request with frames
    instead may succeed; "icc_profile": the same pixels converted by the client may)."""

    def __init__(self, code: str, message: str, request_id: str | None = None, field=None):
        assert code in ERROR_CODES, code
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.field = field

    def reply(self) -> "Reply":
        return error_reply(self.request_id, self.code, self.message, self.field)


def max_message_bytes(max_pixels: int) -> int:
    """ZeroMQ's per-frame receive limit for a daemon with this pixel limit: the largest
    legal pixel frame plus room for the header, so every request within the limits arrives
    and can be answered (a larger frame makes ZeroMQ drop the connection unanswered)."""
    return max_pixels * LARGEST_PIXEL + MAX_HEADER_BYTES


def max_request_bytes(max_pixels: int) -> int:
    """All frames of the largest legal request together: header, pixels, mask, reference."""
    reference = min(max_pixels, MAX_REFERENCE_PIXELS) * LARGEST_PIXEL
    return MAX_HEADER_BYTES + max_pixels * (LARGEST_PIXEL + 1) + reference


# --- replies ------------------------------------------------------------------------------
@dataclass
class Reply:
    header: dict
    frames: list = field(default_factory=list)  # bytes-like: the pixels of a recolor reply

    def encode(self) -> list:
        return [json.dumps(self.header, default=str).encode(), *self.frames]


def ok_reply(request_id, **fields) -> Reply:
    return Reply({"ok": True, "id": request_id, **fields})


def error_reply(request_id, code: str, message: str, field: str | None = None) -> Reply:
    error = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return Reply({"ok": False, "id": request_id, "error": error})


def cut_short_reply(body: list, max_bytes: int) -> Reply:
    """The answer to a request that arrived with more frames or bytes than any legal one
    (the receiver kept only its start, see security.receive_bounded)."""
    message = (
        f"a request has at most {MAX_REQUEST_FRAMES} frames (header, pixels, mask, "
        f"reference) and "
        f"{max_bytes} bytes in all; the rest was discarded"
    )
    return error_reply(request_id(body), "bad_request", message)


def decode_reply(frames: list) -> tuple[dict, list]:
    """Reply frames -> (header dict, payload frames); for clients."""
    try:
        header = json.loads(bytes(frames[0]))
    except (IndexError, ValueError) as error:
        raise ValueError(f"not a {PROTOCOL} reply: {error}") from None
    return header, list(frames[1:])


# --- requests -----------------------------------------------------------------------------
def encode_request(header: dict, pixels=None, mask=None, reference=None) -> list:
    """A request's frames; `protocol` is filled in. pixels, mask and reference (the
    reference image's pixels, described by header["reference"]) are bytes-like, e.g.
    C-contiguous numpy arrays (sent as their bytes, without a copy)."""
    frames = [json.dumps({"protocol": PROTOCOL, **header}).encode()]
    payload = (pixels, mask, reference)
    return frames + [memoryview(f).cast("B") for f in payload if f is not None]


@dataclass
class Request:
    op: str
    id: str | None = None
    width: int = 0
    height: int = 0
    pixel_format: str | None = None  # a backend.wire.PIXEL_FORMATS name
    pixels: object = None  # bytes-like, width * height * bytes per pixel
    mask: object = None  # bytes-like, width * height, or None
    method: str = "palettenet"
    palette: np.ndarray | None = None  # target colours, sRGB (n, 3) in 0..1
    source_palette: np.ndarray | None = None  # the colours palette's entries replace, sRGB
    max_side: int | None = None
    k: int = DEFAULT_PALETTE_COLORS
    reference: "Reference | None" = None  # the image every piece of a job is mapped by
    # Files of the client holding pixels, mask and reply ({role: name}, see shared_memory.py;
    # None: frames). The daemon maps them: pixels and mask then hold their buffers, and
    # reply a writable buffer the result is written into instead of a reply frame.
    shared_memory: dict | None = None
    reply: object = None
    # The ICC profile of the pixels' colours (an RGB space other than sRGB), None: sRGB, or
    # linear sRGB for the _LINEAR formats. The engine converts with it (backend.service.icc).
    icc_profile: bytes | None = None

    def segment_sizes(self) -> dict:
        """The bytes each shared_memory file must have: {role: bytes}."""
        pixels = self.width * self.height * bytes_per_pixel(self.pixel_format)
        return {"pixels": pixels, "mask": self.width * self.height, "reply": pixels}


@dataclass
class Reference:
    """A recolor request's reference image: the pieces of one job (layers, frames, files)
    side by side, reduced. The colour mapping is found on it instead of on the request's
    own pixels, so every piece sent with the same reference and palettes gets the same
    mapping: one colour, one result, in every piece."""

    width: int
    height: int
    pixel_format: str  # a backend.wire.PIXEL_FORMATS name
    pixels: object  # bytes-like, width * height * bytes per pixel


# A JSON string (escapes included; an unterminated one runs to the end, so the scan stays
# linear) or a bracket. Brackets inside strings are not nesting.
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


def json_depth_exceeds(data: bytes, limit: int) -> bool:
    """Whether JSON text nests arrays and objects deeper than `limit`, from its bytes alone
    (UTF-8 never has '"', '\\' or brackets inside a multi-byte character)."""
    depth = 0
    for token in _JSON_TOKENS.findall(data):
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


def read_header(frame) -> dict:
    """The JSON header of a request (frame 0); ProtocolError if it is not one. Size and
    nesting are checked on the bytes first: json.loads only sees a small, shallow text."""
    if len(frame) > MAX_HEADER_BYTES:
        message = f"header is {len(frame)} bytes; at most {MAX_HEADER_BYTES}"
        raise ProtocolError("bad_request", message)
    data = bytes(frame)
    if json_depth_exceeds(data, MAX_JSON_DEPTH):
        message = f"header nests arrays or objects more than {MAX_JSON_DEPTH} deep"
        raise ProtocolError("bad_request", message)
    try:
        header = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ProtocolError("bad_request", f"header is not UTF-8 JSON: {error}") from None
    if not isinstance(header, dict):
        raise ProtocolError("bad_request", "header must be a JSON object")
    return header


def request_id(frames) -> str | None:
    """The id of a request, if its header can be read, for error replies; else None.
    Never raises, whatever the frames."""
    try:
        value = read_header(frames[0]).get("id")
    except Exception:  # whatever is wrong with it, an unreadable header has no id
        return None
    return value if isinstance(value, str) else None


def _shown(value, limit: int = 60) -> str:
    """repr() of a client's value for an error message, cut short: a 64 KiB list must not
    come back whole in the reply."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _integer(fields: dict, name: str, low: int, high: int | None = None, prefix="") -> int:
    value = fields.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        message = f"{prefix}{name} must be an integer >= {low}, got {_shown(value)}"
        raise ProtocolError("bad_request", message)
    if high is not None and value > high:
        message = f"{prefix}{name} must be at most {high}, got {_shown(value)}"
        raise ProtocolError("bad_request", message)
    return value


def parse_hex(text: str) -> np.ndarray:
    """'#rgb' or '#rrggbb' (case-insensitive, '#' optional) -> sRGB floats (3,) in 0..1;
    ProtocolError (bad_palette) for anything else."""
    match = _HEX.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        message = f"{_shown(text)} is not a colour: use #rgb or #rrggbb hex"
        raise ProtocolError("bad_palette", message)
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    return np.array([int(digits[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.float64) / 255


def parse_palette(entries, name: str = "palette") -> np.ndarray:
    """A list of hex strings (or one comma-separated string) -> sRGB (n, 3) in 0..1, n in
    1..MAX_PALETTE_COLORS; ProtocolError (bad_palette) naming the bad entry by position."""
    if isinstance(entries, str):
        entries = [e for e in entries.split(",") if e.strip()]
    if not isinstance(entries, list | tuple) or not all(isinstance(e, str) for e in entries):
        raise ProtocolError("bad_palette", f"{name} must be a list of hex strings, got "
                                           f"{_shown(entries)}")  # fmt: skip
    if not 1 <= len(entries) <= MAX_PALETTE_COLORS:
        message = f"a {name} needs 1 to {MAX_PALETTE_COLORS} colours, got {len(entries)}"
        raise ProtocolError("bad_palette", message)
    colours = []
    for i, entry in enumerate(entries):
        try:
            colours.append(parse_hex(entry))
        except ProtocolError as error:
            raise ProtocolError("bad_palette", f"{name} entry {i + 1}: {error}") from None
    return np.stack(colours)


def parse_request(frames: list, max_pixels: int = DEFAULT_MAX_PIXELS) -> Request:
    """Frames (header first, then the payload) -> a checked Request, or ProtocolError (with
    the request's id once the header is read, for the reply).

    Only the header is parsed and frame lengths compared: the pixels stay where they are."""
    if not frames:
        raise ProtocolError("bad_request", "empty message: a header frame is needed")
    if len(frames) > MAX_REQUEST_FRAMES:
        # Checked before the header is read: a message of thousands of frames costs a len().
        message = (
            f"a request has at most {MAX_REQUEST_FRAMES} frames (header, pixels, mask, "
            f"reference); "
            f"got {len(frames)}"
        )
        raise ProtocolError("bad_request", message, request_id(frames))
    header = read_header(frames[0])
    request_id_ = header.get("id")
    if request_id_ is not None and not isinstance(request_id_, str):
        raise ProtocolError("bad_request", f"id must be a string, got {_shown(request_id_)}")
    try:
        return _parse_fields(header, request_id_, frames[1:], max_pixels)
    except ProtocolError as error:
        error.request_id = request_id_
        raise


def _parse_fields(header: dict, request_id_, payload: list, max_pixels: int) -> Request:
    """Everything after the id: each field's type is checked before its value is used."""
    if header.get("protocol") != PROTOCOL:
        message = f"protocol must be {PROTOCOL!r}, got {_shown(header.get('protocol'))}"
        raise ProtocolError("bad_request", message)
    op = header.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise ProtocolError("bad_request", f"unknown op {_shown(op)}; known: {', '.join(OPS)}")
    request = Request(op=op, id=request_id_)
    options = header.get("options", {})
    if not isinstance(options, dict):
        message = f"options must be a JSON object, got {_shown(options)}"
        raise ProtocolError("bad_request", message)
    for name in options:  # JSON object keys are always strings
        if name not in OPTIONS[op]:
            known = ", ".join(OPTIONS[op]) or "none"
            message = f"unknown option {_shown(name)} for {op} (known: {known})"
            raise ProtocolError("bad_request", message)

    if op in ("ping", "info"):
        if payload:
            raise ProtocolError("bad_request", f"{op} takes no frames after the header")
        return request
    if header.get("shared_memory") is not None:
        request.shared_memory = _parse_shared_memory(header["shared_memory"], op, options)
    reference_pixels = None
    if header.get("reference") is not None:
        if op != "recolor":
            raise ProtocolError("bad_request", f"{op} takes no reference image")
        if len(payload) < (1 if request.shared_memory is not None else 2):
            message = "reference is given but there is no reference frame after the pixels"
            raise ProtocolError("bad_request", message)
        *payload, reference_pixels = payload
    _parse_layer(request, header, payload, max_pixels)
    if header.get("icc_profile") is not None:
        request.icc_profile = _parse_icc_profile(header["icc_profile"], request.pixel_format)
    if op == "palette":
        if "k" in options:
            request.k = _integer(options, "k", 1, MAX_PALETTE_COLORS, prefix="options.")
        return request

    method = header.get("method", "palettenet")
    if not isinstance(method, str) or method not in METHODS:
        message = f"unknown method {_shown(method)}; known: {', '.join(METHODS)}"
        raise ProtocolError("bad_request", message)
    request.method = method
    if reference_pixels is not None:
        request.reference = _parse_reference(header["reference"], reference_pixels, max_pixels)
    if "palette" not in header:
        raise ProtocolError("bad_palette", "recolor needs a palette (a list of hex strings)")
    if not isinstance(header["palette"], list):
        message = f"palette must be a list of hex strings, got {_shown(header['palette'])}"
        raise ProtocolError("bad_palette", message)
    request.palette = parse_palette(header["palette"])
    if header.get("source_palette") is not None:
        if not isinstance(header["source_palette"], list):
            message = (f"source_palette must be a list of hex strings, got "
                       f"{_shown(header['source_palette'])}")  # fmt: skip
            raise ProtocolError("bad_palette", message)
        request.source_palette = parse_palette(header["source_palette"], "source_palette")
        if len(request.source_palette) != len(request.palette):
            message = (
                f"source_palette has {len(request.source_palette)} colours and palette "
                f"{len(request.palette)}: they must correspond entry by entry"
            )
            raise ProtocolError("bad_palette", message)
    if "max_side" in options:
        request.max_side = _integer(options, "max_side", 1, prefix="options.")
    return request


def _parse_layer(request: Request, header: dict, payload: list, max_pixels: int) -> None:
    """width, height, pixel_format and the pixel and mask frames, checked in the order that
    never needs the pixels: sizes first, then the pixel limit, then frame lengths."""
    request.width = _integer(header, "width", 1)
    request.height = _integer(header, "height", 1)
    name = header.get("pixel_format")
    if not isinstance(name, str) or name not in PIXEL_FORMATS:
        known = ", ".join(PIXEL_FORMATS)
        message = f"pixel_format {_shown(name)} is not supported; use one of {known}"
        raise ProtocolError("unsupported_format", message)
    request.pixel_format = name
    count = request.width * request.height
    if count > max_pixels:
        # _shown: a client's integer may have thousands of digits, too many for str()
        message = (
            f"{_shown(request.width)} x {_shown(request.height)} pixels is more than this "
            f"daemon takes: at most {max_pixels}"
        )
        raise ProtocolError("too_large", message)
    if request.shared_memory is not None:
        if payload:
            message = (
                "shared memory: the pixels and the mask are in the named files, so no frame "
                f"but the reference may follow the header; got {len(payload)} more"
            )
            raise ProtocolError("bad_request", message, field="shared_memory")
        return
    if not payload:
        raise ProtocolError("bad_request", f"{request.op} needs a pixel frame after the header")
    if len(payload) > 2:
        message = (
            f"{request.op} takes a pixel frame and an optional mask frame; "
            f"got {len(payload)} frames after the header"
        )
        raise ProtocolError("bad_request", message)
    size = f"{request.width} x {request.height}"
    per_pixel = bytes_per_pixel(name)
    _expect_bytes(
        payload[0], count * per_pixel, "pixel frame", f"{size} {name}, {per_pixel} per pixel"
    )
    request.pixels = payload[0]
    if len(payload) == 2:
        _expect_bytes(payload[1], count, "mask frame", f"{size}, one per pixel")
        request.mask = payload[1]


def _parse_shared_memory(fields, op: str, options: dict) -> dict:
    """header["shared_memory"]: {"pixels": NAME, "mask": NAME, "reply": NAME}, pixels
    required, names distinct and of the form SHARED_MEMORY_NAME. Only the names are checked
    here (the broker forwards them); the daemon opens the files (shared_memory.py)."""

    def refused(message):
        return ProtocolError("bad_request", f"shared memory: {message}", field="shared_memory")

    if not isinstance(fields, dict):
        raise refused(f"shared_memory must be a JSON object, got {_shown(fields)}")
    for role, name in fields.items():
        if role not in SEGMENT_ROLES:
            raise refused(f"unknown role {_shown(role)}; known: {', '.join(SEGMENT_ROLES)}")
        if not isinstance(name, str) or _SEGMENT_NAME.fullmatch(name) is None:
            raise refused(f"{role} {_shown(name)} is not a name of the form {SHARED_MEMORY_NAME}")
    if "pixels" not in fields:
        raise refused("pixels is missing: the layer's pixels must be in a named file too")
    if len(set(fields.values())) != len(fields):
        raise refused("each role needs a file of its own")
    if "reply" in fields and (op != "recolor" or "max_side" in options):
        raise refused("a reply file is for a full-size recolor (a preview's size is the daemon's)")
    return dict(fields)


def _parse_icc_profile(text, pixel_format: str) -> bytes:
    """header["icc_profile"]: an RGB ICC profile, base64, at most MAX_ICC_PROFILE_BYTES
    decoded, for a format that is not _LINEAR (the profile says the tone curve). Checked
    here from the text and the profile's fixed header only (length first, then base64, then
    the signature and colour space); whether LittleCMS can use it is for the engine."""

    def refused(message):
        return ProtocolError("bad_request", f"icc_profile: {message}", field="icc_profile")

    if not isinstance(text, str):
        raise refused(f"must be a base64 string, got {_shown(text)}")
    if len(text) > 4 * -(-MAX_ICC_PROFILE_BYTES // 3):
        raise refused(f"{len(text)} base64 characters; a profile has at most "
                      f"{MAX_ICC_PROFILE_BYTES} bytes")  # fmt: skip
    try:
        profile = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise refused(f"not base64: {error}") from None
    if len(profile) < ICC_HEADER_BYTES or profile[36:40] != b"acsp":
        raise refused(f"{len(profile)} bytes that are not an ICC profile (no 'acsp' signature)")
    space = profile[16:20].decode("latin-1").strip()
    if space != "RGB":
        raise refused(f"a profile of colour space {space!r}; the pixels are RGB")
    if PIXEL_FORMATS[pixel_format][2]:
        raise refused(f"{pixel_format} is linear sRGB by definition; send the pixels in "
                      f"{pixel_format.removesuffix('_LINEAR')} with the profile, which says "
                      "the tone curve")  # fmt: skip
    return profile


def _parse_reference(fields, frame, max_pixels: int) -> Reference:
    """header["reference"] ({"width", "height", "pixel_format"}) and its frame, checked like
    the layer's: sizes, then the pixel limit, then the frame's length."""
    if not isinstance(fields, dict):
        message = f"reference must be a JSON object, got {_shown(fields)}"
        raise ProtocolError("bad_request", message)
    width = _integer(fields, "width", 1, prefix="reference.")
    height = _integer(fields, "height", 1, prefix="reference.")
    name = fields.get("pixel_format")
    if not isinstance(name, str) or name not in PIXEL_FORMATS:
        known = ", ".join(PIXEL_FORMATS)
        message = f"reference.pixel_format {_shown(name)} is not supported; use one of {known}"
        raise ProtocolError("unsupported_format", message)
    limit = min(max_pixels, MAX_REFERENCE_PIXELS)
    if width * height > limit:
        message = (
            f"reference image {_shown(width)} x {_shown(height)} is more than {limit} "
            "pixels: reduce it (it is reduced to the working size anyway)"
        )
        raise ProtocolError("too_large", message)
    per_pixel = bytes_per_pixel(name)
    because = f"{width} x {height} {name}, {per_pixel} per pixel"
    _expect_bytes(frame, width * height * per_pixel, "reference frame", because)
    return Reference(width, height, name, frame)


def _expect_bytes(frame, expected: int, what: str, because: str) -> None:
    if len(frame) != expected:
        message = f"{what} has {len(frame)} bytes; it needs {expected} ({because})"
        raise ProtocolError("size_mismatch", message)
