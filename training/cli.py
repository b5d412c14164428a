"""`python -m training train ...` and `python -m training evaluate NAME[@VERSION]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.manifest import read_manifest, resolve


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train, evaluate and export a model")
    train.add_argument("--data", required=True, help="digits | breast-cancer | PATH.csv | PATH.npz")
    train.add_argument("--label-column", help="CSV column holding the class label")
    train.add_argument("--head", choices=["bernoulli", "gaussian", "quantile"], default="bernoulli")
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
    train.add_argument("--formats", default="onnx,torchscript", help="artifact formats: onnx, torchscript or both")
    train.add_argument("--iwae-samples", type=int, default=100, help="k of the importance-weighted likelihood")
    train.add_argument("--no-baseline", action="store_true", help="skip the Gaussian baseline of a quantile model")
    train.add_argument(
        "--calibration",
        choices=["auto", "on", "off"],
        default="auto",
        help="recalibrate a quantile model's bands on the validation split (auto: when it holds at least 200 rows)",
    )

    show = commands.add_parser("evaluate", help="print the metrics stored for a model")
    show.add_argument("model", help="NAME or NAME@VERSION")
    show.add_argument("--models-dir", type=Path, default=Path("models"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "evaluate":
        return _evaluate(args)
    from training.data import DataError
    from training.export import ExportError
    from training.pipeline import TrainOptions, progress_log, train_and_export
    from training.train import TrainConfig

    if not set(args.formats.split(",")) <= {"onnx", "torchscript"} or not args.formats:
        print(f"error: --formats takes onnx, torchscript or both, got {args.formats!r}", file=sys.stderr)
        return 2
    for flag in ("epochs", "latent_dim", "batch_size", "iwae_samples"):
        if getattr(args, flag) < 1:
            print(f"error: --{flag.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    opts = TrainOptions(
        data=args.data,
        name=args.name,
        head=args.head,
        conditional=args.conditional,
        label_column=args.label_column,
        models_dir=args.models_dir,
        latent_dim=args.latent_dim,
        hidden=args.hidden,
        quantile_levels=args.quantiles,
        iwae_samples=args.iwae_samples,
        baseline=not args.no_baseline,
        calibration=args.calibration,
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
        ),
    )
    try:
        from app.manifest import parse_model_ref

        parse_model_ref(args.name)
        if "@" in args.name:
            raise ValueError("--name takes a name only; the version is assigned on export")
        train_and_export(opts, log=progress_log)
    except (DataError, ExportError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.pipeline import format_metrics

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
    print(
        f"trained on {manifest.training.data} (seed {manifest.training.seed}, "
        f"{manifest.training.epochs_run} epochs); metrics on the {manifest.evaluation.split} split "
        f"({manifest.evaluation.rows} rows):"
    )
    print(format_metrics(manifest.evaluation.metrics))
    return 0
