"""Who may talk to a daemon or broker: loopback only, unless CurveZMQ is set up.

A daemon holds artists' unpublished work, so by default it listens only where no other
machine can reach it (127.0.0.0/8, ::1, ipc://). Listening anywhere else needs CurveZMQ
(ZeroMQ's own encryption and authentication): the server has a key pair, every client has
one, and the server accepts only the client public keys in a folder it is given. Key files
are those of pyzmq's zmq.auth (`palettenet keys` writes them).
"""

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


class SecurityError(ValueError):
    """An address or key setup that would expose the daemon; the message says how to fix it."""


def is_local(endpoint: str) -> bool:
    """Whether an endpoint can only be reached from this machine."""
    transport, _, address = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp":
        return False
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name, a host name: not provably local
        return False


def check_bind(endpoint: str, curve: "ServerKeys | None") -> None:
    if curve is None and not is_local(endpoint):
        raise SecurityError(
            f"refusing to listen on {endpoint} without encryption: only loopback "
            "(tcp://127.0.0.1:PORT, tcp://[::1]:PORT) and ipc:// are allowed in the clear. "
            "Create keys with `palettenet keys DIR` and pass --curve-secret DIR/server.key_secret "
            "--curve-clients FOLDER (the client public keys to accept)"
        )


def create_keys(folder: Path, name: str) -> tuple[Path, Path]:
    """A new key pair: (public key file NAME.key, secret key file NAME.key_secret)."""
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(folder), name)
    return Path(public), Path(secret)


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public_key, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as error:
        raise SecurityError(f"cannot read CURVE key file {path}: {error}") from None
    if secret and secret_key is None:
        raise SecurityError(f"{path} holds no secret key: pass the .key_secret file")
    return public_key, secret_key


@dataclass
class ServerKeys:
    secret_file: Path  # the server's NAME.key_secret
    clients: Path  # a folder of accepted clients' NAME.key files

    def authenticator(self, context: zmq.Context) -> ThreadAuthenticator:
        """The thread that checks connecting clients' keys against the folder, for every
        CURVE server socket of `context`; stop it after closing them."""
        if not self.clients.is_dir() or not any(self.clients.glob("*.key")):
            raise SecurityError(f"--curve-clients {self.clients}: no client .key files there")
        authenticator = ThreadAuthenticator(context)
        authenticator.start()
        authenticator.configure_curve(domain="*", location=str(self.clients))
        return authenticator

    def apply(self, socket: zmq.Socket) -> None:
        """Make `socket` a CURVE server with this key pair."""
        socket.curve_publickey, socket.curve_secretkey = _load(self.secret_file, secret=True)
        socket.curve_server = True


@dataclass
class ClientKeys:
    server_key: Path  # the server's NAME.key (public)
    secret_file: Path  # this client's NAME.key_secret

    def apply(self, socket: zmq.Socket) -> None:
        socket.curve_serverkey, _ = _load(self.server_key, secret=False)
        socket.curve_publickey, socket.curve_secretkey = _load(self.secret_file, secret=True)
