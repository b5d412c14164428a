"""The Grafana dashboard (deploy/grafana/) reads metrics the service really exposes, per model.

Grafana's image is not available on these machines (Docker Hub is out of reach), so the
compose test cannot load the dashboard in a running Grafana; this checks what such a load
depends on: the provisioning path, the JSON, and every query's metric and label names
against a live /metrics after real requests."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.conftest import ROOT, real_rows

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "genserve.json"


def queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p["targets"]]


def test_the_dashboard_is_provisioned_where_compose_mounts_it() -> None:
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/genserve.yml").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in mounts
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "genserve"
    cells = set()
    for p in dashboard["panels"]:  # no two panels overlap
        g = p["gridPos"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & area, p["title"]
        cells |= area


def test_it_shows_each_figure_per_model() -> None:
    titles = " | ".join(t for t, _ in queries())
    topics = (
        "Requests by model",
        "Errors by model",
        "latency",
        "batch size",
        "Queue depth",
        "Inference time",
        "flag rate",
        "Streamed rows",
    )
    for topic in topics:
        assert topic.lower() in titles.lower(), topic
    per_model = [e for t, e in queries() if "by model" in t]
    assert len(per_model) >= 6 and all("by (model" in e or "le, model" in e for e in per_model)
    assert all('model=~"$model"' in e for e in per_model)  # the dashboard's model selector applies


def test_every_query_reads_metrics_the_service_exposes(client) -> None:
    client.post("/generate", json={"model": "digits-cvae", "label": "3"})
    client.post("/generate", json={"model": "digits-cvae", "label": "nine"})  # a 422
    rows, labels = real_rows("cancer-qvae", 2)
    assert client.post("/anomaly", json={"model": "cancer-qvae", "inputs": rows, "labels": labels}).status_code == 200
    streamed = client.post("/generate/stream", json={"model": "penguins-cvae", "label": "Adelie", "n": 5})
    assert streamed.status_code == 200
    exposed = client.get("/metrics").text
    for title, expr in queries():
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), title
        for metric in re.findall(r"genserve_[a-z_]+", expr):
            assert re.search(rf"^{metric}[{{ ]", exposed, re.M), f"{title}: {metric} is not exposed"
        for label in re.findall(r"by \(([a-z_, ]+)\)", expr):
            for name in (n.strip() for n in label.split(",")):
                assert name == "le" or f'{name}="' in exposed, f"{title}: no label {name}"
    assert 'status="422"' in exposed and 'model="digits-cvae"' in exposed
    assert Path(DASHBOARD).stat().st_size < 64_000
