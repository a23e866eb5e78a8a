"""What the artist reads when something goes wrong, for every way a request can fail.

The daemon's error codes (palettenet/1, docs/PROTOCOL.md) name what was wrong for a
programmer; the editor shows a sentence that says what happened and what to do, followed by
the daemon's own message as the detail. Failures on this side of the wire (no answer, a
refused connection, a daemon that would not start) get codes of their own here, so the UI
has one kind of error to show.
"""

from __future__ import annotations

from .wire import DEFAULT_ADDRESS, MAX_PALETTE_COLORS

# The daemon's codes (every one of wire.ERROR_CODES), then this side's. Each text is shown
# as it is, then the detail.
MESSAGES = {
    # palettenet/1 error codes
    "bad_request": "The backend did not understand the plug-in's request. The plug-in and "
    "the backend are probably from different versions: run install.py again.",
    "bad_palette": "The backend refused the target palette. Check its colours "
    f"(1 to {MAX_PALETTE_COLORS}).",
    "size_mismatch": "The layer's pixels did not arrive complete. Try again; if it happens "
    "again, please report it.",
    "unsupported_format": "The backend cannot read this layer's pixel format. Update the "
    "backend (run install.py again).",
    "too_large": "This layer is too large for the backend. Select a smaller area, or start "
    "the backend with a larger --max-pixels.",
    "busy": "The backend is busy with other requests. Try again in a moment.",
    "model_unavailable": "The backend has no PaletteNet model installed. Choose the Classical "
    "method, or start the backend with --weights FILE.",
    "internal": "The backend failed while recolouring. Try again; if it happens again, "
    "please report it with the backend's log.",
    # failures on the plug-in's side
    "connection_refused": "Nothing is listening at the backend address. Start the backend "
    "(palettenet serve) or check the address (Krita: the docker's settings; GIMP: the "
    "procedure's server argument).",
    "timeout": "The backend did not answer in time. It may be busy with a very large layer: "
    "try again (in Krita you can also raise the timeout in the docker's settings).",
    "connection_lost": "The connection to the backend failed. Check that it is still "
    "running, then try again.",
    "backend_stopped": "The backend stopped while working on this request (it may have "
    "crashed or been killed). It is started again the next time you recolour; if it runs on "
    "another computer, or auto-start is off, start it again there first.",
    "no_memory": "There is not enough memory for the backend's answer. Close other images "
    "or select a smaller area, then try again.",
    "bad_address": "The backend address is not valid. It looks like "
    f"{DEFAULT_ADDRESS} or ipc:///path/to/socket.",
    "unreachable": "No backend answers at the configured address. Start it (palettenet "
    "serve --bind ADDRESS) or check the address (Krita: the docker's settings; GIMP: the "
    "procedure's server argument).",
    "no_backend": "No backend answers at the configured address, and none is installed for "
    "this plug-in to start. Run install.py from the Recolor with Palette folder, or start "
    "one yourself with: palettenet serve",
    "start_failed": "The backend could not be started.",
    "start_timeout": "The backend was started but did not answer in time. It may still be "
    "loading: try again in a moment.",
    "encryption_unavailable": "The backend address needs encryption (CurveZMQ), which needs "
    "pyzmq, and pyzmq cannot be loaded in this editor's Python. Run the backend on this "
    "computer instead, or run install.py so it can add pyzmq to the plug-in.",
    "bad_reply": "The backend sent an answer the plug-in cannot read. The plug-in and the "
    "backend are probably from different versions: run install.py again.",
    "cancelled": "Cancelled.",
    "editor": "",  # the editor's own complaint (wrong layer type, colour model): detail only
}


class RecolorError(Exception):
    """A failure to show the artist: `code` says which kind, str() is the whole text;
    `field`: the request field the daemon's error names, if any (e.g. "icc_profile")."""

    def __init__(self, code: str, detail: str = "", field: str | None = None):
        self.code = code
        self.detail = detail
        self.field = field
        super().__init__(user_message(code, detail))


def user_message(code: str, detail: str = "") -> str:
    """The sentence for `code`, then the detail (the daemon's own words, an address...)."""
    text = MESSAGES.get(code)
    if text is None:
        text = f"The backend reported an error ({code})."
    if detail and text:
        return f"{text}\n{detail}"
    return text or detail


class BadReplyError(RecolorError):
    """The daemon's answer breaks palettenet/1, or is larger than the request allows."""

    def __init__(self, detail: str = ""):
        super().__init__("bad_reply", detail)


class ConnectionLostError(RecolorError):
    """The connection failed, neither refused nor timed out (`code` connection_lost), or
    the daemon went away with the request and did not come back (backend_stopped)."""

    def __init__(self, detail: str = "", code: str = "connection_lost"):
        super().__init__(code, detail)


class BackendStoppedError(ConnectionLostError):
    """The daemon stopped (crashed, killed) while it had the request."""

    def __init__(self, detail: str = ""):
        super().__init__(detail, "backend_stopped")


class OutOfMemoryError(RecolorError):
    """The editor's process could not hold the answer."""

    def __init__(self, detail: str = ""):
        super().__init__("no_memory", detail)


class EditorError(RecolorError):
    """Something about the image or layer that stops the recolouring; the text says what.
    `hint`: a normal state to guide the artist out of (no image open yet), shown plainly,
    not as an error."""

    def __init__(self, message: str, hint: bool = False):
        super().__init__("editor", message)
        self.hint = hint
