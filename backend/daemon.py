"""The backend daemon: palettenet/1 (docs/PROTOCOL.md) over ZeroMQ.

Threads and sockets (a ZeroMQ socket belongs to one thread):

    main thread      the front socket: a ROUTER bound for clients or, as one of a broker's
                     workers, a DEALER connected to the broker. It answers ping, info and
                     every malformed or oversized request at once, and queues real work
                     per client (backend.fairqueue). A PULL socket brings finished replies
                     back from the workers; the main thread sends each to its client.
    worker threads   take jobs from the queue, run the Engine, PUSH each reply back.

So a long recolour never delays a ping, and one client's backlog never starves another.
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

from backend.engine import Engine
from backend.fairqueue import FairQueue
from backend.protocol import (
    BYE,
    DEFAULT_MAX_PIXELS,
    READY,
    ProtocolError,
    Reply,
    Request,
    error_reply,
    max_message_bytes,
    ok_reply,
    parse_request,
    request_id,
)
from backend.security import ClientKeys, ServerKeys, check_bind

POLL_MS = 100  # how often the loops look at the stop flag when there is nothing to do
TICKET = struct.Struct(">Q")  # identifies a job between the main thread and the workers


@dataclass
class Settings:
    bind: str = "tcp://127.0.0.1:5555"
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

    # --- life cycle -----------------------------------------------------------------------
    def start(self) -> str:
        """Open the sockets and start the workers; returns the address clients use."""
        settings = self.settings
        if settings.connect is not None:
            self.front = self._socket(zmq.DEALER, settings.connect)
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
            self.front.bind(settings.bind)
            self.endpoint = self.front.getsockopt_string(zmq.LAST_ENDPOINT)
        self.results = self.context.socket(zmq.PULL)
        self.results.linger = 0
        self._results_address = f"inproc://results-{id(self)}"
        self.results.bind(self._results_address)
        for index in range(settings.workers):
            thread = threading.Thread(target=self._work, name=f"worker-{index}", daemon=True)
            thread.start()
            self._workers.append(thread)
        return self.endpoint

    def _socket(self, kind, address: str) -> zmq.Socket:
        socket = self.context.socket(kind)
        socket.linger = self.settings.linger_ms
        socket.setsockopt(zmq.MAXMSGSIZE, max_message_bytes(self.settings.max_pixels))
        socket.ipv6 = "[" in address  # tcp://[::1]:PORT needs it
        return socket

    def stop(self) -> None:
        """Ask serve() to finish; safe from a signal handler or another thread."""
        self._stop.set()

    def serve(self) -> None:
        """Answer requests until stop(), then drain as described above and close."""
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        poller.register(self.results, zmq.POLLIN)
        stopping, next_heartbeat = False, 0.0
        try:
            while True:
                if self._stop.is_set() and not stopping:
                    stopping = True
                    self._refuse_waiting()
                    if self.settings.connect is not None:
                        self.front.send_multipart([b"", BYE])
                if stopping and not self.pending:
                    break
                if self.settings.connect is not None and not stopping:
                    if time.monotonic() >= next_heartbeat:
                        self._announce()
                        next_heartbeat = time.monotonic() + self.settings.heartbeat_s
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
        }

    def _announce(self) -> None:
        """Tell the broker this worker is alive and how many jobs it may be sent at once."""
        capacity = self.settings.workers * self.settings.max_batch + 1
        self.front.send_multipart([b"", READY, str(capacity).encode()])

    def _split(self, frames: list) -> tuple[list, list]:
        """A received message -> (route, body): the frames that address the reply, and the
        request itself."""
        if self.settings.connect is not None:  # from the broker: [ticket, *request]
            return frames[:1], frames[1:]
        # ROUTER: [client identity, empty delimiter (REQ clients only), *request]
        if len(frames) > 1 and len(frames[1]) == 0:
            return frames[:2], frames[2:]
        return frames[:1], frames[1:]

    def _send(self, route: list, reply: Reply) -> None:
        self.front.send_multipart(route + reply.encode(), copy=False)

    def _receive(self, stopping: bool) -> None:
        for _ in range(64):  # a burst at a time, then the workers' replies get their turn
            try:
                frames = self.front.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            route, body = self._split(frames)
            try:
                self._answer(route, body, stopping)
            except Exception as error:  # a bug must cost one reply, not the daemon
                traceback.print_exc(file=sys.stderr)
                message = f"{type(error).__name__}: {error}"
                self._send(route, error_reply(request_id(body), "internal", message))

    def _answer(self, route: list, body: list, stopping: bool) -> None:
        try:
            request = parse_request(body, self.settings.max_pixels)
        except ProtocolError as error:
            self._send(route, error_reply(request_id(body), error.code, error.message))
            return
        if request.op in ("ping", "info"):
            self._send(route, ok_reply(request.id, **self.info()))
        elif stopping:
            self._send(route, error_reply(request.id, "busy", "the daemon is stopping"))
        else:
            self._queue(route, request)

    def _queue(self, route: list, request: Request) -> None:
        ticket = next(self._tickets)
        self.pending[ticket] = route
        refusal = self.queue.put(route[0].bytes, Job(ticket, request, time.perf_counter()))
        if refusal is not None:
            del self.pending[ticket]
            self._send(route, error_reply(request.id, "busy", f"{refusal}; retry later"))

    def _refuse_waiting(self) -> None:
        for job in self.queue.drain():
            message = "the daemon is stopping; this request was not started"
            self._send(self.pending.pop(job.ticket), error_reply(job.request.id, "busy", message))

    def _deliver(self) -> None:
        while True:
            try:
                ticket, *reply = self.results.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            route = self.pending.pop(TICKET.unpack(ticket.bytes)[0])
            # A client that has gone is not an error: ROUTER drops what it cannot route.
            self.front.send_multipart(route + reply, copy=False)

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
                if not jobs:
                    continue
                started = time.perf_counter()
                for job, reply in zip(jobs, self._run(jobs)):
                    if "timing_ms" in reply.header:
                        reply.header["timing_ms"]["queue"] = _milliseconds(started - job.received)
                    results.send_multipart([TICKET.pack(job.ticket), *reply.encode()], copy=False)
        finally:
            results.close()

    def _run(self, jobs: list[Job]) -> list[Reply]:
        try:
            return self.engine.run([job.request for job in jobs])
        except Exception as error:  # the engine answers per request; this is a last resort
            print(f"worker: {type(error).__name__}: {error}", file=sys.stderr)
            message = f"{type(error).__name__}: {error}"
            return [error_reply(job.request.id, "internal", message) for job in jobs]
