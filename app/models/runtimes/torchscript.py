"""TorchScript graphs. This module imports torch; it is imported only when a TorchScript model is served."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.errors import StartupError
from core.manifest import Artifact


def cuda_available() -> bool:
    return torch.cuda.is_available()


class TorchScriptGraph:
    def __init__(self, path: Path, artifact: Artifact, device: str, threads: int) -> None:
        if device == "cuda" and not cuda_available():
            raise StartupError(
                "GENSERVE_DEVICE=cuda, but torch sees no CUDA device (torch.cuda.is_available() is False)"
            )
        torch.set_num_threads(threads)
        self.device = device
        self.module = torch.jit.load(str(path), map_location=device).eval()
        self.input_names = list(artifact.inputs)
        self.output_names = list(artifact.outputs)

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        args = [torch.from_numpy(inputs[name]).to(self.device) for name in self.input_names]
        with torch.inference_mode():
            outputs = self.module(*args)
        return [t.cpu().numpy() for t in outputs]
