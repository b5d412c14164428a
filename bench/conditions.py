"""Rows on demand under conditions (issue 30): genserve's rows under a condition against the real rows that meet
it, beside SDV's `sample_from_conditions` from each of its synthesizers (fixed values: SDV has no ranges).

    python bench/conditions.py [--seeds 0,1,2] [--out bench/results/DATE-conditions.md]

On diamonds (5,000 rows sampled as bench/synthetic.py samples them; label `cut`), per split: genserve trained at
its defaults, SDV's three synthesizers at theirs (bench/sdv_side.py, in its own venv), then ROWS rows under each
condition from each. Figures per condition: rows outside it (must be 0), column shapes (SDMetrics' KS and TV
complements, training/quality.py) against the real rows that meet it among all the table's rows no one trained on
(the test split and the 48,940 rows outside the sample), and the seconds per 1,000 rows (genserve in-process, as
`python -m training sample` makes them; SDV's sample_from_conditions).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from synthetic import outside_path, sdv_python, write_table  # noqa: E402

from core.offline import Sampler  # noqa: E402
from core.rules import Conditions  # noqa: E402
from training import data, quality  # noqa: E402
from training.pipeline import TrainOptions, train_and_export  # noqa: E402

TABLE = "diamonds"
ROWS = 1000
SYNTHESIZERS = ("tvae", "ctgan", "gaussiancopula")
CONDITIONS: dict[str, dict] = {  # name -> genserve's conditions
    "color J": {"color": "J"},
    "color E, clarity VS2": {"color": "E", "clarity": "VS2"},
    "clarity I1 (rare)": {"clarity": "I1"},
    "price 5,000-10,000": {"price": {"min": 5000, "max": 10000}},
    "clarity SI1, carat 1-1.5": {"clarity": "SI1", "carat": {"min": 1.0, "max": 1.5}},
}


def meets(frame: pd.DataFrame, conditions: dict) -> pd.Series:
    """Which rows meet every condition (values compared as text for categories, as numbers for ranges)."""
    ok = pd.Series(True, index=frame.index)
    for column, wanted in conditions.items():
        if isinstance(wanted, dict):
            values = pd.to_numeric(frame[column], errors="coerce")
            ok &= values.between(wanted.get("min", -np.inf), wanted.get("max", np.inf))
        else:
            ok &= frame[column].astype(str) == str(wanted)
    return ok


def fixed(conditions: dict) -> bool:
    return not any(isinstance(v, dict) for v in conditions.values())


def run_split(seed: int, work: Path, threads: int) -> list[dict]:
    csv = work / f"{TABLE}.csv"
    label = write_table(TABLE, csv)
    ds = data.load(str(csv), label)
    splits = data.split(ds, seed)
    schema = quality.schema_of(ds.columns, ds.feature_names, label)
    test = quality.real_frame(splits.test.frame, None, splits.test.y, ds.labels, schema)
    unseen = pd.concat([test, pd.read_csv(outside_path(csv))], ignore_index=True)  # rows no one trained on
    learned = pd.concat([splits.train.frame, splits.val.frame], ignore_index=True)
    learned[label] = [ds.labels[i] for i in np.concatenate([splits.train.y, splits.val.y])]
    for name, conditions in CONDITIONS.items():
        share = meets(learned, conditions).mean()
        print(f"split {seed}: {name}: {share:.2%} of training rows", file=sys.stderr)

    from training.train import TrainConfig

    opts = TrainOptions(
        data=str(csv),
        name=TABLE,
        conditional=True,
        label_column=label,
        models_dir=work / "models",
        quality_report=False,
        train=TrainConfig(seed=seed, threads=threads),
    )
    sampler = Sampler(train_and_export(opts, log=lambda m: print(m, file=sys.stderr, flush=True)), threads=threads)
    results = []
    for name, conditions in CONDITIONS.items():
        compiled = Conditions(sampler.manifest, sampler.table, conditions)
        start = time.perf_counter()
        blocks = list(sampler.blocks(ROWS, compiled.label, seed, conditions=compiled))
        took = time.perf_counter() - start
        rows = pd.concat(
            [
                pd.DataFrame(
                    dict(
                        zip(
                            sampler.table.output_names(True),
                            sampler.table.values(b.numeric, b.codes, b.missing, b.labels),
                            strict=True,
                        )
                    )
                )
                for b in blocks
            ],
            ignore_index=True,
        )
        results.append(score(seed, name, "genserve", rows, unseen, conditions, schema, took))

    folder = work / "sdv"
    folder.mkdir()
    learned.to_csv(folder / "train.csv", index=False)
    columns = {c: {"sdtype": "numerical"} for c in schema.numeric} | {
        c: {"sdtype": "categorical"} for c in schema.discrete
    }
    (folder / "metadata.json").write_text(json.dumps({"columns": {c: columns[c] for c in learned.columns}}))
    (folder / "counts.json").write_text(json.dumps(dict.fromkeys(ds.labels, 10)))
    asked = {f"c{i}": {"column_values": c, "rows": ROWS} for i, c in enumerate(CONDITIONS.values()) if fixed(c)}
    (folder / "conditions.json").write_text(json.dumps(asked))
    args = ["--train", "train.csv", "--metadata", "metadata.json", "--label", label, "--counts", "counts.json"]
    args += ["--conditions", "conditions.json", "--synthesizers", ",".join(SYNTHESIZERS), "--out", "."]
    args += ["--seed", str(seed), "--threads", str(threads)]
    subprocess.run([str(sdv_python()), str(ROOT / "bench" / "sdv_side.py"), *args], cwd=folder, check=True)
    keys = {json.dumps(spec["column_values"]): key for key, spec in asked.items()}
    for synth in SYNTHESIZERS:
        times = json.loads((folder / f"{synth}.json").read_text())["conditions"]
        for name, conditions in CONDITIONS.items():
            key = keys.get(json.dumps(conditions))
            if key is None:
                continue
            rows = pd.read_csv(folder / f"{synth}-{key}.csv", dtype={c: str for c in schema.discrete})
            results.append(score(seed, name, synth, rows, unseen, conditions, schema, times[key]["sample_s"]))
    return results


def score(seed, name, who, rows, unseen, conditions, schema, seconds) -> dict:
    real = unseen[meets(unseen, conditions)]
    inside = meets(rows, conditions) if len(rows) else pd.Series(dtype=bool)
    shapes = (
        quality.column_shapes(quality.prepared(real, schema), quality.prepared(rows, schema), schema)
        if len(rows)
        else float("nan")
    )
    result = {
        "seed": seed,
        "condition": name,
        "who": who,
        "rows": len(rows),
        "outside": int((~inside).sum()),
        "shapes": shapes,
        "real_rows": len(real),
        "s_per_1000": seconds / max(len(rows), 1) * 1000,
    }
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def render(results: list[dict], took: float, command: str) -> str:
    frame = pd.DataFrame(results)
    means = frame.groupby(["condition", "who"], sort=False).agg(
        splits=("seed", "nunique"),
        rows=("rows", "mean"),
        outside=("outside", "sum"),
        shapes=("shapes", "mean"),
        real_rows=("real_rows", "mean"),
        s_per_1000=("s_per_1000", "mean"),
    )
    lines = [
        f"# Conditions: genserve against SDV's sample_from_conditions ({datetime.date.today()})",
        "",
        f"`{command}` on diamonds (5,000 rows; label cut), {took / 60:.1f} min, splits "
        f"{', '.join(map(str, sorted(frame.seed.unique())))}. {ROWS:,} rows asked under each condition; "
        "'outside': rows answered that do not meet it (summed over splits); 'shapes': SDMetrics' column shapes "
        "against the real rows "
        "that meet it among the rows no one trained on ('real rows', mean per split); 's / 1,000 rows': genserve "
        "in-process (python -m training sample's path), SDV's sample_from_conditions. SDV takes fixed values only: "
        "ranges are genserve's alone.",
        "",
        "| condition | synthesizer | rows | outside | shapes | real rows | s / 1,000 rows |",
        "|---|---|---|---|---|---|---|",
    ]
    for (condition, who), r in means.iterrows():
        lines.append(
            f"| {condition} | {who} | {r.rows:.0f} | {r.outside:.0f} | {r.shapes:.4f} | {r.real_rows:.0f} | "
            f"{r.s_per_1000:.3f} |"
        )
    lines += ["", "## Verdict", ""]
    for condition in dict.fromkeys(frame.condition):
        ours = means.loc[(condition, "genserve")]
        peers = [(w, means.loc[(condition, w)]) for w in SYNTHESIZERS if (condition, w) in means.index]
        if not peers:
            lines.append(f"- {condition}: genserve shapes {ours.shapes:.4f}, outside {ours.outside:.0f} (no SDV peer)")
            continue
        best, r = max(peers, key=lambda p: p[1].shapes)
        verdict = "at least as good" if ours.shapes >= r.shapes else "WORSE"
        lines.append(
            f"- {condition}: genserve shapes {ours.shapes:.4f} vs {r.shapes:.4f} ({best}) {verdict}; outside "
            f"{ours.outside:.0f}; {ours.s_per_1000:.3f} s vs {r.s_per_1000:.3f} s per 1,000 rows"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / f"{datetime.date.today()}-conditions.md"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="genserve-conditions-") as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            work = Path(tmp) / str(seed)
            work.mkdir()
            results += run_split(seed, work, args.threads)
    command = " ".join(["python bench/conditions.py", *sys.argv[1:]])
    text = render(results, time.perf_counter() - started, command)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
