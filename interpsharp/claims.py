"""The paper's claims, which measure tests each, and what a run's numbers say about them.

Every verdict is one of three words, decided by a rule written here, never by reading the
numbers first:

- **supports**: the predicted association is there and beyond its uncertainty (a rank
  correlation whose bootstrap interval excludes 0 in the predicted direction, a one-sided
  Fisher exact test below 1 - confidence, or a majority of cases with held-out intervals
  excluding 0);
- **does not support**: the data contradict it (the opposite association beyond its
  uncertainty, or a counterexample that is itself beyond noise);
- **cannot decide**: anything else -- too few models, the measure undefined, an association
  within noise. With the paper's nine models most correlations land here, and saying so is
  the point.

Gains are the held-out ones (:mod:`interpsharp.heldout`): alpha* and the outcome chosen on the
selection part, scored on the held-out part. Measures taken at alpha* are NaN for failure modes
(:mod:`interpsharp.summary`), so they are tested among the gaining models only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from interpsharp.heldout import NOT_SIGNIFICANT
from interpsharp.metrics import FAILURE_MODE, GAIN, HIGH_GAIN
from interpsharp.statistics import rank_correlations

SUPPORTS, DOES_NOT_SUPPORT, CANNOT_DECIDE = "supports", "does not support", "cannot decide"

#: Fewest models whose rank-correlation interval can decide a claim: resampling fewer models
#: gives mostly ties and intervals that exclude 0 by accident.
MIN_MODELS_FOR_INTERVAL = 6

#: The paper's claims this pipeline can test, by id.
CLAIMS: dict[str, str] = {
    "C0": "RFT does not always succeed: along the WiSE-FT path some fine-tunes never beat the zero-shot model "
          "on the OOD set (failure mode) while others gain (Sec. 1.1, Fig. 1).",
    "C1": "General (whole-model) adaptive sharpness does not capture the OOD gain of interpolation (Sec. 3, Fig. 3).",
    "C2": "A fine-tuned model with a layer of near-zero layer-wise sharpness is a failure mode (Sec. 3.1, Fig. 4, Conclusion).",
    "C3": "In gaining models, at alpha* there is a layer with near-zero layer-wise sharpness, after which "
          "OOD accuracy declines (Sec. 3.1, Fig. 4).",
    "C4": "Failure-mode fine-tunes have straggler layers, layers whose layer-wise interpolation is unstable "
          "(Def. 1.1, 1.2, Fig. 2).",
    "C5": "Pruning the straggler layers (Algorithm 1) mitigates the failure mode (Sec. 3.1, Fig. 5).",
}


@dataclass(frozen=True)
class Measure:
    """A per-model column of the summary table correlated with the gain.

    ``expected``: the sign of its rank correlation with the gain if the claim holds (+1, -1),
    0 where the claim predicts no association, None for a descriptive measure.
    """

    column: str
    claim: str
    expected: int | None
    meaning: str


#: The measures correlated with the gain, explicitly (never matched on substrings: a count such
#: as ``stragglers_n_by_sharpness`` must not pass for a sharpness; the straggler counts are
#: tested as counts, by :func:`assess_claims`).
MEASURES: tuple[Measure, ...] = (
    Measure("general_sharpness_alpha1", "C1", 0, "general sharpness of the fine-tuned model (alpha = 1)"),
    Measure("general_sharpness_alpha_star", "C1", 0, "general sharpness at alpha* (gaining models only)"),
    Measure("min_abs_layerwise_sharpness_alpha1", "C2", +1, "smallest |layer-wise sharpness| of the fine-tuned model"),
    Measure("min_abs_layerwise_sharpness_alpha_star", "C3", None,
            "smallest |layer-wise sharpness| at alpha* (gaining models only), descriptive"),
    Measure("max_layerwise_instability", "C4", -1, "largest layer-wise instability (Def. 1.1)"),
    Measure("barrier_depth", "C0", None, "barrier depth of the whole path (Eq. 1), descriptive"),
)

#: The gains measures are correlated with: held-out (the verdicts use it) and in-sample (the paper's).
GAINS: tuple[str, ...] = ("heldout_gain", "gain")


def correlation_measures(summary: pd.DataFrame, rho_sweep: Sequence[float] = ()) -> list[Measure]:
    """:data:`MEASURES` present in ``summary``, plus general sharpness at alpha = 1 for each
    radius of the sweep (columns ``general_sharpness_rho<r>_alpha1``)."""
    measures = [m for m in MEASURES if m.column in summary.columns]
    for rho in rho_sweep:
        column = f"general_sharpness_rho{float(rho):g}_alpha1"
        if column in summary.columns:
            measures.append(Measure(column, "C1", 0, f"general sharpness of the fine-tuned model at rho = {float(rho):g}"))
    return measures


def correlations(
    summary: pd.DataFrame,
    measures: Sequence[Measure],
    n_boot: int,
    seed: int,
    confidence: float,
) -> pd.DataFrame:
    """Kendall tau and Spearman rho of each measure against each of :data:`GAINS`, with the
    claim it tests, the expected sign, how many models entered and how many were left out, and
    why (the reason column beside an at-alpha* measure, else "not measured")."""
    parts = []
    for gain in GAINS:
        if gain not in summary.columns:
            continue
        table = rank_correlations(summary, [m.column for m in measures], gain, n_boot=n_boot, seed=seed,
                                  confidence=confidence, by=["dataset"])
        parts.append(table)
    out = pd.concat(parts, ignore_index=True)
    by_column = {m.column: m for m in measures}
    out.insert(out.columns.get_loc("x") + 1, "claim", out["x"].map(lambda c: by_column[c].claim))
    out.insert(out.columns.get_loc("claim") + 1, "expected_sign",
               out["x"].map(lambda c: by_column[c].expected).astype("Int64"))
    out["left_out"] = out["x"].map(lambda c: left_out_reasons(summary, c))
    return out.rename(columns={"n_missing": "n_left_out"})


def left_out_reasons(summary: pd.DataFrame, column: str) -> str:
    """``"3: <reason>; 1: not measured"`` for the models whose ``column`` is NaN."""
    missing = summary[column].isna()
    if not missing.any():
        return ""
    reason_column = f"{column}_reason"
    reasons = (summary.loc[missing, reason_column].fillna("").replace("", "not measured")
               if reason_column in summary.columns else pd.Series("not measured", index=summary.index[missing]))
    return "; ".join(f"{n}: {reason}" for reason, n in reasons.value_counts(sort=False).items())


# -- verdicts --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    claim: str
    verdict: str
    evidence: str


def assess_claims(summary: pd.DataFrame, correlation_table: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """One row per claim of :data:`CLAIMS`: ``claim, text, verdict, evidence``.

    ``summary``: :func:`interpsharp.summary.model_summary`'s table (held-out outcomes, straggler
    counts, flat layers at alpha*, pruned held-out outcomes); ``correlation_table``:
    :func:`correlations`' output.
    """
    alpha = 1 - confidence
    verdicts = [
        _existence(summary),
        _no_association(correlation_table, "general_sharpness_alpha1", "C1"),
        _flag_goes_with_failure(summary, "stragglers_n_by_sharpness", "C2", "a straggler layer by sharpness (alpha = 1)",
                                alpha, counterexample_fails=True),
        _flat_layer_at_alpha_star(summary),
        _flag_goes_with_failure(summary, "stragglers_n_by_interpolation", "C4", "a straggler layer by interpolation",
                                alpha, counterexample_fails=False),
        _pruning_rescues(summary),
    ]
    return pd.DataFrame([{"claim": v.claim, "text": CLAIMS[v.claim], "verdict": v.verdict, "evidence": v.evidence}
                         for v in verdicts])


def _significant_gain(outcome: object) -> bool:
    return outcome in (GAIN, HIGH_GAIN)


def _existence(summary: pd.DataFrame) -> Verdict:
    outcomes = summary["heldout_outcome"].tolist()
    failures = outcomes.count(FAILURE_MODE)
    gains = sum(_significant_gain(o) for o in outcomes)
    unclear = outcomes.count(NOT_SIGNIFICANT)
    counts = (f"on held-out images {failures} of {len(outcomes)} models are failure modes, {gains} gain beyond "
              f"noise (interval excludes 0) and {unclear} gain within noise")
    if failures and gains:
        return Verdict("C0", SUPPORTS, counts)
    return Verdict("C0", CANNOT_DECIDE, counts + "; both kinds are needed to show the contrast")


def _kendall(correlation_table: pd.DataFrame, column: str, gain: str = "heldout_gain") -> pd.Series | None:
    rows = correlation_table[(correlation_table["x"] == column) & (correlation_table["y"] == gain)
                             & (correlation_table["method"] == "kendall_tau")]
    return None if rows.empty else rows.iloc[0]


def _tau_text(row: pd.Series) -> str:
    return (f"Kendall tau = {row['statistic']:+.2f}, {100 * row['confidence']:.0f}% bootstrap interval "
            f"[{row['ci_low']:+.2f}, {row['ci_high']:+.2f}], {int(row['n'])} models")


def _no_association(correlation_table: pd.DataFrame, column: str, claim: str) -> Verdict:
    row = _kendall(correlation_table, column)
    if row is None or not np.isfinite(row["statistic"]) or not np.isfinite(row["ci_low"]):
        reason = "not measured" if row is None else (row.get("reason") or "undefined")
        return Verdict(claim, CANNOT_DECIDE, f"{column} vs held-out gain: {reason}")
    if row["n"] < MIN_MODELS_FOR_INTERVAL:
        return Verdict(claim, CANNOT_DECIDE, f"{_tau_text(row)}: a bootstrap interval over fewer than "
                                             f"{MIN_MODELS_FOR_INTERVAL} models means nothing")
    if row["ci_low"] > 0 or row["ci_high"] < 0:
        return Verdict(claim, DOES_NOT_SUPPORT, f"{column} does track the held-out gain: {_tau_text(row)}")
    return Verdict(claim, CANNOT_DECIDE, f"no rank correlation of {column} with the held-out gain detected "
                                         f"({_tau_text(row)}); consistent with the claim, but an absent correlation "
                                         f"cannot be confirmed with this few models")


def _flag_goes_with_failure(summary_all: pd.DataFrame, count_column: str, claim: str, what: str, alpha: float,
                            counterexample_fails: bool) -> Verdict:
    """2x2: does having ``what`` go with being a failure mode on held-out images? Models whose
    count is NaN (a degenerate criterion, see the ``<count>_reason`` column) are left out."""
    left_out = int(summary_all[count_column].isna().sum())
    summary = summary_all[summary_all[count_column].notna()]
    flagged = summary[count_column].astype(float) > 0
    failure = summary["heldout_outcome"] == FAILURE_MODE
    a, b = int((flagged & failure).sum()), int((flagged & ~failure).sum())
    c, d = int((~flagged & failure).sum()), int((~flagged & ~failure).sum())
    counts = (f"{a} of {a + c} failure-mode models and {b} of {b + d} other models have {what} "
              f"(failure modes on held-out images)")
    if left_out:
        counts += f"; {left_out} models left out ({left_out_reasons(summary_all, count_column)})"
    if a + b == 0:
        undecidable = ""
        if "n_undecidable_by_sharpness" in summary.columns and count_column == "stragglers_n_by_sharpness":
            undecidable = f"; {int(summary['n_undecidable_by_sharpness'].sum())} layers were undecidable at the configured draws"
        return Verdict(claim, CANNOT_DECIDE, f"no model has {what}{undecidable}")
    if counterexample_fails:
        gaining = summary.loc[flagged & summary["heldout_outcome"].map(_significant_gain), "model"].tolist()
        if gaining:
            return Verdict(claim, DOES_NOT_SUPPORT, f"{counts}; {', '.join(gaining)} gain beyond noise despite it")
    greater = stats.fisher_exact([[a, b], [c, d]], alternative="greater").pvalue
    less = stats.fisher_exact([[a, b], [c, d]], alternative="less").pvalue
    if greater < alpha:
        return Verdict(claim, SUPPORTS, f"{counts}; one-sided Fisher exact p = {greater:.3f}")
    if less < alpha:
        return Verdict(claim, DOES_NOT_SUPPORT, f"{counts}: the association runs the other way (Fisher p = {less:.3f})")
    return Verdict(claim, CANNOT_DECIDE, f"{counts}; one-sided Fisher exact p = {greater:.3f}, not below {alpha:g}")


def _flat_layer_at_alpha_star(summary: pd.DataFrame) -> Verdict:
    gaining = summary[summary["heldout_outcome"].map(_significant_gain)]
    if gaining.empty:
        return Verdict("C3", CANNOT_DECIDE, "no model gains beyond noise on held-out images")
    lacking = gaining.loc[gaining["n_flat_layers_alpha_star"].fillna(0) == 0, "model"].tolist()
    if lacking:
        return Verdict("C3", DOES_NOT_SUPPORT, f"{len(lacking)} of {len(gaining)} gaining models have no flat layer "
                                               f"at alpha*: {', '.join(lacking)}")
    base_rate = float(gaining["share_other_points_with_flat_layer"].mean())
    text = (f"all {len(gaining)} gaining models have a flat layer at alpha*; so do {100 * base_rate:.0f}% of their "
            f"other path points (alpha > 0)")
    if math.isfinite(base_rate) and base_rate < 0.5:
        return Verdict("C3", SUPPORTS, text)
    return Verdict("C3", CANNOT_DECIDE, text + ", so a flat layer does not single out alpha*")


def _pruning_rescues(summary: pd.DataFrame) -> Verdict:
    failures = summary[(summary["heldout_outcome"] == FAILURE_MODE) & (summary["n_pruned_layers"].fillna(0) > 0)]
    if failures.empty:
        return Verdict("C5", CANNOT_DECIDE, "no failure-mode model had a straggler layer to prune")
    rescued = []
    for _, row in failures.iterrows():
        outcomes = str(row.get("pruned_heldout_outcomes") or "").split(",")
        if sum(_significant_gain(o) for o in outcomes) > len(outcomes) / 2:
            rescued.append(row["model"])
    text = (f"{len(rescued)} of {len(failures)} failure-mode models with pruned layers gain beyond noise on "
            f"held-out images after pruning (most mask seeds)" + (f": {', '.join(rescued)}" if rescued else ""))
    if len(rescued) > len(failures) / 2:
        return Verdict("C5", SUPPORTS, text)
    if not rescued:
        return Verdict("C5", DOES_NOT_SUPPORT, text)
    return Verdict("C5", CANNOT_DECIDE, text)
