"""Who may talk to a daemon or broker, and how much they can make it hold.

A daemon holds artists' unpublished work, so by default it listens only where no other
machine can reach it (127.0.0.0/8, ::1, ipc://). Listening anywhere else needs CurveZMQ
(ZeroMQ's own encryption and authentication): the server has a key pair, every client has
one, and the server accepts only the client public keys in a folder it is given. A broker
keeps a second folder for its workers' keys: a client key never lets anyone pose as a worker.
Key files are those of pyzmq's zmq.auth (`palettenet keys` writes them, secret ones 0600).

Every server socket gets the same guards (server_socket): a per-frame size limit, a short
receive queue per connection, a deadline for the ZeroMQ handshake so connections that never
complete one are closed quickly, and TCP keepalive so vanished peers do not keep their file
descriptors. ipc:// sockets are created 0600 whatever the umask.
"""

import ipaddress
import os
import resource
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

# The ZAP domains of the two kinds of peers; each has its own folder of accepted keys.
CLIENTS, WORKERS = "clients", "workers"
HANDSHAKE_MS = 3000  # a peer must finish the ZMTP greeting (and CURVE) within this
RECEIVE_QUEUE = 8  # complete messages ZeroMQ holds per connection before it stops reading
FD_LIMIT_WANTED = 1 << 16  # open files to ask for: thousands of connections and more
# Connections the kernel completes and holds until ZeroMQ accepts them (capped by the
# system's somaxconn). ZeroMQ's default, 100, makes the kernel drop further connection
# attempts during a burst, and a real client's dropped attempt is retried only after 1, 3,
# 7 s: a long queue behind a burst of idle connections costs it less than that.
ACCEPT_BACKLOG = 1024


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


def tcp_port_problem(endpoint: str) -> str | None:
    """Why a tcp:// endpoint's port is unusable, None if it is fine (ZeroMQ itself takes
    70000 as 4464 and -5 as 65531: silently another port)."""
    transport, _, address = endpoint.partition("://")
    if transport != "tcp" or ":" not in address:
        return None  # ipc, inproc, or no port at all: ZeroMQ's own error says it
    port = address.rsplit(":", 1)[1]
    if port == "*" or (port.isdigit() and 1 <= int(port) <= 65535):
        return None
    return f"{port!r} is not a TCP port: use 1 to 65535, or * for any free one"


def check_bind(endpoint: str, curve: "ServerKeys | None") -> None:
    problem = tcp_port_problem(endpoint)
    if problem is not None:
        raise SecurityError(problem)
    if curve is None and not is_local(endpoint):
        raise SecurityError(
            f"refusing to listen on {endpoint} without encryption: only loopback "
            "(tcp://127.0.0.1:PORT, tcp://[::1]:PORT) and ipc:// are allowed in the clear. "
            "Create keys with `palettenet keys DIR` and pass --curve-secret DIR/server.key_secret "
            "--curve-clients FOLDER (the client public keys to accept)"
        )


def create_keys(folder: Path, name: str) -> tuple[Path, Path]:
    """A new key pair: (public key file NAME.key, secret key file NAME.key_secret, 0600).

    The files are written in a private (0700) folder first and then moved into place, so
    the secret key is never readable by others, not even for a moment, whatever the umask."""
    if not folder.exists():
        folder.mkdir(parents=True)
        os.chmod(folder, 0o700)  # a folder others could write to would let them swap keys
    private = Path(tempfile.mkdtemp(prefix=".keys-", dir=folder))
    try:
        public, secret = (Path(p) for p in zmq.auth.create_certificates(str(private), name))
        os.chmod(secret, 0o600)
        os.chmod(public, 0o644)
        targets = folder / public.name, folder / secret.name
        os.replace(secret, targets[1])
        os.replace(public, targets[0])
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return targets


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
    workers: Path | None = None  # a broker's folder of accepted workers' NAME.key files

    def authenticator(self, context: zmq.Context) -> ThreadAuthenticator:
        """The thread that checks connecting peers' keys, for every CURVE server socket of
        `context`: against the clients folder on sockets applied with CLIENTS, against the
        workers folder on those applied with WORKERS. Stop it after closing them."""
        folders = {CLIENTS: (self.clients, "--curve-clients")}
        if self.workers is not None:
            folders[WORKERS] = (self.workers, "--curve-workers")
        for folder, option in folders.values():
            if not folder.is_dir() or not any(folder.glob("*.key")):
                raise SecurityError(f"{option} {folder}: no public .key files there")
        authenticator = ThreadAuthenticator(context)
        authenticator.start()
        for domain, (folder, _) in folders.items():
            authenticator.configure_curve(domain=domain, location=str(folder))
        return authenticator

    def check_workers(self) -> None:
        if self.workers is None:
            raise SecurityError(
                "a broker with CURVE needs --curve-workers FOLDER, the public keys of its "
                "daemons: without it a client key could connect as a worker and receive "
                "other users' requests"
            )

    def apply(self, socket: zmq.Socket, domain: str = CLIENTS) -> None:
        """Make `socket` a CURVE server with this key pair, accepting the keys of `domain`
        (CLIENTS or WORKERS) only."""
        if domain == WORKERS:
            self.check_workers()
        socket.curve_publickey, socket.curve_secretkey = _load(self.secret_file, secret=True)
        socket.curve_server = True
        socket.zap_domain = domain.encode()


@dataclass
class ClientKeys:
    server_key: Path  # the server's NAME.key (public)
    secret_file: Path  # this client's NAME.key_secret

    def apply(self, socket: zmq.Socket) -> None:
        socket.curve_serverkey, _ = _load(self.server_key, secret=False)
        socket.curve_publickey, socket.curve_secretkey = _load(self.secret_file, secret=True)


# --- resources ----------------------------------------------------------------------------
def raise_fd_limit() -> tuple[int, int]:
    """Raise this process's soft limit on open files towards its hard limit, as far as
    allowed: every connection costs a file descriptor, and at the common default of 1024 a
    flood of idle connections would leave none for real clients. Returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FD_LIMIT_WANTED if hard == resource.RLIM_INFINITY else min(hard, FD_LIMIT_WANTED)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):  # not allowed here (a container, a sandbox): keep it
            return soft, soft
        return soft, wanted
    return soft, soft


def server_socket(
    context: zmq.Context, kind: int, address: str, max_frame_bytes: int, linger_ms: int
) -> zmq.Socket:
    """A socket for untrusted peers, not yet bound: frames above max_frame_bytes close the
    connection (ZeroMQ checks each frame's announced size before storing it), at most
    RECEIVE_QUEUE whole messages wait per connection (then ZeroMQ stops reading from it),
    handshakes must finish within HANDSHAKE_MS, dead TCP peers are found by keepalive, and
    bursts of connections wait in a long accept queue rather than being dropped.

    ZeroMQ has no cap on connections per socket; what bounds them is the open-file limit
    (raise_fd_limit) and HANDSHAKE_MS, which frees the descriptor of any connection that does
    not complete a ZeroMQ handshake, so idle or garbage connections cost seconds, not more."""
    socket = context.socket(kind)
    socket.linger = linger_ms
    socket.ipv6 = "[" in address  # tcp://[::1]:PORT needs it
    socket.setsockopt(zmq.MAXMSGSIZE, max_frame_bytes)
    socket.rcvhwm = RECEIVE_QUEUE
    socket.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
    socket.setsockopt(zmq.BACKLOG, ACCEPT_BACKLOG)
    socket.setsockopt(zmq.TCP_KEEPALIVE, 1)
    socket.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 60)
    socket.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 10)
    socket.setsockopt(zmq.TCP_KEEPALIVE_CNT, 3)
    return socket


def bind(socket: zmq.Socket, address: str) -> str:
    """Bind and return the actual address. An ipc:// socket file is created 0600 (only this
    user may connect), whatever the process's umask."""
    if not address.startswith("ipc://") or address.startswith(("ipc://@", "ipc://*")):
        # tcp; a Linux abstract socket (no file); "*": ZeroMQ makes a private 0700 folder
        socket.bind(address)
        return socket.getsockopt_string(zmq.LAST_ENDPOINT)
    # bind() creates the file with the mode the umask leaves; the umask is process-wide, so
    # it is changed only for the instant of this call (bind runs in this thread).
    previous = os.umask(0o177)
    try:
        socket.bind(address)
    finally:
        os.umask(previous)
    path = address[len("ipc://") :]
    if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
        os.chmod(path, 0o600)  # a umask cannot add permissions, so this should not run
    return socket.getsockopt_string(zmq.LAST_ENDPOINT)


def receive_bounded(socket: zmq.Socket, max_frames: int, max_bytes: int) -> tuple[list, bool]:
    """One whole message without waiting (zmq.Again if none is there): (frames, cut).

    ZeroMQ limits each frame (MAXMSGSIZE) but not how many frames a message has, and hands
    a message over only once all of it has arrived. Here the frames are taken one at a
    time: once a message has more than max_frames frames or max_bytes in all, the rest are
    received and dropped at once (cut is then True), so no list of thousands of frames is
    built and each dropped frame's memory is given back as soon as it is received."""
    frames, total, cut = [], 0, False
    frame = socket.recv(zmq.NOBLOCK, copy=False)
    while True:
        total += len(frame)
        if len(frames) < max_frames and total <= max_bytes:
            frames.append(frame)
        else:
            cut = True
        if not frame.more:
            return frames, cut
        frame = socket.recv(copy=False)  # the parts of a message arrive together
