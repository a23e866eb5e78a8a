"""A bounded job queue that serves clients in turn.

One artist sending twenty 24-megapixel layers must not make another wait for all twenty: each
client has its own first-in-first-out line, and jobs are taken from the lines round-robin.
Thread-safe; the daemon's worker threads block in take(), the broker polls it.
"""

import threading
import time
from collections import OrderedDict, deque


class FairQueue:
    def __init__(self, max_jobs: int, max_per_client: int):
        self.max_jobs = max_jobs
        self.max_per_client = max_per_client
        self._lines: OrderedDict[bytes, deque] = OrderedDict()  # next client to serve first
        self._count = 0
        self._changed = threading.Condition()

    def __len__(self) -> int:
        return self._count

    def __contains__(self, job) -> bool:
        """Whether this very job (the object, not an equal one) is waiting."""
        with self._changed:
            return any(waiting is job for line in self._lines.values() for waiting in line)

    def put(self, client: bytes, job, front: bool = False) -> str | None:
        """Queue a job; None when queued, else why not (the queue or the client's line is
        full). `front` puts it first in its client's line, and that line first in turn: for
        a job that was already waiting once (a retry after a worker died); it may exceed the
        client's share but never the queue's size, so the caller must answer a refusal."""
        with self._changed:
            line = self._lines.get(client)
            if self._count >= self.max_jobs:
                return f"the queue is full ({self._count} requests waiting)"
            if line is not None and len(line) >= self.max_per_client and not front:
                return f"this client already has {len(line)} requests waiting"
            if line is None:
                line = self._lines[client] = deque()
            if front:
                line.appendleft(job)
                self._lines.move_to_end(client, last=False)
            else:
                line.append(job)
            self._count += 1
            self._changed.notify()
            return None

    def take(self, timeout: float, max_batch: int = 1, key=None) -> list:
        """Up to max_batch jobs, the first from the client whose turn it is; the others, from
        the following clients' lines in turn, only if key(job) equals the first's and is not
        None. Waits up to `timeout` seconds for a job; [] if none came."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._count == 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._changed.wait(left)
            jobs = [self._pop(next(iter(self._lines)))]
            wanted = key(jobs[0]) if key is not None else None
            if wanted is None:
                return jobs
            for client in list(self._lines):
                if len(jobs) >= max_batch:
                    break
                if key(self._lines[client][0]) == wanted:
                    jobs.append(self._pop(client))
            return jobs

    def _pop(self, client: bytes):
        """The first job of a client's line; the client goes to the back of the turn."""
        line = self._lines.pop(client)
        job = line.popleft()
        if line:
            self._lines[client] = line
        self._count -= 1
        return job

    def drain(self) -> list:
        """Every waiting job, oldest turn first; the queue is left empty."""
        with self._changed:
            jobs = [job for line in self._lines.values() for job in line]
            self._lines.clear()
            self._count = 0
            return jobs

    def remove_if(self, predicate) -> list:
        """Take out and return the waiting jobs for which predicate(job) is true."""
        with self._changed:
            removed = []
            for client in list(self._lines):
                line = self._lines[client]
                kept = deque(job for job in line if not predicate(job))
                removed += [job for job in line if predicate(job)]
                if kept:
                    self._lines[client] = kept
                else:
                    del self._lines[client]
            self._count -= len(removed)
            return removed
