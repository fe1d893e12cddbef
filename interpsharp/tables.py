"""Tidy TSV tables: the one format every result of the pipeline is written in.

SPEC: one row per measurement with explicit columns. Writing goes through a temporary file
and ``os.replace`` so a crash never leaves a truncated table that a later step would read as
complete; reading checks the columns a caller relies on, so a stale or foreign file fails with
its name and what is missing instead of a ``KeyError`` deep in a plot.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

import pandas as pd


class TableError(ValueError):
    """A table file that is missing or lacks required columns; the message names the file."""


def write_tsv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` as a tab-separated table (no index) atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            df.to_csv(fh, sep="\t", index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_tsv(path: str | os.PathLike, required: Iterable[str] = ()) -> pd.DataFrame:
    """Read a tidy TSV, checking that every column in ``required`` is present."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: no such table file")
    try:
        df = pd.read_csv(path, sep="\t")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise TableError(f"{path}: not a readable tab-separated table: {err}") from err
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise TableError(
            f"{path}: missing required column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns))}); "
            f"was it written by an older version? Regenerate it."
        )
    return df
