"""`python -m training train ...`, `evaluate NAME[@VERSION]`, `sample NAME[@VERSION] --n N --out FILE`,
`pin NAME@VERSION` and `unpin NAME`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.manifest import Column
from core.repository import PIN_FILE, parse_model_ref, read_manifest, resolve, write_pin


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("layer widths must be positive")
    return values


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated column names")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train, evaluate and export a model")
    train.add_argument(
        "--data", required=True, help="digits | breast-cancer | penguins | PATH.csv | PATH.parquet | PATH.npz"
    )
    train.add_argument("--label-column", help="a table's column holding the class label")
    train.add_argument(
        "--head",
        choices=["bernoulli", "gaussian", "quantile"],
        help="the numeric values' likelihood (default: bernoulli for data in [0, 1] such as images, else gaussian)",
    )
    train.add_argument("--delimiter", help="a CSV file's delimiter (default: sniffed from the file)")
    train.add_argument(
        "--decimal",
        choices=[".", ","],
        metavar="{.|,}",  # argparse would show {.,,}
        help="a CSV file's decimal mark, as in 12.5 or 12,5 (default: sniffed; a comma only in a file not "
        "delimited by commas)",
    )
    train.add_argument("--columns", type=_names, help="train on these columns only (comma-separated)")
    train.add_argument("--drop-columns", type=_names, default=(), help="leave these columns out")
    train.add_argument("--categorical", type=_names, default=(), help="treat these columns as categorical")
    train.add_argument("--integer", type=_names, default=(), help="treat these columns as integers")
    train.add_argument(
        "--datetime",
        type=_datetime,
        action="append",
        default=[],
        metavar="COL[=FORMAT]",
        help="read this column as dates or times (found by itself in ISO 8601 and the common formats); FORMAT in "
        "strptime codes, e.g. --datetime 'when=%%d/%%m/%%Y %%H:%%M'; repeat for more columns",
    )
    train.add_argument(
        "--regenerate-ids",
        action="store_true",
        help="generated rows carry the ID columns training leaves out, with new IDs in their pattern (CLM-000123 "
        "counts on past the largest training ID; UUIDs stay UUIDs), never a training row's",
    )
    train.add_argument(
        "--rule",
        action="append",
        default=[],
        dest="rules",
        metavar="RULE",
        help="a rule every generated row holds, checked on the training rows: 'A <= B', 'A < B', 'A = B', "
        "'A + B = C', 'A -> B' (B fixed by A); repeat for more (rules found in the data are kept unless "
        "--no-discovered-rules)",
    )
    train.add_argument(
        "--rules-file", type=_rules_file, default=[], help="rules as --rule takes them, one per line (# comments)"
    )
    train.add_argument(
        "--no-discovered-rules",
        action="store_true",
        help="hold only the declared rules, not those found in the training rows",
    )
    train.add_argument(
        "--numeric-encoding",
        choices=["quantile", "standard"],
        default="quantile",
        help="a table's numeric columns on the model's scale: normal scores of their quantiles, or standardised",
    )
    train.add_argument("--conditional", action="store_true", help="condition encoder and decoder on the label")
    train.add_argument("--name", required=True, help="model name in the repository")
    train.add_argument("--models-dir", type=Path, default=Path("models"))
    train.add_argument("--epochs", type=int, default=300, help="maximum epochs (early stopping may end sooner)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--latent-dim", type=int, default=8)
    train.add_argument("--hidden", type=_ints, default=(256, 128), help="encoder widths, e.g. 256,128")
    train.add_argument("--quantiles", type=_floats, default=(0.05, 0.25, 0.5, 0.75, 0.95))
    train.add_argument("--beta", type=float, default=1.0, help="weight of the KL term")
    train.add_argument("--warmup-epochs", type=int, default=20, help="epochs over which the KL weight rises to beta")
    train.add_argument("--patience", type=int, default=30, help="early stopping patience in epochs")
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--weight-decay", type=float, default=0.0)
    train.add_argument("--threads", type=int, default=1, help="torch threads (1: robust beside other busy processes)")
    train.add_argument("--formats", default="onnx,torchscript", help="artifact formats: onnx, torchscript or both")
    train.add_argument("--iwae-samples", type=int, default=100, help="k of the importance-weighted likelihood")
    train.add_argument("--no-baseline", action="store_true", help="skip the Gaussian baseline of a quantile model")
    train.add_argument(
        "--no-quality-report",
        action="store_true",
        help="skip scoring generated rows against the test split (SDMetrics quality, label, privacy)",
    )
    train.add_argument(
        "--calibration",
        choices=["auto", "on", "off"],
        default="auto",
        help="recalibrate a quantile model's bands on the validation split (auto: when it holds at least 200 rows)",
    )

    promotion = train.add_mutually_exclusive_group()
    promotion.add_argument(
        "--promote",
        dest="promote",
        action="store_const",
        const="yes",
        default="auto",
        help="make the new version the one NAME resolves to, whatever its figures (default: only if they are "
        "not worse than the current default version's beyond the margins of core/repository.py)",
    )
    promotion.add_argument(
        "--no-promote", dest="promote", action="store_const", const="no", help="write the version but hold it back"
    )

    show = commands.add_parser("evaluate", help="print the metrics stored for a model")
    show.add_argument("model", help="NAME or NAME@VERSION")
    show.add_argument("--models-dir", type=Path, default=Path("models"))

    pin = commands.add_parser(
        "pin", help=f"make NAME resolve to VERSION (in NAME/{PIN_FILE}), newer versions kept; a reload applies it"
    )
    pin.add_argument("model", help="NAME@VERSION")
    pin.add_argument("--reason", default="", help="why (shown by GET /models/NAME)")
    pin.add_argument("--models-dir", type=Path, default=Path("models"))
    sample = commands.add_parser(
        "sample", help="write N generated rows to a file (.csv, .parquet, .ndjson, .arrow) with the served graphs"
    )
    sample.add_argument("model", help="NAME or NAME@VERSION")
    sample.add_argument("--n", type=int, required=True, help="number of rows")
    sample.add_argument("--out", type=Path, required=True, help="FILE.csv, FILE.parquet, FILE.ndjson or FILE.arrow")
    sample.add_argument(
        "--label",
        help="the condition label; without it a conditional table model draws each row's label in the training shares",
    )
    sample.add_argument(
        "--label-weights",
        type=_weights,
        metavar="LABEL=W,...",
        help="without --label: each label's share of the rows (relative weights, e.g. good=1,bad=3)",
    )
    sample.add_argument(
        "--conditions",
        type=_conditions,
        metavar="JSON",
        help='only rows that meet these, as /generate\'s conditions: e.g. \'{"city": "Lyon", "age": {"min": 30, '
        '"max": 40}}\' (a value, null for a gap, or an inclusive range of a numeric, date or time column)',
    )
    sample.add_argument("--seed", type=int, help="the same seed gives the rows /generate gives for it")
    sample.add_argument("--mode", choices=["sample", "mean"], help="as /generate's mode (default: the model's)")
    sample.add_argument("--temperature", type=float, default=1.0, help="scales the latent prior's spread")
    sample.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    sample.add_argument("--models-dir", type=Path, default=Path("models"))
    unpin = commands.add_parser("unpin", help="NAME resolves to its newest promoted version again")
    unpin.add_argument("model", help="NAME")
    unpin.add_argument("--models-dir", type=Path, default=Path("models"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command in ("pin", "unpin"):
        return _pin(args)
    if args.command == "sample":
        return _sample(args)
    from training.datasets import DataError, ReadOptions
    from training.export import ExportError
    from training.pipeline import TrainOptions, progress_log, train_and_export
    from training.train import TrainConfig

    if not set(args.formats.split(",")) <= {"onnx", "torchscript"} or not args.formats:
        print(f"error: --formats takes onnx, torchscript or both, got {args.formats!r}", file=sys.stderr)
        return 2
    for flag in ("epochs", "latent_dim", "batch_size", "iwae_samples", "threads"):
        if getattr(args, flag) < 1:
            print(f"error: --{flag.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    opts = TrainOptions(
        data=args.data,
        name=args.name,
        head=args.head,
        conditional=args.conditional,
        label_column=args.label_column,
        read=ReadOptions(
            delimiter=args.delimiter,
            decimal=args.decimal,
            columns=args.columns,
            drop_columns=args.drop_columns,
            categorical=args.categorical,
            integer=args.integer,
            datetime=tuple(args.datetime),
            regenerate_ids=args.regenerate_ids,
        ),
        rules=(*args.rules, *args.rules_file),
        discover_rules=not args.no_discovered_rules,
        numeric_encoding=args.numeric_encoding,
        models_dir=args.models_dir,
        latent_dim=args.latent_dim,
        hidden=args.hidden,
        quantile_levels=args.quantiles,
        iwae_samples=args.iwae_samples,
        baseline=not args.no_baseline,
        quality_report=not args.no_quality_report,
        calibration=args.calibration,
        promote=args.promote,
        formats=tuple(args.formats.split(",")),
        train=TrainConfig(
            max_epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            beta=args.beta,
            warmup_epochs=args.warmup_epochs,
            patience=args.patience,
            seed=args.seed,
            threads=args.threads,
        ),
    )
    try:
        parse_model_ref(args.name)
        if "@" in args.name:
            raise ValueError("--name takes a name only; the version is assigned on export")
        train_and_export(opts, log=progress_log)
    except (DataError, ExportError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def describe_column(column: Column) -> str:
    """One line a person reads: name, kind, range or categories, gaps."""
    if column.numeric:
        what = f"{column.min:g} to {column.max:g}" + (f", {column.encoding} encoding" if column.encoding else "")
    elif column.discrete:
        shown = ", ".join(map(str, (column.categories or [])[:8]))
        more = len(column.categories or []) - 8
        what = shown + (f", ... ({more} more)" if more > 0 else "")
    else:
        what = f"always {column.value!r}"
    gaps = f"; {column.missing_rate:.1%} missing" if column.missing_rate else ""
    return f"{column.name!r}: {column.kind} ({what}){gaps}"


def _evaluate(args: argparse.Namespace) -> int:
    from training.pipeline import format_anomaly, format_metrics, format_promotion

    try:
        manifest = read_manifest(resolve(args.models_dir, args.model))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    labels = ", ".join(manifest.labels) if manifest.labels else "none (unconditional)"
    print(
        f"{manifest.name}@{manifest.version}: {manifest.head} head, latent {manifest.latent_dim}, "
        f"{manifest.input_dim} features, labels: {labels}"
    )
    for column in manifest.columns or []:
        print(f"  column {describe_column(column)}")
    print(
        f"trained on {manifest.training.data} (seed {manifest.training.seed}, "
        f"{manifest.training.epochs_run} epochs); metrics on the {manifest.evaluation.split} split "
        f"({manifest.evaluation.rows} rows):"
    )
    print(format_metrics(manifest.evaluation.metrics))
    if manifest.evaluation.anomaly is not None:
        print(format_anomaly(manifest.name, manifest.evaluation.anomaly))
    print(format_promotion(manifest))
    return 0


def _datetime(text: str) -> tuple[str, str | None]:
    """`when` or `when=%d/%m/%Y` -> (column, format or None)."""
    name, sep, fmt = text.partition("=")
    if not name.strip() or (sep and not fmt.strip()):
        raise argparse.ArgumentTypeError(f"{text!r}: give COLUMN or COLUMN=FORMAT")
    return name.strip(), fmt.strip() or None


def _rules_file(path: str) -> list[str]:
    """--rules-file's rules: one per line, blank lines and # comments left out."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise argparse.ArgumentTypeError(f"{path}: cannot be read ({e})") from e
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _conditions(text: str) -> dict:
    """--conditions' JSON object (argparse reports the error)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('a JSON object: {"column": value or {"min": a, "max": b}, ...}')
    return value


def _weights(text: str) -> dict[str, float]:
    """`good=1,bad=3` -> {"good": 1.0, "bad": 3.0} (argparse reports the ValueError)."""
    weights = {}
    for item in text.split(","):
        name, sep, weight = item.rpartition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"{item!r}: give LABEL=WEIGHT, comma-separated")
        try:
            weights[name.strip()] = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: the weight is not a number") from None
    return weights


def _sample(args: argparse.Namespace) -> int:
    from training.sample import SampleOptions, sample_to_file

    try:
        if args.seed is not None and not 0 <= args.seed < 2**64:
            raise ValueError("--seed must be in [0, 2^64)")
        sample_to_file(
            SampleOptions(
                model=args.model,
                n=args.n,
                out=args.out,
                label=args.label,
                label_weights=args.label_weights,
                conditions=args.conditions,
                seed=args.seed,
                mode=args.mode,
                temperature=args.temperature,
                models_dir=args.models_dir,
                threads=max(1, args.threads),
            )
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _pin(args: argparse.Namespace) -> int:
    try:
        name, version = parse_model_ref(args.model)
        if args.command == "pin":
            if version is None:
                raise ValueError(f"pin takes NAME@VERSION, got {args.model!r}")
            path = write_pin(args.models_dir, name, version, args.reason)
            print(f"{name} resolves to {name}@{version} ({path}); POST /admin/reload applies it to a running server")
        else:
            if version is not None:
                raise ValueError(f"unpin takes NAME, got {args.model!r}")
            path = args.models_dir / name / PIN_FILE
            if not path.is_file():
                raise FileNotFoundError(f"{name!r} is not pinned (no {path})")
            path.unlink()
            print(f"{name} resolves to its newest promoted version again; POST /admin/reload applies it")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
