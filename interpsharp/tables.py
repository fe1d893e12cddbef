"""Tidy TSV tables: the one format every result of the pipeline is written in.

SPEC: one row per measurement with explicit columns. Writing goes through a temporary file
and ``os.replace`` so a crash never leaves a truncated table that a later step would read as
complete; reading checks the columns a caller relies on, so a stale or foreign file fails with
its name and what is missing instead of a ``KeyError`` deep in a plot.

Provenance travels beside a table, never inside it: once a process has called
:func:`set_provenance` (the workflow's jobs do, interpsharp.provenance says what with), every
table it writes gets a sidecar ``<table>.provenance.json``, so the TSV stays a plain table for
every reader.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

#: What write_tsv puts beside each table it writes (None: nothing), set by set_provenance.
_provenance: dict[str, Any] | None = None
SIDECAR_SUFFIX = ".provenance.json"


class TableError(ValueError):
    """A table file that is missing or lacks required columns; the message names the file."""


def set_provenance(provenance: Mapping[str, Any] | None) -> None:
    """From now on, write ``provenance`` (JSON-serialisable) beside every table this process
    writes, as ``<table>.provenance.json``; None stops it."""
    global _provenance
    _provenance = None if provenance is None else dict(provenance)


def _default_mode() -> int:
    """What open() would give a new file (0o666 less the umask); mkstemp's own 0o600 would hide
    results from everyone else on a shared cluster."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _write_atomically(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            write(fh)
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_tsv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` as a tab-separated table (no index) atomically, and its provenance sidecar
    when :func:`set_provenance` set one; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, lambda fh: df.to_csv(fh, sep="\t", index=False))
    if _provenance is not None:
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
        _write_atomically(sidecar, lambda fh: json.dump(_provenance, fh, indent=1, sort_keys=True, default=str))
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
