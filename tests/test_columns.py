"""core/table.py: a table's encoding, parsing and decoding of rows; core/prior.py: the latent mixture."""

from __future__ import annotations

import numpy as np
import pytest

from core.manifest import Column, LatentPrior
from core.prior import Mixture
from core.table import RowError, Table, category_key

LEVELS = np.array([0.05, 0.25, 0.5, 0.75, 0.95])


def quantile_column(name: str, values: np.ndarray, **extra) -> Column:
    p = np.linspace(0, 1, 64)
    from statistics import NormalDist

    scores = [NormalDist().inv_cdf(float(v)) for v in np.clip(p, 0.5 / len(values), 1 - 0.5 / len(values))]
    return Column(
        name=name,
        min=float(values.min()),
        max=float(values.max()),
        encoding="quantile",
        knots=np.quantile(values, p).tolist(),
        scores=scores,
        **{"kind": "continuous", **extra},
    )


def test_quantile_encoding_round_trips_inside_the_range_and_keeps_ties_exact() -> None:
    rng = np.random.default_rng(0)
    refunds = np.where(rng.random(2000) < 0.6, 0.0, rng.poisson(3, 2000)).astype(float)  # zero-inflated
    table = Table([quantile_column("refunds", refunds, kind="integer")])
    z = table.to_scale(refunds[:, None])
    assert np.allclose(table.from_scale(z)[:, 0], refunds)  # values at knots come back exactly
    zero_score = z[refunds == 0, 0][0]
    assert -1.0 < zero_score < 0.0  # 0 sits in the middle of its run of ties (~30th percentile), not at an end
    assert set(table.from_scale(np.array([[-9.0], [9.0]]))[:, 0]) == {refunds.min(), refunds.max()}
    continuous = Table([quantile_column("refunds", refunds)])
    between = np.array([[0.02], [0.5], [1.5]])  # just above the run of zeros, and between knots
    assert np.allclose(continuous.from_scale(continuous.to_scale(between)), between)
    outside = table.to_scale(np.array([[refunds.max()], [refunds.max() + 5], [refunds.max() + 50], [-3.0]]))[:, 0]
    assert outside[0] < outside[1] < outside[2] and outside[3] < table.to_scale(np.array([[0.0]]))[0, 0]
    decoded = table.from_scale(rng.normal(size=(5000, 1)))[:, 0]
    assert (decoded == np.round(decoded)).all() and abs((decoded == 0).mean() - 0.6) < 0.05


def test_a_lone_extreme_training_value_does_not_flatten_the_encoding_beyond_the_range() -> None:
    """diamonds' `table`: values near 53-70 and one at 95. Beyond the range the map continues at least
    as steeply as a normal with the column's IQR (1.349 normal scores per IQR), so a value 5 IQR past
    the maximum is an outlier on the model's scale too, not barely past the maximum's score."""
    rng = np.random.default_rng(1)
    values = np.append(rng.normal(57.5, 2.2, 3499).clip(53, 70), 95.0)
    table = Table([quantile_column("table", values)])
    iqr = np.subtract(*np.percentile(values, [75, 25]))
    at_max, beyond = table.to_scale(np.array([[95.0], [95.0 + 5 * iqr]]))[:, 0]
    assert beyond - at_max >= 5 * 1.349 - 0.05
    below_min = table.to_scale(np.array([[values.min() - 5 * iqr]]))[0, 0]
    assert table.to_scale(np.array([[values.min()]]))[0, 0] - below_min >= 5 * 1.349 - 0.05
    inside = np.array([[55.0], [60.0], [70.0]])  # inside the range nothing changes: values round-trip
    assert np.allclose(table.from_scale(table.to_scale(inside)), inside)


def test_outputs_stop_short_of_a_lone_extreme_training_value() -> None:
    """Bottom- and top-coding: decoded values stay within the training split's second lowest and second
    highest value, so one row's own extreme (diamonds' depth 44 where the rest start at 53) is never given
    out; an extreme that several rows share (a zero-inflated column's 0) still is."""
    import pandas as pd

    from training.tables import fit_encodings

    rng = np.random.default_rng(2)
    depth = np.concatenate([rng.normal(61.8, 1.4, 3498).clip(53, 70), [44.0, 79.0]])
    refunds = np.where(rng.random(3500) < 0.6, 0.0, rng.poisson(3, 3500)).astype(float)
    frame = pd.DataFrame({"depth": depth, "refunds": refunds})
    placeholder = {"encoding": "standard", "shift": 0.0, "scale": 1.0}
    columns = [
        Column(name=c, kind="continuous", min=float(frame[c].min()), max=float(frame[c].max()), **placeholder)
        for c in frame
    ]
    fitted = fit_encodings(columns, frame, "quantile")
    assert fitted[0].output_bounds == (np.sort(depth)[1], np.sort(depth)[-2])
    assert fitted[1].output_bounds == (0.0, np.sort(refunds)[-2])
    decoded = Table(fitted).from_scale(rng.normal(0, 3, size=(20_000, 2)))
    assert decoded[:, 0].min() == np.sort(depth)[1] > 44 and decoded[:, 0].max() == np.sort(depth)[-2] < 79
    assert decoded[:, 1].min() == 0.0
    assert columns[0].output_bounds == (44.0, 79.0)  # a manifest without floor and ceiling: min and max
    few = pd.DataFrame({"depth": [1.5, 2.5, 3.5], "refunds": [0.0, 0.0, 5.0]})  # too few values to cut
    refit = fit_encodings(fitted, few, "standard")  # refitted: the bounds fitted before are dropped
    assert [(c.floor, c.ceiling) for c in refit] == [(None, None)] * 2
    assert [c.output_bounds for c in refit] == [c.output_bounds for c in columns]
    with pytest.raises(ValueError, match="floor and ceiling"):
        Column(name="x", kind="continuous", min=0.0, max=1.0, floor=2.0, **placeholder)


def test_encode_layout_and_parse_rows() -> None:
    amount = quantile_column("amount", np.exp(np.random.default_rng(1).normal(size=500)), missing_rate=0.1)
    region = Column(name="region", kind="categorical", categories=["east", "north"], missing_rate=0.2)
    vip = Column(name="vip", kind="boolean", categories=[False, True])
    year = Column(name="year", kind="categorical", categories=[2007, 2008])
    const = Column(name="source", kind="constant", value="web")
    table = Table([amount, region, vip, year, const])
    assert table.encoded_names() == [
        "amount",
        "region=east",
        "region=north",
        "vip=false",
        "vip=true",
        "year=2007",
        "year=2008",
        "amount:missing",
        "region:missing",
    ]
    numeric, codes = table.parse_rows(
        [[1.0, "north", True, 2008, "web"], {"amount": None, "region": None, "vip": False, "year": "2007"}]
    )
    x = table.encode(numeric, codes)
    assert x[0, 1:].tolist() == [0, 1, 0, 1, 0, 1, 0, 0]
    assert x[1].tolist() == [0, 0, 0, 1, 0, 1, 0, 1, 1]
    with pytest.raises(RowError, match=r"column 'vip': unknown category 'maybe'; valid: \[False, True\]"):
        table.parse_rows([[1.0, "north", "maybe", 2008, "web"]])
    with pytest.raises(RowError, match="column 'source' holds 'app'; the column was always 'web' in training"):
        table.parse_rows([[1.0, "north", True, 2008, "app"]])
    with pytest.raises(RowError, match="column 'vip' is null, but the model saw no missing values"):
        table.parse_rows([[1.0, "north", None, 2008, "web"]])
    with pytest.raises(RowError, match="column 'amount' holds 100000000000"):
        table.parse_rows([[10**400, "north", True, 2008, "web"]])


def test_choose_draws_categories_and_gaps_with_their_probabilities() -> None:
    region = Column(name="region", kind="categorical", categories=["a", "b", "c"], missing_rate=0.3)
    x = Column(name="x", kind="continuous", min=0, max=1, encoding="standard", shift=0, scale=1)
    table = Table([x, region])
    probs = np.tile([0.2, 0.5, 0.3, 0.25], (20000, 1))  # categories a, b, c, then P(missing)
    codes, missing = table.choose(probs, 20000, np.random.default_rng(0))
    assert np.allclose(np.bincount(codes[:, 0]) / 20000, [0.2, 0.5, 0.3], atol=0.015)
    assert abs(missing.mean() - 0.25) < 0.015
    codes, missing = table.choose(probs[:3], 3, None)
    assert codes[:, 0].tolist() == [1, 1, 1] and not missing.any()
    values = table.values(np.array([[0.5]] * 3), codes, np.array([[True], [False], [False]]))
    assert values == [[0.5, 0.5, 0.5], [None, "b", "b"]]


def test_generated_rows_keep_only_gap_patterns_enough_training_rows_share() -> None:
    """A combination of gaps fewer than 3 training rows had (penguins: all four measurements and sex missing,
    2 rows) is one or two rows' own trait: generated rows move to the nearest pattern that enough rows share."""
    import pandas as pd

    from training.tables import common_gap_patterns

    columns = [
        Column(name=n, kind="continuous", min=0, max=1, encoding="standard", shift=0, scale=1, missing_rate=0.1)
        for n in ("a", "b", "c")
    ] + [Column(name="d", kind="continuous", min=0, max=1, encoding="standard", shift=0, scale=1)]
    nan = float("nan")
    rows = [[1, 1, 1, 1]] * 10 + [[nan, 1, 1, 1]] * 4 + [[nan, nan, 1, 1]] * 3 + [[nan, nan, nan, 1]] * 2
    frame = pd.DataFrame(rows, columns=["a", "b", "c", "d"])
    patterns, rare = common_gap_patterns(columns, frame)
    assert patterns == [[], ["a"], ["a", "b"]] and rare == 2  # most common first; the 2 rows' pattern left out
    assert common_gap_patterns(columns, frame.iloc[:10]) == ([[]], 0)
    assert common_gap_patterns(columns[3:], frame[["d"]]) == (None, 0)  # no column with gaps: nothing to keep
    pairs = frame.iloc[[0, 1, 10, 11, 14, 15, 17, 18]]  # two rows of each pattern: none common enough
    assert common_gap_patterns(columns, pairs) == ([[]], 6)  # generated rows have no gaps at all
    table = Table(columns, patterns)
    drawn = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1], [0, 1, 0], [0, 0, 1], [1, 0, 1]], dtype=bool)
    kept = table.common_gaps(drawn)
    # held patterns stay; (a, b, c) -> (a, b); b alone -> none (as near as (a, b), and more common);
    # c alone -> none; (a, c) -> a
    assert kept.astype(int).tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0], [1, 0, 0]]
    assert np.array_equal(Table(columns).common_gaps(drawn), drawn)  # a manifest without patterns: any


def test_mixture_prior_draws_from_its_components() -> None:
    prior = LatentPrior(weights=[0.25, 0.75], means=[[-5.0], [5.0]], cholesky=[[[1.0]], [[0.5]]])
    z = Mixture.of(prior).draw(40000, np.random.default_rng(0))[:, 0]
    assert abs((z < 0).mean() - 0.25) < 0.01
    assert abs(z[z > 0].std() - 0.5) < 0.02 and abs(z[z < 0].mean() + 5) < 0.03


def test_mixture_density_and_kl_from_a_posterior() -> None:
    """One component: exact Gaussian facts (density, KL in closed form); two far-apart components: the KL
    to the one the posterior sits on, plus -log of its weight; and the KL of a code far from every
    component grows past the KL to N(0, I) when the mixture is tighter than N(0, I)."""
    from statistics import NormalDist

    from core.scoring import kl_to_prior

    rng = np.random.default_rng(3)
    mean, log_var = rng.normal(size=(6, 2)).astype(np.float32), rng.normal(-1, 0.3, size=(6, 2)).astype(np.float32)
    standard = Mixture.of(LatentPrior(weights=[1.0], means=[[0.0, 0.0]], cholesky=[[[1.0, 0.0], [0.0, 1.0]]]))
    assert np.allclose(standard.kl_from(mean, log_var), kl_to_prior(mean, log_var, None, None))
    density = [NormalDist().pdf(float(a)) * NormalDist().pdf(float(b)) for a, b in mean]
    assert np.allclose(standard.log_density(mean), np.log(density))
    m, s = np.array([1.0, -2.0]), np.array([0.5, 2.0])  # N(m, diag s^2): KL between diagonal Gaussians
    shifted = Mixture.of(LatentPrior(weights=[1.0], means=[m.tolist()], cholesky=[np.diag(s).tolist()]))
    var = np.exp(log_var.astype(np.float64))
    exact = 0.5 * (var / s**2 + (mean - m) ** 2 / s**2 - 1 + np.log(s**2) - np.log(var)).sum(axis=1)
    assert np.allclose(shifted.kl_from(mean, log_var), exact)
    eye = [[1.0, 0.0], [0.0, 1.0]]
    two = Mixture.of(LatentPrior(weights=[0.2, 0.8], means=[[-50.0, 0.0], [50.0, 0.0]], cholesky=[eye, eye]))
    near = np.array([[-50.0, 0.0]], np.float32)
    assert np.allclose(two.kl_from(near, np.zeros_like(near)), -np.log(0.2))
    tight = Mixture.of(LatentPrior(weights=[1.0], means=[[0.0, 0.0]], cholesky=[[[0.3, 0.0], [0.0, 0.3]]]))
    far = np.array([[4.0, 0.0]], np.float32)
    assert tight.kl_from(far, np.full_like(far, -3)) > kl_to_prior(far, np.full_like(far, -3), None, None) + 50
    # a full covariance: scipy's density, and the KL between Gaussians in closed form
    from scipy.stats import multivariate_normal

    a = rng.normal(size=(3, 3))
    factor = np.linalg.cholesky(a @ a.T + 0.3 * np.eye(3))
    centre = rng.normal(size=3)
    full = Mixture.of(LatentPrior(weights=[1.0], means=[centre.tolist()], cholesky=[factor.tolist()]))
    cov = full.cholesky[0].astype(np.float64) @ full.cholesky[0].astype(np.float64).T
    centre = full.means[0].astype(np.float64)
    z = rng.normal(size=(5, 3)).astype(np.float32)
    assert np.allclose(full.log_density(z), multivariate_normal(centre, cov).logpdf(z))
    mu3, lv3 = rng.normal(size=(5, 3)), rng.normal(-1, 0.3, size=(5, 3))
    inverse, v = np.linalg.inv(cov), np.exp(lv3)
    quad = np.einsum("ni,ij,nj->n", mu3 - centre, inverse, mu3 - centre)
    closed = 0.5 * (v @ np.diag(inverse) + quad - 3 + np.linalg.slogdet(cov)[1] - lv3.sum(axis=1))
    assert np.allclose(full.kl_from(mu3, lv3), closed)
    with pytest.raises(ValueError, match="lower-triangular"):
        LatentPrior(weights=[1.0], means=[[0.0, 0.0]], cholesky=[[[1.0, 0.5], [0.0, 1.0]]])
    with pytest.raises(ValueError, match="positive diagonal"):
        LatentPrior(weights=[1.0], means=[[0.0, 0.0]], cholesky=[[[1.0, 0.0], [0.3, 0.0]]])
    with pytest.raises(ValueError, match="need their labels"):
        kl_to_prior(mean, log_var, [standard, shifted], None)
    labels = np.array([0, 1, 0, 1, 1, 0])
    per_label = kl_to_prior(mean, log_var, [standard, shifted], labels)
    assert np.allclose(per_label, np.where(labels == 0, standard.kl_from(mean, log_var), exact))


def test_category_keys_match_across_json_and_csv_spellings() -> None:
    assert category_key(2007) == category_key(2007.0) == category_key("2007") == "2007"
    assert category_key(True) == category_key("true") == "true"
