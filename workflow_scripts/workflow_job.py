"""The first lines of every workflow script: send output to the rule's log, size torch's
thread pool to the job's ``threads`` (parallel jobs on shared cores must not oversubscribe),
stamp every table the job writes with its provenance, and the few conversions between the
``snakemake`` object and library calls."""

from __future__ import annotations

import atexit
import os
import sys
import time
from pathlib import Path
from typing import Any

#: The checkout these scripts belong to (Snakemake runs a copy of each script, never this module).
REPOSITORY = Path(__file__).resolve().parents[1]


def start(snakemake: Any, torch_threads: bool = True) -> None:
    """Redirect stdout and stderr (tqdm bars, tracebacks) to ``snakemake.log[0]``."""
    log = open(snakemake.log[0], "w", buffering=1)
    sys.stdout = sys.stderr = log
    atexit.register(report_usage)
    print(f"rule {snakemake.rule}, wildcards {dict(snakemake.wildcards)}, threads {snakemake.threads}")
    print(f"params {dict(snakemake.params)}")
    if int(getattr(snakemake.resources, "gpu", 0) or 0) > 0:
        # Local runs with several GPUs: pin this job to a free one before torch touches CUDA
        # (SLURM sets CUDA_VISIBLE_DEVICES itself, and then nothing is claimed).
        from interpsharp.devices import claim_gpu, machine_gpu_count

        slot = claim_gpu(".snakemake/gpu-slots", machine_gpu_count())
        print(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')} (claimed slot {slot})")
    if torch_threads:
        use_job_threads(snakemake)
    stamp_tables(snakemake)


def use_job_threads(snakemake: Any) -> None:
    """Import torch and size its thread pool to the job's ``threads``: called by :func:`start`,
    or later by a job that only sometimes needs torch."""
    import torch

    torch.set_num_threads(snakemake.threads)


#: How :func:`report_usage`'s line starts (benchmarks/bench_demo.py looks for it).
USAGE_PREFIX = "job usage:"
#: Libraries whose import takes seconds: a job's start-up depends on which of them it loads.
HEAVY_IMPORTS = ("torch", "open_clip")


def report_usage() -> None:
    """The job's last log line: its wall and CPU seconds, start-up included.

    Snakemake's ``benchmark:`` files sample CPU time (every 0.5 s for 15 s, then every 30 s),
    so a job of 15-45 s loses most of its CPU seconds there; benchmarks/bench_demo.py reads
    this line instead. Wall counts from the process's creation, CPU is user + system of this
    process and of the children it waited for; ``loaded`` names the libraries of
    :data:`HEAVY_IMPORTS` the job imported, which decide its start-up time."""
    import psutil  # Snakemake's own dependency

    used = os.times()
    cpu = used.user + used.system + used.children_user + used.children_system
    wall = time.time() - psutil.Process().create_time()
    loaded = ",".join(name for name in HEAVY_IMPORTS if name in sys.modules) or "none"
    print(f"{USAGE_PREFIX} wall {wall:.2f} s, cpu {cpu:.2f} s, loaded {loaded}", flush=True)


def stamp_tables(snakemake: Any) -> None:
    """Every table this job writes gets a sidecar with the code, config and environment it was
    made under (interpsharp.provenance), read here once."""
    from interpsharp import provenance
    from interpsharp.tables import set_provenance

    state = provenance.current_state(REPOSITORY, dict(snakemake.config))
    set_provenance(provenance.table_provenance(state, snakemake.rule, snakemake.wildcards))
    print(f"provenance stamp {state['stamp'][:12]} (commit {state['code']['commit']}, dirty {state['code']['dirty']})")


def load_endpoints(zeroshot: str, finetuned: str, device: str):
    """theta_0 as the one preallocated model every alpha is written into (on the device), and
    the path. theta_1 is loaded like theta_0: same architecture (else the first differing key
    is named), and theta_0's activation and normalisation where its file does not say."""
    from interpsharp.checkpoints import load_classifier
    from interpsharp.evaluate import pick_device
    from interpsharp.interpolate import InterpolationPath

    target = pick_device(device)
    model = load_classifier(zeroshot)
    theta_1 = load_classifier(finetuned, like=model)
    path = InterpolationPath(model.state_dict(), theta_1.state_dict(), device=target)
    return model.to(target), path


def load_caches(named_dirs: dict[str, str]):
    """Caches by dataset name, checking each cache calls itself what the workflow calls it."""
    from interpsharp.data import load_cache

    caches = {}
    for name, directory in named_dirs.items():
        cache = load_cache(directory)
        if cache.name != name:
            raise ValueError(f"{directory}: cache is named {cache.name!r}, expected {name!r}; rebuild it")
        caches[name] = cache
    return caches


def selection_split(cache, selection: dict):
    """The selection / held-out split of the main OOD set (config ``selection``)."""
    from interpsharp.subsets import selection_split as split

    return split(cache.labels, selection["fraction"], selection["seed"])


def main_ood_splits(caches: dict, main_ood: str, selection: dict) -> dict:
    """``{main_ood: {"selection": ..., "heldout": ...}}`` when the job scores the main OOD set:
    the parts that get rows of their own in path tables."""
    return {main_ood: selection_split(caches[main_ood], selection).parts()} if main_ood in caches else {}


def sharpness_inputs(cache_dir: str, n_samples: int | None, seed: int, device: str, main_ood: str, selection: dict,
                     preprocess):
    """The fixed evaluation subset of a sharpness job: images normalised with the model's
    ``preprocess`` and labels, on the device, and how the cache's classes are scored on the
    head (``class_subset`` for 200-class sets, ``class_groups`` for ObjectNet), as keywords. On
    the main OOD set the subset is drawn from the selection part: held-out images only score
    gains."""
    from interpsharp.data import load_cache
    from interpsharp.evaluate import normalize_images, pick_device
    from interpsharp.subsets import select_subset

    cache = load_cache(cache_dir)
    within = selection_split(cache, selection).selection if cache.name == main_ood else None
    indices = select_subset(len(cache), n_samples, seed, within=within)
    images, labels = next(cache.batches(len(indices), indices))
    target = pick_device(device)
    scoring = {"class_subset": cache.class_subset, "class_groups": cache.class_groups}
    return normalize_images(images.to(target), preprocess), labels.to(target), scoring


def files(named) -> list[str]:
    """A named input or output as a list: Snakemake gives one file as a plain string."""
    return [named] if isinstance(named, str) else list(named)


def write_per_alpha(table, alphas: list[float], outputs: list[str]) -> None:
    """One file per path point: the rows of ``alphas[i]`` into ``outputs[i]`` (a per-alpha job
    has one of each, a per-model job all of its model's), each written atomically."""
    from interpsharp.tables import write_tsv

    if len(alphas) != len(outputs):
        raise ValueError(f"{len(alphas)} alphas but {len(outputs)} output files")
    for alpha, output in zip(alphas, outputs):
        rows = table[table["alpha"] == alpha].reset_index(drop=True)
        if rows.empty:
            raise ValueError(f"no rows for alpha {alpha} (would write an empty {output})")
        write_tsv(rows, output)
