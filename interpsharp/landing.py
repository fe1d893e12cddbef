"""The report's landing page: the main OOD set's outcome table and one sentence per claim of the
paper, so a reader sees the result without opening five tables.

Returns reStructuredText (what Snakemake's report renders as its front page). The text is
wrapped in a Jinja ``raw`` block because Snakemake passes the page through Jinja.
"""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from interpsharp.claims import CANNOT_DECIDE, DOES_NOT_SUPPORT, SUPPORTS

_VERDICT_TEXT = {SUPPORTS: "Supports", DOES_NOT_SUPPORT: "Does not support", CANNOT_DECIDE: "Cannot decide"}


def _points(value: object, signed: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * float(value):+.1f}" if signed else f"{100 * float(value):.1f}"


def _alpha(value: object) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):g}"


def _count(value: object) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else str(int(value))


def outcome_table(summary: pd.DataFrame) -> str:
    """RST list-table: one row per model, in-sample and held-out results side by side."""
    header = ["model", "in-sample outcome", "in-sample gain (pts) at alpha*", "alpha* (selection)",
              "held-out gain (pts)", "interval vs best endpoint (pts)", "held-out outcome",
              "stragglers: sharpness / interpolation", "pruned: layers, held-out gain (pts)"]
    lines = [".. list-table::", "   :header-rows: 1", ""]
    lines.append("   * - " + "\n     - ".join(header))
    for _, row in summary.iterrows():
        interval = ("n/a" if pd.isna(row.get("heldout_ci_low")) else
                    f"[{_points(row['heldout_ci_low'])}, {_points(row['heldout_ci_high'])}]")
        pruned = ("nothing pruned" if not row.get("n_pruned_layers") else
                  f"{_count(row['n_pruned_layers'])}, {_points(row.get('pruned_heldout_gain_mean'))}")
        cells = [
            str(row["model"]), str(row["outcome"]).replace("_", " "),
            f"{_points(row['gain'])} at {_alpha(row['alpha_star'])}", _alpha(row["alpha_star_selection"]),
            _points(row["heldout_gain"]), interval, str(row["heldout_outcome"]).replace("_", " "),
            f"{_count(row.get('stragglers_n_by_sharpness'))} / {_count(row.get('stragglers_n_by_interpolation'))}",
            pruned,
        ]
        lines.append("   * - " + "\n     - ".join(cells))
    return "\n".join(lines)


def landing_page(
    workflow_text: str,
    summary: pd.DataFrame,
    claims: pd.DataFrame,
    main_ood: str,
    blocks_first: Sequence[str] = (),
) -> str:
    """The whole landing page: ``blocks_first`` (e.g. a failed reproduction check), the results
    on ``main_ood``, one sentence per claim, what the numbers do not support, then
    ``workflow_text`` (the workflow description, Jinja left to Snakemake)."""
    n = len(summary)
    parts = [
        f"Results on {main_ood}",
        "=" * len(f"Results on {main_ood}"),
        "",
        f"{n} fine-tuned models. In-sample: alpha* chosen and scored on all images (the paper's way). "
        f"Held out: alpha* chosen on the selection part, gain scored on the held-out part, with a paired "
        f"bootstrap interval of A(alpha*) - max(A(0), A(1)) over held-out images; the held-out outcome is a gain "
        f"only when that interval excludes 0. Gains are in accuracy points.",
        "",
        outcome_table(summary),
        "",
        "What this run says about the paper's claims",
        "-------------------------------------------",
        "",
    ]
    for _, row in claims.iterrows():
        parts.append(f"* **{row['claim']}: {_VERDICT_TEXT.get(row['verdict'], row['verdict'])}.** {row['text']} "
                     f"*Evidence:* {row['evidence']}.")
    parts += [
        "",
        "What these numbers do not support: intervals cover the sampling of test images only, not the choice of "
        "fine-tunes, seeds or evaluation set; correlations over this few models are wide, and 'cannot decide' is "
        "the honest reading of most of them. Measures taken at alpha* are left out (NaN, with the reason) for "
        "failure modes, where alpha* = 0 would make them the zero-shot model's value by construction. Every "
        "threshold is a config value, fixed before the run (see the tables' captions).",
        "",
    ]
    results = "\n".join(parts)
    first = "\n\n".join(b for b in blocks_first if b)
    return (first + "\n\n" if first else "") + "{% raw %}\n" + results + "\n{% endraw %}\n\n" + workflow_text
