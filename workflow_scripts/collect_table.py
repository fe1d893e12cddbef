"""Concatenate the per-job tables of one kind into one tidy table (columns must agree)."""

from workflow_job import start

start(snakemake, torch_threads=False)

import pandas as pd

from interpsharp.tables import read_tsv, write_tsv

parts = [read_tsv(path) for path in snakemake.input]
columns = list(parts[0].columns)
for path, part in zip(snakemake.input, parts):
    if list(part.columns) != columns:
        raise ValueError(f"{path}: columns {list(part.columns)} differ from {snakemake.input[0]}'s {columns}; rerun it")
write_tsv(pd.concat(parts, ignore_index=True), snakemake.output[0])
