"""The demo content checks (interpsharp.demo.content) on hand-built tables: each item passes
when its phenomenon is there beyond the noise bar and fails when it is absent or within it."""

from __future__ import annotations

import math

import docutils.core
import docutils.nodes
import numpy as np
import pandas as pd
import pytest

from interpsharp.demo.content import ABSENT, Z_MIN, content_checks, content_rst, difference_se

MAIN = "clutter"
N = 1000


def _heldout(outcomes: dict[str, str]) -> pd.DataFrame:
    rows = []
    for model, outcome in outcomes.items():
        gain = 0.0 if outcome == "failure_mode" else 0.03
        ci = (math.nan, math.nan) if outcome == "failure_mode" else ((0.01, 0.05) if outcome in ("gain", "high_gain") else (-0.01, 0.04))
        rows.append({"model": model, "dataset": MAIN, "path": "original", "alpha_star_selection": 0.0 if gain == 0 else 0.4,
                     "heldout_outcome": outcome, "heldout_gain": gain, "heldout_gain_vs_best_endpoint": gain,
                     "ci_low": ci[0], "ci_high": ci[1]})
    return pd.DataFrame(rows)


def _path(model: str, values: dict[float, float], **extra) -> list[dict]:
    return [{"model": model, "dataset": MAIN, "split": "all", "alpha": a, "metric": "accuracy", "value": v, "n": N, **extra}
            for a, v in values.items()]


def _path_metrics(outcomes: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "dataset": MAIN, "outcome": o, "gain": 0.0 if o == "failure_mode" else 0.03,
                          "barrier_depth": 0.0} for m, o in outcomes.items()])


def _tables(outcomes, straggler_criteria, pruned_shift, n_pruned, layer_shift, layer_model="m0") -> dict[str, pd.DataFrame]:
    base = {0.0: 0.30, 0.5: 0.33, 1.0: 0.31}
    evaluation = pd.DataFrame(_path("m0", base) + _path("m1", base))
    pruned = {a: v + (pruned_shift if a > 0 else 0.0) for a, v in base.items()}
    pruning = pd.DataFrame(_path("m0", pruned, mask_seed=0, n_pruned_layers=n_pruned)
                           + _path("m1", base, mask_seed=0, n_pruned_layers=0))
    # a split row that must be ignored: a huge "effect" on the selection part only
    pruning = pd.concat([pruning, pd.DataFrame(_path("m0", {1.0: 0.9}, mask_seed=0, n_pruned_layers=n_pruned))
                         .assign(split="selection")], ignore_index=True)
    layerwise = pd.DataFrame([{**r, "layer": layer} for layer, shift in (("a", layer_shift), ("b", 0.0))
                              for r in _path(layer_model, {0.0: 0.30, 0.5: 0.30 + shift, 1.0: 0.30 + shift})])
    stragglers = pd.DataFrame([{"model": "m0", "criterion": c, "layer": "a", "straggler": c in straggler_criteria}
                               for c in ("sharpness", "interpolation")])
    return {"heldout_gains": _heldout(outcomes), "stragglers": stragglers, "evaluation": evaluation,
            "pruning": pruning, "layerwise_interpolation": layerwise, "path_metrics": _path_metrics(outcomes)}


def test_every_item_passes_when_the_world_shows_it():
    tables = _tables({"m0": "failure_mode", "m1": "high_gain"}, {"sharpness", "interpolation"}, 0.10, 2, 0.10)
    checks = content_checks(tables, MAIN).set_index("item")
    assert checks["passed"].all(), checks
    assert "m1 +3.0 pts over the better endpoint [+1.0, +5.0]" in checks.loc["held-out gain whose interval excludes 0", "detail"]


@pytest.mark.parametrize("outcomes, item", [
    ({"m0": "gain", "m1": "high_gain"}, "failure mode on the main OOD set"),
    ({"m0": "failure_mode", "m1": "not_significant"}, "held-out gain whose interval excludes 0"),
])
def test_outcome_items_fail_without_their_models(outcomes, item):
    checks = content_checks(_tables(outcomes, {"sharpness", "interpolation"}, 0.10, 2, 0.10), MAIN).set_index("item")
    assert not checks.loc[item, "passed"] and checks["passed"].sum() == len(checks) - 1


def test_a_criterion_without_stragglers_fails_only_its_item():
    checks = content_checks(_tables({"m0": "failure_mode", "m1": "gain"}, {"sharpness"}, 0.10, 2, 0.10), MAIN).set_index("item")
    assert checks.loc["straggler layers by sharpness", "passed"]
    assert not checks.loc["straggler layers by interpolation", "passed"]


def test_pruning_must_prune_and_move_the_path_beyond_the_noise_bar():
    outcomes, both = {"m0": "failure_mode", "m1": "gain"}, {"sharpness", "interpolation"}
    se = float(difference_se(0.33, N))
    assert se == pytest.approx(math.sqrt(2 * 0.33 * 0.67 / N))
    small = content_checks(_tables(outcomes, both, 0.5 * Z_MIN * se, 2, 0.10), MAIN).set_index("item")
    large = content_checks(_tables(outcomes, both, 1.5 * Z_MIN * se, 2, 0.10), MAIN).set_index("item")
    nothing = content_checks(_tables(outcomes, both, 0.10, 0, 0.10), MAIN).set_index("item")
    item = "pruning that changes the path"
    assert not small.loc[item, "passed"] and large.loc[item, "passed"]
    assert not nothing.loc[item, "passed"] and "no model had a straggler" in nothing.loc[item, "detail"]


def test_figure2_needs_a_cell_beyond_the_noise_bar():
    outcomes, both = {"m0": "failure_mode", "m1": "gain"}, {"sharpness", "interpolation"}
    se = float(difference_se(0.30, N))
    flat = content_checks(_tables(outcomes, both, 0.10, 2, 0.5 * Z_MIN * se), MAIN).set_index("item")
    clear = content_checks(_tables(outcomes, both, 0.10, 2, 1.2 * Z_MIN * se), MAIN).set_index("item")
    assert not flat.loc["Figure 2 effect above noise", "passed"]
    assert clear.loc["Figure 2 effect above noise", "passed"]
    assert "2 of 4 cells" in clear.loc["Figure 2 effect above noise", "detail"]


def test_difference_se_stays_positive_at_the_extremes():
    se = difference_se(np.array([0.0, 1.0, 0.5]), np.array([100, 100, 100]))
    assert (se > 0).all() and se[2] == pytest.approx(math.sqrt(0.5 / 100))


def test_figure2_counts_only_the_models_the_figure_draws():
    """A large single-layer effect in m2, a plain gain the figure does not draw (m0 is its
    failure mode, m1 its largest gain), shows nothing; once m2 has the most stragglers by
    interpolation the figure draws it and the effect counts."""
    outcomes = {"m0": "failure_mode", "m1": "high_gain", "m2": "gain"}
    item = "Figure 2 effect above noise"
    hidden = content_checks(_tables(outcomes, {"sharpness"}, 0.10, 2, 0.20, layer_model="m2"), MAIN).set_index("item")
    assert not hidden.loc[item, "passed"] and "drawn models (m0, m1)" in hidden.loc[item, "detail"]
    tables = _tables(outcomes, {"sharpness"}, 0.10, 2, 0.20, layer_model="m2")
    tables["stragglers"] = pd.concat([tables["stragglers"], pd.DataFrame(
        [{"model": "m2", "criterion": "interpolation", "layer": layer, "straggler": True} for layer in ("a", "b")])])
    shown = content_checks(tables, MAIN).set_index("item")
    assert shown.loc[item, "passed"] and "drawn m0, m1, m2" in shown.loc[item, "detail"]


def _rst_body(rst: str) -> str:
    """The block without its Jinja ``raw`` wrapper, parsed by docutils: halt_level 2 turns every
    warning (a broken bullet, a stray reference) into an error."""
    body = rst.removeprefix("{% raw %}\n").removesuffix("\n{% endraw %}")
    assert "{%" not in body
    tree = docutils.core.publish_doctree(body, settings_overrides={"halt_level": 2})
    # No section title: it would come before the landing page's own and take their rank.
    assert not list(tree.findall(docutils.nodes.section)) and not list(tree.findall(docutils.nodes.title))
    return body


def test_the_front_page_block_says_what_is_shown_and_what_an_absence_means():
    outcomes, both = {"m0": "failure_mode", "m1": "high_gain"}, {"sharpness", "interpolation"}
    se = float(difference_se(0.33, N))
    checks = content_checks(_tables(outcomes, both, 0.5 * Z_MIN * se, 2, 0.10), MAIN)
    body = _rst_body(content_rst(checks, MAIN))
    assert f"5 of 6 phenomena the pipeline measures appear in this run, on {MAIN}" in body
    bullets = [line for line in body.splitlines() if line.startswith("* ")]
    assert len(bullets) == 6
    missing = [b for b in bullets if b.startswith("* **Not shown:")]
    assert len(missing) == 1 and "pruning that changes the path" in missing[0]
    assert ABSENT["pruning that changes the path"][1:] in missing[0]  # what the flat Figure 5 means
    assert "m0 seed 0 alpha" in missing[0]  # and the numbers behind the answer
    assert "* **Shown: held-out gain whose interval excludes 0.** 1 of 2: m1 +3.0 pts" in body


def test_every_item_has_a_meaning_when_absent():
    nothing = _tables({"m0": "not_significant", "m1": "not_significant"}, set(), 0.0, 0, 0.0)
    checks = content_checks(nothing, MAIN)
    assert not checks["passed"].any()
    body = _rst_body(content_rst(checks, MAIN))
    assert "0 of 6 phenomena" in body
    for item in checks["item"]:
        meaning = ABSENT[item]
        assert f"* **Not shown: {item}.** {meaning[0].upper()}{meaning[1:]}." in body
