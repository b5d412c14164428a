"""docker-compose.yml forwards every GENSERVE_* setting, with the README's defaults.

The file is read as compose reads it (YAML merge keys, ${VAR:-default} interpolation from the
shell); `make docker-test` checks the same on a real engine with docker-compose and a running
container.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
FIXED = {  # set by the container's layout, not from the shell
    "GENSERVE_HOST": "0.0.0.0",
    "GENSERVE_PORT": "8000",
    "GENSERVE_MODEL_DIR": "/srv/models",
}
# A valid value other than the default for every setting the shell may set: a new setting must be
# added here (and so to the compose file) or test_every_setting_is_forwarded fails.
NON_DEFAULT = {
    "GENSERVE_WORKERS": "3",
    "GENSERVE_LOG_LEVEL": "debug",
    "GENSERVE_ACCESS_LOG": "true",
    "GENSERVE_DEFAULT_MODEL": "cancer-qvae",
    "GENSERVE_DEVICE": "auto",
    "GENSERVE_BACKEND": "torchscript",
    "GENSERVE_INFERENCE_THREADS": "2",
    "GENSERVE_BATCHING": "false",
    "GENSERVE_MAX_BATCH_SIZE": "32",
    "GENSERVE_MAX_BATCH_DELAY_MS": "1.5",
    "GENSERVE_MAX_QUEUE": "8192",
    "GENSERVE_INLINE_MAX_MS": "0",
    "GENSERVE_REQUEST_TIMEOUT_S": "5",
    "GENSERVE_MAX_SAMPLES": "512",
    "GENSERVE_MAX_STREAM_ROWS": "1000000",
    "GENSERVE_MAX_BODY_BYTES": "4096",
    "GENSERVE_API_KEY": "s3cret",
    "GENSERVE_CORS_ORIGINS": "*",
    "GENSERVE_READY_POLICY": "all",
    "GENSERVE_WORKER_START_TIMEOUT_S": "60",
    "GENSERVE_KEEP_ALIVE_S": "75",
    "GENSERVE_SHUTDOWN_TIMEOUT_S": "10",
    "GENSERVE_HEADER_TIMEOUT_S": "5",
    "GENSERVE_MAX_HEADER_BYTES": "16384",
    "GENSERVE_MAX_HEADERS": "50",
    "GENSERVE_BODY_TIMEOUT_S": "20",
    "GENSERVE_BODY_MIN_RATE": "0",
    "GENSERVE_SEND_TIMEOUT_S": "60",
    "GENSERVE_MAX_CONNECTIONS": "4000",
}
SERVICES = ("genserve", "genserve-gpu", "replica")
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def setting_variables() -> set[str]:
    return {f"GENSERVE_{name.upper()}" for name in Settings.model_fields}


def container_env(service: str, shell: dict[str, str]) -> dict[str, str]:
    """The environment compose gives `service`'s container, with `shell` as the shell's variables."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["services"][service]["environment"]

    def interpolate(value: object) -> str:
        return _VARIABLE.sub(lambda m: shell.get(m[1]) or (m[2] or ""), str(value))

    return {key: interpolate(value) for key, value in env.items()}


def settings_of(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in setting_variables():
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_every_setting_is_forwarded():
    assert set(NON_DEFAULT) | set(FIXED) == setting_variables()
    for service in SERVICES:
        forwarded = {k for k in container_env(service, {}) if k.startswith("GENSERVE_")}
        assert forwarded == setting_variables(), f"{service}: {forwarded ^ setting_variables()}"


@pytest.mark.parametrize("service", SERVICES)
def test_defaults_are_the_settings_defaults(service, monkeypatch):
    env = container_env(service, {})
    for key, value in FIXED.items():
        assert env[key] == value
    served, default = settings_of(env, monkeypatch), Settings.model_construct()
    expected = {"device": "cuda"} if service == "genserve-gpu" else {}
    for name in Settings.model_fields:
        if f"GENSERVE_{name.upper()}" not in FIXED:
            assert getattr(served, name) == expected.get(name, getattr(default, name)), name


def test_every_setting_from_the_shell_reaches_the_container(monkeypatch):
    env = container_env("genserve", NON_DEFAULT | {"GENSERVE_HOST": "127.0.0.1", "GENSERVE_MODEL_DIR": "/elsewhere"})
    for key, value in NON_DEFAULT.items():
        assert env[key] == value, key
    assert {k: env[k] for k in FIXED} == FIXED  # the shell cannot break the container's layout
    served, default = settings_of(env, monkeypatch), Settings.model_construct()
    for key in NON_DEFAULT:
        name = key.removeprefix("GENSERVE_").lower()
        assert getattr(served, name) != getattr(default, name), f"{key}={NON_DEFAULT[key]} is the default"


def test_an_empty_variable_means_the_default(monkeypatch):
    served = settings_of({"GENSERVE_API_KEY": "", "GENSERVE_DEFAULT_MODEL": "", "GENSERVE_PORT": ""}, monkeypatch)
    assert served.api_key is None and served.default_model is None and served.port == 8000
