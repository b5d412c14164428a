"""Hostile requests on the newer surfaces: PNG grids (drawn off the event loop, bounded in
images), figures and the page (served so that a script in them cannot run), and a label with
100,000 distinct values (refused before training allocates anything)."""

from __future__ import annotations

import csv
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from app.api.pictures import MAX_GRID_IMAGES, PICTURE_CSP
from tests.attacks import assert_answering, latency_bound, post, probe, report
from tests.conftest import LiveServer, run_python

# the largest grid a request may ask for: a row of 102 images for each of digits-cvae's 10 labels
MAXIMAL_PNG = post("/generate", b'{"model": "digits-cvae", "n": 102, "mode": "sample"}').replace(
    b"Content-Type: application/json\r\n", b"Content-Type: application/json\r\nAccept: image/png\r\n"
)


def png_requests(port: int, clients: int) -> None:
    """(In a child process.) `clients` threads each asking for maximal PNG grids, one after another."""

    def ask() -> None:
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
                    s.sendall(MAXIMAL_PNG)
                    while s.recv(1 << 20):
                        pass
            except OSError:
                time.sleep(0.1)

    for _ in range(clients):
        threading.Thread(target=ask, daemon=True).start()
    time.sleep(3600)


@pytest.fixture(scope="module")
def server():
    live = LiveServer({})
    yield live
    live.stop()


def test_png_grids_are_bounded_and_drawn_off_the_event_loop(server, attack) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        refused = http.post("/generate", json={"model": "digits-cvae", "n": 1024}, headers={"Accept": "image/png"})
        assert refused.status_code == 422, refused.text
        message = refused.json()["error"]["message"]
        assert f"at most {MAX_GRID_IMAGES:,} images" in message and "n <= 102" in message, message
        most = {"model": "digits-cvae", "n": MAX_GRID_IMAGES, "label": "3"}
        one_label = http.post("/generate", json=most, headers={"Accept": "image/png"})
        assert one_label.status_code == 200 and one_label.content.startswith(b"\x89PNG")
        started = time.perf_counter()
        whole = http.post("/generate", json={"model": "digits-cvae", "n": 102}, headers={"Accept": "image/png"})
        took = time.perf_counter() - started
        print(f"a maximal grid (1,020 images): {len(whole.content) / 1e6:.1f} MB in {took:.3f} s")
        assert whole.status_code == 200 and whole.headers["content-security-policy"] == PICTURE_CSP
    bound = latency_bound(server.port)
    attack(png_requests, server.port, 4)
    time.sleep(1)
    during = probe(server.port, 8)
    report("4 clients drawing maximal PNG grids", during)
    assert_answering(during, bound)


def test_figures_and_pictures_cannot_run_script_and_the_page_runs_only_its_own(server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for name in ("loss.svg", "columns.svg"):
            figure = http.get(f"/models/penguins-cvae/files/{name}")
            assert figure.status_code == 200 and figure.headers["content-type"].startswith("image/svg+xml")
            assert figure.headers["content-security-policy"] == "default-src 'none'; style-src 'unsafe-inline'"
            assert figure.headers["x-content-type-options"] == "nosniff"
            assert figure.headers["content-disposition"] == f'inline; filename="{name}"'
        band = http.post(
            "/quantiles",
            json={"model": "cancer-qvae", "inputs": [[1.0] * 30], "labels": ["benign"]},
            headers={"Accept": "image/svg+xml"},
        )
        assert band.status_code == 200 and band.headers["content-security-policy"] == PICTURE_CSP
        page = http.get("/ui")
        csp = page.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        # no inline script, and none from elsewhere
        assert directives["script-src"] == "'self'" and "'unsafe-inline'" not in csp
        assert directives["default-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert '<script src="/ui/static/ui.js"' in page.text and "<script>" not in page.text  # it obeys its own CSP
        script = http.get("/ui/static/ui.js")
        assert script.status_code == 200 and script.headers["x-content-type-options"] == "nosniff"


def test_a_label_with_100000_values_is_refused_before_training_allocates(tmp_path: Path) -> None:
    data = tmp_path / "many-labels.csv"
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id_label", "x", "y"])
        writer.writerows([f"L{i}", i % 7 * 0.5, i % 11] for i in range(100_000))
    cli = (
        "import resource, sys; from training.cli import main; code = main(sys.argv[1:]); "
        "print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)"
    )
    result = run_python(
        "-c", cli, "train", "--data", str(data), "--label-column", "id_label", "--conditional",
        "--name", "many", "--models-dir", str(tmp_path / "models"), "--epochs", "1", check=False,
    )  # fmt: skip
    peak_mb = int(result.stdout.split("peak")[-1]) / 1024  # the CLI's own peak RSS
    print(f"refused with exit {result.returncode}, peak RSS {peak_mb:.0f} MB: {result.stderr.strip()}")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "100,000 distinct labels" in result.stderr and "at most 1,000" in result.stderr, result.stderr
    assert peak_mb < 2048  # nothing like the 40 GB one-hot it once tried to allocate
    assert not (tmp_path / "models" / "many").exists()
