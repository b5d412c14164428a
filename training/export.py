"""Export a trained model to the model repository: ONNX and TorchScript graphs, checked
against PyTorch on real rows, and a manifest that records every artifact's sha256."""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from collections.abc import Callable
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


class ExportError(RuntimeError):
    """The exported graphs do not reproduce the PyTorch model; nothing was written."""


class ServedDecoder(nn.Module):
    """The decoder as served: probabilities, not logits. A Bernoulli head gives sigmoid(logits);
    a table's discrete logits become `discrete_probs`: a softmax per categorical column, then a
    sigmoid per missing indicator (app/columns.py reads them in that order)."""

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


def next_version(models_dir: Path, name: str) -> int:
    versions = model_versions(models_dir, name)
    return versions[-1] + 1 if versions else 1


def export(
    model: VAE,
    manifest_fields: dict,
    sample_x: np.ndarray,
    sample_y: np.ndarray | None,
    models_dir: Path,
    name: str,
    formats: tuple[ArtifactFormat, ...] = FORMATS,
    review: Callable[[Path], dict] | None = None,
    promote: Choice = "auto",
    files: dict[str, str] | None = None,
) -> Path:
    """Write `models_dir/name/<next version>/` and return it.

    `sample_x`/`sample_y` are real (normalised) rows the graphs are checked on. `review`, when
    given, is called with the staged (complete) version directory and returns fields that join
    the manifest's `evaluation` (the quality report of its generated rows), and may write figures
    beside it; `files` (name -> text: the history, its figures) are written too. The directory appears
    only once every check has passed; whether `name` resolves to it is decided then
    (app/promotion.py: its figures against the default version's, or `promote`).
    """
    model.eval()
    version = next_version(models_dir, name)
    staging = models_dir / name / f".tmp-{version}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
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
                path = staging / f"{graph_name}{_SUFFIX[fmt]}"
                _write(fmt, module, examples[graph_name], inputs, outputs, path)
                _verify(fmt, path, module, examples[graph_name], inputs, graph_name)
                artifacts.append(
                    Artifact(format=fmt, path=path.name, sha256=sha256_file(path), inputs=inputs, outputs=outputs)
                )
            written[graph_name] = Graph(artifacts=artifacts)
        manifest = Manifest(
            name=name, version=version, encoder=written["encoder"], decoder=written["decoder"], **manifest_fields
        )
        (staging / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
        for file_name, text in (files or {}).items():
            (staging / file_name).write_text(text)
        if review is not None:
            evaluation = manifest.evaluation.model_copy(update=review(staging))
            manifest = manifest.model_copy(update={"evaluation": Evaluation.model_validate(evaluation.model_dump())})
        manifest = manifest.model_copy(update={"promotion": decide(models_dir, manifest, promote)})
        (staging / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
        final = models_dir / name / str(version)
        staging.rename(final)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
