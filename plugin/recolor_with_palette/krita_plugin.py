"""Krita's entry points: the docker "Recolor with Palette" and the Tools > Scripts action.

Thin by design: the docker hosts the widgets (widgets.py), the controller does the work
(controller.py), and every call that reads or changes the image goes through krita_api.py.
Krita's base classes are the only thing taken from `krita` here.
"""

from __future__ import annotations

import contextlib

import krita
from krita import DockWidget, DockWidgetFactory, DockWidgetFactoryBase, Extension, Krita

from .controller import Controller
from .krita_api import KritaEditor
from .qt import QtCore, QtWidgets
from .qt_runner import QtRunner
from .settings import Settings
from .widgets import RecolorWidget

DOCKER_ID = "recolor_with_palette_docker"
ACTION_ID = "recolor_with_palette"
TITLE = "Recolor with Palette"
LAYER_POLL_MS = 700  # libkis has no "active layer changed" signal: look while visible


class RecolorDocker(DockWidget):
    def __init__(self):
        super().__init__()
        self.setWindowTitle(TITLE)
        self.editor = KritaEditor(krita)
        self.runner = QtRunner(self)
        self.view = RecolorWidget(self)
        settings = Settings.load(self.editor.read_setting)
        self.controller = Controller(
            self.editor, self.view, self.runner, settings, self._save_settings
        )
        self.view.palette_resources = self.editor.palette_resource_names
        self.view.attach(self.controller)
        self.setWidget(self.view)
        self.poll = QtCore.QTimer(self)
        self.poll.setInterval(LAYER_POLL_MS)
        self.poll.timeout.connect(self._poll)
        self.poll.start()
        self.destroyed.connect(self.runner.shutdown)
        Krita.instance().notifier().applicationClosing.connect(self.runner.shutdown)

    def _save_settings(self, settings: Settings) -> None:
        settings.save(self.editor.write_setting)

    def _poll(self) -> None:
        with self._guard():
            if self.isVisible() and Krita.instance().activeDocument() is not None:
                self.controller.check_layer()

    def canvasChanged(self, canvas) -> None:  # noqa: N802 - Krita's name
        with self._guard():
            if self.isVisible():
                self.view.refresh_palette_resources()
                self.controller.check_layer()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        with self._guard():
            self.view.refresh_palette_resources()
            self.controller.check_layer()

    @contextlib.contextmanager
    def _guard(self):
        """A bug of ours in a callback Krita makes goes to the status line, not to stderr or
        Krita's traceback dialog."""
        try:
            yield
        except Exception as error:
            try:
                self.view.show_status(f"Unexpected error: {type(error).__name__}: {error}", "error")
            except Exception:
                show_message(f"{type(error).__name__}: {error}")


class RecolorExtension(Extension):
    def setup(self) -> None:
        pass

    def createActions(self, window) -> None:  # noqa: N802 - Krita's name
        # The `window` given here is a wrapper Krita may delete later (then using it raises
        # "wrapped C/C++ object ... has been deleted"): the action looks up the window it
        # was triggered in each time instead of keeping it.
        action = window.createAction(ACTION_ID, f"{TITLE}…", "tools/scripts")
        action.triggered.connect(show_docker)


def find_docker(main_window):
    """The docker in a main window (a QMainWindow), whether shown, hidden or closed."""
    for docker in main_window.findChildren(QtWidgets.QDockWidget):
        if docker.objectName() == DOCKER_ID:
            return docker
    return None


def show_docker(*_signal_arguments) -> None:
    """Tools > Scripts > Recolor with Palette…: show the docker of the active window (also
    after it was closed) and bring it to the front. A failure is said in a message box."""
    try:
        window = Krita.instance().activeWindow()
        main_window = window.qwindow() if window is not None else None
        if main_window is None:
            raise RuntimeError("Krita has no active window.")
        docker = find_docker(main_window)
        if docker is None:
            raise RuntimeError(
                "The docker is not there: enable Recolor with Palette in Settings > Configure "
                "Krita > Python Plugin Manager and restart Krita."
            )
        docker.show()
        docker.raise_()
        docker.activateWindow()
    except Exception as error:
        show_message(f"The docker could not be opened. {type(error).__name__}: {error}")


def show_message(text: str) -> None:
    """A message box over Krita's window, for failures outside the docker's status line."""
    try:
        window = Krita.instance().activeWindow()
        parent = window.qwindow() if window is not None else None
        QtWidgets.QMessageBox.warning(parent, TITLE, text)
    except Exception:  # Qt itself failing: stderr is all that is left
        import traceback

        traceback.print_exc()


def register() -> None:
    app = Krita.instance()
    app.addExtension(RecolorExtension(app))
    app.addDockWidgetFactory(
        DockWidgetFactory(DOCKER_ID, DockWidgetFactoryBase.DockRight, RecolorDocker)
    )
