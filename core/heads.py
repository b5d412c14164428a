"""One class per decoder head: everything genserve knows about a head, on numpy, in one place.

A head describes the numeric block of a model's rows (every feature of an image or array
model, a table's numeric columns) given z: Bernoulli (`probs`), Gaussian (`mean`, `log_var`)
or quantile (`quantiles` at the manifest's `quantile_levels`). Each `Head` states its graph
outputs and their shapes, its central value, its draws from p(x | z), its quantiles and
central bands, and its negative log-likelihood per value. The manifest, generation, scoring
and the service ask `HEADS[manifest.head]`; training's torch heads (training/model.py) mirror
these, so that what training fits is what is served.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import ClassVar, Literal

import numpy as np

HeadName = Literal["bernoulli", "gaussian", "quantile"]
# The levels a head without its own answers /quantiles at (a quantile head answers its own).
STANDARD_LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)
LOG_2PI = math.log(2 * math.pi)
_EPS = 1e-6
BAND_SCALES = 2 * math.log(10)  # a Laplace's 5-95% band in units of its scale


class NoSpread(ValueError):
    """The head predicts no spread (Bernoulli): it has no quantiles or bands."""


class Head:
    name: ClassVar[str]
    outputs: ClassVar[tuple[str, ...]]  # the decoder graph's outputs for the numeric block, in order
    levelled: ClassVar[bool] = False  # takes the manifest's quantile_levels
    unit_interval: ClassVar[bool] = False  # for data in [0, 1], which it models unnormalised
    spread: ClassVar[bool] = True  # predicts a spread: quantiles and bands

    def output_shapes(self, rows: int, features: int, levels: int) -> list[tuple[int, ...]]:
        """Shapes of `outputs` for `rows` rows of `features` numeric values."""
        return [(rows, features)] * len(self.outputs)

    def central(self, params: list[np.ndarray], levels: Sequence[float] | None) -> np.ndarray:
        """The central value on the model's scale: Bernoulli mean, Gaussian mean, median quantile."""
        return params[0]

    def draw(self, params: list[np.ndarray], levels: Sequence[float] | None, rng: np.random.Generator) -> np.ndarray:
        """One draw from p(x | z) per value, on the model's scale."""
        raise NotImplementedError

    def quantiles(self, params: list[np.ndarray], levels: Sequence[float] | None) -> tuple[list[float], np.ndarray]:
        """(levels, [rows, levels, features]): the quantiles /quantiles answers, on the model's scale."""
        raise NoSpread(f"a {self.name} head predicts no spread")

    def band(
        self, params: list[np.ndarray], levels: Sequence[float] | None, level: float
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Each value's central `level` band (low, high) on the model's scale; None without spread;
        ValueError if the head has no such band."""
        return None

    def nll(self, x: np.ndarray, params: list[np.ndarray], levels: Sequence[float] | None) -> np.ndarray:
        """-log p(x | z) per value [rows, features], float64, for values `x` on the model's scale."""
        raise NotImplementedError


class Bernoulli(Head):
    name, outputs, unit_interval, spread = "bernoulli", ("probs",), True, False

    def draw(self, params: list[np.ndarray], levels: Sequence[float] | None, rng: np.random.Generator) -> np.ndarray:
        # 0 or 1 with the predicted probability
        probs = params[0]
        return (rng.random(probs.shape, dtype=np.float32) < probs).astype(np.float32)

    def nll(self, x: np.ndarray, params: list[np.ndarray], levels: Sequence[float] | None) -> np.ndarray:
        # -(x log p + (1 - x) log(1 - p))
        p = np.clip(params[0].astype(np.float64), _EPS, 1 - _EPS)
        return -(x * np.log(p) + (1 - x) * np.log1p(-p))


class Gaussian(Head):
    name, outputs = "gaussian", ("mean", "log_var")

    def draw(self, params: list[np.ndarray], levels: Sequence[float] | None, rng: np.random.Generator) -> np.ndarray:
        # mean + sigma * eps
        mean, log_var = params[0], params[1]
        return mean + np.exp(0.5 * log_var) * rng.standard_normal(mean.shape, dtype=np.float32)

    def quantiles(self, params: list[np.ndarray], levels: Sequence[float] | None) -> tuple[list[float], np.ndarray]:
        # the exact quantiles of N(mean, exp(log_var)): mean + Phi^-1(tau) * sigma
        answered = list(STANDARD_LEVELS)
        z = np.asarray([NormalDist().inv_cdf(t) for t in answered], dtype=np.float32)
        return answered, params[0][:, None, :] + z[None, :, None] * np.exp(0.5 * params[1])[:, None, :]

    def band(
        self, params: list[np.ndarray], levels: Sequence[float] | None, level: float
    ) -> tuple[np.ndarray, np.ndarray] | None:
        z = NormalDist().inv_cdf(0.5 + level / 2)
        sigma = np.exp(0.5 * params[1])
        return params[0] - z * sigma, params[0] + z * sigma

    def nll(self, x: np.ndarray, params: list[np.ndarray], levels: Sequence[float] | None) -> np.ndarray:
        # 0.5 (log 2 pi + log_var + (x - mean)^2 / exp(log_var))
        mu, lv = params[0].astype(np.float64), params[1].astype(np.float64)
        return 0.5 * (LOG_2PI + lv + (x - mu) ** 2 * np.exp(-lv))


class Quantile(Head):
    name, outputs, levelled = "quantile", ("quantiles",), True

    def output_shapes(self, rows: int, features: int, levels: int) -> list[tuple[int, ...]]:
        return [(rows, levels, features)]

    def central(self, params: list[np.ndarray], levels: Sequence[float] | None) -> np.ndarray:
        return params[0][:, median_index(levels or [0.5])]

    def draw(self, params: list[np.ndarray], levels: Sequence[float] | None, rng: np.random.Generator) -> np.ndarray:
        # the inverse CDF through the predicted quantiles (linear between levels) with exponential tails beyond
        # the outer levels, their scale fitted to the two outermost quantiles on each side (the asymmetric
        # Laplace tail behind the pinball loss)
        return inverse_cdf(params[0], np.asarray(levels, dtype=np.float64), rng.random(params[0][:, 0].shape))

    def quantiles(self, params: list[np.ndarray], levels: Sequence[float] | None) -> tuple[list[float], np.ndarray]:
        return list(levels or []), params[0]

    def band(
        self, params: list[np.ndarray], levels: Sequence[float] | None, level: float
    ) -> tuple[np.ndarray, np.ndarray] | None:
        known = list(levels or [])
        pairs = [(i, len(known) - 1 - i) for i in range(len(known) // 2)]  # 0.05 with 0.95, 0.25 with 0.75
        for i, j in pairs:
            if abs(known[i] - (1 - level) / 2) < 1e-9 and abs(known[j] - (1 + level) / 2) < 1e-9:
                return params[0][:, i], params[0][:, j]
        central = sorted({round(known[j] - known[i], 6) for i, j in pairs})
        raise ValueError(f"no {level:g} band; its central bands: {central}")

    def nll(self, x: np.ndarray, params: list[np.ndarray], levels: Sequence[float] | None) -> np.ndarray:
        # the asymmetric Laplace likelihood behind the pinball loss, averaged over levels; its scale is a
        # training parameter the graphs do not carry, so it is read off the row's own outer band (a Laplace's
        # 5-95% band spans 2 ln(10) scales)
        q = params[0].astype(np.float64)  # [n, levels, d]
        tau = np.asarray(levels, dtype=np.float64)[None, :, None]
        scale = np.maximum(q[:, -1] - q[:, 0], _EPS)[:, None, :] / BAND_SCALES
        u = x[:, None, :] - q
        pinball = np.maximum(tau * u, (tau - 1) * u)
        return (pinball / scale + np.log(scale) - np.log(tau * (1 - tau))).mean(axis=1)


HEADS: dict[str, Head] = {head.name: head for head in (Bernoulli(), Gaussian(), Quantile())}


def median_index(levels: Sequence[float]) -> int:
    return int(np.argmin(np.abs(np.asarray(levels) - 0.5)))


def inverse_cdf(q: np.ndarray, levels: np.ndarray, u: np.ndarray) -> np.ndarray:
    """q: [rows, levels, features] non-crossing quantiles; u: [rows, features] in (0, 1)."""
    q = q.astype(np.float64)
    k = len(levels)
    u = np.clip(u, 1e-12, 1 - 1e-12)
    i = np.clip(np.searchsorted(levels, u) - 1, 0, k - 2)  # segment [levels[i], levels[i+1]]
    lo = np.take_along_axis(q, i[:, None], axis=1)[:, 0]
    hi = np.take_along_axis(q, (i + 1)[:, None], axis=1)[:, 0]
    t = (u - levels[i]) / (levels[i + 1] - levels[i])
    x = lo + t * (hi - lo)
    # tails: F(x) = tau_1 exp((x - q_1) / s) below, 1 - F(x) = (1 - tau_K) exp(-(x - q_K) / s) above
    s_lo = (q[:, 1] - q[:, 0]) / math.log(levels[1] / levels[0])
    s_hi = (q[:, -1] - q[:, -2]) / math.log((1 - levels[-2]) / (1 - levels[-1]))
    below, above = u < levels[0], u > levels[-1]
    x = np.where(below, q[:, 0] + s_lo * np.log(u / levels[0]), x)
    x = np.where(above, q[:, -1] - s_hi * np.log((1 - u) / (1 - levels[-1])), x)
    return x.astype(np.float32)


def head_values(
    head: str,
    outputs: list[np.ndarray],
    levels: Sequence[float] | None,
    discrete: bool,
    rng: np.random.Generator | None,
) -> np.ndarray:
    """The numeric block on the model's scale from the decoder's outputs (a table's `discrete_probs`,
    when it has any, come last): a draw from the head when `rng` is given, else its central value."""
    params = outputs[: len(outputs) - 1] if discrete else outputs
    h = HEADS[head]
    return h.central(params, levels) if rng is None else h.draw(params, levels, rng)
