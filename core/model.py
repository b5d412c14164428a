"""A model version as generation and scoring see it, and the two algorithms themselves, each written once.

`Model` makes a manifest into what both need (its table, latent prior, the prior its scores take
their KL to, whether they add the single-feature surprise, the default mode, the normalisation), and
holds one generation path (`block`, `blocks`) and one scoring path (`score`, `bands`) as `Steps`
(core/runner.py): the service runs them on its Batchers (app/models/served_model.py), offline code on
ONNX Runtime in-process (core/offline.py), and a seed's rows or a row's score are the same either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np

from core.errors import Unreachable
from core.generation import Block, block_rng, block_sizes, rows_block
from core.manifest import Manifest
from core.prior import latent_codes, latent_mixtures
from core.rules import Conditions, RowRules, Values
from core.runner import Steps
from core.scoring import (
    RowScores,
    band_distances,
    central_band,
    observed_numeric,
    pieces,
    row_scores,
    scoring_prior,
    surprise_scores,
    takes_surprise,
    typical_codes,
    with_neutral_copies,
)
from core.table import Table

Mode = Literal["sample", "mean"]
# a block whose rows must hold rules or conditions draws again until it has its rows: at most MAX_ROUNDS draws
# of at most MAX_ROUND_ROWS rows each, and no more than MAX_DRAWN_ROWS rows (or 10 times the block's) in all
MAX_ROUNDS, MAX_ROUND_ROWS, MAX_DRAWN_ROWS = 1_000, 4096, 200_000


class Model:
    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.table = Table.of(manifest)
        self.rules = RowRules.of(manifest, self.table)  # None: no rules to hold
        self.label_column = manifest.training.label_column if manifest.conditional else None
        self.prior = latent_mixtures(manifest)
        self.scoring_prior = scoring_prior(manifest, self.prior)  # what scores' KL is to
        self.surprise = takes_surprise(manifest)  # whether scores add the largest single-feature surprise
        # a table model answers true draws by default; an image model the decoder's central value
        self.default_mode: Mode = "sample" if self.table is not None else "mean"
        norm = manifest.normalization
        self.shift, self.scale = np.asarray(norm.shift, np.float32), np.asarray(norm.scale, np.float32)
        self._rows_scale = None if np.all(self.scale == 1) else self.scale  # None: rows_block's unit-scale shortcut
        self.label_index = {name: i for i, name in enumerate(manifest.labels or [])}
        labels = manifest.labels or []
        weights = np.asarray(manifest.label_weights or [1.0] * len(labels), dtype=np.float64)
        self.label_weights = weights / weights.sum() if len(labels) else None  # drawn from without a label

    @property
    def names(self) -> list[str]:
        """Column names of the rows made: a table's columns, or the model's features."""
        return self.table.names if self.table is not None else list(self.manifest.feature_names)

    def draws(self, mode: str | None) -> bool:
        """Whether `mode` (None: the model's default) draws from p(x | z[, y]) rather than taking central values."""
        return (mode or self.default_mode) == "sample"

    # ---- generation -----------------------------------------------------------------------

    def block(
        self,
        rows: int,
        label: int | None,
        rng: np.random.Generator,
        temperature: float = 1.0,
        draws: bool = True,
        weights: np.ndarray | None = None,
        conditions: Conditions | None = None,
    ) -> Steps[tuple[np.ndarray, Block]]:
        """One block of generated rows for label index `label`: codes from the latent prior, decoded, then
        drawn from p(x | z[, y]) (`draws`) or the head's central value, all with `rng`; (the numeric block on
        the model's scale, the rows). A conditional model asked for no label draws each row's label first,
        from `weights` (None: the training shares).

        A model with rules (core/rules.py) makes each block's rows hold them: what can be made is made, and
        rows that break a rule checked are drawn again; a request's `conditions` keep the rows that meet them.
        The first draw is `rows` rows (a block whose rows all hold is the one draw a model without rules
        makes); each later one as many as the share held so far says are needed, at most MAX_ROUND_ROWS,
        until MAX_DRAWN_ROWS (or MAX_ROUNDS draws) are spent: then Unreachable, with the rows found. Not
        checked for finite values: the caller checks what it answers."""
        if self.rules is None and not conditions:  # the one draw a model without rules makes
            return (yield from self._draw(rows, label, rng, temperature, draws, weights))
        made: list[tuple[np.ndarray, Block]] = []
        held = drawn = 0
        size = rows
        for round_ in range(MAX_ROUNDS):
            numeric, block = yield from self._draw(size, label, rng, temperature, draws, weights)
            values = Values(self.table, block.numeric, block.codes, block.missing, block.labels, self.label_column)
            keep = np.ones(len(block), dtype=bool) if self.rules is None else self.rules.hold(values)
            if conditions:
                keep &= conditions.hold(values)
            if round_ == 0 and keep.all():
                return numeric, block
            made.append((numeric[keep], block.take(keep)))
            held, drawn = held + int(keep.sum()), drawn + size
            if held >= rows:
                kept = np.arange(rows)
                return np.concatenate([n for n, _ in made])[kept], Block.join([b for _, b in made]).take(kept)
            if drawn >= max(MAX_DRAWN_ROWS, rows * 10):
                break
            share = (held + 1) / (drawn + 2)  # what the next draw expects to keep (Laplace: none kept yet is not 0)
            size = int(min(MAX_ROUND_ROWS, max(rows, np.ceil(1.2 * (rows - held) / share))))
        if conditions:
            what = f"meet the conditions on {conditions.text()}" + (" and hold its rules" if self.rules else "")
        else:
            what = "hold its rules (" + "; ".join(r.text() for r in self.rules.rules) + ")"  # type: ignore[union-attr]
        raise Unreachable(
            f"{held:,} of the {drawn:,} rows the model drew {what}: fewer than the {rows:,} asked; the model makes "
            "such rows too rarely (loosen a condition, or ask for fewer rows)",
            details={"asked": rows, "found": held, "drawn": drawn},
        )

    def _draw(
        self,
        rows: int,
        label: int | None,
        rng: np.random.Generator,
        temperature: float,
        draws: bool,
        weights: np.ndarray | None,
    ) -> Steps[tuple[np.ndarray, Block]]:
        m = self.manifest
        if label is None and self.label_weights is not None:
            y, z = self._mixed_codes(rows, rng, temperature, self.label_weights if weights is None else weights)
        else:
            z = latent_codes(self.prior, m.latent_dim, rows, label, rng, temperature)
            y = None if label is None else np.full(rows, label, dtype=np.int64)
        outputs = yield "decoder", z, y
        numeric, block = rows_block(m, self.table, outputs, rng if draws else None, self.shift, self._rows_scale)
        block.labels = y
        return numeric, block

    def _mixed_codes(
        self, rows: int, rng: np.random.Generator, temperature: float, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(a label index per row drawn from `weights`, then each row's code from its label's prior)."""
        cdf = np.cumsum(weights)
        y = np.minimum(cdf.searchsorted(rng.random(rows) * cdf[-1], side="right"), len(weights) - 1)
        z = np.empty((rows, self.manifest.latent_dim), dtype=np.float32)
        for k in np.unique(y).tolist():
            chosen = y == k
            z[chosen] = latent_codes(self.prior, self.manifest.latent_dim, int(chosen.sum()), k, rng, temperature)
        return y.astype(np.int64), z

    def blocks(
        self,
        n: int,
        label: int | None,
        seed: int | None,
        shared: np.random.Generator,
        temperature: float = 1.0,
        draws: bool = True,
        weights: np.ndarray | None = None,
        conditions: Conditions | None = None,
    ) -> Iterator[Steps[tuple[np.ndarray, Block]]]:
        """`n` rows as blocks (core/generation.py: a seed's rows whether streamed or not, served or offline);
        an unseeded request's blocks draw from `shared`. Each block is made when it is run."""
        for k, size in enumerate(block_sizes(n)):
            yield self.block(size, label, block_rng(seed, k, shared), temperature, draws, weights, conditions)

    # ---- scoring --------------------------------------------------------------------------

    def score(
        self, x: np.ndarray, y: np.ndarray | None, piece_rows: int
    ) -> Steps[tuple[RowScores, np.ndarray, list[np.ndarray]]]:
        """Anomaly scores of rows `x` on the model's scale (core/scoring.py), with the rows' own posterior
        means and the decoder's outputs there. The rows and their neutral copies run in pieces of at most
        `piece_rows`, each reduced to its scores before the next."""
        n, d = len(x), self.manifest.numeric_dim
        x_all, y_all = with_neutral_copies(x, y, d) if self.surprise else (x, y)
        scores, terms, first = [], [], None
        for x_piece, y_piece in pieces(x_all, y_all, piece_rows):
            mean, log_var = yield "encoder", x_piece, y_piece
            outputs = yield "decoder", mean, y_piece
            s, t = row_scores(self.manifest, x_piece, mean, log_var, outputs, self.table, self.scoring_prior, y_piece)
            scores.append(s)
            terms.append(t)
            if first is None:  # the rows themselves lead the first piece
                first = (mean[:n], [o[:n] for o in outputs])
        scored = surprise_scores(np.concatenate(scores), np.concatenate(terms), observed_numeric(self.table, x, d))
        assert first is not None
        return scored, *first

    def bands(
        self, x: np.ndarray, y: np.ndarray | None, mean: np.ndarray, outputs: list[np.ndarray] | None, level: float
    ) -> Steps[np.ndarray]:
        """How far outside its central `level` band each numeric value of rows `x` lies (band_distances), the
        bands read at the rows' codes pulled back within the prior's typical radius (`typical_codes`);
        `outputs`, the decoder's at `mean` when known, are reused where no code moved. ValueError when the
        head has no such band."""
        typical = typical_codes(mean)
        if outputs is not None and np.array_equal(typical, mean):
            band_outputs = outputs
        else:
            band_outputs = yield "decoder", typical, y
        band = central_band(self.manifest, band_outputs, level)
        return band_distances(x[:, : self.manifest.numeric_dim].astype(np.float64), band)
