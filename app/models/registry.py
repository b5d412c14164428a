"""The model registry: scans the model repository, checks and loads every model version,
and serves `name@version`, and `name` as the version core/repository.py chooses: the pinned one,
else the newest promoted one that loaded.

`reload()` scans the repository again while the service keeps serving: new versions load
(in a thread, off the event loop), versions whose directory is gone are retired, a version
whose manifest changed is loaded anew and swapped in only if the new copy loads, and failed
versions are tried again. A broken version never replaces a working one. A retired version
stops only once the requests holding it have finished.

A model that fails (bad manifest, missing file, checksum mismatch, a graph that does not
load or does not match its manifest) is recorded with the reason and not served; the
others load regardless. A device that cannot be had (GENSERVE_DEVICE=cuda without a GPU)
stops the start-up instead: that is a configuration error, not a model's.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from app import metrics
from app.models.batching import Batcher, WrongOutput, check_outputs
from app.models.runtimes import LoadedGraph, load_graph
from app.models.served_model import ServedModel
from app.settings import Settings
from core.errors import ModelNotFound, NotReady, RepositoryUnavailable, StartupError
from core.manifest import Artifact, Manifest
from core.repository import (
    MANIFEST_FILE,
    Pin,
    choose_default,
    contained_file,
    is_version_name,
    parse_model_ref,
    read_manifest,
    read_pin,
    sha256_file,
)

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
    fingerprint: str | None = None  # of the manifest file as loaded: a change on disk shows on reload

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class ReloadReport(BaseModel):
    """What a reload changed, by `name@version`."""

    loaded: list[str] = Field(default_factory=list, description="new versions now served")
    replaced: list[str] = Field(default_factory=list, description="changed on disk, the new copy now serves")
    removed: list[str] = Field(default_factory=list, description="gone from disk, retired once their requests finished")
    failed: dict[str, str] = Field(default_factory=dict, description="not served, with the reason")
    kept: dict[str, str] = Field(
        default_factory=dict, description="changed on disk, but the new copy failed: the loaded one still serves"
    )
    unchanged: list[str] = Field(default_factory=list)


class Registry:
    def __init__(self, settings: Settings, executor: Executor) -> None:
        self.settings = settings
        self.executor = executor
        self.records: dict[str, dict[int, ModelRecord]] = {}
        self.pins: dict[str, Pin] = {}  # read with the versions, at start-up and at each reload
        self.duplicates: dict[tuple[str, int], list[str]] = {}  # version -> the directory names claiming it
        self._defaults: dict[str, tuple[int | None, str]] = {}  # name -> (version `name` serves, why)
        self._said_cpu = False
        self._reload_lock = asyncio.Lock()
        self._retiring: set[asyncio.Task] = set()
        self._stopped = False

    # ---- loading ------------------------------------------------------------------------

    def load_all(self) -> None:
        self.pins = self._read_pins()
        for name, version, path in self._scan():
            record = self._load_version(name, version, path)
            self.records.setdefault(name, {})[version] = record
            if record.served is not None:
                _set_loaded(record, 1)
        self._choose_defaults()
        ready = [r for r in self.all_records() if r.state == "ready"]
        logger.info(
            "serving %d model version(s) from %s; %d failed",
            len(ready),
            self.settings.model_dir,
            len(self.all_records()) - len(ready),
        )

    def _scan(self, reloading: bool = False) -> list[tuple[str, int, Path]]:
        """Every `<name>/<version>/` directory of the model repository, in order. A repository
        that is missing at a reload (an unmounted volume) is refused: it would retire every model."""
        root = self.settings.model_dir
        if not root.is_dir():
            if reloading:
                raise RepositoryUnavailable(
                    f"model directory {root} is missing or not a directory; nothing was changed, "
                    "the loaded models keep serving"
                )
            logger.error("model directory %s does not exist: no models to serve", root)
            return []
        found = []
        self.duplicates = {}
        for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            claims: dict[int, list[Path]] = {}
            for p in model_dir.iterdir():
                if p.is_dir() and is_version_name(p.name):
                    claims.setdefault(int(p.name), []).append(p)
            for version, paths in sorted(claims.items()):
                paths.sort(key=lambda p: (p.name != str(version), p.name))  # the canonical name first
                if len(paths) > 1:
                    self.duplicates[(model_dir.name, version)] = [p.name for p in paths]
                found.append((model_dir.name, version, paths[0]))
        return found

    def _read_pins(self) -> dict[str, Pin]:
        pins = {}
        root = self.settings.model_dir
        for model_dir in sorted(root.iterdir()) if root.is_dir() else []:
            try:
                pin = read_pin(model_dir) if model_dir.is_dir() else None
            except ValueError as e:
                logger.error("ignoring a pin: %s", e)
                continue
            if pin is not None:
                pins[model_dir.name] = pin
        return pins

    def _load_version(self, name: str, version: int, path: Path, reloading: bool = False) -> ModelRecord:
        record = ModelRecord(name=name, version=version, path=path, state="failed", fingerprint=_fingerprint(path))
        try:
            parse_model_ref(name)
            if (name, version) in self.duplicates:
                names = ", ".join(self.duplicates[(name, version)])
                raise ValueError(f"directories {names} all claim version {version}: remove all but one")
            manifest = read_manifest(path)
            if (manifest.name, manifest.version) != (name, version):
                raise ValueError(f"manifest says {manifest.name}@{manifest.version} but lies in {name}/{version}")
            record.manifest = manifest
            record.served = self._serve(manifest, path)
            record.state = "ready"
            served = record.served
            logger.info("loaded %s@%d (%s on %s)", name, version, served.backend, served.device)
        except StartupError as e:
            if not reloading:  # at start-up: a configuration error, the service does not start
                raise
            record.reason = str(e)  # at a reload: this version's fault only, the rest goes on
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
            if sha256_file(contained_file(path, artifact.path)) != artifact.sha256:
                raise ValueError(f"checksum mismatch for {artifact.path}: the file is not the one the manifest records")
            graphs[graph_name] = load_graph(artifact, path, self._device(artifact), s.inference_threads)
        shapes = _output_shapes(manifest)
        _warm_up(manifest, graphs, shapes, (1, 2, max(2, min(s.max_batch_size, s.max_samples))))
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
                output_shapes=shapes[graph_name],
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
            from app.models.runtimes.onnx import cuda_available
        else:
            from app.models.runtimes.torchscript import cuda_available
        if cuda_available():
            return "cuda"
        if not self._said_cpu:
            logger.warning("GENSERVE_DEVICE=auto: no CUDA device for %s models, running on the CPU", artifact.format)
            self._said_cpu = True
        return "cpu"

    # ---- reloading ----------------------------------------------------------------------

    async def reload(self) -> ReloadReport:
        """Scan the repository again and bring the served set in line with it (one reload at a time)."""
        async with self._reload_lock:
            if self._stopped:
                raise NotReady("the service is shutting down: no reload")
            # loading builds sessions and runs warm-ups: in a thread, so that serving goes on meanwhile
            candidates, found = await asyncio.get_running_loop().run_in_executor(None, self._load_changed)
            self.pins = self._read_pins()
            report = ReloadReport()
            for name, versions in list(self.records.items()):
                for version, record in list(versions.items()):
                    if (name, version) not in found:
                        del versions[version]
                        self._retire(record)
                        report.removed.append(record.ref)
                if not versions:
                    del self.records[name]
            for name, version in found:
                old = self.records.get(name, {}).get(version)
                new = candidates.get((name, version))
                if new is None:
                    old.reason = None  # whatever a failed reload said of it no longer holds
                    report.unchanged.append(old.ref)
                    continue
                if new.served is None and old is not None and old.served is not None:
                    old.reason = (
                        f"a changed copy on disk failed to load, still serving the one loaded before: {new.reason}"
                    )
                    report.kept[old.ref] = new.reason or ""
                    continue
                self.records.setdefault(name, {})[version] = new
                if new.served is None:
                    report.failed[new.ref] = new.reason or ""
                    continue
                new.served.start()
                if old is not None and old.served is not None:
                    self._retire(old)  # before setting the new labels: it clears the old ones
                    report.replaced.append(new.ref)
                else:
                    report.loaded.append(new.ref)
                _set_loaded(new, 1)
            self.records = {name: dict(sorted(v.items())) for name, v in sorted(self.records.items())}
            self._choose_defaults()
            logger.info(
                "reload: %d loaded, %d replaced, %d removed, %d failed, %d kept (changed copy failed), %d unchanged",
                *(len(getattr(report, f)) for f in ("loaded", "replaced", "removed", "failed", "kept", "unchanged")),
            )
            return report

    def _load_changed(self) -> tuple[dict[tuple[str, int], ModelRecord], dict[tuple[str, int], Path]]:
        """(In a thread.) Load every version that is new, changed on disk, or failed before."""
        found = {(name, version): path for name, version, path in self._scan(reloading=True)}
        candidates = {}
        for (name, version), path in found.items():
            old = self.records.get(name, {}).get(version)
            unchanged = old is not None and old.served is not None and old.fingerprint == _fingerprint(path)
            if unchanged and (name, version) not in self.duplicates:
                continue
            candidates[(name, version)] = self._load_version(name, version, path, reloading=True)
        return candidates, found

    def _retire(self, record: ModelRecord) -> None:
        """Stop serving a version: its batchers stop once the requests holding it have finished."""
        served = record.served
        if served is None:
            return
        _set_loaded(record, 0)  # a replacement with the same device and backend sets it to 1 again

        async def retire() -> None:
            while served.in_flight:
                await asyncio.sleep(0.01)
            await served.stop()
            if self.records.get(record.name, {}).get(record.version) is None:  # removed, not replaced
                metrics.forget_version(record.name, record.version, served.device, served.backend)
            logger.info("retired %s", record.ref)

        task = asyncio.get_running_loop().create_task(retire(), name=f"retire {record.ref}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    # ---- serving ------------------------------------------------------------------------

    def all_records(self) -> list[ModelRecord]:
        return [r for versions in self.records.values() for r in versions.values()]

    def served(self) -> list[ServedModel]:
        return [r.served for r in self.all_records() if r.served is not None]

    def get(self, ref: str) -> ServedModel:
        """The model a request names; 404 with the reason when it is unknown or not served."""
        try:
            name, version = _parse_ref(ref)
        except ValueError as e:
            raise ModelNotFound(str(e)) from None
        if version is None:  # the common case, quickly: the name's default version, served
            record = self.records.get(name, {}).get(self._defaults.get(name, (None, ""))[0])
            if record is not None and record.served is not None:
                return record.served
        versions = self.records.get(name)
        if not versions:
            known = sorted(self.records)
            raise ModelNotFound(f"no model named {name!r}; models: {known}", details={"models": known})
        if version is None:
            if not any(r.served is not None for r in versions.values()):
                reasons = {v: r.reason for v, r in versions.items()}
                raise ModelNotFound(f"model {name!r} has no version that loaded: {reasons}")
            version, why = self.default(name)
            if version is None:
                raise ModelNotFound(f"model {name!r}: {why}", details={"versions": sorted(versions)})
        record = versions.get(version)
        if record is None:
            raise ModelNotFound(f"model {name!r} has no version {version}; versions: {sorted(versions)}")
        if record.served is None:
            raise ModelNotFound(f"model {name}@{version} is not served: {record.reason}")
        return record.served

    def default(self, name: str) -> tuple[int | None, str]:
        """The version `name` resolves to, and why (core/repository.py). Chosen when the records or
        pins change (start-up, reload), not per request."""
        return self._defaults.get(name, (None, f"no model named {name!r}"))

    def _choose_defaults(self) -> None:
        self._defaults = {}
        for name, versions in self.records.items():
            servable = {v: r.manifest.promotion for v, r in versions.items() if r.served is not None and r.manifest}
            self._defaults[name] = choose_default(servable, self.pins.get(name))

    def start(self) -> None:
        for served in self.served():
            served.start()

    async def stop(self) -> None:
        async with self._reload_lock:
            self._stopped = True
            await asyncio.gather(*self._retiring)
        for served in self.served():
            await served.stop()

    def not_ready_reason(self) -> str | None:
        """Why /readyz says 503, or None when ready. Ready: at least one model version serves and
        every served version's batchers run; with GENSERVE_READY_POLICY=all, also no version failed."""
        models = self.served()
        if not models:
            return "no model is being served"
        if not all(m.encoder.running and m.decoder.running for m in models):
            return "batchers are not running (starting or shutting down)"
        failed = [r.ref for r in self.all_records() if r.served is None]
        if failed and self.settings.ready_policy == "all":
            return f"GENSERVE_READY_POLICY=all and {len(failed)} model version(s) failed to load: {failed}"
        return None


def _set_loaded(record: ModelRecord, value: int) -> None:
    served = record.served
    if served is not None:
        metrics.MODELS_LOADED.labels(record.name, str(record.version), served.device, served.backend).set(value)


def _fingerprint(path: Path) -> str | None:
    try:  # a FIFO or a link out of the directory is never read: it would hang, or reach elsewhere
        return hashlib.sha256(contained_file(path, MANIFEST_FILE).read_bytes()).hexdigest()
    except (OSError, ValueError):
        return None


def _output_shapes(manifest: Manifest) -> dict[str, list[tuple[int, ...]]]:
    """Each graph's output shapes past the rows axis, as the manifest implies them."""
    return {
        "encoder": [(manifest.latent_dim,)] * 2,
        "decoder": [shape[1:] for _, shape in manifest.decoder_outputs(rows=1)],
    }


def _warm_up(
    manifest: Manifest, graphs: dict[str, LoadedGraph], shapes: dict[str, list[tuple[int, ...]]], sizes: tuple[int, ...]
) -> None:
    """Run each graph at several batch sizes (1 to the largest batch) on rows at the training
    data's centre (zeros on the model's scale) and codes at the prior's centre (zeros): the outputs must have the
    manifest's shapes for every size, and be finite, in original units too. A model that fails
    would answer wrong rows or non-finite values to every request: it is not served."""
    dims = {"encoder": manifest.input_dim, "decoder": manifest.latent_dim}
    for graph_name, graph in graphs.items():
        for rows in sizes:
            feed = {graph.input_names[0]: np.zeros((rows, dims[graph_name]), dtype=np.float32)}
            if manifest.conditional:
                feed[graph.input_names[1]] = np.arange(rows, dtype=np.int64) % len(manifest.labels or [1])
            try:
                outputs = graph.run(feed)
            except Exception as e:
                raise ValueError(f"{graph_name} failed its warm-up inference on {rows} row(s): {e}") from None
            try:
                check_outputs(outputs, rows, shapes[graph_name])
            except WrongOutput as e:
                raise ValueError(f"{graph_name} {e}") from None
            for name, out in zip(graph.output_names, outputs, strict=True):
                if not np.isfinite(out).all():
                    raise ValueError(
                        f"{graph_name} output {name!r} is not finite for {rows} row(s) at the data's centre"
                    )
            if graph_name == "decoder" and manifest.columns is None:  # back to original units, as served
                scale = np.asarray(manifest.normalization.scale, np.float32)
                shift = np.asarray(manifest.normalization.shift, np.float32)
                with np.errstate(all="ignore"):
                    central = outputs[0] if outputs[0].ndim == 2 else outputs[0][:, outputs[0].shape[1] // 2]
                    restored = central * scale + shift
                if not np.isfinite(restored).all():
                    raise ValueError("the decoder's output is not finite in original units: check normalization.scale")


@functools.lru_cache(maxsize=1024)
def _parse_ref(ref: str) -> tuple[str, int | None]:
    """parse_model_ref, remembered for the references requests name again and again (a
    malformed one raises, and is not remembered)."""
    return parse_model_ref(ref)
