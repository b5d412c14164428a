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
