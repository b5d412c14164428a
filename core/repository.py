"""The model repository: `models/<name>/<version>/` directories, each with its `model.json` (core/manifest.py),
read, checked and resolved here; and which version `name` resolves to: promotion at export, and pins.

A version is written only once the export's parity check has passed (each graph's outputs
match PyTorch's). It is then *promoted* — `name` may resolve to it — if its evaluation
figures are not worse than those of the version serving by default by more than the
margins below; `--promote` / `--no-promote` decide by hand. The verdict, the figures
compared and the margins are stored with the version (`promotion` in `model.json`).

`name` resolves to the version pinned in `<name>/default.json` if that version serves,
else to the newest promoted version that serves. A pin is written by
`python -m training pin NAME@VERSION` and read at start-up and at each reload.

Pydantic and the standard library only: the serving path uses it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.manifest import MAX_VERSION, NAME_PATTERN, Evaluation, Manifest, Promotion

_NAME_RE = re.compile(NAME_PATTERN)
MANIFEST_FILE = "model.json"

MAX_MANIFEST_BYTES = 64 << 20

# Written by training beside the manifest (optional, older versions lack them): the history of
# every epoch, and figures (SVG): the loss curves, a table's real-against-generated columns.
HISTORY_FILE = "history.json"

LOSS_FIGURE = "loss.svg"

COLUMNS_FIGURE = "columns.svg"


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
    """A version directory: ASCII digits only (str.isdigit() would take '²' or a full-width '１'),
    a number from 1 to MAX_VERSION."""
    return re.fullmatch(r"[0-9]{1,10}", text) is not None and 1 <= int(text) <= MAX_VERSION


def contained_file(version_dir: Path, name: str) -> Path:
    """`version_dir / name` if it is a regular file inside the version directory (after links);
    ValueError otherwise: a link out of the directory, a FIFO or device, a directory."""
    path = version_dir / name
    real, root = path.resolve(), version_dir.resolve()
    if not real.is_relative_to(root):
        raise ValueError(f"{name} links out of its version directory ({real}); not followed")
    try:
        mode = real.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(2, "No such file", str(path)) from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{name} is not a regular file")
    return real


def read_manifest(version_dir: Path) -> Manifest:
    path = contained_file(version_dir, MANIFEST_FILE)
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ValueError(f"{MANIFEST_FILE} is larger than {MAX_MANIFEST_BYTES} bytes")
    return Manifest.model_validate_json(path.read_bytes())


def resolve(models_dir: Path, ref: str) -> Path:
    """The version directory that `name@version` addresses, or `name` as the service resolves it
    (pinned, else newest promoted: core/repository.py); FileNotFoundError if none."""
    name, version = parse_model_ref(ref)
    versions = model_versions(models_dir, name)
    if not versions:
        raise FileNotFoundError(f"no model named {name!r} in {models_dir}")
    if version is None:
        default = current_default(models_dir, name)
        if default is None:
            raise FileNotFoundError(f"model {name!r} has no promoted version; versions: {versions}")
        version = default.version
    elif version not in versions:
        raise FileNotFoundError(f"model {name!r} has no version {version}; versions: {versions}")
    return models_dir / name / str(version)


PIN_FILE = "default.json"

Choice = Literal["auto", "yes", "no"]


@dataclass(frozen=True)
class Margin:
    """A new version may be worse than the default on `figure` by at most
    `absolute + relative * |default's value|`; with `target`, the distance to it is compared."""

    figure: str  # "metrics.<name>" or "quality.<name>"
    higher_is_better: bool
    absolute: float = 0.0
    relative: float = 0.0
    target: float | None = None

    def value(self, evaluation: Evaluation) -> float | None:
        source, name = self.figure.split(".", 1)
        table = evaluation.metrics if source == "metrics" else (evaluation.quality or {})
        value = table.get(name)
        if not isinstance(value, int | float):
            return None
        return abs(value - self.target) if self.target is not None else float(value)


MARGINS = (
    Margin("metrics.elbo", True, absolute=1.0, relative=0.05),
    Margin("metrics.reconstruction_mse", False, relative=0.10),
    Margin("metrics.conditional_accuracy", True, absolute=0.03),
    Margin("metrics.pinball_loss", False, relative=0.10),
    Margin("metrics.coverage_90", False, absolute=0.03, target=0.90),
    Margin("quality.quality", True, absolute=0.02),
    Margin("quality.label_faithfulness", True, absolute=0.03),
    Margin("quality.tstr_auc", True, absolute=0.02),
)


class Pin(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    reason: str = ""
    pinned_at: str | None = None


def read_pin(model_dir: Path) -> Pin | None:
    """The pin of a model's directory, None if there is none (ValueError if it cannot be read)."""
    path = model_dir / PIN_FILE
    if not path.is_file():
        return None
    try:
        return Pin.model_validate_json(path.read_text())
    except (OSError, ValidationError) as e:
        raise ValueError(f"{path} is not a pin ({{'version': N, 'reason': '...'}}): {e}") from None


def write_pin(models_dir: Path, name: str, version: int, reason: str = "") -> Path:
    versions = model_versions(models_dir, name)
    if version not in versions:
        raise FileNotFoundError(f"model {name!r} has no version {version}; versions: {versions}")
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    pin = Pin(version=version, reason=reason, pinned_at=now)
    path = models_dir / name / PIN_FILE
    staged = path.with_name(f".{PIN_FILE}.tmp")
    staged.write_text(json.dumps(pin.model_dump(), indent=2) + "\n")
    staged.replace(path)  # atomic: a reload never reads half a pin
    return path


def choose_default(servable: dict[int, Promotion | None], pin: Pin | None) -> tuple[int | None, str]:
    """The version `name` resolves to among the versions that serve (with their promotion), and why."""
    notes = []
    if pin is not None:
        if pin.version in servable:
            why = f"pinned in {PIN_FILE}" + (f" ({pin.reason})" if pin.reason else "")
            newer = sorted(v for v in servable if v > pin.version)
            return pin.version, why + (f"; newer versions {newer} wait" if newer else "")
        notes.append(f"the pinned version {pin.version} does not serve, so the pin is ignored")
    promoted = [v for v, p in servable.items() if p is None or p.promoted]
    if not promoted:
        held = sorted(servable)
        return None, "; ".join([*notes, f"no version is promoted (held back: {held}); pin one or ask for name@version"])
    version = max(promoted)
    promotion = servable[version]
    why = "the newest promoted version" + (
        f": {promotion.reason}" if promotion is not None else " (made before promotion checks)"
    )
    held = sorted(v for v in servable if v > version)
    return version, "; ".join([*notes, why + (f"; held back: {held}" if held else "")])


def compare(new: Evaluation, current: Evaluation) -> tuple[dict[str, str], list[str]]:
    """Each figure both have: 'new vs current (allowed ...): ok | worse'; and the worse ones."""
    checks, worse = {}, []
    for margin in MARGINS:
        a, b = margin.value(new), margin.value(current)
        if a is None or b is None:
            continue
        allowed = margin.absolute + margin.relative * abs(b)
        bound = b - allowed if margin.higher_is_better else b + allowed
        ok = a >= bound if margin.higher_is_better else a <= bound
        what = margin.figure + (f" (distance to {margin.target})" if margin.target is not None else "")
        checks[what] = f"{a:.4g} vs {b:.4g} ({'at least' if margin.higher_is_better else 'at most'} {bound:.4g}): " + (
            "ok" if ok else "worse"
        )
        if not ok:
            worse.append(what)
    return checks, worse


def current_default(models_dir: Path, name: str) -> Manifest | None:
    """The version of `name` that serves by default, as far as the repository's files tell."""
    servable = {}
    for version in model_versions(models_dir, name):
        try:
            servable[version] = read_manifest(models_dir / name / str(version))
        except (OSError, ValueError):
            continue  # a broken version does not serve
    try:
        pin = read_pin(models_dir / name)
    except ValueError:
        pin = None
    version, _ = choose_default({v: m.promotion for v, m in servable.items()}, pin)
    return servable.get(version) if version is not None else None


def decide(models_dir: Path, new: Manifest, choice: Choice = "auto") -> Promotion:
    """Promote `new` (about to be written into `models_dir`) or hold it back."""
    current = current_default(models_dir, new.name)
    comparable = current is not None and current.feature_names == new.feature_names and current.labels == new.labels
    checks, worse = compare(new.evaluation, current.evaluation) if comparable else ({}, [])
    against = current.version if current is not None else None
    if choice == "yes":
        promoted, reason = True, "promoted by --promote"
    elif choice == "no":
        promoted, reason = False, "held back by --no-promote"
    elif current is None:
        promoted, reason = True, "no version served by default before; the parity check passed"
    elif not comparable:
        promoted, reason = True, f"its features or labels differ from v{against}'s, so figures were not compared"
    elif worse:
        promoted = False
        reason = (
            f"worse than v{against} (serving by default) beyond the margins on {', '.join(worse)}; "
            f"`python -m training pin {new.name}@{new.version}` serves it anyway"
        )
    else:
        promoted, reason = True, f"its figures are within the margins of v{against}'s"
    return Promotion(promoted=promoted, reason=reason, compared_with=against, checks=checks)
