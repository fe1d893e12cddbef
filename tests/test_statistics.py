"""Rank correlations against closed forms (perfect orderings), brute-force pair counting and
scipy run resample by resample."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from interpsharp.statistics import kendall_tau_b, rank_correlations, spearman_rho


def brute_kendall_tau_b(x, y) -> float:
    """Count concordant, discordant and tied pairs one by one."""
    concordant = discordant = tied_x = tied_y = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = x[i] - x[j], y[i] - y[j]
        tied_x += dx == 0
        tied_y += dy == 0
        if dx * dy > 0:
            concordant += 1
        elif dx * dy < 0:
            discordant += 1
    pairs = len(x) * (len(x) - 1) / 2
    if pairs == tied_x or pairs == tied_y:
        return float("nan")
    return (concordant - discordant) / np.sqrt((pairs - tied_x) * (pairs - tied_y))


def table(x, y) -> pd.DataFrame:
    return pd.DataFrame({"model": [f"m{i}" for i in range(len(x))], "sharpness": x, "gain": y})


def by_method(out: pd.DataFrame) -> dict[str, pd.Series]:
    return {row["method"]: row for _, row in out.iterrows()}


@pytest.mark.parametrize("sign", [1, -1])
def test_perfect_orderings_give_plus_minus_one_with_degenerate_interval(sign):
    x = np.arange(9.0)
    out = by_method(rank_correlations(table(x, sign * (2 * x + 1)), ["sharpness"], "gain", n_boot=300, seed=1))
    for method in ("kendall_tau", "spearman_rho"):
        row = out[method]
        assert row["statistic"] == pytest.approx(sign)
        assert row["ci_low"] == pytest.approx(sign) and row["ci_high"] == pytest.approx(sign)
        assert row["p_value"] < 0.01
        assert row["n"] == 9 and row["seed"] == 1 and row["reason"] == ""
        assert 0 < row["n_boot_valid"] <= 300


def test_kendall_matches_brute_force_pair_counting():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=12), rng.normal(size=12)
    out = by_method(rank_correlations(table(x, y), ["sharpness"], "gain", n_boot=50))
    assert out["kendall_tau"]["statistic"] == pytest.approx(brute_kendall_tau_b(x, y))


def test_vectorised_resample_statistics_match_brute_force_and_scipy_with_ties():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=(40, 9)).astype(float)  # many ties, some constant rows
    y = rng.integers(0, 4, size=(40, 9)).astype(float)
    x[0] = 2.0
    taus, rhos = kendall_tau_b(x, y), spearman_rho(x, y)
    for i in range(len(x)):
        assert taus[i] == pytest.approx(brute_kendall_tau_b(x[i], y[i]), nan_ok=True)
        expected_rho = np.nan if x[i].min() == x[i].max() or y[i].min() == y[i].max() else stats.spearmanr(x[i], y[i]).statistic
        assert rhos[i] == pytest.approx(expected_rho, nan_ok=True)
    assert np.isnan(taus[0]) and np.isnan(rhos[0])


def test_interval_is_the_percentile_interval_of_per_resample_scipy():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=9), rng.normal(size=9)
    seed, n_boot = 11, 200
    out = by_method(rank_correlations(table(x, y), ["sharpness"], "gain", n_boot=n_boot, seed=seed, confidence=0.9))
    # The documented resampling scheme, replayed with scipy one resample at a time.
    idx = np.random.default_rng(seed).integers(0, 9, size=(n_boot, 9))
    taus = []
    for rows in idx:
        xs, ys = x[rows], y[rows]
        if xs.min() < xs.max() and ys.min() < ys.max():
            taus.append(stats.kendalltau(xs, ys).statistic)
    low, high = np.quantile(taus, [0.05, 0.95])
    assert out["kendall_tau"]["ci_low"] == pytest.approx(low)
    assert out["kendall_tau"]["ci_high"] == pytest.approx(high)
    assert out["kendall_tau"]["n_boot_valid"] == len(taus)
    assert out["kendall_tau"]["p_value"] == pytest.approx(stats.kendalltau(x, y).pvalue)


def test_seed_controls_the_interval():
    rng = np.random.default_rng(3)
    data = table(rng.normal(size=9), rng.normal(size=9))
    first = rank_correlations(data, ["sharpness"], "gain", n_boot=200, seed=5)
    again = rank_correlations(data, ["sharpness"], "gain", n_boot=200, seed=5)
    other = rank_correlations(data, ["sharpness"], "gain", n_boot=200, seed=6)
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first[["ci_low", "ci_high"]], other[["ci_low", "ci_high"]])
    assert (first["statistic"] == other["statistic"]).all()


def test_degenerate_inputs_give_nan_and_a_reason():
    x = np.arange(6.0)
    data = table(x, x**2).assign(flat=1.0, few=[1.0, 2.0] + [np.nan] * 4)
    out = rank_correlations(data, ["flat", "few", "sharpness"], "gain", n_boot=50).set_index(["x", "method"])
    assert out.loc[("flat", "kendall_tau"), "reason"] == "x is constant across models"
    assert np.isnan(out.loc[("flat", "spearman_rho"), "statistic"])
    assert "fewer than 3 models" in out.loc[("few", "kendall_tau"), "reason"]
    assert out.loc[("few", "kendall_tau"), "n"] == 2 and out.loc[("few", "kendall_tau"), "n_missing"] == 4
    assert out.loc[("sharpness", "spearman_rho"), "statistic"] == pytest.approx(1.0)
    constant_y = rank_correlations(table(x, np.zeros(6)), ["sharpness"], "gain", n_boot=50)
    assert (constant_y["reason"] == "y is constant across models").all()


def test_groups_are_separate_rows():
    x = np.arange(5.0)
    data = pd.concat([table(x, x).assign(dataset="a"), table(x, -x).assign(dataset="b")])
    out = rank_correlations(data, ["sharpness"], "gain", n_boot=50, by=["dataset"])
    kendall = out[out["method"] == "kendall_tau"].set_index("dataset")["statistic"]
    assert kendall["a"] == pytest.approx(1) and kendall["b"] == pytest.approx(-1)


def test_bad_arguments_are_named():
    data = table(np.arange(5.0), np.arange(5.0))
    with pytest.raises(KeyError, match="sharpnes"):
        rank_correlations(data, ["sharpnes"], "gain")
    with pytest.raises(ValueError, match="confidence"):
        rank_correlations(data, ["sharpness"], "gain", confidence=95)
