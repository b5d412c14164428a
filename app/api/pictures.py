"""Pictures of answers, drawn with numpy and the standard library only (the serving path has no
plotting library): a PNG grid of generated images, and a band plot of one row's quantiles as
SVG (labelled) or PNG (the same marks, no text)."""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from html import escape

import numpy as np

PNG_MEDIA_TYPE = "image/png"
SVG_MEDIA_TYPE = "image/svg+xml"
CELL_PIXELS = 48  # an image is scaled up to about this size (an 8x8 digit: 6x)
GAP = 2
MAX_COLUMNS = 16
MAX_GRID_IMAGES = 1024  # images in one PNG grid: about 3,300 x 850 pixels, drawn in tens of ms

# A picture (or a figure training wrote) is a document a browser may open in the service's origin,
# where the page keeps its API key: it may run no script and fetch nothing, and is not sniffed as HTML
PICTURE_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def picture_headers(filename: str | None = None) -> dict[str, str]:
    """The headers of every SVG or PNG answer (and `filename` named as an inline download)."""
    headers = {"Content-Security-Policy": PICTURE_CSP, "X-Content-Type-Options": "nosniff"}
    if filename is not None:
        headers["Content-Disposition"] = f'inline; filename="{filename}"'
    return headers


def png(pixels: np.ndarray) -> bytes:
    """uint8 pixels, [height, width] (grey) or [height, width, 3] (RGB), as a PNG file."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    colour = 0 if pixels.ndim == 2 else 2
    rows = pixels.reshape(height, -1)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()  # filter 0 per line

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def image_grid(samples: np.ndarray, shape: Sequence[int], rows: int | None = None) -> bytes:
    """Samples [n, h*w] with values in [0, 1] (ink), as one PNG: dark ink on white, each image
    scaled up to about CELL_PIXELS, `rows` rows (default: as square as fits MAX_COLUMNS)."""
    n = len(samples)
    h, w = int(shape[-2]), int(shape[-1])
    scale = max(1, CELL_PIXELS // max(h, w))
    columns = min(MAX_COLUMNS, math.ceil(math.sqrt(n))) if rows is None else math.ceil(n / rows)
    rows = math.ceil(n / columns)
    cell_h, cell_w = h * scale, w * scale
    canvas = np.full((rows * (cell_h + GAP) + GAP, columns * (cell_w + GAP) + GAP), 255, np.uint8)
    ink = np.clip(np.nan_to_num(samples.reshape(n, h, w), nan=0.0), 0.0, 1.0)
    cells = np.round(255 * (1 - ink)).astype(np.uint8).repeat(scale, axis=1).repeat(scale, axis=2)
    for i, cell in enumerate(cells):
        top, left = GAP + (i // columns) * (cell_h + GAP), GAP + (i % columns) * (cell_w + GAP)
        canvas[top : top + cell_h, left : left + cell_w] = cell
    return png(canvas)


# ---- band plots ---------------------------------------------------------------------------

ROW_PIXELS = 18
PLOT_WIDTH = 360
LABEL_WIDTH = 170
_OUTER, _INNER, _MEDIAN, _INPUT, _OUTSIDE = "#c9dcf0", "#7fa8d6", "#1f3f66", "#222222", "#d62728"


def _positions(levels: Sequence[float], bands: np.ndarray, x: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """Per feature: the outer band, the inner band, the median and the input, on [0, 1] of the plot.
    Each feature is drawn on its own scale: its outer band spans the middle 70% of the width."""
    levels = list(levels)
    lo, hi = bands[0], bands[-1]
    inner_lo = bands[levels.index(0.25)] if 0.25 in levels else lo
    inner_hi = bands[levels.index(0.75)] if 0.75 in levels else hi
    median = bands[len(levels) // 2]
    span = np.where(hi - lo > 0, hi - lo, 1.0)

    def place(v: np.ndarray) -> np.ndarray:
        return np.clip(0.15 + 0.7 * (v - lo) / span, 0.0, 1.0)

    value = place(x) if x is not None else None
    return place(lo), place(hi), place(inner_lo), place(inner_hi), place(median), value


def outside(bands: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Features whose value lies outside the outer band."""
    return (x < bands[0]) | (x > bands[-1])


def band_svg(levels: Sequence[float], bands: np.ndarray, x: np.ndarray | None, names: Sequence[str]) -> bytes:
    """One row's bands [levels, features] with its values `x` (None: bands only), as SVG."""
    lo, hi, ilo, ihi, med, val = _positions(levels, bands, x)
    out = outside(bands, x) if x is not None else np.zeros(len(names), bool)
    height = ROW_PIXELS * len(names) + 40
    width = LABEL_WIDTH + PLOT_WIDTH + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        f'font-size="11"><rect width="100%" height="100%" fill="white"/>',
        f'<text x="{LABEL_WIDTH}" y="14">{escape(_legend(levels))}</text>',
    ]

    def at(p: float) -> float:
        return LABEL_WIDTH + float(p) * PLOT_WIDTH

    def bar(start: float, stop: float, top: float, tall: int, fill: str) -> str:
        return f'<rect x="{start:.1f}" y="{top}" width="{stop - start:.1f}" height="{tall}" fill="{fill}"/>'

    for i, name in enumerate(names):
        y = 24 + i * ROW_PIXELS
        mid = y + ROW_PIXELS / 2
        colour = _OUTSIDE if out[i] else "#000"
        label = escape(str(name))
        parts.append(f'<text x="{LABEL_WIDTH - 6}" y="{mid + 4:.1f}" text-anchor="end" fill="{colour}">{label}</text>')
        parts.append(bar(at(lo[i]), at(hi[i]), y + 4, 10, _OUTER))
        parts.append(bar(at(ilo[i]), at(ihi[i]), y + 4, 10, _INNER))
        parts.append(bar(at(med[i]) - 1, at(med[i]) + 1, y + 2, 14, _MEDIAN))
        if val is not None:
            fill = _OUTSIDE if out[i] else _INPUT
            dot = f'<circle cx="{at(val[i]):.1f}" cy="{mid:.1f}" r="4" fill="{fill}">'
            parts.append(dot + f"<title>{x[i]:g}</title></circle>")
    parts.append("</svg>")
    return "".join(parts).encode()


def band_png(levels: Sequence[float], bands: np.ndarray, x: np.ndarray | None) -> bytes:
    """The band plot's marks as a PNG (no text: the SVG has the feature names)."""
    lo, hi, ilo, ihi, med, val = _positions(levels, bands, x)
    out = outside(bands, x) if x is not None else np.zeros(bands.shape[1], bool)
    rgb = {c: tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in (_OUTER, _INNER, _MEDIAN, _INPUT, _OUTSIDE)}
    canvas = np.full((ROW_PIXELS * bands.shape[1] + 8, PLOT_WIDTH + 8, 3), 255, np.uint8)

    def px(p: float) -> int:
        return 4 + round(float(p) * (PLOT_WIDTH - 1))

    for i in range(bands.shape[1]):
        y = 4 + i * ROW_PIXELS
        canvas[y + 4 : y + 14, px(lo[i]) : px(hi[i]) + 1] = rgb[_OUTER]
        canvas[y + 4 : y + 14, px(ilo[i]) : px(ihi[i]) + 1] = rgb[_INNER]
        canvas[y + 2 : y + 16, px(med[i]) - 1 : px(med[i]) + 1] = rgb[_MEDIAN]
        if val is not None:
            c = px(val[i])
            canvas[y + 5 : y + 13, max(0, c - 4) : c + 4] = rgb[_OUTSIDE if out[i] else _INPUT]
    return png(canvas)


def _legend(levels: Sequence[float]) -> str:
    inner = ", 25-75% dark" if 0.25 in levels and 0.75 in levels else ""
    return f"{levels[0]:.0%}-{levels[-1]:.0%} light{inner}, median: line; the row: dot, red if outside"
