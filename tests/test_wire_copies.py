"""The plug-in's copies of what the backend defines: they must not drift apart.

The plug-in cannot import the backend (an editor's Python has neither it nor torch), so it
carries its own wire.py. Here: every public constant of plugin/recolor_with_palette/wire.py
equals backend/wire.py's, the plug-in has a message for every error code of the protocol,
and both sides decide alike which addresses are local (the daemon serves those without
encryption; the plug-in starts a daemon only there).
"""

import inspect

import pytest

import backend.wire
from backend.service.security import is_local as backend_is_local
from plugin.recolor_with_palette import wire as plugin_wire
from plugin.recolor_with_palette.autostart import is_local as plugin_is_local
from plugin.recolor_with_palette.client import METHODS, PROTOCOL
from plugin.recolor_with_palette.errors import MESSAGES
from plugin.recolor_with_palette.palettes import MAX_COLORS
from plugin.recolor_with_palette.pixels import WIRE_BYTES_PER_PIXEL


def public(module) -> dict:
    """The module's public names and values, functions as their source (two copies of a
    function are different objects)."""
    names = {}
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        names[name] = inspect.getsource(value) if inspect.isfunction(value) else value
    return names


def test_the_plugin_wire_module_is_a_copy_of_the_backend_one():
    ours, theirs = public(plugin_wire), public(backend.wire)
    assert sorted(ours) == sorted(theirs)
    for name in theirs:
        assert ours[name] == theirs[name], name
    # the names the plug-in relies on are there
    for name in ("PROTOCOL", "DEFAULT_ADDRESS", "OPS", "METHODS", "MAX_PALETTE_COLORS",
                 "DEFAULT_PALETTE_COLORS", "ERROR_CODES", "PIXEL_FORMATS", "CHANNEL_BYTES",
                 "bytes_per_pixel"):  # fmt: skip
        assert name in ours, name


def test_the_plugin_uses_its_wire_constants():
    assert PROTOCOL == backend.wire.PROTOCOL
    assert list(METHODS) == list(backend.wire.METHODS)  # the keys; the values are labels
    assert all(isinstance(label, str) and label for label in METHODS.values())
    assert MAX_COLORS == backend.wire.MAX_PALETTE_COLORS
    assert WIRE_BYTES_PER_PIXEL == {
        name: backend.wire.bytes_per_pixel(name) for name in backend.wire.PIXEL_FORMATS
    }


@pytest.mark.parametrize("code", backend.wire.ERROR_CODES)
def test_every_protocol_error_code_has_a_message(code):
    assert MESSAGES.get(code), code


ADDRESSES = {
    "tcp://127.0.0.1:5555": True,
    "tcp://127.5.6.7:1": True,
    "tcp://localhost:1": True,
    "tcp://[::1]:1": True,
    "tcp://[0:0:0:0:0:0:0:1]:1": True,
    "tcp://127.example.com:1": False,  # a host name, whatever it starts with
    "tcp://*:1": False,
    "tcp://0.0.0.0:1": False,
    "tcp://192.168.1.2:1": False,
    "ipc:///tmp/x": True,
    "inproc://x": True,
    "udp://x": False,
}


@pytest.mark.parametrize("address, local", ADDRESSES.items())
def test_plugin_and_backend_agree_on_local_addresses(address, local):
    assert plugin_is_local(address) == backend_is_local(address) == local
