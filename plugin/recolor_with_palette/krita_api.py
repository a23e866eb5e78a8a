"""Every call into Krita's scripting API (libkis) that the plug-in makes, in one place.

The rest of the plug-in sees an editor with a few methods (the controller's contract) and
never imports `krita`; this module takes the `krita` module as an argument and imports Qt only
where a Qt type is needed, so tests run it against a mock Krita without Qt. All of
these run on the GUI thread: libkis must not be used from any other.

Facts about libkis this relies on, seen in Krita 5.1 (tests/test_plugin_krita_real.py runs
the plug-in in the real Krita: the pixel layouts of 8-bit, 16-bit and half-float layers,
and Apply's single undo step):
- pixelData is B, G, R, A for integer depths, R, G, B, A for float ones, native byte order.
- projectionPixelData is the layer as the artist sees it (with its masks; a group merged).
- Node.thumbnail(w, h) is NOT the canvas: it shows the layer's stored extent (64-px tiles,
  pixels beyond the canvas included), fitted into w x h. The palette and the preview are
  therefore sampled from projectionPixelData over Apply's own rectangle (sample_rows).
- setPixelData on a node not yet in the image makes no undo step and addChildNode makes
  exactly one, so "create, fill, then add" is one undo step that leaves the original alone.
- ManagedColor.colorForCanvas(canvas) gives the colour as the artist sees it (a QColor).
- libkis names a layer's profile but does not hand out its bytes. Krita loads profiles from
  the color/icc folders of the data directories (its own elle-*.icc among them) and its
  profiles folder, under their description; and Document.exportImage to PNG with forceSRGB
  off embeds the document's profile, byte for byte, in an iCCP chunk.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
import tempfile
import zlib

from .controller import LayerInfo, LayerPixels, ManyPlan, PreviewSource
from .errors import EditorError
from .palettes import normalize_hex
from .pixels import (
    BYTES_PER_PIXEL,
    DEPTHS,
    LITTLE_ENDIAN,
    Pixels,
    layer_to_wire,
    srgb_encode,
    tile_parts,
    wire_format,
)
from .wire import MAX_ICC_PROFILE_BYTES

LAYER_TYPES = ("paintlayer", "grouplayer", "filelayer", "vectorlayer", "filllayer", "clonelayer")
SETTINGS_GROUP = "RecolorWithPalette"
# Krita's menu item (its text exactly: tests/test_plugin_krita_real.py) that makes a CMYK or
# greyscale layer recolourable: the image and with it the result layer become RGB.
CONVERT_IMAGE = "Image > Convert Image Color Space... (Model: RGB/Alpha)"
QIMAGE_FORMAT_ARGB32 = 5  # QImage.Format.Format_ARGB32, in Qt 5 and Qt 6
# Profiles shipped with Krita. A layer in any RGB space other than sRGB (a wide gamut:
# Rec. 2020, ProPhoto...) is converted by Krita (LittleCMS) to linear-light sRGB in half or
# full floats, which keep colours outside sRGB, and its result converted back: the swatches
# (Krita's thumbnails and colours for display are sRGB) and the pixels are then in one space.
SRGB = "sRGB-elle-V2-srgbtrc.icc"
LINEAR_SRGB = "sRGB-elle-V2-g10.icc"
# Colours converted to tell whether a profile is sRGB, linear-light sRGB or another space;
# RGBA as Krita's float components. Equal within PROBE_TOLERANCE counts as the same.
PROBE_COLORS = ((1, 0, 0, 1), (0, 1, 0, 1), (0, 0, 1, 1), (0.8, 0.3, 0.1, 1), (0.5, 0.5, 0.5, 1),
                (0.1, 0.6, 0.9, 1))  # fmt: skip
PROBE_TOLERANCE = 0.003  # under 1/255: different builds of one space agree that well
# A layer in another RGB space goes to the daemon as Krita stores it, with its ICC profile
# (the daemon converts with LittleCMS); Krita's own conversion (CONVERT_BAND_PIXELS) is the
# fallback where the profile's bytes cannot be found. Profile files are looked for here.
PROFILE_EXTENSIONS = (".icc", ".icm")
# Big layers are read and written in bands, one libkis call each, the event loop running in
# between: a call of this many bytes takes some tens of milliseconds.
BAND_BYTES = 4 * 2**20
# A band converted to or from linear sRGB (Krita's float conversion: 1-3 MP/s).
CONVERT_BAND_PIXELS = 400_000
# The frames of an animated layer are looked for up to the clip's end or this frame.
LAST_FRAME_SCANNED = 1000
# Each frame of an animation is sampled at about this many pixels on its long side for
# the palette of all frames together (one row per libkis call: never a whole frame).
FRAME_SAMPLE_SIDE = 128
# Pixels this transparent or more are left out of the palette's sample: a vector layer's
# faint anti-aliased edges are not colours the artist painted.
PALETTE_MIN_ALPHA = 64
# Rows and columns whose pixels fingerprint a layer's content at every poll (content_key):
# on a 48-megapixel 8-bit layer about 4 MB read per look.
CONTENT_LINES = 64
# Plain words for Krita's colour model and depth names, in messages.
MODEL_WORDS = {"GRAYA": "greyscale", "CMYKA": "CMYK", "LABA": "Lab", "XYZA": "XYZ",
               "YCbCrA": "YCbCr", "RGBA": "RGB"}  # fmt: skip
DEPTH_WORDS = {"U8": "8-bit", "U16": "16-bit", "F16": "16-bit float", "F32": "32-bit float"}


class KritaEditor:
    def __init__(self, krita_module):
        """krita_module: the `krita` module Krita provides to plug-ins (tests: a mock)."""
        self.module = krita_module
        self.krita = krita_module.Krita.instance()
        self._tones: dict[str, str] = {}  # profile name -> _tone()
        self._profiles: dict[str, bytes | None] = {}  # profile name -> icc_profile()
        self._profile_files: dict[str, str] | None = None  # description -> path

    # --- the active layer -------------------------------------------------------------------
    def _document(self):
        document = self.krita.activeDocument()
        if document is None:
            raise EditorError("Open an image to recolour one of its layers.", hint=True)
        return document

    def _layer(self, document):
        node = document.activeNode()
        if node is None:
            raise EditorError("Select a layer to recolour.", hint=True)
        if node.type().endswith("mask"):
            node = node.parentNode()  # a mask is selected: recolour the layer it belongs to
            if node is not None and node.parentNode() is None:
                node = None  # the image's global selection mask belongs to no layer
        if node is None or node.type() not in LAYER_TYPES:
            kind = "nothing" if node is None else f"a {node.type()}"
            raise EditorError(
                f"Select a paint, group, vector or file layer (the active one is {kind})."
            )
        model, depth = node.colorModel(), node.colorDepth()
        if model != "RGBA":
            kind = f"{MODEL_WORDS.get(model, model)} {DEPTH_WORDS.get(depth, depth)}"
            raise EditorError(
                f"“{node.name()}” is a {kind} layer; Recolor with Palette works on RGB "
                f"images. Convert the image first: {CONVERT_IMAGE} (the new layer is made in "
                "the image's colour space, so converting only the layer is not enough)."
            )
        if depth not in DEPTHS:
            raise EditorError(f"“{node.name()}” has colour depth {depth}, which is not supported.")
        return node

    def _info(self, document, node) -> LayerInfo:
        profile = node.colorProfile()
        return LayerInfo(
            key=node.uniqueId().toString(),
            name=node.name(),
            color_model=node.colorModel(),
            depth=node.colorDepth(),
            linear=self._tone(profile) == "linear",
            handle=(document, node),
            profile=profile,
        )

    def _tone(self, profile: str) -> str:
        """ "srgb", "linear" (linear-light sRGB) or "other": what Krita's own conversion of a
        few colours from `profile` to sRGB and to linear sRGB leaves unchanged. Whatever the
        profile's name says, and for any profile Krita knows."""
        if profile not in self._tones:
            self._tones[profile] = "other"
            for target, tone in ((SRGB, "srgb"), (LINEAR_SRGB, "linear")):
                if all(self._unchanged(profile, target, color) for color in PROBE_COLORS):
                    self._tones[profile] = tone
                    break
        return self._tones[profile]

    def _unchanged(self, profile: str, target: str, color) -> bool:
        try:
            managed = self.module.ManagedColor("RGBA", "F32", profile)
            managed.setComponents(list(color))
            if not managed.setColorSpace("RGBA", "F32", target):
                return False
            converted = managed.components()
        except Exception:  # a profile ManagedColor cannot take: converted like any other
            return False
        return all(abs(a - b) <= PROBE_TOLERANCE for a, b in zip(converted, color))

    def icc_profile(self, name: str) -> bytes | None:
        """The bytes of the RGB ICC profile Krita calls `name` (at most
        MAX_ICC_PROFILE_BYTES), None where neither way finds them: a profile file in
        Krita's folders whose description is `name`, else the iCCP chunk of a 1 x 1
        document in that profile exported to a temporary PNG. Found once per name."""
        if name not in self._profiles:
            found = None
            path = self._profile_file_index().get(name)
            if path is not None:
                found = usable_profile(read_file(path))
            if found is None:
                found = usable_profile(self._exported_profile(name))
            self._profiles[name] = found
        return self._profiles[name]

    def refuse_icc_profile(self, name: str) -> None:
        """The daemon cannot use the profile icc_profile(name) found (its LittleCMS refused
        it): from now on the layer is converted by Krita instead, as for a profile whose
        bytes are not found."""
        self._profiles[name] = None

    def _profile_file_index(self) -> dict[str, str]:
        """{description: path} of the profile files in Krita's folders (first found wins,
        in profile_folders' order)."""
        if self._profile_files is None:
            self._profile_files = {}
            try:
                app_data = self.krita.getAppDataLocation()
            except Exception:  # an older libkis, or a mock without it
                app_data = None
            for folder in profile_folders(app_data):
                for root, _dirs, files in os.walk(folder):
                    for file_name in sorted(files):
                        if file_name.lower().endswith(PROFILE_EXTENSIONS):
                            path = os.path.join(root, file_name)
                            description = icc_description(read_file(path, 1 << 20))
                            if description:
                                self._profile_files.setdefault(description, path)
        return self._profile_files

    def _exported_profile(self, name: str) -> bytes | None:
        """The profile Krita embeds in a PNG of a 1 x 1 document in it (batch mode: no
        dialog), None where that fails."""
        folder = tempfile.mkdtemp(prefix="recolor-profile-")
        path = os.path.join(folder, "profile.png")
        document = None
        try:
            if name not in self.krita.profiles("RGBA", "U16"):
                return None  # not an RGB profile: Krita 5.1 aborts on a document in one
            document = self.krita.createDocument(1, 1, "Recolor with Palette profile", "RGBA",
                                                 "U16", name, 72.0)  # fmt: skip
            if document is None or document.colorProfile() != name:
                return None
            document.setBatchmode(True)
            info = self.module.InfoObject()
            info.setProperty("forceSRGB", False)  # keep the document's own profile
            info.setProperty("saveSRGBProfile", False)
            if not document.exportImage(path, info):
                return None
            return png_icc_profile(read_file(path))
        except Exception:  # any failure here means: use Krita's conversion instead
            return None
        finally:
            if document is not None:
                try:
                    document.setModified(False)
                    document.close()
                except Exception:
                    pass
            for remove, leftover in ((os.remove, path), (os.rmdir, folder)):
                try:
                    remove(leftover)
                except OSError:
                    pass  # never written, or already gone

    def active_layer(self) -> LayerInfo:
        """The active layer; where Apply recolours several pieces (selected layers, a
        group's layers, an animation's frames), its key and name say which."""
        document = self._document()
        node = self._layer(document)
        info = self._info(document, node)
        many = self._many(document, node)
        if many is not None:
            kind, nodes, times = many
            info.key = (info.key, kind, tuple(n.uniqueId().toString() for n in nodes), times)
            info.pieces = describe_many(kind, nodes, times)
        return info

    def thumbnail(self, max_side: int) -> Pixels:
        """The palette's source: the active layer within the canvas (what Apply can
        recolour; pixels beyond the canvas are never seen), sampled to at most max_side
        pixels long (sample_rows), 8-bit sRGB as the artist sees it, nearly
        transparent pixels (anti-aliased edges) made fully transparent. Where Apply
        recolours several layers or frames: all of them, one below the other, so that
        their palette is that of all together. EditorError where nothing is visible."""
        document = self._document()
        node = self._layer(document)
        many = self._many(document, node)
        if many is not None and many[0] == "frames":
            return self._frame_samples(document, node, many[2])
        parts = []
        for layer in [node] if many is None else many[1]:
            region = self._canvas_region(document, layer)
            if region is not None:
                parts.append(self._display_sample(document, layer, region, max_side)[0])
        sample = drop_faint(tile_parts(parts)) if parts else None
        if sample is None or not any(sample.data[3::4]):
            self._empty(node)
        return sample

    @staticmethod
    def _empty(node):
        raise EditorError(f"“{node.name()}” is empty: it has no visible pixels on the canvas "
                          "to recolour.", hint=True)  # fmt: skip

    def _canvas_region(self, document, node):
        """The layer's bounds within the canvas, None where they do not meet."""
        bounds = node.bounds()
        return intersect(
            (bounds.x(), bounds.y(), bounds.width(), bounds.height()),
            (0, 0, document.width(), document.height()),
        )

    def _display_sample(self, document, node, region, max_side, selection=None):
        """(BGRA8 sRGB Pixels, selection bytes or None): the layer as seen over `region`,
        sampled to at most max_side pixels long (sample_rows), and the selection at the
        same pixels. Reads one row per libkis call."""
        info = self._info(document, node)
        size = BYTES_PER_PIXEL[info.depth]
        width, height, data = sample_rows(node.projectionPixelData, region, max_side, size)
        tone = self._tone(info.profile)
        if tone == "other":  # a wide gamut: Krita converts it for display
            data = self._convert(data, width, height, (info.depth, info.profile), ("U8", SRGB))
        else:
            data = display_bgra8(data, info.depth, tone == "linear")
        mask = None
        if selection is not None:
            mask = sample_rows(selection.pixelData, region, max_side, 1)[2]
        return Pixels(width, height, "BGRA8", data), mask

    def _region(self, document, node):
        """(x, y, width, height) that Apply recolours: the layer within the canvas (what
        lies beyond it is never seen) and within the selection's bounds; and the selection
        (None without one). EditorError where that is nothing."""
        region = self._canvas_region(document, node)
        if region is None:
            raise EditorError(f"“{node.name()}” is empty here: there is nothing to recolour.")
        selection = document.selection()
        if selection is not None:
            selected = (selection.x(), selection.y(), selection.width(), selection.height())
            region = intersect(region, selected)
            if region is None:
                raise EditorError(f"The selection does not cover any of “{node.name()}”.")
        return region, selection

    def region_key(self, max_side: int):
        """A cheap token that changes when Apply's region or the preview of it
        (preview_source(max_side)) would: another layer, document or canvas size, the
        layer's extent, the selection's bounds and its shape (selection_crc). Made at
        every poll."""
        document = self._document()
        node = self._layer(document)
        bounds, selection = node.bounds(), document.selection()
        selected = None
        if selection is not None:
            selected = (selection.x(), selection.y(), selection.width(), selection.height())
            region = self._canvas_region(document, node)
            region = region and intersect(region, selected)
            if region is not None:
                selected += (selection_crc(selection, region, max_side),)
        return (
            node.uniqueId().toString(),
            (document.width(), document.height()),
            (bounds.x(), bounds.y(), bounds.width(), bounds.height()),
            selected,
        )

    def content_key(self):
        """A cheap fingerprint of what the active layer shows on the canvas, made at every
        poll so that painting refreshes the swatches and the preview: a CRC of
        CONTENT_LINES evenly spaced whole rows and as many whole columns (a stroke that
        crosses none of them, smaller than the gap between them, goes unnoticed)."""
        document = self._document()
        node = self._layer(document)
        region = self._canvas_region(document, node)
        if region is None:
            return None
        x, y, width, height = region
        crc = 0
        for top in spread(y, height, CONTENT_LINES):
            crc = zlib.crc32(node.projectionPixelData(x, top, width, 1), crc)
        for left in spread(x, width, CONTENT_LINES):
            crc = zlib.crc32(node.projectionPixelData(left, y, 1, height), crc)
        return region, crc

    def preview_source(self, max_side: int) -> PreviewSource:
        """Apply's region of the active layer, sampled to at most max_side pixels long, as
        the artist sees it (8-bit sRGB), and the selection sampled at the
        same pixels: read from the same rectangle Apply reads, a row per libkis call."""
        document = self._document()
        node = self._layer(document)
        key = self.region_key(max_side)
        region, selection = self._region(document, node)
        pixels, mask = self._display_sample(document, node, region, max_side, selection)
        return PreviewSource(pixels, mask, region, key)

    def read_layer(self):
        """The active layer's pixels (as the artist sees them, with its masks) within the
        canvas and the selection, plus the selection's mask over that rectangle. Checks the
        layer now (EditorError) and returns a generator that reads it in bands, pausing
        after each (the caller gives the event loop a turn), and returns LayerPixels. A
        layer in another RGB space than sRGB arrives converted to linear-light sRGB."""
        document = self._document()
        node = self._layer(document)
        info = self._info(document, node)
        self._check_same_color_space(document, node)
        region, selection = self._region(document, node)
        return self._read_bands(node, info, region, selection)

    def _read_bands(self, node, info, region, selection, read_pixels=None):
        """read_pixels(x, y, width, height): the bytes (default: the layer as seen)."""
        read_pixels = read_pixels or node.projectionPixelData
        x, y, width, height = region
        wide_gamut = self._tone(info.profile) == "other"
        icc_profile = self.icc_profile(info.profile) if wide_gamut else None
        convert = wide_gamut and icc_profile is None  # the daemon converts it, else Krita
        depth = working_depth(info.depth) if convert else info.depth
        size, out_size = BYTES_PER_PIXEL[info.depth], BYTES_PER_PIXEL[depth]
        # Anonymous memory: zero pages the system hands out as the bands fill them (a
        # bytearray of hundreds of MB would be zeroed at once, freezing the GUI for that).
        raw = mmap.mmap(-1, width * height * out_size)
        mask = bytearray(width * height) if selection is not None else None
        step = band_rows(width, max(size, out_size), convert)
        for top in range(0, height, step):
            rows = min(step, height - top)
            band = bytes(read_pixels(x, y + top, width, rows))
            if len(band) != width * rows * size:
                raise EditorError(f"Krita gave {len(band)} bytes of “{node.name()}” where "
                                  f"{width * rows * size} were expected.")  # fmt: skip
            if convert:
                yield
                band = self._convert(band, width, rows, (info.depth, info.profile),
                                     (depth, LINEAR_SRGB))  # fmt: skip
            raw[top * width * out_size : (top + rows) * width * out_size] = band
            if mask is not None:
                lines = bytes(selection.pixelData(x, y + top, width, rows))
                mask[top * width : (top + rows) * width] = lines
            yield
        mask = bytes(mask) if mask is not None else None
        return LayerPixels(info, x, y, width, height, raw, mask, depth, info.linear or convert,
                           icc_profile=icc_profile)  # fmt: skip

    def _convert(self, data: bytes, width: int, height: int, source, target) -> bytes:
        """Pixels converted by Krita (LittleCMS) from (depth, profile) to (depth, profile),
        through a scratch document that is never shown and is closed at once: the image's
        own undo history does not see it. 1-3 MP/s on the GUI thread: for samples, and for
        layers whose profile's bytes icc_profile cannot find."""
        document = self.krita.createDocument(width, height, "Recolor with Palette conversion",
                                             "RGBA", source[0], source[1], 72.0)  # fmt: skip
        try:
            layer = document.rootNode().childNodes()[0]
            layer.setPixelData(data, 0, 0, width, height)
            if not document.setColorSpace("RGBA", target[0], target[1]):
                raise EditorError(f"Krita could not convert the layer from {source[1]} to "
                                  f"{target[1]}.")  # fmt: skip
            document.waitForDone()
            converted = bytes(layer.pixelData(0, 0, width, height))
        finally:
            document.setModified(False)
            document.close()
        if len(converted) != width * height * BYTES_PER_PIXEL[target[0]]:
            raise EditorError(f"Krita's conversion to {target[1]} gave {len(converted)} bytes.")
        return converted

    @staticmethod
    def _check_same_color_space(document, node) -> None:
        """The result layer is created in the image's colour space, so the layer's pixels
        must be in that one too (Krita lets a layer differ from its image)."""
        layer = (node.colorModel(), node.colorDepth(), node.colorProfile())
        image = (document.colorModel(), document.colorDepth(), document.colorProfile())
        if layer != image:
            raise EditorError(
                f"“{node.name()}” is {' '.join(layer)} but the image is {' '.join(image)}. "
                f"Convert the image to the layer's colour space first: {CONVERT_IMAGE} "
                f"(model, depth and profile as the layer's)."
            )

    # --- the result -------------------------------------------------------------------------
    def add_layer_above(self, pixels: LayerPixels, name: str, raw: bytes):
        """A new paint layer right above the source layer, in one undo step. Checks now
        (EditorError) and returns a generator that fills the new layer in bands, pausing
        after each, then adds it (`raw` as read_layer's `depth` says; converted back to the
        layer's own space where read_layer converted it)."""
        self._check_still_there(pixels)
        return self._write_bands(pixels, name, raw)

    def _write_bands(self, pixels: LayerPixels, name: str, raw: bytes):
        document, node = pixels.layer.handle
        layer = document.createNode(name, "paintlayer")  # not in the image yet: no undo
        yield from self._fill_bands(layer, pixels, raw)
        self._check_still_there(pixels)
        # The same opacity and blending mode, so hiding the original shows the same picture.
        layer.setOpacity(node.opacity())
        layer.setBlendingMode(node.blendingMode())
        # The one undoable step; Krita updates the canvas and makes the new layer the active
        # one, as for any layer it adds.
        node.parentNode().addChildNode(layer, node)

    def _fill_bands(self, layer, pixels: LayerPixels, raw: bytes):
        """Write `raw` (read_layer's `depth`) into `layer` at the pixels' rectangle, in
        bands, converted back to the layer's own space where it was converted."""
        info, width = pixels.layer, pixels.width
        converted = (pixels.depth, pixels.linear) != (info.depth, info.linear)
        size = BYTES_PER_PIXEL[pixels.depth]
        data = memoryview(raw)
        step = band_rows(width, max(size, BYTES_PER_PIXEL[info.depth]), converted)
        for top in range(0, pixels.height, step):
            rows = min(step, pixels.height - top)
            band = bytes(data[top * width * size : (top + rows) * width * size])
            if converted:
                yield
                band = self._convert(band, width, rows, (pixels.depth, LINEAR_SRGB),
                                     (info.depth, info.profile))  # fmt: skip
            layer.setPixelData(band, pixels.x, pixels.y + top, width, rows)
            yield

    # --- many in one go: selected layers, a group's layers, an animation's frames ---------
    def _many(self, document, node):
        """("layers", paint layers, ()) for several selected layers or a group (its paint
        layers, nested ones too), ("frames", [node], keyframe times) for an animated paint
        layer, or None: the active layer alone."""
        selected = []
        for chosen in self._selected_nodes():
            if chosen.type().endswith("mask"):
                chosen = chosen.parentNode()
            if chosen is not None and all(chosen != other for other in selected):
                selected.append(chosen)
        if len(selected) > 1 or node.type() == "grouplayer":
            layers = []
            for chosen in selected if len(selected) > 1 else [node]:
                layers += paint_layers(chosen)
            if len(layers) > 1 or (layers and node.type() == "grouplayer"):
                return "layers", layers, ()
            return None  # no paint layer inside (vector, file layers): as one merged layer
        if node.type() == "paintlayer" and node.animated():
            last = max(document.fullClipRangeEndTime(), LAST_FRAME_SCANNED)
            times = tuple(t for t in range(last + 1) if node.hasKeyframeAtTime(t))
            if len(times) > 1:
                return "frames", [node], times
        return None

    def _selected_nodes(self) -> list:
        try:
            return list(self._view().selectedNodes())
        except EditorError:
            return []  # no window (a script): the active layer alone

    def _frame_samples(self, document, node, times) -> Pixels:
        """Every keyframe of `node` over the canvas, sampled (sample_rows), in a grid
        (tile_parts), in the layer's own pixel format for the daemon."""
        info = self._info(document, node)
        wide = self._tone(info.profile) == "other"
        if wide and self.icc_profile(info.profile) is None:
            raise EditorError(_WIDE_MANY)
        region = (0, 0, document.width(), document.height())  # every frame's extent
        size = BYTES_PER_PIXEL[info.depth]
        samples = []
        for time in times:
            read = partial_at(node.pixelDataAtTime, time)
            columns, rows, sample = sample_rows(read, region, FRAME_SAMPLE_SIDE, size)
            if wide:  # as the artist sees it, in sRGB: a sample is small for Krita's conversion
                sample = self._convert(sample, columns, rows, (info.depth, info.profile),
                                       ("U8", SRGB))  # fmt: skip
                samples.append(Pixels(columns, rows, "BGRA8", sample))
                continue
            pixel_format = wire_format(info.depth, info.linear)
            if not LITTLE_ENDIAN:
                pixel_format, sample = layer_to_wire(sample, info.depth, info.linear)
            samples.append(Pixels(columns, rows, pixel_format, sample))
        return tile_parts(samples)

    def plan_many(self) -> ManyPlan | None:
        """None where Apply recolours the active layer alone (read_layer, add_layer_above).
        Else what Apply recolours piece by piece with ONE mapping, and how the result is
        added in ONE undo step: the copies are filled while they are not in the image
        (no undo step), then added at once (one):
        - several selected layers: a new group above the topmost of them holding a copy of
          each, recoloured (groups among them copied whole, their paint layers recoloured);
        - a group: a copy of the group above it, its paint layers recoloured;
        - an animated paint layer: a copy above it with every keyframe recoloured. libkis
          5.1 writes pixels only at the current time, so the copy's frames are written by
          moving the playhead to each (Krita records those moves in the undo history too,
          below the added layer: one Ctrl+Z removes the recoloured layer, the next one
          moves the playhead back). The playhead returns to its frame at the end.
        Checks now (EditorError)."""
        document = self._document()
        node = self._layer(document)
        many = self._many(document, node)
        if many is None:
            return None
        kind, nodes, times = many
        if kind == "frames":
            return self._plan_frames(document, node, times)
        return self._plan_layers(document, node, nodes)

    def _plan_layers(self, document, active, layers) -> ManyPlan:
        selection = document.selection()
        for layer in layers:
            self._check_same_color_space(document, layer)
        selected = [n for n in self._selected_nodes() if not n.type().endswith("mask")]
        if active.type() == "grouplayer" and len(selected) <= 1:
            tops = [active]  # the group itself is copied
            what = f"the {len(layers)} layers of “{active.name()}”"
        else:
            tops = []
            for node in selected:
                if all(node != other for other in tops):
                    tops.append(node)
            tops.sort(key=stack_position)  # the copies stacked as the originals are
            what = f"{len(layers)} layers"
        copies: dict = {}  # a layer's uniqueId -> its copy (in a copy of its group or alone)
        for top in tops:
            copy = top.duplicate()
            for original, duplicate in zip(paint_layers(top), paint_layers(copy)):
                copies[original.uniqueId().toString()] = duplicate
            copies[("top", top.uniqueId().toString())] = copy
        regions = []
        for layer in layers:
            try:
                regions.append(self._region(document, layer)[0])
            except EditorError:
                regions.append(None)  # empty here, or outside the selection: left as it is
        if all(region is None for region in regions):
            raise EditorError("None of the layers has anything to recolour here.")
        infos = [self._info(document, layer) for layer in layers]

        def read(index):
            if regions[index] is None:
                return None
            return self._read_bands(layers[index], infos[index], regions[index], selection)

        def write(index, pixels, raw):
            copy = copies[layers[index].uniqueId().toString()]
            yield from self._fill_bands(copy, pixels, raw)

        def finish(name):
            for layer in layers:
                self._check_node(document, layer, layer.name())
            if len(tops) == 1 and tops[0].type() == "grouplayer":
                copy = copies[("top", tops[0].uniqueId().toString())]
                copy.setName(name)
                tops[0].parentNode().addChildNode(copy, tops[0])  # the one undo step
            else:
                group = document.createGroupLayer(name)
                for top in tops:  # bottom to top, as in the Layers docker
                    group.addChildNode(copies[("top", top.uniqueId().toString())], None)
                anchor = tops[-1]  # the topmost
                anchor.parentNode().addChildNode(group, anchor)  # the one undo step
            yield
            # A group filled before it was added keeps the picture it was copied with (or
            # none): seen in Krita 5.1, the canvas showed the old colours. Redraw it.
            document.refreshProjection()

        labels = [f"“{layer.name()}”" for layer in layers]
        return ManyPlan(what, labels, read, write, finish, lambda: None)

    def _plan_frames(self, document, node, times) -> ManyPlan:
        info = self._info(document, node)
        if self._tone(info.profile) == "other" and self.icc_profile(info.profile) is None:
            raise EditorError(_WIDE_MANY)
        self._check_same_color_space(document, node)
        # The whole canvas (within the selection): node.bounds() is the extent of the frame
        # at the playhead only, and other frames reach elsewhere.
        region, selection = (0, 0, document.width(), document.height()), document.selection()
        if selection is not None:
            selected = (selection.x(), selection.y(), selection.width(), selection.height())
            region = intersect(region, selected)
            if region is None:
                raise EditorError("The selection is outside the canvas: nothing to recolour.")
        copy = node.duplicate()  # every keyframe, not in the image: no undo step
        start = document.currentTime()

        def frame_reader(x, y, width, height, time):
            return node.pixelDataAtTime(x, y, width, height, time)

        def read(index):
            time = times[index]
            return self._read_bands(node, info, region, selection,
                                    lambda *rect: frame_reader(*rect, time))  # fmt: skip

        def write(index, pixels, raw):
            yield from self._go_to(document, times[index])
            yield from self._fill_bands(copy, pixels, raw)

        def finish(name):
            yield from self._go_to(document, start)
            self._check_node(document, node, node.name())
            copy.setName(name)
            node.parentNode().addChildNode(copy, node)  # the one undo step

        def abandon():
            if self._is_open(document) and document.currentTime() != start:
                document.setCurrentTime(start)

        labels = [f"frame {time}" for time in times]
        what = f"{len(times)} frames of “{node.name()}”"
        return ManyPlan(what, labels, read, write, finish, abandon, frames=True)

    @staticmethod
    def _go_to(document, time):
        """Move the playhead to `time` (libkis writes a layer's pixels at the current time)
        and wait until Krita has switched."""
        if document.currentTime() != time:
            document.setCurrentTime(time)
            document.waitForDone()
            for _ in range(200):
                if document.currentTime() == time:
                    break
                yield
                document.waitForDone()
            else:
                raise EditorError(f"Krita did not move to frame {time}; nothing was added.")

    def _check_node(self, document, node, name) -> None:
        if not self._is_open(document):
            raise EditorError(f"The image of “{name}” was closed while it was being "
                              "recoloured; nothing was added.")  # fmt: skip
        if document.nodeByUniqueID(node.uniqueId()) is None or node.parentNode() is None:
            raise EditorError(f"“{name}” was removed while it was being recoloured; nothing "
                              "was added.")  # fmt: skip

    def _check_still_there(self, pixels: LayerPixels) -> None:
        document, node = pixels.layer.handle
        if not self._is_open(document):
            raise EditorError(
                f"The image of “{pixels.layer.name}” was closed while it was being recoloured; "
                "nothing was added."
            )
        if document.nodeByUniqueID(node.uniqueId()) is None or node.parentNode() is None:
            raise EditorError(
                f"“{pixels.layer.name}” was removed while it was being recoloured; nothing "
                "was added."
            )

    def _is_open(self, document) -> bool:
        """Whether the document is still open (libkis compares documents with ==; a closed
        one's wrapper outlives it, pointing at nothing)."""
        try:
            return any(document == open_document for open_document in self.krita.documents())
        except RuntimeError:  # the wrapper's C++ side is gone
            return False

    # --- colours and palettes ---------------------------------------------------------------
    def _view(self):
        window = self.krita.activeWindow()
        view = window.activeView() if window is not None else None
        if view is None:
            raise EditorError("Open an image in a window first.")
        return view

    def foreground_color(self) -> str:
        view = self._view()
        return view.foregroundColor().colorForCanvas(view.canvas()).name()

    def palette_resource_names(self) -> list[str]:
        return sorted(self.krita.resources("palette").keys(), key=str.lower)

    def palette_resource_colors(self, name: str) -> list[str]:
        resource = self.krita.resources("palette").get(name)
        if resource is None:
            raise EditorError(f"There is no palette “{name}” in Krita's resources.")
        palette = self.module.Palette(resource)
        colors = []
        for index in range(palette.colorsCountTotal()):
            swatch = palette.colorSetEntryByIndex(index)
            if hasattr(swatch, "isValid") and not swatch.isValid():
                continue  # an empty slot in the palette's grid
            colors.append(normalize_hex(swatch.color().colorForCanvas(None).name()))
        if not colors:
            raise EditorError(f"The palette “{name}” has no colours.")
        return colors

    # --- messages and settings --------------------------------------------------------------
    def notify(self, text: str) -> None:
        """A floating message over the canvas (for results the docker may not show)."""
        from .qt import QtGui

        try:
            self._view().showFloatingMessage(text, QtGui.QIcon(), 4000, 1)
        except EditorError:
            pass

    def read_setting(self, key: str, default: str) -> str:
        return self.krita.readSetting(SETTINGS_GROUP, key, default)

    def write_setting(self, key: str, value: str) -> None:
        self.krita.writeSetting(SETTINGS_GROUP, key, value)


_WIDE_MANY = (
    "Recolouring several frames of a layer in this colour profile is not supported (its ICC "
    "profile could not be read): convert the image to sRGB, or recolour one frame at a time."
)


def profile_folders(app_data: str | None) -> list[str]:
    """The folders Krita loads ICC profiles from, as far as a plug-in can tell, most
    specific first: the user's (XDG data home's color/icc, ~/.color/icc, Krita's own
    resource folder's profiles and color/icc), then the system's (XDG data dirs), then
    those of Krita's bundle (an AppImage's, or next to Krita's executable on Windows and
    macOS). Only folders that exist."""
    home = os.path.expanduser("~")
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    data_dirs = (os.environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share").split(":")
    folders = [os.path.join(data_home, "color", "icc"), os.path.join(home, ".color", "icc")]
    if app_data:
        folders += [os.path.join(app_data, "profiles"), os.path.join(app_data, "color", "icc")]
    folders += [os.path.join(folder, "color", "icc") for folder in data_dirs if folder]
    if os.environ.get("APPDIR"):
        folders.append(os.path.join(os.environ["APPDIR"], "usr", "share", "color", "icc"))
    bundle = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable or "")))
    folders.append(os.path.join(bundle, "share", "color", "icc"))
    unique = []
    for folder in folders:
        if os.path.isdir(folder) and folder not in unique:
            unique.append(folder)
    return unique


def read_file(path: str, limit: int = -1) -> bytes:
    """A file's bytes (at most `limit`), b"" where it cannot be read."""
    try:
        with open(path, "rb") as file:
            return file.read(limit)
    except OSError:
        return b""


def icc_description(profile: bytes) -> str | None:
    """The description ('desc' tag) of an ICC profile, the name Krita shows for it: v2's
    textDescriptionType (ASCII) or v4's multiLocalizedUnicodeType (its first record,
    UTF-16BE). None for anything else."""
    try:
        if profile[36:40] != b"acsp":
            return None
        (count,) = struct.unpack_from(">I", profile, 128)
        for index in range(min(count, 256)):
            signature, offset, size = struct.unpack_from(">4sII", profile, 132 + 12 * index)
            if signature != b"desc":
                continue
            tag = profile[offset : offset + size]
            if tag[:4] == b"desc":
                (length,) = struct.unpack_from(">I", tag, 8)
                return tag[12 : 12 + length].split(b"\0")[0].decode("latin-1") or None
            if tag[:4] == b"mluc":
                records, _ = struct.unpack_from(">II", tag, 8)
                if records:
                    length, start = struct.unpack_from(">II", tag, 20)
                    return tag[start : start + length].decode("utf-16-be").rstrip("\0") or None
            return None
    except (struct.error, UnicodeDecodeError):
        return None
    return None


def usable_profile(profile: bytes | None) -> bytes | None:
    """The profile if the daemon takes it (an RGB ICC profile of at most
    MAX_ICC_PROFILE_BYTES), else None."""
    if not profile or len(profile) > MAX_ICC_PROFILE_BYTES:
        return None
    if profile[36:40] != b"acsp" or profile[16:20] != b"RGB ":
        return None
    return profile


def png_icc_profile(png: bytes) -> bytes | None:
    """The ICC profile in a PNG's iCCP chunk (zlib-compressed after its name), None
    without one."""
    position = 8
    while position + 8 <= len(png):
        length, kind = struct.unpack_from(">I4s", png, position)
        if kind == b"iCCP":
            body = png[position + 8 : position + 8 + length]
            _name, _, rest = body.partition(b"\0")
            try:
                return zlib.decompress(rest[1:])  # rest[0]: the compression method, 0
            except zlib.error:
                return None
        if kind == b"IDAT":
            return None  # iCCP comes before the image data
        position += 12 + length
    return None


def paint_layers(node) -> list:
    """The paint layers in `node`: itself, or those inside a group (nested ones too),
    bottom to top."""
    if node.type() == "paintlayer":
        return [node]
    if node.type() != "grouplayer":
        return []
    return [layer for child in node.childNodes() for layer in paint_layers(child)]


def stack_position(node) -> list:
    """Where a node is drawn in the image: its index in each group down from the root;
    nodes sort by it bottom to top, as the Layers docker lists them upside down."""
    steps = []
    while node.parentNode() is not None:
        parent = node.parentNode()
        steps.append(next(i for i, sibling in enumerate(parent.childNodes()) if sibling == node))
        node = parent
    return steps[::-1]


def describe_many(kind: str, nodes, times) -> str:
    """What Apply recolours besides one layer, as the docker says it: "12 frames", "3 layers"."""
    return f"{len(times)} frames" if kind == "frames" else f"{len(nodes)} layers"


def intersect(a, b):
    """The overlap of two (x, y, width, height) rectangles, None where they do not meet."""
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    if right <= left or bottom <= top:
        return None
    return left, top, right - left, bottom - top


def working_depth(depth: str) -> str:
    """The float depth a layer of `depth` is converted to linear sRGB in: half floats hold
    8- and 16-bit layers' values closely enough (11 significant bits in linear light),
    float layers stay float."""
    return "F32" if depth == "F32" else "F16"


def band_rows(width: int, pixel_bytes: int, converting: bool) -> int:
    """Rows per libkis call when reading or writing a `width`-wide layer: BAND_BYTES, or
    CONVERT_BAND_PIXELS where each band is converted too; at least one row."""
    rows = BAND_BYTES // (width * pixel_bytes)
    if converting:
        rows = min(rows, CONVERT_BAND_PIXELS // width)
    return max(1, rows)


def spread(start: int, length: int, count: int) -> range:
    """At most `count` evenly spaced positions in [start, start + length)."""
    return range(start, start + length, max(1, -(-length // count)))


def partial_at(read_at_time, time):
    """read(x, y, width, height) of the frame at `time`."""
    return lambda x, y, width, height: read_at_time(x, y, width, height, time)


def sample_positions(region, max_side: int) -> tuple[list, list]:
    """(columns, rows): the offsets within `region` (x, y, width, height) of the pixels a
    sample at most max_side pixels long takes, the nearest pixel to each sample's centre."""
    _, _, width, height = region
    scale = min(1.0, max_side / max(width, height))
    out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
    return ([int((i + 0.5) * width / out_w) for i in range(out_w)],
            [int((i + 0.5) * height / out_h) for i in range(out_h)])  # fmt: skip


def sample_rows(read, region, max_side: int, size: int) -> tuple[int, int, bytes]:
    """(columns, rows, bytes): `region` (x, y, width, height) at most max_side pixels
    long (sample_positions: no blending, each sample is a pixel Apply reads), read with
    read(x, y, width, 1), `size` bytes a pixel, row after row."""
    x, y, width, height = region
    columns, offsets = sample_positions(region, max_side)
    rows = []
    for offset in offsets:
        line = memoryview(bytes(read(x, y + offset, width, 1)))
        if len(columns) == width:
            rows.append(line.tobytes())
        else:
            rows.append(b"".join(line[c * size : (c + 1) * size] for c in columns))
    return len(columns), len(offsets), b"".join(rows)


def selection_crc(selection, region, max_side: int) -> int:
    """A CRC of the selection (one byte a pixel) over the whole rows of `region` that a
    preview at most max_side pixels long samples (sample_positions): it changes whenever
    the preview's selection does, whatever the selection's bounds. A change that falls
    between those rows, which the preview cannot show, is left to Apply (which reads the
    selection whole). One libkis call per row, at most max_side: 6-10 ms over a selection
    covering an 8000 x 6000 canvas (whole columns too would add about 10 ms: a column
    crosses a tile every 64 rows)."""
    x, y, width, _ = region
    crc = 0
    for row in sample_positions(region, max_side)[1]:
        crc = zlib.crc32(selection.pixelData(x, y + row, width, 1), crc)
    return crc


_TABLES: dict = {}  # (kind, linear) -> 65536 display bytes, one per 16-bit code


def _display_table(kind: str, linear: bool) -> bytes:
    """The 8-bit display value of every 16-bit code of `kind`: "U16" (an integer channel),
    "F16" (a half float's bits) or "F32" (a float's upper 16 bits: sign, exponent and 7
    mantissa bits, within 1/256 of the value: enough for 8 bits). Made once, then a look-up
    per channel: a 256 x 256 sample takes about 10 ms instead of 100-150 ms of float maths."""
    if (kind, linear) not in _TABLES:
        if kind == "U16":
            values = [code / 65535 for code in range(65536)]
        else:
            raw = struct.pack("=65536H", *range(65536))
            if kind == "F16":
                values = struct.unpack("=65536e", raw)
            else:
                shifted = struct.pack("=65536I", *(code << 16 for code in range(65536)))
                values = struct.unpack("=65536f", shifted)
        curve = srgb_encode if linear else (lambda v: v)
        _TABLES[kind, linear] = bytes(
            0 if value != value else round(min(255.0, max(0.0, curve(value) * 255)))  # NaN: 0
            for value in values
        )
    return _TABLES[kind, linear]


def display_bgra8(data: bytes, depth: str, linear: bool) -> bytes:
    """A layer's bytes (Krita's layout for `depth`: B, G, R, A for integers, R, G, B, A for
    floats, native order; sRGB or linear-light sRGB) as 8-bit sRGB B, G, R, A, as a display
    shows them: rounded, clipped to 0-255."""
    if depth == "U8":
        if not linear:
            return data
        table = bytes(min(255, round(srgb_encode(v / 255) * 255)) for v in range(256))
        out = bytearray(data)
        for channel in range(3):
            out[channel::4] = bytes(table[v] for v in data[channel::4])
        return bytes(out)
    codes = memoryview(data).cast("H")
    if depth == "F32":  # each float's upper half
        codes = codes[1::2] if LITTLE_ENDIAN else codes[0::2]
    kind = "U16" if depth == "U16" else depth
    colour, alpha = _display_table(kind, linear), _display_table(kind, False)
    places = ((0, 0), (1, 1), (2, 2)) if depth == "U16" else ((0, 2), (1, 1), (2, 0))
    out = bytearray(len(codes))
    for channel, place in places:
        out[place::4] = bytes(colour[code] for code in codes[channel::4])
    out[3::4] = bytes(alpha[code] for code in codes[3::4])
    return bytes(out)


def drop_faint(pixels: Pixels) -> Pixels:
    """The pixels with those under PALETTE_MIN_ALPHA made fully transparent."""
    data = bytearray(pixels.data)
    alpha = data[3::4]
    if min(alpha, default=255) >= PALETTE_MIN_ALPHA:
        return pixels
    for index, value in enumerate(alpha):
        if value < PALETTE_MIN_ALPHA:
            data[4 * index : 4 * index + 4] = b"\0\0\0\0"
    return Pixels(pixels.width, pixels.height, "BGRA8", bytes(data))


def qimage_pixels(image) -> Pixels:
    """A QImage (Krita's thumbnails) -> BGRA8 pixels: ARGB32 is B, G, R, A in memory on
    little-endian machines, and every row of a 32-bit image is exactly 4 x width bytes."""
    fmt = image.format()
    if getattr(fmt, "value", fmt) != QIMAGE_FORMAT_ARGB32:  # Krita's thumbnails already are
        from .qt import QtGui

        image = image.convertToFormat(QtGui.QImage.Format.Format_ARGB32)
    width, height = image.width(), image.height()
    data = image.constBits().asstring(width * height * 4)
    return Pixels(width, height, "BGRA8", bytes(data))
