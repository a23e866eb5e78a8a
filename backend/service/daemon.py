"""The backend daemon: palettenet/1 (docs/PROTOCOL.md) over ZeroMQ.

Threads and sockets (a ZeroMQ socket belongs to one thread):

    main thread      the front socket: a ROUTER bound for clients or, as one of a broker's
                     workers, a DEALER connected to the broker. It answers ping, info and
                     every malformed or oversized request at once, and queues real work
                     per client (backend.service.fairqueue). A PULL socket brings finished replies
                     back from the workers; the main thread sends each to its client.
    worker threads   take jobs from the queue, run the Engine, PUSH each reply back.

So a long recolour never delays a ping, and one client's backlog never starves another.
No message can stop the main thread: each is received within limits (frames, bytes: see
security.receive_bounded), parsed defensively (protocol), and anything that
still goes wrong answers that one request `internal` and goes on.
Stopping (stop(), or SIGINT/SIGTERM through the CLI): new requests and the jobs still waiting
are answered `busy`, the jobs being computed are finished and delivered, then the sockets
close and serve() returns.
"""

import itertools
import os
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from socket import gethostname

import zmq

from backend.service.engine import Engine
from backend.service.fairqueue import FairQueue
from backend.service.protocol import (
    BYE,
    DEFAULT_MAX_PIXELS,
    MAX_REQUEST_FRAMES,
    READY,
    ProtocolError,
    Reply,
    Request,
    cut_short_reply,
    error_reply,
    max_message_bytes,
    max_request_bytes,
    ok_reply,
    parse_request,
)
from backend.service.security import (
    ClientKeys,
    ServerKeys,
    bind,
    check_bind,
    is_local,
    receive_bounded,
    server_socket,
)
from backend.service.shared_memory import MappedSegments
from backend.wire import DEFAULT_ADDRESS

POLL_MS = 100  # how often the loops look at the stop flag when there is nothing to do
PURGE_S = 1.0  # how often the mappings of clients' shared memory files are looked over
SEND_TIMEOUT_MS = 1000  # towards a broker (DEALER): a send waits at most this, then drops
TICKET = struct.Struct(">Q")  # identifies a job between the main thread and the workers


@dataclass
class Settings:
    bind: str = DEFAULT_ADDRESS
    connect: str | None = None  # a broker's backend address: serve as one of its workers
    max_pixels: int = DEFAULT_MAX_PIXELS
    workers: int = 1  # threads running the engine
    max_batch: int = 1  # palettenet requests per network call (more only helps on a GPU)
    max_queue: int = 64  # requests waiting, all clients together
    max_per_client: int = 16
    server_keys: ServerKeys | None = None  # CURVE, required to bind beyond loopback
    client_keys: ClientKeys | None = None  # CURVE towards the broker, with connect
    heartbeat_s: float = 1.0  # how often a broker's worker says it is alive
    linger_ms: int = 5000  # how long replies may still flush after closing


@dataclass
class Job:
    ticket: int
    request: Request
    received: float  # time.perf_counter() when it arrived


def _milliseconds(seconds: float) -> float:
    return round(seconds * 1000, 1)


class Daemon:
    def __init__(self, engine: Engine, settings: Settings):
        self.engine = engine
        self.settings = settings
        self.context = zmq.Context()
        self.queue = FairQueue(settings.max_queue, settings.max_per_client)
        self.pending: dict[int, list] = {}  # ticket -> route frames of the waiting client
        self.endpoint = None
        self._tickets = itertools.count(1)
        self._stop = threading.Event()
        self._workers_exit = threading.Event()
        self._workers: list[threading.Thread] = []
        self._authenticator = None
        self.segments: MappedSegments | None = None  # clients' files: only if local
        self.no_segments = "the daemon has not started"  # why segments is None

    # --- life cycle -----------------------------------------------------------------------
    def start(self) -> str:
        """Open the sockets and start the workers; returns the address clients use."""
        settings = self.settings
        if settings.connect is not None:
            self.front = self._socket(zmq.DEALER, settings.connect)
            # A DEALER's send waits while the broker is unreachable; never for long.
            self.front.sndtimeo = SEND_TIMEOUT_MS
            if settings.client_keys is not None:
                settings.client_keys.apply(self.front)
            self.front.connect(settings.connect)
            self.endpoint = settings.connect
        else:
            check_bind(settings.bind, settings.server_keys)
            self.front = self._socket(zmq.ROUTER, settings.bind)
            if settings.server_keys is not None:
                settings.server_keys.apply(self.front)
                self._authenticator = settings.server_keys.authenticator(self.context)
            self.endpoint = bind(self.front, settings.bind)
        self._open_segments()
        self.results = self.context.socket(zmq.PULL)
        self.results.linger = 0
        self._results_address = f"inproc://results-{id(self)}"
        self.results.bind(self._results_address)
        for index in range(settings.workers):
            thread = threading.Thread(target=self._work, name=f"worker-{index}", daemon=True)
            thread.start()
            self._workers.append(thread)
        return self.endpoint

    def _open_segments(self) -> None:
        """Take pixels through clients' shared memory files where only clients on this
        machine can reach the daemon: a remote client cannot name files here, and a broker's
        worker may be on another machine than the client."""
        if self.settings.connect is not None:
            self.no_segments = "this daemon is a broker's worker"
        elif not is_local(self.endpoint):
            self.no_segments = f"this daemon listens on {self.endpoint}, open to other machines"
        else:
            try:
                self.segments = MappedSegments()
            except OSError as error:
                self.no_segments = f"this machine's shared memory folder cannot be used: {error}"

    def _socket(self, kind, address: str) -> zmq.Socket:
        settings = self.settings
        frame_limit = max_message_bytes(settings.max_pixels)
        return server_socket(self.context, kind, address, frame_limit, settings.linger_ms)

    def stop(self) -> None:
        """Ask serve() to finish; safe from a signal handler or another thread."""
        self._stop.set()

    def serve(self) -> None:
        """Answer requests until stop(), then drain as described above and close."""
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        poller.register(self.results, zmq.POLLIN)
        stopping, next_heartbeat, next_purge = False, 0.0, 0.0
        try:
            while True:
                if self._stop.is_set() and not stopping:
                    stopping = True
                    self._refuse_waiting()
                    if self.settings.connect is not None:
                        self._send([b""], [BYE])
                if stopping and not self.pending:
                    break
                if self.settings.connect is not None and not stopping:
                    if time.monotonic() >= next_heartbeat:
                        self._announce()
                        next_heartbeat = time.monotonic() + self.settings.heartbeat_s
                if self.segments is not None and time.monotonic() >= next_purge:
                    self.segments.purge()
                    next_purge = time.monotonic() + PURGE_S
                events = dict(poller.poll(POLL_MS))
                if self.results in events:
                    self._deliver()
                if self.front in events:
                    self._receive(stopping)
        finally:
            self._close()

    def _close(self) -> None:
        self._workers_exit.set()
        for thread in self._workers:
            thread.join()
        self.results.close()
        self.front.close()  # lingers until the last replies are sent (settings.linger_ms)
        if self._authenticator is not None:
            self._authenticator.stop()
        if self.segments is not None:
            self.segments.close()
        self.context.term()

    # --- the main thread ------------------------------------------------------------------
    def info(self) -> dict:
        settings = self.settings
        limits = {
            "max_pixels": settings.max_pixels,
            "max_message_bytes": max_message_bytes(settings.max_pixels),
            "max_queue": settings.max_queue,
            "max_per_client": settings.max_per_client,
            "max_batch": settings.max_batch,
        }
        return {
            **self.engine.info(),
            "limits": limits,
            "host": gethostname(),
            "pid": os.getpid(),
            "workers": settings.workers,
            "waiting": len(self.queue),
            "running": len(self.pending) - len(self.queue),
            "shared_memory": self.segments is not None,
        }

    def _announce(self) -> None:
        """Tell the broker this worker is alive and how many jobs it may be sent at once."""
        capacity = self.settings.workers * self.settings.max_batch + 1
        self._send([b""], [READY, str(capacity).encode()])

    def _split(self, frames: list) -> tuple[list, list]:
        """A received message -> (route, body): the frames that address the reply, and the
        request itself."""
        if self.settings.connect is not None:  # from the broker: [ticket, *request]
            return frames[:1], frames[1:]
        # ROUTER: [client identity, empty delimiter (REQ clients only), *request]
        if len(frames) > 1 and len(frames[1]) == 0:
            return frames[:2], frames[2:]
        return frames[:1], frames[1:]

    def _send(self, route: list, frames: list) -> None:
        """Send to a client (ROUTER: never waits; a client that has gone is dropped by
        ZeroMQ) or to the broker (DEALER: waits at most SEND_TIMEOUT_MS). A failed send is
        reported and dropped: it must not stop the daemon."""
        try:
            self.front.send_multipart(route + frames, copy=False)
        except zmq.ZMQError as error:
            print(f"daemon: a reply could not be sent: {error}", file=sys.stderr)

    def _reply(self, route: list, reply: Reply) -> None:
        self._send(route, reply.encode())

    def _receive(self, stopping: bool) -> None:
        # Route frames (identity, REQ's empty delimiter; or the broker's ticket) come first.
        max_frames = 2 + MAX_REQUEST_FRAMES
        max_bytes = max_request_bytes(self.settings.max_pixels)
        for _ in range(64):  # a burst at a time, then the workers' replies get their turn
            try:
                frames, cut = receive_bounded(self.front, max_frames, max_bytes)
            except zmq.Again:
                return
            route, body = self._split(frames)
            try:
                if cut:
                    self._reply(route, cut_short_reply(body, max_bytes))
                else:
                    self._answer(route, body, stopping)
            except Exception as error:  # a bug must cost one reply, not the daemon
                traceback.print_exc(file=sys.stderr)
                # No second look at the request here: whatever failed might fail again.
                message = f"{type(error).__name__}: {error}"
                self._reply(route, error_reply(None, "internal", message))

    def _answer(self, route: list, body: list, stopping: bool) -> None:
        try:
            request = parse_request(body, self.settings.max_pixels)
            if request.shared_memory is not None and not stopping:
                self._attach(request)
        except ProtocolError as error:
            self._reply(route, error.reply())
            return
        if request.op in ("ping", "info"):
            self._reply(route, ok_reply(request.id, **self.info()))
        elif stopping:
            self._reply(route, error_reply(request.id, "busy", "the daemon is stopping"))
        else:
            self._queue(route, request)

    def _attach(self, request: Request) -> None:
        """Map the files a request names (shared_memory.py checks each); ProtocolError with
        field shared_memory (the client sends frames instead) if this daemon takes none or
        refuses one. Opening and mapping touch no pixel: cheap enough for this thread."""
        try:
            if self.segments is None:
                message = f"shared memory: {self.no_segments}; send the pixels as frames"
                raise ProtocolError("bad_request", message, field="shared_memory")
            self.segments.attach(request, request.segment_sizes())
        except ProtocolError as error:
            error.request_id = request.id
            raise

    def _queue(self, route: list, request: Request) -> None:
        ticket = next(self._tickets)
        self.pending[ticket] = route
        refusal = self.queue.put(route[0].bytes, Job(ticket, request, time.perf_counter()))
        if refusal is not None:
            del self.pending[ticket]
            self._reply(route, error_reply(request.id, "busy", f"{refusal}; retry later"))

    def _refuse_waiting(self) -> None:
        for job in self.queue.drain():
            message = "the daemon is stopping; this request was not started"
            self._reply(self.pending.pop(job.ticket), error_reply(job.request.id, "busy", message))

    def _deliver(self) -> None:
        while True:
            try:
                ticket, *reply = self.results.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            route = self.pending.pop(TICKET.unpack(ticket.bytes)[0])
            # A client that has gone is not an error: ROUTER drops what it cannot route.
            self._send(route, reply)

    # --- worker threads -------------------------------------------------------------------
    def _work(self) -> None:
        results = self.context.socket(zmq.PUSH)
        results.linger = 0  # inproc: delivered at once, nothing to wait for at close
        results.connect(self._results_address)
        key = None
        if self.settings.max_batch > 1:

            def key(job):
                return self.engine.batch_key(job.request)

        try:
            while not (self._workers_exit.is_set() and len(self.queue) == 0):
                jobs = self.queue.take(POLL_MS / 1000, self.settings.max_batch, key)
                if jobs:
                    self._answer_jobs(jobs, results)
        finally:
            results.close()

    def _answer_jobs(self, jobs: list[Job], results: zmq.Socket) -> None:
        """Run jobs and push their replies to the main thread. A function of its own so that
        nothing of them outlives it (a client's shared memory mapping is let go of once its
        last request is answered)."""
        started = time.perf_counter()
        for job, reply in zip(jobs, self._run(jobs)):
            if "timing_ms" in reply.header:
                reply.header["timing_ms"]["queue"] = _milliseconds(started - job.received)
            results.send_multipart([TICKET.pack(job.ticket), *reply.encode()], copy=False)
        jobs.clear()

    def _run(self, jobs: list[Job]) -> list[Reply]:
        try:
            return self.engine.run([job.request for job in jobs])
        except Exception as error:  # the engine answers per request; this is a last resort
            print(f"worker: {type(error).__name__}: {error}", file=sys.stderr)
            message = f"{type(error).__name__}: {error}"
            return [error_reply(job.request.id, "internal", message) for job in jobs]
