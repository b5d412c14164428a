"""core/heads.py: each decoder head's draws, quantiles, bands and likelihood, and training's torch mirror of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.heads import HEADS, NoSpread, inverse_cdf
from core.manifest import decoder_output_names
from training.export import ServedDecoder
from training.model import TORCH_HEADS, VAE, ModelConfig

LEVELS = np.array([0.05, 0.25, 0.5, 0.75, 0.95])


def test_quantile_head_draws_have_the_predicted_quantiles() -> None:
    q = np.tile(np.array([-2.0, -0.5, 0.0, 1.0, 4.0])[None, :, None], (40000, 1, 1)).astype(np.float32)
    x = inverse_cdf(q, LEVELS, np.random.default_rng(0).random((40000, 1)))[:, 0]
    assert np.allclose(np.quantile(x, LEVELS), [-2.0, -0.5, 0.0, 1.0, 4.0], atol=0.06)
    assert x.min() < -2.5 and x.max() > 5  # tails beyond the outer levels, not cut off
    same = HEADS["quantile"].draw([q[:10]], LEVELS, np.random.default_rng(1))
    assert np.array_equal(same, HEADS["quantile"].draw([q[:10]], LEVELS, np.random.default_rng(1)))


def test_gaussian_and_bernoulli_draws() -> None:
    rng = np.random.default_rng(0)
    mean, log_var = np.full((50000, 1), 2.0, np.float32), np.full((50000, 1), np.log(9.0), np.float32)
    x = HEADS["gaussian"].draw([mean, log_var], None, rng)
    assert abs(x.mean() - 2) < 0.05 and abs(x.std() - 3) < 0.05
    bits = HEADS["bernoulli"].draw([np.full((50000, 1), 0.3, np.float32)], None, rng)
    assert set(np.unique(bits)) == {0.0, 1.0} and abs(bits.mean() - 0.3) < 0.01


def test_gaussian_quantiles_and_bands_are_those_of_its_normal() -> None:
    mean, log_var = np.array([[1.0, -2.0]], np.float32), np.array([[0.0, np.log(4.0)]], np.float32)
    levels, q = HEADS["gaussian"].quantiles([mean, log_var], None)
    assert levels == [0.05, 0.25, 0.5, 0.75, 0.95]
    assert q[0, 2].tolist() == [1.0, -2.0] and q[0, 4] == pytest.approx([1 + 1.6449, -2 + 2 * 1.6449], abs=1e-3)
    low, high = HEADS["gaussian"].band([mean, log_var], None, 0.9)
    assert np.allclose(low, q[:, 0], atol=1e-5) and np.allclose(high, q[:, 4], atol=1e-5)


def test_a_quantile_head_answers_its_own_levels_and_only_their_central_bands() -> None:
    q = np.sort(np.random.default_rng(0).normal(size=(3, 5, 2)), axis=1).astype(np.float32)
    assert HEADS["quantile"].quantiles([q], LEVELS.tolist()) == (LEVELS.tolist(), q)
    low, high = HEADS["quantile"].band([q], LEVELS.tolist(), 0.5)
    assert np.array_equal(low, q[:, 1]) and np.array_equal(high, q[:, 3])
    with pytest.raises(ValueError, match=r"no 0.8 band; its central bands: \[0.5, 0.9\]"):
        HEADS["quantile"].band([q], LEVELS.tolist(), 0.8)


def test_a_bernoulli_head_has_no_spread() -> None:
    assert not HEADS["bernoulli"].spread
    assert HEADS["bernoulli"].band([np.full((2, 3), 0.5, np.float32)], None, 0.9) is None
    with pytest.raises(NoSpread):
        HEADS["bernoulli"].quantiles([np.full((2, 3), 0.5, np.float32)], None)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_the_torch_head_mirrors_the_served_one(head: str) -> None:
    """What training fits is what the service reads: the exported decoder's outputs are the core head's,
    with the shapes the manifest states; the central value and the likelihood agree."""
    torch.manual_seed(0)
    cfg = ModelConfig(input_dim=4, latent_dim=2, hidden=(8,), head=head)
    model = VAE(cfg).eval()
    z = torch.randn(6, 2)
    with torch.no_grad():
        params = model.decoder(z)
        served = [t.numpy() for t in ServedDecoder(model)(z)]
    core = HEADS[head]
    assert TORCH_HEADS[head].core is core
    assert decoder_output_names(head, False) == list(core.outputs)
    assert [o.shape for o in served] == core.output_shapes(6, 4, len(cfg.quantile_levels))
    levels = list(cfg.quantile_levels)
    torch_central = TORCH_HEADS[head].central(params, cfg.quantile_levels).numpy()
    assert np.allclose(core.central(served, levels), torch_central, atol=1e-6)
    x = np.random.default_rng(0).random((6, 4)).astype(np.float32)
    with torch.no_grad():
        torch_nll = TORCH_HEADS[head].nll(torch.from_numpy(x), params, model).numpy()
    if core.levelled:  # the served likelihood reads its scale off the outer band (training learns one): finite
        assert np.isfinite(core.nll(x.astype(np.float64), served, levels)).all()
    else:
        assert np.allclose(core.nll(x.astype(np.float64), served, levels), torch_nll, atol=1e-4)
