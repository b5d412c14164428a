"""The latent prior a table model generates from: a Gaussian mixture per label, fitted to samples of
q(z | x, y) over the training rows ("ex-post density estimation").

Why: z ~ N(0, I) assumes the encoder's codes fill the prior exactly. They do not: measured on a
1,500-row customer table (tests/test_tables.py's), a column missing in 13% of rows came back
missing in 26% of rows generated from N(0, I), but in 12% from a 10-component mixture fitted to
the codes (1 component: 22%, 5: 12%). The mixture has few components per label, so it smooths
over rows rather than remembering them.
"""

from __future__ import annotations

import numpy as np
import torch

from core.manifest import LatentPrior
from training.model import VAE
from training.train import as_tensors

MAX_COMPONENTS = 20  # 10 left a label's hour of day off by a TVD of 0.08 where 20 gave 0.025 (tests/test_dates.py)
ROWS_PER_COMPONENT = 20  # a label with fewer training rows gets fewer components
DRAWS_PER_ROW = 5  # samples of q(z | x) per training row
N_INIT = 3  # EM runs from different starts, the best kept: one run left a label's hour TVD at 0.084, four at 0.023


@torch.no_grad()
def fit_latent_prior(model: VAE, x: np.ndarray, y: np.ndarray | None, seed: int) -> list[LatentPrior]:
    """One mixture per label (in label order), or one for an unconditional model."""
    from sklearn.mixture import GaussianMixture

    xt, yt = as_tensors(x, y)
    mean, log_var = (t.numpy().astype(np.float64) for t in model.encoder(xt, yt))
    rng = np.random.default_rng(seed)
    groups = [np.arange(len(x))] if y is None else [np.flatnonzero(y == k) for k in range(model.cfg.n_labels)]
    priors = []
    for rows in groups:
        if len(rows) == 0:  # a label with no training rows: the standard normal
            priors.append(standard_normal(model.cfg.latent_dim))
            continue
        sigma = np.exp(0.5 * log_var[rows])
        draws = np.concatenate([mean[rows] + sigma * rng.standard_normal(sigma.shape) for _ in range(DRAWS_PER_ROW)])
        k = int(np.clip(len(rows) // ROWS_PER_COMPONENT, 1, MAX_COMPONENTS))
        mixture = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=seed, n_init=N_INIT).fit(
            draws
        )
        priors.append(
            LatentPrior(
                weights=(mixture.weights_ / mixture.weights_.sum()).tolist(),
                means=mixture.means_.tolist(),
                cholesky=np.linalg.cholesky(mixture.covariances_).tolist(),
            )
        )
    return priors


def standard_normal(dim: int) -> LatentPrior:
    return LatentPrior(weights=[1.0], means=[[0.0] * dim], cholesky=[np.eye(dim).tolist()])
