"""Everything that is not a rule: config validation, derived names, paths, input functions.

Both worlds share every path below ``resources/<world>/checkpoints`` and
``resources/<world>/caches``; only the rules that make those differ (demo.smk versus
checkpoints.smk + data.smk), so nothing downstream knows which world it runs in.
"""

import os
import os.path
import re
import shlex
import sys
from pathlib import Path

import jsonschema
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

SCHEMA = "../workflow_schemas/config.schema.yaml"


def config_error(key, message):
    """Stop before any job, naming the config key and what is allowed."""
    return WorkflowError(f"invalid config: '{key}': {message} (see workflow_schemas/config.schema.yaml)")


def validate_config(cfg):
    """Validate against the schema (filling defaults), reporting the first error by dotted key."""
    try:
        validate(cfg, schema=SCHEMA)
    except WorkflowError as err:
        cause = err.__context__  # snakemake raises while handling jsonschema's error
        if not isinstance(cause, jsonschema.ValidationError):
            raise
        key = ".".join(str(part) for part in cause.absolute_path) or "<top level>"
        raise config_error(key, cause.message) from None


validate_config(config)

# The Snakemake command line, for provenance.json. Jobs inherit the environment (local or through
# sbatch --export=ALL), and a job's own Snakemake process keeps the outer value.
os.environ.setdefault("INTERPSHARP_SNAKEMAKE_COMMAND", shlex.join(sys.argv))

WORLD = config["world"]
RESULTS = f"results/{WORLD}"
RESOURCES = f"resources/{WORLD}"


def alpha_label(alpha):
    """File-name form of an alpha: three decimals, so 0.05 and 0.050 are one file."""
    return f"{float(alpha):.3f}"


def check_alphas(alphas, key):
    labels = [alpha_label(a) for a in alphas]
    if len(set(labels)) != len(labels):
        raise config_error(key, f"alphas must differ at three decimals, got {alphas}")
    missing = [end for end in ("0.000", "1.000") if end not in labels]
    if missing:
        raise config_error(key, f"must contain both endpoints 0 and 1 (missing {', '.join(missing)}); got {alphas}")
    return sorted(labels, key=float)


def check_subset(values, allowed, key):
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise config_error(key, f"{unknown} not among the evaluation sets {allowed}")
    return list(values)


ALPHAS = check_alphas(config["interpolation"]["alphas"], "interpolation.alphas")
ID_DATASET = config["datasets"]["id"]
OOD_DATASETS = list(config["datasets"]["ood"])
DATASETS = [ID_DATASET] + OOD_DATASETS
if ID_DATASET in OOD_DATASETS:
    raise config_error("datasets.ood", f"the in-distribution set '{ID_DATASET}' cannot also be OOD")
MAIN_OOD = check_subset([config["datasets"]["main_ood"]], OOD_DATASETS, "datasets.main_ood")[0]
GENERAL_SHARPNESS_DATASET = check_subset(
    [config["general_sharpness"]["dataset"] or MAIN_OOD], DATASETS, "general_sharpness.dataset"
)[0]
LAYERWISE_SHARPNESS_DATASET = check_subset(
    [config["layerwise_sharpness"]["dataset"] or MAIN_OOD], DATASETS, "layerwise_sharpness.dataset"
)[0]
LAYERWISE_DATASETS = check_subset(
    config["layerwise_interpolation"]["datasets"] or [MAIN_OOD], DATASETS, "layerwise_interpolation.datasets"
)
if MAIN_OOD not in LAYERWISE_DATASETS:
    raise config_error(
        "layerwise_interpolation.datasets",
        f"must include datasets.main_ood '{MAIN_OOD}' (stragglers by interpolation are found there)",
    )
PRUNING_DATASETS = check_subset(config["pruning"]["datasets"] or DATASETS, DATASETS, "pruning.datasets")
if MAIN_OOD not in PRUNING_DATASETS:
    raise config_error(
        "pruning.datasets", f"must include datasets.main_ood '{MAIN_OOD}' (the pruned paths' held-out gains are scored there)"
    )
RHOS = sorted({float(config["general_sharpness"]["rho"]), *map(float, config["general_sharpness"]["rho_sweep"])})
MASK_SEEDS = [str(s) for s in config["pruning"]["mask_seeds"]]

# Hooks for the world-specific files: the fine-tuned model names ("model_<i>").
if WORLD == "paper":
    MODELS = [f"model_{i}" for i in config["finetuned"]["models"]]
    missing_sources = [d for d in DATASETS if d not in config["datasets"]["sources"]]
    if missing_sources:
        raise config_error(
            "datasets.sources",
            f"no source for evaluation set(s) {missing_sources}; add an entry with 'layout' and 'url' or 'path'",
        )
else:
    MODELS = [f"model_{i}" for i in range(len(config["demo"]["finetune"]["recipes"]))]


def canonical(value):
    """``value`` with every dict's keys sorted: Snakemake compares params by their text, so a
    reordered config section must not look like a changed setting (and rerun everything)."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


#: The selection / held-out split of the main OOD set, as every job that needs it is told.
SELECTION = canonical(config["selection"])
#: Outcome thresholds, as every job that labels paths is told.
THRESHOLDS = {key: config["outcome"][key] for key in ("delta", "xi", "tolerance")}


def regex_alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    model=regex_alternatives(MODELS),
    alpha=regex_alternatives(ALPHAS),
    dataset=regex_alternatives(DATASETS),
    seed=regex_alternatives(MASK_SEEDS),


# -- paths -------------------------------------------------------------------------------
def zeroshot_checkpoint():
    return f"{RESOURCES}/checkpoints/zeroshot.pt"


def finetuned_checkpoint(wildcards):
    return f"{RESOURCES}/checkpoints/{wildcards.model}.pt"


def cache_dir(dataset):
    return f"{RESOURCES}/caches/{dataset}"


def cache_dirs(datasets):
    return [cache_dir(dataset) for dataset in datasets]


def log_path(rule, pattern=""):
    """``results/<world>/logs/<rule>/<wildcards>.log``; ``pattern`` holds the wildcards."""
    return f"{RESULTS}/logs/{rule}/{pattern or 'all'}.log"


def benchmark_path(rule, pattern=""):
    """Snakemake's per-job benchmarks, under results/ (the repo's benchmarks/ holds scripts)."""
    return f"{RESULTS}/benchmarks/{rule}/{pattern or 'all'}.tsv"


# -- paper-world sources ----------------------------------------------------------------
DOWNLOADED = [d for d in DATASETS if WORLD == "paper" and "url" in config["datasets"]["sources"][d]]


def source_of(wildcards):
    return config["datasets"]["sources"][wildcards.dataset]


def archive_path(dataset):
    """The archive keeps its own file name: its suffix says how to unpack it."""
    url = config["datasets"]["sources"][dataset]["url"]
    return f"{RESOURCES}/downloads/{dataset}/{os.path.basename(url)}"


def cache_source_folder(wildcards):
    """The class-folder root a cache is decoded from: unpacked archive or user folder."""
    source = source_of(wildcards)
    if "url" in source:
        return f"{RESOURCES}/raw/{wildcards.dataset}/{source['unpacked_root']}"
    return source["path"]


# -- resources ---------------------------------------------------------------------------
ON_GPU = config["compute"]["device"] == "cuda"
GPUS = config["compute"]["gpus"] if ON_GPU else 0
GPU_JOB_THREADS = config["compute"]["gpu_job_threads"]
CPU_JOB_THREADS = config["compute"]["cpu_job_threads"]
RUNTIME = config["compute"]["runtime"]
# Attention head width: not readable from checkpoint shapes (OpenAI's ViTs and the demo's tiny
# CLIP both use 64), so every model-loading job is told.
HEAD_WIDTH = config["zeroshot"]["head_width"]


def gpu_job(kind, points=1):
    """Resources of a model job: a GPU when the config runs on CUDA, none on a CPU; the wall
    time of ``points`` jobs of this kind run one after another."""
    return dict(gpu=GPUS, mem_mb=config["compute"]["gpu_job_mem_mb"], runtime=RUNTIME[kind] * points)


# -- path rules: one job per (model, alpha) or per model (compute.path_jobs) -------------
PER_MODEL_PATHS = config["compute"]["path_jobs"] == "per_model"
#: Wildcards part of a path job's log and benchmark file names.
PATH_JOB = "{model}/all_alphas" if PER_MODEL_PATHS else "{model}/alpha_{alpha}"
#: Path points one job computes (for resources: its wall time is theirs added up).
POINTS_PER_PATH_JOB = len(ALPHAS) if PER_MODEL_PATHS else 1


def path_point_files(folder, ext="tsv"):
    """The files of a path job: one per (model, alpha) either way, so nothing downstream knows
    how the path was cut into jobs; a per-model job writes all of its model's."""
    pattern = f"{RESULTS}/{folder}/{{model}}/alpha_{{alpha}}.{ext}"
    return expand(pattern, alpha=ALPHAS, allow_missing=True) if PER_MODEL_PATHS else pattern


def path_job_alphas(wildcards):
    """The alphas of a path job, in the order of its output files."""
    return [float(a) for a in ALPHAS] if PER_MODEL_PATHS else [float(wildcards.alpha)]


def cpu_job(kind):
    return dict(mem_mb=config["compute"]["cpu_job_mem_mb"], runtime=RUNTIME[kind])


# -- run-time checks (never in a dry run) ------------------------------------------------
def user_dataset_problems():
    """Messages for user-provided evaluation sets that are still needed but absent.

    Runs in ``onstart`` (which Snakemake skips in dry runs), so ``snakemake -n`` shows the
    whole DAG on a machine without data while a real run stops before any job.
    """
    if WORLD != "paper":
        return []
    from interpsharp.download import DatasetMissingError, require_local_dataset

    problems = []
    for dataset in DATASETS:
        source = config["datasets"]["sources"][dataset]
        if "path" not in source or Path(cache_dir(dataset)).is_dir():
            continue
        try:
            require_local_dataset(source["path"], dataset, source["layout"])
        except DatasetMissingError as err:
            problems.append(f"- {err} (config key datasets.sources.{dataset}.path)")
    return problems


onstart:
    problems = user_dataset_problems()
    if problems:
        raise WorkflowError("evaluation sets you must provide are missing; nothing was run:\n" + "\n".join(problems))


# -- targets -----------------------------------------------------------------------------
FIGURES = {
    "fig1_interpolation": "Figure 1",
    "fig2_layerwise_interpolation": "Figure 2",
    "fig3_general_sharpness": "Figure 3",
    "fig4_layerwise_sharpness": "Figure 4",
    "fig5_pruning": "Figure 5",
}
TABLES = [
    "evaluation",
    "path_metrics",
    "general_sharpness",
    "layerwise_sharpness",
    "layerwise_interpolation",
    "layerwise_instability",
    "stragglers",
    "pruning",
    "pruning_metrics",
    "heldout_gains",
    "summary",
    "straggler_overlap",
    "correlations",
    "claims",
    "reproduction_check",
]


def result_files():
    """Every figure and summary table: what the provenance record is made after."""
    figures = expand(f"{RESULTS}/figures/{{figure}}.{{ext}}", figure=FIGURES, ext=["png", "pdf"])
    tables = expand(f"{RESULTS}/tables/{{table}}.tsv", table=TABLES)
    return figures + tables


def all_outputs():
    return result_files() + [f"{RESULTS}/provenance.json", f"{RESULTS}/provenance.html"]


COLLECTED = {
    "evaluation": expand(f"{RESULTS}/evaluation/{{model}}/alpha_{{alpha}}.tsv", model=MODELS, alpha=ALPHAS),
    "general_sharpness": expand(f"{RESULTS}/sharpness/general/{{model}}/alpha_{{alpha}}.tsv", model=MODELS, alpha=ALPHAS),
    "layerwise_sharpness": expand(f"{RESULTS}/sharpness/layerwise/{{model}}/alpha_{{alpha}}.tsv", model=MODELS, alpha=ALPHAS),
    "layerwise_interpolation": expand(f"{RESULTS}/layerwise_interpolation/{{model}}.tsv", model=MODELS),
    "stragglers": expand(f"{RESULTS}/stragglers/{{model}}.tsv", model=MODELS),
    "pruning": expand(f"{RESULTS}/pruning/{{model}}/seed_{{seed}}.tsv", model=MODELS, seed=MASK_SEEDS),
}


FIGURE_COMMON = dict(
    main_ood=MAIN_OOD,
    delta=config["outcome"]["delta"],
    xi=config["outcome"]["xi"],
    tolerance=config["outcome"]["tolerance"],
    dpi=config["figures"]["dpi"],
)


def figure_outputs(name):
    """PNG (registered for the report with report/<name>.rst as caption) and PDF."""
    return dict(
        png=report(f"{RESULTS}/figures/{name}.png", caption=f"../report/{name}.rst", category="Figures",
                   labels={"figure": FIGURES[name]}),
        pdf=f"{RESULTS}/figures/{name}.pdf",
    )


