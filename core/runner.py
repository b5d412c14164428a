"""How generation and scoring run a model's graphs, written once for the service and for offline code.

An algorithm over the graphs (core/generation.py, core/scoring.py) is a generator of `Steps`: it
yields each graph call it needs, `(graph, rows, labels)`, is sent back that graph's outputs, and
returns its result. Who runs the calls is not its business: `run_steps` drives it with a plain
function (offline: `OnnxRunner`, an ONNX Runtime session on the CPU, in-process), `run_steps_async`
with a coroutine (the service: its Batchers, app/models/served_model.py). The same code makes a
seed's rows, or a row's score, whichever runs it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from core.manifest import Manifest

T = TypeVar("T")
# One call of a graph: its name ("encoder" or "decoder"), its first input (rows or latent codes), and the
# rows' label indices for a conditional model (None otherwise).
GraphCall = tuple[str, np.ndarray, np.ndarray | None]
Steps = Generator[GraphCall, list[np.ndarray], T]
Run = Callable[[str, np.ndarray, np.ndarray | None], list[np.ndarray]]
RunAsync = Callable[[str, np.ndarray, np.ndarray | None], Awaitable[list[np.ndarray]]]


def run_steps(steps: Steps[T], run: Run) -> T:
    """Drive `steps` to its result, each graph call answered by `run`."""
    try:
        call = next(steps)
        while True:
            call = steps.send(run(*call))
    except StopIteration as done:
        return done.value


async def run_steps_async(steps: Steps[T], run: RunAsync) -> T:
    """Drive `steps` to its result, each graph call awaited on `run`."""
    try:
        call = next(steps)
        while True:
            call = steps.send(await run(*call))
    except StopIteration as done:
        return done.value


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


class OnnxRunner:
    """An exported model's graphs on ONNX Runtime, in-process, each session made when first called."""

    def __init__(self, model_dir: Path, manifest: Manifest, threads: int = 1) -> None:
        self.model_dir, self.manifest, self.threads = model_dir, manifest, threads
        self.graphs: dict[str, tuple[Any, list[str]]] = {}

    def graph(self, name: str) -> tuple[Any, list[str]]:
        """The graph's session and its input names."""
        if name not in self.graphs:
            self.graphs[name] = onnx_graph(self.model_dir, self.manifest, name, self.threads)
        return self.graphs[name]

    def __call__(self, name: str, first: np.ndarray, labels: np.ndarray | None) -> list[np.ndarray]:
        session, inputs = self.graph(name)
        feed = {inputs[0]: first}
        if labels is not None:
            feed[inputs[1]] = np.asarray(labels, dtype=np.int64)
        return session.run(None, feed)
