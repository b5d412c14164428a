"""Request and response bodies of every endpoint, with examples for the OpenAPI page."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from app.http.parsing import BodyInvalid, TooManyRows, validate_json
from core.errors import InvalidInput, UnsupportedMediaType
from core.manifest import MAX_LABELS, MIN_ROWS_PER_GAP_PATTERN

Rows = list[list[float]]
TypedRows = list[list[float | int | str | bool | None]]
Label = str | int  # an integer is taken as its decimal name: 7 is the label "7"
# A request row is checked cell by cell by the model it is for (app/models/served_model.py,
# core/table.py), which knows each column's kind and says which row and column is wrong,
# and stops at the first bad value. Here it is only documented.
_CELL = {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}, {"type": "null"}]}
_RequestRow = Annotated[
    Any,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "array", "items": _CELL, "description": "values in the model's column (feature) order"},
                {"type": "object", "additionalProperties": _CELL, "description": "values keyed by column name"},
            ]
        }
    ),
]


class _Request(BaseModel):
    # strict: "1.5" or true is not a number; NaN and infinities are refused with their position
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")

    model: str | None = Field(
        None, description="`name` (latest version) or `name@version`; GENSERVE_DEFAULT_MODEL when omitted"
    )


class Range(BaseModel):
    """A condition's range: inclusive, either end optional."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")

    min: float | int | str | None = Field(None, description="the lowest value (a number, or a date or time as text)")
    max: float | int | str | None = Field(None, description="the highest value")


Condition = Range | str | int | float | bool | None


class GenerateRequest(_Request):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "digits-cvae", "n": 2, "label": "7", "seed": 42}]}
    )

    n: int = Field(1, ge=1, description="number of samples (at most GENSERVE_MAX_SAMPLES)")
    label: Label | None = Field(
        None,
        description="condition label, by name; a conditional table model asked for none draws each row's label in "
        "the training shares (or `label_weights`), a conditional model without a column schema needs one",
    )
    label_weights: dict[str, Annotated[float, Field(ge=0)]] | None = Field(
        None,
        max_length=MAX_LABELS,
        description="a conditional table model without `label`: each label's share of the rows (relative weights; "
        "a label left out gets none)",
    )
    conditions: dict[str, Condition] | None = Field(
        None,
        max_length=1000,
        description="a table model: rows only where each named column holds its condition, drawn as the model "
        'draws rows under it: a value (a category, a boolean, an integer, a date, null for a gap) or a range {"min": '
        'a, "max": b} (inclusive, either side optional) of a numeric, date or time column; the label column too',
    )
    seed: int | None = Field(None, ge=0, lt=2**64, description="the same seed gives the same samples")
    temperature: float = Field(1.0, gt=0, le=10, description="scales the latent prior's standard deviation")
    mode: Literal["sample", "mean"] | None = Field(
        None,
        description="sample: draws from p(x | z[, y]), data as a model of it would look (the default for table "
        "models); mean: the decoder's central value for each z, smooth and without noise (the default for "
        "models without a column schema, such as images)",
    )


class GenerateStreamRequest(GenerateRequest):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "penguins-cvae", "n": 100000, "label": "Gentoo", "seed": 42}]}
    )

    n: int = Field(1, ge=1, description="number of rows (at most GENSERVE_MAX_STREAM_ROWS)")


class RowsRequest(_Request):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "cancer-qvae", "inputs": [[14.0] * 30], "labels": ["benign"]}]}
    )

    inputs: list[_RequestRow] = Field(
        min_length=1,
        fail_fast=True,
        description="rows in the data's original units: lists of input_dim numbers for a model without a column "
        "schema; for a table model, lists in the order of its columns or objects keyed by column name, with "
        "categories as in the data and null for a missing value",
    )
    labels: list[Label] | None = Field(None, fail_fast=True, description="one label per row, for a conditional model")


RequestT = TypeVar("RequestT", bound=_Request)


def require_json(request: Request) -> None:
    """415 for a body declared as anything but JSON (a form, text); none declared is fine."""
    content_type = request.headers.get("content-type")
    if content_type is not None:
        media_type = content_type.partition(";")[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            raise UnsupportedMediaType(
                f"the body is declared as {media_type or 'nothing'!r}; send JSON with 'Content-Type: application/json'"
            )


async def read_body(request: Request, model: type[RequestT]) -> RequestT:
    """The request's JSON body as `model`. A body declared as something else (a form, text) is
    refused with 415; one that declares no content type at all is read as JSON."""
    require_json(request)
    settings = request.app.state.settings
    try:
        return await validate_json(model, await request.body(), settings.max_samples)
    except BodyInvalid as e:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors]) from None
    except TooManyRows as e:
        raise InvalidInput(
            f"{e.rows} rows in one request; the limit is {settings.max_samples} (GENSERVE_MAX_SAMPLES)"
        ) from None


def json_body(model: type[_Request]) -> dict[str, Any]:
    """OpenAPI for a body that `read_body` reads: the route documents it as FastAPI would."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline_schema(model)}}}}


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema with its nested models written in place: a `#/$defs/...` reference
    would not resolve once the schema sits inside the OpenAPI document."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


class ModelAnswer(BaseModel):
    model: str
    version: int


class GenerateResponse(ModelAnswer):
    label: str | None
    seed: int | None
    mode: Literal["sample", "mean"]
    columns: list[str] | None = Field(None, description="a table model's column names, the order of each row")
    samples: TypedRows = Field(
        description="n rows in the data's original units; a table model's rows are typed: numbers, integers, "
        "categories as in the data, null for a missing value"
    )


class EncodeResponse(ModelAnswer):
    mean: Rows = Field(description="posterior mean of z per row")
    log_var: Rows = Field(description="posterior log-variance of z per row")


class ReconstructResponse(ModelAnswer):
    columns: list[str] | None = Field(None, description="a table model's column names")
    reconstructions: TypedRows = Field(description="decoded at the latent mean (central values), original units")
    errors: list[float] = Field(
        description="per row: without a column schema the mean squared error in original units; for a table "
        "the mean of column_errors over its modelled columns"
    )
    column_errors: list[list[float]] | None = Field(
        None,
        description="a table model's error per row and column: numeric columns the squared difference on the "
        "model's normal-score scale (1 is about one standard deviation, squared), categorical ones 0 when the "
        "category comes back and 1 when not; 1 when a value is missing on one side only",
    )


class QuantilesResponse(ModelAnswer):
    levels: list[float]
    columns: list[str] | None = Field(None, description="a table model's numeric columns, the features of the bands")
    quantiles: list[list[list[float]]] = Field(description="[row][level][feature], original units")
    probabilities: list[dict[str, dict[str, float]]] | None = Field(
        None,
        description="a table model's categorical columns: per row, column and category the probability "
        '(and of a missing value under "null"); they sum to 1',
    )


class AnomalyRequest(RowsRequest):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"model": "cancer-qvae", "inputs": [[14.0] * 30], "labels": ["benign"], "level": 0.9}]
        }
    )

    false_alarm_rate: float = Field(
        0.01,
        description="the share of normal rows flagged: one of the rates calibrated at training "
        "(0.005, 0.01, 0.02, 0.05), whose threshold decides `flagged`",
    )
    level: float = Field(0.9, gt=0, lt=1, description="the central band features are checked against")


SURPRISE = (
    "how unexpected the value is given the row's other values, in nats: the row's negative ELBO less that of "
    "the row with this value set to 0 on the model's scale (the training median under quantile encoding) and "
    "its own term left out, about -log p(value | the other values)"
)
NO_SURPRISE = "models scored without surprises (more than 64 numeric features, or calibrated before them)"


class FeatureOutside(BaseModel):
    feature: str
    side: Literal["below", "above"]
    band_widths: float = Field(description="how far outside its band, in widths of that band")
    surprise: float | None = Field(description=f"{SURPRISE}; null for {NO_SURPRISE}")


class FeatureSurprise(BaseModel):
    feature: str
    surprise: float = Field(description=SURPRISE)


class RowVerdict(BaseModel):
    score: float = Field(
        description="the row's negative ELBO at the posterior mean plus its largest single-feature surprise (the "
        f"negative ELBO alone for {NO_SURPRISE}), in nats: higher is more anomalous"
    )
    flagged: bool | None = Field(description="score above the threshold; null when the model has no calibration")
    most_surprising: FeatureSurprise | None = Field(
        description="the numeric feature whose value is least expected given the row's others: the one to check "
        f"first; null for {NO_SURPRISE}, and for rows with no numeric value (a missing value has no surprise)"
    )
    outside: list[FeatureOutside] = Field(description="numeric features outside their band at `level`, farthest first")


class AnomalyResponse(ModelAnswer):
    false_alarm_rate: float
    threshold: float | None = Field(description="calibrated at training on held-out normal rows for that rate")
    level: float
    rows: list[RowVerdict]


class ModelSummary(BaseModel):
    name: str
    version: int
    state: str = Field(description="ready | failed")
    reason: str | None = None
    head: str | None = None
    conditional: bool | None = None
    labels: list[str] | None = None
    quantile_levels: list[float] | None = None
    bands: bool | None = Field(
        None, description="whether POST /quantiles answers: the head predicts a spread (a Bernoulli head does not)"
    )
    input_dim: int | None = None
    columns: list[str] | None = None
    latent_dim: int | None = None
    image_shape: list[int] | None = None
    device: str | None = None
    backend: str | None = None
    promoted: bool | None = Field(None, description="whether `name` may resolve to this version (see `promotion`)")
    promotion: str | None = Field(None, description="why it was promoted or held back when it was written")


class ModelDetail(BaseModel):
    name: str
    default_version: int | None = Field(description="the version `name` resolves to: pinned, else newest promoted")
    default_reason: str = Field(description="why that version serves by default")
    latest: int | None = Field(description="the newest version that loaded (promoted or not)")
    versions: list[ModelSummary]
    feature_names: list[str] | None = None
    columns: list[dict] | None = Field(
        None,
        description="the default version's column schema (a table model): kind, bounds, categories, missing rate "
        "and the encoding of each column; V2 tensors of a table model are its encoded rows",
    )
    label_weights: dict[str, float] | None = Field(
        None,
        description="the default version's labels' shares of its training rows: what /generate draws labels from "
        "when a conditional model is asked for none; null: equal shares (a model made before this) or no labels",
    )
    dropped_columns: list[dict] | None = Field(
        None,
        description="the default version's training-table columns the model leaves out, each with why and its place "
        "in the table (request rows may hold them; they are ignored); an ID column trained with --regenerate-ids "
        "has its `identifier`: generated rows carry it with new IDs in that pattern",
    )
    rules: list[dict] | None = Field(
        None,
        description="the default version's rules, which every generated row holds: each with its `kind` (order, "
        "equal, sum, fixed), `columns`, `text` ('loan <= price', 'a + b = total', 'city -> state'), `support` "
        "(training rows it holds in) and whether it was `declared` (--rule) or found in the data; null: none",
    )
    gap_patterns: list[list[str]] | None = Field(
        None,
        description="the combinations of gaps (columns missing together; [] for none) the default version's "
        f"generated rows may have: those at least {MIN_ROWS_PER_GAP_PATTERN} training rows share; null: any",
    )
    reference: list[dict] | None = Field(
        None,
        description="the default version's training rows per label (in `labels` order; one for an unconditional "
        "model), per column: the share missing, and the values' quantiles at evenly spaced levels from 0 to 1 or "
        "each category's share; null for an image model or one made before this",
    )
    normalization: dict[str, list[float]] | None = Field(
        None,
        description="of the default version: normalised = (x - shift) / scale per feature; V2 tensors are in "
        "normalised units",
    )
    metrics: dict[str, float] | None = Field(None, description="test-split metrics of the default version")
    quality: dict | None = Field(
        None,
        description="the default version's quality report: its generated rows scored against the real test split "
        "(SDMetrics quality, shapes within each label, train-on-synthetic AUC, label faithfulness, privacy)",
    )
    coverage_by_feature: dict[str, dict[str, float]] | None = Field(
        None, description="a quantile model's band coverage per numeric feature on the test split"
    )
    anomaly: dict | None = Field(
        None,
        description="the default version's anomaly calibration: thresholds per false-alarm rate fitted on held-out "
        "normal rows, the score's quantiles there, and the test split's false alarms at 1%",
    )
    warnings: list[str] = Field(default_factory=list, description="what training found wrong with the default version")
    training: dict | None = None


class ModelList(BaseModel):
    models: list[ModelSummary]


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: object | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo
