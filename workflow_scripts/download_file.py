"""Download one file (checkpoint or dataset archive), verified and recorded in the manifest."""

from workflow_job import start

start(snakemake, torch_threads=False)

from interpsharp.download import download_file

record = download_file(
    snakemake.params.url,
    snakemake.output[0],
    expected_sha256=snakemake.params.sha256,
    manifest=snakemake.params.manifest,
)
print(f"{record.path}: sha256 {record.sha256}, {record.size} bytes, downloaded={record.downloaded}")
