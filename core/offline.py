"""A model run in-process, without a server: its graphs on ONNX Runtime (core/runner.py) and the service's
own generation and scoring (core/model.py). Training's quality report and calibration, `python -m training
sample` and the benchmarks use these."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from core.generation import Block
from core.model import Model
from core.repository import read_manifest
from core.rules import Conditions
from core.runner import OnnxRunner, run_steps
from core.scoring import KL_TO_PRIOR, SCORE_PIECE_ROWS, RowScores, calibrate
from core.table import Cell


class Sampler:
    """Rows of an exported model, made as /generate makes them."""

    def __init__(self, model_dir: Path, threads: int = 1) -> None:
        self.model = Model(read_manifest(model_dir))
        self.manifest, self.table, self.prior = self.model.manifest, self.model.table, self.model.prior
        self.runner = OnnxRunner(model_dir, self.manifest, threads)

    @property
    def names(self) -> list[str]:
        return self.model.names

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
        """`n` rows as arrays, made as /generate makes one block of them."""
        return run_steps(self.model.block(n, label, rng, temperature, self.model.draws(mode)), self.runner)[1]

    def blocks(
        self,
        n: int,
        label: int | None,
        seed: int | None,
        mode: str | None = None,
        temperature: float = 1.0,
        weights: np.ndarray | None = None,
        conditions: Conditions | None = None,
    ) -> Iterator[Block]:
        """`n` rows in blocks, the rows /generate and /generate/stream answer for `seed` (None: unseeded);
        a conditional model's rows of every label (drawn from `weights`, else the training shares) for
        `label` None; with `conditions` (core/rules.py), only rows that meet them."""
        draws = self.model.draws(mode)
        for steps in self.model.blocks(
            n, label, seed, np.random.default_rng(), temperature, draws, weights, conditions
        ):
            yield run_steps(steps, self.runner)[1]


class AnomalyScorer:
    """Scores rows on the model's scale, as /anomaly computes them (training calibrates its thresholds
    with it; benchmarks use it)."""

    def __init__(self, model_dir: Path, threads: int = 1) -> None:
        self.model = Model(read_manifest(model_dir))
        self.manifest, self.table = self.model.manifest, self.model.table
        self.prior, self.surprise = self.model.scoring_prior, self.model.surprise
        self.runner = OnnxRunner(model_dir, self.manifest, threads)

    def score(self, x: np.ndarray, y: np.ndarray | None = None) -> RowScores:
        """Rows on the model's scale (and label indices for a conditional model)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        return run_steps(self.model.score(x, y, SCORE_PIECE_ROWS), self.runner)[0]  # pieces bound a split's copies

    def calibration(self, x: np.ndarray, y: np.ndarray | None = None) -> dict:
        """`calibrate` on these normal rows' scores, with what the scores were: the KL to the model's
        prior, and the surprise added or not (`scoring_prior`, `takes_surprise` read them back)."""
        return {**calibrate(self.score(x, y).score), "kl_to": KL_TO_PRIOR, "surprise": self.surprise}

    def distances(self, x: np.ndarray, y: np.ndarray | None = None, level: float = 0.9) -> np.ndarray:
        """band_distances of rows on the model's scale, as /anomaly ranks the features it names."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        mean, _ = self._run("encoder", x, y)
        return run_steps(self.model.bands(x, y, mean, None, level), self.runner)

    def _run(self, graph: str, first: np.ndarray, y: np.ndarray | None) -> list[np.ndarray]:
        return self.runner(graph, first, y)
