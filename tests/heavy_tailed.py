"""A synthetic heavy-tailed, skewed tabular data set, written as CSV (not tuned on by training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_heavy_tailed_csv(path: Path, rows: int = 2000, seed: int = 7) -> Path:
    """Two latent factors drive 8 features through non-linear maps, plus Student-t (df 3)
    and log-normal noise: right-skewed, heavy-tailed, with a string label column."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(rows, 2))
    mixing = rng.normal(size=(2, 8))
    signal = np.tanh(factors @ mixing)
    noise = 0.3 * rng.standard_t(df=3, size=(rows, 8)) + 0.2 * rng.lognormal(0.0, 0.8, size=(rows, 8))
    x = np.exp(0.8 * signal) + noise
    label = np.where(factors[:, 0] > 0, "high", "low")
    header = ",".join([f"f{i}" for i in range(8)] + ["group"])
    lines = [header] + [",".join(f"{v:.6g}" for v in row) + f",{g}" for row, g in zip(x, label, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_awkward_table_csv(path: Path, rows: int = 8000, seed: int = 11) -> Path:
    """A table whose numeric columns are hard on quantile bands: `spend` is zero in ~40% of rows
    (zero-inflated), `visits` a small count (integer), `returns` Student-t with 2 degrees of freedom
    (heavy-tailed), beside a smooth `tenure` and a categorical `plan`; one latent factor drives them."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=rows)
    basic_or_free = np.where(rng.random(rows) < 0.5, "basic", "free")
    plan = np.where(f + rng.normal(scale=0.7, size=rows) > 0.3, "pro", basic_or_free)
    spend = np.where(rng.random(rows) < 0.3 + 0.2 * (f < 0), 0.0, np.exp(3 + 0.6 * f + 0.8 * rng.normal(size=rows)))
    visits = rng.poisson(np.exp(1.5 + 0.5 * f))
    returns = 0.5 * f + rng.standard_t(df=2, size=rows)
    tenure = 24 + 10 * f + 5 * rng.normal(size=rows)
    lines = ["spend,visits,returns,tenure,plan"]
    lines += [
        f"{s:.2f},{v},{r:.4f},{t:.2f},{p}" for s, v, r, t, p in zip(spend, visits, returns, tenure, plan, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path
