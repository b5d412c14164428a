"""Pictures from the API, decoded by an independent decoder (Pillow): a digit grid a classifier
reads as the label asked for, and band plots of one row."""

from __future__ import annotations

import io
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from app.api.pictures import CELL_PIXELS, GAP
from tests.conftest import real_rows


@pytest.fixture(scope="module")
def digit_classifier():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    return LogisticRegression(max_iter=2000).fit(digits.data / 16.0, digits.target)


def digit_cells(pixels: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """The grid's images back at 8 x 8, as ink in [0, 1] (the grid draws dark ink on white): [rows * columns, 64]."""
    scale, cell = CELL_PIXELS // 8, CELL_PIXELS // 8 * 8 + GAP
    assert pixels.shape == (rows * cell + GAP, columns * cell + GAP)
    cells = [
        pixels[GAP + r * cell : GAP + r * cell + 8 * scale : scale, GAP + c * cell : GAP + c * cell + 8 * scale : scale]
        for r in range(rows)
        for c in range(columns)
    ]
    return 1 - np.stack(cells).reshape(rows * columns, 64) / 255.0


def decode(content: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(content))
    image.load()
    return np.asarray(image)


@pytest.mark.parametrize("label", ["3", "7"])
def test_a_digit_grid_is_a_png_a_classifier_reads_as_the_label(client, digit_classifier, label) -> None:
    answer = client.post(
        "/generate", json={"model": "digits-cvae", "n": 25, "label": label, "seed": 4}, headers={"accept": "image/png"}
    )
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert answer.headers["x-model"] == "digits-cvae"
    pixels = decode(answer.content)
    assert pixels.std() > 20  # not blank
    ink = digit_cells(pixels, 5, 5)  # 25 digits, 5 x 5
    recognised = (digit_classifier.predict(ink) == int(label)).mean()
    assert recognised >= 0.8, recognised


def test_images_only_for_image_models_and_pictures_obey_the_limits(client) -> None:
    table = client.post(
        "/generate", json={"model": "penguins-cvae", "n": 3, "label": "Adelie"}, headers={"accept": "image/png"}
    )
    assert table.status_code == 406
    rows = client.post(
        "/generate", json={"model": "cancer-qvae", "n": 3, "label": "benign"}, headers={"accept": "image/png"}
    )
    assert rows.status_code == 406 and "does not make images" in rows.json()["error"]["message"]
    too_many = client.post("/generate", json={"model": "digits-vae", "n": 5000}, headers={"accept": "image/png"})
    assert too_many.status_code == 422


@pytest.mark.parametrize("media_type", ["image/png", "image/svg+xml"])
def test_a_band_plot_of_one_row(client, media_type) -> None:
    rows, labels = real_rows("cancer-qvae", 2)
    body = {"model": "cancer-qvae", "inputs": rows[:1], "labels": labels[:1]}
    answer = client.post("/quantiles", json=body, headers={"accept": media_type})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith(media_type)
    bands = client.post("/quantiles", json=body).json()["quantiles"][0]  # [levels, features]
    x = np.array(rows[0])
    outside = [
        name
        for name, value, lo, hi in zip(
            client.get("/models/cancer-qvae").json()["feature_names"], x, bands[0], bands[-1], strict=True
        )
        if value < lo or value > hi
    ]
    assert [unquote(n) for n in answer.headers["x-outside"].split(",") if n] == outside
    if media_type == "image/png":
        pixels = decode(answer.content)
        assert pixels.shape[2] == 3 and pixels.shape[0] >= 30 * 18 and pixels.std() > 10
        red = (pixels[..., 0] > 200) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
        assert red.any() == bool(outside)  # features outside their band are marked red
    else:
        text = answer.text
        assert text.startswith("<svg") and text.count("<circle") == 30 and "mean radius" in text
    two = client.post("/quantiles", json={**body, "inputs": rows, "labels": labels}, headers={"accept": media_type})
    assert two.status_code == 422 and "one row" in two.json()["error"]["message"]


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        ("image/svg+xml;q=0, application/json", "application/json"),  # q=0: not acceptable
        ("image/svg+xml;q=0, */*", "application/json"),
        ("application/json;q=0.1, image/png", "image/png"),  # higher q wins
        ("image/png;q=0.5, image/svg+xml", "image/svg+xml"),  # higher q wins
        ("image/svg+xml, image/png", "image/svg+xml"),  # equal q: the first listed
        ("application/json, image/svg+xml", "application/json"),
        ("image/*", "image/png"),
        ("text/html", "application/json"),  # none of its types: JSON, as without Accept
    ],
)
def test_quantiles_follow_the_q_values_of_accept(client, accept, media_type) -> None:
    rows, labels = real_rows("cancer-qvae", 1)
    answer = client.post(
        "/quantiles", json={"model": "cancer-qvae", "inputs": rows, "labels": labels}, headers={"accept": accept}
    )
    assert answer.status_code == 200 and answer.headers["content-type"].startswith(media_type)


def test_a_table_models_band_plot_names_its_numeric_columns(client) -> None:
    row = {"island": "Biscoe", "bill_length_mm": 47.0, "bill_depth_mm": 25.0, "flipper_length_mm": 217}
    row |= {"body_mass_g": 5000, "sex": "male", "year": 2008}
    answer = client.post(
        "/quantiles",
        json={"model": "penguins-cvae", "inputs": [row], "labels": ["Gentoo"]},
        headers={"accept": "image/svg+xml"},
    )
    assert answer.status_code == 200
    assert answer.text.count("<circle") == 4 and "flipper_length_mm" in answer.text
    assert "bill_depth_mm" in answer.headers["x-outside"]  # 25 mm: far above any Gentoo's


def test_training_files_are_served(client) -> None:
    history = client.get("/models/penguins-cvae/files/history.json")
    assert history.status_code == 200 and history.json()[0]["epoch"] == 1
    assert {"train", "recon", "kl", "val", "beta", "lr"} <= set(history.json()[-1])
    for name in ("loss.svg", "columns.svg"):
        figure = client.get(f"/models/penguins-cvae/files/{name}")
        assert figure.status_code == 200 and figure.headers["content-type"].startswith("image/svg+xml")
    assert client.get("/models/digits-cvae/files/columns.svg").status_code == 404  # images: no columns
    assert client.get("/models/digits-cvae/files/model.json").status_code == 422  # only the named files


def test_a_conditional_image_model_asked_for_no_label_draws_a_row_per_label(client, digit_classifier) -> None:
    answer = client.post("/generate", json={"model": "digits-cvae", "n": 6, "seed": 2}, headers={"accept": "image/png"})
    assert answer.status_code == 200
    pixels = decode(answer.content)
    scale = CELL_PIXELS // 8
    cell = 8 * scale + GAP
    assert pixels.shape == (10 * cell + GAP, 6 * cell + GAP)  # labels 0-9, one row each
    for label in range(10):
        top = GAP + label * cell
        cells = [
            pixels[top : top + 8 * scale : scale, GAP + c * cell : GAP + c * cell + 8 * scale : scale] for c in range(6)
        ]
        ink = 1 - np.stack(cells).reshape(6, 64) / 255.0
        assert (digit_classifier.predict(ink) == label).mean() >= 0.5, label
    assert client.post("/generate", json={"model": "digits-cvae", "n": 6}).status_code == 422  # JSON still needs one
