"""Does a finished demo run have something to show in every figure? (issue 13)

The demo exists to show a newcomer what each stage measures. A run in which no model has a
straggler, nothing is pruned, or every gain is within noise leaves figures empty or identical
to each other. These checks read the run's own tables (nothing is recomputed, so they judge
exactly what the report shows) and say, per item, whether it is there and the numbers behind
the answer. They are run for several demo seeds, which stand in for other machines:
``benchmarks/demo_content.py``.

Noise bars. A difference between two accuracies on the same ``n`` images is compared with
``sqrt(2 p (1 - p) / n)``, the standard error of the difference of two *independent*
accuracies around ``p``. Paired differences (the same images under two models that agree on
most of them) have a smaller standard error, so this bar is conservative: an effect that clears
it clears the paired one too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from interpsharp.metrics import FAILURE_MODE, GAIN, HIGH_GAIN
from interpsharp.plots import figure2_models

#: |effect| / SE a Figure 2 cell or a pruned path must reach to count as more than noise. A
#: heat map has (layers x alphas) cells, ~150 in the demo: the largest of that many pure-noise
#: z-scores is about 3, so 4 keeps a noise-only map from passing.
Z_MIN = 4.0


#: The run's tables the checks read (``results/<world>/tables/<name>.tsv``).
TABLES = ("heldout_gains", "stragglers", "evaluation", "pruning", "layerwise_interpolation", "path_metrics")


@dataclass(frozen=True)
class ContentCheck:
    item: str
    passed: bool
    detail: str


def difference_se(p: float | np.ndarray, n: int | np.ndarray) -> np.ndarray:
    """Standard error of a difference of two independent accuracies around ``p`` on ``n`` images."""
    p = np.clip(np.asarray(p, dtype=float), 1.0 / np.maximum(n, 1), 1 - 1.0 / np.maximum(n, 1))
    return np.sqrt(2 * p * (1 - p) / np.asarray(n, dtype=float))


def _models(n: int) -> str:
    return f"{n} model" if n == 1 else f"{n} models"


def _main_rows(table: pd.DataFrame, main_ood: str, metric: str = "accuracy") -> pd.DataFrame:
    rows = table[(table["dataset"] == main_ood) & (table["metric"] == metric)]
    return rows[rows["split"] == "all"]


def _largest_change(rows: pd.DataFrame, base: np.ndarray) -> tuple[np.ndarray, pd.Series, str]:
    """|value - base| / SE per row, the row with the largest, and that change in words."""
    z = np.nan_to_num(np.abs(rows["value"].to_numpy() - base) / difference_se(base, rows["n"].to_numpy()))
    best = int(np.argmax(z))
    return z, rows.iloc[best], f"{100 * (rows['value'].iloc[best] - base[best]):+.1f} pts = {z[best]:.1f} SE"


def check_outcomes(heldout_gains: pd.DataFrame, main_ood: str) -> list[ContentCheck]:
    """At least one failure mode, and at least one gain whose held-out interval excludes 0."""
    original = heldout_gains[(heldout_gains["path"] == "original") & (heldout_gains["dataset"] == main_ood)]
    labels = original.set_index("model")["heldout_outcome"]
    failures = sorted(labels.index[labels == FAILURE_MODE])
    gains = original[original["heldout_outcome"].isin([GAIN, HIGH_GAIN])]
    described = ", ".join(f"{r.model} {100 * r.heldout_gain_vs_best_endpoint:+.1f} pts over the better endpoint "
                          f"[{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}]" for r in gains.itertuples())
    return [
        ContentCheck("failure mode on the main OOD set", bool(failures),
                     f"{len(failures)} of {len(labels)}: {', '.join(failures) or 'none'}"),
        ContentCheck("held-out gain whose interval excludes 0", not gains.empty,
                     f"{len(gains)} of {len(labels)}" + (f": {described}" if described else "")),
    ]


def check_stragglers(stragglers: pd.DataFrame) -> list[ContentCheck]:
    """At least one model with a straggler layer by each criterion."""
    checks = []
    for criterion in ("sharpness", "interpolation"):
        flagged = stragglers[(stragglers["criterion"] == criterion) & stragglers["straggler"].astype(bool)]
        per_model = flagged.groupby("model")["layer"].agg(list)
        detail = "; ".join(f"{m}: {', '.join(layers)}" for m, layers in per_model.items()) or "none"
        checks.append(ContentCheck(f"straggler layers by {criterion}", not per_model.empty,
                                   f"{_models(len(per_model))}: {detail}"))
    return checks


def check_pruning(evaluation: pd.DataFrame, pruning: pd.DataFrame, main_ood: str) -> ContentCheck:
    """At least one pruning that moves the main OOD path by more than ``Z_MIN`` SE at some alpha
    (Figure 5 then draws two different curves)."""
    original = _main_rows(evaluation, main_ood).set_index(["model", "alpha"])["value"]
    pruned = _main_rows(pruning, main_ood)
    pruned = pruned[pruned["n_pruned_layers"] > 0]
    if pruned.empty:
        return ContentCheck("pruning that changes the path", False, "no model had a straggler layer to prune")
    z, row, change = _largest_change(pruned, original.reindex(pd.MultiIndex.from_frame(pruned[["model", "alpha"]])).to_numpy())
    return ContentCheck(
        "pruning that changes the path", bool(z.max() >= Z_MIN),
        f"{_models(pruned['model'].nunique())} pruned; largest change {row['model']} seed {row['mask_seed']} alpha "
        f"{row['alpha']:g}: {change}",
    )


def check_figure2(layerwise: pd.DataFrame, main_ood: str, path_metrics: pd.DataFrame,
                  stragglers: pd.DataFrame) -> ContentCheck:
    """Figure 2's heat maps: some cell (a layer moved to alpha, the rest at theta_0) of a model
    the figure draws (``interpsharp.plots.figure2_models``) differs from theta_0 by more than
    ``Z_MIN`` SE on the main OOD set. An effect in a model the figure leaves out shows nothing."""
    drawn = [model for model, _ in figure2_models(path_metrics, main_ood, stragglers)]
    rows = _main_rows(layerwise, main_ood)
    rows = rows[rows["model"].isin(drawn)]
    base = rows[rows["alpha"] == 0].groupby("model")["value"].first()
    moved = rows[rows["alpha"] > 0]
    if moved.empty:
        return ContentCheck("Figure 2 effect above noise", False,
                            f"no layer-wise path beyond alpha 0 in the drawn models ({', '.join(drawn)})")
    z, row, change = _largest_change(moved, moved["model"].map(base).to_numpy())
    return ContentCheck(
        "Figure 2 effect above noise", bool(z.max() >= Z_MIN),
        f"drawn {', '.join(drawn)}: {int((z >= Z_MIN).sum())} of {len(z)} cells >= {Z_MIN:g} SE; largest {row['model']} {row['layer']} alpha "
        f"{row['alpha']:g}: {change}",
    )


def content_checks(tables: Mapping[str, pd.DataFrame], main_ood: str) -> pd.DataFrame:
    """Every item of issue 13's list, from a run's tables (``heldout_gains``, ``stragglers``,
    ``evaluation``, ``pruning``, ``layerwise_interpolation``, ``path_metrics``): item, passed, detail."""
    checks = [
        *check_outcomes(tables["heldout_gains"], main_ood),
        *check_stragglers(tables["stragglers"]),
        check_pruning(tables["evaluation"], tables["pruning"], main_ood),
        check_figure2(tables["layerwise_interpolation"], main_ood, tables["path_metrics"], tables["stragglers"]),
    ]
    return pd.DataFrame([vars(c) for c in checks])


#: What a run that lacks an item does not show, by item: said on the report's front page, so
#: that an empty or flat figure reads as a finding of this run, not as a broken one.
ABSENT = {
    "failure mode on the main OOD set": "no fine-tune is a failure mode: every path has a point that beats the "
                                        "zero-shot model on the main OOD set (Figure 1)",
    "held-out gain whose interval excludes 0": "no gain of interpolation over the better endpoint is larger than "
                                               "the noise of the held-out images",
    "straggler layers by sharpness": "no layer's sharpness at alpha = 1 is both small and consistent with 0 "
                                     "(Figure 4), so Algorithm 1 finds nothing to prune by this criterion",
    "straggler layers by interpolation": "no layer's own path is unstable beyond the barrier threshold (Def. 1.2)",
    "pruning that changes the path": "Figure 5's pruned paths lie on the original ones: the pruned layers hardly "
                                     "matter at any alpha, as when fine-tuning drove their weights to about 0 "
                                     "(zeroing part of about 0 changes nothing)",
    "Figure 2 effect above noise": "Figure 2's heat maps show evaluation noise only: no single layer moved to "
                                   "theta_1 changes the main OOD accuracy beyond it",
}


def content_rst(checks: pd.DataFrame, main_ood: str) -> str:
    """A block for the report's front page: per item of :func:`content_checks`, whether this run
    shows it, the numbers behind the answer, and what its absence means. Items are reported as
    found; their thresholds (``Z_MIN`` SE, the config's outcome and straggler thresholds) are
    fixed before any run."""
    shown = int(checks["passed"].sum())
    # A bold lead, not a section title: RST ranks titles by first appearance, and this block
    # comes before the landing page's own sections.
    lines = [
        f"**What the figures of this run show.** {shown} of {len(checks)} phenomena the pipeline measures "
        f"appear in this run, on {main_ood}; an effect "
        f"counts when it exceeds {Z_MIN:g} standard errors of the evaluation noise, or, for gains, when its "
        f"held-out interval excludes 0. Absent ones are reported, not hidden.",
        "",
    ]
    for check in checks.itertuples():
        if check.passed:
            lines.append(f"* **Shown: {check.item}.** {check.detail}.")
        else:
            meaning = ABSENT.get(check.item, "this run does not show it")
            lines.append(f"* **Not shown: {check.item}.** {meaning[0].upper()}{meaning[1:]}. ({check.detail}.)")
    return "{% raw %}\n" + "\n".join(lines) + "\n{% endraw %}"


def accuracy_table(tables: Mapping[str, pd.DataFrame], main_ood: str) -> str:
    """One line per model: alpha* (selection part), held-out outcome, held-out gain over theta_0
    and over the better endpoint, with the latter's paired bootstrap interval."""
    heldout = tables["heldout_gains"]
    heldout = heldout[(heldout["path"] == "original") & (heldout["dataset"] == main_ood)]
    lines = []
    for r in heldout.itertuples():
        ci = "" if math.isnan(r.ci_low) else f" [{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}]"
        lines.append(f"{r.model}: alpha* {r.alpha_star_selection:g}, held-out {r.heldout_outcome}, gain "
                     f"{100 * r.heldout_gain:+.1f} pts, over the better endpoint "
                     f"{100 * r.heldout_gain_vs_best_endpoint:+.1f} pts{ci}")
    return "\n".join(lines)
