"""Rows of an exported model made in-process, without a server: what /generate answers.

z from the model's latent prior (N(0, I) without one), the decoder graph on onnxruntime, then
the same draws and typing as the served path (app/columns.py). Used by training's quality report,
the benchmarks and anything else that wants many rows at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from app.columns import Cell, Table, latent_codes, latent_mixtures
from app.manifest import Manifest, read_manifest
from app.streaming import Block, block_rng, block_sizes, rows_block


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


class Sampler:
    def __init__(self, model_dir: Path, threads: int = 1) -> None:
        self.manifest: Manifest = read_manifest(model_dir)
        self.session, self.inputs = onnx_graph(model_dir, self.manifest, "decoder", threads)
        self.table = Table.of(self.manifest)
        self.prior = latent_mixtures(self.manifest)
        # as the service: true draws for a table model, the decoder's central value otherwise
        self.default_mode = "sample" if self.table is not None else "mean"
        norm = self.manifest.normalization
        self.shift, self.scale = np.asarray(norm.shift, np.float32), np.asarray(norm.scale, np.float32)

    @property
    def names(self) -> list[str]:
        """Column names of the rows made: a table's columns, or the model's features."""
        return self.table.names if self.table is not None else list(self.manifest.feature_names)

    def generate(
        self, n: int, label: int | None, rng: np.random.Generator, mode: str | None = None
    ) -> list[list[Cell]] | np.ndarray:
        """`n` rows for label index `label`, all drawn from `rng`: a table model's values per column
        (schema order), else an array [n, features] in original units. `mode`: sample (draws) or
        mean (central values)."""
        block = self.block(n, label, rng, mode)
        if self.table is None:
            return block.numeric
        return self.table.values(block.numeric, block.codes, block.missing)

    def block(
        self, n: int, label: int | None, rng: np.random.Generator, mode: str | None = None, temperature: float = 1.0
    ) -> Block:
        """`n` rows as arrays, made as /generate makes one block of them (app/streaming.py)."""
        m = self.manifest
        feed = {self.inputs[0]: latent_codes(self.prior, m.latent_dim, n, label, rng, temperature)}
        if m.conditional:
            feed[self.inputs[1]] = np.full(n, label, dtype=np.int64)
        draws = rng if (mode or self.default_mode) == "sample" else None
        return rows_block(m, self.table, self.session.run(None, feed), draws, self.shift, self.scale)[1]

    def blocks(
        self, n: int, label: int | None, seed: int | None, mode: str | None = None, temperature: float = 1.0
    ) -> Iterator[Block]:
        """`n` rows in blocks, the rows /generate and /generate/stream answer for `seed` (None: unseeded)."""
        shared = np.random.default_rng()
        for k, size in enumerate(block_sizes(n)):
            yield self.block(size, label, block_rng(seed, k, shared), mode, temperature)
