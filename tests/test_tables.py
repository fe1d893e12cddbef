"""Tidy TSV tables: round trip, atomic replacement, column checks naming the file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from interpsharp.tables import TableError, read_tsv, write_tsv


def test_round_trip_keeps_values_and_types(tmp_path: Path):
    df = pd.DataFrame({"model": ["a", "b"], "alpha": [0.0, 0.1 + 0.2], "n": [3, 4], "value": [1 / 3, float("nan")]})
    path = write_tsv(df, tmp_path / "sub" / "t.tsv")
    back = read_tsv(path, required=["model", "alpha"])
    pd.testing.assert_frame_equal(back, df)
    assert path.read_text().splitlines()[0] == "model\talpha\tn\tvalue"


def test_write_replaces_whole_file_and_leaves_no_temporaries(tmp_path: Path):
    path = tmp_path / "t.tsv"
    write_tsv(pd.DataFrame({"x": range(100)}), path)
    write_tsv(pd.DataFrame({"y": [1]}), path)
    assert read_tsv(path).to_dict("list") == {"y": [1]}
    assert [p.name for p in tmp_path.iterdir()] == ["t.tsv"]


def test_failed_write_keeps_the_old_table(tmp_path: Path):
    path = tmp_path / "t.tsv"
    write_tsv(pd.DataFrame({"x": [1]}), path)

    class Exploding(pd.DataFrame):
        def to_csv(self, *args, **kwargs):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_tsv(Exploding({"x": [2]}), path)
    assert read_tsv(path).to_dict("list") == {"x": [1]}
    assert [p.name for p in tmp_path.iterdir()] == ["t.tsv"]


def test_missing_columns_and_files_are_named(tmp_path: Path):
    path = write_tsv(pd.DataFrame({"model": ["a"], "value": [1.0]}), tmp_path / "t.tsv")
    with pytest.raises(TableError, match=r"t\.tsv: missing required column\(s\) alpha, metric \(has: model, value\)"):
        read_tsv(path, required=["model", "alpha", "metric"])
    with pytest.raises(TableError, match="absent.tsv: no such table file"):
        read_tsv(tmp_path / "absent.tsv")
