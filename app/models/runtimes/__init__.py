"""Runtimes: a loaded graph runs numpy inputs to numpy outputs. ONNX Runtime and TorchScript
implement the same small protocol; nothing above this package knows which one runs."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from core.manifest import Artifact


class LoadedGraph(Protocol):
    input_names: list[str]
    output_names: list[str]
    device: str  # "cpu" or "cuda"

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]: ...


def load_graph(artifact: Artifact, model_dir: Path, device: str, threads: int) -> LoadedGraph:
    """Load one artifact on `device` ("cpu" or "cuda"; "auto" is resolved before this)."""
    path = model_dir / artifact.path
    if artifact.format == "onnx":
        from app.models.runtimes.onnx import OnnxGraph

        return OnnxGraph(path, artifact, device, threads)
    from app.models.runtimes.torchscript import TorchScriptGraph  # imports torch: only when such a model is served

    return TorchScriptGraph(path, artifact, device, threads)
