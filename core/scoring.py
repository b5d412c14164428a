"""Anomaly scores from a model's own likelihood, in numpy (the serving path has no torch).

A row's score is its negative ELBO at the posterior mean, in nats: -log p(x | z = mean(x))
(the head's term for each observed numeric value, then for a table -log p of each observed
category and of each gap indicator) plus KL(q(z | x) || p(z)), p the prior the model generates
from: its latent mixture (a table or a conditional model: the row's label's) by Hershey and
Olsen's variational approximation, else N(0, I) in closed form. The mixture sits where training
rows' codes are, so a row whose code the encoder had to move off them pays for it: on the
diamonds benchmark it ranks single swapped values better than KL to N(0, I) (mean AUC over 5
splits 0.9507 against 0.9482).
The head's term is exactly training's for Bernoulli and Gaussian heads; for a quantile head,
whose asymmetric-Laplace scale is a training parameter the graphs do not carry, it is the same
likelihood with the scale read off the row's own outer band (a Laplace's 5-95% band spans
2 ln(10) scales).

To that the score adds the row's largest single-feature surprise (`surprise_scores`): for each
numeric value, the negative ELBO less that of the row with this value set to 0 on the model's
scale (the training median under quantile encoding) and its own term left out, about
-log p(x_j | the row's other values). The ELBO alone lets the encoder follow a single wrong
value (the decoder then reconstructs it); the surprise does not, since the copy's code no longer
sees the value. It costs one more pass of both graphs per numeric feature, so models with more
than MAX_SURPRISE_FEATURES numeric features go without it. It names the feature `/anomaly`
reports as most surprising.

Serving (`ServedModel.anomaly`) and training's calibration (`AnomalyScorer`, on the staged
export) compute it with these functions, so a threshold fitted at training holds in service;
calibrations record `kl_to` and `surprise`, and a model calibrated before either is scored as
its thresholds were fitted.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from core.heads import HEADS
from core.manifest import Manifest
from core.prior import Mixture
from core.table import Table

_EPS = 1e-6


def row_scores(
    manifest: Manifest,
    x: np.ndarray,
    mean: np.ndarray,
    log_var: np.ndarray,
    outputs: list[np.ndarray],
    table: Table | None = None,
    prior: list[Mixture] | None = None,
    y: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(negative ELBO per row [n], the numeric features' own terms [n, numeric features]) for rows `x`
    on the model's scale (normalised, or a table's encoded rows), from the encoder's `mean`/`log_var`
    and the decoder's outputs at that mean; `prior` and the rows' label indices `y` as `kl_to_prior`."""
    d = manifest.numeric_dim
    xn = x[:, :d].astype(np.float64)
    per_value = HEADS[manifest.head].nll(xn, outputs, manifest.quantile_levels)
    score = np.zeros(len(x))
    if table is not None and manifest.discrete_dim:
        discrete, probs = x[:, d:].astype(np.float64), np.clip(outputs[-1].astype(np.float64), _EPS, 1 - _EPS)
        first_gap = table.n_onehot
        gaps, p_gap = discrete[:, first_gap:], probs[:, first_gap:]
        per_value = per_value * observed_numeric(table, x, d)
        score -= (discrete[:, :first_gap] * np.log(probs[:, :first_gap])).sum(axis=1)  # a gap's one-hot is all 0
        score -= (gaps * np.log(p_gap) + (1 - gaps) * np.log1p(-p_gap)).sum(axis=1)
    return score + per_value.sum(axis=1) + kl_to_prior(mean, log_var, prior, y), per_value


def observed_numeric(table: Table | None, x: np.ndarray, d: int) -> np.ndarray:
    """1 where a row's numeric feature has a value, 0 where it is a gap ([n, d]; all 1 for arrays)."""
    observed = np.ones((len(x), d))
    if table is not None:
        first_gap = d + table.n_onehot
        for column, gap in enumerate(table.numeric_gap()):
            if gap >= 0:
                observed[:, column] = 1 - x[:, first_gap + gap]
    return observed


MAX_SURPRISE_FEATURES = 64  # beyond, scores are the negative ELBO alone: a pass per feature costs too much
SCORE_PIECE_ROWS = 4096  # AnomalyScorer runs the rows and their copies in pieces of at most this many


class RowScores(NamedTuple):
    score: np.ndarray  # [n]: what `flagged` compares with the threshold
    terms: np.ndarray  # [n, numeric features]: each value's own term of the negative ELBO
    surprise: np.ndarray | None  # [n, numeric features]: each value's surprise given the rest (-inf at a gap)


def takes_surprise(manifest: Manifest) -> bool:
    """Whether a model's scores add the largest single-feature surprise: with 1 to MAX_SURPRISE_FEATURES
    numeric features, unless its stored calibration was fitted without it (before scores had it)."""
    calibration = manifest.evaluation.anomaly
    if calibration is not None and not calibration.get("surprise"):
        return False
    return 0 < manifest.numeric_dim <= MAX_SURPRISE_FEATURES


def with_neutral_copies(x: np.ndarray, y: np.ndarray | None, d: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows, then d copies of them, copy j with numeric feature j at 0 on the model's scale (the
    training median under quantile encoding, the mean under standard scaling; for an image model a
    blank pixel): [(d + 1) n]."""
    copies = np.repeat(x[None], d, axis=0)
    copies[np.arange(d), :, np.arange(d)] = 0.0
    rows = np.concatenate([x, copies.reshape(d * len(x), x.shape[1])])
    return rows, None if y is None else np.tile(y, d + 1)


def pieces(x: np.ndarray, y: np.ndarray | None, size: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Rows (and their labels) in pieces of at most `size`, in order: the rows lead the first piece."""
    for start in range(0, len(x), size):
        yield x[start : start + size], None if y is None else y[start : start + size]


def surprise_scores(scores: np.ndarray, terms: np.ndarray, observed: np.ndarray) -> RowScores:
    """RowScores of n rows from `row_scores` (negative ELBO [N], numeric terms [N, d]) of the rows, then,
    when N > n, of their neutral copies (`with_neutral_copies`), and which of their numeric values are
    observed ([n, d]). Each value's surprise given the row's other values is the row's negative ELBO less
    its copy's without the value's own term, about -log p(x_j | x_rest), and the score adds the largest:
    a row is anomalous as a whole or in the one value that does not fit the others, as a single wrong
    entry is. A gap's surprise is -inf (never the largest; a row of gaps adds 0); anything else that is
    not finite (NaN, inf) carries into the score, for the caller to refuse."""
    n, d = observed.shape
    if len(scores) == n:
        return RowScores(scores, terms, None)
    own = terms[n:].reshape(d, n, d)[np.arange(d), :, np.arange(d)]  # [d, n]: copy j's term for feature j
    surprise = (scores[None, :n] - (scores[n:].reshape(d, n) - own)).T
    surprise = np.where(observed > 0, surprise, -np.inf)  # a gap says nothing
    largest = surprise.max(axis=1)
    return RowScores(scores[:n] + np.where(np.isneginf(largest), 0.0, largest), terms[:n], surprise)


def kl_to_prior(mean: np.ndarray, log_var: np.ndarray, prior: list[Mixture] | None, y: np.ndarray | None) -> np.ndarray:
    """KL(q(z | x) || p(z)) per row: to the manifest's latent mixture (per label, indexed by `y`, for a
    conditional model), or to N(0, I) without one."""
    if prior is None:
        lv = log_var.astype(np.float64)
        return 0.5 * (mean.astype(np.float64) ** 2 + np.exp(lv) - lv - 1).sum(axis=1)
    if len(prior) == 1:
        return prior[0].kl_from(mean, log_var)
    if y is None:
        raise ValueError("a conditional model's rows need their labels")
    kl = np.empty(len(mean))
    for label in np.unique(y):
        rows = y == label
        kl[rows] = prior[int(label)].kl_from(mean[rows], log_var[rows])
    return kl


def typical_codes(mean: np.ndarray) -> np.ndarray:
    """Posterior means pulled back within the radius where N(0, I) codes lie (sqrt(d) + 2): a row far
    out drags its code to where the decoder widens every band, and its own bands would hide it."""
    radius = math.sqrt(mean.shape[1]) + 2
    norms = np.linalg.norm(mean, axis=1, keepdims=True)
    return np.where(norms > radius, mean * (radius / np.maximum(norms, 1e-9)), mean).astype(np.float32)


def central_band(manifest: Manifest, outputs: list[np.ndarray], level: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Each numeric feature's central `level` band on the model's scale, from the decoder's outputs
    (None for a Bernoulli head, which has no spread); ValueError if a quantile head lacks that band."""
    return HEADS[manifest.head].band(outputs, manifest.quantile_levels, level)


def band_distances(x: np.ndarray, band: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """Per row and numeric feature how far outside its band the value lies, in band widths: below
    negative, above positive, inside 0 ([n, numeric features]; all 0 without a band)."""
    if band is None:
        return np.zeros_like(x, dtype=np.float64)
    lo, hi = (b.astype(np.float64) for b in band)
    width = np.maximum(hi - lo, 1e-9)
    return np.where(x < lo, (x - lo) / width, np.where(x > hi, (x - hi) / width, 0.0))


FALSE_ALARM_RATES = (0.005, 0.01, 0.02, 0.05)  # thresholds calibrated at training, one per rate
MAX_TAIL_INDEX = 1.0  # Hill's estimate from a handful of scores can run away; beyond 1 a Pareto tail has no mean


def calibrate(scores: np.ndarray) -> dict:
    """Thresholds for FALSE_ALARM_RATES from normal rows' scores (held out from training): a row
    is flagged when its score exceeds the threshold; and the scores' distribution.

    Where the rows resolve a rate (rate x n >= 1) its threshold is the empirical quantile. Where they
    do not, the largest score would flag about 1 / (n + 1) of normal rows (a new row exceeds the
    largest of n exchangeable ones with that probability: 1.9% for 53 rows, not 1%), so the threshold
    is extrapolated beyond it (`_threshold`)."""
    scores = np.asarray(scores, dtype=np.float64)
    thresholds = {f"{rate:g}": _threshold(scores, rate) for rate in FALSE_ALARM_RATES}
    quantiles = {f"{q:g}": float(np.quantile(scores, q)) for q in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)}
    # with n rows, a rate under 1/n cannot be read off them: its threshold is extrapolated beyond the largest
    coarse = [f"{rate:g}" for rate in FALSE_ALARM_RATES if rate * len(scores) < 1]
    return {"rows": len(scores), "thresholds": thresholds, "score_quantiles": quantiles, "coarse_rates": coarse}


KL_TO_PRIOR = "the model's prior"  # calibrations without it were fitted to the KL to N(0, I)


def scoring_prior(manifest: Manifest, prior: list[Mixture] | None) -> list[Mixture] | None:
    """The prior a model's scores take their KL to: its latent mixture, unless its stored calibration
    was fitted before scores used it (no `kl_to`), whose thresholds hold for the KL to N(0, I)."""
    calibration = manifest.evaluation.anomaly
    return prior if calibration is None or calibration.get("kl_to") == KL_TO_PRIOR else None


def _threshold(scores: np.ndarray, rate: float) -> float:
    """The empirical quantile where n rows resolve `rate`; else Weissman's estimate of the quantile on a
    Pareto tail of the scores' excess over their median, at least the largest score: median + e x
    (m / (n rate)) ** g, e the (m + 1)-th largest excess, g Hill's estimate of the tail index (the mean
    log-ratio of the top m excesses to e, at most MAX_TAIL_INDEX; m = max(5, ceil(sqrt(n)))). Normal
    rows' scores are heavy-tailed (a few rows far beyond the rest: in the benchmark's breast-cancer
    task the largest of 53 is often twice the next), where an exponential tail, the Pareto tail's
    limit g -> 0, can set thresholds too low; for light tails the Pareto tail errs the other way
    (fewer false alarms than the rate). Where e gives no tail (not above 1% of the largest excess:
    n <= 11, where the (m + 1)-th largest is not above the median, or ties), the exponential tail
    anchored at the largest score: largest + s x ln(1 / ((n + 1) rate)), s the top m scores' mean
    excess over the (m + 1)-th."""
    n = len(scores)
    if rate * n >= 1 or n < 3:
        return float(np.quantile(scores, 1 - rate, method="higher"))
    top = np.sort(scores)
    m = min(max(5, math.ceil(math.sqrt(n))), n - 1)
    centre = float(np.median(scores))
    excess = top[n - m - 1] - centre
    if excess > 0.01 * (top[-1] - centre):
        tail_index = min(MAX_TAIL_INDEX, float(np.mean(np.log((top[n - m :] - centre) / excess))))
        threshold = centre + excess * (m / (n * rate)) ** tail_index
        if math.isfinite(threshold):
            return float(max(top[-1], threshold))
    scale = float(np.mean(top[n - m :] - top[n - m - 1]))
    return float(top[-1] + scale * max(0.0, math.log(1 / ((n + 1) * rate))))
