"""The model registry: scans the model repository, checks and loads every model version,
and serves `name` (latest loaded version) and `name@version`.

A model that fails (bad manifest, missing file, checksum mismatch, a graph that does not
load or does not match its manifest) is recorded with the reason and not served; the
others load regardless. A device that cannot be had (GENSERVE_DEVICE=cuda without a GPU)
stops the start-up instead: that is a configuration error, not a model's.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from app import metrics
from app.batching import Batcher
from app.errors import ModelNotFound, StartupError
from app.manifest import (
    MANIFEST_FILE,
    Artifact,
    Manifest,
    is_version_name,
    parse_model_ref,
    read_manifest,
    sha256_file,
)
from app.runtimes import LoadedGraph, load_graph
from app.served_model import ServedModel
from app.settings import Settings

logger = logging.getLogger("genserve")


@dataclass
class ModelRecord:
    name: str
    version: int
    path: Path
    state: str  # "ready" | "failed"
    reason: str | None = None
    manifest: Manifest | None = None
    served: ServedModel | None = None


class Registry:
    def __init__(self, settings: Settings, executor: Executor) -> None:
        self.settings = settings
        self.executor = executor
        self.records: dict[str, dict[int, ModelRecord]] = {}
        self._said_cpu = False

    # ---- loading ------------------------------------------------------------------------

    def load_all(self) -> None:
        root = self.settings.model_dir
        if not root.is_dir():
            logger.error("model directory %s does not exist: no models to serve", root)
            return
        for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for version_dir in sorted(
                (p for p in model_dir.iterdir() if p.is_dir() and is_version_name(p.name)), key=lambda p: int(p.name)
            ):
                record = self._load_version(model_dir.name, int(version_dir.name), version_dir)
                self.records.setdefault(record.name, {})[record.version] = record
        ready = [r for r in self.all_records() if r.state == "ready"]
        logger.info(
            "serving %d model version(s) from %s; %d failed", len(ready), root, len(self.all_records()) - len(ready)
        )

    def _load_version(self, name: str, version: int, path: Path) -> ModelRecord:
        record = ModelRecord(name=name, version=version, path=path, state="failed")
        try:
            parse_model_ref(name)
            manifest = read_manifest(path)
            if (manifest.name, manifest.version) != (name, version):
                raise ValueError(f"manifest says {manifest.name}@{manifest.version} but lies in {name}/{version}")
            record.manifest = manifest
            record.served = self._serve(manifest, path)
            record.state = "ready"
            served = record.served
            metrics.MODELS_LOADED.labels(name, str(version), served.device, served.backend).set(1)
            logger.info("loaded %s@%d (%s on %s)", name, version, served.backend, served.device)
        except StartupError:
            raise
        except FileNotFoundError as e:
            record.reason = f"missing file: {Path(e.filename or str(e)).name}" if e.filename else str(e)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            record.reason = f"invalid {MANIFEST_FILE}: {where + ': ' if where else ''}{first['msg']}"
        except ValueError as e:  # our own checks: the message says it all
            record.reason = str(e)
        except Exception as e:  # any other broken artifact: record it, keep loading the rest
            record.reason = f"{type(e).__name__}: {e}"
        if record.state == "failed":
            logger.error("model %s@%d not served: %s", name, version, record.reason)
        return record

    def _serve(self, manifest: Manifest, path: Path) -> ServedModel:
        s = self.settings
        graphs: dict[str, LoadedGraph] = {}
        backend = ""
        for graph_name, graph in (("encoder", manifest.encoder), ("decoder", manifest.decoder)):
            artifact = self._choose(graph.artifacts)
            backend = artifact.format
            if sha256_file(path / artifact.path) != artifact.sha256:
                raise ValueError(f"checksum mismatch for {artifact.path}: the file is not the one the manifest records")
            graphs[graph_name] = load_graph(artifact, path, self._device(artifact), s.inference_threads)
        _warm_up(manifest, graphs)
        batchers = {
            graph_name: Batcher(
                graph,
                self.executor,
                model=manifest.name,
                version=manifest.version,
                graph_name=graph_name,
                batching=s.batching,
                max_batch_size=s.max_batch_size,
                max_delay_s=s.max_batch_delay_ms / 1000,
                max_queue_rows=s.max_queue,
                inline_max_s=s.inline_max_ms / 1000,
                timeout_s=s.request_timeout_s or None,
            )
            for graph_name, graph in graphs.items()
        }
        device = graphs["decoder"].device
        return ServedModel(manifest, batchers["encoder"], batchers["decoder"], device, backend, s.max_samples)

    def _choose(self, artifacts: list[Artifact]) -> Artifact:
        preferred = [a for a in artifacts if a.format == self.settings.backend]
        return (preferred or artifacts)[0]

    def _device(self, artifact: Artifact) -> str:
        if self.settings.device != "auto":
            return self.settings.device
        if artifact.format == "onnx":
            from app.runtimes.onnx import cuda_available
        else:
            from app.runtimes.torchscript import cuda_available
        if cuda_available():
            return "cuda"
        if not self._said_cpu:
            logger.warning("GENSERVE_DEVICE=auto: no CUDA device for %s models, running on the CPU", artifact.format)
            self._said_cpu = True
        return "cpu"

    # ---- serving ------------------------------------------------------------------------

    def all_records(self) -> list[ModelRecord]:
        return [r for versions in self.records.values() for r in versions.values()]

    def served(self) -> list[ServedModel]:
        return [r.served for r in self.all_records() if r.served is not None]

    def get(self, ref: str) -> ServedModel:
        """The model a request names; 404 with the reason when it is unknown or not served."""
        try:
            name, version = parse_model_ref(ref)
        except ValueError as e:
            raise ModelNotFound(str(e)) from None
        versions = self.records.get(name)
        if not versions:
            known = sorted(self.records)
            raise ModelNotFound(f"no model named {name!r}; models: {known}", details={"models": known})
        if version is None:
            ready = [v for v, r in versions.items() if r.served is not None]
            if not ready:
                reasons = {v: r.reason for v, r in versions.items()}
                raise ModelNotFound(f"model {name!r} has no version that loaded: {reasons}")
            version = max(ready)
        record = versions.get(version)
        if record is None:
            raise ModelNotFound(f"model {name!r} has no version {version}; versions: {sorted(versions)}")
        if record.served is None:
            raise ModelNotFound(f"model {name}@{version} is not served: {record.reason}")
        return record.served

    def start(self) -> None:
        for served in self.served():
            served.encoder.start()
            served.decoder.start()

    async def stop(self) -> None:
        for served in self.served():
            await served.encoder.stop()
            await served.decoder.stop()

    @property
    def ready(self) -> bool:
        models = self.served()
        return bool(models) and all(m.encoder.running and m.decoder.running for m in models)


def _warm_up(manifest: Manifest, graphs: dict[str, LoadedGraph]) -> None:
    """One inference per graph on a real-shaped row; the outputs must have the manifest's shapes."""
    y = {"y": np.zeros(2, dtype=np.int64)} if manifest.conditional else {}
    dims = {"encoder": manifest.input_dim, "decoder": manifest.latent_dim}
    d, k = manifest.input_dim, len(manifest.quantile_levels or [])
    expected = {
        "encoder": [(2, manifest.latent_dim)] * 2,
        "decoder": {"bernoulli": [(2, d)], "gaussian": [(2, d)] * 2, "quantile": [(2, k, d)]}[manifest.head],
    }
    for graph_name, graph in graphs.items():
        feed = {graph.input_names[0]: np.zeros((2, dims[graph_name]), dtype=np.float32)}
        if manifest.conditional:
            feed[graph.input_names[1]] = y["y"]
        try:
            shapes = [tuple(o.shape) for o in graph.run(feed)]
        except Exception as e:
            raise ValueError(f"{graph_name} failed its warm-up inference: {e}") from None
        if shapes != expected[graph_name]:
            raise ValueError(f"{graph_name} outputs shapes {shapes}, the manifest implies {expected[graph_name]}")
