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


def test_calibration_keeps_quantiles_ordered_and_hits_validation_coverage() -> None:
    rng = np.random.default_rng(0)
    x_train, x_val = (rng.standard_t(3, size=(n, 4)).astype(np.float32) for n in (400, 400))
    cfg = ModelConfig(input_dim=4, latent_dim=2, hidden=(16,), head="quantile")
    model = fit(cfg, (x_train, None), (x_val, None), TrainConfig(max_epochs=30, warmup_epochs=5)).model
    scales = calibrate_quantiles(model, x_val, None)
    assert scales[2] == 1.0 and scales[0] >= scales[1] and scales[4] >= scales[3]
    with torch.no_grad():
        q = model.decoder(model.encoder(torch.from_numpy(x_val))[0])[0].numpy()
    assert (np.diff(q, axis=1) > 0).all()
    below = (x_val[:, None, :] < q).mean(axis=(0, 2))
    # every level but the median (which calibration leaves as trained) now splits the rows as its tau says
    np.testing.assert_allclose(below[[0, 1, 3, 4]], [0.05, 0.25, 0.75, 0.95], atol=0.01)


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
