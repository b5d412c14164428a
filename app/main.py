"""create_app(settings): assembles the service. Its lifespan owns the registry and batchers."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.deps import require_api_key
from app.api.routes import admin, health, inference, models, ui, v2
from app.http import parsing, protocol
from app.http.errors import install_error_handlers
from app.http.hot_routes import HotRoutes
from app.http.middleware import BodyLimit, RequestMetrics
from app.models.registry import Registry
from app.settings import Settings
from core.errors import NotReady, RepositoryUnavailable

logger = logging.getLogger("genserve")


class GenserveAPI(FastAPI):
    """FastAPI with genserve's own middleware (`outer_middleware`, outermost first) placed
    outside Starlette's and FastAPI's standard layers (server errors, exception handlers), not
    inside them: the hot inference routes, answered by the outermost layer (`HotRoutes`), then
    pass through none of those layers, which cost more than a small model's inference. Every
    other request goes on through the standard stack as usual."""

    outer_middleware: Sequence[Middleware] = ()
    # Set by the lifespan unless FastAPI's OpenTelemetry bridge is on then, which must see every
    # request: an HTTP request then goes straight to the middleware stack, past FastAPI's and
    # Starlette's own __call__, which would only set scope["app"] (no root_path is configured)
    # and ask whether the bridge is on, at about a seventh of /generate n=1's own time.
    straight_to_stack: bool = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stack = self.middleware_stack
        if self.straight_to_stack and stack is not None and scope["type"] == "http":
            scope["app"] = self
            await stack(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        for cls, args, kwargs in reversed(self.outer_middleware):
            app = cls(app, *args, **kwargs)
        return app


def _configure_protocol(settings: Settings) -> None:
    """The connection limits of app/http/protocol.py, in the process that will serve (each worker)."""
    fit = protocol.raise_open_files_limit(settings.max_connections + 256)
    connections = settings.max_connections
    if fit < connections:
        logger.warning(
            "GENSERVE_MAX_CONNECTIONS=%d does not fit the open-file limit: at most %d connections", connections, fit
        )
        connections = fit
    protocol.configure(
        protocol.Limits(
            header_timeout_s=settings.header_timeout_s,
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            body_timeout_s=settings.body_timeout_s,
            body_min_rate=settings.body_min_rate,
            send_timeout_s=settings.send_timeout_s,
            max_connections=connections,
        )
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    _configure_protocol(settings)
    if os.environ.get("GENSERVE_API_KEY") == "":
        logger.warning("GENSERVE_API_KEY is set but empty: no API key, the API and /admin/reload are open")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Each graph's batcher runs one batch at a time; the pool lets different graphs run side by side.
        executor = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="inference")
        registry = Registry(settings, executor)
        app.state.registry = registry
        try:
            registry.load_all()
            registry.start()
            # Everything loaded so far lives as long as the process: keep it out of the garbage
            # collector's full passes, which would otherwise walk it again and again under load.
            gc.collect()
            gc.freeze()
            stop_reloading = _reload_on_sighup(registry)
            logging.getLogger("uvicorn.error").addFilter(CUT_AT_SHUTDOWN)
            telemetry = getattr(app, "_native_telemetry", None)
            if isinstance(app, GenserveAPI) and not (telemetry is not None and telemetry.enabled()):
                app.straight_to_stack = True
            yield
            stop_reloading()
        finally:
            parsing.shutdown()
            await registry.stop()
            executor.shutdown(wait=True)
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # this worker's live gauges go with it
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid())

    app = GenserveAPI(
        title="genserve",
        version="0.1.0",
        summary="Generate samples, latent codes, reconstructions and quantile bands from VAE/CVAE/QVAE models.",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc from packaged assets, not a CDN: app/api/routes/ui.py
        redoc_url=None,
        redirect_slashes=False,  # a redirect would name the client's Host header: /generate/ is a 404
    )
    app.state.settings = settings
    install_error_handlers(app)
    # The API key guards inference and model routes when one is set; without one, no
    # dependency is attached at all (solving even a no-op dependency costs every request).
    guarded_by = [require_api_key] if settings.api_key else []
    guarded = [Depends(guard) for guard in guarded_by]
    app.include_router(inference.router)  # hot routes: they carry their own guard (the API key)
    app.include_router(models.router, dependencies=guarded)
    app.include_router(v2.model_router, dependencies=guarded)
    app.include_router(admin.router, dependencies=guarded)
    app.include_router(health.router)
    app.include_router(v2.server_router)
    ui.install(app)
    cors: dict[str, Any] | None = None
    if settings.cors_origin_list:  # off by default: browsers then refuse cross-origin calls
        cors = {
            "allow_origins": settings.cors_origin_list,
            "allow_methods": ["GET", "POST", "HEAD"],
            "allow_headers": [
                "Content-Type",
                "Accept",
                "Authorization",
                "X-API-Key",
                "Inference-Header-Content-Length",
            ],
            "expose_headers": [
                "Retry-After",
                "X-Model",
                "X-Model-Version",
                "X-Outside",
                "Inference-Header-Content-Length",
            ],
            "max_age": 600,
        }
    app.outer_middleware = [
        # the inference POSTs, answered here
        Middleware(
            HotRoutes,
            routes=inference.router.routes,
            max_body_bytes=settings.max_body_bytes,
            guarded=bool(settings.api_key),  # the routes' one guard is the API key's
            cors=cors,
        ),
        Middleware(RequestMetrics),  # sees the 413s and CORS preflights too
        *([Middleware(CORSMiddleware, **cors)] if cors else []),
        Middleware(BodyLimit, max_bytes=settings.max_body_bytes),
    ]
    return app


_early_sighup = threading.Event()


class CutAtShutdown(logging.Filter):
    """uvicorn cancels what still runs when its graceful shutdown times out
    (GENSERVE_SHUTDOWN_TIMEOUT_S), a long stream for one, and logs each as "Exception in ASGI
    application" with the CancelledError's traceback. The cut is by design, and its client sees
    the response end unfinished: one warning line without the traceback says so."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if (
            isinstance(error, asyncio.CancelledError)
            and isinstance(record.msg, str)
            and record.msg.startswith("Exception in ASGI application")
            and "graceful shutdown" in str(error)  # uvicorn's cancel; any other keeps its traceback
        ):
            record.msg, record.args = "a response still running was cut: %s", (str(error),)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        return True


CUT_AT_SHUTDOWN = CutAtShutdown()


def catch_early_sighup() -> None:
    """Until the service is up, SIGHUP would end the process (its default action): note it
    instead, and reload once the start-up is done (`python -m app` calls this first)."""
    signal.signal(signal.SIGHUP, lambda signum, frame: _early_sighup.set())


def _reload_on_sighup(registry: Registry) -> Callable[[], None]:
    """SIGHUP reloads the model repository, as POST /admin/reload does. (With several workers,
    SIGHUP to the server process makes uvicorn replace its workers instead.) Only a process's
    main thread can install a handler: under a test client there is none. Returns the undo,
    for the shutdown: from then on SIGHUP is ignored."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task] = set()

    def done(task: asyncio.Task) -> None:
        tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if isinstance(error, NotReady | RepositoryUnavailable):
            logger.warning("SIGHUP reload refused: %s", error.message)
        elif error is not None:
            logger.error("SIGHUP reload failed", exc_info=error)

    def on_sighup() -> None:
        logger.info("SIGHUP: reloading the model repository")
        task = loop.create_task(registry.reload())
        tasks.add(task)
        task.add_done_callback(done)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_sighup)
    except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
        return lambda: None
    if _early_sighup.is_set():  # one came during the start-up
        _early_sighup.clear()
        on_sighup()

    def undo() -> None:
        loop.remove_signal_handler(signal.SIGHUP)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    return undo


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers: each reads the settings from the environment."""
    settings = Settings()
    configure_logging(settings.log_level)
    return create_app(settings)
