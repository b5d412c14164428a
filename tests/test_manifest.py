from pathlib import Path

import pytest
from pydantic import ValidationError

from app.manifest import Manifest, model_versions, parse_model_ref, read_manifest, resolve, sha256_file


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
        ({"labels": ["only-one"]}, "labels"),
        ({"format_version": 2}, "format_version"),
        ({"unknown_field": 1}, "unknown_field"),
    ]:
        with pytest.raises(ValidationError, match=message):
            Manifest.model_validate({**data, **change})
    bad_path = {**data["encoder"]["artifacts"][0], "path": "../../outside.onnx"}
    with pytest.raises(ValidationError, match="inside the model directory"):
        Manifest.model_validate({**data, "encoder": {"artifacts": [bad_path]}})


def test_manifest_module_does_not_import_torch() -> None:
    from tests.conftest import run_python

    code = "import sys, app.manifest; assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    assert run_python("-c", code).returncode == 0
