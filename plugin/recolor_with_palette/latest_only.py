"""At most one job on its way, and only the newest request waiting: what a live preview
needs while a swatch is dragged (a colour dialog reports a new colour every few
milliseconds; computing each in turn would queue work whose answers are stale before they
arrive, and keep the daemon busy with them).

Editor-free: it drives any runner with the Krita controller's runner interface
(`runner.start(work, done, report) -> CancelToken`, work(context) off the GUI thread,
done(result, error) later on the GUI thread): qt_runner.QtRunner in Krita,
gimp_preview.GLibRunner in GIMP's dialog, or a test's.
"""

from __future__ import annotations


class LatestOnly:
    def __init__(self, runner):
        self.runner = runner
        self._running = None  # the CancelToken of the job on its way
        self._waiting = None  # (work, done, report) of the newest request made meanwhile
        self.started = 0  # jobs started, for the curious (tests, benchmarks)

    @property
    def busy(self) -> bool:
        return self._running is not None

    def submit(self, work, done, report=None) -> None:
        """Run work now, or after the running job if there is one, replacing any request
        already waiting (that one is never run, and its done never called).

        done(result, error, superseded) is called on the GUI thread; `superseded` says a
        newer request was waiting when this job ended (it starts right after done): its
        answer is a step behind, still worth showing while a drag goes on."""
        if self._running is not None:
            self._waiting = (work, done, report)
            return
        self._start(work, done, report)

    def cancel(self) -> None:
        """Drop the waiting request and cancel the running job (its done still comes, with
        the runner's Cancelled error, unless the runner was closed)."""
        self._waiting = None
        if self._running is not None:
            self._running.cancel()

    def _start(self, work, done, report) -> None:
        def finished(result, error):
            self._running = None
            waiting, self._waiting = self._waiting, None
            done(result, error, waiting is not None)
            if waiting is not None and self._running is None:  # done may have submitted a
                self._start(*waiting)  # newer one itself: that one is on its way then

        self.started += 1
        self._running = self.runner.start(work, finished, report or (lambda text: None))
