"""Metrics measured on the test split at export time (all in normalised units).

For a table the head's figures (MSE, pinball, coverage) are over its numeric block, the
columns the head describes; the ELBO and IWAE cover every column."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import torch

from core.manifest import LatentPrior
from core.prior import Mixture
from training.model import TORCH_HEADS, VAE, log_normal, reparameterize
from training.train import as_tensors

IWAE_SAMPLES = 100
SAMPLES_PER_LABEL = 200
BANDS = {"90": (0.05, 0.95), "50": (0.25, 0.75)}


@torch.no_grad()
def elbo_metrics(model: VAE, x: np.ndarray, y: np.ndarray | None, seed: int) -> dict[str, float]:
    """ELBO, its two terms, and the mean squared error of the reconstruction at the latent mean."""
    xt, yt = as_tensors(x, y)
    recon, kl = model.losses(xt, yt, torch.Generator().manual_seed(seed))
    mean, _ = model.encoder(xt, yt)
    squared = (point_prediction(model, model.decoder(mean, yt)).numpy() - numeric(model, x)) ** 2
    error = float(np.nanmean(squared))
    return {
        "elbo": (-(recon + kl)).mean().item(),
        "reconstruction_nll": recon.mean().item(),
        "kl": kl.mean().item(),
        "reconstruction_mse": error,
    }


def numeric(model: VAE, x: np.ndarray) -> np.ndarray:
    """The block of encoded rows that the head describes (all of it unless the data is a table),
    NaN where a table's value is missing (it is encoded as 0; the head's figures leave it out)."""
    values = x[:, : model.cfg.n_numeric].astype(np.float64)
    gap = np.asarray(model.cfg.numeric_gap or [-1] * model.cfg.n_numeric)
    if (gap >= 0).any():
        missing = x[:, model.cfg.n_numeric + sum(model.cfg.categories) :] > 0.5
        values[:, gap >= 0] = np.where(missing[:, gap[gap >= 0]], np.nan, values[:, gap >= 0])
    return values


def point_prediction(model: VAE, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The decoder's central value: Bernoulli mean, Gaussian mean, or the median quantile."""
    return TORCH_HEADS[model.cfg.head].central(params, model.cfg.quantile_levels)


@torch.no_grad()
def iwae_log_likelihood(model: VAE, x: np.ndarray, y: np.ndarray | None, k: int, seed: int) -> float:
    """Importance-weighted estimate of log p(x[|y]) with k samples from q(z|x), mean per row:
    log p(x) ~= logmeanexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)]."""
    xt, yt = as_tensors(x, y)
    generator = torch.Generator().manual_seed(seed)
    mean, log_var = model.encoder(xt, yt)
    weights = []
    for _ in range(k):
        z = reparameterize(mean, log_var, generator)
        log_px_z = -model.reconstruction_nll(xt, model.decoder(z, yt))
        zeros = torch.zeros_like(z)
        weights.append(log_px_z + log_normal(z, zeros, zeros) - log_normal(z, mean, log_var))
    return (torch.logsumexp(torch.stack(weights), dim=0) - math.log(k)).mean().item()


@torch.no_grad()
def quantile_metrics(model: VAE, x: np.ndarray, y: np.ndarray | None, x_train: np.ndarray) -> dict[str, float]:
    """Band coverage and pinball loss of the learned quantiles at each row's latent mean,
    against the floor of the training split's per-feature marginal quantiles."""
    levels = np.array(model.cfg.quantile_levels)
    xt, yt = as_tensors(x, y)
    q = model.decoder(model.encoder(xt, yt)[0], yt)[0].numpy()
    x, x_train = numeric(model, x), numeric(model, x_train)
    marginal = np.broadcast_to(np.nanquantile(x_train, levels, axis=0), q.shape)
    loss = mean_pinball(x, q, levels)
    floor = mean_pinball(x, marginal, levels)
    metrics = {"pinball_loss": loss, "pinball_floor": floor, "pinball_ratio": loss / floor}
    metrics.update(band_coverage(x, q, levels))
    for band, per_feature in feature_coverage(x, q, levels).items():
        observed = per_feature[~np.isnan(per_feature)]
        metrics[f"coverage_{band}_min"], metrics[f"coverage_{band}_max"] = float(observed.min()), float(observed.max())
    return metrics


@torch.no_grad()
def coverage_by_feature(model: VAE, x: np.ndarray, y: np.ndarray | None, names: list[str]) -> dict[str, dict]:
    """Each numeric feature's band coverage on these rows: {feature: {"90": c, "50": c}}."""
    xt, yt = as_tensors(x, y)
    q = model.decoder(model.encoder(xt, yt)[0], yt)[0].numpy()
    per_band = feature_coverage(numeric(model, x), q, np.array(model.cfg.quantile_levels))
    return {
        name: {band: float(c[j]) for band, c in per_band.items() if not np.isnan(c[j])}
        for j, name in enumerate(names[: q.shape[2]])
    }


def feature_coverage(x: np.ndarray, q: np.ndarray, levels: np.ndarray) -> dict[str, np.ndarray]:
    """Per feature, the fraction of its observed values inside each central band (NaN: none observed)."""
    observed = ~np.isnan(x)
    with np.errstate(invalid="ignore"):
        return {band: (inside & observed).sum(axis=0) / observed.sum(axis=0) for band, inside in _inside(x, q, levels)}


def mean_pinball(x: np.ndarray, q: np.ndarray, levels: np.ndarray) -> float:
    """Mean pinball loss over rows, levels and observed values (NaN: missing, left out)."""
    diff = x[:, None, :] - q
    tau = levels.reshape(1, -1, 1)
    return float(np.nanmean(np.maximum(tau * diff, (tau - 1) * diff)))


def band_coverage(x: np.ndarray, q: np.ndarray, levels: np.ndarray) -> dict[str, float]:
    """Fraction of test values inside each central band, [q_lo, q_hi]; q is [rows, levels, features]."""
    observed = ~np.isnan(x)
    return {f"coverage_{band}": float(inside[observed].mean()) for band, inside in _inside(x, q, levels)}


def _inside(x: np.ndarray, q: np.ndarray, levels: np.ndarray):
    """(band, whether each value lies in [q_lo, q_hi]) for each central band whose levels the model has."""
    for band, (lo, hi) in BANDS.items():
        i, j = _level_index(levels, lo), _level_index(levels, hi)
        if i is not None and j is not None:
            yield band, (x >= q[:, i]) & (x <= q[:, j])


def _level_index(levels: np.ndarray, level: float) -> int | None:
    hits = np.flatnonzero(np.isclose(levels, level))
    return int(hits[0]) if len(hits) else None


@torch.no_grad()
def gaussian_band_coverage(
    model: VAE, x: np.ndarray, y: np.ndarray | None, levels: tuple[float, ...]
) -> dict[str, float]:
    """Coverage of the same bands from a Gaussian-head model: mean + Phi^-1(tau) * sigma."""
    xt, yt = as_tensors(x, y)
    mean, log_var = model.decoder(model.encoder(xt, yt)[0], yt)[:2]
    sigma = (0.5 * log_var).exp().numpy()
    x = numeric(model, x)
    q = mean.numpy()[:, None] + np.array([NormalDist().inv_cdf(t) for t in levels])[None, :, None] * sigma[:, None]
    coverage = band_coverage(x, q, np.array(levels))
    coverage["pinball_loss"] = mean_pinball(x, q, np.array(levels))
    return {f"baseline_gaussian_{k}": v for k, v in coverage.items()}


@torch.no_grad()
def conditional_accuracy(
    model: VAE, x_train: np.ndarray, y_train: np.ndarray, seed: int, prior: list[LatentPrior] | None = None
) -> float:
    """Accuracy of an independent classifier, fitted on the real training split, on samples
    generated for each label (z from the model's latent prior, N(0, I) without one, decoded to
    the head's central value)."""
    from sklearn.linear_model import LogisticRegression

    classifier = LogisticRegression(max_iter=5000).fit(np.nan_to_num(numeric(model, x_train)), y_train)
    n_labels = model.cfg.n_labels
    y = torch.arange(n_labels).repeat_interleave(SAMPLES_PER_LABEL)
    if prior is None:
        z = torch.randn(len(y), model.cfg.latent_dim, generator=torch.Generator().manual_seed(seed))
    else:
        rng = np.random.default_rng(seed)
        z = torch.from_numpy(np.concatenate([Mixture.of(p).draw(SAMPLES_PER_LABEL, rng) for p in prior]))
    samples = point_prediction(model, model.decoder(z, y)).numpy()
    return float((classifier.predict(samples) == y.numpy()).mean())
