"""One VAE family: conditioning (none | class label) x decoder head (bernoulli | gaussian | quantile).

VAE = unconditional, CVAE = conditioned on a label, QVAE = quantile head; the
conditional quantile VAE is the fourth corner. All tensors here are in normalised units.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
LOG_VAR_MIN, LOG_VAR_MAX = -8.0, 6.0  # keeps exp(log_var) finite in float32 and in ONNX


@dataclass(frozen=True)
class ModelConfig:
    input_dim: int
    latent_dim: int = 8
    hidden: tuple[int, ...] = (256, 128)
    head: str = "bernoulli"  # bernoulli | gaussian | quantile
    n_labels: int = 0  # 0: unconditional
    quantile_levels: tuple[float, ...] = field(default=DEFAULT_QUANTILES)

    def to_dict(self) -> dict:
        return asdict(self)


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class Conditioned(nn.Module):
    """Base for a network that sees a one-hot label beside its input when conditional."""

    def __init__(self, n_labels: int) -> None:
        super().__init__()
        self.n_labels = n_labels
        # Indexing an identity matrix is the one-hot encoding; it exports as a Gather.
        self.register_buffer("label_eye", torch.eye(max(n_labels, 1)))

    def with_label(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.n_labels == 0:
            return h
        assert y is not None, "a conditional model needs a label index per row"
        return torch.cat([h, self.label_eye[y]], dim=1)


class Encoder(Conditioned):
    """q(z | x[, y]) = N(mean, exp(log_var))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg.n_labels)
        self.net = mlp([cfg.input_dim + cfg.n_labels, *cfg.hidden, 2 * cfg.latent_dim])

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.net(self.with_label(x, y)).chunk(2, dim=1)
        return mean, log_var.clamp(LOG_VAR_MIN, LOG_VAR_MAX)


class Decoder(Conditioned):
    """p(x | z[, y]). Returns the head's parameters:
    bernoulli -> (logits,), gaussian -> (mean, log_var), quantile -> (quantiles [B, K, D],).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg.n_labels)
        self.head = cfg.head
        self.input_dim = cfg.input_dim
        self.n_levels = len(cfg.quantile_levels)
        out = {"bernoulli": 1, "gaussian": 2, "quantile": self.n_levels}[cfg.head] * cfg.input_dim
        self.net = mlp([cfg.latent_dim + cfg.n_labels, *reversed(cfg.hidden), out])
        # Quantile recalibration (training/calibrate.py): each level's distance from the
        # median is multiplied by its factor. Ones (the identity) until calibrated.
        levels = torch.tensor(cfg.quantile_levels)
        self.median_index = int((levels - 0.5).abs().argmin())
        self.register_buffer("quantile_scale", torch.ones(self.n_levels))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        h = self.net(self.with_label(z, y))
        if self.head == "bernoulli":
            return (h,)
        if self.head == "gaussian":
            mean, log_var = h.chunk(2, dim=1)
            return mean, log_var.clamp(LOG_VAR_MIN, LOG_VAR_MAX)
        q = monotone_quantiles(h.view(-1, self.n_levels, self.input_dim))
        median = q[:, self.median_index : self.median_index + 1]
        return (median + self.quantile_scale.view(1, -1, 1) * (q - median),)


def monotone_quantiles(raw: torch.Tensor) -> torch.Tensor:
    """Non-crossing quantiles by construction: q_1 = base, q_k = q_{k-1} + softplus(delta_k)."""
    base = raw[:, :1]
    increments = F.softplus(raw[:, 1:]) + 1e-6
    return torch.cat([base, base + increments.cumsum(dim=1)], dim=1)


class VAE(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.register_buffer("levels", torch.tensor(cfg.quantile_levels, dtype=torch.float32))
        # Per-feature scale of the asymmetric Laplace likelihood behind the pinball loss.
        self.quantile_log_scale = nn.Parameter(torch.zeros(cfg.input_dim)) if cfg.head == "quantile" else None

    def reconstruction_nll(self, x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """-log p(x | z) per row, summed over features."""
        if self.cfg.head == "bernoulli":
            return bernoulli_nll(x, params[0])
        if self.cfg.head == "gaussian":
            return gaussian_nll(x, *params)
        assert self.quantile_log_scale is not None
        return quantile_nll(x, params[0], self.levels, self.quantile_log_scale)

    def losses(
        self, x: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row (reconstruction NLL, KL) with one reparameterised sample of z."""
        mean, log_var = self.encoder(x, y)
        z = reparameterize(mean, log_var, generator)
        return self.reconstruction_nll(x, self.decoder(z, y)), kl_to_standard_normal(mean, log_var)


def reparameterize(mean: torch.Tensor, log_var: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    # z = mean + sigma * eps, eps ~ N(0, I)
    eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
    return mean + torch.exp(0.5 * log_var) * eps


def kl_to_standard_normal(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    # KL(N(mean, var) || N(0, I)) = 0.5 * sum(mean^2 + var - log_var - 1)
    return 0.5 * (mean.pow(2) + log_var.exp() - log_var - 1).sum(dim=1)


def bernoulli_nll(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    # -sum[x log p + (1 - x) log(1 - p)], p = sigmoid(logits); x may be fractional in [0, 1]
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    # -log N(x; mean, var) = 0.5 * sum[log(2 pi) + log_var + (x - mean)^2 / var]
    return 0.5 * (math.log(2 * math.pi) + log_var + (x - mean).pow(2) / log_var.exp()).sum(dim=1)


def pinball(x: torch.Tensor, q: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """rho_tau(x - q) = max(tau (x - q), (tau - 1)(x - q)), elementwise over [B, K, D]."""
    diff = x.unsqueeze(1) - q
    tau = levels.view(1, -1, 1)
    return torch.maximum(tau * diff, (tau - 1) * diff)


def quantile_nll(x: torch.Tensor, q: torch.Tensor, levels: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Pinball loss read as an asymmetric-Laplace likelihood, averaged over the K levels:
    -log ALD(x; q_tau, s, tau) = rho_tau(x - q_tau) / s + log s - log(tau (1 - tau)),
    so one feature counts as one observation against the KL term, whatever K is."""
    tau = levels.view(-1, 1)
    per_level = pinball(x, q, levels) / log_scale.exp() + log_scale - torch.log(tau * (1 - tau))
    return per_level.mean(dim=1).sum(dim=1)


def log_normal(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    # log N(z; mean, var), summed over the last axis
    return -0.5 * (math.log(2 * math.pi) + log_var + (z - mean).pow(2) / log_var.exp()).sum(dim=-1)
