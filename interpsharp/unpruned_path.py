"""Algorithm 1 for a model without straggler layers: the pruned path is the WiSE-FT path itself.

With no straggler there is nothing to zero, so every mask seed's "pruned" theta_1 is theta_1,
and its path is the one ``evaluate_interpolation`` has already scored with the same alphas,
batches and precision (``evaluation.batch_size`` and ``evaluation.precision`` serve both rules).
Reading those scores back gives the pruning job's table and per-image scores bit for bit
(pandas parses the floats ``write_tsv`` printed back to the same doubles; tested to the byte
against scoring the path again), without importing torch or evaluating a whole path:
in the demo world most models have no straggler, and each such job took about 20 s.
Numpy and pandas only.
"""

from __future__ import annotations

import os
from typing import Sequence

import pandas as pd

from interpsharp.scores import PATH_COLUMNS, ScoredPath
from interpsharp.tables import read_tsv


def unpruned_path(table_files: Sequence[str | os.PathLike], score_files: Sequence[str | os.PathLike],
                  datasets: Sequence[str]) -> tuple[pd.DataFrame, ScoredPath]:
    """The path's rows on ``datasets`` (alpha, then dataset in the order given, as
    :func:`~interpsharp.evaluate.path_table` orders a pruned path's) from the evaluation's
    per-alpha tables, and the main OOD set's per-image scores from its per-alpha score files."""
    tables = [read_tsv(f, required=PATH_COLUMNS) for f in table_files]
    rows = pd.concat(tables, ignore_index=True)[list(PATH_COLUMNS)]
    missing = sorted(set(datasets) - set(rows["dataset"]))
    if missing:
        raise ValueError(f"the evaluation tables ({table_files[0]} ...) have no rows for {missing}; "
                         "pruning.datasets must be evaluation sets")
    rank = {name: i for i, name in enumerate(datasets)}
    rows = rows[rows["dataset"].isin(rank)]
    # A stable sort keeps each dataset's split and metric order within an alpha.
    rows = rows.sort_values(["alpha", "dataset"], key=lambda c: c.map(rank) if c.name == "dataset" else c,
                            kind="stable")
    return rows.reset_index(drop=True), ScoredPath.stack([ScoredPath.load(f) for f in score_files])
