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


# Threads still running when their runner shut down (Krita quitting, the docker deleted):
# kept referenced for good (a few objects at most), since a QThread destroyed while running
# aborts the editor.
_ORPHANS: list = []
SHUTDOWN_WAIT_MS = 1500  # a cancelled job stops within CANCEL_POLL_S; never hold a quit longer


class QtRunner(QtCore.QObject):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._running: dict[_JobThread, tuple] = {}
        self.closed = False

    def start(self, work, done, report) -> CancelToken:
        """Run work(context) off the GUI thread; then done(result, error) on it."""
        thread = _JobThread(work)
        if self.closed:  # the docker is going away: run nothing, call nothing back
            thread.token.cancel()
            return thread.token
        self._running[thread] = (done, report)
        thread.status.connect(self._status)
        thread.outcome.connect(self._finished)
        thread.start()
        return thread.token

    @QtCore.pyqtSlot(str)
    def _status(self, text):
        thread = self.sender()
        if not self.closed and thread in self._running and not thread.token.cancelled:
            self._running[thread][1](text)

    @QtCore.pyqtSlot(object)
    def _finished(self, thread):
        done, _ = self._running.pop(thread, (None, None))
        thread.wait()
        thread.deleteLater()
        if done is not None and not self.closed:
            done(thread.result, thread.error)

    def steps(self, generator, done) -> CancelToken:
        """Run a generator on the GUI thread, one step per turn of the event loop (libkis
        calls in pieces, so that Krita redraws and answers in between); then
        done(its return value, error) on the GUI thread. Cancelling closes the generator
        at its next step and calls done(None, Cancelled())."""
        token = CancelToken()

        def step():
            if self.closed:  # the docker is going away: call nothing back
                generator.close()
                return
            try:
                token.check()
                next(generator)
            except StopIteration as stop:
                done(stop.value, None)
                return
            except Exception as error:  # shown by the controller, never a traceback dialog
                generator.close()
                done(None, error)
                return
            QtCore.QTimer.singleShot(0, step)

        QtCore.QTimer.singleShot(0, step)
        return token

    def timer(self, delay_ms: int, callback) -> QtCore.QTimer:
        """A single-shot timer whose start() restarts the wait (a debounce)."""
        timer = QtCore.QTimer(self)
        timer.setSingleShot(True)
        timer.setInterval(delay_ms)
        timer.timeout.connect(callback)
        return timer

    def shutdown(self, *_signal_arguments) -> None:
        """Krita is quitting or deleting the docker: cancel every job, call none of their
        callbacks (the widgets may be gone), wait briefly for the threads (a cancelled job
        stops within a fraction of a second), and keep any still running referenced until it
        ends: a QThread destroyed while running takes the whole editor down. Connected to
        signals that pass arguments (`destroyed` passes the object), which it ignores.
        Never raises, and never holds the quit for long."""
        self.closed = True
        running = list(self._running)
        self._running.clear()
        for thread in running:
            thread.token.cancel()
        for thread in running:
            try:
                if thread.wait(SHUTDOWN_WAIT_MS):
                    continue
                _ORPHANS.append(thread)
            except RuntimeError:  # its C++ side is already gone
                pass
