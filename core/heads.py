"""Each decoder head's facts on numpy: its central value and its draws from p(x | z) on the model's scale."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def median_index(levels: Sequence[float]) -> int:
    return int(np.argmin(np.abs(np.asarray(levels) - 0.5)))


def central(head: str, outputs: list[np.ndarray], levels: Sequence[float] | None) -> np.ndarray:
    """The head's central value on the model's scale: Bernoulli mean, Gaussian mean, median quantile."""
    if head == "quantile":
        return outputs[0][:, median_index(levels or [0.5])]
    return outputs[0]


def draw(head: str, outputs: list[np.ndarray], levels: Sequence[float] | None, rng: np.random.Generator) -> np.ndarray:
    """One draw from p(x | z) per value, on the model's scale.

    bernoulli: 0 or 1 with the predicted probability; gaussian: mean + sigma * eps; quantile:
    the inverse CDF through the predicted quantiles (linear between levels) with exponential
    tails beyond the outer levels, their scale fitted to the two outermost quantiles on each
    side (the asymmetric Laplace tail behind the pinball loss)."""
    if head == "bernoulli":
        probs = outputs[0]
        return (rng.random(probs.shape, dtype=np.float32) < probs).astype(np.float32)
    if head == "gaussian":
        mean, log_var = outputs[0], outputs[1]
        return mean + np.exp(0.5 * log_var) * rng.standard_normal(mean.shape, dtype=np.float32)
    return inverse_cdf(outputs[0], np.asarray(levels, dtype=np.float64), rng.random(outputs[0][:, 0].shape))


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
    return central(head, params, levels) if rng is None else draw(head, params, levels, rng)
