"""The graphs of an exported model run in-process, without a server: an ONNX Runtime session on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.manifest import Manifest


def onnx_graph(model_dir: Path, manifest: Manifest, graph: str, threads: int = 1) -> tuple[Any, list[str]]:
    """An exported graph's ONNX session on the CPU, in-process, with its input names."""
    import onnxruntime as ort

    artifact = getattr(manifest, graph).artifact("onnx")
    if artifact is None:
        raise ValueError(f"{model_dir}: the {graph} has no ONNX artifact")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model_dir / artifact.path), options, providers=["CPUExecutionProvider"])
    return session, artifact.inputs
