"""The engine: checked requests in, replies out. What the daemon's workers run, and what the
CLI runs in process, so results are the same both ways by construction.

It holds the PaletteNet model (or the reason there is none: the daemon still serves
chang2015 and palettes without weights) and turns each op into a Reply. Batches of
palettenet requests whose working images have one size go through the network together.
Requests that name a reference image (the pieces of one job) share one colour mapping,
found once per reference and palette (SharedMaps).
"""

import hashlib
import itertools
import json
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cachetools
import imagecodecs
import numpy as np
import torch

from backend import __version__
from backend.core.chang2015 import apply_lattice, build_lattice
from backend.core.color import delta_e76, lab_to_rgb_np, rgb_to_lab, rgb_to_lab_np
from backend.core.colormap import is_flat_art_counted
from backend.core.fullres import WORKING_SIDE, preview_size, shrink_layer, working_size
from backend.core.model import EncodedImage
from backend.core.palette import distinct_colours, extract_palette, pair_by_lightness, to_hex
from backend.core.pixels import FORMATS, Layer
from backend.core.recolor import (
    Working,
    encode,
    finish,
    finish_mapped,
    follow_pairs,
    network_outputs,
    predict,
    prepare,
    shared_colour_map,
)
from backend.core.weights import WeightsError, load_weights, read_metadata
from backend.service import icc
from backend.service.preview_cache import PreviewCache, layer_key
from backend.service.protocol import (
    ProtocolError,
    Reference,
    Reply,
    Request,
    encode_request,
    error_reply,
    ok_reply,
    parse_request,
    request_id,
)
from backend.wire import METHODS, PROTOCOL

WARM_UP_PALETTE = ["#203050", "#e0a040", "#40c080"]  # Engine.warm_up's edit
HALF_PRECISION_TOLERANCE = 0.5  # mean delta E76 float16 may differ from float32 by
# The network's side for previews: a quarter of the pixels of WORKING_SIDE, so a dragged
# swatch's decoder call fits the live preview's latency on a CPU (bench --preview).
PREVIEW_WORKING_SIDE = 256


class DeviceError(ValueError):
    """The device asked for is not on this machine."""


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when there is one, else cpu; DeviceError for 'cuda' without one."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA device is available")
    return torch.device(name)


class Timing:
    """Milliseconds per stage of a request: wall clock (the reply's timing_ms) and process
    CPU time (cpu_ms). CPU time counts every thread of the process, so cpu / wall shows how
    many cores a stage kept busy (read it with one request at a time)."""

    def __init__(self):
        self.wall, self.cpu = {}, {}

    @contextmanager
    def stage(self, name: str):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = round((time.perf_counter() - wall) * 1000, 1)
            self.cpu[name] = round((time.process_time() - cpu) * 1000, 1)

    def reported(self) -> dict:
        """The reply's fields: timing_ms (with the total) and cpu_ms."""
        wall = {**self.wall, "total": round(sum(self.wall.values()), 1)}
        return {
            "timing_ms": wall,
            "cpu_ms": {**self.cpu, "total": round(sum(self.cpu.values()), 1)},
        }


class Engine:
    def __init__(
        self, weights: Path, device: str = "auto", load_model: bool = True, precision="auto"
    ):
        """load_model=False: for chang2015 and palettes only (the CLI's quick commands).
        precision: "auto" (float16 on CUDA when a probe agrees with float32, else float32),
        "float32", or "float16" (CUDA only: DeviceError elsewhere)."""
        self.device = resolve_device(device)
        self.weights = Path(weights)
        self.model, self.model_error, self.metadata = None, "not loaded", {}
        if load_model:
            try:
                self.model = load_weights(self.weights, self.device)
                self.metadata = {"file": str(self.weights), **read_metadata(self.weights)}
            except WeightsError as error:
                self.model_error = str(error)
        if precision == "float16" and self.device.type != "cuda":
            raise DeviceError(f"float16 needs a CUDA device, not {self.device}")
        on_cuda = self.device.type == "cuda" and self.model is not None
        if precision == "auto":
            self.half = on_cuda and self._half_agrees()
        else:
            self.half = on_cuda and precision == "float16"
        self.palettes = LayerPalettes()
        self.previews = PreviewCache()
        self.shared_maps = SharedMaps()

    @property
    def model_name(self) -> str:
        return "palettenet" if self.model is not None else "none"

    def info(self) -> dict:
        return {
            "protocol": PROTOCOL,
            "version": __version__,
            "device": str(self.device),
            "precision": "float16" if self.half else "float32",
            "model": self.model_name,
            "model_metadata": self.metadata
            if self.model is not None
            else {"error": self.model_error},
            "methods": [m for m in METHODS if m != "palettenet" or self.model is not None],
            "pixel_formats": list(FORMATS),
            "working_side": WORKING_SIDE,
            # requests may carry an icc_profile, converted by this LittleCMS
            "icc_profiles": imagecodecs.cms_version(),
        }

    def _half_agrees(self) -> bool:
        """Whether float16 gives visibly the same result as float32 on a probe photo."""
        from skimage import data

        rgb = (data.astronaut()[::2, ::2] / 255).astype(np.float32)
        palette = np.array([[20, 10, -30], [45, 40, 20], [60, -30, 30], [85, 5, 40.0]])
        full, half = (
            rgb_to_lab(torch.from_numpy(predict(self.model, [rgb], [palette], h)[0]))
            for h in (False, True)
        )
        return float(delta_e76(full, half).mean()) < HALF_PRECISION_TOLERANCE

    # --- requests -------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Recolour a generated 0.8 MP picture in RGBA8 (with transparency), BGRA8 and RGB8
        with each method this engine serves, so that the compiled steps (Numba: colour
        counting, the local fit, the 8-bit resize and transfer) are compiled and cached on
        disk now: uncached, a user's first recolour waited 5-12 s more (qa16). install.py
        runs it once; later processes load the cache (about 0.2 s). RuntimeError if a
        recolour fails."""
        height, width = 768, 1024
        y, x = np.mgrid[0:height, 0:width]
        noise = np.random.default_rng(0).integers(0, 24, (height, width, 3))
        rgb = np.stack([x * 200 // width, y * 200 // height, (x + y) * 100 // width], -1)
        rgb = (rgb + noise).astype(np.uint8)
        rgb[100:300, 100:400] = (200, 40, 40)  # a flat fill
        alpha = np.where(x < 64, 0, np.where(x < 96, 128, 255)).astype(np.uint8)
        opaque = np.full_like(alpha, 255)
        layers = {"RGBA8": np.dstack([rgb, alpha]), "BGRA8": np.dstack([rgb[..., ::-1], opaque]),
                  "RGB8": rgb}  # fmt: skip
        methods = [m for m in METHODS if m != "palettenet" or self.model is not None]
        for (pixel_format, pixels), method in itertools.product(layers.items(), methods):
            header = {"op": "recolor", "width": width, "height": height, "method": method,
                      "pixel_format": pixel_format, "palette": WARM_UP_PALETTE}  # fmt: skip
            reply = json.loads(
                bytes(self.handle(encode_request(header, pixels), height * width)[0])
            )
            if not reply.get("ok"):
                raise RuntimeError(f"warming up {method} on {pixel_format}: {reply.get('error')}")

    def handle(self, frames: list, max_pixels: int) -> list:
        """Request frames -> reply frames: the whole round trip, for in-process callers.
        Pixels come as frames here: shared memory is between a client and a daemon."""
        try:
            request = parse_request(frames, max_pixels)
            if request.shared_memory is not None:
                message = "shared memory: only a daemon maps files; send the pixels as frames"
                raise ProtocolError("bad_request", message, request.id, "shared_memory")
        except ProtocolError as error:
            return error_reply(request_id(frames), error.code, error.message, error.field).encode()
        if request.op in ("ping", "info"):
            return ok_reply(request.id, **self.info()).encode()
        return self.run([request])[0].encode()

    def batch_key(self, request: Request):
        """Requests with equal keys may share one network call (None: never batched)."""
        if request.op != "recolor" or request.method != "palettenet" or self.model is None:
            return None
        if request.max_side is not None:
            return None  # a preview runs alone, so its encoding can be kept (PreviewCache)
        if request.reference is not None:
            return None  # its network run is the reference's, found once (SharedMaps)
        return working_size(request.height, request.width)

    def run(self, requests: list[Request]) -> list[Reply]:
        """Replies to recolor and palette requests; several only if their batch keys agree.
        Every failure becomes an error reply for its own request only."""
        replies, batch = [None] * len(requests), []
        for index, request in enumerate(requests):
            try:
                if request.op == "palette":
                    replies[index] = self._palette(request)
                elif _is_identity(request):
                    replies[index] = self._unchanged(request)
                elif request.method == "chang2015":
                    replies[index] = self._chang2015(request)
                elif request.reference is not None:
                    replies[index] = self._palettenet_shared(request)
                else:
                    batch.append(self._start_palettenet(index, request))
            except Exception as error:
                replies[index] = self._failure(request, error)
        for index, reply in self._finish_palettenet(batch):
            replies[index] = reply
        return replies

    def _failure(self, request: Request, error: Exception) -> Reply:
        if isinstance(error, ProtocolError):
            return error_reply(request.id, error.code, error.message, error.field)
        if isinstance(error, MemoryError):
            message = f"out of memory for {request.width} x {request.height} pixels"
            return error_reply(request.id, "internal", message)
        traceback.print_exc(file=sys.stderr)
        return error_reply(request.id, "internal", f"{type(error).__name__}: {error}")

    def _layer(self, request: Request) -> tuple[Layer, Timing]:
        """The request's pixels as a Layer (a view, no copy), checked for NaN and infinity,
        as a preview if asked; ProtocolError if the request cannot be done with them. The
        checks that read pixels are made here, in the workers, not in parse_request, which
        runs on the daemon's main thread."""
        timing = Timing()
        with timing.stage("decode"):
            layer = self._checked_layer(request)
        return layer, timing

    def _checked_layer(self, request: Request) -> Layer:
        pixel_format = FORMATS[request.pixel_format]
        layer = Layer.from_buffer(
            request.pixels, request.width, request.height, pixel_format, request.mask
        )
        if request.icc_profile is not None:
            layer = _in_linear_srgb(layer, request.icc_profile)
        pairs_with_layer = (
            request.method == "palettenet"
            and request.source_palette is None
            and request.reference is None  # which is paired with instead
        )
        if request.op == "recolor" and pairs_with_layer and layer.mask is not None:
            # Without source_palette the palette is paired with the colours of the visible,
            # selected pixels; a mask that selects none of them leaves nothing to pair with.
            if not layer.palette_weight().any() and layer.visible_box() is not None:
                message = (
                    "the mask selects no visible pixel, so there are no colours to pair the "
                    "palette with: send source_palette, a mask that selects something, or none"
                )
                raise ProtocolError("bad_request", message)
        _check_finite(layer, "pixel")
        if request.max_side is not None:
            size = preview_size(layer.height, layer.width, request.max_side)
            if size != (layer.height, layer.width):
                layer = shrink_layer(layer, size)
        return layer

    @staticmethod
    def _output(request: Request, layer: Layer) -> np.ndarray:
        """Where the recoloured layer is written: the client's reply file when it named one
        (shared memory: no copy, no reply frame), else a new array. A layer converted from
        its ICC profile is recoloured into a new array and converted back into the file."""
        if request.reply is None or request.icc_profile is not None:
            return np.empty(layer.pixels.shape, layer.pixels.dtype)
        return np.frombuffer(request.reply, layer.pixels.dtype).reshape(layer.pixels.shape)

    def _copy(self, request: Request, layer: Layer) -> np.ndarray:
        """The layer as it came, as a reply (what an edit that changes nothing gives)."""
        out = self._output(request, layer)
        np.copyto(out, layer.pixels)
        return out

    def _recolored(self, request: Request, layer: Layer, out: np.ndarray, timing: Timing) -> Reply:
        extra = {}
        if request.icc_profile is not None:
            with timing.stage("icc_out"):
                out = _in_own_profile(request, layer, out)
            extra["icc_profile"] = True  # the pixels were converted with it, both ways
        reply = ok_reply(
            request.id,
            width=layer.width,
            height=layer.height,
            pixel_format=request.pixel_format,
            method=request.method,
            **extra,
            **timing.reported(),
        )
        if request.reply is None:
            reply.frames = [memoryview(np.ascontiguousarray(out)).cast("B")]
        else:  # written in the client's reply file: the header says so, no frame follows
            reply.header["shared_memory"] = {"reply": request.shared_memory["reply"]}
        return reply

    def _unchanged(self, request: Request) -> Reply:
        """The layer as it came: what an edit that maps every colour to itself gives."""
        layer, timing = self._layer(request)
        return self._recolored(request, layer, self._copy(request, layer), timing)

    def _palette(self, request: Request) -> Reply:
        layer, timing = self._layer(request)
        with timing.stage("palette"):
            if not self.palettes.anything_counts(layer):
                raise ProtocolError("bad_request", "no visible pixel to take a palette from")
            lab, shares = self.palettes.extract(layer, request.k)
        colours = [to_hex(rgb) for rgb in lab_to_rgb_np(lab)]
        weights = [round(float(s), 4) for s in shares]
        return ok_reply(request.id, palette=colours, weights=weights, **timing.reported())

    def _chang2015(self, request: Request) -> Reply:
        layer, timing = self._layer(request)
        if not self.palettes.anything_counts(layer):  # nothing visible and selected
            return self._recolored(request, layer, self._copy(request, layer), timing)
        target, source = _lab_palettes(request)
        if source is None:
            with timing.stage("palette"):
                paired_with = layer if request.reference is None else _layer_of(request.reference)
                if not self.palettes.anything_counts(paired_with):  # a transparent reference
                    return self._recolored(request, layer, self._copy(request, layer), timing)
                target, source, _ = self.palettes.pair(target, paired_with)
        with timing.stage("lattice"):
            lattice = build_lattice(source, target)
        with timing.stage("apply"):
            out = self._output(request, layer)
            # The lattice maps colours alone: a large 8-bit layer maps each distinct colour
            # once; other layers are mapped pixel by pixel.
            if not layer.map_colours(out, lambda rgb: apply_lattice(rgb, lattice)):
                layer.recolor_into(out, lambda rgb1, top: apply_lattice(rgb1[..., :3], lattice))
        return self._recolored(request, layer, out, timing)

    def _require_model(self) -> None:
        if self.model is None:
            message = (
                f"method palettenet is unavailable: {self.model_error}; start the daemon "
                "with --weights FILE, or use method chang2015"
            )
            raise ProtocolError("model_unavailable", message)

    def _palettenet_shared(self, request: Request) -> Reply:
        """palettenet with a reference image: the reference's colour mapping (found once per
        reference and palettes, then kept) carried to this piece."""
        self._require_model()
        layer, timing = self._layer(request)
        with timing.stage("mapping"):
            colour_map = self.shared_maps.get(self, request)
        with timing.stage("finish"):
            out = self._output(request, layer)
            if colour_map is None:  # nothing visible in the reference: nothing to map by
                out[...] = layer.pixels
            else:
                finish_mapped(layer, colour_map, out)
        return self._recolored(request, layer, out, timing)

    def _start_palettenet(self, index: int, request: Request) -> "_Started":
        self._require_model()
        # A preview sent again with another palette (a swatch being dragged) reuses the
        # working image and the encoder's features: only the decoder runs.
        key = _preview_key(request) if request.max_side is not None else None
        cached = self.previews.get(key)
        if cached is not None:
            layer, working, timing = cached.layer, cached.working, Timing()
        else:
            layer, timing = self._layer(request)
            side = WORKING_SIDE if request.max_side is None else PREVIEW_WORKING_SIDE
            with timing.stage("prepare"):
                working = prepare(layer, side)
        target, source = _lab_palettes(request)
        if source is None and working is not None and self.model.needs_source:
            with timing.stage("palette"):
                target, source, flat_art = self.palettes.pair(target, layer)
            if working.box == (0, layer.height, 0, layer.width):  # what finish would count
                working.flat_art = flat_art
        started = _Started(index, request, layer, working, timing, target, source)
        if working is not None and key is not None:
            started.preview_key = key
            started.encoded = None if cached is None else cached.encoded
        return started

    def _finish_palettenet(self, batch: list["_Started"]):
        """The network once per working size over the batch, then each layer finished;
        yields (index, reply)."""
        by_size = {}
        for item in batch:
            if item.working is not None:
                # previews run alone: their encoding is kept for the next palette
                group = item.working.size if item.preview_key is None else ("preview", item.index)
                by_size.setdefault(group, []).append(item)
        for items in by_size.values():
            network = Timing()  # one call for the batch: each request reports its time
            try:
                images = [item.working.rgb for item in items]
                with network.stage("network"):
                    palettes = [item.target for item in items]
                    sources = [item.source for item in items]
                    encoded = self._preview_encoding(items)
                    outputs, pairs = network_outputs(
                        self.model, images, palettes, self.half, sources, encoded
                    )
                with network.stage("swatches"):
                    follow_pairs(images, outputs, pairs)
            except Exception as error:
                for item in items:
                    item.error = error
                continue
            for item, output, pair in zip(items, outputs, pairs):
                item.output, item.pair = output, pair
                item.timing.wall.update(network.wall)
                item.timing.cpu.update(network.cpu)
        for item in batch:
            try:
                if item.error is not None:
                    raise item.error
                if item.working is None:  # nothing visible: the layer as it came
                    out = self._copy(item.request, item.layer)
                else:
                    with item.timing.stage("finish"):
                        out = self._output(item.request, item.layer)
                        finish(item.layer, item.working, item.output, out, item.pair)
                yield item.index, self._recolored(item.request, item.layer, out, item.timing)
            except Exception as error:
                yield item.index, self._failure(item.request, error)

    def _preview_encoding(self, items: list["_Started"]) -> EncodedImage | None:
        """The encoding of a lone preview (made and kept on its first request), else None."""
        if len(items) != 1 or items[0].preview_key is None:
            return None
        item = items[0]
        if item.encoded is None:
            item.encoded = encode(self.model, [item.working.rgb], self.half)
            layer = item.layer
            if item.request.shared_memory is not None:
                # may be a view of the client's file, which it writes again for its next one
                mask = None if layer.mask is None else layer.mask.copy()
                layer = Layer(layer.pixels.copy(), layer.format, mask)
            self.previews.put(item.preview_key, _Preview(layer, item.working, item.encoded))
        return item.encoded


class SharedMaps:
    """The colour mappings of the reference images seen lately (recolor.shared_colour_map),
    so that the pieces of one job (sent one by one, each with the same reference and
    palettes) cost one network run in all. Keyed by a digest of the reference's pixels and
    everything else the mapping depends on: a hit changes no result.

    A preview with a reference (a swatch dragged while several layers or frames are shown)
    runs the network at PREVIEW_WORKING_SIDE, and the reference's working image and encoding
    are kept in the engine's PreviewCache, so a new palette costs only the decoder and the
    fit of the mapping, as for a single layer's preview."""

    def __init__(self, size: int = 8):
        self.cache = cachetools.LRUCache(size)
        self.lock = threading.Lock()

    def get(self, engine: "Engine", request: Request):
        """The request's shared ColourMap, None when no pixel of its reference is visible."""
        reference = request.reference
        side = WORKING_SIDE if request.max_side is None else PREVIEW_WORKING_SIDE
        digest = hashlib.blake2b(reference.pixels, digest_size=16)
        digest.update(f"{reference.width}x{reference.height} {reference.pixel_format}".encode())
        image_key = (b"reference", digest.digest(), side)
        target, source = _lab_palettes(request)
        for part in (target, source):
            digest.update(b"-" if part is None else np.ascontiguousarray(part).data)
        key = (digest.digest(), side)
        with self.lock:
            if key in self.cache:
                return self.cache[key]
        layer = _layer_of(reference)
        if not engine.palettes.anything_counts(layer):
            return None  # nothing visible: nothing to map by
        if source is None:  # paired with the reference's palette, as the editors show it
            target, source, _ = engine.palettes.pair(target, layer)
        kept = engine.previews.get(image_key)
        if kept is None:
            working = prepare(layer, side)
            if working is None:
                return None
            kept = _ReferenceEncoding(working, encode(engine.model, [working.rgb], engine.half))
            engine.previews.put(image_key, kept)
        found = shared_colour_map(
            engine.model, kept.working, target, source, engine.half, kept.encoded
        )
        with self.lock:
            self.cache[key] = found
        return found


@dataclass(frozen=True)
class _ReferenceEncoding:
    """A reference image's working image and encoding (PreviewCache entries)."""

    working: Working
    encoded: EncodedImage

    @property
    def nbytes(self) -> int:
        return self.encoded.nbytes + self.working.rgb.nbytes + self.working.weight.nbytes


class LayerPalettes:
    """Palettes of the layers seen lately (extract_palette's answers), so that a layer
    recoloured again and again (the editors' preview, trying palettes) is analysed once.

    Keyed by a digest of exactly what extract_palette counts (Layer.palette_sample): the same
    pixels, weights and size give the same palette, so a hit changes no result."""

    def __init__(self, size: int = 16):
        self.cache = cachetools.LRUCache(size)
        self.lock = threading.Lock()

    @staticmethod
    def anything_counts(layer: Layer) -> bool:
        """Whether any pixel of the layer is visible and selected (has palette weight)."""
        weight = layer.palette_sample()[1]
        return weight is None or bool(weight.any())

    def extract(self, layer: Layer, k: int) -> tuple[np.ndarray, np.ndarray]:
        """extract_palette(layer's pixels, k, their weight): (LAB (n, 3), shares (n,))."""
        return self._analysed(layer, k)[0]

    def _analysed(self, layer: Layer, k: int) -> tuple[tuple[np.ndarray, np.ndarray], bool]:
        """(extract's answer, colormap.is_flat_art of the layer), its colours counted once."""
        rgb8, weight = layer.palette_sample()
        digest = hashlib.blake2b(np.ascontiguousarray(rgb8).data, digest_size=16)
        if weight is not None:
            digest.update(np.ascontiguousarray(weight).data)
        key = (digest.digest(), rgb8.shape, weight is None, k)
        with self.lock:
            found = self.cache.get(key)
        if found is None:
            counted = distinct_colours(rgb8, weight)
            palette = extract_palette(rgb8, k, weight=weight, counted=counted)
            found = palette, is_flat_art_counted(counted[1])
            with self.lock:
                self.cache[key] = found
        palette, flat_art = found
        return tuple(np.copy(part) for part in palette), flat_art

    def pair(self, target_lab, layer: Layer) -> tuple[np.ndarray, np.ndarray, bool]:
        """pair_with_image(target_lab, layer's pixels, their weight): (target, source), and
        whether the layer is flat art (colormap.is_flat_art, counted with the palette)."""
        target = np.asarray(target_lab, dtype=np.float64).reshape(-1, 3)
        (source, _), flat_art = self._analysed(layer, len(target))
        return pair_by_lightness(target, source), source, flat_art


def _is_identity(request: Request) -> bool:
    """Whether every colour is mapped to itself (source_palette equal to the palette): the
    answer is the layer unchanged, bit for bit, whatever the method (a network, or a
    lattice, would otherwise move colours a little)."""
    source = request.source_palette
    return source is not None and np.array_equal(source, request.palette)


def _check_finite(layer: Layer, what: str) -> None:
    """ProtocolError (bad_request) naming the first NaN or infinite pixel, if there is one."""
    bad = layer.non_finite()
    if bad is not None:
        message = f"{what} at x={bad[0]}, y={bad[1]} holds NaN or an infinite value"
        raise ProtocolError("bad_request", message)


def _in_linear_srgb(layer: Layer, profile: bytes) -> Layer:
    """A layer in an ICC profile's colours as a new RGBAF32_LINEAR layer (icc.py), the mask
    kept. ProtocolError (bad_request) for NaN or infinity, or a profile LittleCMS refuses."""
    _check_finite(layer, "pixel")
    try:
        converted = Layer(icc.to_linear_srgb(layer.pixels, layer.format, profile),
                          icc.LINEAR_SRGB, layer.mask)  # fmt: skip
    except icc.ProfileError as error:
        raise ProtocolError("bad_request", f"icc_profile: {error}", field="icc_profile") from None
    # A profile that passed the probe may still send colours beyond it (a float layer's
    # values far outside 0..1) to infinity.
    _check_finite(converted, "pixel converted with the icc_profile")
    return converted


def _in_own_profile(request: Request, layer: Layer, out: np.ndarray) -> np.ndarray:
    """The recoloured RGBAF32_LINEAR `out` of a request with an icc_profile, converted back
    to the request's profile and pixel format (into its reply file, if it named one). At
    full size, pixels that came out as they went in (unselected, transparent, unchanged)
    get the request's own bytes back, bit for bit, whatever the conversions' rounding."""
    pixel_format = FORMATS[request.pixel_format]
    shape = (layer.height, layer.width, pixel_format.channels)
    if request.reply is not None:
        encoded = np.frombuffer(request.reply, pixel_format.dtype).reshape(shape)
    else:
        encoded = np.empty(shape, pixel_format.dtype)
    icc.from_linear_srgb(out, pixel_format, request.icc_profile, encoded)
    if (layer.height, layer.width) == (request.height, request.width):
        original = Layer.from_buffer(request.pixels, request.width, request.height, pixel_format)
        kept = (out == layer.pixels).all(axis=-1)
        np.copyto(encoded, original.pixels, where=kept[..., None])
    return encoded


def _preview_key(request: Request) -> bytes | None:
    """The PreviewCache key of a preview request: layer_key, with its ICC profile."""
    key = layer_key(request, "palettenet")
    if key is None or request.icc_profile is None:
        return key
    return hashlib.blake2b(key + request.icc_profile, digest_size=20).digest()


def _layer_of(reference: Reference) -> Layer:
    """A request's reference image as a Layer (a view, no copy), checked for NaN."""
    layer = Layer.from_buffer(
        reference.pixels, reference.width, reference.height, FORMATS[reference.pixel_format]
    )
    _check_finite(layer, "reference pixel")
    return layer


def _lab_palettes(request: Request) -> tuple[np.ndarray, np.ndarray | None]:
    """The request's target and source palettes (sRGB on the wire) in LAB, (n, 3) each."""
    source = request.source_palette
    return rgb_to_lab_np(request.palette), None if source is None else rgb_to_lab_np(source)


@dataclass
class _Started:
    """A palettenet request between prepare and finish."""

    index: int
    request: Request
    layer: Layer
    working: Working | None
    timing: Timing
    target: np.ndarray  # the palette, LAB
    source: np.ndarray | None  # the colours it replaces, entry by entry (None: not used)
    output: np.ndarray | None = None
    pair: tuple | None = None  # the (source, target) LAB palettes the output was made for
    error: Exception | None = None
    preview_key: bytes | None = None  # set for previews, whose encoding is kept
    encoded: EncodedImage | None = None


@dataclass(frozen=True)
class _Preview:
    """What the live preview keeps of a layer between palettes (PreviewCache entries)."""

    layer: Layer  # the layer as the preview sees it (checked, reduced to the preview size)
    working: Working
    encoded: EncodedImage

    @property
    def nbytes(self) -> int:
        arrays = [self.layer.pixels, self.layer.mask, self.working.rgb, self.working.weight]
        return self.encoded.nbytes + sum(a.nbytes for a in arrays if a is not None)
