"""Re-verify a downloaded archive, then unpack it (atomically) into the rule's folder."""

from pathlib import Path

from workflow_job import start

start(snakemake, torch_threads=False)

from interpsharp.download import unpack_archive, verify_file

verify_file(snakemake.input.archive, snakemake.params.manifest, expected_sha256=snakemake.params.sha256)
root = unpack_archive(snakemake.input.archive, snakemake.output[0])
if root.name != snakemake.params.unpacked_root:
    raise ValueError(
        f"{snakemake.input.archive} unpacked to {root.name!r}, but the config expects "
        f"unpacked_root {snakemake.params.unpacked_root!r}; fix datasets.sources.{snakemake.wildcards.dataset}.unpacked_root"
    )
print(f"unpacked into {root}")
