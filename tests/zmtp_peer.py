"""The server side of a ZMTP connection, read by hand: for tests that play a hostile or a
scripted peer of the plug-in's clients (tests/test_zmtp.py, tests/test_plugin_liveness.py)."""

import socket


def read_message(connection: socket.socket) -> list[bytes]:
    """One message (commands skipped), read by hand on the server side; EOFError when the
    client hangs up."""
    frames = []
    while True:
        flags, size = read_exact(connection, 2)
        if flags & 0x02:
            size = int.from_bytes(bytes([size]) + read_exact(connection, 7), "big")
        body = read_exact(connection, size)
        if flags & 0x04:
            continue
        frames.append(body)
        if not flags & 0x01:
            return frames


def read_exact(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data
