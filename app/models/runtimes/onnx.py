"""ONNX Runtime graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from core.errors import StartupError
from core.manifest import Artifact

CUDA_PROVIDER = "CUDAExecutionProvider"


def cuda_available() -> bool:
    return CUDA_PROVIDER in ort.get_available_providers()


class OnnxGraph:
    def __init__(self, path: Path, artifact: Artifact, device: str, threads: int) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if device == "cuda":
            if not cuda_available():
                raise StartupError(
                    "GENSERVE_DEVICE=cuda, but onnxruntime offers no CUDAExecutionProvider "
                    f"(available: {', '.join(ort.get_available_providers())}); install onnxruntime-gpu "
                    "on a machine with an NVIDIA GPU, or use GENSERVE_DEVICE=cpu or auto"
                )
            providers = [CUDA_PROVIDER, "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        if device == "cuda" and self.session.get_providers()[0] != CUDA_PROVIDER:
            raise StartupError(f"{path}: onnxruntime could not place the graph on CUDA (CUDA/cuDNN libraries missing?)")
        self.device = device
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        if self.input_names != artifact.inputs or self.output_names != artifact.outputs:
            raise ValueError(
                f"{path.name}: graph tensors {self.input_names} -> {self.output_names} differ from the manifest's "
                f"{artifact.inputs} -> {artifact.outputs}"
            )

        # On the CPU, the session's own run (its C++ binding) with the output names known: the
        # Python wrapper only re-checks the feed's names (always the graph's, from the manifest)
        # and handles a GPU provider's fallback. It costs a tenth of a small graph's run.
        binding = getattr(self.session, "_sess", None)
        self._run_cpu = binding.run if device == "cpu" and binding is not None else None

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self._run_cpu is not None:
            return self._run_cpu(self.output_names, inputs, None)
        return self.session.run(None, inputs)
