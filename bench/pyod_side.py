"""pyod's side of the anomaly benchmark: fit ECOD and AutoEncoder on normal rows and score others.

Runs in its own virtual environment (pyod, CPU torch), called by bench/anomaly.py as a subprocess:

    bench/.pyod-venv/bin/python bench/pyod_side.py --rows ROWS.npz --detectors ecod,autoencoder --out OUT.npz \
        [--seed 0] [--threads 1]

ROWS.npz holds `train`, `val` and `test`: float matrices already prepared as bench/anomaly.py prepares them for
scikit-learn's detectors (standardised numbers, gaps filled with the training median, one-hot categories). Each
detector runs at pyod's defaults (AutoEncoder: its default network, epochs and batch size, torch on `--threads`
threads); `fit` on `train` is timed. ECOD scores each row alone (ROW_BY_ROW). OUT.npz gets `<detector>_val`,
`<detector>_test` (decision_function: higher is more anomalous) and `<detector>_fit_s`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pyod.models.auto_encoder import AutoEncoder
from pyod.models.ecod import ECOD
from threadpoolctl import threadpool_limits

# ECOD's decision_function takes its empirical CDFs over the training rows and the rows it scores together, so
# that a batch holding many anomalies moves every score (on breast-cancer's test set, half malignant, AUC 0.59):
# each row is scored alone, as a detector in service scores a new row
ROW_BY_ROW = ("ecod",)
DETECTORS = {"ecod": lambda seed: ECOD(), "autoencoder": lambda seed: AutoEncoder(random_state=seed, verbose=0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=Path, required=True)
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    rows = np.load(args.rows)
    out: dict[str, np.ndarray] = {}
    for name in (d for d in args.detectors.split(",") if d):
        if name not in DETECTORS:
            raise SystemExit(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
        model = DETECTORS[name](args.seed)
        start = time.perf_counter()
        model.fit(rows["train"].astype(np.float64))
        out[f"{name}_fit_s"] = np.array(time.perf_counter() - start)
        for part in ("val", "test"):
            x = rows[part].astype(np.float64)
            if name in ROW_BY_ROW:  # its ECDFs are taken over the training rows and the rows scored together
                out[f"{name}_{part}"] = np.concatenate([model.decision_function(x[i : i + 1]) for i in range(len(x))])
            else:
                out[f"{name}_{part}"] = model.decision_function(x)
        print(f"pyod {name}: fit {float(out[f'{name}_fit_s']):.1f} s", file=sys.stderr, flush=True)
    np.savez(args.out, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
