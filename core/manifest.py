"""The model repository's contract: `models/<name>/<version>/model.json`.

Training writes it, the service reads it; neither side guesses a file or tensor name
that is not stated here. This module imports pydantic and the standard library only
(no torch, no numpy), so that the serving path stays light.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.codecs import CODECS
from core.heads import HEADS, HeadName

FORMAT_VERSION = 1

# Bounds that keep every manifest that loads servable: a version fits any JSON encoder's
# integers, sizes fit memory, and float32 arithmetic on normalised rows stays finite.
MAX_VERSION = 2**31 - 1
MAX_DIM = 1_000_000
MAX_LATENT = 65_536
MAX_LEVELS = 99
MAX_LABELS = 100_000
MIN_SCALE, MAX_NORMALIZATION = 1e-30, 1e30

ArtifactFormat = Literal["onnx", "torchscript"]
GraphName = Literal["encoder", "decoder"]

# A model name is what users type in a JSON body and what becomes a directory name:
# keep it to a safe alphabet so that it can never address a path outside the repository.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

# Tensor names of the exported graphs. They are recorded per artifact in the manifest;
# the service reads them from there, these constants are what training writes.
ENCODER_OUTPUTS = ("mean", "log_var")
# A table with categorical columns or gaps: one more decoder output after the head's, the
# softmax probabilities of each categorical column's categories, then P(missing) per column with gaps.
DISCRETE_OUTPUT = "discrete_probs"


def decoder_output_names(head: HeadName, discrete: bool) -> list[str]:
    """The decoder graph's output names, in order (Manifest.decoder_outputs adds their shapes)."""
    return [*HEADS[head].outputs, *([DISCRETE_OUTPUT] if discrete else [])]


NumericEncoding = Literal["standard", "quantile"]
# Rare gap patterns (Manifest.gap_patterns): the threshold rule of statistical disclosure control, and
# at most this many patterns kept (their distances to each generated row are computed).
MIN_ROWS_PER_GAP_PATTERN = 3
MAX_GAP_PATTERNS = 64
MAX_MISSING_RATE = 0.95  # a column missing more often than this is dropped at training, not modelled


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Normalization(_Strict):
    """Per-feature affine map fitted on the training split: x_norm = (x - shift) / scale."""

    shift: list[float]
    scale: list[float]

    @model_validator(mode="after")
    def _check(self) -> Normalization:
        if len(self.shift) != len(self.scale):
            raise ValueError("normalization shift and scale differ in length")
        if not all(math.isfinite(v) and abs(v) <= MAX_NORMALIZATION for v in self.shift):
            raise ValueError(f"normalization shift must be finite and within ±{MAX_NORMALIZATION:g}")
        if not all(MIN_SCALE <= s <= MAX_NORMALIZATION for s in self.scale):
            raise ValueError(
                f"normalization scale must lie between {MIN_SCALE:g} and {MAX_NORMALIZATION:g}: outside, float32 "
                "arithmetic on served rows overflows or divides by zero"
            )
        return self


class Column(_Strict):
    """One column of a table, as training saw it and as serving gives it back.

    Its place in the model's encoded rows (what the graphs take and give, see core/table.py):
    a numeric column (continuous, integer) is one value on the model's scale, a categorical or
    boolean one is a one-hot block of its categories, a constant one is not modelled; every
    modelled column with gaps adds a missing-value indicator at the end.
    """

    name: str = Field(min_length=1)
    kind: str  # a codec's name (core/codecs.py): continuous, integer, categorical, boolean, constant
    missing_rate: float = Field(0.0, ge=0, le=MAX_MISSING_RATE, description="share of missing values in training")
    # numeric columns: bounds seen in training (outputs stay inside), and the map to the model's scale
    min: float | None = None
    max: float | None = None
    # what outputs are clipped to (None: min and max): the training split's second lowest and second highest
    # value. Bottom- and top-coding: a lone extreme, one training row's own value, is never given out.
    floor: float | None = None
    ceiling: float | None = None
    nonnegative: bool = False
    decimals: int | None = Field(None, ge=0, le=12, description="outputs are rounded to the decimals the data had")
    encoding: NumericEncoding | None = Field(
        None,
        description="standard: (x - shift) / scale; quantile: normal scores of the training split's "
        "quantiles, piecewise linear between `knots` (values) and `scores`",
    )
    shift: float | None = None
    scale: float | None = Field(None, gt=0)
    knots: list[float] | None = None
    scores: list[float] | None = None
    # categorical and boolean columns: the categories in their stable order (the one-hot order)
    categories: list[bool | int | str] | None = None
    # constant columns: the one value
    value: bool | int | float | str | None = None
    # dates, timestamps and times of day: how the data wrote them (strptime / strftime), and the UTC offset
    # (as %z writes it) the data's cells carried, if any; `min` and `max` are then in wall-clock seconds
    format: str | None = Field(None, max_length=100)
    zone: str | None = Field(None, max_length=10)
    step: int | None = Field(None, ge=1, le=3600, description="a time's seconds are whole multiples of this")
    # a column the model sees as several (a date: its week and weekday; core/codecs.py): those columns,
    # each with its own encoding; only the first has gaps, standing for the whole column's
    parts: list[Column] | None = Field(None, max_length=8)

    @property
    def numeric(self) -> bool:
        """One value on the model's scale, described by the decoder's head."""
        return CODECS[self.kind].block == "numeric"

    @property
    def discrete(self) -> bool:
        """A one-hot block of its categories."""
        return CODECS[self.kind].block == "onehot"

    @property
    def output_bounds(self) -> tuple[float, float]:
        """(lowest, highest) value given out for a numeric column."""
        assert self.min is not None and self.max is not None
        return (
            self.min if self.floor is None else self.floor,
            self.max if self.ceiling is None else self.ceiling,
        )

    @property
    def gaps(self) -> bool:
        """Has gaps the model knows (a missing-value indicator; a column of parts: its first part's)."""
        return self.missing_rate > 0 and CODECS[self.kind].block != "none"

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in CODECS:
            raise ValueError(f"unknown column kind {kind!r}; known: {sorted(CODECS)}")
        return kind

    @model_validator(mode="after")
    def _check(self) -> Column:
        CODECS[self.kind].check(self)
        return self


def model_columns(columns: list[Column]) -> list[Column]:
    """The columns as the model sees them: a column of parts (a date) replaced by its parts."""
    return [p for c in columns for p in (c.parts or [c])]


def encoded_width(columns: list[Column]) -> tuple[int, int, int]:
    """(numeric, one-hot, missing-indicator) widths of a table's encoded rows."""
    columns = model_columns(columns)
    numeric = sum(1 for c in columns if c.numeric)
    onehot = sum(len(c.categories or []) for c in columns if c.discrete)
    return numeric, onehot, sum(1 for c in columns if c.gaps)


REFERENCE_QUANTILES = 40  # a numeric column's reference: its present values' quantiles at 0, 1/40, ..., 1


class ColumnReference(_Strict):
    """One column of the training split's rows (of one label), as the web page draws it behind the
    generated rows of its histograms."""

    missing: float = Field(0.0, ge=0, le=1, description="share of the rows missing a value")
    quantiles: list[float] | None = Field(
        None,
        description="a numeric column: its present values' quantiles at evenly spaced levels from 0 to 1 "
        f"({REFERENCE_QUANTILES + 1} of them); None where the rows have no value",
    )
    shares: dict[str, float] | None = Field(
        None, description="a categorical column: each category's share of the rows (the rest: missing)"
    )

    @model_validator(mode="after")
    def _check(self) -> ColumnReference:
        if self.quantiles is not None and self.shares is not None:
            raise ValueError("a column reference has quantiles (numeric) or shares (categorical), not both")
        q = self.quantiles or []
        if self.quantiles is not None and (len(q) < 2 or not all(math.isfinite(v) for v in q) or q != sorted(q)):
            raise ValueError("reference quantiles must be at least two finite values, in order")
        if any(not 0 <= v <= 1 for v in (self.shares or {}).values()):
            raise ValueError("reference shares must lie between 0 and 1")
        return self


class Reference(_Strict):
    """The training split's rows of one label (or all of them), column by column."""

    rows: int = Field(ge=0)
    columns: dict[str, ColumnReference]


class LatentPrior(_Strict):
    """A Gaussian mixture over z that /generate draws from instead of N(0, I): fitted at training
    to samples of q(z | x[, y]) over the training rows (of one label), so that generated rows
    come from where the data's codes are, holes in the prior included."""

    weights: list[float] = Field(min_length=1)
    means: list[list[float]]
    cholesky: list[list[list[float]]] = Field(description="lower-triangular factor of each component's covariance")

    @model_validator(mode="after")
    def _check(self) -> LatentPrior:
        k = len(self.weights)
        if len(self.means) != k or len(self.cholesky) != k:
            raise ValueError("latent prior: one mean and one factor per weight")
        if any(w < 0 for w in self.weights) or abs(sum(self.weights) - 1) > 1e-6:
            raise ValueError("latent prior: weights must be non-negative and sum to 1")
        for factor in self.cholesky:
            if any(len(row) != len(factor) for row in factor) or any(
                row[i] <= 0 or any(row[j] != 0 for j in range(i + 1, len(row))) for i, row in enumerate(factor)
            ):
                raise ValueError("latent prior: each factor must be square, lower-triangular, with a positive diagonal")
        return self


class Identifier(_Strict):
    """How an ID column's values go on past the training IDs (trained with --regenerate-ids): `counter`,
    a number between a fixed `prefix` and `suffix` (zero-padded to `width` digits; 0: not padded) that
    generated rows count up from `start`, one past the largest training ID (a bare integer ID, `integer`,
    is answered as a number); or `uuid`, random-looking UUIDs (version 4) hashed from the row's place in
    the answer and `salt`, upper case where the data's were."""

    kind: Literal["counter", "uuid"]
    prefix: str = Field("", max_length=200)
    suffix: str = Field("", max_length=200)
    width: int = Field(0, ge=0, le=40)
    start: int = Field(0, ge=0)
    integer: bool = False
    upper: bool = False
    salt: str = Field("", max_length=64)


class DroppedColumn(_Strict):
    """A column of the training table the model does not model (an ID, free text, a mostly empty column)."""

    name: str
    reason: str
    position: int | None = Field(None, ge=0, description="its place among the training table's columns")
    identifier: Identifier | None = Field(
        None, description="an ID column that generated rows carry, with new values in its pattern (--regenerate-ids)"
    )


class Artifact(_Strict):
    """One serialised graph. `inputs` are in call order: the latent or data rows first,
    then the label index (int64, shape [batch]) for conditional models."""

    format: ArtifactFormat
    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    inputs: list[str]
    outputs: list[str]

    @model_validator(mode="after")
    def _relative_path(self) -> Artifact:
        if Path(self.path).is_absolute() or ".." in Path(self.path).parts:
            raise ValueError(f"artifact path {self.path!r} must stay inside the model directory")
        return self


class Graph(_Strict):
    """A graph (encoder or decoder) in one or more formats."""

    artifacts: list[Artifact] = Field(min_length=1)

    def artifact(self, fmt: ArtifactFormat) -> Artifact | None:
        return next((a for a in self.artifacts if a.format == fmt), None)


class Evaluation(_Strict):
    split: str
    rows: int
    metrics: dict[str, float]
    coverage_by_feature: dict[str, dict[str, float]] | None = Field(
        None, description="a quantile model's band coverage per numeric feature: {feature: {'90': c, '50': c}}"
    )
    warnings: list[str] = Field(default_factory=list, description="what training found wrong with this model")
    quality: dict[str, float | int | dict[str, float]] | None = Field(
        None,
        description="the quality report of the model's generated rows against the test split (training/quality.py)",
    )
    anomaly: dict | None = Field(
        None,
        description="anomaly score thresholds per false-alarm rate, calibrated on held-out normal rows "
        "(core/scoring.py: rows, thresholds, score_quantiles, test_false_alarm_rate)",
    )


class TrainingInfo(_Strict):
    data: str
    label_column: str | None = None
    seed: int
    epochs_run: int
    max_epochs: int
    fit_seconds: float | None = Field(
        None, description="wall time of training alone: the training loop and the latent prior's fit"
    )
    hyperparameters: dict[str, float | int | str | list[int]]
    versions: dict[str, str]
    created_at: str


class Promotion(_Strict):
    """Whether `name` may resolve to this version (core/repository.py decides it at export)."""

    promoted: bool
    reason: str
    compared_with: int | None = Field(None, description="the version that served by default when this one was made")
    checks: dict[str, str] = Field(
        default_factory=dict, description="each figure compared: new against current, the margin allowed, the verdict"
    )


RuleKind = Literal["order", "equal", "sum", "fixed"]
RULE_ARITY = {"order": 2, "equal": 2, "sum": 3, "fixed": 2}
MAX_RULES = 1_000


class Rule(_Strict):
    """A relation between columns that every training row holds and every generated row holds too (core/rules.py
    holds it). `order`: columns [A, B], A <= B (A < B where `strict`); `equal`: B is A; `sum`: columns [A, B, C],
    A + B = C; `fixed`: columns [A, B], B fixed by A, `pairs` [A's value, B's value] as the data wrote them.
    Each holds where its columns are present; the label column may be one of a `fixed` rule's."""

    kind: RuleKind
    columns: list[str] = Field(min_length=2, max_length=3)
    strict: bool = False
    pairs: list[tuple[str | int | float | bool, str | int | float | bool]] | None = Field(None, max_length=MAX_LABELS)
    support: int = Field(0, ge=0, description="training rows it was checked on (its columns all present)")
    declared: bool = Field(False, description="given with --rule, not found in the data")

    @model_validator(mode="after")
    def _check(self) -> Rule:
        if len(self.columns) != RULE_ARITY[self.kind] or len(set(self.columns)) != len(self.columns):
            raise ValueError(f"a {self.kind} rule names {RULE_ARITY[self.kind]} distinct columns")
        if (self.kind == "fixed") != (self.pairs is not None) or (self.pairs is not None and not self.pairs):
            raise ValueError("a fixed rule, and only one, has its value pairs")
        if self.strict and self.kind != "order":
            raise ValueError("only an order rule is strict")
        return self

    def text(self) -> str:
        """How the CLI writes it, and reads it with --rule: `A <= B`, `A = B`, `A + B = C`, `A -> B`."""
        a, b, *c = self.columns
        return {
            "order": f"{a} {'<' if self.strict else '<='} {b}",
            "equal": f"{a} = {b}",
            "sum": f"{a} + {b} = {c[0]}" if c else "",
            "fixed": f"{a} -> {b}",
        }[self.kind]


class Manifest(_Strict):
    format_version: Literal[1] = FORMAT_VERSION
    name: str = Field(pattern=NAME_PATTERN)
    version: int = Field(ge=1, le=MAX_VERSION)
    head: HeadName
    quantile_levels: list[float] | None = Field(None, max_length=MAX_LEVELS)
    labels: list[str] | None = Field(
        default=None, max_length=MAX_LABELS, description="Condition vocabulary; None for an unconditional model."
    )
    label_weights: list[float] | None = Field(
        None,
        description="each label's share of the training rows (in `labels` order): what /generate draws labels "
        "from when a conditional model is asked for none. None (a model made before this): equal shares",
    )
    label_position: int | None = Field(
        None,
        ge=0,
        description="where the label column stood among `columns` in the training table: generated rows carry it "
        "there. None (a model made before this): first",
    )
    dropped_columns: list[DroppedColumn] | None = Field(
        None, description="the training table's columns the model left out, each with why; rows may still hold them"
    )
    input_dim: int = Field(ge=1, le=MAX_DIM)
    image_shape: list[Annotated[int, Field(ge=1, le=MAX_DIM)]] | None = Field(None, max_length=4)
    feature_names: list[str] = Field(description="names of the encoded features the graphs take, in order")
    columns: list[Column] | None = Field(
        None, description="the table's column schema; None for an all-numeric model (images, arrays)"
    )
    rules: list[Rule] | None = Field(
        None,
        max_length=MAX_RULES,
        description="relations between columns every generated row holds (found in the training rows, or declared); "
        "None: none (a model made before this, or trained with --no-rules)",
    )
    gap_patterns: list[list[str]] | None = Field(
        None,
        max_length=MAX_GAP_PATTERNS,
        description="the combinations of gaps (columns missing together; [] for none) generated rows may have: "
        "those at least MIN_ROWS_PER_GAP_PATTERN training rows share, most common first. A rarer one is one or "
        "two rows' own trait, and such a row is copied whole once its other values are all categories. "
        "None: any (a table without gaps, or a model made before this)",
    )
    latent_dim: int = Field(ge=1, le=MAX_LATENT)
    reference: list[Reference] | None = Field(
        None,
        description="the training split's rows per label (in `labels` order; one for an unconditional model): "
        "per column, the share missing and the values' quantiles or each category's share; what the web page "
        "draws generated rows against. None: an image model, or one made before this",
    )
    latent_prior: list[LatentPrior] | None = Field(
        None, description="per label (in `labels` order; one for an unconditional model); None: z ~ N(0, I)"
    )
    normalization: Normalization
    encoder: Graph
    decoder: Graph
    evaluation: Evaluation
    training: TrainingInfo
    promotion: Promotion | None = Field(
        None, description="None: made before promotion checks existed, and promoted like a version that passed"
    )

    @property
    def conditional(self) -> bool:
        return self.labels is not None

    @property
    def numeric_dim(self) -> int:
        """Features the decoder's head describes: all of them, or a table's numeric columns."""
        return self.input_dim if self.columns is None else encoded_width(self.columns)[0]

    @property
    def discrete_dim(self) -> int:
        """Width of the decoder's `discrete_probs` output (0: no such output)."""
        return 0 if self.columns is None else sum(encoded_width(self.columns)[1:])

    def decoder_outputs(self, rows: int = -1) -> list[tuple[str, tuple[int, ...]]]:
        """The decoder graph's outputs, in order, with their shapes for `rows` rows."""
        head = HEADS[self.head].output_shapes(rows, self.numeric_dim, len(self.quantile_levels or []))
        shapes = head + ([(rows, self.discrete_dim)] if self.discrete_dim else [])
        return list(zip(decoder_output_names(self.head, self.discrete_dim > 0), shapes, strict=True))

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.columns is not None:
            names = [c.name for c in self.columns]
            if len(set(names)) != len(names):
                raise ValueError("column names must be distinct")
            if sum(encoded_width(self.columns)) != self.input_dim:
                raise ValueError("the columns' encoded width must be input_dim")
            if self.numeric_dim == 0:
                raise ValueError("a table needs at least one numeric column")
        if self.rules:
            known = {c.name for c in self.columns or []}
            label = self.training.label_column if self.conditional else None
            for rule in self.rules:
                unknown = [c for c in rule.columns if c not in known and not (rule.kind == "fixed" and c == label)]
                if unknown:
                    raise ValueError(f"rule {rule.text()!r} names {unknown[0]!r}, not a column of the model")
        if self.gap_patterns is not None:
            gapped = {c.name for c in model_columns(self.columns or []) if c.gaps}
            seen = {frozenset(p) for p in self.gap_patterns}
            if not self.gap_patterns or len(seen) != len(self.gap_patterns):
                raise ValueError("gap_patterns must hold at least one pattern, each once")
            if any(len(set(p)) != len(p) or not set(p) <= gapped for p in self.gap_patterns):
                raise ValueError("gap_patterns may name only columns with gaps, each once per pattern")
        if self.latent_prior is not None:
            if len(self.latent_prior) != (len(self.labels) if self.labels is not None else 1):
                raise ValueError("latent_prior needs one mixture per label (one for an unconditional model)")
            for prior in self.latent_prior:
                d = self.latent_dim
                if any(len(m) != d for m in prior.means) or any(
                    len(c) != d or any(len(r) != d for r in c) for c in prior.cholesky
                ):
                    raise ValueError(f"latent_prior: means and factors must be latent_dim ({d}) wide")
        if self.reference is not None:
            if len(self.reference) != (len(self.labels) if self.labels is not None else 1):
                raise ValueError("reference needs one per label (one for an unconditional model)")
            known = {c.name for c in self.columns} if self.columns is not None else set(self.feature_names)
            if any(not set(r.columns) <= known for r in self.reference):
                raise ValueError("reference may name only the model's columns (or features)")
        if len(self.feature_names) != self.input_dim:
            raise ValueError("feature_names must have input_dim entries")
        if len(self.normalization.shift) != self.input_dim:
            raise ValueError("normalization must have input_dim entries")
        if self.image_shape is not None and _product(self.image_shape) != self.input_dim:
            raise ValueError("image_shape does not multiply out to input_dim")
        if HEADS[self.head].levelled != (self.quantile_levels is not None):
            raise ValueError("quantile_levels is required for, and only for, the quantile head")
        levels = self.quantile_levels or []
        if any(not 0 < q < 1 for q in levels) or levels != sorted(set(levels)):
            raise ValueError("quantile_levels must be strictly increasing and inside (0, 1)")
        if self.labels is not None and (len(self.labels) < 2 or len(set(self.labels)) != len(self.labels)):
            raise ValueError("labels must hold at least two distinct names")
        if self.label_weights is not None and (
            self.labels is None
            or len(self.label_weights) != len(self.labels)
            or any(not (math.isfinite(w) and w >= 0) for w in self.label_weights)
            or not sum(self.label_weights) > 0
        ):
            raise ValueError("label_weights: one non-negative weight per label, not all zero")
        n_inputs = 2 if self.conditional else 1
        for graph_name, graph in (("encoder", self.encoder), ("decoder", self.decoder)):
            for artifact in graph.artifacts:
                if len(artifact.inputs) != n_inputs:
                    raise ValueError(f"{graph_name} {artifact.format} must take {n_inputs} input(s)")
        return self


def _product(values: list[int]) -> int:
    result = 1
    for v in values:
        result *= v
    return result
