"""Krita's entry points: the docker "Recolor with Palette" and the Tools > Scripts action.

Thin by design: the docker hosts the widgets (widgets.py), the controller does the work
(controller.py), and every call that reads or changes the image goes through krita_api.py.
Krita's base classes are the only thing taken from `krita` here.
"""

from __future__ import annotations

import krita
from krita import DockWidget, DockWidgetFactory, DockWidgetFactoryBase, Extension, Krita

from .controller import Controller
from .krita_api import KritaEditor
from .qt import QtCore
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
        if self.isVisible() and Krita.instance().activeDocument() is not None:
            self.controller.check_layer()

    def canvasChanged(self, canvas) -> None:  # noqa: N802 - Krita's name
        if self.isVisible():
            self.view.refresh_palette_resources()
            self.controller.check_layer()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self.view.refresh_palette_resources()
        self.controller.check_layer()


class RecolorExtension(Extension):
    def setup(self) -> None:
        pass

    def createActions(self, window) -> None:  # noqa: N802 - Krita's name
        action = window.createAction(ACTION_ID, f"{TITLE}…", "tools/scripts")
        action.triggered.connect(lambda: show_docker(window))


def find_docker(window):
    for docker in window.dockers():
        if docker.objectName() == DOCKER_ID or docker.windowTitle() == TITLE:
            return docker
    return None


def show_docker(window) -> None:
    docker = find_docker(window)
    if docker is not None:
        docker.show()
        docker.raise_()


def register() -> None:
    app = Krita.instance()
    app.addExtension(RecolorExtension(app))
    app.addDockWidgetFactory(
        DockWidgetFactory(DOCKER_ID, DockWidgetFactoryBase.DockRight, RecolorDocker)
    )
