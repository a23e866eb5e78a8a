"""Every call into GIMP 3 (Gimp, Gegl through GObject introspection) the plug-in makes, in
one place, plus the recolouring flow built on it. The gi modules are passed in, so tests run
all of this against mock modules; gimp_plugin.py (which needs GIMP) stays a thin shell.

GIMP facts this relies on (GIMP 3.0.4, checked in the real GIMP by tests/test_plugin_gimp_real.py):
- libgimp talks to the GIMP core over one wire per plug-in process and is NOT thread-safe:
  a libgimp call from a second thread while the main thread pulses the progress bar made
  GIMP abort ("gimp_wire_read_msg: could not find handler for message", "GIMP crashed").
  So every call into Gimp/Gegl stays on the main thread; only network waits (which make no
  libgimp call) run in a worker thread, see with_progress.
- buffer.get(rect, 1.0, babl_format, abyss) returns the pixels converted by babl to that
  format, buffer.set takes the same. Reading and writing in the image's own storage format
  ("RGBA u16" for 16-bit linear, "R'G'B'A half" for half-float non-linear, ...) converts
  nothing, so the new layer holds exactly the daemon's answer; grey becomes R = G = B.
- drawable.mask_intersect() -> (non_empty, x, y, width, height), relative to the drawable;
  drawable.get_offsets() -> (ok, x, y); the selection channel covers the whole image.
- A new layer goes in with image.insert_layer(layer, parent, position-of-the-source), which
  puts it right above the source; undo_group_start/end make everything one undo step. In an
  indexed image a new layer is snapped to the colormap, so the image becomes RGB first.
- Gegl.Color.get_rgba() is linear light; Gegl.Color.new("#rrggbb") reads sRGB.
- A PDB call ignores set_image_types: scripts can hand the procedure an indexed image.
- The procedure gets every selected drawable; a layer group's get_children() lists its
  layers (groups nested), and image.remove_layer takes back a layer inserted in the same
  undo group.

Several selected layers are recoloured alike (issue 18 part 3): ONE mapping, the same
source -> target pairs for every layer, the source colours taken from all of them together,
each result in its own layer above its source, all in ONE undo group, and nothing added
unless every layer was recoloured.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .autostart import Launcher
from .client import Client
from .controller import dark_to_light
from .controller import shared_pairs as paired_by_rank
from .errors import EditorError, RecolorError
from .palettes import fit_palette, layer_name, normalize_hex, rgb_to_hex
from .pixels import Pixels, srgb_encode, tile_parts, within_reference_limit

# GIMP precision "<depth>-<curve>" -> the babl format read and written (the image's own
# storage format) and its palettenet/1 pixel format.
CURVES = {"linear": ("RGBA", "_LINEAR"), "non-linear": ("R'G'B'A", ""),
          "perceptual": ("R~G~B~A", "")}  # fmt: skip
DEPTHS = {
    "u8": ("u8", "RGBA8"),
    "u16": ("u16", "RGBA16"),
    "u32": ("u16", "RGBA16"),  # written as 16 bits, which GIMP widens exactly
    "half": ("half", "RGBAF16"),
    "float": ("float", "RGBAF32"),
    "double": ("float", "RGBAF32"),  # every float is a double: exact both ways
}
THUMBNAIL_SIDE = 256
MIN_THUMBNAIL_SIDE = 16  # a small layer among large ones still shows its colours
SAMPLE_BAND_BYTES = 16 << 20  # a thumbnail reads the layer in bands of about this size


def sampling_step(width: int, height: int, side: int) -> int:
    """n such that every n-th pixel of every n-th row has a long side of at most `side`."""
    return max(1, -(-max(width, height) // side))  # ceiling division


@dataclass
class Region:
    """The part of a drawable to recolour, in image coordinates, and its buffer's."""

    x: int
    y: int
    width: int
    height: int
    local_x: int  # the same rectangle within the drawable's own buffer
    local_y: int
    selection: bool  # whether a selection limits it (then a mask goes with the request)


@dataclass
class PreviewSource:
    """A drawable's Region sampled small: what the dialog's preview recolours."""

    pixels: Pixels  # RGBA8 (sRGB), long side at most the preview's
    mask: bytes | None  # the selection at the same pixels, one byte each; None: no selection
    region: Region  # what Apply reads, full size


class GimpEditor:
    def __init__(self, gimp, gegl):
        self.Gimp, self.Gegl = gimp, gegl

    # --- reading ----------------------------------------------------------------------------
    def formats(self, image) -> tuple[str, str]:
        """(babl format, wire format) that keep the image's precision."""
        precision = image.get_precision()
        name = str(getattr(precision, "value_nick", None) or precision).lower()
        name = name.rsplit(".", 1)[-1].replace("_", "-")  # "Precision.U16_LINEAR" -> "u16-linear"
        depth, _, curve = name.partition("-")
        if depth not in DEPTHS or curve not in CURVES:
            raise EditorError(f"Images of precision “{name}” are not supported.")
        babl_type, wire = DEPTHS[depth]
        channels, suffix = CURVES[curve]
        return f"{channels} {babl_type}", wire + suffix

    def region(self, image, drawable) -> Region:
        non_empty, x, y, width, height = drawable.mask_intersect()
        if not non_empty or width <= 0 or height <= 0:
            raise EditorError(f"The selection does not cover any of “{drawable.get_name()}”.")
        _, offset_x, offset_y = drawable.get_offsets()
        selection = not self.Gimp.Selection.is_empty(image)
        return Region(offset_x + x, offset_y + y, width, height, x, y, selection)

    def read(self, drawable, region: Region, babl_format: str) -> bytes:
        rectangle = self.Gegl.Rectangle.new(region.local_x, region.local_y, region.width,
                                            region.height)  # fmt: skip
        data = drawable.get_buffer().get(rectangle, 1.0, babl_format, self.Gegl.AbyssPolicy.CLAMP)
        return bytes(data)

    def read_mask(self, image, region: Region) -> bytes | None:
        """The selection over the region, one byte per pixel (None: no selection)."""
        if not region.selection:
            return None
        rectangle = self.Gegl.Rectangle.new(region.x, region.y, region.width, region.height)
        buffer = image.get_selection().get_buffer()
        return bytes(buffer.get(rectangle, 1.0, "Y u8", self.Gegl.AbyssPolicy.NONE))

    def check_visible(self, drawable) -> None:
        """EditorError when the layer (within the selection) has no visible pixel: nothing
        to take colours from, nothing a new layer would show. GIMP's own alpha histogram
        answers without reading the pixels here."""
        if not drawable.has_alpha():
            return
        _ok, mean, *_ = drawable.histogram(self.Gimp.HistogramChannel.ALPHA, 0.0, 1.0)
        if mean <= 0:
            raise EditorError(f"“{drawable.get_name()}” has no visible pixels (within the "
                              "selection) to recolour.")  # fmt: skip

    def check_still_there(self, image, drawable) -> None:
        """EditorError when the image was closed or the layer removed from it."""
        gone = not (image.is_valid() and drawable.is_valid())
        if not gone:
            parent = drawable.get_parent()
            siblings = parent.get_children() if parent is not None else image.get_layers()
            gone = drawable.get_id() not in [item.get_id() for item in siblings]
        if gone:
            raise EditorError("The layer or its image was closed while it was being "
                              "recoloured: nothing was added.")  # fmt: skip

    def thumbnail(self, drawable, side: int = THUMBNAIL_SIDE) -> Pixels:
        """The whole drawable, 8-bit sRGB, long side at most `side`."""
        width, height = drawable.get_width(), drawable.get_height()
        step = sampling_step(width, height, side)
        data, size = self._sampled(drawable.get_buffer(), (0, 0, width, height), step,
                                   "R'G'B'A u8")  # fmt: skip
        return Pixels(*size, "RGBA8", data)

    def preview_source(self, image, drawable, side: int) -> PreviewSource:
        """What Apply would recolour of `drawable` (the region within the selection, and the
        selection over it), sampled to a long side of at most `side`, as the artist sees it
        (8-bit sRGB): the dialog's preview is made of it. EditorError as region()."""
        region = self.region(image, drawable)
        step = sampling_step(region.width, region.height, side)
        local = (region.local_x, region.local_y, region.width, region.height)
        data, size = self._sampled(drawable.get_buffer(), local, step, "R'G'B'A u8")
        mask = None
        if region.selection:
            where = (region.x, region.y, region.width, region.height)
            mask, _ = self._sampled(image.get_selection().get_buffer(), where, step, "Y u8",
                                    self.Gegl.AbyssPolicy.NONE)  # fmt: skip
        return PreviewSource(Pixels(*size, "RGBA8", data), mask, region)

    def _sampled(self, buffer, rectangle, step: int, babl_format: str, abyss=None):
        """(bytes, (width, height)): every step-th pixel of every step-th row of the
        rectangle (x, y, width, height) of a buffer, in babl_format (4 bytes a pixel, or 1
        for "Y u8"), read in bands so a large layer is never held whole. Nearest-neighbour,
        as downsample_rgba8: colours stay exact."""
        x, y, width, height = rectangle
        pixel_bytes = 1 if babl_format.startswith("Y ") else 4
        band = max(1, SAMPLE_BAND_BYTES // (width * pixel_bytes * step)) * step
        abyss = self.Gegl.AbyssPolicy.CLAMP if abyss is None else abyss
        rows = []
        for top in range(0, height, band):
            rows_here = min(band, height - top)
            part = self.Gegl.Rectangle.new(x, y + top, width, rows_here)
            pixels = memoryview(bytes(buffer.get(part, 1.0, babl_format, abyss)))
            if pixel_bytes == 4:
                pixels = pixels.cast("I")  # one item per pixel, the bytes untouched
            rows += [pixels[row * width : (row + 1) * width : step].tobytes()
                     for row in range(0, rows_here, step)]  # fmt: skip
        return b"".join(rows), (len(range(0, width, step)), len(rows))

    # --- the result -------------------------------------------------------------------------
    def add_layer_above(self, image, drawable, region: Region, name: str, babl_format: str,
                        data: bytes):  # fmt: skip
        """A new layer right above `drawable` holding `data`, as ONE undo step."""
        return self.add_layers_above(image, [(drawable, region, data)], name, babl_format)[0]

    def add_layers_above(self, image, results, name: str, babl_format: str) -> list:
        """For each (drawable, region, data) a new layer right above the drawable holding
        data, all in ONE undo step; the new layers. A greyscale or indexed image becomes RGB
        in that same step: a grey image would lose the colours, an indexed one would snap
        them to its colormap. If one fails, those already added are removed again (in the
        same step) and the error raised: all or nothing."""
        gimp = self.Gimp
        added = []
        image.undo_group_start()
        try:
            if image.get_base_type() != gimp.ImageBaseType.RGB:
                image.convert_rgb()
            for drawable, region, data in results:
                added.append(self._add_layer(image, drawable, region, name, babl_format, data))
        except BaseException:
            for layer in reversed(added):
                image.remove_layer(layer)
            raise
        finally:
            image.undo_group_end()
        gimp.displays_flush()
        return added

    def _add_layer(self, image, drawable, region: Region, name: str, babl_format: str,
                   data: bytes):  # fmt: skip
        gimp = self.Gimp
        size = (region.width, region.height)
        layer = gimp.Layer.new(
            image, name, *size, gimp.ImageType.RGBA_IMAGE, 100.0, gimp.LayerMode.NORMAL
        )
        image.insert_layer(layer, drawable.get_parent(), image.get_item_position(drawable))
        layer.set_offsets(region.x, region.y)
        # The same look as the original: its opacity, mode and layer mask
        layer.set_opacity(drawable.get_opacity())
        layer.set_mode(drawable.get_mode())
        self._copy_mask(drawable, layer, region)
        buffer = layer.get_buffer()
        rectangle = self.Gegl.Rectangle.new(0, 0, region.width, region.height)
        buffer.set(rectangle, babl_format, bytes(data))  # PyGObject wants bytes, not an mmap
        buffer.flush()
        layer.update(0, 0, region.width, region.height)
        return layer

    def _copy_mask(self, source, layer, region: Region) -> None:
        """The source's layer mask over the region, onto the new layer (in float: exact)."""
        mask = source.get_mask()
        if mask is None:
            return
        copy = layer.create_mask(self.Gimp.AddMaskType.WHITE)
        layer.add_mask(copy)
        rectangle = self.Gegl.Rectangle.new(region.local_x, region.local_y, region.width,
                                            region.height)  # fmt: skip
        values = mask.get_buffer().get(rectangle, 1.0, "Y float", self.Gegl.AbyssPolicy.CLAMP)
        target = self.Gegl.Rectangle.new(0, 0, region.width, region.height)
        buffer = copy.get_buffer()
        buffer.set(target, "Y float", bytes(values))
        buffer.flush()
        layer.set_apply_mask(source.get_apply_mask())

    # --- colours ----------------------------------------------------------------------------
    def color_hex(self, color) -> str:
        """A Gegl.Color as the artist sees it: "#rrggbb" (sRGB)."""
        red, green, blue, _alpha = color.get_rgba()  # linear light
        return rgb_to_hex(*(srgb_encode(channel) * 255 for channel in (red, green, blue)))

    def color(self, hex_color: str):
        return self.Gegl.Color.new(normalize_hex(hex_color))


# --- the flow -----------------------------------------------------------------------------
def target_layers(gimp, drawables) -> list:
    """The layers to recolour from the selected drawables, each once, in the order given: a
    layer; a layer mask stands for its layer (GIMP selects the mask after Add Layer Mask); a
    layer group for every layer inside it, nested groups too (each is recoloured into a new
    layer above it, inside the group). A channel or the selection is refused: recolouring
    it would make no sense as a new layer. EditorError when nothing is left."""
    layers, seen = [], set()
    for drawable in drawables:
        for layer in _layers_of(gimp, drawable):
            if layer.get_id() not in seen:
                seen.add(layer.get_id())
                layers.append(layer)
    if not layers:
        if drawables:
            raise EditorError("The selected layer group holds no layers to recolour.")
        raise EditorError("Select the layer (or layers) to recolour.")
    return layers


def _layers_of(gimp, drawable) -> list:
    if isinstance(drawable, gimp.LayerMask):
        drawable = gimp.Layer.from_mask(drawable)
    if not isinstance(drawable, gimp.Layer):
        raise EditorError(f"“{drawable.get_name()}” is a channel, not a layer: select the layer "
                          "to recolour in the Layers dialog.")  # fmt: skip
    if drawable.is_group():
        return [layer for child in drawable.get_children() for layer in _layers_of(gimp, child)]
    return [drawable]


def with_progress(gimp, text: str, work):
    """Run work() in a thread while GIMP's progress bar pulses; its result or its error.
    work must not call libgimp (see the module's docstring): only the network. (The plug-in
    is its own process: waiting here freezes nothing in GIMP itself, but a moving bar tells
    the artist that something is happening.)"""
    gimp.progress_init(text)
    outcome = {}

    def target():
        try:
            outcome["result"] = work()
        except BaseException as error:  # re-raised below, in the plug-in's main thread
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    while thread.is_alive():
        gimp.progress_pulse()
        thread.join(0.1)
    gimp.progress_end()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def ready_client(address: str, launcher: Launcher, timeout_s: float = 300.0) -> Client:
    from .client import Connection

    client = Client(Connection(address.strip(), timeout_s=timeout_s), client_name="gimp")
    launcher.ensure_running(client)
    return client


def layer_palette(editor: GimpEditor, client: Client, layers: list, k: int, progress=None):
    """The layers' own k colours, all of them together ("#rrggbb", dark to light as the
    daemon sorts them; fewer when they have fewer)."""
    thumbnail = palette_thumbnail(editor, layers)
    what = "the layer's palette" if len(layers) == 1 else f"the palette of {len(layers)} layers"

    def request():
        return thumbnail_palette(client, thumbnail, k)

    return progress(f"Reading {what}…", request) if progress else request()


def palette_thumbnail(editor: GimpEditor, layers: list) -> Pixels:
    """What the layers' palette is read from (libgimp calls: the main thread), and for
    several layers the reference image their one colour mapping is found on: their
    thumbnails in a grid (pixels.tile_parts), each layer counting by its size (its
    thumbnail's long side in proportion to its own, at least MIN_THUMBNAIL_SIDE), within
    the protocol's reference limit. EditorError for a layer with no visible pixels."""
    for layer in layers:
        editor.check_visible(layer)
    longest = max(max(layer.get_width(), layer.get_height()) for layer in layers)
    thumbnails = []
    for layer in layers:
        side = THUMBNAIL_SIDE * max(layer.get_width(), layer.get_height()) // longest
        thumbnails.append(editor.thumbnail(layer, max(MIN_THUMBNAIL_SIDE, side)))
    return within_reference_limit(tile_parts(thumbnails))


def thumbnail_palette(client: Client, thumbnail: Pixels, k: int, cancel=None) -> list[str]:
    """The daemon's k colours of a palette_thumbnail (network only: any thread)."""
    colors, _weights = client.palette(thumbnail, k, cancel)
    return [normalize_hex(color) for color in colors]


def pairs_for(client: Client, thumbnail: Pixels, palette: list, cancel=None) -> tuple:
    """(source, target) of equal length (network only: any thread): the colours of the
    layers' palette_thumbnail (dark to light), each paired with a target colour by
    lightness rank, the daemon's own rule for one layer. With fewer layer colours than
    target colours, the targets at evenly spaced ranks (the darkest and the lightest kept),
    the rule the Krita docker uses too (controller.shared_pairs)."""
    target = dark_to_light(client, palette, cancel)  # each colour once
    source = thumbnail_palette(client, thumbnail, len(target), cancel)
    return paired_by_rank(source, target)


def gimp_palette_colors(editor: GimpEditor, palette) -> list[str]:
    """The colours of one of GIMP's palettes (the Palettes dialog) as "#rrggbb"."""
    if palette is None:
        raise EditorError("Choose a GIMP palette, or use the colour buttons.")
    colors = [editor.color_hex(color) for color in palette.get_colors()]
    if not colors:
        raise EditorError(f"The palette “{palette.get_name()}” has no colours.")
    return colors


def recolor_layer(editor: GimpEditor, client: Client, image, drawable, palette, method: str,
                  source_palette=None, progress=None, palette_name=None):  # fmt: skip
    """Recolour `drawable` (within the selection) into a new layer above it; the layer."""
    return recolor_layers(editor, client, image, [drawable], palette, method, source_palette,
                          progress, palette_name)[0]  # fmt: skip


def recolor_layers(editor: GimpEditor, client: Client, image, layers: list, palette,
                   method: str, source_palette=None, progress=None, palette_name=None):  # fmt: skip
    """Recolour each layer (within the selection) into a new layer above it, all in one undo
    group, with one mapping: the layers' palette_thumbnail goes with every layer as the
    reference image the daemon finds the mapping on, and without a `source_palette` that
    pairs colour i with colour i, the palette is paired with its colours (pairs_for). The
    new layers, in the
    order of `layers`. Every layer is checked before any request, and nothing is added
    unless every one was recoloured: an EditorError or RecolorError names the layer."""
    palette, source_palette, name = recolor_arguments(palette, source_palette, palette_name)
    babl_format, wire_format = editor.formats(image)
    regions = []
    for layer in layers:  # every check before the first request
        regions.append(editor.region(image, layer))
        editor.check_visible(layer)
    reference = None
    if len(layers) > 1:
        reference = palette_thumbnail(editor, layers)
        if source_palette is None:

            def pair():
                return pairs_for(client, reference, palette)

            source_palette, palette = progress("Pairing the palette…", pair) if progress else pair()
    results = []
    for number, (layer, region) in enumerate(zip(layers, regions), 1):
        data = editor.read(layer, region, babl_format)
        mask = editor.read_mask(image, region)
        pixels = Pixels(region.width, region.height, wire_format, data)

        def request(pixels=pixels, mask=mask):  # this layer's, bound now
            return client.recolor(pixels, palette, method, mask, source_palette,
                                  reference=reference)  # fmt: skip

        text = "Recolouring…"
        if len(layers) > 1:
            text = f"Recolouring “{layer.get_name()}” ({number} of {len(layers)})…"
        try:
            result = progress(text, request) if progress else request()
        except RecolorError as error:
            if len(layers) == 1:
                raise
            raise EditorError(f"“{layer.get_name()}” ({number} of {len(layers)}) could not be "
                              f"recoloured, so no layer was added: {error}") from None  # fmt: skip
        results.append((layer, region, result.data))
    # GIMP stayed usable while we waited: the artist may have deleted a layer or closed
    # the image meanwhile, and libgimp calls on either would fail one by one.
    for layer in layers:
        editor.check_still_there(image, layer)
    return editor.add_layers_above(image, results, name, babl_format)


def recolor_arguments(palette, source_palette=None, palette_name=None) -> tuple:
    """(palette, source_palette, the new layer's name) as Apply and the dialog's preview
    send them: the palette checked and fitted (EditorError saying what is wrong), the
    source palette kept only when it pairs colour i with colour i (else None: the daemon
    pairs by lightness rank, or pairs_for for several layers)."""
    try:
        palette = fit_palette(palette)
    except ValueError as error:
        raise EditorError(f"The target palette is not valid: {shortened(str(error))}.") from None
    if source_palette is not None and len(source_palette) != len(palette):
        source_palette = None  # no correspondence: paired by lightness rank
    return palette, source_palette, layer_name(palette_name, palette)


def shortened(text: str, limit: int = 200) -> str:
    """A message part cut to `limit` characters (a script's 10,000-character palette must
    not come back whole in an error dialog)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pdb_error_text(error: Exception) -> str:
    """What a PDB error carries: the artist's message, or the bug's name for a bug."""
    if isinstance(error, RecolorError):
        return str(error)
    return f"Recolor with Palette failed: {type(error).__name__}: {error}"
