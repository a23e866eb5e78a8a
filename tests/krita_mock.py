"""A stand-in for the `krita` module, faithful to the facts the plug-in relies on.

Modelled from Krita 5.1, checked with kritarunner (tests/test_plugin_krita_real.py):
- pixelData/projectionPixelData/setPixelData use B, G, R, A for integer depths and R, G, B, A
  for float depths, native byte order; a node's pixels live in canvas coordinates.
- setPixelData on a node that is in the image is an undoable paint step; on a node not yet
  added it is not; addChildNode(child, above) is one undoable step and puts child right
  above `above`. Every undoable step is appended to Document.undo_steps.
- Krita makes a newly added layer the active one.
- Node.thumbnail(w, h) is the layer's stored extent (tiles of 64 px, beyond the canvas too)
  fitted into w x h, an 8-bit display-converted ARGB32 image (format 5): seen in Krita
  5.1.5; ManagedColor.colorForCanvas(canvas) gives a QColor.
- Profiles other than sRGB (KritaApp.icc_profiles: name -> ICC bytes): createDocument in one
  and Document.setColorSpace convert with LittleCMS, as Krita does; exportImage to PNG with
  forceSRGB off embeds the document's profile in an iCCP chunk.
"""

import itertools
import types

import imagecodecs
import numpy as np

CHANNEL_DTYPE = {"U8": "=u1", "U16": "=u2", "F16": "=f2", "F32": "=f4"}
_uuids = itertools.count(1)


TILE = 64  # Krita stores pixels in tiles of 64 x 64


class Rect:
    def __init__(self, x, y, width, height):
        self._values = (x, y, width, height)

    def x(self):
        return self._values[0]

    def y(self):
        return self._values[1]

    def width(self):
        return self._values[2]

    def height(self):
        return self._values[3]


class Uuid:
    def __init__(self):
        self.value = f"{{00000000-0000-0000-0000-{next(_uuids):012d}}}"

    def toString(self):  # noqa: N802 - Qt's name
        return self.value

    def __eq__(self, other):
        return isinstance(other, Uuid) and other.value == self.value

    def __hash__(self):
        return hash(self.value)


class Node:
    def __init__(self, document, name, node_type="paintlayer", model="RGBA", depth=None,
                 profile=None):  # fmt: skip
        self.document = document
        self._name, self._type = name, node_type
        self._model = model
        self._depth = depth or document.depth
        self._profile = profile or document.profile
        self._uuid = Uuid()
        self.parent = None
        self.children = []
        self.opacity_value, self.blending = 255, "normal"
        channels = 2 if model == "GRAYA" else 4
        # canvas-sized storage in Krita's own layout for this depth
        self._pixels = np.zeros(
            (document.height_px, document.width_px, channels), CHANNEL_DTYPE[self._depth]
        )
        self.frames = None  # an animated layer: {keyframe time: pixels}
        self.calls = []  # what the plug-in did to this node
        self.beyond = (0, 0, 0, 0)  # BGRA8 of the stored tiles' pixels beyond the canvas

    @property
    def pixels(self):
        """The pixels at the document's current time (an animated layer: the keyframe at
        or before it, as Krita shows it)."""
        if self.frames is None:
            return self._pixels
        time = max([t for t in self.frames if t <= self.document.time] or [min(self.frames)])
        return self.frames[time]

    @pixels.setter
    def pixels(self, value):
        self._pixels = value

    # animation (Krita 5.1: frames read at any time, written at the current time only)
    def animated(self):
        return self.frames is not None

    def hasKeyframeAtTime(self, time):  # noqa: N802
        return self.frames is not None and time in self.frames

    def pixelDataAtTime(self, x, y, w, h, time):  # noqa: N802
        self.calls.append("pixelDataAtTime")
        saved, self.document.time = self.document.time, time
        try:
            return self.pixels[y : y + h, x : x + w].tobytes()
        finally:
            self.document.time = saved

    def make_animated(self, frames: dict):
        """Test helper: keyframes {time: pixels in this node's layout}."""
        self.frames = {time: np.array(pixels) for time, pixels in frames.items()}

    def duplicate(self):
        copy = Node(self.document, self._name, self._type, self._model, self._depth,
                    self._profile)  # fmt: skip
        copy._pixels = self._pixels.copy()
        if self.frames is not None:
            copy.frames = {time: pixels.copy() for time, pixels in self.frames.items()}
        copy.opacity_value, copy.blending = self.opacity_value, self.blending
        for child in self.children:
            duplicate = child.duplicate()
            duplicate.parent = copy
            copy.children.append(duplicate)
        return copy

    def setName(self, name):  # noqa: N802
        self._undoable("name")
        self._name = name

    def attached(self):
        node = self
        while node.parent is not None:
            node = node.parent
        return node is self.document.root

    # identity and properties
    def name(self):
        return self._name

    def type(self):
        return self._type

    def colorModel(self):  # noqa: N802
        return self._model

    def colorDepth(self):  # noqa: N802
        return self._depth

    def colorProfile(self):  # noqa: N802
        return self._profile

    def uniqueId(self):  # noqa: N802
        return self._uuid

    def parentNode(self):  # noqa: N802
        return self.parent

    def childNodes(self):  # noqa: N802
        return list(self.children)

    def opacity(self):
        return self.opacity_value

    def setOpacity(self, value):  # noqa: N802
        self._undoable("opacity")
        self.opacity_value = value

    def blendingMode(self):  # noqa: N802
        return self.blending

    def setBlendingMode(self, mode):  # noqa: N802
        self._undoable("blending mode")
        self.blending = mode

    def _undoable(self, what):
        self.calls.append(what)
        if self.attached():
            self.document.undo_steps.append(f"{what} of {self._name}")

    # pixels
    def bounds(self):
        alpha = self.pixels[..., -1]
        rows, cols = np.nonzero(alpha)
        if len(rows) == 0:
            return Rect(0, 0, 0, 0)
        left, top = int(cols.min()), int(rows.min())
        return Rect(left, top, int(cols.max()) - left + 1, int(rows.max()) - top + 1)

    def pixelData(self, x, y, w, h):  # noqa: N802
        self.calls.append("pixelData")
        return self.pixels[y : y + h, x : x + w].tobytes()

    def projectionPixelData(self, x, y, w, h):  # noqa: N802
        self.calls.append("projectionPixelData")
        return self.pixels[y : y + h, x : x + w].tobytes()

    def setPixelData(self, data, x, y, w, h):  # noqa: N802
        self._undoable("paint")
        block = np.frombuffer(bytes(data), self.pixels.dtype).reshape(h, w, -1)
        self.pixels[y : y + h, x : x + w] = block

    def thumbnail(self, w, h):
        """As Krita 5.1.5 makes it: the layer's stored extent (its bounds rounded out to
        64-px tiles; beyond the canvas, `self.beyond`, BGRA8) fitted into w x h keeping its
        aspect, at the top left, the rest transparent. Not the canvas."""
        b = self.bounds()
        if b.width() == 0:
            return Image(np.zeros((h, w, 4), np.uint8))
        left, top = b.x() // TILE * TILE, b.y() // TILE * TILE
        right = -(-(b.x() + b.width()) // TILE) * TILE
        bottom = -(-(b.y() + b.height()) // TILE) * TILE
        extent = np.zeros((bottom - top, right - left, 4), np.float64)
        extent[:] = self.beyond
        canvas = self._display()
        ch, cw = min(bottom, canvas.shape[0]) - top, min(right, canvas.shape[1]) - left
        extent[:ch, :cw] = canvas[top : top + ch, left : left + cw]
        scale = min(w / extent.shape[1], h / extent.shape[0])
        fw, fh = max(1, round(extent.shape[1] * scale)), max(1, round(extent.shape[0] * scale))
        rows = np.arange(fh) * extent.shape[0] // fh
        cols = np.arange(fw) * extent.shape[1] // fw
        out = np.zeros((h, w, 4), np.float64)
        out[:fh, :fw] = extent[rows][:, cols]
        return Image(np.clip(np.round(out), 0, 255).astype(np.uint8))

    def _display(self):
        """The canvas-sized pixels as 8-bit sRGB BGRA, as Krita converts them for display."""
        sample = self.pixels.astype(np.float64)
        if self._depth == "U8":
            return sample
        top = 65535.0 if self._depth == "U16" else 1.0
        values = sample / top
        bgra = values[..., [2, 1, 0, 3]] if self._depth.startswith("F") else values
        if "g10" in self._profile:  # shown on an sRGB display
            linear = np.abs(bgra[..., :3])
            curved = 1.055 * linear ** (1 / 2.4) - 0.055
            bgra[..., :3] = np.where(linear <= 0.0031308, 12.92 * linear, curved)
        return bgra * 255

    # the tree
    def addChildNode(self, child, above):  # noqa: N802
        index = self.children.index(above) + 1 if above is not None else len(self.children)
        self.children.insert(index, child)
        child.parent = self
        if self.attached():  # adding to a group not in the image yet is no undo step
            self.document.undo_steps.append(f"add layer {child.name()}")
            self.document.active = child  # Krita activates an added layer (a moment later)
        return True

    def remove(self):
        self.parent.children.remove(self)
        self.parent = None

    def fill(self, bgra_or_rgba, x=0, y=0, w=None, h=None):
        """Test helper: paint pixel values (in this node's layout) without an undo step."""
        w = w or self.document.width_px
        h = h or self.document.height_px
        self.pixels[y : y + h, x : x + w] = bgra_or_rgba


class Image:
    """The QImage subset qimage_pixels uses: an ARGB32 (B, G, R, A bytes) image."""

    def __init__(self, bgra: np.ndarray):
        self.bgra = bgra

    def format(self):
        return 5

    def width(self):
        return self.bgra.shape[1]

    def height(self):
        return self.bgra.shape[0]

    def constBits(self):  # noqa: N802
        return types.SimpleNamespace(asstring=lambda size: self.bgra.tobytes()[:size])


class Selection:
    def __init__(self, document, x, y, w, h, value=255):
        self.mask = np.zeros((document.height_px, document.width_px), np.uint8)
        self.mask[y : y + h, x : x + w] = value
        self._rect = (x, y, w, h)

    def x(self):
        return self._rect[0]

    def y(self):
        return self._rect[1]

    def width(self):
        return self._rect[2]

    def height(self):
        return self._rect[3]

    def pixelData(self, x, y, w, h):  # noqa: N802
        return self.mask[y : y + h, x : x + w].tobytes()


class Document:
    def __init__(self, width, height, depth="U8", profile=None, app=None):
        self.app = app  # the KritaApp that made it (createDocument): its profiles
        self.closed = False
        self.width_px, self.height_px = width, height
        self.depth = depth
        self.profile = profile or (
            "sRGB-elle-V2-srgbtrc.icc" if depth == "U8" else "sRGB-elle-V2-g10.icc"
        )
        self.root = Node(self, "root", "grouplayer")
        self.active = None
        self._selection = None
        self.undo_steps = []
        self.refreshed = 0
        self.time = 0  # the playhead

    def currentTime(self):  # noqa: N802
        return self.time

    def setCurrentTime(self, time):  # noqa: N802
        if time != self.time:
            self.undo_steps.append(f"switch to frame {time}")  # Krita 5.1 records it
        self.time = time

    def waitForDone(self):  # noqa: N802
        pass

    def fullClipRangeEndTime(self):  # noqa: N802
        return 100

    def createGroupLayer(self, name):  # noqa: N802
        return Node(self, name, "grouplayer")

    def add_layer(self, name, **kwargs):
        """Test helper: a layer at the top of the stack, as if it had always been there."""
        node = Node(self, name, **kwargs)
        node.parent = self.root
        self.root.children.append(node)
        self.active = node
        return node

    def width(self):
        return self.width_px

    def height(self):
        return self.height_px

    def colorModel(self):  # noqa: N802
        return "RGBA"

    def colorDepth(self):  # noqa: N802
        return self.depth

    def colorProfile(self):  # noqa: N802
        return self.profile

    def rootNode(self):  # noqa: N802
        return self.root

    def activeNode(self):  # noqa: N802
        return self.active

    def setActiveNode(self, node):  # noqa: N802
        self.active = node

    def selection(self):
        return self._selection

    def setSelection(self, selection):  # noqa: N802
        self._selection = selection

    def createNode(self, name, node_type):  # noqa: N802
        return Node(self, name, node_type)

    def nodeByUniqueID(self, uuid):  # noqa: N802
        def walk(node):
            for child in node.children:
                if child.uniqueId() == uuid:
                    return child
                found = walk(child)
                if found is not None:
                    return found
            return None

        return walk(self.root)

    def refreshProjection(self):  # noqa: N802
        self.refreshed += 1

    def layers(self):
        return [child.name() for child in self.root.children]

    # scratch documents (createDocument): conversion and export
    def setBatchmode(self, value):  # noqa: N802
        self.batch = value

    def setModified(self, value):  # noqa: N802
        self.modified = value

    def close(self):
        self.closed = True
        return True

    def setColorSpace(self, model, depth, profile):  # noqa: N802
        """Every layer converted by LittleCMS (relative colorimetric), as Image > Convert
        Image Color Space does."""
        profiles = self.app.known_profiles()
        if model != "RGBA" or profile not in profiles:
            return False
        for node in self.root.children:
            node._pixels = convert(node._pixels, self.depth, profiles[self.profile], depth,
                                   profiles[profile])  # fmt: skip
            node._depth, node._profile = depth, profile
        self.depth, self.profile = depth, profile
        return True

    def exportImage(self, path, info):  # noqa: N802
        """A PNG of the document (8-bit), with its profile as iCCP unless forceSRGB."""
        from PIL import Image

        if not self.app.exports or info.properties.get("forceSRGB", True):
            return False
        Image.new("RGBA", (self.width_px, self.height_px)).save(
            path, icc_profile=self.app.known_profiles()[self.profile]
        )
        self.app.exported.append(self.profile)
        return True


def convert(pixels, depth, profile, new_depth, new_profile):
    """Pixels in Krita's layout for `depth` (B, G, R, A for integers, R, G, B, A for floats)
    from one profile to another by LittleCMS."""
    layout = "bgra" if depth in ("U8", "U16") else "rgba"
    new_layout = "bgra" if new_depth in ("U8", "U16") else "rgba"
    return imagecodecs.cms_transform(
        np.ascontiguousarray(pixels), profile, new_profile, colorspace=layout,
        outcolorspace=new_layout, outdtype=CHANNEL_DTYPE[new_depth], intent=1,
        flags=int(imagecodecs.CMS.FLAGS.COPY_ALPHA),
    )  # fmt: skip


class InfoObject:
    def __init__(self):
        self.properties = {}

    def setProperty(self, key, value):  # noqa: N802
        self.properties[key] = value


class QColor:
    def __init__(self, name):
        self._name = name

    def name(self):
        return self._name


# The profiles the mock can convert between (Krita's names): sRGB and linear-light sRGB.
TONES = {"sRGB-elle-V2-srgbtrc.icc": "srgb", "sRGB-elle-V2-g10.icc": "linear"}


class ManagedColor:
    """ManagedColor(model, depth, profile) with float components that setColorSpace converts
    (sRGB <-> linear sRGB only; any other profile: False, as libkis for one it lacks); or,
    as the view's foreground colour, a hex colour for colorForCanvas."""

    def __init__(self, *args):
        if len(args) == 1:
            self.hex = args[0]
            return
        self.model, self.depth, self.profile = args
        self.values = [0.0, 0.0, 0.0, 1.0]

    def colorForCanvas(self, canvas):  # noqa: N802
        return QColor(self.hex)

    def setComponents(self, values):  # noqa: N802
        self.values = [float(v) for v in values]

    def components(self):
        return list(self.values)

    def setColorSpace(self, model, depth, profile):  # noqa: N802
        source, target = TONES.get(self.profile), TONES.get(profile)
        if source is None or target is None:
            return False
        if source != target:
            from plugin.recolor_with_palette.pixels import srgb_decode, srgb_encode

            curve = srgb_encode if target == "srgb" else srgb_decode
            self.values = [curve(v) for v in self.values[:3]] + self.values[3:]
        self.profile = profile
        return True


class View:
    def __init__(self, foreground="#123456"):
        self.foreground = foreground
        self.messages = []
        self.selected = []  # the Layers docker's selected nodes (several: Ctrl+click)

    def selectedNodes(self):  # noqa: N802
        return list(self.selected)

    def foregroundColor(self):  # noqa: N802
        return ManagedColor(self.foreground)

    def canvas(self):
        return object()

    def showFloatingMessage(self, text, icon, ms, priority):  # noqa: N802
        self.messages.append(text)


class Window:
    def __init__(self, view):
        self.view = view

    def activeView(self):  # noqa: N802
        return self.view


class Swatch:
    def __init__(self, hex_color):
        self.hex = hex_color

    def isValid(self):  # noqa: N802
        return self.hex is not None

    def color(self):
        return ManagedColor(self.hex)


class Palette:
    def __init__(self, resource):
        self.colors = resource

    def colorsCountTotal(self):  # noqa: N802
        return len(self.colors)

    def colorSetEntryByIndex(self, index):  # noqa: N802
        return Swatch(self.colors[index])


class KritaApp:
    def __init__(self):
        self.icc_profiles = {}  # name -> ICC bytes: profiles beyond sRGB and linear sRGB
        self.exports = True  # exportImage works (False: as if it failed)
        self.exported = []  # the profiles of documents exported
        self.created = []  # documents made by createDocument (scratch documents)
        self.app_data = None  # getAppDataLocation()
        self.document = None
        self.window = Window(View())
        self.palettes = {}  # name -> list of hex (None: an empty slot)
        self.settings = {}

    def activeDocument(self):  # noqa: N802
        return self.document

    def documents(self):
        return [self.document] if self.document is not None else []

    def activeWindow(self):  # noqa: N802
        return self.window

    def known_profiles(self) -> dict:
        """name -> ICC bytes of every profile this Krita converts with."""
        from backend.service.icc import linear_srgb_profile

        builtin = {"sRGB-elle-V2-srgbtrc.icc": imagecodecs.cms_profile("srgb"),
                   "sRGB-elle-V2-g10.icc": linear_srgb_profile()}  # fmt: skip
        return {**builtin, **self.icc_profiles}

    def createDocument(self, width, height, name, model, depth, profile, resolution):  # noqa: N802
        if profile not in self.known_profiles():
            return None
        document = Document(width, height, depth, profile, app=self)
        document.add_layer("Background")
        self.created.append(document)
        return document

    def getAppDataLocation(self):  # noqa: N802
        return self.app_data

    def profiles(self, model, depth):
        """The names of the profiles a document of this model may have (RGB ones here)."""
        return sorted(self.known_profiles()) if model == "RGBA" else []

    def resources(self, kind):
        assert kind == "palette"
        return dict(self.palettes)

    def readSetting(self, group, key, default):  # noqa: N802
        return self.settings.get((group, key), default)

    def writeSetting(self, group, key, value):  # noqa: N802
        self.settings[(group, key)] = value


def krita_module(app: KritaApp):
    """A module-like object with what krita_api takes from `krita`."""
    return types.SimpleNamespace(
        Krita=types.SimpleNamespace(instance=lambda: app),
        Palette=Palette,
        ManagedColor=ManagedColor,
        InfoObject=InfoObject,
    )
