"""All service settings, read once from `GENSERVE_*` environment variables and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # An empty variable is the default: compose forwards every setting as ${GENSERVE_X:-default}, and
    # GENSERVE_API_KEY= or GENSERVE_DEFAULT_MODEL= means none.
    model_config = SettingsConfigDict(env_prefix="GENSERVE_", extra="ignore", env_ignore_empty=True)

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    access_log: bool = Field(False, description="log every request (uvicorn's access log); metrics count them anyway")

    model_dir: Path = Field(Path("models"), description="the model repository")
    default_model: str | None = Field(None, description="model used when a request names none")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    backend: Literal["onnx", "torchscript"] = Field("onnx", description="preferred format when a model has both")
    inference_threads: int = Field(1, ge=1, description="intra-op threads of each graph (ONNX Runtime / torch)")

    batching: bool = True
    max_batch_size: int = Field(64, ge=1, description="rows run together in one batch")
    max_batch_delay_ms: float = Field(
        0.0, ge=0, description="longest wait for more rows once others are waiting (0: run what has queued)"
    )
    max_queue: int = Field(4096, ge=1, description="rows waiting per graph before 503")
    inline_max_ms: float = Field(
        0.2, ge=0, description="a graph whose runs take less runs on the event loop, not a thread (0: never)"
    )
    request_timeout_s: float = Field(
        30.0, ge=0, description="longest wait for a request's rows to be run before 504 (0: no limit)"
    )
    max_samples: int = Field(1024, ge=1, description="largest n / number of rows in one request")
    max_stream_rows: int = Field(
        100_000_000, ge=1, description="largest n of one /generate/stream (rows are made as they are sent)"
    )
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="largest request body")

    api_key: str | None = Field(None, description="when set, inference, model and admin endpoints require it")
    cors_origins: str = Field(
        "", description="comma-separated origins browsers may call from ('*' for any); empty: CORS off"
    )
    ready_policy: Literal["any", "all"] = Field(
        "any", description="/readyz: 200 once any model version serves, or only when every version found loaded"
    )
    worker_start_timeout_s: int = Field(
        120, ge=1, description="with several workers: longest a (re)started worker may take to load its models"
    )
    keep_alive_s: float = Field(
        5.0, gt=0, description="idle keep-alive connections are closed after this long; above a proxy's idle timeout"
    )
    shutdown_timeout_s: float = Field(
        30.0, gt=0, description="on SIGTERM, longest wait for requests in flight before closing connections"
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="a request's line and headers must arrive within this (else 408 and closed)"
    )
    max_header_bytes: int = Field(64 * 1024, ge=1024, description="largest request line + headers (else 431)")
    max_headers: int = Field(100, ge=8, description="most header lines in a request (else 431)")
    body_timeout_s: float = Field(
        10.0, gt=0, description="longest pause in a request body's upload, and the grace before its rate counts"
    )
    body_min_rate: int = Field(
        16 * 1024, ge=0, description="slowest average upload, bytes/s, once a body has taken body_timeout_s (0: any)"
    )
    send_timeout_s: float = Field(
        30.0, gt=0, description="a response whose client takes none of it for this long is cut off, its work stopped"
    )
    max_connections: int = Field(
        1000, ge=16, description="open connections; one more evicts the longest-waiting one without a request"
    )

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @model_validator(mode="after")
    def _queue_holds_a_request(self) -> Settings:
        if self.api_key is not None and not (self.api_key.isascii() and self.api_key.isprintable()):
            raise ValueError("GENSERVE_API_KEY must be printable ASCII (it travels in an HTTP header)")
        if self.max_queue < self.max_samples:
            raise ValueError(
                f"GENSERVE_MAX_QUEUE ({self.max_queue}) must be at least GENSERVE_MAX_SAMPLES "
                f"({self.max_samples}), or the largest allowed request could never be queued"
            )
        return self
