"""The model repository's contract: `models/<name>/<version>/model.json`.

Training writes it, the service reads it; neither side guesses a file or tensor name
that is not stated here. This module imports pydantic and the standard library only
(no torch, no numpy), so that the serving path stays light.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FORMAT_VERSION = 1
MANIFEST_FILE = "model.json"

Head = Literal["bernoulli", "gaussian", "quantile"]
ArtifactFormat = Literal["onnx", "torchscript"]
GraphName = Literal["encoder", "decoder"]

# A model name is what users type in a JSON body and what becomes a directory name:
# keep it to a safe alphabet so that it can never address a path outside the repository.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)

# Tensor names of the exported graphs. They are recorded per artifact in the manifest;
# the service reads them from there, these constants are what training writes.
ENCODER_OUTPUTS = ("mean", "log_var")
DECODER_OUTPUTS: dict[str, tuple[str, ...]] = {
    "bernoulli": ("probs",),
    "gaussian": ("mean", "log_var"),
    "quantile": ("quantiles",),
}


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
        if any(s <= 0 for s in self.scale):
            raise ValueError("normalization scale must be positive")
        return self


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


class TrainingInfo(_Strict):
    data: str
    label_column: str | None = None
    seed: int
    epochs_run: int
    max_epochs: int
    hyperparameters: dict[str, float | int | str | list[int]]
    versions: dict[str, str]
    created_at: str


class Manifest(_Strict):
    format_version: Literal[1] = FORMAT_VERSION
    name: str = Field(pattern=NAME_PATTERN)
    version: int = Field(ge=1)
    head: Head
    quantile_levels: list[float] | None = None
    labels: list[str] | None = Field(default=None, description="Condition vocabulary; None for an unconditional model.")
    input_dim: int = Field(ge=1)
    image_shape: list[int] | None = None
    feature_names: list[str]
    latent_dim: int = Field(ge=1)
    normalization: Normalization
    encoder: Graph
    decoder: Graph
    evaluation: Evaluation
    training: TrainingInfo

    @property
    def conditional(self) -> bool:
        return self.labels is not None

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if len(self.feature_names) != self.input_dim:
            raise ValueError("feature_names must have input_dim entries")
        if len(self.normalization.shift) != self.input_dim:
            raise ValueError("normalization must have input_dim entries")
        if self.image_shape is not None and _product(self.image_shape) != self.input_dim:
            raise ValueError("image_shape does not multiply out to input_dim")
        if (self.head == "quantile") != (self.quantile_levels is not None):
            raise ValueError("quantile_levels is required for, and only for, the quantile head")
        levels = self.quantile_levels or []
        if any(not 0 < q < 1 for q in levels) or levels != sorted(set(levels)):
            raise ValueError("quantile_levels must be strictly increasing and inside (0, 1)")
        if self.labels is not None and (len(self.labels) < 2 or len(set(self.labels)) != len(self.labels)):
            raise ValueError("labels must hold at least two distinct names")
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


def parse_model_ref(ref: str) -> tuple[str, int | None]:
    """Split `name` or `name@version` into (name, version or None for latest).

    Raises ValueError with a message fit for a client when the reference is malformed.
    """
    name, sep, version_text = ref.partition("@")
    if not _NAME_RE.match(name):
        raise ValueError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' "
            "(at most 64 characters, starting with a letter or digit)"
        )
    if not sep:
        return name, None
    if not re.fullmatch(r"[0-9]+", version_text) or int(version_text) < 1:
        raise ValueError(f"invalid version {version_text!r} in {ref!r}: a version is a positive integer")
    return name, int(version_text)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_versions(models_dir: Path, name: str) -> list[int]:
    """The versions present for a model, ascending (directories named by an integer)."""
    model_dir = models_dir / name
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and is_version_name(p.name))


def is_version_name(text: str) -> bool:
    """A version directory: ASCII digits only (str.isdigit() would take '²' or a full-width '１')."""
    return re.fullmatch(r"[0-9]+", text) is not None and int(text) >= 1


def read_manifest(version_dir: Path) -> Manifest:
    return Manifest.model_validate_json((version_dir / MANIFEST_FILE).read_text())


def resolve(models_dir: Path, ref: str) -> Path:
    """The version directory that `name` or `name@version` addresses (FileNotFoundError if none)."""
    name, version = parse_model_ref(ref)
    versions = model_versions(models_dir, name)
    if not versions:
        raise FileNotFoundError(f"no model named {name!r} in {models_dir}")
    if version is None:
        version = versions[-1]
    elif version not in versions:
        raise FileNotFoundError(f"model {name!r} has no version {version}; versions: {versions}")
    return models_dir / name / str(version)
