"""Export a trained model to the model repository, in steps: `staging_dir` holds the next version under a
temporary name; `stage` writes its ONNX and TorchScript graphs, checked against PyTorch on real rows, and a
manifest that records every artifact's sha256; `promote` decides whether the name resolves to it and moves
it into place."""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.manifest import ENCODER_OUTPUTS, Artifact, ArtifactFormat, Evaluation, Graph, Manifest, decoder_output_names
from core.repository import MANIFEST_FILE, Choice, decide, model_versions, sha256_file
from training.model import VAE

TOLERANCE = 1e-4
FORMATS: tuple[ArtifactFormat, ...] = ("onnx", "torchscript")
_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


class ServedDecoder(nn.Module):
    """The decoder as served: probabilities, not logits. A Bernoulli head gives sigmoid(logits);
    a table's discrete logits become `discrete_probs`: a softmax per categorical column, then a
    sigmoid per missing indicator (core/table.py reads them in that order)."""

    def __init__(self, model: VAE) -> None:
        super().__init__()
        self.decoder = model.decoder
        self.head = model.decoder.torch_head
        self.category_slices = model.category_slices
        self.missing_start = model.missing_slice[0]
        self.discrete = model.cfg.n_discrete > 0

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        out = self.decoder(z, y)
        head = out[:-1] if self.discrete else out
        head = self.head.served(head)
        if not self.discrete:
            return head
        logits = out[-1]
        probs = [torch.softmax(logits[:, start:stop], dim=1) for start, stop in self.category_slices]
        probs.append(torch.sigmoid(logits[:, self.missing_start :]))
        return *head, torch.cat(probs, dim=1)


class ExportError(RuntimeError):
    """The exported graphs do not reproduce the PyTorch model; nothing was written."""


@dataclass(frozen=True)
class Staging:
    """The next version of `name`, written into `path` (a temporary name) until `promote` moves it into place."""

    models_dir: Path
    name: str
    version: int
    path: Path


def next_version(models_dir: Path, name: str) -> int:
    versions = model_versions(models_dir, name)
    return versions[-1] + 1 if versions else 1


@contextmanager
def staging_dir(models_dir: Path, name: str) -> Iterator[Staging]:
    """A fresh staging directory for the next version of `name`, removed on leaving (whatever failed) unless
    `promote` has moved it into place: a version's directory appears only once every check has passed."""
    version = next_version(models_dir, name)
    path = models_dir / name / f".tmp-{version}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield Staging(models_dir, name, version, path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def stage(
    model: VAE,
    manifest_fields: dict,
    sample_x: np.ndarray,
    sample_y: np.ndarray | None,
    staging: Staging,
    formats: tuple[ArtifactFormat, ...] = FORMATS,
    files: dict[str, str] | None = None,
) -> Manifest:
    """Write the graphs, the manifest and `files` (name -> text: the history, its figures) into `staging`;
    returns the manifest written, which a review may read there (app/ reads the same files).

    `sample_x`/`sample_y` are real (normalised) rows the graphs are checked on (ExportError if they
    differ from PyTorch).
    """
    model.eval()
    decoder_outputs = decoder_output_names(model.cfg.head, model.cfg.n_discrete > 0)
    graphs = {
        "encoder": (model.encoder, ["x"], list(ENCODER_OUTPUTS)),
        "decoder": (ServedDecoder(model), ["z"], decoder_outputs),
    }
    x = torch.from_numpy(np.ascontiguousarray(sample_x, np.float32))
    y = None if sample_y is None else torch.from_numpy(sample_y.astype(np.int64))
    with torch.no_grad():
        z = model.encoder(x, y)[0]
        # Rows from the posterior means and from the prior, as the service will decode both.
        z = torch.cat([z, torch.randn(z.shape, generator=torch.Generator().manual_seed(0))])
        y_dec = None if y is None else torch.cat([y, y])
    examples = {"encoder": (x,) if y is None else (x, y), "decoder": (z,) if y is None else (z, y_dec)}
    written: dict[str, Graph] = {}
    for graph_name, (module, inputs, outputs) in graphs.items():
        if model.cfg.n_labels:
            inputs = [*inputs, "y"]
        artifacts = []
        for fmt in formats:
            path = staging.path / f"{graph_name}{_SUFFIX[fmt]}"
            _write(fmt, module, examples[graph_name], inputs, outputs, path)
            _verify(fmt, path, module, examples[graph_name], inputs, graph_name)
            artifacts.append(
                Artifact(format=fmt, path=path.name, sha256=sha256_file(path), inputs=inputs, outputs=outputs)
            )
        written[graph_name] = Graph(artifacts=artifacts)
    manifest = Manifest(
        name=staging.name,
        version=staging.version,
        encoder=written["encoder"],
        decoder=written["decoder"],
        **manifest_fields,
    )
    (staging.path / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
    for file_name, text in (files or {}).items():
        (staging.path / file_name).write_text(text)
    return manifest


def promote(staging: Staging, manifest: Manifest, evaluation: Evaluation, choice: Choice = "auto") -> Path:
    """Decide whether `name` resolves to the staged version (core/repository.py: its figures, `evaluation`,
    against the default version's, or `choice`), write its final manifest and move it into place."""
    manifest = manifest.model_copy(update={"evaluation": evaluation})
    manifest = manifest.model_copy(update={"promotion": decide(staging.models_dir, manifest, choice)})
    (staging.path / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
    final = staging.models_dir / staging.name / str(staging.version)
    staging.path.rename(final)
    return final


def _write(
    fmt: str, module: nn.Module, example: tuple[torch.Tensor, ...], inputs: list[str], outputs: list[str], path: Path
) -> None:
    if fmt == "torchscript":
        with torch.no_grad():
            torch.jit.trace(module, example).save(str(path))
        return
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter, not our concern
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_shapes=tuple({0: batch} for _ in example),
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def _verify(
    fmt: str, path: Path, module: nn.Module, example: tuple[torch.Tensor, ...], inputs: list[str], graph_name: str
) -> None:
    """Run the written artifact on the example rows (and on a single row, to prove the
    batch axis is dynamic) and compare with PyTorch."""
    for rows in (example, tuple(t[:1] for t in example)):
        with torch.no_grad():
            expected = [t.numpy() for t in module(*rows)]
        if fmt == "onnx":
            import onnxruntime as ort

            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            got = session.run(None, {name: t.numpy() for name, t in zip(inputs, rows, strict=True)})
        else:
            with torch.no_grad():
                got = [t.numpy() for t in torch.jit.load(str(path))(*rows)]
        for want, have in zip(expected, got, strict=True):
            diff = float(np.max(np.abs(want - have))) if want.shape == have.shape else float("inf")
            if not diff <= TOLERANCE:
                raise ExportError(
                    f"{graph_name} {fmt}: output differs from PyTorch by {diff:.3g} "
                    f"(tolerance {TOLERANCE}) on {len(rows[0])} row(s); the model was not written"
                )
