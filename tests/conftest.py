"""Shared fixtures: the committed default models and small models trained for real."""

from __future__ import annotations

import atexit
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_NAMES = ("digits-vae", "digits-cvae", "digits-qvae", "cancer-qvae")
COMMITTED_MODELS = (*DEFAULT_MODEL_NAMES, "penguins-cvae")  # models/<name>/1, made by `make models`


def _copy_of_default_models() -> Path:
    """The tests' own model repository: a copy of the committed default models only, so that
    whatever a user has trained into models/ (new models, new versions, pins) cannot change them."""
    target = Path(tempfile.mkdtemp(prefix="genserve-test-models-"))
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    for name in COMMITTED_MODELS:
        shutil.copytree(ROOT / "models" / name / "1", target / name / "1")
    return target


DEFAULT_MODELS_DIR = _copy_of_default_models()


def run_python(
    *args: str, cwd: Path = ROOT, check: bool = False, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `python ARGS...` in a fresh interpreter, as a user would from the repository root."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"python {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def tiny_cvae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A conditional Bernoulli model trained briefly on digits (real data, real export)."""
    from training.pipeline import TrainOptions, train_and_export
    from training.train import TrainConfig

    models_dir = tmp_path_factory.mktemp("models")
    opts = TrainOptions(
        data="digits",
        name="tiny-cvae",
        head="bernoulli",
        conditional=True,
        latent_dim=4,
        hidden=(32,),
        models_dir=models_dir,
        iwae_samples=5,
        train=TrainConfig(max_epochs=4, warmup_epochs=2, seed=3),
    )
    return train_and_export(opts, log=lambda _: None)


@pytest.fixture(scope="session")
def tiny_gaussian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory holding one conditional Gaussian-head model trained briefly on an NPZ file."""
    import numpy as np

    from training.pipeline import TrainOptions, train_and_export
    from training.train import TrainConfig

    root = tmp_path_factory.mktemp("gauss")
    y = np.random.default_rng(0).integers(0, 3, size=200)
    x = np.random.default_rng(1).normal(size=(200, 5)) + y[:, None]
    np.savez(root / "data.npz", x=x, y=np.array(["a", "b", "c"])[y])
    opts = TrainOptions(
        data=str(root / "data.npz"),
        name="tiny-gauss",
        head="gaussian",
        conditional=True,
        latent_dim=2,
        hidden=(16,),
        models_dir=root / "models",
        iwae_samples=3,
        train=TrainConfig(max_epochs=3, warmup_epochs=1),
    )
    train_and_export(opts, log=lambda _: None)
    return root / "models"


# ---- the service ----------------------------------------------------------------------------


def real_rows(name: str, count: int = 8) -> tuple[list[list[float]], list[str] | None]:
    """Real data rows (original units) and their label names for a default model's data set."""
    from training import data

    ds = data.load({"cancer-qvae": "breast-cancer"}.get(name, "digits"))
    labels = [ds.labels[i] for i in ds.y[:count]]
    return ds.x[:count].astype(float).tolist(), labels


@pytest.fixture
def make_client():
    """Build the real app on given settings and talk to it in-process (lifespan included)."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    clients = []

    def make(**overrides) -> TestClient:
        settings = Settings(**{"model_dir": DEFAULT_MODELS_DIR, **overrides})
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def client():
    """One shared in-process client on the default models, default settings."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    with TestClient(create_app(Settings(model_dir=DEFAULT_MODELS_DIR)), raise_server_exceptions=False) as c:
        yield c


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """`python -m app` in a subprocess on 127.0.0.1; stopped by its PID."""

    def __init__(self, env: dict[str, str], open_files: int | None = None) -> None:
        import resource
        import time

        import httpx

        def limit_open_files() -> None:  # in the child: as on a host whose limit is `open_files`
            if open_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "GENSERVE_PORT": str(self.port),
            "GENSERVE_MODEL_DIR": str(DEFAULT_MODELS_DIR),
            "GENSERVE_LOG_LEVEL": "warning",
            **env,
        }
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        (ROOT / ".pytest_cache").mkdir(exist_ok=True)
        self.log = open(ROOT / ".pytest_cache" / f"server-{self.port}.log", "w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app"],
            cwd=ROOT,
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=limit_open_files if open_files is not None else None,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready within 60 s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture
def live_server():
    servers = []

    def start(**env: str) -> LiveServer:
        server = LiveServer({f"GENSERVE_{k.upper()}": str(v) for k, v in env.items()})
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus sample's values over series whose labels include `labels`."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


@pytest.fixture
def attack() -> Iterator[Callable[..., multiprocessing.Process]]:
    """Start attackers in forked child processes (their own GIL, as real clients would have);
    each is killed when the test ends."""
    started: list[multiprocessing.Process] = []

    def start(target, *args) -> multiprocessing.Process:
        process = multiprocessing.get_context("fork").Process(target=target, args=args, daemon=True)
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.join()
