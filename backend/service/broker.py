"""The broker: one address for many daemons (ZeroMQ's load-balancing pattern).

    clients (REQ/DEALER) --> frontend ROUTER [broker] backend ROUTER <-- daemons (`serve --connect`)

Each daemon connects a DEALER to the backend and says READY with its capacity (how many
jobs it may hold at once), then again every heartbeat. The broker checks each request with
the same code as a daemon (bad ones are answered here), queues work fairly per client, and
hands it to the worker with the most free capacity. ping and info skip the queue: any live
worker answers them at once.

A worker that says BYE gets no new work; one that misses heartbeats for worker_timeout
seconds is taken for dead. Its unfinished jobs are queued again, first in line, once; a job
whose second worker dies too, or that finds the queue full, is answered `busy`. A request
that waits longer than queue_timeout (no worker connected, or all saturated) is answered
`busy`. Every request is answered exactly once: each is in one place at a time (the queue,
or in_flight with one worker), and leaves it only by being answered or moved.

Nothing a client or worker sends can stop the broker: messages are received within limits
(backend.service.security.receive_bounded), parsed defensively, and each is handled inside a
catch-all. With CURVE, clients and workers are checked against separate key folders, so a
client key cannot be used to pose as a worker.
"""

import itertools
import struct
import sys
import time
import traceback
from dataclasses import dataclass, field

import zmq

from backend.service.fairqueue import FairQueue
from backend.service.protocol import (
    BYE,
    DEFAULT_MAX_PIXELS,
    MAX_REQUEST_FRAMES,
    READY,
    ProtocolError,
    Reply,
    cut_short_reply,
    error_reply,
    max_message_bytes,
    max_request_bytes,
    parse_request,
)
from backend.service.security import (
    CLIENTS,
    WORKERS,
    ServerKeys,
    bind,
    check_bind,
    receive_bounded,
    server_socket,
)
from backend.wire import DEFAULT_ADDRESS

POLL_MS = 100  # how often the loop looks at the stop flag and the clocks when idle
TICKET = struct.Struct(">Q")  # the broker's name for a job, echoed by the worker
MAX_CAPACITY = 1024  # jobs one worker may claim to hold at once (its READY says how many)


@dataclass
class BrokerSettings:
    frontend: str = DEFAULT_ADDRESS
    backend: str = "tcp://127.0.0.1:5556"
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_queue: int = 256
    max_per_client: int = 16
    worker_timeout_s: float = 5.0
    queue_timeout_s: float = 120.0
    retries: int = 1  # times a job is given to another worker after its worker died
    server_keys: ServerKeys | None = None  # CURVE on both sockets (with a workers folder)
    linger_ms: int = 5000


@dataclass
class Work:
    ticket: int
    route: list  # the client's envelope frames
    body: list  # the request's frames, kept until answered, for a retry
    request_id: str | None
    received: float
    tries: int = 0


@dataclass
class Worker:
    identity: bytes
    capacity: int
    last_seen: float
    leaving: bool = False
    jobs: set = field(default_factory=set)  # tickets it holds
    last_sent: float = 0.0  # when it was last given a job: the longest idle goes first

    @property
    def free(self) -> int:
        return 0 if self.leaving else self.capacity - len(self.jobs)


class Broker:
    def __init__(self, settings: BrokerSettings):
        self.settings = settings
        self.context = zmq.Context()
        self.queue = FairQueue(settings.max_queue, settings.max_per_client)
        self.workers: dict[bytes, Worker] = {}
        self.in_flight: dict[int, tuple[Work, bytes]] = {}  # ticket -> (work, worker identity)
        self._tickets = itertools.count(1)
        self._stop = False
        self._authenticator = None

    def start(self) -> tuple[str, str]:
        """Bind both sockets; returns their actual addresses (frontend, backend)."""
        for address in (self.settings.frontend, self.settings.backend):
            check_bind(address, self.settings.server_keys)
        keys = self.settings.server_keys
        if keys is not None:
            keys.check_workers()  # before anything is started: a broker needs both folders
            self._authenticator = keys.authenticator(self.context)
        self.frontend, frontend = self._bind(self.settings.frontend, CLIENTS)
        self.backend, backend = self._bind(self.settings.backend, WORKERS)
        return frontend, backend

    def _bind(self, address: str, peers: str) -> tuple[zmq.Socket, str]:
        """A ROUTER for `peers` (CLIENTS or WORKERS: with CURVE, whose keys it accepts)."""
        settings = self.settings
        frame_limit = max_message_bytes(settings.max_pixels)
        socket = server_socket(self.context, zmq.ROUTER, address, frame_limit, settings.linger_ms)
        if settings.server_keys is not None:
            settings.server_keys.apply(socket, peers)
        return socket, bind(socket, address)

    def stop(self) -> None:
        self._stop = True

    def serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.frontend, zmq.POLLIN)
        poller.register(self.backend, zmq.POLLIN)
        try:
            while not self._stop:
                events = dict(poller.poll(POLL_MS))
                if self.backend in events:
                    self._from_workers()
                if self.frontend in events:
                    self._from_clients()
                self._bury_dead_workers()
                self._expire_waiting()
                self._dispatch()
        finally:
            for work in self.queue.drain() + [work for work, _ in self.in_flight.values()]:
                self._refuse(work, "the broker is stopping")
            self.frontend.close()
            self.backend.close()
            if self._authenticator is not None:
                self._authenticator.stop()
            self.context.term()

    # --- clients --------------------------------------------------------------------------
    def _from_clients(self) -> None:
        # Route frames (identity, REQ's empty delimiter) come first.
        max_frames = 2 + MAX_REQUEST_FRAMES
        max_bytes = max_request_bytes(self.settings.max_pixels)
        for _ in range(64):
            try:
                frames, cut = receive_bounded(self.frontend, max_frames, max_bytes)
            except zmq.Again:
                return
            delimited = len(frames) > 1 and len(frames[1]) == 0  # REQ's empty frame
            route, body = frames[: 1 + delimited], frames[1 + delimited :]
            work = None
            try:
                if cut:
                    self._answer(route, cut_short_reply(body, max_bytes))
                    continue
                try:
                    request = parse_request(body, self.settings.max_pixels)
                except ProtocolError as error:
                    self._answer(route, error.reply())
                    continue
                work = Work(next(self._tickets), route, body, request.id, time.monotonic())
                if request.op in ("ping", "info"):
                    self._send_now(work)
                else:
                    refusal = self.queue.put(route[0].bytes, work)
                    if refusal is not None:
                        self._refuse(work, f"{refusal}; retry later")
            except Exception as error:  # a bug must cost one reply, not the broker
                traceback.print_exc(file=sys.stderr)
                held = work is not None and (work.ticket in self.in_flight or work in self.queue)
                if not held:  # answered once: here, unless it is waiting or with a worker
                    message = f"{type(error).__name__}: {error}"
                    self._answer(route, error_reply(None, "internal", message))

    def _answer(self, route: list, reply: Reply) -> None:
        self._forward(route, reply.encode())

    def _forward(self, route: list, frames: list) -> None:
        """Send to a client; ROUTER never waits and drops what it cannot route (a client
        that has gone). A failure is reported, never raised: it must not stop the broker."""
        try:
            self.frontend.send_multipart(route + frames, copy=False)
        except zmq.ZMQError as error:
            print(f"broker: a reply could not be sent: {error}", file=sys.stderr)

    def _refuse(self, work: Work, message: str) -> None:
        self._answer(work.route, error_reply(work.request_id, "busy", message))

    def _next_worker(self) -> Worker | None:
        """The live worker with the most free capacity; of equals, the longest idle."""
        live = [w for w in self.workers.values() if not w.leaving]
        return max(live, key=lambda w: (w.free, -w.last_sent), default=None)

    def _send_now(self, work: Work) -> None:
        """ping/info: to a live worker at once, even a fully loaded one (it answers them
        without queueing)."""
        worker = self._next_worker()
        if worker is None:
            self._refuse(work, "no worker is connected to this broker")
        else:
            self._send(work, worker)

    def _send(self, work: Work, worker: Worker) -> None:
        worker.jobs.add(work.ticket)
        worker.last_sent = time.monotonic()
        self.in_flight[work.ticket] = (work, worker.identity)
        work.tries += 1
        ticket = TICKET.pack(work.ticket)
        self.backend.send_multipart([worker.identity, ticket, *work.body], copy=False)

    def _dispatch(self) -> None:
        while len(self.queue):
            worker = self._next_worker()
            if worker is None or worker.free <= 0:
                return
            (work,) = self.queue.take(0)
            self._send(work, worker)

    def _expire_waiting(self) -> None:
        deadline = time.monotonic() - self.settings.queue_timeout_s
        for work in self.queue.remove_if(lambda w: w.received < deadline):
            waited = self.settings.queue_timeout_s
            self._refuse(work, f"no worker was free for {waited:g} s; retry later")

    # --- workers --------------------------------------------------------------------------
    def _from_workers(self) -> None:
        # [identity, ticket, reply header, pixels] or [identity, "", READY, capacity]
        max_frames = 2 + MAX_REQUEST_FRAMES
        max_bytes = max_request_bytes(self.settings.max_pixels)
        for _ in range(64):
            try:
                frames, cut = receive_bounded(self.backend, max_frames, max_bytes)
            except zmq.Again:
                return
            try:
                self._from_worker(frames, cut)
            except Exception:  # a bug, or a worker sending nonsense: not the broker's end
                traceback.print_exc(file=sys.stderr)

    def _from_worker(self, frames: list, cut: bool) -> None:
        if cut or len(frames) < 2:  # not from a daemon of ours
            return
        identity, first, *rest = frames
        identity = identity.bytes
        if len(first) == 0:
            self._control(identity, [frame.bytes for frame in rest])
            return
        worker = self.workers.get(identity)
        if worker is not None:
            worker.last_seen = time.monotonic()
        ticket = TICKET.unpack(first.bytes)[0] if len(first) == TICKET.size else None
        if ticket not in self.in_flight or self.in_flight[ticket][1] != identity:
            return  # a reply for a job already given to another worker
        work, _ = self.in_flight.pop(ticket)
        if worker is not None:
            worker.jobs.discard(ticket)
        if not rest:
            message = "the worker sent an empty reply"
            self._answer(work.route, error_reply(work.request_id, "internal", message))
        else:
            self._forward(work.route, rest)

    def _control(self, identity: bytes, message: list) -> None:
        verb = message[0] if message else b""
        if verb == READY:
            text = message[1] if len(message) > 1 else b""
            # a capacity of at most 4 digits: int() of a 64 KiB digit string would raise
            capacity = int(text) if text.isdigit() and len(text) <= 4 else 1
            capacity = min(max(1, capacity), MAX_CAPACITY)
            worker = self.workers.get(identity)
            if worker is None:
                self.workers[identity] = Worker(identity, capacity, time.monotonic())
            else:
                worker.capacity, worker.last_seen = capacity, time.monotonic()
        elif verb == BYE and identity in self.workers:
            self.workers[identity].leaving = True

    def _bury_dead_workers(self) -> None:
        now = time.monotonic()
        for identity, worker in list(self.workers.items()):
            if now - worker.last_seen <= self.settings.worker_timeout_s:
                continue
            del self.workers[identity]
            for ticket in worker.jobs:
                work, _ = self.in_flight.pop(ticket)
                if work.tries > self.settings.retries:
                    self._refuse(work, "the worker handling this request stopped; retry")
                    continue
                # First in line again; if even that is refused (the queue is full), this
                # client is told now rather than never.
                refusal = self.queue.put(work.route[0].bytes, work, front=True)
                if refusal is not None:
                    message = f"the worker handling this request stopped and {refusal}; retry"
                    self._refuse(work, message)
