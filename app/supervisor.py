"""With several workers (GENSERVE_WORKERS > 1): uvicorn's process supervisor, with a worker that
dies or hangs replaced within seconds, while a worker that is still starting keeps the long
GENSERVE_WORKER_START_TIMEOUT_S to load its models.

uvicorn's own supervisor (0.55, `Multiprocess.keep_subprocess_alive`) checks the workers one after
another every 0.5 s, each by a ping on its pipe that waits up to `timeout_worker_healthcheck` for
the answer: one timeout for a worker starting and a worker serving alike, so it must be the long
start-up one (120 s). A worker killed while its ping is in flight is never seen to close the pipe
(the supervisor holds the worker's end too), so the wait runs its full 120 s, and meanwhile no other
worker is checked either. This supervisor never waits on a worker: each round it sees at once a
worker that has exited (its exit status), reads the answers that have come, and sends a new ping
where none is outstanding. A worker is hung when it has not finished starting within the start-up
timeout, or, once serving, has left a ping unanswered for PING_TIMEOUT_S.

Built on uvicorn's private `Multiprocess` and `Process`: tests/test_protocol_contract.py checks the
parts of them relied on here.
"""

from __future__ import annotations

import logging
import pickle
import time
from dataclasses import dataclass
from socket import socket

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

logger = logging.getLogger("uvicorn.error")

# Longest a serving worker may leave a ping unanswered: its answering thread needs only the GIL for
# a moment, but a C call that holds the GIL for seconds (a large model loaded during a reload) must
# not pass for a hang: twice uvicorn's own default health-check timeout.
PING_TIMEOUT_S = 10.0


@dataclass
class WorkerHealth:
    seen_at: float  # when the supervisor first saw the worker (just after starting it)
    serving: bool = False  # it has answered a ping with its server started
    ping_sent_at: float | None = None  # the ping it has not answered yet


class Supervisor(Multiprocess):
    """uvicorn's `Multiprocess` (start, SIGHUP rolling restart, SIGTERM, SIGTTIN/SIGTTOU) with a
    health check that never blocks the supervisor."""

    def __init__(self, config: Config, sockets: list[socket]) -> None:
        super().__init__(config, sockets)
        self.health: dict[Process, WorkerHealth] = {}

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        now = time.monotonic()
        # uvicorn's rolling restart (SIGHUP) and SIGTTIN/SIGTTOU change the list: follow it
        self.health = {process: self.health.get(process) or WorkerHealth(now) for process in self.processes}
        for idx, process in enumerate(self.processes):
            problem = worker_problem(process, self.health[process], now, self.config.timeout_worker_healthcheck)
            if problem is None:
                continue
            logger.warning(f"Child process [{process.pid}] {problem}: replacing it")
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                # as uvicorn: the app, TLS or socket is broken, and a new worker would fail alike
                logger.error(f"Child process [{process.pid}] failed to start, stopping the parent process.")
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            replacement = Process(self.config, self.sockets)
            replacement.start()
            self.processes[idx] = replacement
            self.health[replacement] = WorkerHealth(time.monotonic())


def worker_problem(process: Process, health: WorkerHealth, now: float, start_timeout_s: float) -> str | None:
    """What is wrong with a worker (None: nothing), found without waiting for it; `health` is
    updated. A worker answers each ping on its pipe with whether its server has started
    (uvicorn's `Process.pong`)."""
    if process.exitcode is not None:
        return f"exited with {process.exitcode}"
    pipe = process.parent_conn
    try:
        while pipe.poll():  # the answers that have come; after a rolling restart, some may be late ones
            health.serving = pipe.recv() is True or health.serving
            health.ping_sent_at = None
        if health.ping_sent_at is None:
            pipe.send(b"ping")
            health.ping_sent_at = now
    except (OSError, EOFError, pickle.UnpicklingError) as e:
        return f"cannot be asked whether it is alive ({type(e).__name__}: {e})"
    if health.serving and now - health.ping_sent_at > PING_TIMEOUT_S:
        return f"has not answered a health check for {now - health.ping_sent_at:.1f} s"
    if not health.serving and now - health.seen_at > start_timeout_s:
        return f"has not started serving within {start_timeout_s} s (GENSERVE_WORKER_START_TIMEOUT_S)"
    return None
