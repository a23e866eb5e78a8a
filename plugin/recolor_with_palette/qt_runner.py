"""Jobs off the GUI thread, results back on it: the controller's runner, built on QThread.

A job's work function runs in its own QThread and gets a context with `cancel` (a
CancelToken the work checks) and `report(text)` (status shown while it runs). Its result or
exception comes back through a queued signal to this runner, which lives in the GUI thread,
so the controller's callbacks may touch Krita and the widgets.
"""

from __future__ import annotations

from .client import CancelToken
from .controller import JobContext
from .qt import QtCore, Signal


class _JobThread(QtCore.QThread):
    status = Signal(str)
    outcome = Signal(object)  # this thread, once result/error are set

    def __init__(self, work, parent=None):
        super().__init__(parent)
        self.work = work
        self.token = CancelToken()
        self.result = self.error = None

    def run(self):
        context = JobContext(self.token, self.status.emit)
        try:
            self.result = self.work(context)
        except Exception as error:  # shown by the controller, never a traceback dialog
            self.error = error
        self.outcome.emit(self)


class QtRunner(QtCore.QObject):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._running: dict[_JobThread, tuple] = {}

    def start(self, work, done, report) -> CancelToken:
        """Run work(context) off the GUI thread; then done(result, error) on it."""
        thread = _JobThread(work)
        self._running[thread] = (done, report)
        thread.status.connect(self._status)
        thread.outcome.connect(self._finished)
        thread.start()
        return thread.token

    @QtCore.pyqtSlot(str)
    def _status(self, text):
        thread = self.sender()
        if thread in self._running and not thread.token.cancelled:
            self._running[thread][1](text)

    @QtCore.pyqtSlot(object)
    def _finished(self, thread):
        done, _ = self._running.pop(thread, (None, None))
        thread.wait()
        thread.deleteLater()
        if done is not None:
            done(thread.result, thread.error)

    def timer(self, delay_ms: int, callback) -> QtCore.QTimer:
        """A single-shot timer whose start() restarts the wait (a debounce)."""
        timer = QtCore.QTimer(self)
        timer.setSingleShot(True)
        timer.setInterval(delay_ms)
        timer.timeout.connect(callback)
        return timer

    def shutdown(self, wait_ms: int = 3000) -> None:
        """Cancel every job and wait for its thread (Krita is closing the docker): a
        QThread destroyed while running takes the whole editor down."""
        for thread in list(self._running):
            thread.token.cancel()
        for thread in list(self._running):
            thread.wait(wait_ms)
        self._running.clear()
