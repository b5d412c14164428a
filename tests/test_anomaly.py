"""POST /anomaly on the default models: scores from the model's likelihood, verdicts against the
threshold calibrated at training, and the features outside their band."""

from __future__ import annotations

import pytest

from core.repository import read_manifest
from tests.conftest import DEFAULT_MODELS_DIR, metric_value, real_rows

PENGUIN = {"island": "Biscoe", "bill_length_mm": 47.5, "bill_depth_mm": 15.0, "flipper_length_mm": 217}
PENGUIN |= {"body_mass_g": 5200, "sex": "male", "year": 2008}


@pytest.mark.parametrize("name", ["cancer-qvae", "penguins-cvae", "digits-vae", "digits-cvae"])
def test_training_stored_a_calibration(name) -> None:
    calibration = read_manifest(DEFAULT_MODELS_DIR / name / "1").evaluation.anomaly
    assert calibration is not None and calibration["rows"] > 50
    thresholds = [calibration["thresholds"][r] for r in ("0.05", "0.02", "0.01", "0.005")]
    assert thresholds == sorted(thresholds)  # fewer false alarms, a higher threshold
    assert calibration["test_false_alarm_rate"] <= 0.05, calibration


def test_a_feature_moved_far_out_is_flagged_and_named(client) -> None:
    rows, labels = real_rows("cancer-qvae", 4)
    moved = [list(row) for row in rows]
    moved[2][3] = rows[2][3] * 8  # mean area, eight times its value
    body = {"model": "cancer-qvae", "inputs": rows + moved[2:3], "labels": labels + labels[2:3]}
    answer = client.post("/anomaly", json={**body, "false_alarm_rate": 0.05})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (
        result["threshold"]
        == read_manifest(DEFAULT_MODELS_DIR / "cancer-qvae" / "1").evaluation.anomaly["thresholds"]["0.05"]
    )
    original, changed = result["rows"][2], result["rows"][4]
    assert changed["score"] > original["score"] and changed["flagged"] is True
    assert changed["outside"][0]["feature"] == "mean area" and changed["outside"][0]["side"] == "above"
    assert changed["outside"][0]["band_widths"] > 1
    assert changed["most_surprising"]["feature"] == "mean area"
    assert changed["most_surprising"]["surprise"] == changed["outside"][0]["surprise"] > 0
    assert [f["band_widths"] for f in changed["outside"]] == sorted(
        (f["band_widths"] for f in changed["outside"]), reverse=True
    )
    single = client.post("/anomaly", json={**body, "inputs": moved[2:3], "labels": labels[2:3]}).json()["rows"][0]
    assert single["score"] == pytest.approx(changed["score"], rel=1e-5)  # alone or batched, the same score


def test_a_table_rows_verdict(client) -> None:
    odd = {**PENGUIN, "bill_depth_mm": 40.0}
    answer = client.post(
        "/anomaly", json={"model": "penguins-cvae", "inputs": [PENGUIN, odd], "labels": ["Gentoo"] * 2}
    )
    assert answer.status_code == 200, answer.text
    normal, off = answer.json()["rows"]
    assert off["score"] > normal["score"] and off["flagged"] is True
    assert off["outside"][0]["feature"] == off["most_surprising"]["feature"] == "bill_depth_mm"


def test_a_missing_value_is_never_the_surprise_nor_outside(client) -> None:
    """A gap has no value to be surprised by or to lie outside a band; a row of gaps adds no surprise."""
    import numpy as np

    from core.offline import AnomalyScorer
    from core.scoring import row_scores

    gap = {**PENGUIN, "bill_depth_mm": None, "body_mass_g": 9000}
    numbers = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")
    empty = {**PENGUIN, **dict.fromkeys(numbers)}
    body = {"model": "penguins-cvae", "inputs": [gap, empty], "labels": ["Gentoo"] * 2}
    answer = client.post("/anomaly", json=body)
    assert answer.status_code == 200, answer.text
    one, none = answer.json()["rows"]
    assert one["most_surprising"]["feature"] == "body_mass_g"
    assert "bill_depth_mm" not in [f["feature"] for f in one["outside"]]
    assert all(f["surprise"] is not None for f in one["outside"])
    assert none["most_surprising"] is None and none["outside"] == []
    scorer = AnomalyScorer(DEFAULT_MODELS_DIR / "penguins-cvae" / "1")
    numeric, codes = scorer.table.parse_rows([empty])
    x = scorer.table.encode(numeric, codes)
    y = np.asarray([scorer.manifest.labels.index("Gentoo")])
    mean, log_var = scorer._run("encoder", x, y)
    elbo, _ = row_scores(
        scorer.manifest, x, mean, log_var, scorer._run("decoder", mean, y), scorer.table, scorer.prior, y
    )
    assert none["score"] == pytest.approx(float(elbo[0]), rel=1e-5)  # nothing added


def test_surprises_that_are_not_finite_reach_the_score() -> None:
    """Only a gap's -inf is passed over; a NaN or inf surprise makes the score non-finite, which /anomaly
    refuses with an error instead of answering a score without it."""
    import numpy as np

    from core.scoring import surprise_scores

    observed = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    scores = np.array([10.0, 10.0, 10.0, 9.0, np.nan, 9.0, 12.0, 4.0, 9.0])  # rows, then copy 0, copy 1
    terms = np.zeros((9, 2))
    scored = surprise_scores(scores, terms, observed)
    assert scored.surprise[0] == pytest.approx([1.0, -2.0])
    assert np.isnan(scored.score[1])  # its copy's NaN is not dropped
    assert scored.score[2] == 10.0 and np.isneginf(scored.surprise[2]).all()  # gaps only: nothing added


def test_rows_with_their_feature_copies_beyond_the_request_limit_score_the_same(make_client, client) -> None:
    """/anomaly scores each row with one copy per numeric feature: past GENSERVE_MAX_SAMPLES rows in all
    they run in pieces, and the answer is the one a large limit gives."""
    rows, labels = real_rows("cancer-qvae", 5)  # 5 x (30 + 1) rows through the graphs
    body = {"model": "cancer-qvae", "inputs": rows, "labels": labels}
    small = make_client(max_samples=16, max_queue=16).post("/anomaly", json=body)
    assert small.status_code == 200, small.text
    large = client.post("/anomaly", json=body).json()["rows"]
    pieces = small.json()["rows"]
    assert [r["score"] for r in pieces] == pytest.approx([r["score"] for r in large], rel=1e-5)
    assert [r["most_surprising"]["feature"] for r in pieces] == [r["most_surprising"]["feature"] for r in large]
    surprises = [r["most_surprising"]["surprise"] for r in pieces]
    assert surprises == pytest.approx([r["most_surprising"]["surprise"] for r in large], rel=1e-4, abs=1e-3)


def test_a_model_with_more_numeric_features_than_the_surprise_limit_scores_its_elbo(monkeypatch, make_client) -> None:
    import numpy as np

    from core import scoring as anomaly
    from core.offline import AnomalyScorer

    monkeypatch.setattr(anomaly, "MAX_SURPRISE_FEATURES", 16)  # cancer-qvae has 30
    rows, labels = real_rows("cancer-qvae", 2)
    answer = make_client().post("/anomaly", json={"model": "cancer-qvae", "inputs": rows, "labels": labels})
    assert answer.status_code == 200, answer.text
    scorer = AnomalyScorer(DEFAULT_MODELS_DIR / "cancer-qvae" / "1")
    assert not scorer.surprise
    norm = scorer.manifest.normalization
    x = (np.asarray(rows, np.float32) - np.asarray(norm.shift, np.float32)) / np.asarray(norm.scale, np.float32)
    y = np.asarray([scorer.manifest.labels.index(label) for label in labels])
    mean, log_var = scorer._run("encoder", x, y)
    elbo, _ = anomaly.row_scores(
        scorer.manifest, x, mean, log_var, scorer._run("decoder", mean, y), None, scorer.prior, y
    )
    assert [r["score"] for r in answer.json()["rows"]] == pytest.approx(elbo.tolist(), rel=1e-5)
    assert all(r["most_surprising"] is None for r in answer.json()["rows"])
    assert all(f["surprise"] is None for r in answer.json()["rows"] for f in r["outside"])


def test_a_bernoulli_model_scores_but_names_no_band(client) -> None:
    rows, _ = real_rows("digits-vae", 3)
    rows[0][36] = 1.0 if rows[0][36] < 0.5 else 0.0  # one pixel in the middle flipped (intensities are 0-1)
    answer = client.post("/anomaly", json={"model": "digits-vae", "inputs": rows})
    assert answer.status_code == 200
    assert all(r["outside"] == [] and isinstance(r["flagged"], bool) for r in answer.json()["rows"])
    assert answer.json()["rows"][0]["most_surprising"]["feature"] == "pixel_4_4"


def test_anomaly_errors_say_what_is_allowed(client) -> None:
    rows, labels = real_rows("cancer-qvae", 1)
    body = {"model": "cancer-qvae", "inputs": rows, "labels": labels}
    rate = client.post("/anomaly", json={**body, "false_alarm_rate": 0.03})
    assert rate.status_code == 422 and "calibrated: [0.005, 0.01, 0.02, 0.05]" in rate.json()["error"]["message"]
    level = client.post("/anomaly", json={**body, "level": 0.8})
    assert level.status_code == 422 and "central bands: [0.5, 0.9]" in level.json()["error"]["message"]
    assert client.post("/anomaly", json={**body, "labels": ["other"]}).status_code == 422
    assert client.post("/anomaly", json={**body, "level": 1.5}).status_code == 422


def test_rows_scored_and_flagged_are_counted(client) -> None:
    rows, labels = real_rows("cancer-qvae", 3)
    labelled = {"model": "cancer-qvae", "version": "1"}
    before = metric_value(client.get("/metrics").text, "genserve_anomaly_rows_scored_total", **labelled)
    flagged = client.post("/anomaly", json={"model": "cancer-qvae", "inputs": rows, "labels": labels}).json()
    text = client.get("/metrics").text
    assert metric_value(text, "genserve_anomaly_rows_scored_total", **labelled) == before + 3
    assert metric_value(text, "genserve_anomaly_rows_flagged_total", **labelled) >= sum(
        r["flagged"] for r in flagged["rows"]
    )


def test_the_in_process_scorer_agrees_with_the_service(client) -> None:
    """AnomalyScorer (training's calibration, the benchmark) scores and ranks as /anomaly does."""
    import numpy as np

    from core.offline import AnomalyScorer

    rows, labels = real_rows("cancer-qvae", 3)
    rows[1][3] *= 8
    served = client.post("/anomaly", json={"model": "cancer-qvae", "inputs": rows, "labels": labels}).json()["rows"]
    scorer = AnomalyScorer(DEFAULT_MODELS_DIR / "cancer-qvae" / "1")
    norm = scorer.manifest.normalization
    x = (np.asarray(rows, np.float32) - np.asarray(norm.shift, np.float32)) / np.asarray(norm.scale, np.float32)
    y = np.asarray([scorer.manifest.labels.index(label) for label in labels])
    scored = scorer.score(x, y)
    assert scored.score == pytest.approx([r["score"] for r in served], rel=1e-4)
    distances = scorer.distances(x, y)
    names = scorer.manifest.feature_names
    assert names[int(np.abs(distances[1]).argmax())] == served[1]["outside"][0]["feature"] == "mean area"
    assert [names[j] for j in scored.surprise.argmax(axis=1)] == [r["most_surprising"]["feature"] for r in served]


def test_the_score_adds_the_largest_surprise_of_a_value_given_the_others() -> None:
    """surprise_j = negative ELBO of the row less that of its copy with feature j at the scale's centre
    and j's own term left out; the score is the negative ELBO plus the largest."""
    import numpy as np

    from core.offline import AnomalyScorer
    from core.scoring import row_scores

    rows, labels = real_rows("cancer-qvae", 4)
    scorer = AnomalyScorer(DEFAULT_MODELS_DIR / "cancer-qvae" / "1")
    assert scorer.surprise and scorer.manifest.evaluation.anomaly["surprise"] is True
    norm = scorer.manifest.normalization
    x = (np.asarray(rows, np.float32) - np.asarray(norm.shift, np.float32)) / np.asarray(norm.scale, np.float32)
    y = np.asarray([scorer.manifest.labels.index(label) for label in labels])

    def elbo(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, log_var = scorer._run("encoder", rows, y)
        outputs = scorer._run("decoder", mean, y)
        return row_scores(scorer.manifest, rows, mean, log_var, outputs, None, scorer.prior, y)

    whole, _ = elbo(x)
    expected = np.empty((len(x), x.shape[1]))
    for j in range(x.shape[1]):
        copy = x.copy()
        copy[:, j] = 0.0
        score, terms = elbo(copy)
        expected[:, j] = whole - (score - terms[:, j])
    scored = scorer.score(x, y)
    assert scored.surprise == pytest.approx(expected, abs=1e-6)
    assert scored.score == pytest.approx(whole + expected.max(axis=1), abs=1e-6)


def test_scores_take_the_kl_to_the_prior_their_calibration_was_fitted_with(tmp_path) -> None:
    """The KL is to the model's latent mixture (per label); a calibration stored before scores used it
    (no `kl_to`) holds for the KL to N(0, I), and such a model is scored that way; one stored before
    scores added surprises (no `surprise`) is scored by its negative ELBO alone."""
    import json
    import shutil

    import numpy as np

    from core.offline import AnomalyScorer
    from core.scoring import KL_TO_PRIOR, kl_to_prior, row_scores

    rows, labels = real_rows("cancer-qvae", 6)
    scorer = AnomalyScorer(DEFAULT_MODELS_DIR / "cancer-qvae" / "1")
    assert scorer.prior is not None and scorer.manifest.evaluation.anomaly["kl_to"] == KL_TO_PRIOR
    norm = scorer.manifest.normalization
    x = (np.asarray(rows, np.float32) - np.asarray(norm.shift, np.float32)) / np.asarray(norm.scale, np.float32)
    y = np.asarray([scorer.manifest.labels.index(label) for label in labels])
    mean, log_var = scorer._run("encoder", x, y)
    mixture_kl, standard_kl = kl_to_prior(mean, log_var, scorer.prior, y), kl_to_prior(mean, log_var, None, None)
    assert not np.allclose(mixture_kl, standard_kl)

    def calibrated_without(*keys: str) -> AnomalyScorer:
        copy = tmp_path / "-".join(keys) / "cancer-qvae" / "1"
        shutil.copytree(DEFAULT_MODELS_DIR / "cancer-qvae" / "1", copy)
        manifest = json.loads((copy / "model.json").read_text())
        for key in keys:
            del manifest["evaluation"]["anomaly"][key]
        (copy / "model.json").write_text(json.dumps(manifest))
        return AnomalyScorer(copy)

    now, before = calibrated_without("surprise"), calibrated_without("surprise", "kl_to")
    assert not now.surprise and now.prior is not None and before.prior is None
    elbo = now.score(x, y)
    plain, _ = row_scores(scorer.manifest, x, mean, log_var, scorer._run("decoder", mean, y), None, scorer.prior, y)
    assert elbo.surprise is None and elbo.score == pytest.approx(plain, abs=1e-9)  # no surprise added
    assert before.score(x, y).score - elbo.score == pytest.approx(standard_kl - mixture_kl, abs=1e-6)


def test_calibration_marks_rates_too_fine_for_its_rows(client) -> None:
    import numpy as np

    from core.scoring import calibrate

    few = calibrate(np.arange(53.0))
    assert few["coarse_rates"] == ["0.005", "0.01"]
    # beyond the largest score (52, which 1 in 54 new normal rows exceed), on a Pareto tail of the excess over
    # the median (26): the 9th largest exceeds it by 18, and Hill's index is the top 8's mean log-ratio to that
    index = np.mean(np.log(np.arange(19.0, 27.0) / 18))
    assert few["thresholds"]["0.01"] == pytest.approx(26 + 18 * (8 / 0.53) ** index)
    assert few["thresholds"]["0.005"] == pytest.approx(26 + 18 * (8 / 0.265) ** index)
    assert few["thresholds"]["0.01"] > 52
    assert few["thresholds"]["0.02"] == 51 and few["thresholds"]["0.05"] == 50  # resolved: empirical quantiles
    far = np.r_[np.linspace(0, 10, 50), 20.0, 40.0, 80.0]  # the tail's estimate at 1% lies below the largest
    assert calibrate(far)["thresholds"]["0.01"] == 80.0  # which 1 in 54 normal rows exceed: never below it
    near = calibrate(np.r_[np.full(44, 10.0), 10.000000000000002, np.linspace(20, 100, 8)])  # an excess of 2e-15
    assert all(np.isfinite(t) and t < 200 for t in near["thresholds"].values())  # not 1e29: no tail from it
    thresholds = [near["thresholds"][r] for r in ("0.05", "0.02", "0.01", "0.005")]
    assert thresholds == sorted(thresholds)
    ties = calibrate(np.r_[np.zeros(50), 1.0, 2.0, 3.0])  # the 9th largest is the median: no Pareto tail
    assert ties["thresholds"]["0.01"] == pytest.approx(3 + 0.75 * np.log(100 / 54))  # the exponential one
    many = calibrate(np.arange(1000.0))
    assert many["coarse_rates"] == [] and many["thresholds"]["0.005"] == 995
    detail = client.get("/models/cancer-qvae").json()
    assert detail["anomaly"]["thresholds"].keys() == {"0.005", "0.01", "0.02", "0.05"}
