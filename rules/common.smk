"""Everything that is not a rule: config validation, derived names, paths, input functions.

All worlds share every path below ``resources/<world>/checkpoints`` and
``resources/<world>/caches``; only the rules that make those differ (demo.smk versus
checkpoints.smk + data.smk, which serve both the paper and the custom world), so nothing
downstream knows which world it runs in.
"""

import importlib.util
import json
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
SCHEMA_DEFAULTS = {}
validate(SCHEMA_DEFAULTS, schema=SCHEMA)

# The Snakemake command line, for provenance.json. Jobs inherit the environment (local or through
# sbatch --export=ALL), and a job's own Snakemake process keeps the outer value.
os.environ.setdefault("INTERPSHARP_SNAKEMAKE_COMMAND", shlex.join(sys.argv))

WORLD = config["world"]
#: The paper and the custom world make checkpoints and caches from files and downloads
#: (checkpoints.smk, data.smk); the demo world generates them (demo.smk).
FROM_FILES = WORLD != "demo"
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


def check_subset(values, allowed, key, what="the evaluation sets"):
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise config_error(key, f"{unknown} not among {what} {allowed}")
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
LAYERWISE_ALPHAS = check_subset(
    check_alphas(config["layerwise_interpolation"]["alphas"] or ALPHAS, "layerwise_interpolation.alphas"),
    ALPHAS,
    "layerwise_interpolation.alphas",
    what="points of interpolation.alphas",
)
PRUNING_DATASETS = check_subset(config["pruning"]["datasets"] or DATASETS, DATASETS, "pruning.datasets")
if MAIN_OOD not in PRUNING_DATASETS:
    raise config_error(
        "pruning.datasets", f"must include datasets.main_ood '{MAIN_OOD}' (the pruned paths' held-out gains are scored there)"
    )
RHOS = sorted({float(config["general_sharpness"]["rho"]), *map(float, config["general_sharpness"]["rho_sweep"])})
MASK_SEEDS = [str(s) for s in config["pruning"]["mask_seeds"]]

# Hooks for the world-specific files: the fine-tuned model names ("model_<i>" for model-soups
# indices and demo recipes, the keys of finetuned.checkpoints for your own files).
CHECKPOINT_FILES = config["finetuned"]["checkpoints"]
if not FROM_FILES:
    MODELS = [f"model_{i}" for i in range(len(config["demo"]["finetune"]["recipes"]))]
elif CHECKPOINT_FILES:
    combined = [key for key in ("models", "sha256") if config["finetuned"][key] != SCHEMA_DEFAULTS["finetuned"][key]]
    if combined:
        raise config_error(
            "finetuned.checkpoints",
            f"cannot be combined with finetuned.{' or finetuned.'.join(combined)} (model-soups indices): with "
            f"checkpoints set, the fine-tuned models are its entries; remove the other key(s)",
        )
    MODELS = list(CHECKPOINT_FILES)
else:
    MODELS = [f"model_{i}" for i in config["finetuned"]["models"]]
if FROM_FILES:
    missing_sources = [d for d in DATASETS if d not in config["datasets"]["sources"]]
    if missing_sources:
        raise config_error(
            "datasets.sources",
            f"no source for evaluation set(s) {missing_sources}; add an entry with 'layout' and 'url' or 'path'",
        )
    for name in DATASETS:
        source = config["datasets"]["sources"][name]
        foreign = [key for key in ("classnames", "subset", "class_mapping") if key in source]
        if foreign and source["layout"] != "imagefolder":
            raise config_error(f"datasets.sources.{name}", f"{', '.join(foreign)} apply to layout 'imagefolder' only; "
                                                           f"{source['layout']!r} has its classes fixed")
        if source.get("subset") and "class_mapping" in source:
            raise config_error(f"datasets.sources.{name}", "declare either 'subset' or 'class_mapping', not both")


def open_clip_model_config():
    """theta_0's open_clip model config as a dict (None if open_clip does not ship it, e.g. an
    hf-hub model), read as JSON: importing open_clip (and torch) would add seconds to every
    Snakemake invocation."""
    name, own = config["zeroshot"]["model_name"], config["zeroshot"]["model_config"]
    if own is not None:
        if Path(own).stem != name:
            raise config_error("zeroshot.model_name", f"must be {Path(own).stem!r}, the stem of zeroshot.model_config {own}")
        path = Path(own)
        if not path.is_file():
            raise config_error("zeroshot.model_config", f"{own}: no such file")
    else:
        package = importlib.util.find_spec("open_clip")
        if package is None or not package.submodule_search_locations:
            return None
        path = Path(package.submodule_search_locations[0]) / "model_configs" / f"{name}.json"
        if not path.is_file():
            return None
    return json.loads(path.read_text())


def cache_image_size():
    """datasets.image_size, or theta_0's input size when null; a size the model does not take
    is a config error (every evaluation would fail on it, after the caches were built)."""
    size = config["datasets"]["image_size"]
    model = open_clip_model_config() if FROM_FILES else None
    model_size = None if model is None else model.get("vision_cfg", {}).get("image_size", 224)
    model_size = model_size[0] if isinstance(model_size, list) else model_size
    if size is None and model_size is None:
        raise config_error("datasets.image_size", f"cannot read {config['zeroshot']['model_name']}'s input size; set it")
    if size is not None and model_size is not None and size != model_size:
        raise config_error("datasets.image_size", f"{size}, but {config['zeroshot']['model_name']} takes {model_size} px "
                                                   f"images (null takes the model's)")
    return size if size is not None else model_size


IMAGE_SIZE = cache_image_size() if FROM_FILES else None


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


# -- sources of the paper and custom worlds ---------------------------------------------
DOWNLOADED = [d for d in DATASETS if FROM_FILES and "url" in config["datasets"]["sources"][d]]
MANIFEST = f"{RESOURCES}/downloads/manifest.json"
#: The ID set's class names (and where they came from): the head's classes, which every
#: evaluation set's classes are related to.
ID_CLASSES = f"{RESOURCES}/classes.json"


def source_of(wildcards):
    return config["datasets"]["sources"][wildcards.dataset]


def archive_path(dataset):
    """The archive keeps its own file name: its suffix says how to unpack it."""
    url = config["datasets"]["sources"][dataset]["url"]
    return f"{RESOURCES}/downloads/{dataset}/{os.path.basename(url)}"


def source_folder(dataset):
    """The class-folder root of a set: unpacked archive or user folder."""
    source = config["datasets"]["sources"][dataset]
    if "url" in source:
        return f"{RESOURCES}/raw/{dataset}/{source['unpacked_root']}"
    return source["path"]


def cache_source_folder(wildcards):
    return source_folder(wildcards.dataset)


def raw_input(dataset):
    """The unpacked archive a set needs as input (a user-provided folder is a param, not an
    input: a missing one must not break `snakemake -n`; onstart checks it before a real run)."""
    return f"{RESOURCES}/raw/{dataset}" if "url" in config["datasets"]["sources"][dataset] else []


def class_files(dataset):
    """The class-name and class-mapping files an imagefolder set names (tracked as inputs)."""
    source = config["datasets"]["sources"][dataset]
    return [source[key] for key in ("classnames", "class_mapping") if key in source]


# -- fine-tuned checkpoints from files (finetuned.checkpoints) --------------------------
def checkpoint_entry(model):
    return CHECKPOINT_FILES[model]


def finetuned_download(model):
    """Where a checkpoint given by URL is downloaded to: named after the model, since the
    manifest is keyed by file name and two training runs' files are often both epoch_10.pt."""
    return f"{RESOURCES}/downloads/finetuned/{model}.pt"


def finetuned_file(wildcards):
    """The file a fine-tune is imported from: the downloaded one, or the user's own."""
    entry = checkpoint_entry(wildcards.model)
    return finetuned_download(wildcards.model) if "url" in entry else entry["path"]


def finetuned_head_file(wildcards):
    head = checkpoint_entry(wildcards.model).get("head")
    return [] if head in (None, "zeroshot") else head


def finetuned_url(wildcards):
    if CHECKPOINT_FILES:
        return checkpoint_entry(wildcards.model)["url"]
    return config["finetuned"]["url"].format(i=wildcards.model.removeprefix("model_"))


def finetuned_sha256(wildcards):
    if CHECKPOINT_FILES:
        return checkpoint_entry(wildcards.model).get("sha256")
    return config["finetuned"]["sha256"].get(wildcards.model.removeprefix("model_"))


def local_weights(value):
    """``zeroshot.pretrained`` as an input when it names a file (tracked, so new weights rebuild
    theta_0), nothing when it is an open_clip tag."""
    return value if os.path.isfile(value) else []


#: Fine-tunes fetched by download_finetuned: model-soups indices straight into checkpoints/,
#: your URLs into downloads/finetuned/ (import_finetuned then checks and converts them).
DOWNLOADED_MODELS = [m for m, e in CHECKPOINT_FILES.items() if "url" in e] if CHECKPOINT_FILES else MODELS
FINETUNED_DOWNLOAD = finetuned_download("{model}") if CHECKPOINT_FILES else f"{RESOURCES}/checkpoints/{{model}}.pt"


def downloaded_files():
    """Every file this config downloads, as (path, pinned sha256 or None)."""
    files = [(archive_path(d), config["datasets"]["sources"][d].get("sha256")) for d in DOWNLOADED]
    if CHECKPOINT_FILES:
        files += [(finetuned_download(m), e.get("sha256")) for m, e in CHECKPOINT_FILES.items() if "url" in e]
    else:
        files += [(f"{RESOURCES}/checkpoints/{m}.pt", config["finetuned"]["sha256"].get(m.removeprefix("model_")))
                  for m in MODELS]
    return files


# -- resources ---------------------------------------------------------------------------
ON_GPU = config["compute"]["device"] == "cuda"
GPUS = config["compute"]["gpus"] if ON_GPU else 0
GPU_JOB_THREADS = config["compute"]["gpu_job_threads"]
PRETRAIN_THREADS = config["compute"]["pretrain_threads"] or GPU_JOB_THREADS
CPU_JOB_THREADS = config["compute"]["cpu_job_threads"]
RUNTIME = config["compute"]["runtime"]


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


def straggler_sweep_point():
    """The layer-wise sharpness sweep's file that straggler detection reads instead of drawing
    the same noise again, or [] when detection's draws are not the sweep's. They are when
    stragglers.alpha is a point of the path and detection's radius, draws, subset size and seed
    equal layerwise_sharpness's (mode, set, batch size and precision are shared already):
    every (alpha, layer) seeds its own draws, so the sweep's row at that alpha is bit for bit
    what detection would compute (tests/test_sharpness.py)."""
    detection, sweep = config["stragglers"], config["layerwise_sharpness"]
    point = [a for a in ALPHAS if float(a) == float(detection["alpha"])]
    same_draws = float(detection["rho"]) == float(sweep["rho"]) and all(
        detection[key] == sweep[key] for key in ("n_iter", "n_samples", "seed")
    )
    return f"{RESULTS}/sharpness/layerwise/{{model}}/alpha_{point[0]}.tsv" if point and same_draws else []


#: Wildcards part of a pruning job's log and benchmark file names, and its mask seeds' files.
PRUNE_JOB = "{model}/all_seeds" if PER_MODEL_PATHS else "{model}/seed_{seed}"
SEEDS_PER_PRUNE_JOB = len(MASK_SEEDS) if PER_MODEL_PATHS else 1


def prune_job_files(folder, ext):
    """A pruning job's files, one per (model, mask seed) either way (as path_point_files)."""
    pattern = f"{RESULTS}/{folder}/{{model}}/seed_{{seed}}.{ext}"
    return expand(pattern, seed=MASK_SEEDS, allow_missing=True) if PER_MODEL_PATHS else pattern


def prune_job_seeds(wildcards):
    """The mask seeds of a pruning job, in the order of its output files."""
    return [int(s) for s in MASK_SEEDS] if PER_MODEL_PATHS else [int(wildcards.seed)]


def cpu_job(kind):
    return dict(mem_mb=config["compute"]["cpu_job_mem_mb"], runtime=RUNTIME[kind])


def config_files_in_merge_order():
    """This run's config files, the one whose values won last (interpsharp.provenance)."""
    from interpsharp.provenance import config_merge_order

    return config_merge_order(workflow.configfiles, workflow.overwrite_configfiles)


# -- run-time checks (never in a dry run) ------------------------------------------------
def user_dataset_problems():
    """Messages for user-provided evaluation sets that are still needed but absent.

    Runs in ``onstart`` (which Snakemake skips in dry runs), so ``snakemake -n`` shows the
    whole DAG on a machine without data while a real run stops before any job.
    """
    if not FROM_FILES:
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


def check_downloads():
    """Re-check every file this config downloaded against its pinned or recorded sha256 (hashed
    again if its size or modification time changed since it was last hashed), so a download
    changed since (bit rot, an edit, a partial copy) stops the run before any job reads it.

    At parse time, in the main Snakemake process only: onstart is skipped when there is
    nothing to do, and a run that reruns nothing must still have checked its downloads.
    """
    from interpsharp.download import recheck_file

    present = [(path, sha) for path, sha in downloaded_files() if Path(path).is_file()]
    try:
        hashed = sum(recheck_file(path, MANIFEST, expected_sha256=sha) for path, sha in present)
    except (OSError, ValueError, RuntimeError) as err:  # ChecksumError is a RuntimeError
        raise WorkflowError(f"a downloaded file failed its check; nothing was run:\n- {err}")
    if present:
        print(f"verified {len(present)} downloaded files against {MANIFEST} (sha256; {hashed} hashed again, "
              f"{len(present) - hashed} unchanged since hashed)", file=sys.stderr)


if FROM_FILES and workflow.is_main_process:
    check_downloads()


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


