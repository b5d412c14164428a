import math

import numpy as np
import pytest
import torch

from training.calibrate import calibrate_quantiles
from training.model import (
    VAE,
    ModelConfig,
    gaussian_nll,
    kl_to_standard_normal,
    monotone_quantiles,
    ordered_outward,
    pinball,
    quantile_nll,
)
from training.train import TrainConfig, fit


@pytest.mark.parametrize("head", ["bernoulli", "gaussian", "quantile"])
@pytest.mark.parametrize("n_labels", [0, 3])
def test_every_head_and_conditioning_trains_a_step(head: str, n_labels: int) -> None:
    torch.manual_seed(0)
    model = VAE(ModelConfig(input_dim=6, latent_dim=2, hidden=(16,), head=head, n_labels=n_labels))
    x = torch.rand(5, 6)
    y = torch.tensor([0, 1, 2, 0, 1]) if n_labels else None
    mean, log_var = model.encoder(x, y)
    assert mean.shape == log_var.shape == (5, 2)
    out = model.decoder(mean, y)
    expected = {"bernoulli": [(5, 6)], "gaussian": [(5, 6), (5, 6)], "quantile": [(5, 5, 6)]}[head]
    assert [tuple(t.shape) for t in out] == expected
    recon, kl = model.losses(x, y)
    (recon + kl).mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_quantiles_never_cross_even_for_extreme_raw_outputs() -> None:
    q = monotone_quantiles(torch.randn(64, 5, 7) * 50)
    assert (q[:, 1:] >= q[:, :-1]).all()  # at |q| ~ 50 float32 cannot hold the 1e-6 minimum step
    q = monotone_quantiles(torch.randn(64, 5, 7))
    assert (q[:, 1:] > q[:, :-1]).all()


def test_calibration_keeps_quantiles_ordered_and_hits_validation_coverage_per_feature() -> None:
    rng = np.random.default_rng(0)
    x_train, x_val = (rng.standard_t(3, size=(n, 4)).astype(np.float32) for n in (400, 400))
    x_train[:, 0] = x_val[:, 0] = 0.0  # a constant feature: a point mass, where a pooled factor broke
    cfg = ModelConfig(input_dim=4, latent_dim=2, hidden=(16,), head="quantile")
    model = fit(cfg, (x_train, None), (x_val, None), TrainConfig(max_epochs=30, warmup_epochs=5)).model
    offsets = calibrate_quantiles(model, x_val, None)
    assert offsets.shape == (5, 4) and (offsets[2] == 0).all()  # the median is left as trained
    np.testing.assert_allclose(offsets[0], -offsets[4])  # one offset per band, applied outward
    with torch.no_grad():
        q = model.decoder(model.encoder(torch.from_numpy(x_val))[0])[0].numpy()
    assert (np.diff(q, axis=1) >= 0).all()
    for lo, hi, nominal in ((0, 4, 0.90), (1, 3, 0.50)):
        inside = ((x_val >= q[:, lo]) & (x_val <= q[:, hi])).mean(axis=0)
        # every varying feature's band now holds its nominal share of the rows (conformal: at least
        # nominal, at most 1/n above); the constant's too, or more where ordering widened it
        np.testing.assert_allclose(inside[1:], nominal, atol=0.01)
        assert nominal - 0.01 <= inside[0] <= nominal + 0.05


def test_ordering_outward_fixes_crossed_quantiles_and_keeps_ordered_ones() -> None:
    q = torch.tensor([[[0.0], [-1.0], [0.5], [0.4], [2.0]]])  # levels 1 and 3 cross their inner neighbours
    assert ordered_outward(q, 2).flatten().tolist() == [-1.0, -1.0, 0.5, 0.5, 2.0]
    ordered = monotone_quantiles(torch.randn(8, 5, 3))
    assert torch.equal(ordered_outward(ordered, 2), ordered)


def test_kl_is_zero_for_the_prior_and_positive_otherwise() -> None:
    zeros = torch.zeros(3, 4)
    assert torch.allclose(kl_to_standard_normal(zeros, zeros), torch.zeros(3))
    assert (kl_to_standard_normal(torch.ones(3, 4), zeros) == 2.0).all()  # 0.5 * 4 * 1^2


def test_gaussian_nll_matches_torch_distributions() -> None:
    x, mean, log_var = torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 3)
    expected = -torch.distributions.Normal(mean, (0.5 * log_var).exp()).log_prob(x).sum(dim=1)
    assert torch.allclose(gaussian_nll(x, mean, log_var).sum(dim=1), expected, atol=1e-5)


def test_pinball_loss_values() -> None:
    levels = torch.tensor([0.1, 0.9])
    q = torch.zeros(1, 2, 1)
    # x above the quantile costs tau * (x - q); below, (1 - tau) * (q - x)
    assert pinball(torch.tensor([[2.0]]), q, levels).flatten().tolist() == pytest.approx([0.2, 1.8])
    assert pinball(torch.tensor([[-2.0]]), q, levels).flatten().tolist() == pytest.approx([1.8, 0.2])


def test_quantile_nll_is_the_asymmetric_laplace_likelihood() -> None:
    # ALD density tau (1 - tau) / s * exp(-rho_tau(x - q) / s): check one level against the formula
    levels, log_scale = torch.tensor([0.3]), torch.tensor([math.log(2.0)])
    x, q = torch.tensor([[1.5]]), torch.tensor([[[0.5]]])
    density = 0.3 * 0.7 / 2.0 * math.exp(-0.3 * 1.0 / 2.0)
    assert quantile_nll(x, q, levels, log_scale).item() == pytest.approx(-math.log(density), rel=1e-6)
