"""A worker killed under load (GENSERVE_WORKERS=2): replaced within seconds, not minutes, while the
service goes on answering (app/supervisor.py).

Which worker answered is read from /proc: the worker process that holds the server side of an open
keep-alive connection. Every process the test starts is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections import Counter

import pytest
from uvicorn.config import Config
from uvicorn.supervisors.multiprocess import Process

from app.supervisor import PING_TIMEOUT_S, WorkerHealth, worker_problem
from tests.attacks import post

REPLACED_WITHIN_S = 5.0
CLIENTS = 16
GENERATE = post("/generate", b'{"model": "digits-cvae", "n": 4, "label": "3"}').replace(b"Connection: close\r\n", b"")


# ---- the health rule, on a worker process that is never started --------------------------------


def unstarted_worker() -> Process:
    return Process(Config(app="app.main:app_from_env", factory=True, workers=2), sockets=[])


def test_a_starting_worker_has_the_start_timeout_and_a_serving_one_the_ping_timeout() -> None:
    worker = unstarted_worker()
    try:
        health = WorkerHealth(seen_at=0.0)
        assert worker_problem(worker, health, 1.0, start_timeout_s=120) is None  # still importing: no answer
        assert worker_problem(worker, health, 119.0, start_timeout_s=120) is None
        assert "not started serving within 120 s" in worker_problem(worker, health, 121.0, start_timeout_s=120)

        health = WorkerHealth(seen_at=0.0)
        worker_problem(worker, health, 1.0, start_timeout_s=120)  # the ping
        worker.child_conn.recv()
        worker.child_conn.send(True)  # answered, as uvicorn's Process.pong does: the server has started
        assert worker_problem(worker, health, 2.0, start_timeout_s=120) is None and health.serving
        assert health.ping_sent_at == 2.0  # the next ping
        assert worker_problem(worker, health, 2.0 + PING_TIMEOUT_S - 0.1, start_timeout_s=120) is None
        problem = worker_problem(worker, health, 2.0 + PING_TIMEOUT_S + 0.1, start_timeout_s=120)
        assert problem is not None and "not answered a health check" in problem

        worker.parent_conn.close()
        assert "cannot be asked" in worker_problem(worker, WorkerHealth(seen_at=0.0), 1.0, start_timeout_s=120)
    finally:
        worker.parent_conn.close()
        worker.child_conn.close()


def test_late_answers_count_and_are_all_read() -> None:
    """After uvicorn's rolling restart (SIGHUP) a new worker's pipe may hold answers to pings that
    timed out: they are read at once, and the worker counts as serving."""
    worker = unstarted_worker()
    try:
        for started in (False, False, True):
            worker.child_conn.send(started)
        health = WorkerHealth(seen_at=0.0)
        assert worker_problem(worker, health, 1.0, start_timeout_s=120) is None
        assert health.serving and not worker.parent_conn.poll()
    finally:
        worker.parent_conn.close()
        worker.child_conn.close()


# ---- a live server ---------------------------------------------------------------------------------


def worker_pids(server_pid: int) -> list[int]:
    """The server's worker processes: its children started by multiprocessing's spawn (not its
    resource tracker)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                spawned = b"spawn_main" in f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if parent == server_pid and spawned:
            pids.append(int(entry))
    return sorted(pids)


def holders_of_connections(port: int, pids: list[int]) -> set[int]:
    """Which of `pids` hold the server side of an established connection on `port`."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":  # 01: ESTABLISHED
                inodes.add(f"socket:[{fields[9]}]")
    holders = set()
    for pid in pids:
        try:
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except (FileNotFoundError, ProcessLookupError):
            continue
        if links & inodes:
            holders.add(pid)
    return holders


def answering_workers(port: int, pids: list[int], connections: int = 16) -> set[int]:
    """Open keep-alive connections, get an answer on each, and see which workers hold them."""
    opened: list[socket.socket] = []
    try:
        for _ in range(connections):
            opened.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        for s in opened:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        if not all(s.recv(65536).startswith(b"HTTP/1.1 200 ") for s in opened):
            return set()
        return holders_of_connections(port, pids)
    except OSError:
        return set()
    finally:
        for s in opened:
            s.close()


def read_answer(connection: socket.socket) -> str:
    """One whole response on a keep-alive connection: its status line."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionResetError("closed before an answer")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.lower().split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length:"))
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionResetError("closed in the middle of an answer")
        body += chunk
    return head.split(b"\r\n", 1)[0].decode()


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def kill_while_its_health_check_waits(pid: int) -> None:
    """Stopped, the worker leaves the supervisor's next ping unanswered; then it is killed. uvicorn's
    own supervisor waited out its whole health-check timeout (GENSERVE_WORKER_START_TIMEOUT_S, 120 s)."""
    os.kill(pid, signal.SIGSTOP)
    time.sleep(1.5)  # the supervisor pings every 0.5 s
    os.kill(pid, signal.SIGKILL)


def hang(pid: int) -> None:
    """Alive but answering nothing, not even the supervisor's ping."""
    os.kill(pid, signal.SIGSTOP)


@pytest.mark.parametrize(
    ("breaking", "bound_s"),
    [
        (kill, REPLACED_WITHIN_S),
        (kill_while_its_health_check_waits, REPLACED_WITHIN_S),
        (hang, PING_TIMEOUT_S + REPLACED_WITHIN_S),  # from the moment it hangs
    ],
    ids=["killed", "killed-while-pinged", "hung"],
)
def test_a_broken_worker_is_replaced_within_seconds_under_load(live_server, breaking, bound_s: float) -> None:
    server = live_server(workers=2, log_level="info")
    seen: set[int] = set()
    stop = threading.Event()
    answers: Counter = Counter()  # status line -> count
    lost: list[str] = []  # requests whose connection ended without an answer
    lock = threading.Lock()

    def client() -> None:
        connection = None
        while not stop.is_set():
            try:
                if connection is None:
                    connection = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                connection.sendall(GENERATE)
                status = read_answer(connection)
                with lock:
                    answers[status] += 1
            except OSError as e:
                with lock:
                    lost.append(f"{type(e).__name__}: {e}")
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            workers = worker_pids(server.process.pid)
            seen.update(workers)
            if len(workers) == 2 and answering_workers(server.port, workers) == set(workers):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"two workers never answered:\n{server.output()[-3000:]}")

        for thread in threads:
            thread.start()
        time.sleep(2.0)  # under load, and the supervisor has seen both workers serving
        broken = workers[0]
        breaking(broken)
        broken_at = time.monotonic()  # killed, or hung
        replaced_after = None
        while time.monotonic() - broken_at < 30:
            now = worker_pids(server.process.pid)
            seen.update(now)
            if len(now) == 2 and broken not in now and answering_workers(server.port, now) == set(now):
                replaced_after = time.monotonic() - broken_at
                break
            time.sleep(0.05)
        with lock:
            answered_before = sum(answers.values())
        time.sleep(1.0)  # the traffic goes on, on both workers
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        log = server.output()
        server.stop()
        for pid in seen:  # none should be left; stopped by PID if one is
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    print(
        f"\n{breaking.__name__}: replaced, both workers answering after "
        f"{'over 30 s' if replaced_after is None else f'{replaced_after:.2f} s'}; "
        f"{sum(answers.values())} answers ({dict(answers)}), {len(lost)} requests lost: {lost[:3]}"
    )
    assert replaced_after is not None and replaced_after < bound_s, log[-3000:]
    assert log.count(": replacing it") == 1, f"a worker other than the broken one was replaced:\n{log[-3000:]}"
    assert set(answers) == {"HTTP/1.1 200 OK"}, dict(answers)
    # only a request on a connection to the broken worker may be lost: at most one per client
    assert len(lost) <= CLIENTS, lost
    assert sum(answers.values()) > answered_before, "no answers after the replacement"
