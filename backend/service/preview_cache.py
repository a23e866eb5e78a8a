"""What the daemon keeps between live-preview requests for one layer.

While an artist drags a swatch, the plug-in sends the same preview-size layer again and again
with a new palette. Everything before the palette enters (the layer reduced to the working
size, and PaletteNet's encoder features, which do not depend on the palette) is the same each
time, so it is kept here, keyed by a digest of what the request sent, and a new palette costs
only the decoder and the transfer.

The cache (cachetools.TTLCache, least recently used first out) is bounded in bytes and in
age: a daemon serving several artists never holds more than `max_bytes` of features, and a
layer nobody previews any more is dropped after `max_age_s`.
"""

import hashlib
import threading
import time

from cachetools import TTLCache

MAX_BYTES = 128 << 20  # a 512-pixel preview layer with its features: about 10 MB in float32
MAX_AGE_S = 300.0
MAX_CACHED_PIXELS = 1 << 20  # only preview-size layers: hashing a 24 MP layer costs ~0.1 s


def layer_key(request, method: str) -> bytes | None:
    """A digest of everything in a request that decides the working image: pixels, size,
    format, mask and preview side, plus the method. None for layers too big to cache."""
    if request.width * request.height > MAX_CACHED_PIXELS:
        return None
    digest = hashlib.blake2b(digest_size=20)
    header = f"{method}|{request.width}x{request.height}|{request.pixel_format}|{request.max_side}"
    digest.update(header.encode())
    digest.update(request.pixels)
    if request.mask is not None:
        digest.update(b"|mask|")
        digest.update(request.mask)
    return digest.digest()


class PreviewCache:
    """A thread-safe map from layer_key to an entry that reports its own `nbytes`."""

    def __init__(self, max_bytes=MAX_BYTES, max_age_s=MAX_AGE_S, clock=time.monotonic):
        self._entries = TTLCache(max_bytes, max_age_s, timer=clock, getsizeof=_size)
        self._lock = threading.Lock()  # the daemon's worker threads share one engine

    def get(self, key: bytes | None):
        if key is None:
            return None
        with self._lock:
            return self._entries.get(key)

    def put(self, key: bytes | None, entry) -> None:
        if key is None:
            return
        with self._lock:
            try:
                self._entries[key] = entry
            except ValueError:  # larger than the whole cache: not kept
                pass

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return int(self._entries.currsize)


def _size(entry) -> int:
    return max(1, int(entry.nbytes))
