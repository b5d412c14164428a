"""Figures training writes beside a model, as small self-contained SVG files (no plotting
library): the loss curves of its history, and for a table each column's real rows (test split)
against the model's generated rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import numpy as np
import pandas as pd

WIDTH, HEIGHT, MARGIN = 560, 260, 44
REAL, MADE = "#1f77b4", "#ff7f0e"
CURVES = {"train": "#1f77b4", "val": "#d62728", "recon": "#2ca02c", "kl": "#9467bd"}


def _svg(width: int, height: int, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        f'font-size="11"><rect width="100%" height="100%" fill="white"/>' + "".join(body) + "</svg>\n"
    )


def loss_curves(history: Sequence[dict[str, float]], title: str) -> str:
    """Training loss, validation loss, and the loss's reconstruction and KL terms per epoch."""
    epochs = [h["epoch"] for h in history]
    series = {k: [h[k] for h in history] for k in CURVES if history and k in history[0]}
    values = [v for s in series.values() for v in s if math.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1
    x0, x1, y0, y1 = MARGIN, WIDTH - 10, HEIGHT - 30, 24

    def x(e: float) -> float:
        return x0 + (e - 1) / max(1, len(epochs) - 1) * (x1 - x0)

    def y(v: float) -> float:
        return y0 - (v - lo) / (hi - lo) * (y0 - y1)

    body = [
        f'<text x="{x0}" y="14">{escape(title)}: loss per epoch (lower is better)</text>',
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#999"/>',
        f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#999"/>',
        f'<text x="{x0 - 4}" y="{y1 + 4}" text-anchor="end">{hi:.3g}</text>',
        f'<text x="{x0 - 4}" y="{y0}" text-anchor="end">{lo:.3g}</text>',
        f'<text x="{x1}" y="{y0 + 14}" text-anchor="end">epoch {len(epochs)}</text>',
    ]
    for i, (name, points) in enumerate(series.items()):
        path = " ".join(f"{x(e):.1f},{y(v):.1f}" for e, v in zip(epochs, points, strict=True) if math.isfinite(v))
        body.append(f'<polyline fill="none" stroke="{CURVES[name]}" stroke-width="1.5" points="{path}"/>')
        body.append(f'<text x="{x0 + 10 + 80 * i}" y="{y0 + 24}" fill="{CURVES[name]}">{name}</text>')
    return _svg(WIDTH, HEIGHT + 10, body)


def column_histograms(real: pd.DataFrame, made: pd.DataFrame, numeric: Sequence[str], discrete: Sequence[str]) -> str:
    """Per column, the real rows' histogram (blue) beside the generated rows' (orange), as shares."""
    columns = [*numeric, *discrete]
    per_row, cell_w, cell_h = 3, 190, 120
    rows = math.ceil(len(columns) / per_row)
    body = [
        f'<text x="8" y="14">real test rows <tspan fill="{REAL}">(blue)</tspan> against generated rows '
        f'<tspan fill="{MADE}">(orange)</tspan>, share of rows per bin</text>'
    ]
    for i, name in enumerate(columns):
        left, top = 8 + (i % per_row) * cell_w, 24 + (i // per_row) * cell_h
        if name in numeric:
            a, b = real[name].dropna().to_numpy(float), made[name].dropna().to_numpy(float)
            both = np.concatenate([a, b]) if len(a) + len(b) else np.zeros(1)
            lo, hi = np.quantile(both, [0.005, 0.995]) if len(both) > 1 else (both[0], both[0] + 1)
            edges = np.linspace(lo, hi if hi > lo else lo + 1, 16)
            shares = [np.histogram(np.clip(v, edges[0], edges[-1]), edges)[0] / max(1, len(v)) for v in (a, b)]
            labels = [f"{lo:.3g}", f"{hi:.3g}"]
        else:
            keys = sorted(set(real[name].dropna().astype(str)) | set(made[name].dropna().astype(str)))[:12]
            shares = [np.array([(f[name].astype(str) == k).mean() for k in keys]) for f in (real, made)]
            labels = [keys[0] if keys else "", keys[-1] if keys else ""]
        body.append(_bars(left, top, cell_w - 14, cell_h - 34, name, shares, labels))
    return _svg(per_row * cell_w + 8, rows * cell_h + 30, body)


def _bars(left: float, top: float, width: float, height: float, name: str, shares, labels) -> str:
    real, made = shares
    n = max(1, len(real))
    peak = max(float(np.max(real, initial=0)), float(np.max(made, initial=0)), 1e-9)
    slot = width / n
    parts = [f'<text x="{left}" y="{top + 10}" font-weight="bold">{escape(str(name))[:28]}</text>']
    base = top + 14 + height
    for j in range(n):
        for k, (share, colour) in enumerate(((real, REAL), (made, MADE))):
            h = float(share[j]) / peak * height if j < len(share) else 0.0
            x = left + j * slot + k * slot / 2
            parts.append(
                f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{slot / 2:.1f}" height="{h:.1f}" fill="{colour}"/>'
            )
    parts.append(f'<text x="{left}" y="{base + 12}">{escape(labels[0])[:14]}</text>')
    parts.append(f'<text x="{left + width}" y="{base + 12}" text-anchor="end">{escape(labels[1])[:14]}</text>')
    return "".join(parts)
