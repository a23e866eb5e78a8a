"""The constants of the wire protocol palettenet/1 (docs/PROTOCOL.md), the plug-in's copy:
its name, operations, methods, error codes, pixel formats and the default address.

The backend has the same file (backend/wire.py); the plug-in cannot import it (an editor's
Python has neither the backend nor its dependencies), so it carries this copy, standard
library only. tests/test_wire_copies.py checks that the two are equal.
"""

PROTOCOL = "palettenet/1"
DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"  # where the plug-ins look, and the daemon binds
OPS = ("ping", "info", "recolor", "palette")
METHODS = ("palettenet", "chang2015")
MAX_PALETTE_COLORS = 12  # a palette has 1 to 12 colours
DEFAULT_PALETTE_COLORS = 6  # `palette` op's k when the request gives none
# A recolor request's reference image (the pieces of one job side by side, so that they
# all get one colour mapping) is reduced to the working size anyway: a small one is enough.
MAX_REFERENCE_PIXELS = 1 << 22  # 4 megapixels
# A layer in an RGB space other than sRGB may carry its ICC profile (the header's
# icc_profile, base64): the daemon converts with it (LittleCMS). Small enough that the
# header stays within its 64 KiB; a matrix-shaper profile takes 0.5-4 KB.
MAX_ICC_PROFILE_BYTES = 32 * 1024

# Clients on the daemon's machine may hand over pixels in files of this folder instead of
# frames (the header's shared_memory, docs/PROTOCOL.md), named like this and nothing else:
# the prefix, the client's process id, 32 random hex digits.
SHARED_MEMORY_FOLDER = "/dev/shm"
SHARED_MEMORY_NAME = r"palettenet-[0-9]{1,10}-[0-9a-f]{32}"

ERROR_CODES = (
    "bad_request",  # not valid JSON, a missing or mistyped field, an unknown op or option
    "bad_palette",  # a palette entry that is not a colour, or the wrong number of them
    "size_mismatch",  # a frame's length does not match width x height x bytes per pixel
    "unsupported_format",  # an unknown pixel_format
    "too_large",  # more pixels than the daemon's limit
    "busy",  # the queue is full, the daemon is stopping, or a worker died: retry later
    "model_unavailable",  # method palettenet, but the daemon has no weights
    "internal",  # a failure inside the daemon; the message says what
)

# Pixel formats: name -> (channel type, channel order, linear light). Channels are tightly
# packed, little-endian. Linear formats hold linear-light colour channels (as editors store
# linear-precision images); all others hold sRGB-encoded values. Alpha is never curved.
PIXEL_FORMATS = {
    "RGBA8": ("u8", "RGBA", False),
    "BGRA8": ("u8", "BGRA", False),  # Krita's order for 8-bit integer layers
    "RGB8": ("u8", "RGB", False),
    "RGBA16": ("u16", "RGBA", False),
    "RGBAF32": ("f32", "RGBA", False),
    "RGBAF16": ("f16", "RGBA", False),
    "RGBA8_LINEAR": ("u8", "RGBA", True),
    "RGBA16_LINEAR": ("u16", "RGBA", True),
    # Krita's integer layers as pixelData gives them (B, G, R, A, little-endian hosts): sent
    # and written back as they are, with no per-pixel work in the editor's Python.
    "BGRA8_LINEAR": ("u8", "BGRA", True),
    "BGRA16": ("u16", "BGRA", False),
    "BGRA16_LINEAR": ("u16", "BGRA", True),
    "RGBAF16_LINEAR": ("f16", "RGBA", True),
    "RGBAF32_LINEAR": ("f32", "RGBA", True),
}
CHANNEL_BYTES = {"u8": 1, "u16": 2, "f16": 2, "f32": 4}


def bytes_per_pixel(pixel_format: str) -> int:
    """Bytes of one pixel of a PIXEL_FORMATS name; KeyError for an unknown one."""
    channel_type, order, _linear = PIXEL_FORMATS[pixel_format]
    return CHANNEL_BYTES[channel_type] * len(order)
