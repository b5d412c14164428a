"""`python -m training sample NAME[@VERSION] --n N --out FILE`: many generated rows into a file,
offline, with the service's ONNX graph and sampling code (core/offline.py, core/generation.py), so
that a seed gives the rows /generate and /generate/stream answer. Memory stays flat whatever N:
rows are written a part at a time. The format follows the file's suffix: .csv, .parquet,
.ndjson (.jsonl) or .arrow (an Arrow IPC stream). Torch is not needed."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from core.errors import GenserveError
from core.formats import SUFFIXES, RowWriter
from core.generation import Block
from core.manifest import Manifest
from core.offline import Sampler
from core.repository import resolve
from core.rules import Conditions

LOG_EVERY_S = 5.0


@dataclass
class SampleOptions:
    model: str
    n: int
    out: Path
    label: str | None = None
    label_weights: dict[str, float] | None = None
    conditions: dict[str, Any] | None = None  # as /generate's `conditions` (core/rules.py)
    seed: int | None = None
    mode: str | None = None
    temperature: float = 1.0
    models_dir: Path = Path("models")
    threads: int = 1


class _Progress:
    """A bar in a terminal (tqdm), a plain line every LOG_EVERY_S seconds otherwise."""

    def __init__(self, total: int, desc: str, stream: IO[str]) -> None:
        self.total, self.desc, self.stream, self.done = total, desc, stream, 0
        self.started = self.last = time.perf_counter()
        self.bar = None
        if getattr(stream, "isatty", lambda: False)():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=desc, unit=" rows", unit_scale=True, file=stream)
            except ImportError:
                pass

    def update(self, rows: int) -> None:
        self.done += rows
        if self.bar is not None:
            self.bar.update(rows)
        elif time.perf_counter() - self.last >= LOG_EVERY_S:
            self.last = time.perf_counter()
            print(f"{self.desc}: {self.done:,}/{self.total:,} rows ({self._rate()})", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def _rate(self) -> str:
        return f"{self.done / max(time.perf_counter() - self.started, 1e-9):,.0f} rows/s"


def sample_to_file(opts: SampleOptions, stream: IO[str] = sys.stderr) -> float:
    """Writes the rows; returns the seconds taken. ValueError / FileNotFoundError say what is wrong."""
    media_type = SUFFIXES.get(opts.out.suffix.lower())
    if media_type is None:
        raise ValueError(f"--out {opts.out}: the suffix names the format, one of {sorted(SUFFIXES)}")
    if opts.n < 1:
        raise ValueError("--n must be at least 1")
    if not 0 < opts.temperature <= 10:
        raise ValueError("--temperature must be in (0, 10]")
    sampler = Sampler(resolve(opts.models_dir, opts.model), threads=opts.threads)
    m = sampler.manifest
    label, weights = _label(opts, m, sampler.table is not None)
    conditions = _conditions(opts, m, sampler, label, weights)
    if conditions is not None and conditions.label is not None:
        label = conditions.label
    writer = RowWriter(media_type, sampler.names, sampler.table, labelled=m.labels is not None)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    partial = opts.out.with_name(f".{opts.out.name}.partial-{os.getpid()}")  # renamed once complete
    progress = _Progress(opts.n, f"{m.name}@{m.version} -> {opts.out.name}", stream)
    started = time.perf_counter()
    try:
        with open(partial, "wb") as f:
            part, rows = [], 0
            blocks = sampler.blocks(opts.n, label, opts.seed, opts.mode, opts.temperature, weights, conditions)
            for block in _told(blocks):
                part.append(block)
                rows += len(block)
                if rows >= writer.part_rows:
                    f.write(writer.write(part))
                    progress.update(rows)
                    part, rows = [], 0
            if part:
                f.write(writer.write(part))
                progress.update(rows)
            f.write(writer.close())
        partial.replace(opts.out)
    finally:
        progress.close()
        partial.unlink(missing_ok=True)
    took = time.perf_counter() - started
    print(
        f"wrote {opts.n:,} rows of {m.name}@{m.version} to {opts.out} ({media_type}) in {took:.1f} s "
        f"({opts.n / took:,.0f} rows/s)",
        file=stream,
    )
    return took


def _conditions(
    opts: SampleOptions, m: Manifest, sampler: Sampler, label: int | None, weights: np.ndarray | None
) -> Conditions | None:
    """--conditions checked against the model (ValueError naming the one that cannot be met)."""
    if not opts.conditions:
        return None
    if sampler.table is None:
        raise ValueError(f"model {m.name}@{m.version} has no columns to condition on: leave out --conditions")
    try:
        conditions = Conditions(m, sampler.table, opts.conditions)
    except GenserveError as e:
        raise ValueError(e.message) from None
    if conditions.label is not None and ((label is not None and label != conditions.label) or weights is not None):
        raise ValueError("give --label, --label-weights or a condition on the label column, one of them")
    return conditions


def _told(blocks: Iterator[Block]) -> Iterator[Block]:
    """The blocks, with the service's errors (too few rows meet the conditions) as ValueError."""
    try:
        yield from blocks
    except GenserveError as e:
        raise ValueError(e.message) from None


def _label(opts: SampleOptions, m: Manifest, table: bool) -> tuple[int | None, np.ndarray | None]:
    """(the label index, or None; the label shares to draw from, or None for the training shares)."""
    if m.labels is None:
        if opts.label is not None or opts.label_weights is not None:
            raise ValueError(f"model {m.name}@{m.version} is unconditional: leave out --label and --label-weights")
        return None, None
    if opts.label is not None:
        if opts.label not in m.labels:
            raise ValueError(f"unknown label {opts.label!r} for model {m.name}@{m.version}; valid labels: {m.labels}")
        if opts.label_weights is not None:
            raise ValueError("give either --label or --label-weights, not both")
        return m.labels.index(opts.label), None
    if not table:
        raise ValueError(f"no --label for conditional model {m.name}@{m.version}; valid labels: {m.labels}")
    if opts.label_weights is None:
        return None, None
    unknown = [k for k in opts.label_weights if k not in m.labels]
    if unknown:
        raise ValueError(f"--label-weights names unknown label {unknown[0]!r}; valid labels: {m.labels}")
    weights = np.array([opts.label_weights.get(k, 0.0) for k in m.labels], dtype=np.float64)
    if not (np.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
        raise ValueError("--label-weights: non-negative weights, at least one positive")
    return None, weights / weights.sum()
