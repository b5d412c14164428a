"""A loaded model version: request rows in the data's original units in, answers out.

The numerical work beside the graphs lives here: checking rows and labels against the
manifest, normalising and de-normalising, sampling latent codes, and reading each head's
outputs. Routes only call these methods.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import numpy as np

from app.models.batching import Batcher
from core.errors import InvalidInput, ModelFault, Overloaded, RequestTimeout
from core.generation import BLOCK_ROWS, Block, block_rng, rows_block
from core.heads import HEADS, head_values
from core.manifest import Manifest
from core.model import Mode, Model
from core.rules import Conditions
from core.runner import Steps, run_steps_async
from core.scoring import observed_numeric
from core.table import Cell, RowError, category_key

P = ParamSpec("P")
R = TypeVar("R")
logger = logging.getLogger("genserve")
FAR_INPUT = 100.0  # model's scale (standard deviations): a non-finite result from farther out is the input's fault
_NUMBERS = frozenset((float, int))  # a JSON number as parsed; bool (an int subclass) is not one
Row = Sequence[Cell] | dict[str, Cell]


@dataclass
class TableRows:
    """A table model's rows as typed values, column by column (schema order)."""

    columns: list[str]
    values: list[list[Cell]]


def _holding(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """An endpoint method holds its model while it runs: a reload retires a version only once nothing holds it."""

    @functools.wraps(method)
    async def held(self: ServedModel, *args: P.args, **kwargs: P.kwargs) -> R:
        self.in_flight += 1  # as `with self.hold()`, without a generator's context manager per request
        try:
            return await method(self, *args, **kwargs)
        finally:
            self.in_flight -= 1

    return held  # type: ignore[return-value]


@dataclass
class ServedModel:
    manifest: Manifest
    encoder: Batcher
    decoder: Batcher
    device: str
    backend: str
    max_rows: int

    def __post_init__(self) -> None:
        self.model = Model(self.manifest)  # generation and scoring, as offline code runs them (core/model.py)
        self.table, self.label_index = self.model.table, self.model.label_index
        self.shift, self.scale, self.default_mode = self.model.shift, self.model.scale, self.model.default_mode
        # shift 0 and scale 1 (most image models): original units are the model's own
        self._identity_units = bool((self.shift == 0).all() and (self.scale == 1).all())
        # Unseeded requests draw from one long-lived generator: seeding a fresh one from the
        # OS's entropy on every request costs more than the draw itself.
        self._rng = np.random.default_rng()
        self.in_flight = 0  # requests running on this version (see hold)

    @property
    def ref(self) -> str:
        return f"{self.manifest.name}@{self.manifest.version}"

    def start(self) -> None:
        self.encoder.start()
        self.decoder.start()

    async def stop(self) -> None:
        """Refuse new rows; the queued ones are run first."""
        await self.encoder.stop()
        await self.decoder.stop()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Keep this version's batchers running while a request uses them, even if a reload retires it."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    # ---- checks -------------------------------------------------------------------------

    def check_rows(self, inputs: Sequence[Row]) -> np.ndarray:
        """Rows in original units -> float32 array [n, input_dim], or a 422 that says what is wrong."""
        dim = self.manifest.input_dim
        if len(inputs) > self.max_rows:
            raise InvalidInput(
                f"{len(inputs)} rows in one request; the limit is {self.max_rows} (GENSERVE_MAX_SAMPLES)"
            )
        # one pass in C over every cell's type; the slow search for the culprit only when one is wrong
        if any(row.__class__ is not list for row in inputs) or not _NUMBERS.issuperset(
            map(type, itertools.chain.from_iterable(inputs))
        ):
            self._refuse_cell(inputs)
        for i, row in enumerate(inputs):
            if len(row) != dim:
                raise InvalidInput(
                    f"row {i} has {len(row)} values; model {self.ref} takes rows of {dim} features",
                    details={"row": i, "expected": dim, "got": len(row)},
                )
        with np.errstate(over="ignore"):  # beyond float32's range becomes inf, reported below
            try:
                x = np.asarray(inputs, dtype=np.float32)
            except OverflowError:  # an integer beyond any float: as far out of range as inf
                x = np.asarray([[float("inf") if abs(v) > 1e300 else v for v in row] for row in inputs], np.float32)
        bad = ~np.isfinite(x)
        if bad.any():
            row, col = (int(v) for v in np.argwhere(bad)[0])
            raise InvalidInput(
                f"row {row}, feature {col} is not a finite float32 number ({inputs[row][col]!r})",
                details={"row": row, "feature": col},
            )
        return x

    def _refuse_cell(self, inputs: Sequence[Row]) -> None:
        """A 422 for the first row that is not a list, or the first cell that is not a number."""
        for i, row in enumerate(inputs):
            if row.__class__ is not list:
                raise InvalidInput(
                    f"row {i} is {_json_kind(row)}; model {self.ref} has no column schema and takes rows as lists "
                    f"of {self.manifest.input_dim} numbers in the order of its feature_names",
                    details={"row": i},
                )
            bad = next((j for j, v in enumerate(row) if v.__class__ not in _NUMBERS), None)
            if bad is not None:
                raise InvalidInput(
                    f"row {i}, feature {bad} holds {row[bad]!r}; model {self.ref} takes numbers only",
                    details={"row": i, "feature": bad},
                )

    def table_rows(self, inputs: Sequence[Row]) -> tuple[np.ndarray, np.ndarray]:
        """A table model's request rows -> (category indices, encoded rows), or a 422
        that names the row, the column and what the column allows."""
        assert self.table is not None
        if len(inputs) > self.max_rows:
            raise InvalidInput(
                f"{len(inputs)} rows in one request; the limit is {self.max_rows} (GENSERVE_MAX_SAMPLES)"
            )
        try:
            numeric, codes = self.table.parse_rows(inputs)
        except RowError as e:
            raise InvalidInput(f"{e} (model {self.ref})", details=e.details) from None
        return codes, self.table.encode(numeric, codes)

    def _encoded(self, inputs: Sequence[Row]) -> np.ndarray:
        """Request rows -> the encoder's input: a table's encoded rows, or normalised numbers."""
        if self.table is not None:
            return self.table_rows(inputs)[1]
        return self._normalised(self.check_rows(inputs))

    def _normalised(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused by _encode
            return (x - self.shift) / self.scale

    def check_labels(
        self, labels: Sequence[str | int] | None, rows: int, inputs: Sequence[Row] | None = None
    ) -> np.ndarray | None:
        """Label names -> int64 indices for a conditional model; None for an unconditional one.
        A model trained on integer labels also takes them as JSON integers. Without `labels`, a table's
        rows may carry them in the label column, as the training table did."""
        valid = self.manifest.labels
        if valid is None:
            if labels is not None:
                raise InvalidInput(f"model {self.ref} is unconditional: leave out the label(s)")
            return None
        if labels is None and inputs is not None:
            labels = self._row_labels(inputs)
        if labels is None:
            column = f" (or the label column {self.table.label.codec.column.name!r} in each row)" if self.table else ""
            raise InvalidInput(
                f"model {self.ref} is conditional: give a label{column}, one of {valid}",
                details={"valid_labels": valid},
            )
        if len(labels) != rows:
            raise InvalidInput(f"{len(labels)} labels for {rows} rows: give one label per row")
        try:
            return np.fromiter((self.label_index[str(name)] for name in labels), dtype=np.int64, count=rows)
        except KeyError as e:
            raise InvalidInput(
                f"unknown label {e.args[0]!r} for model {self.ref}; valid labels: {valid}",
                details={"valid_labels": valid},
            ) from None

    def _row_labels(self, inputs: Sequence[Row]) -> list[str | int] | None:
        """The labels request rows carry in the label column (rows as objects, every one with it), else None."""
        label = self.table.label if self.table is not None else None
        if label is None or not inputs:
            return None
        name = label.codec.column.name
        if not all(isinstance(row, dict) and row.get(name) is not None for row in inputs):
            return None
        return [category_key(row[name]) for row in inputs]  # type: ignore[call-overload]

    # ---- graphs -------------------------------------------------------------------------

    def _feed(self, first: np.ndarray, y: np.ndarray | None, graph: Batcher) -> dict[str, np.ndarray]:
        names = graph.graph.input_names
        return {names[0]: first} if y is None else {names[0]: first, names[1]: y}

    async def _encode(self, x_norm: np.ndarray, y: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        _require_finite_input(x_norm, "the normalised input")
        mean, log_var = await self.encoder.run(self._feed(x_norm, y, self.encoder))
        self._require_finite(mean, "the encoder's output", x_norm)
        return mean, log_var

    async def _decode(self, z: np.ndarray, y: np.ndarray | None) -> list[np.ndarray]:
        # not checked here: a non-finite output carries into the answer, which is checked in full
        return await self.decoder.run(self._feed(z, y, self.decoder))

    def _numeric(self, outputs: list[np.ndarray], rng: np.random.Generator | None) -> np.ndarray:
        """The numeric block on the model's scale: a draw from the head when `rng` is given, else its
        central value. Not checked here: the answer in original units is."""
        m = self.manifest
        return head_values(m.head, outputs, m.quantile_levels, bool(m.discrete_dim), rng)

    def _rows(
        self, outputs: list[np.ndarray], rng: np.random.Generator | None, inputs: np.ndarray | None = None
    ) -> tuple[np.ndarray, Block]:
        """A table model's rows from the decoder's outputs (drawn with `rng`, else central values),
        checked, with the numeric block on the model's scale behind them: generated rows, or with
        `inputs` the reconstructions of those rows."""
        z, block = rows_block(self.manifest, self.table, outputs, rng, self.shift, self.scale, inputs is None)
        self._require_finite(z, "the decoded value", inputs)
        return z, block

    def _discrete(self, outputs: list[np.ndarray]) -> np.ndarray | None:
        return outputs[-1] if self.manifest.discrete_dim else None

    def _original_units(self, x_norm: np.ndarray, inputs: np.ndarray | None = None) -> np.ndarray:
        if self._identity_units:  # x * 1 is x: adding the zero shift gives the same values (and -0.0 as 0.0)
            x = x_norm + self.shift
        else:
            with np.errstate(over="ignore"):
                x = x_norm * self.scale + self.shift
        self._require_finite(x, "the result in original units", inputs)
        return x

    def _require_finite(self, values: np.ndarray, what: str, inputs: np.ndarray | None) -> None:
        require_finite(values, what, f"model {self.ref}", inputs)

    # ---- endpoints ----------------------------------------------------------------------

    def _label(self, label: str | int | None) -> int | None:
        """A request's label -> its index (None for an unconditional model, or a table model asked for
        its labels' mix), or a 422 with the valid ones."""
        index = self.label_index.get(label) if label is not None else None  # type: ignore[arg-type]
        if index is not None:  # a known label of a conditional model: the common case, quickly
            return index
        if label is None and self.table is not None:  # rows of every label, in the training shares
            return None
        y = self.check_labels(None if label is None else [label], 1)  # anything else: checked, refused when wrong
        return None if y is None else int(y[0])

    def asked(
        self, label: str | int | None, weights: dict[str, float] | None, conditions: dict[str, Any] | None
    ) -> tuple[int | None, np.ndarray | None, Conditions | None]:
        """A generation request's label, label_weights and conditions -> (the label index, the shares to draw
        labels from, the conditions checked against the model), or a 422 naming what cannot be met. A condition
        on the label column is the label."""
        if not conditions:
            return self._label(label), self.label_mix(label, weights), None
        if self.table is None:
            raise InvalidInput(f"model {self.ref} has no columns to condition on: leave out conditions")
        compiled = Conditions(self.manifest, self.table, conditions)
        index = self._label(label)
        if compiled.label is not None:
            if label is not None and index != compiled.label:
                raise InvalidInput("the label and the condition on the label column differ: give one of them")
            if weights is not None:
                raise InvalidInput("give label_weights or a condition on the label column, not both")
            index = compiled.label
        return index, self.label_mix(label, weights), compiled or None

    def label_mix(self, label: str | int | None, weights: dict[str, float] | None) -> np.ndarray | None:
        """`label_weights` of a request -> the shares to draw labels from (None: the training shares), or a
        422: weights are for a conditional table model asked for no label, and name its labels."""
        if weights is None:
            return None
        valid = self.manifest.labels
        if valid is None or self.table is None:
            raise InvalidInput(f"model {self.ref} has no label column to draw: leave out label_weights")
        if label is not None:
            raise InvalidInput("give either a label or label_weights, not both")
        unknown = [k for k in weights if k not in self.label_index]
        if unknown:
            raise InvalidInput(
                f"label_weights names unknown label {unknown[0]!r}; valid labels: {valid}",
                details={"valid_labels": valid},
            )
        mix = np.zeros(len(valid), dtype=np.float64)
        for name, weight in weights.items():
            mix[self.label_index[name]] = weight
        if not mix.sum() > 0:
            raise InvalidInput("label_weights are all 0: give at least one label a positive weight")
        return mix / mix.sum()

    async def _run(self, graph: str, first: np.ndarray, y: np.ndarray | None) -> list[np.ndarray]:
        """A graph call of core/model.py's steps, on this version's Batchers (a block drawing again for its
        rules or conditions may ask for more rows than a request may: in pieces of at most that)."""
        if graph == "encoder":
            return list(await self._encode(first, y))
        if len(first) <= self.max_rows:
            return await self._decode(first, y)
        pieces = [
            await self._decode(first[i : i + self.max_rows], None if y is None else y[i : i + self.max_rows])
            for i in range(0, len(first), self.max_rows)
        ]
        return [np.concatenate(p) for p in zip(*pieces, strict=True)]

    async def _run_patiently(self, graph: str, first: np.ndarray, y: np.ndarray | None) -> list[np.ndarray]:
        return await self._decode_patiently(first, y)

    async def _block(self, steps: Steps[tuple[np.ndarray, Block]], patient: bool) -> Block:
        """One block of generated rows (Model.block), checked. A `patient` block (a stream's) waits for room
        in a full queue instead of refusing: a long stream yields to others."""
        z, block = await run_steps_async(steps, self._run_patiently if patient else self._run)
        if self.table is None:
            self._require_finite(block.numeric, "the result in original units", None)
        else:
            self._require_finite(z, "the decoded value", None)
        return block

    async def _decode_patiently(self, z: np.ndarray, y: np.ndarray | None) -> list[np.ndarray]:
        """Decode as `_decode`, waiting for room instead of failing: after the queue refuses a piece
        (full) or lets it time out, the piece is asked again at half the size, down to one row, so it
        gets in whenever the queue has any room at all."""
        piece = min(len(z), self.max_rows)  # fits an empty queue (GENSERVE_MAX_QUEUE >= MAX_SAMPLES)
        parts, start = [], 0
        while start < len(z):
            end = min(start + piece, len(z))
            try:
                parts.append(await self._decode(z[start:end], None if y is None else y[start:end]))
            except (Overloaded, RequestTimeout):
                piece = max(1, piece // 2)
                await asyncio.sleep(0.005)
                continue
            start = end
        return parts[0] if len(parts) == 1 else [np.concatenate(p) for p in zip(*parts, strict=True)]

    @_holding
    async def generate(
        self,
        n: int,
        label: str | int | None,
        seed: int | None,
        temperature: float,
        mode: Mode | None = None,
        weights: dict[str, float] | None = None,
        conditions: dict[str, Any] | None = None,
    ) -> np.ndarray | TableRows:
        """`n` rows for `label`: draws from p(x | z[, y]) (`sample`) or the decoder's central value
        (`mean`); an all-numeric model answers an array in original units, a table model typed rows
        (a conditional one's with the label column; with no label, labels drawn from `weights` or the
        training shares). Made in blocks (core/generation.py), so a seed's rows are those
        /generate/stream gives."""
        if n > self.max_rows:
            raise InvalidInput(
                f"n={n} is above the limit of {self.max_rows} samples (GENSERVE_MAX_SAMPLES); "
                "POST /generate/stream streams up to GENSERVE_MAX_STREAM_ROWS rows"
            )
        (index, mix, held), draws = self.asked(label, weights, conditions), self.model.draws(mode)
        if n <= BLOCK_ROWS:  # one block (Model.blocks' first), without the generator and the join
            steps = self.model.block(n, index, block_rng(seed, 0, self._rng), temperature, draws, mix, held)
            block = await self._block(steps, False)
        else:
            blocks = self.model.blocks(n, index, seed, self._rng, temperature, draws, mix, held)
            block = Block.join([await self._block(s, patient=False) for s in blocks])
        if self.table is not None:
            names = self.table.output_names(block.labels is not None)
            return TableRows(names, self.table.values(block.numeric, block.codes, block.missing, block.labels, 0))
        return block.numeric

    def stream(
        self,
        n: int,
        label: str | int | None,
        seed: int | None,
        temperature: float,
        mode: Mode | None = None,
        weights: dict[str, float] | None = None,
        conditions: dict[str, Any] | None = None,
    ) -> AsyncGenerator[Block, None]:
        """`n` rows as blocks, made as they are consumed (labels as `generate` draws them). The label is
        checked now (a 422 before any row). The model is held from the first block's request (`anext`)
        until the last block, or until the generator is closed."""
        index, mix, held = self.asked(label, weights, conditions)
        draws = self.model.draws(mode)

        async def blocks() -> AsyncGenerator[Block, None]:
            with self.hold():
                for steps in self.model.blocks(n, index, seed, self._rng, temperature, draws, mix, held):
                    yield await self._block(steps, patient=True)

        return blocks()

    @_holding
    async def encode(self, inputs: Sequence[Row], labels: Sequence[str | int] | None) -> tuple[np.ndarray, np.ndarray]:
        x_norm = self._encoded(inputs)
        return await self._encode(x_norm, self.check_labels(labels, len(x_norm), inputs))

    @_holding
    async def reconstruct(
        self, inputs: Sequence[Row], labels: Sequence[str | int] | None
    ) -> tuple[np.ndarray | TableRows, np.ndarray, np.ndarray | None]:
        """Reconstructions at the latent mean (central values), each row's error, and for a table
        each column's error.

        All-numeric model: the mean squared error in original units. Table: per column, numeric
        columns the squared difference on the model's normal-score scale (1 is about one standard
        deviation, squared), categorical columns 0 when the category comes back and 1 when not, a
        value missing on one side only 1; a row's error is the mean over its modelled columns."""
        if self.table is None:
            x = self.check_rows(inputs)
            y = self.check_labels(labels, len(x))
            x_norm = self._normalised(x)
            mean, _ = await self._encode(x_norm, y)
            reconstruction = self._original_units(self._numeric(await self._decode(mean, y), None), x_norm)
            errors = ((reconstruction.astype(np.float64) - x) ** 2).mean(axis=1)  # float64: inputs may be ~1e30
            self._require_finite(errors, "the reconstruction error", x_norm)
            return reconstruction, errors, None
        table = self.table
        codes, x_enc = self.table_rows(inputs)
        y = self.check_labels(labels, len(x_enc), inputs)
        mean, _ = await self._encode(x_enc, y)
        outputs = await self._decode(mean, y)
        z, block = self._rows(outputs, None, x_enc)
        column_errors = table.errors(x_enc, codes, z, block.codes, block.missing)
        modelled = [i for i, c in enumerate(table.columns) if c.kind != "constant"]
        rows = TableRows(table.names, table.values(block.numeric, block.codes, block.missing))
        return rows, column_errors[:, modelled].mean(axis=1), column_errors

    @_holding
    async def anomaly(
        self, inputs: Sequence[Row], labels: Sequence[str | int] | None, false_alarm_rate: float, level: float
    ) -> tuple[float | None, list[dict]]:
        """Per row its score (core/scoring.py), whether it exceeds the threshold calibrated for
        `false_alarm_rate`, and the numeric features outside their central `level` band."""
        calibration = self.manifest.evaluation.anomaly
        threshold = None
        if calibration is not None:
            rates = calibration["thresholds"]
            threshold = rates.get(f"{false_alarm_rate:g}")
            if threshold is None:
                raise InvalidInput(
                    f"false_alarm_rate {false_alarm_rate:g} is not calibrated for model {self.ref}; "
                    f"calibrated: {sorted(float(r) for r in rates)}"
                )
        x_norm = self._encoded(inputs)
        y = self.check_labels(labels, len(x_norm), inputs)
        scored, mean, outputs = await run_steps_async(self.model.score(x_norm, y, self.max_rows), self._run)
        self._require_finite(scored.score, "anomaly score", x_norm)
        try:
            distances = await run_steps_async(self.model.bands(x_norm, y, mean, outputs, level), self._run)
        except ValueError as e:
            raise InvalidInput(f"model {self.ref} has {e}") from None
        distances = distances * observed_numeric(self.table, x_norm, self.manifest.numeric_dim)  # a gap is not outside
        names = [c.name for c in self.table.numeric] if self.table is not None else self.manifest.feature_names
        surprises = scored.surprise if scored.surprise is not None else np.full(distances.shape, np.nan)
        verdicts = [
            {
                "score": float(score),
                "flagged": None if threshold is None else bool(score > threshold),
                **_features_off(names, row, surprise),
            }
            for score, row, surprise in zip(scored.score, distances, surprises, strict=True)
        ]
        return threshold, verdicts

    @_holding
    async def quantiles(
        self, inputs: Sequence[Row], labels: Sequence[str | int] | None
    ) -> tuple[list[float], np.ndarray, list[dict[str, dict[str, float]]] | None]:
        """Per-feature quantile bands at each row's latent mean: (levels, [rows, levels, features]);
        for a table the features are its numeric columns, and each row also gets the probability of
        each category of its categorical columns (and of a gap, under "null", where it has gaps)."""
        head = HEADS[self.manifest.head]
        if not head.spread:
            raise InvalidInput(
                f"model {self.ref} has a Bernoulli head: it predicts a mean intensity per feature and no spread, "
                "so it has no quantiles; /quantiles serves quantile-head and Gaussian-head models"
            )
        x_norm = self._encoded(inputs)
        y = self.check_labels(labels, len(x_norm), inputs)
        mean, _ = await self._encode(x_norm, y)
        outputs = await self._decode(mean, y)
        levels, q = head.quantiles(outputs, self.manifest.quantile_levels)
        if self.table is None:
            return levels, self._original_units(q, x_norm), None  # scale > 0 keeps the order of the levels
        self._require_finite(q, "a quantile", x_norm)
        rows, k, d = q.shape  # every column's map from the model's scale is increasing: levels stay in order
        bands = self.table.from_scale(q.reshape(rows * k, d)).reshape(rows, k, d)
        return levels, bands, self.table.probabilities(self._discrete(outputs), rows)


def require_finite(values: np.ndarray, what: str, model: str, inputs: np.ndarray | None) -> None:
    """A non-finite value computed from a request's `inputs` (on the model's scale), or from the
    model's own latent draws when None: the input's fault (422) only when the input lies far
    outside the training data; otherwise the model's (500, naming `model`)."""
    if np.isfinite(values).all():
        return
    row = int(np.argwhere(~np.isfinite(values))[0][0])
    if inputs is not None and not np.abs(inputs[row]).max() <= FAR_INPUT:
        _require_finite_input(values, what)
    source = "its latent draws" if inputs is None else "an input within the range of its training data"
    logger.error("%s computed a non-finite %s for row %d from %s", model, what, row, source)
    raise ModelFault(
        f"{model} computed a non-finite {what} for row {row} from {source}: the model is faulty", {"row": row}
    )


def _features_off(names: list[str], distances: np.ndarray, surprise: np.ndarray) -> dict:
    """One row's `most_surprising` numeric feature (none without surprises: NaN, or -inf at gaps) and
    its features `outside` their band, farthest first, from its band distances and surprises."""
    off = np.flatnonzero(distances)
    outside = [
        {
            "feature": names[j],
            "side": "below" if distances[j] < 0 else "above",
            "band_widths": round(abs(float(distances[j])), 4),
            "surprise": _nats(surprise[j]),
        }
        for j in off[np.argsort(-np.abs(distances[off]), kind="stable")]
    ]
    known = np.isfinite(surprise)
    top = int(np.argmax(np.where(known, surprise, -np.inf))) if known.any() else None
    most = None if top is None else {"feature": names[top], "surprise": _nats(surprise[top])}
    return {"most_surprising": most, "outside": outside}


def _nats(value: float) -> float | None:
    """A surprise as JSON: nats to 4 places; None where there is none (NaN) or the value is a gap (-inf)."""
    return round(float(value), 4) if math.isfinite(value) else None


def _require_finite_input(values: np.ndarray, what: str) -> None:
    """Finite inputs can still overflow float32 on the way (values far outside the training
    data): answer 422 rather than a response JSON cannot carry."""
    if not np.isfinite(values).all():
        row = int(np.argwhere(~np.isfinite(values))[0][0])
        raise InvalidInput(
            f"row {row}: {what} is not finite in float32; the input lies too far outside the range of the "
            "data the model was trained on",
            details={"row": row},
        )


def _json_kind(value: object) -> str:
    return {dict: "an object", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")
