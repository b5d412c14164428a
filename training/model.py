"""One VAE family: conditioning (none | class label) x decoder head (bernoulli | gaussian | quantile).

VAE = unconditional, CVAE = conditioned on a label, QVAE = quantile head; the
conditional quantile VAE is the fourth corner. All tensors here are in normalised units.

A table's encoded rows (core/table.py) are [numeric | one-hot per categorical column |
missing indicators]: the head describes the numeric block, the decoder adds a logit per
category (softmax per column, cross-entropy) and per missing indicator (Bernoulli), and a
missing numeric value drops out of the head's likelihood.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from core.heads import HEADS, Head, median_index

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
    # a table's layout (core/table.Table): numeric_dim 0 means every feature is numeric
    numeric_dim: int = 0
    categories: tuple[int, ...] = ()  # category count per categorical column
    numeric_gap: tuple[int, ...] = ()  # per numeric column: its missing indicator's index, or -1

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def n_numeric(self) -> int:
        return self.numeric_dim or self.input_dim

    @property
    def n_discrete(self) -> int:
        """Logits beside the head: one per category, one per missing indicator."""
        return self.input_dim - self.n_numeric


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
        self.n_numeric = cfg.n_numeric
        self.n_discrete = cfg.n_discrete
        self.n_levels = len(cfg.quantile_levels)
        self.torch_head = TORCH_HEADS[cfg.head]
        self.head_width = self.torch_head.width(self.n_levels) * cfg.n_numeric
        self.net = mlp([cfg.latent_dim + cfg.n_labels, *reversed(cfg.hidden), self.head_width + cfg.n_discrete])
        # Quantile recalibration (training/calibrate.py): an offset per level and feature, zeros
        # (the identity) until calibrated.
        self.median_index = median_index(cfg.quantile_levels)
        self.register_buffer("quantile_offset", torch.zeros(self.n_levels, self.n_numeric))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The head's parameters for the numeric block, then a table's discrete logits when it has any."""
        out = self.net(self.with_label(z, y))
        h, logits = out[:, : self.head_width], out[:, self.head_width :]
        discrete = (logits,) if self.n_discrete else ()
        return *self.torch_head.params(h, self), *discrete


class TorchHead:
    """A decoder head in torch, mirroring core/heads.py's (`core`): its parameters from the network's raw
    outputs, its negative log-likelihood per value (the training loss), its central value, and the outputs
    the exported graph gives (what the core head reads)."""

    core: Head

    def width(self, levels: int) -> int:
        """Raw outputs per numeric feature."""
        return len(self.core.outputs)

    def params(self, h: torch.Tensor, decoder: Decoder) -> tuple[torch.Tensor, ...]:
        return (h,)

    def nll(self, x: torch.Tensor, params: tuple[torch.Tensor, ...], model: VAE) -> torch.Tensor:
        raise NotImplementedError

    def central(self, params: tuple[torch.Tensor, ...], levels: tuple[float, ...]) -> torch.Tensor:
        return params[0]

    def served(self, params: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return params


class BernoulliHead(TorchHead):
    core = HEADS["bernoulli"]  # params: the logits; served as probabilities

    def nll(self, x: torch.Tensor, params: tuple[torch.Tensor, ...], model: VAE) -> torch.Tensor:
        return bernoulli_nll(x, params[0])

    def central(self, params: tuple[torch.Tensor, ...], levels: tuple[float, ...]) -> torch.Tensor:
        return torch.sigmoid(params[0])

    def served(self, params: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (torch.sigmoid(params[0]),)


class GaussianHead(TorchHead):
    core = HEADS["gaussian"]

    def params(self, h: torch.Tensor, decoder: Decoder) -> tuple[torch.Tensor, ...]:
        mean, log_var = h.chunk(2, dim=1)
        return mean, log_var.clamp(LOG_VAR_MIN, LOG_VAR_MAX)

    def nll(self, x: torch.Tensor, params: tuple[torch.Tensor, ...], model: VAE) -> torch.Tensor:
        return gaussian_nll(x, *params)


class QuantileHead(TorchHead):
    core = HEADS["quantile"]

    def width(self, levels: int) -> int:
        return levels

    def params(self, h: torch.Tensor, decoder: Decoder) -> tuple[torch.Tensor, ...]:
        q = monotone_quantiles(h.view(-1, decoder.n_levels, decoder.n_numeric)) + decoder.quantile_offset
        return (ordered_outward(q, decoder.median_index),)

    def nll(self, x: torch.Tensor, params: tuple[torch.Tensor, ...], model: VAE) -> torch.Tensor:
        assert model.quantile_log_scale is not None
        return quantile_nll(x, params[0], model.levels, model.quantile_log_scale)

    def central(self, params: tuple[torch.Tensor, ...], levels: tuple[float, ...]) -> torch.Tensor:
        return params[0][:, median_index(levels)]


TORCH_HEADS: dict[str, TorchHead] = {head.core.name: head for head in (BernoulliHead(), GaussianHead(), QuantileHead())}


def monotone_quantiles(raw: torch.Tensor) -> torch.Tensor:
    """Non-crossing quantiles by construction: q_1 = base, q_k = q_{k-1} + softplus(delta_k)."""
    base = raw[:, :1]
    increments = F.softplus(raw[:, 1:]) + 1e-6
    return torch.cat([base, base + increments.cumsum(dim=1)], dim=1)


def ordered_outward(q: torch.Tensor, center: int) -> torch.Tensor:
    """Quantiles [B, K, D] made non-crossing outward from level `center`: a level below it is at most
    the one above, a level above at least the one below (unrolled over K: exports as Min/Max)."""
    levels = list(q.unbind(dim=1))
    for k in range(center - 1, -1, -1):
        levels[k] = torch.minimum(levels[k], levels[k + 1])
    for k in range(center + 1, len(levels)):
        levels[k] = torch.maximum(levels[k], levels[k - 1])
    return torch.stack(levels, dim=1)


class VAE(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.register_buffer("levels", torch.tensor(cfg.quantile_levels, dtype=torch.float32))
        # Per-feature scale of the asymmetric Laplace likelihood behind the pinball loss.
        self.quantile_log_scale = nn.Parameter(torch.zeros(cfg.n_numeric)) if HEADS[cfg.head].levelled else None
        n_cat = sum(cfg.categories)
        self.category_slices = [
            (start, start + k)
            for start, k in zip(itertools.accumulate((0, *cfg.categories)), cfg.categories, strict=False)
        ]
        self.missing_slice = (n_cat, cfg.n_discrete)
        # observed numeric value = 1 - its missing indicator (columns without gaps are always observed)
        gap = torch.tensor(cfg.numeric_gap or [-1] * cfg.n_numeric, dtype=torch.long)
        self.register_buffer("numeric_gap", gap, persistent=False)

    def reconstruction_nll(self, x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """-log p(x | z) per row: the head's term over observed numeric values, then for a table
        cross-entropy per categorical column and a Bernoulli term per missing indicator."""
        d = self.cfg.n_numeric
        xn = x[:, :d]
        head_params = params[: len(params) - (1 if self.cfg.n_discrete else 0)]
        per_value = self.decoder.torch_head.nll(xn, head_params, self)
        if not self.cfg.n_discrete:
            return per_value.sum(dim=1)
        discrete, logits = x[:, d:], params[-1]
        missing = discrete[:, self.missing_slice[0] :]
        observed = torch.ones_like(xn)
        has_gap = self.numeric_gap >= 0
        if bool(has_gap.any()):
            observed[:, has_gap] = 1 - missing[:, self.numeric_gap[has_gap]]
        nll = (per_value * observed).sum(dim=1)
        for start, stop in self.category_slices:
            # a missing category's one-hot is all zeros, so it adds nothing here
            nll = nll + categorical_nll(discrete[:, start:stop], logits[:, start:stop])
        return nll + bernoulli_nll(missing, logits[:, self.missing_slice[0] :]).sum(dim=1)

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
    # -[x log p + (1 - x) log(1 - p)] per value, p = sigmoid(logits); x may be fractional in [0, 1]
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none")


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    # -log N(x; mean, var) = 0.5 * [log(2 pi) + log_var + (x - mean)^2 / var] per value
    return 0.5 * (math.log(2 * math.pi) + log_var + (x - mean).pow(2) / log_var.exp())


def categorical_nll(onehot: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    # -sum_k onehot_k log softmax(logits)_k per row (0 for an all-zero one-hot: a missing value)
    return -(onehot * F.log_softmax(logits, dim=1)).sum(dim=1)


def pinball(x: torch.Tensor, q: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """rho_tau(x - q) = max(tau (x - q), (tau - 1)(x - q)), elementwise over [B, K, D]."""
    diff = x.unsqueeze(1) - q
    tau = levels.view(1, -1, 1)
    return torch.maximum(tau * diff, (tau - 1) * diff)


def quantile_nll(x: torch.Tensor, q: torch.Tensor, levels: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Pinball loss read as an asymmetric-Laplace likelihood, averaged over the K levels:
    -log ALD(x; q_tau, s, tau) = rho_tau(x - q_tau) / s + log s - log(tau (1 - tau)),
    so one feature counts as one observation against the KL term, whatever K is. Per value [B, D]."""
    tau = levels.view(-1, 1)
    per_level = pinball(x, q, levels) / log_scale.exp() + log_scale - torch.log(tau * (1 - tau))
    return per_level.mean(dim=1)


def log_normal(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    # log N(z; mean, var), summed over the last axis
    return -0.5 * (math.log(2 * math.pi) + log_var + (z - mean).pow(2) / log_var.exp()).sum(dim=-1)
