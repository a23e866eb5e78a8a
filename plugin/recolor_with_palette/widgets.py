"""The docker's contents: Qt widgets only, no Krita. This is the controller's view.

Layer        [■][■][■][■][■][■]            the layer's own palette
Target       [■][■][■][■][■][■]  [Reset]   click: colour dialog; right-click: more
             Palette: Designer 003          the loaded palette's name (hidden for none)
Colours [6]  Designer [......v]  Krita [......v]
File         [Import…]                    [Export… v]   palette files in and out
Method  [PaletteNet v]                      [Backend…]
[ preview thumbnail ]                       Apply's region with the target palette
Preview: the selection, 300 × 200 px...     or "Preview out of date: updating…"
status text (errors in red)     [busy bar]
[Apply]  [Cancel]
Swatch i of the layer's row becomes swatch i of the target row (columns line up).
"""

from __future__ import annotations

from .client import METHODS
from .palettefile import MAX_STRIP_PIXELS, PaletteFileError
from .palettes import MAX_COLORS, MIN_COLORS, designer_palettes
from .pixels import Pixels
from .qt import Qt, QtCore, QtGui, QtWidgets, exec_dialog
from .settings import Settings
from .wire import DEFAULT_ADDRESS

SWATCH_SIZE = 26
PREVIEW_SIDE = 256
PREVIEW_MIN_HEIGHT = 140  # the preview is the docker's main feedback: never a postage stamp
PALETTE_FILE_FILTER = (
    "Palettes (*.gpl *.kpl *.ase *.aco *.hex *.txt *.png *.gif *.jpg *.jpeg *.bmp *.webp);;"
    "All files (*)"
)
STATUS_COLORS = {"error": "#d04040", "busy": "", "info": ""}
STATUS_LINES = 4  # the status line's height; longer messages scroll


def pixels_to_qimage(pixels: Pixels) -> QtGui.QImage:
    """BGRA8 pixels (thumbnails and previews) -> a QImage that owns its memory."""
    if pixels.pixel_format != "BGRA8":
        raise ValueError(f"preview pixels must be BGRA8, not {pixels.pixel_format}")
    image = QtGui.QImage(
        pixels.data, pixels.width, pixels.height, 4 * pixels.width,
        QtGui.QImage.Format.Format_ARGB32,
    )  # fmt: skip
    return image.copy()  # the QImage above only borrows pixels.data


def read_image_rgba(path) -> tuple[int, int, bytes]:
    """A palette strip image decoded by Qt -> (width, height, RGBA8 bytes, row by row).
    Its size is checked from the header before any pixel is decoded."""
    reader = QtGui.QImageReader(str(path))
    size = reader.size()
    if size.isValid() and size.width() * size.height() > MAX_STRIP_PIXELS:
        raise PaletteFileError(f"{path}: {size.width()} x {size.height()} is too large for a "
                               f"palette strip (at most {MAX_STRIP_PIXELS:,} pixels)")  # fmt: skip
    image = reader.read()
    if image.isNull():
        raise PaletteFileError(f"{path}: not an image Qt can read ({reader.errorString()})")
    image = image.convertToFormat(QtGui.QImage.Format.Format_RGBA8888)
    data = image.constBits()
    data.setsize(image.height() * image.bytesPerLine())
    return image.width(), image.height(), bytes(data)  # RGBA8888 rows have no padding


def swatch_icon(colors, width: int = 96, height: int = 14) -> QtGui.QIcon:
    pixmap = QtGui.QPixmap(width, height)
    painter = QtGui.QPainter(pixmap)
    step = width / max(1, len(colors))
    for index, color in enumerate(colors):
        left = round(index * step)
        painter.fillRect(left, 0, round((index + 1) * step) - left, height, QtGui.QColor(color))
    painter.end()
    return QtGui.QIcon(pixmap)


class SwatchButton(QtWidgets.QToolButton):
    """One colour of a palette. Target swatches are editable, layer swatches are not."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFixedSize(SWATCH_SIZE, SWATCH_SIZE)
        self.color = ""

    def set_color(self, color: str) -> None:
        self.color = color
        self.setStyleSheet(
            f"QToolButton {{ background: {color}; border: 1px solid #202020; }}"
            "QToolButton:hover { border: 2px solid palette(highlight); }"
        )
        self.setAccessibleName(color)


class PaletteRow(QtWidgets.QWidget):
    """A row of swatches; `clicked(index)` and `menu_requested(index, position)`."""

    clicked = QtCore.pyqtSignal(int)
    menu_requested = QtCore.pyqtSignal(int, QtCore.QPoint)

    def __init__(self, editable: bool, parent=None):
        super().__init__(parent)
        self.editable = editable
        self.buttons: list[SwatchButton] = []
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addStretch(1)

    def set_colors(self, colors) -> None:
        layout = self.layout()
        while len(self.buttons) < len(colors):
            button = SwatchButton(self)
            index = len(self.buttons)
            if self.editable:
                self._make_editable(button, index)
            else:
                button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            layout.insertWidget(index, button)
            self.buttons.append(button)
        for index, button in enumerate(self.buttons):
            button.setVisible(index < len(colors))
            if index < len(colors):
                button.set_color(colors[index])
                if not self.editable:
                    button.setToolTip(f"{colors[index]} (the layer's colour {index + 1})")

    def _make_editable(self, button: SwatchButton, index: int) -> None:
        button.setToolTip("Click: choose a colour. Right-click: foreground colour and more.")
        button.clicked.connect(lambda _checked=False: self.clicked.emit(index))
        button.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        button.customContextMenuRequested.connect(
            lambda point: self.menu_requested.emit(index, button.mapToGlobal(point))
        )

    def colors(self) -> list[str]:
        return [button.color for button in self.buttons if button.isVisible()]


class PreviewLabel(QtWidgets.QLabel):
    """The preview thumbnail, scaled to fit whatever room the docker gives it."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(64, PREVIEW_MIN_HEIGHT)
        self.setSizePolicy(
            QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Expanding
        )
        self.source = None

    def set_image(self, image: QtGui.QImage | None) -> None:
        self.source = None if image is None else QtGui.QPixmap.fromImage(image)
        self._fit()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        if self.source is None:
            self.clear()
            return
        side = min(self.width(), self.height(), PREVIEW_SIDE)
        self.setPixmap(
            self.source.scaled(
                side, side, Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )  # fmt: skip


class SettingsDialog(QtWidgets.QDialog):
    """Where the daemon is, how long to wait, whether to start it, CurveZMQ key files."""

    def __init__(self, settings: Settings, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Recolor with Palette: backend")
        form = QtWidgets.QFormLayout(self)
        self.address = QtWidgets.QLineEdit(settings.address)
        self.address.setToolTip(f"{DEFAULT_ADDRESS}, ipc:///path, or a remote tcp:// address")
        self.timeout = QtWidgets.QDoubleSpinBox()
        self.timeout.setRange(5, 24 * 3600)
        self.timeout.setSuffix(" s")
        self.timeout.setValue(settings.timeout_s)
        self.auto_start = QtWidgets.QCheckBox("Start the installed backend when none answers")
        self.auto_start.setChecked(settings.auto_start)
        self.server_key = QtWidgets.QLineEdit(settings.server_public_key_file)
        self.server_key.setPlaceholderText("remote daemon only: its server.key file")
        self.client_key = QtWidgets.QLineEdit(settings.client_secret_key_file)
        self.client_key.setPlaceholderText("remote daemon only: this client's .key_secret file")
        form.addRow("Address", self.address)
        form.addRow("Timeout", self.timeout)
        form.addRow("", self.auto_start)
        form.addRow("Server key", self.server_key)
        form.addRow("Client key", self.client_key)
        buttons = QtWidgets.QDialogButtonBox(
            QtWidgets.QDialogButtonBox.StandardButton.Ok
            | QtWidgets.QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.settings = settings

    def result_settings(self) -> Settings:
        settings = Settings(**vars(self.settings))
        settings.address = self.address.text().strip() or Settings.address
        settings.timeout_s = self.timeout.value()
        settings.auto_start = self.auto_start.isChecked()
        settings.server_public_key_file = self.server_key.text().strip()
        settings.client_secret_key_file = self.client_key.text().strip()
        return settings


class RecolorWidget(QtWidgets.QWidget):
    """The view. `controller` is set once both exist (they refer to each other)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.controller = None
        self.palette_resources = lambda: []  # names of the editor's palettes, set by the host
        self.color_dialog = None  # the open colour dialog, if any
        self._build()

    # --- layout -----------------------------------------------------------------------------
    def _build(self) -> None:
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(4, 4, 4, 4)
        self.layer_row = PaletteRow(editable=False)
        self.target_row = PaletteRow(editable=True)
        self.target_row.clicked.connect(self._guarded(self._choose_color))
        self.target_row.menu_requested.connect(self._guarded(self._swatch_menu))
        self.reset_button = QtWidgets.QPushButton("Reset")
        self.reset_button.setToolTip("Read the layer's palette again and make it the target")
        self.reset_button.clicked.connect(self._guarded(lambda *_: self.controller.reset_target()))
        grid.addWidget(QtWidgets.QLabel("Layer"), 0, 0)
        grid.addWidget(self.layer_row, 0, 1, 1, 3)
        grid.addWidget(QtWidgets.QLabel("Target"), 1, 0)
        grid.addWidget(self.target_row, 1, 1, 1, 2)
        grid.addWidget(self.reset_button, 1, 3)
        self.target_name = QtWidgets.QLabel()
        self.target_name.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.target_name.hide()
        grid.addWidget(self.target_name, 2, 1, 1, 3)

        self.size_spin = QtWidgets.QSpinBox()
        self.size_spin.setRange(MIN_COLORS, MAX_COLORS)
        self.size_spin.setToolTip("How many colours to take from the layer")
        self.size_spin.valueChanged.connect(self._guarded(self._size_changed))
        self.designer_combo = QtWidgets.QComboBox()
        self.designer_combo.setToolTip("Designer palettes (@thi.ng/color-palettes, Apache-2.0)")
        self.designer_combo.addItem("Designer…")
        for palette in designer_palettes():
            self.designer_combo.addItem(swatch_icon(palette.colors), palette.name)
        self.designer_combo.setIconSize(QtCore.QSize(96, 14))
        self.designer_combo.activated.connect(self._guarded(self._designer_chosen))
        self.krita_combo = QtWidgets.QComboBox()
        self.krita_combo.setToolTip("A palette from Krita's resources (its first 12 colours)")
        self.krita_combo.addItem("Krita palette…")
        self.krita_combo.activated.connect(self._guarded(self._resource_chosen))
        grid.addWidget(QtWidgets.QLabel("Colours"), 3, 0)
        grid.addWidget(self.size_spin, 3, 1)
        grid.addWidget(self.designer_combo, 3, 2)
        grid.addWidget(self.krita_combo, 3, 3)

        self.import_button = QtWidgets.QPushButton("Import…")
        self.import_button.setToolTip(
            "Load a palette file as the target: .gpl, .kpl, .ase, .aco, a hex list (.hex, "
            ".txt) or a palette strip image"
        )
        self.import_button.clicked.connect(self._guarded(lambda *_: self._import_palette()))
        self.export_button = QtWidgets.QToolButton()
        self.export_button.setText("Export…")
        self.export_button.setToolTip("Save the target row or the layer's palette as .gpl or .kpl")
        self.export_button.setPopupMode(QtWidgets.QToolButton.ToolButtonPopupMode.InstantPopup)
        export_menu = QtWidgets.QMenu(self.export_button)
        export_menu.addAction("The target row…", self._guarded(lambda: self._export("target")))
        export_menu.addAction("The layer's palette…", self._guarded(lambda: self._export("layer")))
        self.export_button.setMenu(export_menu)
        grid.addWidget(QtWidgets.QLabel("File"), 4, 0)
        grid.addWidget(self.import_button, 4, 1, 1, 2)
        grid.addWidget(self.export_button, 4, 3)

        self.method_combo = QtWidgets.QComboBox()
        for method, label in METHODS.items():
            self.method_combo.addItem(label, method)
        self.method_combo.activated.connect(self._guarded(self._method_chosen))
        self.settings_button = QtWidgets.QPushButton("Backend…")
        self.settings_button.clicked.connect(self._guarded(lambda *_: self._edit_settings()))
        grid.addWidget(QtWidgets.QLabel("Method"), 5, 0)
        grid.addWidget(self.method_combo, 5, 1, 1, 2)
        grid.addWidget(self.settings_button, 5, 3)

        self.preview = PreviewLabel()
        self.preview.setToolTip(
            "What Apply will add: the layer within the selection, with the target palette"
        )
        grid.addWidget(self.preview, 6, 0, 1, 4)
        self.preview_state = QtWidgets.QLabel()
        self.preview_state.setWordWrap(True)
        self.preview_state.setAlignment(Qt.AlignmentFlag.AlignCenter)
        grid.addWidget(self.preview_state, 7, 0, 1, 4)

        self.status = QtWidgets.QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        # A long message scrolls within a few lines instead of pushing the layout below its
        # minimum (where Qt draws the widgets over one another: over the preview).
        self.status_area = QtWidgets.QScrollArea()
        self.status_area.setWidget(self.status)
        self.status_area.setWidgetResizable(True)
        self.status_area.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self.status_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        lines = self.status.fontMetrics().lineSpacing()
        self.status_area.setFixedHeight(STATUS_LINES * lines + 4)
        self.busy = QtWidgets.QProgressBar()
        self.busy.setRange(0, 0)  # no progress API in palettenet/1: an indeterminate bar
        self.busy.setMaximumHeight(8)
        self.busy.setTextVisible(False)
        self.busy.hide()
        grid.addWidget(self.status_area, 8, 0, 1, 4)
        grid.addWidget(self.busy, 9, 0, 1, 4)

        self.apply_button = QtWidgets.QPushButton("Apply")
        self.apply_button.setToolTip("Recolour the layer (within the selection) into a new layer")
        self.apply_button.clicked.connect(self._guarded(lambda *_: self.controller.apply()))
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._guarded(lambda *_: self.controller.cancel()))
        self.cancel_button.setEnabled(False)
        grid.addWidget(self.apply_button, 10, 0, 1, 2)
        grid.addWidget(self.cancel_button, 10, 2, 1, 2)
        grid.setRowStretch(6, 1)

    def attach(self, controller) -> None:
        self.controller = controller
        settings = controller.settings
        self.size_spin.blockSignals(True)
        self.size_spin.setValue(settings.palette_size)
        self.size_spin.blockSignals(False)
        self.method_combo.setCurrentIndex(max(0, self.method_combo.findData(settings.method)))

    def _guarded(self, action):
        """A user action that cannot end in Krita's traceback dialog: a bug of ours is
        shown in the docker's status line instead (and the docker keeps working)."""

        def run(*args):
            try:
                action(*args)
            except Exception as error:
                self.show_status(f"Unexpected error: {type(error).__name__}: {error}", "error")

        return run

    # --- the controller's view interface ----------------------------------------------------
    def show_layer_palette(self, colors) -> None:
        self.layer_row.set_colors(colors)

    def show_target(self, colors, name) -> None:
        self.target_row.set_colors(colors)
        self.target_row.setToolTip(name or "")
        self.target_name.setText(f"Palette: {name}" if name else "")
        self.target_name.setVisible(bool(name))

    def show_preview(self, pixels: Pixels | None) -> None:
        self.preview.set_image(None if pixels is None else pixels_to_qimage(pixels))

    def show_preview_state(self, text: str) -> None:
        """Under the preview: what it shows, or that it is out of date and being made."""
        self.preview_state.setText(text)

    def show_status(self, text: str, kind: str, detail: str = "") -> None:
        """The status line; `detail` (the technical story) shows as its tooltip."""
        color = STATUS_COLORS.get(kind, "")
        self.status.setStyleSheet(f"color: {color};" if color else "")
        self.status.setText(text)
        self.status.setToolTip(detail)
        self.busy.setVisible(kind == "busy")

    def set_applying(self, applying: bool) -> None:
        self.apply_button.setEnabled(not applying)
        self.cancel_button.setEnabled(applying)

    # --- user actions -----------------------------------------------------------------------
    def _choose_color(self, index: int) -> None:
        """Qt's colour dialog; while the artist drags in it the preview follows
        (controller.drag_target_color); Cancel puts the target back as it was."""
        before = self.controller.target_snapshot()
        dialog = QtWidgets.QColorDialog(QtGui.QColor(self.controller.target[index]), self)
        dialog.setWindowTitle(f"Target colour {index + 1}")
        self.color_dialog = dialog  # for tests and screenshots
        dialog.currentColorChanged.connect(
            self._guarded(lambda color: self.controller.drag_target_color(index, color.name()))
        )
        accepted = exec_dialog(dialog) == QtWidgets.QDialog.DialogCode.Accepted
        self.color_dialog = None
        if accepted and dialog.selectedColor().isValid():
            chosen = dialog.selectedColor().name()
            if self.controller.target[index] != chosen:  # else the drag has shown it already
                self.controller.set_target_color(index, chosen)
        else:
            self.controller.restore_target(before)

    def _import_palette(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Import a palette", "", PALETTE_FILE_FILTER
        )
        if path:
            self.controller.import_palette_file(path, read_image_rgba)

    def _export(self, which: str) -> None:
        path, chosen = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export the palette", "", "GIMP palette (*.gpl);;Krita palette (*.kpl)"
        )
        if not path:
            return
        if not path.lower().endswith((".gpl", ".kpl")):
            path += ".kpl" if "kpl" in chosen else ".gpl"
        self.controller.export_palette_file(path, which)

    def _swatch_menu(self, index: int, position) -> None:
        menu = QtWidgets.QMenu(self)
        menu.addAction("Choose colour…", self._guarded(lambda: self._choose_color(index)))
        menu.addAction(
            "Use foreground colour",
            self._guarded(lambda: self.controller.use_foreground(index)),
        )
        layer_palette = self.controller.layer_palette
        if index < len(layer_palette):
            menu.addAction(
                f"Use the layer's colour {layer_palette[index]}",
                self._guarded(
                    lambda: self.controller.set_target_color(index, layer_palette[index])
                ),
            )
        menu.popup(position)

    def _size_changed(self, size: int) -> None:
        if self.controller is not None:
            self.controller.set_palette_size(size)

    def _designer_chosen(self, row: int) -> None:
        if row > 0:
            self.controller.load_palette(designer_palettes()[row - 1])
        self.designer_combo.setCurrentIndex(0)

    def _resource_chosen(self, row: int) -> None:
        if row > 0:
            self.controller.load_palette_resource(self.krita_combo.itemText(row))
        self.krita_combo.setCurrentIndex(0)

    def refresh_palette_resources(self) -> None:
        """Fill the Krita palette list (palettes may be added while Krita runs)."""
        names = list(self.palette_resources())
        self.krita_combo.clear()
        self.krita_combo.addItem("Krita palette…")
        self.krita_combo.addItems(names)

    def _method_chosen(self, row: int) -> None:
        self.controller.set_method(self.method_combo.itemData(row))

    def _edit_settings(self) -> None:
        dialog = SettingsDialog(self.controller.settings, self)
        if exec_dialog(dialog) == QtWidgets.QDialog.DialogCode.Accepted:
            self.controller.update_settings(dialog.result_settings())
