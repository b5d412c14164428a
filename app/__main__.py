"""`python -m app`: serve the model repository with uvicorn, configured by GENSERVE_* variables."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile

import uvicorn
from pydantic import ValidationError

from app.main import catch_early_sighup, configure_logging
from app.settings import Settings
from app.supervisor import Supervisor


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as e:
        for error in e.errors():
            where = "GENSERVE_" + "_".join(str(p) for p in error["loc"]).upper()
            print(f"error: {where if error['loc'] else 'settings'}: {error['msg']}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    catch_early_sighup()
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Must be set before any worker imports prometheus_client, so that /metrics sums over workers;
        # a fresh directory per start, removed at exit, so no stale series survive a restart.
        metrics_dir = tempfile.mkdtemp(prefix="genserve-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
    common = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": settings.access_log,
        "timeout_graceful_shutdown": settings.shutdown_timeout_s,
        "timeout_keep_alive": settings.keep_alive_s,
        # uvicorn's httptools protocol with limits on every phase of a connection (app/http/protocol.py)
        "http": "app.http.protocol:GuardedProtocol",
    }
    # uvicorn handles SIGTERM with a graceful shutdown, then raises the signal again once it is
    # done: a clean stop would end as "killed by SIGTERM" (143). This handler turns that into exit 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    if settings.workers > 1:
        # What uvicorn.run does with several workers, with genserve's supervisor (app/supervisor.py):
        # a worker that dies or hangs is replaced within seconds. A (re)started worker that is not up
        # within the start timeout is killed, and a reload's rolling restart abandoned: uvicorn's 5 s
        # default is too short for a repository of large models.
        config = uvicorn.Config(
            "app.main:app_from_env",
            factory=True,
            workers=settings.workers,
            timeout_worker_healthcheck=settings.worker_start_timeout_s,
            **common,
        )
        Supervisor(config, sockets=[config.bind_socket()]).run()
    else:
        from app.main import create_app

        uvicorn.run(create_app(settings), **common)
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    sys.exit(0)


if __name__ == "__main__":
    sys.exit(main())
