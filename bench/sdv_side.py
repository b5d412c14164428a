"""SDV's side of the synthetic-data benchmark: fit SDV synthesizers on a training split and generate rows per label.

Runs in its own virtual environment (SDV 2.0, CPU torch), called by the benchmark as a subprocess:

    bench/.sdv-venv/bin/python bench/sdv_side.py --train TRAIN.csv --metadata META.json --label LABEL \
        --counts COUNTS.json --synthesizers tvae,ctgan,gaussiancopula --out OUTDIR --seed 0 [--threads 1]

- TRAIN.csv: the training split, with a header; missing values are empty cells.
- META.json: {"columns": {"<name>": {"sdtype": "numerical" | "categorical" | "boolean" | "datetime"}, ...}} for
  every column; a datetime column carries its "datetime_format" (strftime codes, e.g. "%Y-%m-%d" or "%H:%M:%S"),
  which SDV reads its cells in and writes its generated ones in. Categorical and datetime columns are read as
  strings, so the output holds exactly the input's categories; boolean columns hold true/false in any case and
  are written as True/False.
- COUNTS.json: {"<label value>": n_rows, ...}: how many rows to generate for each label value.

Each synthesizer (tvae, ctgan, gaussiancopula) runs at SDV's default settings: `fit` is timed, then
`sample_from_conditions` with one Condition per label value. SDV fills conditions by reject sampling where the model
cannot condition natively; labels it leaves short are retried with more tries per batch, and what is still missing is
recorded as "short_rows". Writes OUTDIR/<synth>.csv (the generated rows, the training split's columns, missing values
as empty cells) and OUTDIR/<synth>.json ({"fit_s", "sample_s", "rows", "sdv_version"[, "short_rows"]}). Prints one
progress line per step to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import warnings
from pathlib import Path

os.environ["TQDM_DISABLE"] = "1"  # SDV's sampling progress bars; tqdm reads this when it is imported

import numpy as np
import pandas as pd
import sdv
import torch
from sdv.metadata import Metadata
from sdv.sampling import Condition
from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer, TVAESynthesizer
from sdv.single_table.base import BaseSingleTableSynthesizer
from threadpoolctl import threadpool_limits

SYNTHESIZERS: dict[str, type[BaseSingleTableSynthesizer]] = {
    "tvae": TVAESynthesizer,
    "ctgan": CTGANSynthesizer,
    "gaussiancopula": GaussianCopulaSynthesizer,
}
TABLE = "table"  # SDV 2.0 takes single-table data and metadata keyed by a table name
# max_tries_per_batch for the first call and for each retry of labels left short. A larger batch_size would not
# help: SDV caps a condition's batch at the rows the condition asks for.
TRIES = (100, 1_000, 10_000)
NO_ROWS = "Unable to sample any rows"  # SDV's ValueError when a call yields no row at all
BOOLEANS = {"true": True, "false": False}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="training split (CSV with a header)")
    parser.add_argument(
        "--metadata", type=Path, required=True, help='{"columns": {name: {"sdtype": ...[, "datetime_format": ...]}}}'
    )
    parser.add_argument("--label", required=True, help="the label column (categorical)")
    parser.add_argument("--counts", type=Path, required=True, help="{label value: rows to generate} (JSON)")
    parser.add_argument(
        "--synthesizers", default=",".join(SYNTHESIZERS), help="comma-separated: " + ", ".join(SYNTHESIZERS)
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for <synth>.csv and <synth>.json")
    parser.add_argument(
        "--conditions",
        type=Path,
        help='{"<name>": {"column_values": {column: value}, "rows": n}} (JSON): after the labels, n rows under each '
        "condition with sample_from_conditions, timed, into OUTDIR/<synth>-<name>.csv",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    args = parser.parse_args(argv)
    args.synthesizers = [name.strip() for name in args.synthesizers.split(",") if name.strip()]
    unknown = sorted(set(args.synthesizers) - set(SYNTHESIZERS))
    if unknown:
        parser.error(f"unknown synthesizer(s) {', '.join(unknown)}; choose from {', '.join(SYNTHESIZERS)}")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def short_warning(message: Warning | str, category: type[Warning], *_args: object, **_kwargs: object) -> str:
    """A warning as one line, its first line only: SDV's run to several."""
    return f"{category.__name__}: {str(message).strip().splitlines()[0]}\n"


def read_columns(path: Path) -> dict[str, dict[str, str]]:
    """META.json's columns as {name: {"sdtype": ...[, "datetime_format": ...]}}."""
    columns = json.loads(path.read_text())["columns"]
    unformatted = [
        name for name, spec in columns.items() if spec["sdtype"] == "datetime" and "datetime_format" not in spec
    ]
    if unformatted:
        raise SystemExit(f"datetime column(s) without a datetime_format: {', '.join(unformatted)}")
    return columns


def sdv_metadata(columns: dict[str, dict[str, str]]) -> Metadata:
    """The single-table metadata in SDV 2.0's format (tables keyed by name, spec version V2)."""
    return Metadata.load_from_dict({"METADATA_SPEC_VERSION": "V2", "tables": {TABLE: {"columns": columns}}})


def read_train(path: Path, columns: dict[str, dict[str, str]]) -> pd.DataFrame:
    """The training split, categorical, boolean and datetime columns read as strings (booleans then as
    True/False)."""
    text = [name for name, spec in columns.items() if spec["sdtype"] in ("categorical", "boolean", "datetime")]
    frame = pd.read_csv(path, dtype=dict.fromkeys(text, str))
    mismatch = sorted(set(columns) ^ set(frame.columns))
    if mismatch:
        raise SystemExit(f"{path} and its metadata disagree on columns: {', '.join(mismatch)}")
    for name in (n for n, spec in columns.items() if spec["sdtype"] == "boolean"):
        values = frame[name].str.lower()
        odd = values.dropna()[~values.dropna().isin(list(BOOLEANS))]
        if len(odd):
            raise SystemExit(f"boolean column {name!r} holds {odd.iloc[0]!r}, neither true nor false")
        frame[name] = values.map(BOOLEANS).astype(object)
    return frame


def read_counts(path: Path, train: pd.DataFrame, label: str) -> dict[str, int]:
    """COUNTS.json, the labels with no rows to generate left out; each label must occur in the training split."""
    counts = {str(value): int(n) for value, n in json.loads(path.read_text()).items() if int(n) > 0}
    unseen = sorted(set(counts) - set(train[label].dropna()))
    if unseen:
        raise SystemExit(f"label value(s) not in the training split: {', '.join(unseen)}")
    return counts


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def sample_once(
    synthesizer: BaseSingleTableSynthesizer, label: str, counts: dict[str, int], max_tries: int
) -> pd.DataFrame:
    """One `sample_from_conditions` call; the rows it manages (SDV returns fewer when reject sampling runs out)."""
    conditions = [Condition(num_rows=n, column_values={label: value}) for value, n in counts.items()]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Only able to sample")  # counted and retried here instead
            return synthesizer.sample_from_conditions(conditions, max_tries_per_batch=max_tries)[TABLE]
    except ValueError as error:
        if NO_ROWS not in str(error):
            raise
        return pd.DataFrame()


def sample_labels(
    synthesizer: BaseSingleTableSynthesizer, label: str, counts: dict[str, int]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows for every label, retrying the ones left short with more tries; the rows and what is still missing."""
    frames = []
    wanted = dict(counts)
    for max_tries in TRIES:
        if frames:
            log(f"  retrying {', '.join(f'{v}: {n}' for v, n in wanted.items())} rows, max_tries_per_batch={max_tries}")
        frame = sample_once(synthesizer, label, wanted, max_tries)
        frames.append(frame)
        got = frame[label].value_counts().to_dict() if len(frame) else {}
        wanted = {value: n - got.get(value, 0) for value, n in wanted.items() if got.get(value, 0) < n}
        if not wanted:
            break
    return pd.concat(frames, ignore_index=True), wanted


def run_synthesizer(
    name: str,
    train: pd.DataFrame,
    metadata: Metadata,
    label: str,
    counts: dict[str, int],
    seed: int,
    out: Path,
    conditions: dict | None = None,
) -> None:
    seed_everything(seed)  # per synthesizer, so that its result does not depend on the order they run in
    synthesizer = SYNTHESIZERS[name](metadata)
    start = time.perf_counter()
    synthesizer.fit({TABLE: train})
    fit_s = time.perf_counter() - start
    log(f"{name}: fit {fit_s:.1f} s")

    start = time.perf_counter()
    rows, short = sample_labels(synthesizer, label, counts)
    sample_s = time.perf_counter() - start
    log(f"{name}: sampled {len(rows)} rows in {sample_s:.1f} s")
    if short:
        log(f"{name}: short of {', '.join(f'{v}: {n}' for v, n in short.items())} rows")

    rows.reindex(columns=train.columns).to_csv(out / f"{name}.csv", index=False)
    result: dict[str, object] = {
        "fit_s": fit_s,
        "sample_s": sample_s,
        "rows": len(rows),
        "sdv_version": sdv.__version__,
    }
    if short:
        result["short_rows"] = short
    if conditions:
        result["conditions"] = sample_conditions(synthesizer, name, conditions, train, out)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


def sample_conditions(
    synthesizer: BaseSingleTableSynthesizer, name: str, conditions: dict, train: pd.DataFrame, out: Path
) -> dict[str, dict[str, float]]:
    """Rows under each of `conditions` (fixed values: what SDV conditions on), timed; what each gave."""
    done = {}
    for key, spec in conditions.items():
        start = time.perf_counter()
        condition = Condition(num_rows=int(spec["rows"]), column_values=spec["column_values"])
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Only able to sample")
                rows = synthesizer.sample_from_conditions([condition], max_tries_per_batch=TRIES[1])[TABLE]
        except ValueError as error:
            if NO_ROWS not in str(error):
                raise
            rows = pd.DataFrame(columns=train.columns)
        took = time.perf_counter() - start
        log(f"{name}: {len(rows)} of {spec['rows']} rows under {key} in {took:.1f} s")
        rows.reindex(columns=train.columns).to_csv(out / f"{name}-{key}.csv", index=False)
        done[key] = {"sample_s": took, "rows": len(rows)}
    return done


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    warnings.formatwarning = short_warning
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    columns = read_columns(args.metadata)
    if columns.get(args.label, {}).get("sdtype") != "categorical":
        raise SystemExit(f"the label {args.label!r} must be a categorical column of the metadata")
    train = read_train(args.train, columns)
    counts = read_counts(args.counts, train, args.label)
    metadata = sdv_metadata(columns)
    args.out.mkdir(parents=True, exist_ok=True)
    conditions = json.loads(args.conditions.read_text()) if args.conditions else None
    for name in args.synthesizers:
        run_synthesizer(name, train, metadata, args.label, counts, args.seed, args.out, conditions)


if __name__ == "__main__":
    main()
