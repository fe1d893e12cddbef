"""Write results/<world>/provenance.json and its HTML summary for the report."""

import os
from pathlib import Path

from workflow_job import REPOSITORY, start

start(snakemake, torch_threads=False)

from interpsharp.provenance import build_record, render_html, write_json  # noqa: E402

record = build_record(
    REPOSITORY,
    dict(snakemake.config),
    results=Path(snakemake.output.json).parent,  # results/<world>
    config_files=snakemake.params.config_files,
    schema=REPOSITORY / "workflow_schemas" / "config.schema.yaml",
    command=os.environ.get("INTERPSHARP_SNAKEMAKE_COMMAND"),
    checkpoints=snakemake.input.checkpoints,
    caches=snakemake.input.caches,
)
write_json(record, snakemake.output.json)
Path(snakemake.output.html).write_text(render_html(record))
current = sum(table["current"] for table in record["tables"].values())
print(f"stamp {record['stamp'][:12]}: {current} of {len(record['tables'])} tables made under it")
