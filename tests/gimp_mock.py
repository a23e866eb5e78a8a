"""Stand-ins for GIMP 3's Gimp and Gegl modules, with what gimp_api.py relies on (see its
docstring): babl-style conversions in buffer.get/set (linear formats through the sRGB
curve), drawable-relative mask_intersect, image-wide selection, insert_layer at the
source's position, undo groups recorded.

Like the real libgimp (whose wire to the GIMP core is not thread-safe: a call from a second
thread crashed GIMP), every call must come from the main thread: one from another thread
raises here, so the unit tests catch what only the real GIMP showed before."""

import functools
import itertools
import threading
import types

import numpy as np

# babl format -> (numpy dtype, value of 1.0, linear light)
FORMAT_DTYPES = {
    "R'G'B'A u8": ("u1", 255, False), "R~G~B~A u8": ("u1", 255, False),
    "RGBA u8": ("u1", 255, True), "R'G'B'A u16": ("=u2", 65535, False),
    "RGBA u16": ("=u2", 65535, True), "R'G'B'A half": ("=f2", 1.0, False),
    "RGBA half": ("=f2", 1.0, True), "R'G'B'A float": ("=f4", 1.0, False),
    "RGBA float": ("=f4", 1.0, True), "Y u8": ("u1", 255, False),
    "Y float": ("=f4", 1.0, False),
}  # fmt: skip


_IDS = itertools.count(1)


class WrongThreadError(AssertionError):
    """A libgimp call from a thread other than the plug-in's main thread."""


def main_thread_only(function):
    @functools.wraps(function)
    def guarded(*args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            raise WrongThreadError(f"{function.__qualname__} called from "
                                   f"{threading.current_thread().name}: libgimp is not "
                                   "thread-safe (this crashed the real GIMP)")  # fmt: skip
        return function(*args, **kwargs)

    return guarded


def gimp_class(cls):
    """Guard every public method of a mock libgimp class (main_thread_only)."""
    for name, value in list(vars(cls).items()):
        if callable(value) and not name.startswith("_"):
            setattr(cls, name, main_thread_only(value))
        elif isinstance(value, classmethod):
            setattr(cls, name, classmethod(main_thread_only(value.__func__)))
    return cls


def _to_linear(values):
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def _from_linear(values):
    values = np.clip(values, 0, 1)
    return np.where(values <= 0.0031308, values * 12.92, 1.055 * values ** (1 / 2.4) - 0.055)


@gimp_class
class Rectangle:
    def __init__(self, x, y, width, height):
        self.x, self.y, self.width, self.height = x, y, width, height

    @classmethod
    def new(cls, x, y, width, height):
        return cls(x, y, width, height)


@gimp_class
class Buffer:
    """Perceptual RGBA (or Y) values 0..1 as float64, converted on get/set like babl."""

    def __init__(self, values: np.ndarray):
        self.values = values
        self.flushed = False
        self.writes = []

    def get(self, rect, scale, fmt, abyss):
        assert scale == 1.0
        dtype, top, linear = FORMAT_DTYPES[fmt]
        block = self.values[rect.y : rect.y + rect.height, rect.x : rect.x + rect.width]
        if fmt.startswith("Y "):
            block = block[..., 0] if block.ndim == 3 else block
        if linear:
            block = np.concatenate([_to_linear(block[..., :3]), block[..., 3:]], -1)
        if "f" in dtype:
            return block.astype(dtype).tobytes()
        return np.round(block * top).astype(dtype).tobytes()

    def set(self, rect, fmt, data):
        dtype, top, linear = FORMAT_DTYPES[fmt]
        channels = 1 if fmt.startswith("Y ") else 4
        block = np.frombuffer(bytes(data), dtype).reshape(rect.height, rect.width, channels) / top
        if channels == 1:
            block = block[..., 0]
        if linear:
            block = np.concatenate([_from_linear(block[..., :3]), block[..., 3:]], -1)
        self.values[rect.y : rect.y + rect.height, rect.x : rect.x + rect.width] = block
        self.writes.append((fmt, bytes(data)))

    def flush(self):
        self.flushed = True


@gimp_class
class Color:
    def __init__(self, linear_rgba):
        self.linear = linear_rgba

    @classmethod
    def new(cls, text):
        digits = text.lstrip("#")
        srgb = [int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4)]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in srgb]
        return cls((*linear, 1.0))

    def get_rgba(self):
        return self.linear


@gimp_class
class Palette:
    """One of GIMP's palettes (the Palettes dialog)."""

    def __init__(self, name, hex_colors):
        self.name, self.colors = name, [Color.new(color) for color in hex_colors]

    def get_name(self):
        return self.name

    def get_colors(self):
        return list(self.colors)


Gegl = types.SimpleNamespace(
    Rectangle=Rectangle, Color=Color,
    AbyssPolicy=types.SimpleNamespace(CLAMP="clamp", NONE="none"),
)  # fmt: skip


@gimp_class
class Layer:
    def __init__(self, image, name, width, height, values=None, offsets=(0, 0)):
        self.image, self.name = image, name
        self.width, self.height = width, height
        self.buffer = Buffer(values if values is not None else np.zeros((height, width, 4)))
        self.offsets = offsets
        self.parent = None
        self.opacity, self.mode = 100.0, "normal"
        self.updated = None
        self.mask, self.apply_mask = None, True
        self.valid = True
        self.id = next(_IDS)

    @classmethod
    def new(cls, image, name, width, height, image_type, opacity, mode):
        assert image_type == "RGBA_IMAGE" and mode == "normal"
        image.log.append(f"new layer {name}")
        return cls(image, name, width, height)

    def get_name(self):
        return self.name

    def get_id(self):
        return self.id

    def is_valid(self):
        return self.valid

    def has_alpha(self):
        return True

    def histogram(self, channel, start, end):
        """GIMP's histogram of one channel (ALPHA here) within the selection: (ok, mean
        0..255, ...)."""
        assert channel == "alpha"
        _, x, y, width, height = self.mask_intersect()
        alpha = self.buffer.values[y : y + height, x : x + width, 3]
        mean = float(alpha.mean() * 255) if alpha.size else 0.0
        return True, mean, 0.0, mean, float(alpha.size), float(alpha.size), 1.0

    def get_mask(self):
        return self.mask

    def create_mask(self, mask_type):
        assert mask_type == "white"
        return LayerMask(self, np.ones((self.height, self.width)))

    def add_mask(self, mask):
        self.mask = mask

    def get_apply_mask(self):
        return self.apply_mask

    def set_apply_mask(self, value):
        self.apply_mask = value

    @classmethod
    def from_mask(cls, mask):
        return mask.layer

    def get_width(self):
        return self.width

    def get_height(self):
        return self.height

    def get_buffer(self):
        return self.buffer

    def get_offsets(self):
        return True, *self.offsets

    def set_offsets(self, x, y):
        self.offsets = (x, y)

    def get_parent(self):
        return self.parent

    def is_group(self):
        return False

    def get_opacity(self):
        return self.opacity

    def set_opacity(self, value):
        self.opacity = value

    def get_mode(self):
        return self.mode

    def set_mode(self, mode):
        self.mode = mode

    def mask_intersect(self):
        """The selection's bounds within this layer, relative to it (the whole layer when
        nothing is selected), as GIMP returns them."""
        image = self.image
        if image.selection_rect is None:
            return True, 0, 0, self.width, self.height
        x, y, w, h = image.selection_rect
        ox, oy = self.offsets
        left, top = max(x, ox), max(y, oy)
        right, bottom = min(x + w, ox + self.width), min(y + h, oy + self.height)
        if right <= left or bottom <= top:
            return False, 0, 0, 0, 0
        return True, left - ox, top - oy, right - left, bottom - top

    def update(self, x, y, w, h):
        self.updated = (x, y, w, h)


@gimp_class
class GroupLayer(Layer):
    """A layer group: its layers in `children` (top first), as GIMP lists them."""

    def __init__(self, image, name):
        super().__init__(image, name, 1, 1)
        self.children = []

    def is_group(self):
        return True

    def get_children(self):
        return list(self.children)

    def add_layer(self, name, values, offsets=(0, 0)):
        layer = Layer(self.image, name, values.shape[1], values.shape[0], values, offsets)
        layer.parent = self
        self.children.insert(0, layer)
        return layer


@gimp_class
class LayerMask:
    def __init__(self, layer, values):
        self.layer, self.buffer = layer, Buffer(values)

    def get_buffer(self):
        return self.buffer

    def get_name(self):
        return f"{self.layer.name} mask"


@gimp_class
class Channel:
    def __init__(self, values, name="Selection Mask"):
        self.buffer = Buffer(values)
        self.name = name

    def get_name(self):
        return self.name

    def get_buffer(self):
        return self.buffer


class Precision:
    def __init__(self, nick):
        self.value_nick = nick


@gimp_class
class Image:
    def __init__(self, width, height, precision="u8-non-linear", base="RGB"):
        self.width, self.height = width, height
        self.precision = Precision(precision)
        self.base = base
        self.layers = []  # top first, as GIMP lists them
        self.selection_rect = None
        self.selection_values = np.zeros((height, width))
        self.log = []
        self.valid = True

    def is_valid(self):
        return self.valid

    def get_layers(self):
        return list(self.layers)

    def add_layer(self, name, values, offsets=(0, 0)):
        layer = Layer(self, name, values.shape[1], values.shape[0], values, offsets)
        self.layers.insert(0, layer)
        return layer

    def add_group(self, name):
        group = GroupLayer(self, name)
        self.layers.insert(0, group)
        return group

    def _siblings(self, item):
        return item.parent.children if item.parent is not None else self.layers

    def select(self, x, y, w, h, value=1.0):
        self.selection_rect = (x, y, w, h)
        self.selection_values[y : y + h, x : x + w] = value

    def get_precision(self):
        return self.precision

    def get_base_type(self):
        return self.base

    def convert_rgb(self):
        self.log.append("convert to RGB")
        self.base = "RGB"

    def get_selection(self):
        return Channel(self.selection_values)

    def get_item_position(self, item):
        return self._siblings(item).index(item)

    def insert_layer(self, layer, parent, position):
        where = f" in {parent.name}" if parent is not None else ""
        self.log.append(f"insert {layer.name} at {position}{where}")
        layer.parent = parent
        self._siblings(layer).insert(position, layer)

    def remove_layer(self, layer):
        self.log.append(f"remove {layer.name}")
        self._siblings(layer).remove(layer)

    def undo_group_start(self):
        self.log.append("undo group start")

    def undo_group_end(self):
        self.log.append("undo group end")


@gimp_class
class Progress:
    def __init__(self):
        self.calls = []

    def progress_init(self, text):
        self.calls.append(("init", text))

    def progress_pulse(self):
        self.calls.append(("pulse",))

    def progress_end(self):
        self.calls.append(("end",))


def gimp_module():
    progress = Progress()
    return types.SimpleNamespace(
        Selection=types.SimpleNamespace(
            is_empty=main_thread_only(lambda image: image.selection_rect is None)
        ),
        ImageBaseType=types.SimpleNamespace(GRAY="GRAY", RGB="RGB", INDEXED="INDEXED"),
        ImageType=types.SimpleNamespace(RGBA_IMAGE="RGBA_IMAGE"),
        LayerMode=types.SimpleNamespace(NORMAL="normal"),
        Layer=Layer,
        GroupLayer=GroupLayer,
        LayerMask=LayerMask,
        Palette=Palette,
        HistogramChannel=types.SimpleNamespace(ALPHA="alpha"),
        AddMaskType=types.SimpleNamespace(WHITE="white"),
        progress_init=progress.progress_init,
        progress_pulse=progress.progress_pulse,
        progress_end=progress.progress_end,
        progress=progress,
        displays_flush=main_thread_only(lambda: None),
    )


class GLib:
    """GLib's main loop as the dialog's preview uses it: idle_add (callable from any
    thread) queues a callback, and pump() runs the queued ones on the calling thread (the
    test's main thread), as GTK's main loop would while the dialog is open."""

    PRIORITY_DEFAULT = 0

    def __init__(self):
        import queue

        self.queue = queue.Queue()

    def idle_add(self, callback, *args, priority=None):
        self.queue.put((callback, args))
        return 1

    def pump(self, until=lambda: False, timeout_s: float = 30.0) -> bool:
        """Run callbacks as they come until until() holds (True) or timeout_s (False)."""
        import queue
        import time

        deadline = time.monotonic() + timeout_s
        while not until():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                callback, args = self.queue.get(timeout=min(remaining, 0.05))
            except queue.Empty:
                continue
            while callback(*args):  # a callback returning True asks to run again
                pass
        return True

    @staticmethod
    def markup_escape_text(text, length=-1):
        import html

        return html.escape(text, quote=False)


# --- the dialog: GimpUi and Gtk as gimp_plugin.show_dialog uses them ------------------------
class ParamSpec:
    def __init__(self, name):
        self.name = name


class Config:
    """A procedure's config: properties, and GObject's notify signal on every set."""

    def __init__(self, values):
        self.values = values
        self.handlers = {}
        self._ids = itertools.count(1)

    def get_property(self, name):
        return self.values[name]

    def set_property(self, name, value):
        self.values[name] = value
        for handler in list(self.handlers.values()):
            handler(self, ParamSpec(name))

    def connect(self, signal, handler):
        assert signal == "notify"
        number = next(self._ids)
        self.handlers[number] = handler
        return number

    def disconnect(self, number):
        del self.handlers[number]


@gimp_class
class Widget:
    """Any GTK widget the dialog makes: children, signals, a toggle's state, a label's
    markup, what a preview area drew. GTK is not thread-safe either: main thread only."""

    def __init__(self, *args, **kwargs):
        self.children, self.handlers = [], {}
        self.active, self.markup, self.drawn = False, "", []
        self.focused = False

    @classmethod
    def new_with_mnemonic(cls, label):
        return cls()

    def __getattr__(self, name):  # the many setters (set_size_request, show_all, ...)
        if name.startswith("set_") or name in ("show_all", "show"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def grab_focus(self):
        self.focused = True

    def pack_start(self, child, *args):
        self.children.append(child)

    def get_children(self):
        return list(self.children)

    def remove(self, child):
        self.children.remove(child)

    def connect(self, signal, handler):
        self.handlers.setdefault(signal, []).append(handler)

    def emit(self, signal):
        for handler in self.handlers.get(signal, []):
            handler(self)

    def get_active(self):
        return self.active

    def set_active(self, active):
        self.active = active
        self.emit("toggled")

    def set_markup(self, markup):
        self.markup = markup

    def draw(self, x, y, width, height, image_type, data, rowstride):
        assert image_type == "RGBA_IMAGE" and rowstride == width * 4
        self.drawn.append((width, height, bytes(data)))


@gimp_class
class ColorButton(Widget):
    """GimpColorButton as GIMP 3.0.4 behaves (seen in the real GIMP): with set_update on it
    follows its colour dialog's drag, emitting color-changed, and set_color emits
    color-changed even for the colour it already has."""

    def __init__(self, color):
        super().__init__()
        self.color, self.update = color, False

    def set_update(self, continuous):
        self.update = continuous

    def get_color(self):
        return self.color

    def set_color(self, color):
        self.color = color
        self.emit("color-changed")

    def drag_to(self, hex_color):
        """The artist drags in this button's colour dialog."""
        if self.update:
            self.set_color(Color.new(hex_color))


@gimp_class
class LabelColor(Widget):
    """The dialog's widget for a colour argument: a label and a ColorButton. Like GIMP's,
    it shows the config's colour (a set config sets the button) but, once the button
    follows a drag, never writes the button's colour back into the config."""

    def __init__(self, config, name):
        super().__init__()
        self.button = ColorButton(config.get_property(name))
        config.connect("notify", lambda config, spec: self._notify(config, spec, name))

    def _notify(self, config, spec, name):
        if spec.name == name:
            self.button.set_color(config.get_property(name))

    def get_color_widget(self):
        return self.button


def gimpui_module():
    """GimpUi with a ProcedureDialog whose run() calls the test's `on_run(dialog)` (or
    accepts at once); `dialogs` lists every dialog made."""

    @gimp_class
    class ProcedureDialog:
        on_run = None

        def __init__(self, procedure=None, config=None, title=""):
            self.config, self.title = config, title
            self.widgets, self.filled = {}, []
            self.content, self.ok = Widget(), Widget()
            self.destroyed, self.mapped = False, []
            module.dialogs.append(self)

        def fill(self, names):
            self.filled += names
            for name in names:
                widget = LabelColor(self.config, name) if name.startswith("color-") else Widget()
                self.widgets[name] = widget
                self.content.pack_start(widget)

        def get_widget(self, name, widget_type):
            return self.widgets[name]

        def get_content_area(self):
            return self.content

        def get_widget_for_response(self, response):
            assert response == "ok"
            return self.ok

        def connect_after(self, signal, handler):
            assert signal == "map"
            self.mapped.append(handler)

        def run(self):
            for handler in self.mapped:  # the dialog is shown
                handler(self)
            return True if module.on_run is None else module.on_run(self)

        def destroy(self):
            self.destroyed = True

    module = types.SimpleNamespace(init=lambda name: None, ProcedureDialog=ProcedureDialog,
                                   PreviewArea=Widget, LabelColor=LabelColor, dialogs=[],
                                   on_run=None)  # fmt: skip
    return module


def gtk_module():
    orientation = types.SimpleNamespace(VERTICAL="vertical", HORIZONTAL="horizontal")
    return types.SimpleNamespace(Box=Widget, Label=Widget, CheckButton=Widget,
                                 Orientation=orientation,
                                 ResponseType=types.SimpleNamespace(OK="ok"))  # fmt: skip
