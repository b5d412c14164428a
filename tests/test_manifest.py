from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from core.manifest import Manifest
from core.repository import model_versions, parse_model_ref, read_manifest, resolve, sha256_file


@pytest.mark.parametrize(("ref", "expected"), [("digits-cvae", ("digits-cvae", None)), ("m.v2_x@12", ("m.v2_x", 12))])
def test_parse_model_ref(ref: str, expected: tuple) -> None:
    assert parse_model_ref(ref) == expected


@pytest.mark.parametrize(
    "ref", ["../etc/passwd", "a/b", "", "x@", "x@0", "x@-1", "x@1.5", "x@latest", ".hidden", "a" * 65]
)
def test_parse_model_ref_rejects_unsafe_or_malformed(ref: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        parse_model_ref(ref)


def test_resolve_latest_and_explicit_versions(tiny_cvae: Path, tmp_path: Path) -> None:
    models_dir = tiny_cvae.parent.parent
    assert resolve(models_dir, "tiny-cvae") == tiny_cvae
    assert resolve(models_dir, f"tiny-cvae@{tiny_cvae.name}") == tiny_cvae
    with pytest.raises(FileNotFoundError, match="no version 99"):
        resolve(models_dir, "tiny-cvae@99")
    with pytest.raises(FileNotFoundError, match="no model named"):
        resolve(models_dir, "nothing-here")
    assert model_versions(tmp_path, "absent") == []


def test_manifest_records_artifacts_with_their_checksums(tiny_cvae: Path) -> None:
    manifest = read_manifest(tiny_cvae)
    assert manifest.conditional and manifest.labels == [str(d) for d in range(10)]
    for graph in (manifest.encoder, manifest.decoder):
        assert {a.format for a in graph.artifacts} == {"onnx", "torchscript"}
        for artifact in graph.artifacts:
            assert sha256_file(tiny_cvae / artifact.path) == artifact.sha256
            assert artifact.inputs[-1] == "y"
    assert manifest.encoder.artifacts[0].outputs == ["mean", "log_var"]
    assert manifest.decoder.artifacts[0].outputs == ["probs"]


def test_manifest_rejects_inconsistent_content(tiny_cvae: Path) -> None:
    data = read_manifest(tiny_cvae).model_dump()
    for change, message in [
        ({"input_dim": 63}, "feature_names"),
        ({"head": "quantile"}, "quantile_levels"),
        ({"labels": ["only-one"], "latent_prior": None}, "labels"),
        ({"format_version": 2}, "format_version"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"reference": [{"rows": 1, "columns": {}}]}, "one per label"),
        ({"reference": [{"rows": 1, "columns": {"nope": {"missing": 0.5}}}] * 10}, "only the model's columns"),
        ({"reference": [{"rows": 1, "columns": {"pixel_0_0": {"quantiles": [2.0, 1.0]}}}] * 10}, "in order"),
        ({"reference": [{"rows": 1, "columns": {"pixel_0_0": {"quantiles": [0, 1], "shares": {}}}}] * 10}, "not both"),
    ]:
        with pytest.raises(ValidationError, match=message):
            Manifest.model_validate({**data, **change})
    bad_path = {**data["encoder"]["artifacts"][0], "path": "../../outside.onnx"}
    with pytest.raises(ValidationError, match="inside the model directory"):
        Manifest.model_validate({**data, "encoder": {"artifacts": [bad_path]}})


def test_the_shared_core_imports_no_torch_and_no_web_framework() -> None:
    from tests.conftest import run_python

    modules = "core.manifest, core.repository, core.heads, core.table, core.prior, core.generation, core.formats"
    code = (
        f"import sys, {modules}, core.scoring, core.runner; "
        "heavy = {'torch', 'fastapi', 'starlette', 'uvicorn'} & {m.split('.')[0] for m in sys.modules}; "
        "assert not heavy, heavy"
    )
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr


def test_a_table_manifest_checks_its_column_schema() -> None:
    from core.manifest import Column, encoded_width
    from tests.conftest import DEFAULT_MODELS_DIR

    data = read_manifest(DEFAULT_MODELS_DIR / "penguins-cvae" / "1").model_dump()
    columns = data["columns"]
    assert encoded_width([Column(**c) for c in columns]) == (4, 8, 5)
    island = next(i for i, c in enumerate(columns) if c["name"] == "island")
    bill = next(i for i, c in enumerate(columns) if c["name"] == "bill_length_mm")
    fewer = [*columns[:island], {**columns[island], "categories": ["Biscoe", "Dream"]}, *columns[island + 1 :]]
    decreasing = {**columns[bill], "knots": list(reversed(columns[bill]["knots"]))}
    for change, message in [
        ({"columns": fewer}, "encoded width must be input_dim"),
        ({"columns": [*columns[:bill], decreasing, *columns[bill + 1 :]]}, "knots must not decrease"),
        ({"columns": [*columns, columns[0]]}, "column names must be distinct"),
        ({"latent_prior": data["latent_prior"][:1]}, "one mixture per label"),
        ({"gap_patterns": [[], ["island"]]}, "may name only columns with gaps"),
        ({"gap_patterns": [["sex", "sex"]]}, "may name only columns with gaps, each once"),
        ({"gap_patterns": [["sex"], ["sex"]]}, "each once"),
        ({"gap_patterns": []}, "at least one pattern"),
    ]:
        with pytest.raises(ValidationError, match=message):
            Manifest.model_validate({**data, **change})
    with pytest.raises(ValidationError, match="a boolean column's categories are"):
        Column(name="vip", kind="boolean", categories=["no", "yes"])
    with pytest.raises(ValidationError, match="a constant column has no gaps"):
        Column(name="c", kind="constant", value=1, missing_rate=0.1)


def test_an_array_models_manifest_holds_each_labels_training_rows(tiny_gaussian: Path) -> None:
    manifest = read_manifest(tiny_gaussian / "tiny-gauss" / "1")
    assert manifest.reference is not None and len(manifest.reference) == len(manifest.labels or []) == 3
    for reference in manifest.reference:
        assert set(reference.columns) == set(manifest.feature_names)
    # the data's label k shifts every feature by k: each label's median sits about 1 above the last's
    medians = [r.columns[manifest.feature_names[0]].quantiles[20] for r in manifest.reference]
    assert np.diff(medians) == pytest.approx([1, 1], abs=0.5)
    assert sum(r.rows for r in manifest.reference) < 200  # the training split's rows only
