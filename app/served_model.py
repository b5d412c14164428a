"""A loaded model version: request rows in the data's original units in, answers out.

The numerical work beside the graphs lives here: checking rows and labels against the
manifest, normalising and de-normalising, sampling latent codes, and reading each head's
outputs. Routes only call these methods.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from statistics import NormalDist
from typing import ParamSpec, TypeVar

import numpy as np

from app.batching import Batcher
from app.errors import InvalidInput
from app.manifest import Manifest

# Levels returned by /quantiles for a Gaussian head (a quantile head returns its own).
GAUSSIAN_LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)

P = ParamSpec("P")
R = TypeVar("R")


def _holding(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """An endpoint method holds its model while it runs: a reload retires a version only once nothing holds it."""

    @functools.wraps(method)
    async def held(self: ServedModel, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.hold():
            return await method(self, *args, **kwargs)

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
        self.shift = np.asarray(self.manifest.normalization.shift, dtype=np.float32)
        self.scale = np.asarray(self.manifest.normalization.scale, dtype=np.float32)
        self.label_index = {name: i for i, name in enumerate(self.manifest.labels or [])}
        levels = self.manifest.quantile_levels or [0.5]
        self.median_index = int(np.argmin(np.abs(np.asarray(levels) - 0.5)))
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

    def check_rows(self, inputs: list[list[float]]) -> np.ndarray:
        """Rows in original units -> float32 array [n, input_dim], or a 422 that says what is wrong."""
        dim = self.manifest.input_dim
        if len(inputs) > self.max_rows:
            raise InvalidInput(
                f"{len(inputs)} rows in one request; the limit is {self.max_rows} (GENSERVE_MAX_SAMPLES)"
            )
        for i, row in enumerate(inputs):
            if len(row) != dim:
                raise InvalidInput(
                    f"row {i} has {len(row)} values; model {self.ref} takes rows of {dim} features",
                    details={"row": i, "expected": dim, "got": len(row)},
                )
        with np.errstate(over="ignore"):  # beyond float32's range becomes inf, reported below
            x = np.asarray(inputs, dtype=np.float32)
        bad = ~np.isfinite(x)
        if bad.any():
            row, col = (int(v) for v in np.argwhere(bad)[0])
            raise InvalidInput(
                f"row {row}, feature {col} is not a finite float32 number ({inputs[row][col]!r})",
                details={"row": row, "feature": col},
            )
        return x

    def check_labels(self, labels: list[str] | None, rows: int) -> np.ndarray | None:
        """Label names -> int64 indices for a conditional model; None for an unconditional one."""
        valid = self.manifest.labels
        if valid is None:
            if labels is not None:
                raise InvalidInput(f"model {self.ref} is unconditional: leave out the label(s)")
            return None
        if labels is None:
            raise InvalidInput(
                f"model {self.ref} is conditional: give a label, one of {valid}", details={"valid_labels": valid}
            )
        if len(labels) != rows:
            raise InvalidInput(f"{len(labels)} labels for {rows} rows: give one label per row")
        try:
            return np.fromiter((self.label_index[name] for name in labels), dtype=np.int64, count=rows)
        except KeyError as e:
            raise InvalidInput(
                f"unknown label {e.args[0]!r} for model {self.ref}; valid labels: {valid}",
                details={"valid_labels": valid},
            ) from None

    # ---- graphs -------------------------------------------------------------------------

    def _feed(self, first: np.ndarray, y: np.ndarray | None, graph: Batcher) -> dict[str, np.ndarray]:
        names = graph.graph.input_names
        return {names[0]: first} if y is None else {names[0]: first, names[1]: y}

    async def _encode(self, x: np.ndarray, y: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(over="ignore"):
            x_norm = (x - self.shift) / self.scale
        _require_finite(x_norm, "the normalised input")
        mean, log_var = await self.encoder.run(self._feed(x_norm, y, self.encoder))
        _require_finite(mean, "the encoder's output")
        return mean, log_var

    async def _decode(self, z: np.ndarray, y: np.ndarray | None) -> list[np.ndarray]:
        # not checked here: a non-finite output carries into the answer, which is checked in full
        return await self.decoder.run(self._feed(z, y, self.decoder))

    def _central(self, outputs: list[np.ndarray]) -> np.ndarray:
        """The decoder's central value in normalised units: Bernoulli mean, Gaussian mean, median quantile."""
        if self.manifest.head == "quantile":
            return outputs[0][:, self.median_index]
        return outputs[0]

    def _original_units(self, x_norm: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            x = x_norm * self.scale + self.shift
        _require_finite(x, "the result in original units")
        return x

    # ---- endpoints ----------------------------------------------------------------------

    @_holding
    async def generate(self, n: int, label: str | None, seed: int | None, temperature: float) -> np.ndarray:
        if n > self.max_rows:
            raise InvalidInput(f"n={n} is above the limit of {self.max_rows} samples (GENSERVE_MAX_SAMPLES)")
        index = self.label_index.get(label) if label is not None else None
        if index is not None:  # a known label of a conditional model: the common case, quickly
            y = np.full(n, index, dtype=np.int64)
        else:  # anything else: checked, and refused with the reason when wrong
            y = self.check_labels(None if label is None else [label] * n, n)
        rng = self._rng if seed is None else np.random.default_rng(seed)
        z = rng.standard_normal((n, self.manifest.latent_dim), dtype=np.float32)
        if temperature != 1.0:
            z *= np.float32(temperature)
        return self._original_units(self._central(await self._decode(z, y)))

    @_holding
    async def encode(self, inputs: list[list[float]], labels: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
        x = self.check_rows(inputs)
        return await self._encode(x, self.check_labels(labels, len(x)))

    @_holding
    async def reconstruct(self, inputs: list[list[float]], labels: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
        """Reconstructions at the latent mean, and each row's mean squared error (original units)."""
        x = self.check_rows(inputs)
        y = self.check_labels(labels, len(x))
        mean, _ = await self._encode(x, y)
        reconstruction = self._original_units(self._central(await self._decode(mean, y)))
        errors = ((reconstruction.astype(np.float64) - x) ** 2).mean(axis=1)  # float64: inputs may be ~1e30
        _require_finite(errors, "the reconstruction error")
        return reconstruction, errors

    @_holding
    async def quantiles(self, inputs: list[list[float]], labels: list[str] | None) -> tuple[list[float], np.ndarray]:
        """Per-feature quantile bands at each row's latent mean: (levels, [rows, levels, features])."""
        head = self.manifest.head
        if head == "bernoulli":
            raise InvalidInput(
                f"model {self.ref} has a Bernoulli head: it predicts a mean intensity per feature and no spread, "
                "so it has no quantiles; /quantiles serves quantile-head and Gaussian-head models"
            )
        x = self.check_rows(inputs)
        y = self.check_labels(labels, len(x))
        mean, _ = await self._encode(x, y)
        outputs = await self._decode(mean, y)
        if head == "quantile":
            levels, q = list(self.manifest.quantile_levels or []), outputs[0]
        else:  # Gaussian: the exact quantiles of N(mean, exp(log_var)), mean + Phi^-1(tau) * sigma
            levels = list(GAUSSIAN_LEVELS)
            z = np.asarray([NormalDist().inv_cdf(t) for t in levels], dtype=np.float32)
            q = outputs[0][:, None, :] + z[None, :, None] * np.exp(0.5 * outputs[1])[:, None, :]
        return levels, self._original_units(q)  # scale > 0 keeps the order of the levels


def _require_finite(values: np.ndarray, what: str) -> None:
    """Finite inputs can still overflow float32 on the way (values far outside the training
    data): answer 422 rather than a response JSON cannot carry."""
    if not np.isfinite(values).all():
        row = int(np.argwhere(~np.isfinite(values))[0][0])
        raise InvalidInput(
            f"row {row}: {what} is not finite in float32; the input lies too far outside the range of the "
            "data the model was trained on",
            details={"row": row},
        )
