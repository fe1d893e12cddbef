"""Checks against published numbers: do the endpoints of our paths reproduce what was published?

Every path rests on its two endpoints. If theta_0 or theta_1 evaluates points away from its
published accuracy (a GELU model reading QuickGELU weights, other prompt templates, bf16,
a truncated evaluation set), the gains, alpha* and sharpness of the run are measured on other
models than the paper's, and no later table would show it. So the paper world compares:

- alpha = 0, the zero-shot classifier, with open_clip's zero-shot table, row
  ``<model_name>/<pretrained>`` (measured with CLIP_benchmark's prompts: a looser tolerance);
- alpha = 1, the fine-tuned ``model_{i}``, with model-soups' published results for
  ``model_{i}`` (same checkpoint, same head: a tight tolerance).

Both tables ship in ``interpsharp/resources/published/`` (sources in its SOURCE.md). Our
evaluation-set names map onto their columns through :data:`PUBLISHED_SETS`, explicitly: a set
that is not there (every demo-world set) gets a ``no_reference`` row saying so, as does a
model without a published row; a configured set with no accuracy in the evaluation table
gets a ``missing`` row. Nothing is skipped silently, so the table also documents what was
*not* checked.
"""

from __future__ import annotations

import csv
import importlib.resources
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

#: Row statuses of the check.
WITHIN = "within_tolerance"
OUT = "out_of_tolerance"
NO_REFERENCE = "no_reference"
MISSING = "missing"

ZEROSHOT = "zeroshot"
FINETUNED = "finetuned"

#: Columns of :func:`reproduction_check`'s table, in order. Accuracies in percent, differences
#: and tolerances in percentage points (ours - published).
COLUMNS = (
    "endpoint", "model", "alpha", "dataset", "reference", "reference_column", "published_pct", "ours_pct",
    "difference_points", "tolerance_points", "within_tolerance", "status", "n", "n_published", "precision",
    "source", "reason",
)

MODEL_SOUPS_SOURCE = "model-soups individual_model_results.jsonl (mlfoundations/model-soups)"
OPEN_CLIP_SOURCE = (
    "open_clip docs/openclip_results.csv @89fb801 (mlfoundations/open_clip; CLIP_benchmark prompts)"
)

# |difference| and tolerance both pass through percent conversion; this forgives the round-off
# (0.6432 - 0.6332 is 1.0000000000000009 points), far below one image of any set.
_ROUND_OFF_POINTS = 1e-9
_ALPHA_ATOL = 1e-9


@dataclass(frozen=True)
class PublishedSet:
    """How one of our evaluation sets appears in the published tables.

    ``images`` is the size of the full set the numbers were measured on: every model-soups
    accuracy times it is a whole number of images, so an evaluation on fewer images (a
    ``datasets.limit``, an incomplete download) is recognisable as partial.
    """

    model_soups_column: str
    open_clip_column: str
    images: int


#: Our evaluation-set names (``datasets.id`` / ``datasets.ood``) -> the published columns.
PUBLISHED_SETS: dict[str, PublishedSet] = {
    "imagenet": PublishedSet("ImageNet", "ImageNet 1k", 50_000),
    "imagenetv2": PublishedSet("ImageNetV2", "ImageNet v2", 10_000),
    "imagenet-sketch": PublishedSet("ImageNetSketch", "ImageNet Sketch", 50_889),
    "imagenet-r": PublishedSet("ImageNetR", "ImageNet-R", 30_000),
    "imagenet-a": PublishedSet("ImageNetA", "ImageNet-A", 7_500),
    # The 113 ObjectNet classes that overlap ImageNet (WiSE-FT's and model-soups' protocol).
    "objectnet": PublishedSet("ObjectNet", "ObjectNet", 18_574),
}


class PublishedTableError(ValueError):
    """A published-results file that cannot be read; the message names the file."""


@dataclass(frozen=True)
class PublishedResults:
    """Top-1 accuracies (fractions) of one published source: ``entry -> column -> value``.

    ``entry`` is a model-soups model name (``model_2``) or an open_clip tag
    (``ViT-B-32-quickgelu/openai``); columns are the source's own names.
    """

    source: str
    accuracies: Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class Published:
    """What the check compares with: zero-shot (alpha = 0) and fine-tuned (alpha = 1) results."""

    zeroshot: PublishedResults
    finetuned: PublishedResults


@dataclass(frozen=True)
class Tolerances:
    """Largest |ours - published| in percentage points that still counts as reproduced."""

    zeroshot_points: float
    finetuned_points: float

    def __post_init__(self) -> None:
        for name in ("zeroshot_points", "finetuned_points"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"Tolerances: {name} must be a finite number >= 0, got {value!r}")


def _resource_text(name: str) -> tuple[str, str]:
    resource = importlib.resources.files("interpsharp.resources").joinpath("published").joinpath(name)
    return resource.read_text(encoding="utf-8"), f"interpsharp/resources/published/{name}"


def _read(path: str | os.PathLike | None, default_name: str) -> tuple[str, str]:
    if path is None:
        return _resource_text(default_name)
    path = Path(path)
    if not path.is_file():
        raise PublishedTableError(f"{path}: no such published-results file")
    return path.read_text(encoding="utf-8"), str(path)


def _accuracy(value: object, where: str) -> float:
    """A published accuracy as a fraction; empty cells are NaN (nothing published there)."""
    if value is None or value == "":
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PublishedTableError(f"{where}: {value!r} is not a number") from None
    if not (math.isnan(number) or 0.0 <= number <= 1.0):
        raise PublishedTableError(f"{where}: accuracy {number} is not a fraction in [0, 1]")
    return number


def _keyed_accuracies(entries: Iterable[tuple[int, str, Mapping[str, object]]], name: str) -> dict[str, dict[str, float]]:
    """Accuracies per entry from (line number, key, {set: value}) rows of table ``name``: a key
    seen twice or a table without rows is an error naming the file (and line)."""
    accuracies: dict[str, dict[str, float]] = {}
    for number, key, record in entries:
        if key in accuracies:
            raise PublishedTableError(f"{name}:{number}: {key!r} appears twice")
        accuracies[key] = {column: _accuracy(v, f"{name}:{number} {column}") for column, v in record.items()}
    if not accuracies:
        raise PublishedTableError(f"{name}: no results")
    return accuracies


def model_soups_results(path: str | os.PathLike | None = None) -> PublishedResults:
    """model-soups' results, one JSON object per line with ``model_name`` and one accuracy
    per set (the shipped file unless ``path`` is given)."""
    text, name = _read(path, "model_soups_individual_results.jsonl")

    def entries() -> Iterator[tuple[int, str, dict[str, object]]]:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                model = record.pop("model_name")
            except (json.JSONDecodeError, KeyError, AttributeError, TypeError):
                raise PublishedTableError(f"{name}:{number}: expected a JSON object with 'model_name'") from None
            yield number, model, record

    return PublishedResults(MODEL_SOUPS_SOURCE, _keyed_accuracies(entries(), name))


def open_clip_zeroshot_results(path: str | os.PathLike | None = None) -> PublishedResults:
    """open_clip's zero-shot table (``name``, ``pretrained``, one column per set), keyed
    ``name/pretrained`` (the shipped file unless ``path`` is given)."""
    text, name = _read(path, "open_clip_zeroshot_imagenet.csv")
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"name", "pretrained"} <= set(reader.fieldnames):
        raise PublishedTableError(f"{name}: expected columns 'name' and 'pretrained', got {reader.fieldnames}")
    entries = ((number, f"{row.pop('name')}/{row.pop('pretrained')}", row) for number, row in enumerate(reader, start=2))
    return PublishedResults(OPEN_CLIP_SOURCE, _keyed_accuracies(entries, name))


def shipped_published() -> Published:
    """The published results that ship with interpsharp (the paper world's references)."""
    return Published(zeroshot=open_clip_zeroshot_results(), finetuned=model_soups_results())


def zeroshot_entry(model_name: str, pretrained: str) -> str:
    """The open_clip table's key of a zero-shot model (``zeroshot.model_name`` / ``.pretrained``)."""
    return f"{model_name}/{pretrained}"


@dataclass(frozen=True)
class _Ours:
    accuracy: float  # NaN when the table has no row
    n: float
    note: str = ""


def _ours(accuracy: pd.DataFrame, dataset: str, alpha: float, model: str | None) -> _Ours:
    """Our accuracy on ``dataset`` at ``alpha``: of ``model``'s path, or (``model=None``, the
    zero-shot endpoint) the mean over every path, which all start at the same theta_0."""
    rows = accuracy[(accuracy["dataset"] == dataset) & np.isclose(accuracy["alpha"], alpha, atol=_ALPHA_ATOL)]
    if model is not None:
        rows = rows[rows["model"] == model]
        if len(rows) > 1:
            raise ValueError(f"evaluation table: {len(rows)} accuracy rows for {model} on {dataset} at alpha {alpha:g}")
    if rows.empty:
        return _Ours(math.nan, math.nan)
    values = rows["value"].to_numpy(dtype=float)
    n = float(rows["n"].max())
    note = ""
    spread = values.max() - values.min()
    if spread * n > 0.5:  # differ by at least one image
        note = (f"alpha = 0 accuracy differs between the paths by {100 * spread:.2f} points "
                f"(theta_0 should be one model; mean shown)")
    return _Ours(float(values.mean()), n, note)


def _check_evaluation(evaluation: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("model", "dataset", "alpha", "metric", "value", "n") if c not in evaluation.columns]
    if missing:
        raise ValueError(f"evaluation table lacks column(s) {', '.join(missing)}")
    accuracy = evaluation[evaluation["metric"] == "accuracy"]
    if "split" in accuracy.columns:  # published numbers are about whole sets
        accuracy = accuracy[accuracy["split"] == "all"]
    accuracy = accuracy.copy()
    accuracy["alpha"] = accuracy["alpha"].astype(float)
    return accuracy


def reproduction_check(
    evaluation: pd.DataFrame,
    datasets: Sequence[str],
    models: Sequence[str],
    zeroshot: str,
    tolerances: Tolerances,
    published: Published | None,
    precision: str = "",
) -> pd.DataFrame:
    """Compare alpha = 0 and alpha = 1 of the evaluation table with the published numbers.

    ``evaluation`` is the tidy path table (``model, dataset, alpha, metric, value, n``);
    ``datasets`` the configured evaluation sets (a set missing from the table is reported,
    not skipped); ``models`` the fine-tuned models, whose published rows carry the same name
    (``model_{i}``); ``zeroshot`` the open_clip key of theta_0 (:func:`zeroshot_entry`);
    ``published`` None when nothing is published for this world's models (the demo world);
    ``precision`` is recorded with every row (it is one of the likely causes of a mismatch).

    Returns one row per (endpoint, model, dataset), columns :data:`COLUMNS`.
    """
    accuracy = _check_evaluation(evaluation)
    endpoints = [(ZEROSHOT, ZEROSHOT, 0.0, zeroshot, tolerances.zeroshot_points)]
    endpoints += [(FINETUNED, model, 1.0, model, tolerances.finetuned_points) for model in models]
    rows = []
    for endpoint, model, alpha, entry, tolerance in endpoints:
        results = None if published is None else getattr(published, endpoint)
        for dataset in datasets:
            ours = _ours(accuracy, dataset, alpha, None if endpoint == ZEROSHOT else model)
            rows.append(_row(endpoint, model, alpha, dataset, entry, tolerance, ours, results, precision))
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    # Accuracies are k / n images: six decimals of a percentage lose nothing and spare the
    # reader 29.549999999999997; image counts stay integers with an empty cell for "none".
    for column in ("published_pct", "ours_pct", "difference_points"):
        table[column] = table[column].astype(float).round(6)
    for column in ("n", "n_published"):
        table[column] = table[column].astype(float).astype("Int64")
    return table


def _no_entry_reason(results: PublishedResults, entry: str, endpoint: str) -> str:
    if endpoint == ZEROSHOT:
        name = entry.split("/")[0]
        tags = sorted(e.split("/", 1)[1] for e in results.accuracies if e.split("/")[0] == name)
        known = f"; its tags for {name}: {', '.join(tags)}" if tags else f"; it has no row for {name} at all"
        return f"open_clip's zero-shot table has no row {entry}{known}"
    return f"model-soups published no results for {entry} (its models are {', '.join(_first_last(results))})"


def _first_last(results: PublishedResults) -> list[str]:
    names = list(results.accuracies)
    return names if len(names) <= 2 else [names[0], "..", names[-1]]


def _reference(
    endpoint: str, dataset: str, entry: str, results: PublishedResults | None
) -> tuple[float, str, str, str]:
    """``(published fraction or NaN, reference entry, column, reason when NaN)``."""
    if results is None:
        return math.nan, "", "", "nothing is published for this world's models and sets (the demo world builds its own)"
    spec = PUBLISHED_SETS.get(dataset)
    if spec is None:
        return math.nan, "", "", f"no published number for evaluation set {dataset!r} (published: {', '.join(PUBLISHED_SETS)})"
    if entry not in results.accuracies:
        return math.nan, "", "", _no_entry_reason(results, entry, endpoint)
    column = spec.open_clip_column if endpoint == ZEROSHOT else spec.model_soups_column
    value = results.accuracies[entry].get(column, math.nan)
    reason = f"the published table has no {column!r} value for {entry}" if math.isnan(value) else ""
    return value, entry, column, reason


def _row(
    endpoint: str,
    model: str,
    alpha: float,
    dataset: str,
    entry: str,
    tolerance: float,
    ours: _Ours,
    results: PublishedResults | None,
    precision: str,
) -> dict:
    value, reference, column, reference_reason = _reference(endpoint, dataset, entry, results)
    spec = PUBLISHED_SETS.get(dataset)
    row = dict(
        endpoint=endpoint, model=model, alpha=alpha, dataset=dataset, reference=reference,
        reference_column=column, published_pct=100 * value, ours_pct=100 * ours.accuracy,
        difference_points=math.nan, tolerance_points=tolerance, within_tolerance=None, n=ours.n,
        n_published=math.nan if spec is None else spec.images, precision=precision,
        source=results.source if reference else "",
    )
    if math.isnan(ours.accuracy):
        reasons = [f"no accuracy at alpha = {alpha:g} on {dataset} in the evaluation table", reference_reason]
        return {**row, "status": MISSING, "reason": "; ".join(r for r in reasons if r)}
    if math.isnan(value):
        return {**row, "status": NO_REFERENCE, "reason": "; ".join(r for r in (reference_reason, ours.note) if r)}
    difference = 100 * (ours.accuracy - value)
    within = bool(abs(difference) <= tolerance + _ROUND_OFF_POINTS)
    notes = [ours.note] if ours.note else []
    if ours.n < spec.images:
        notes.append(f"partial set: {ours.n:.0f} of {spec.images} images evaluated, the published number is on all")
    return {**row, "difference_points": difference, "within_tolerance": within,
            "status": WITHIN if within else OUT, "reason": "; ".join(notes)}


# -- the report's summary ----------------------------------------------------------------


def _flagged(check: pd.DataFrame) -> pd.DataFrame:
    """Rows a reader must see: out of tolerance, or published but not evaluated."""
    published = pd.to_numeric(check["published_pct"], errors="coerce").notna()
    return check[(check["status"] == OUT) | ((check["status"] == MISSING) & published)]


def _cell(value: object, digits: int = 2, sign: bool = False) -> str:
    number = pd.to_numeric(value, errors="coerce")
    if pd.isna(number):
        return "--"
    return f"{number:+.{digits}f}" if sign else f"{number:.{digits}f}"


def _text(value: object) -> str:
    return "" if pd.isna(value) else str(value)


def likely_causes(check: pd.DataFrame) -> list[tuple[str, str, str]]:
    """``(cause, what to check, evidence in this table or '')`` for a failed check, causes
    with evidence first. The evidence is a pattern, not a proof: it says where to look."""
    flagged = _flagged(check)
    compared = check[check["status"].isin([WITHIN, OUT])]
    off = flagged[flagged["status"] == OUT]
    evidence: dict[str, str] = {}

    n = pd.to_numeric(off["n"], errors="coerce")
    full = pd.to_numeric(off["n_published"], errors="coerce")
    partial = off[n < full]
    if not partial.empty:
        sets = partial.drop_duplicates("dataset")
        evidence["partial"] = "; ".join(
            f"{r.dataset}: {_cell(r.n, 0)} of {_cell(r.n_published, 0)} images" for r in sets.itertuples()
        )
    zeroshot_off = off["endpoint"].eq(ZEROSHOT).any()
    finetuned_compared = compared["endpoint"].eq(FINETUNED).any()
    finetuned_off = off["endpoint"].eq(FINETUNED).any()
    if zeroshot_off and finetuned_compared and not finetuned_off:
        evidence["templates"] = "only alpha = 0 is off; the fine-tunes, which carry their own heads, reproduce"
    difference = pd.to_numeric(off["difference_points"], errors="coerce")
    if zeroshot_off and finetuned_off and (difference < 0).all():
        evidence["quickgelu"] = "both endpoints are below the published numbers"
    precisions = sorted({str(p) for p in off["precision"].dropna() if str(p) not in ("", "fp32")})
    if precisions:
        evidence["precision"] = f"evaluated in {', '.join(precisions)}"
    for dataset, rows in compared.groupby("dataset", sort=False):
        if (rows["status"] == OUT).all() and len(rows) > 1 and (compared["status"] == WITHIN).any():
            evidence.setdefault("cache", "")
            evidence["cache"] += ("; " if evidence["cache"] else "") + f"every endpoint is off on {dataset} only"
    missing = flagged[flagged["status"] == MISSING]["dataset"].unique()
    if len(missing):
        evidence["missing"] = f"published but not in the evaluation table: {', '.join(missing)}"

    causes = [
        ("templates", "Prompt templates or class names of the zero-shot head",
         "open_clip's numbers use CLIP_benchmark's prompts, ours the 80 OpenAI templates: about a point "
         "apart. A larger gap at alpha = 0 alone means other templates or class names than intended."),
        ("precision", "Precision",
         "bf16 weights move top-1 by tenths of a point (SPEC allows them only once shown within 0.1 "
         "points of fp32 on the same data); compare with a run at evaluation.precision: fp32."),
        ("quickgelu", "A QuickGELU mismatch",
         "OpenAI CLIP and the model-soups fine-tunes were trained with QuickGELU; a model built with "
         "GELU (an open_clip name without -quickgelu, a model config without quick_gelu) loses points "
         "at alpha = 0 and alpha = 1 alike."),
        ("partial", "A partial dataset",
         "Published numbers are on the full sets; check datasets.limit and that the set's folder or "
         "download is complete (n against n_published in the table)."),
        ("cache", "One evaluation set's cache",
         "Its layout, its 200-class subset (ImageNet-A/R) or its preprocessing."),
        ("missing", "Sets not evaluated", "A configured set with published numbers has no rows."),
    ]
    found = [(title, advice, evidence[key]) for key, title, advice in causes if key in evidence]
    rest = [(title, advice, "") for key, title, advice in causes if key not in evidence and key not in ("cache", "missing")]
    return found + rest


def reproduction_rst(check: pd.DataFrame) -> str:
    """A short RST block for the report's landing page: the published numbers we do not
    reproduce and their likely causes; ``""`` when every published number is within
    tolerance or nothing is published (then there is nothing a reader must see first).

    ``check`` is :func:`reproduction_check`'s table, or the same read back from its TSV.
    """
    flagged = _flagged(check)
    if flagged.empty:
        return ""
    n_published = int(pd.to_numeric(check["published_pct"], errors="coerce").notna().sum())
    tolerances = (
        check.groupby("endpoint")["tolerance_points"].first().reindex([ZEROSHOT, FINETUNED]).map(_cell).tolist()
    )
    n_out = int((flagged["status"] == OUT).sum())
    n_missing = len(flagged) - n_out
    not_evaluated = f", {n_missing} not evaluated" if n_missing else ""
    lines = [
        f"**Reproduction check: {n_out} of {n_published} published numbers out of tolerance{not_evaluated}** "
        f"(tolerance {tolerances[0]} points at alpha = 0 against open_clip, {tolerances[1]} at alpha = 1 "
        f"against model-soups; every row: reproduction_check.tsv).",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - model",
        "     - alpha",
        "     - set",
        "     - published %",
        "     - ours %",
        "     - difference (points)",
        "     - note",
    ]
    for r in flagged.itertuples():
        note = "not evaluated" if r.status == MISSING else _text(r.reason)
        cells = [r.model, _cell(r.alpha, 0), r.dataset, _cell(r.published_pct), _cell(r.ours_pct),
                 _cell(r.difference_points, sign=True), note]
        lines += [f"   {'*' if i == 0 else ' '} - {cell}".rstrip() for i, cell in enumerate(cells)]
    lines += ["", "Likely causes (those this table points to first):", ""]
    for title, advice, evidence in likely_causes(check):
        seen = f" *This run: {evidence}.*" if evidence else ""
        lines.append(f"- **{title}.** {advice}{seen}")
    return "\n".join(lines) + "\n"
