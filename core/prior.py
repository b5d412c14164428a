"""The latent prior a model generates from: a Gaussian mixture per label (the manifest's `latent_prior`), or N(0, I)."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from core.manifest import LatentPrior, Manifest


@dataclass(frozen=True)
class Mixture:
    """A manifest's LatentPrior as arrays: z ~ sum_k w_k N(mean_k, L_k L_k^T)."""

    weights: np.ndarray
    means: np.ndarray  # [k, d]
    cholesky: np.ndarray  # [k, d, d]

    def __post_init__(self) -> None:
        cdf = np.cumsum(self.weights)
        object.__setattr__(self, "_cdf", cdf / cdf[-1])
        object.__setattr__(self, "_cdf_list", self._cdf.tolist())
        with np.errstate(divide="ignore"):  # a component of weight 0 never contributes
            object.__setattr__(self, "_log_weights", np.log(self.weights))
        factors = self.cholesky.astype(np.float64)
        inverse = np.linalg.inv(factors)  # [k, d, d]: L_k^-1
        object.__setattr__(self, "_inverse", inverse)
        object.__setattr__(self, "_precision_diagonal", np.square(inverse).sum(axis=1))  # diag(Sigma_k^-1)
        object.__setattr__(self, "_means64", self.means.astype(np.float64))
        diagonals = np.abs(np.diagonal(factors, axis1=1, axis2=2))
        object.__setattr__(self, "_log_det", 2 * np.log(diagonals).sum(axis=1))  # log |L_k L_k^T|

    def log_density(self, z: np.ndarray) -> np.ndarray:
        """log p(z) per row under the mixture."""
        z = z.astype(np.float64)
        terms = [
            self._log_weights[k]
            - 0.5 * np.square((z - self._means64[k]) @ self._inverse[k].T).sum(axis=1)
            - 0.5 * (self._log_det[k] + z.shape[1] * math.log(2 * math.pi))
            for k in range(len(self.weights))
        ]
        return _log_sum_exp(np.stack(terms))

    def kl_from(self, mean: np.ndarray, log_var: np.ndarray) -> np.ndarray:
        """KL(N(mean, diag exp(log_var)) || this mixture) per row, by Hershey and Olsen's variational
        approximation -log sum_k w_k exp(-KL(q || N_k)): closed form, and exact for one component."""
        mu, var = mean.astype(np.float64), np.exp(log_var.astype(np.float64))
        d = mu.shape[1]
        log_var_sum = np.log(var).sum(axis=1)
        terms = []
        for k in range(len(self.weights)):
            quad = np.square((mu - self._means64[k]) @ self._inverse[k].T).sum(axis=1)
            trace = var @ self._precision_diagonal[k]  # tr(Sigma_k^-1 diag(var))
            kl = 0.5 * (trace + quad - d + self._log_det[k] - log_var_sum)
            terms.append(self._log_weights[k] - kl)
        return -_log_sum_exp(np.stack(terms))

    @classmethod
    def of(cls, prior: LatentPrior) -> Mixture:
        weights = np.asarray(prior.weights, dtype=np.float64)
        return cls(
            weights / weights.sum(),  # exactly 1 for numpy's choice, whatever the JSON's rounding
            np.asarray(prior.means, dtype=np.float32),
            np.asarray(prior.cholesky, dtype=np.float32),
        )

    def draw(self, n: int, rng: np.random.Generator, temperature: float = 1.0) -> np.ndarray:
        """n codes: a component by its weight, then mean + temperature * L eps."""
        # rng.choice(len(weights), n, p=weights) draws exactly this, but validates p on every call:
        # a tenth of a small /generate request's time
        if n == 1:  # one code (/generate n=1): the same draws and the same sums, in fewer small operations
            k = min(bisect.bisect_right(self._cdf_list, rng.random()), len(self._cdf_list) - 1)
            eps = rng.standard_normal(self.means.shape[1], dtype=np.float32)
            if temperature != 1.0:
                eps *= np.float32(temperature)
            return (self.means[k] + np.einsum("ij,j->i", self.cholesky[k], eps))[None]
        k = self._cdf.searchsorted(rng.random(n), side="right")
        eps = rng.standard_normal((n, self.means.shape[1]), dtype=np.float32) * np.float32(temperature)
        return self.means[k] + np.einsum("nij,nj->ni", self.cholesky[k], eps)


def latent_mixtures(manifest: Manifest) -> list[Mixture] | None:
    """The manifest's latent prior as arrays, one mixture per label; None: z ~ N(0, I)."""
    priors = manifest.latent_prior
    return None if priors is None else [Mixture.of(p) for p in priors]


def _log_sum_exp(terms: np.ndarray) -> np.ndarray:
    """log sum_k exp(terms[k]) over the first axis, without overflow."""
    top = terms.max(axis=0)
    return top + np.log(np.exp(terms - top).sum(axis=0))


def latent_codes(
    prior: list[Mixture] | None, dim: int, n: int, label: int | None, rng: np.random.Generator, temperature: float
) -> np.ndarray:
    """n codes to decode for label index `label`: from its mixture, or N(0, temperature^2 I) without a prior."""
    if prior is not None:
        return prior[label or 0].draw(n, rng, temperature)
    z = rng.standard_normal((n, dim), dtype=np.float32)
    if temperature != 1.0:
        z *= np.float32(temperature)
    return z
