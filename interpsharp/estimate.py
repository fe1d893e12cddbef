"""GPU cost of the paper world, counted before any GPU is booked.

Every rule of the DAG is a number of image forward passes fixed by the config: models x
alphas x images for a path, times layers x noise draws for the sweeps. Multiplying out the
counts (instead of timing a run) shows where the hours go and what prefix caching buys, so a
change to the config can be priced in a second.

Prefix caching (SPEC, Performance): a pass that changes only one layer can start from the
cached input of the first stage that reads the layer. Counting only the transformer blocks
(they hold nearly all FLOPs), a layer of block k (0-based, of L) needs ``(L - k) / L`` of a
forward, a stem layer (conv1, class/positional embedding, ln_pre) a full one, and
``ln_post``, ``proj`` and the head nearly nothing (counted as 0). The cache itself costs one
full forward per prefix, counted with the unperturbed pass that sharpness needs anyway.

The config is read in one place, :func:`cost_inputs_from_config`, into :class:`CostInputs`;
the arithmetic in :func:`count_forwards` only sees that dataclass.

Throughputs are SPEC's H100 anchors unless a GPU has been measured: the GPU acceptance run
(``benchmarks/gpu_acceptance.py``) writes its images/s per precision to a JSON file
(:func:`write_throughputs`), and :func:`hours_against_spec` prices the paper world at those
rates next to SPEC's (``interpsharp estimate --throughputs FILE``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

#: Images per evaluation set (the full published sets).
DATASET_SIZES: dict[str, int] = {
    "imagenet": 50000,
    "imagenet-a": 7500,
    "imagenet-r": 30000,
    "imagenet-sketch": 50889,
    "imagenetv2": 10000,
    "objectnet": 18574,
}

#: Measured ViT-B/32 classifier throughput on one H100 at batch 1024 (SPEC, Performance).
SPEC_THROUGHPUTS: dict[str, float] = {"fp32": 4400.0, "bf16": 26100.0, "bf16+compile": 31300.0}

#: FLOPs of one ViT-B/32 classifier forward at 224 px (SPEC, ``torch.utils.flop_counter``).
VIT_B32_GFLOPS = 5.9

RULES = ("evaluation", "layerwise_interpolation", "general_sharpness", "layerwise_sharpness", "stragglers", "pruning")

#: The paper-world defaults of the workflow config (``workflow_schemas/config.schema.yaml``),
#: for keys a config file leaves out. A test keeps them equal to the schema's defaults.
CONFIG_DEFAULTS: dict[str, Any] = {
    "world": "paper",
    "zeroshot": {"model_name": "ViT-B-32-quickgelu", "model_config": None},
    "finetuned": {"models": [2, 34, 65, 9, 7, 67, 17, 15, 61], "checkpoints": {}},
    "datasets": {
        "id": "imagenet",
        "ood": ["imagenet-a", "imagenet-r", "imagenet-sketch", "imagenetv2", "objectnet"],
        "main_ood": "imagenet-a",
        "limit": None,
    },
    "interpolation": {"alphas": [round(0.05 * i, 2) for i in range(21)]},
    "evaluation": {"precision": "fp32"},
    "general_sharpness": {"dataset": None, "rho_sweep": [0.1, 0.5, 2.0], "n_iter": 20, "n_samples": None, "precision": "fp32"},
    "layerwise_sharpness": {"dataset": None, "n_iter": 20, "n_samples": None, "precision": "fp32"},
    "layerwise_interpolation": {"datasets": None, "alphas": None, "precision": "fp32"},
    "stragglers": {"n_iter": 5, "n_samples": None},
    "pruning": {"mask_seeds": [0, 1, 2], "datasets": None},
}


@dataclass(frozen=True)
class CostInputs:
    """Everything the forward-pass count depends on, in plain numbers.

    Image counts are already summed over a rule's evaluation sets and capped by subset
    sizes. ``layer_fractions`` has one entry per swept layer: the share of a full forward a
    prefix-cached pass for that layer needs. ``precision`` maps a rule to the precision the
    config runs it in (for the "as configured" hours).
    """

    models: int
    alphas: int
    eval_images: int
    layer_fractions: tuple[float, ...]
    layerwise_interpolation_images: int
    general_sharpness_images: int
    general_sharpness_draws: int
    layerwise_sharpness_images: int
    layerwise_sharpness_draws: int
    straggler_images: int
    straggler_draws: int
    pruning_mask_seeds: int
    pruning_images: int
    precision: Mapping[str, str] = field(default_factory=dict)
    #: Points of the layer-wise interpolation sweep when it has a grid of its own (None: ``alphas``).
    layerwise_interpolation_alphas: int | None = None

    @property
    def layers(self) -> int:
        return len(self.layer_fractions)


# --------------------------------------------------------------------------- layers


def prefix_fraction(stage: int, num_blocks: int) -> float:
    """Share of a full forward needed when re-running from ``stage`` of the staged forward.

    Stages (``CLIPClassifier``): 0 embed, 1..L blocks, then pool, ln_post, proj, head. Only
    blocks are counted, so stage 0 and 1 cost 1, stage 1 + k costs (L - k) / L, and the
    stages after the last block cost 0.
    """
    return min(num_blocks, max(0, num_blocks + 1 - stage)) / num_blocks


def vit_layer_fractions(model_name: str, model_config: str | None = None) -> tuple[float, ...]:
    """Prefix fraction of every layer of an open_clip ViT classifier, in forward order.

    The layer list is the library's own (:func:`interpsharp.layers.layer_groups`), built on
    the meta device, so the estimate sweeps exactly the layers the pipeline sweeps. A tower
    that is not a plain ViT is refused as the workflow would refuse it.
    """
    import torch

    from interpsharp.classifier import CLIPClassifier
    from interpsharp.layers import layer_groups, stage_of_layer
    from interpsharp.towers import UnsupportedTowerError, register_model_config, vision_architecture_from_config

    register_model_config(model_config)
    try:
        arch = vision_architecture_from_config(model_name, num_classes=1000)
    except UnsupportedTowerError as err:
        raise KeyError(f"zeroshot.model_name: {err}") from None
    with torch.device("meta"):
        model = CLIPClassifier(arch)
    return tuple(prefix_fraction(stage_of_layer(model, layer), arch.layers) for layer in layer_groups(model))


# --------------------------------------------------------------------------- config


def _section(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A config section with the paper-world defaults filled in for missing keys."""
    given = config.get(name) or {}
    if not isinstance(given, Mapping):
        raise ValueError(f"config key {name!r} must be a mapping, got {type(given).__name__}")
    return {**CONFIG_DEFAULTS.get(name, {}), **given}


def cost_inputs_from_config(
    config: Mapping[str, Any],
    dataset_sizes: Mapping[str, int] | None = None,
    layer_fractions: Sequence[float] | None = None,
) -> CostInputs:
    """Read the workflow config (keys as in ``workflow_schemas/config.schema.yaml``).

    ``dataset_sizes`` adds or overrides set sizes (default :data:`DATASET_SIZES`);
    ``layer_fractions`` skips building the model's layer list.
    """
    world = config.get("world", CONFIG_DEFAULTS["world"])
    if world == "demo":
        raise ValueError("world: 'demo': the estimate prices GPU worlds (paper, custom); the demo world runs on a CPU in minutes")
    sizes = {**DATASET_SIZES, **(dataset_sizes or {})}
    data = _section(config, "datasets")
    limit = data["limit"]

    def images(name: str) -> int:
        if name not in sizes:
            raise KeyError(f"dataset {name!r}: size unknown; known: {', '.join(sorted(sizes))} (pass dataset_sizes to add it)")
        return sizes[name] if limit is None else min(sizes[name], limit)

    def subset(name: str | None, n_samples: int | None) -> int:
        n = images(name or data["main_ood"])
        return n if n_samples is None else min(n, n_samples)

    def total(names: Sequence[str] | None, default: Sequence[str]) -> int:
        return sum(images(name) for name in (default if names is None else names))

    eval_sets = [data["id"], *data["ood"]]
    if layer_fractions is None:
        zeroshot = _section(config, "zeroshot")
        layer_fractions = vit_layer_fractions(zeroshot["model_name"], zeroshot["model_config"])
    general = _section(config, "general_sharpness")
    layerwise = _section(config, "layerwise_sharpness")
    lw_interp = _section(config, "layerwise_interpolation")
    stragglers = _section(config, "stragglers")
    pruning = _section(config, "pruning")
    radii = 1 + len(general["rho_sweep"] or [])
    finetuned = _section(config, "finetuned")
    return CostInputs(
        models=len(finetuned["checkpoints"] or finetuned["models"]),
        alphas=len(_section(config, "interpolation")["alphas"]),
        eval_images=total(None, eval_sets),
        layer_fractions=tuple(float(f) for f in layer_fractions),
        layerwise_interpolation_images=total(lw_interp["datasets"], [data["main_ood"]]),
        layerwise_interpolation_alphas=len(lw_interp["alphas"]) if lw_interp["alphas"] else None,
        general_sharpness_images=subset(general["dataset"], general["n_samples"]),
        general_sharpness_draws=general["n_iter"] * radii,
        layerwise_sharpness_images=subset(layerwise["dataset"], layerwise["n_samples"]),
        layerwise_sharpness_draws=layerwise["n_iter"],
        # Stragglers are measured on the layer-wise sharpness set, with their own draws.
        straggler_images=subset(layerwise["dataset"], stragglers["n_samples"]),
        straggler_draws=stragglers["n_iter"],
        pruning_mask_seeds=len(pruning["mask_seeds"]),
        pruning_images=total(pruning["datasets"], eval_sets),
        precision={
            "evaluation": _section(config, "evaluation")["precision"],
            "layerwise_interpolation": lw_interp["precision"],
            "general_sharpness": general["precision"],
            "layerwise_sharpness": layerwise["precision"],
            "stragglers": layerwise["precision"],
            "pruning": _section(config, "evaluation")["precision"],
        },
    )


# --------------------------------------------------------------------------- counting


def count_forwards(inputs: CostInputs) -> pd.DataFrame:
    """Image forwards per rule, naive and prefix-cached; one row per rule.

    - evaluation: models x alphas x images (all evaluation sets);
    - layerwise_interpolation: models x layers x alphas x images; cached, one theta_0 prefix
      pass per model (which is also every layer's alpha-0 point), then the layer's fraction per
      (layer, non-zero alpha);
    - general_sharpness: models x alphas x images x (1 unperturbed + draws over all radii);
    - layerwise_sharpness: models x alphas x images x (1 unperturbed + layers x draws); the
      unperturbed pass fills the prefix cache, then each draw of a layer costs its fraction;
    - stragglers: models x images x (1 + layers x draws) at one alpha, cached likewise;
    - pruning: models x mask seeds x alphas x images (every model counted: which ones have
      stragglers is only known after the straggler rule).
    """
    c = inputs
    swept = sum(c.layer_fractions)
    li_alphas = c.alphas if c.layerwise_interpolation_alphas is None else c.layerwise_interpolation_alphas
    rows = [
        ("evaluation", "models x alphas x images", c.models * c.alphas * c.eval_images, c.models * c.alphas * c.eval_images),
        (
            "layerwise_interpolation",
            "models x layers x alphas x images",
            c.models * c.layers * li_alphas * c.layerwise_interpolation_images,
            c.models * c.layerwise_interpolation_images * (1 + (li_alphas - 1) * swept),
        ),
        (
            "general_sharpness",
            "models x alphas x images x (1 + draws)",
            c.models * c.alphas * c.general_sharpness_images * (1 + c.general_sharpness_draws),
            c.models * c.alphas * c.general_sharpness_images * (1 + c.general_sharpness_draws),
        ),
        (
            "layerwise_sharpness",
            "models x alphas x images x (1 + layers x draws)",
            c.models * c.alphas * c.layerwise_sharpness_images * (1 + c.layers * c.layerwise_sharpness_draws),
            c.models * c.alphas * c.layerwise_sharpness_images * (1 + c.layerwise_sharpness_draws * swept),
        ),
        (
            "stragglers",
            "models x images x (1 + layers x draws)",
            c.models * c.straggler_images * (1 + c.layers * c.straggler_draws),
            c.models * c.straggler_images * (1 + c.straggler_draws * swept),
        ),
        (
            "pruning",
            "models x mask seeds x alphas x images",
            c.models * c.pruning_mask_seeds * c.alphas * c.pruning_images,
            c.models * c.pruning_mask_seeds * c.alphas * c.pruning_images,
        ),
    ]
    table = pd.DataFrame(rows, columns=["rule", "count", "forwards_naive", "forwards_cached"])
    table["precision"] = [c.precision.get(rule, "") for rule in table["rule"]]
    return table


def estimate_cost(
    config_like: Mapping[str, Any] | CostInputs,
    throughput_images_per_s: float,
    gflops_per_image: float = VIT_B32_GFLOPS,
    dataset_sizes: Mapping[str, int] | None = None,
    layer_fractions: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Forwards, PFLOPs and GPU-hours per rule at one throughput, plus a ``total`` row.

    ``config_like`` is the workflow config (see :func:`cost_inputs_from_config`) or a ready
    :class:`CostInputs`.
    """
    if throughput_images_per_s <= 0:
        raise ValueError(f"throughput must be positive images/s, got {throughput_images_per_s}")
    inputs = (
        config_like
        if isinstance(config_like, CostInputs)
        else cost_inputs_from_config(config_like, dataset_sizes, layer_fractions)
    )
    table = count_forwards(inputs)
    total = {"rule": "total", "count": "", "forwards_naive": table["forwards_naive"].sum(), "forwards_cached": table["forwards_cached"].sum(), "precision": ""}
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    for kind in ("naive", "cached"):
        forwards = table[f"forwards_{kind}"].astype(float)
        table[f"pflop_{kind}"] = forwards * gflops_per_image / 1e6
        table[f"gpu_hours_{kind}"] = forwards / throughput_images_per_s / 3600
    return table


def estimate_by_precision(
    config_like: Mapping[str, Any] | CostInputs,
    throughputs: Mapping[str, float] = SPEC_THROUGHPUTS,
    dataset_sizes: Mapping[str, int] | None = None,
    layer_fractions: Sequence[float] | None = None,
) -> pd.DataFrame:
    """GPU-hours per rule at each named throughput (naive and cached), and as configured.

    ``hours_configured`` is the cached count at the throughput of the precision the config
    names for each rule (``fp32`` or ``bf16``): what the workflow will actually cost.
    """
    inputs = (
        config_like
        if isinstance(config_like, CostInputs)
        else cost_inputs_from_config(config_like, dataset_sizes, layer_fractions)
    )
    table = estimate_cost(inputs, 1.0)[["rule", "precision", "forwards_naive", "forwards_cached"]]
    for name, rate in throughputs.items():
        table[f"hours_naive_{name}"] = table["forwards_naive"] / rate / 3600
        table[f"hours_cached_{name}"] = table["forwards_cached"] / rate / 3600
    missing = sorted({p for p in table["precision"] if p} - set(throughputs))
    if missing:
        raise KeyError(f"no throughput given for precision(s) {', '.join(missing)} named in the config")
    rules = table["rule"] != "total"
    configured = [
        row.forwards_cached / throughputs[row.precision] / 3600 for row in table[rules].itertuples()
    ]
    table["hours_configured"] = [*configured, sum(configured)]
    return table


# --------------------------------------------------------------------------- measured throughputs

#: Format tag of a throughputs file (:func:`write_throughputs`).
THROUGHPUTS_FORMAT = "interpsharp-throughputs/1"


@dataclass(frozen=True)
class Throughputs:
    """Images per second of one GPU per precision (``fp32``, ``bf16``, ``bf16_autocast``,
    ``tf32``, ``bf16+compile``, ...), with what was measured where and when."""

    images_per_s: Mapping[str, float]
    device: str
    measured: str
    source: str

    def __post_init__(self) -> None:
        if not self.images_per_s:
            raise ValueError("no throughput given")
        for name, rate in self.images_per_s.items():
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
                raise ValueError(f"throughput of {name!r} must be a positive number of images/s, got {rate!r}")


def write_throughputs(path: str | os.PathLike, throughputs: Throughputs) -> Path:
    """Write ``throughputs`` as JSON (atomically), in the format :func:`read_throughputs` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"format": THROUGHPUTS_FORMAT, "device": throughputs.device, "measured": throughputs.measured,
              "source": throughputs.source, "images_per_s": {k: float(v) for k, v in throughputs.images_per_s.items()}}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_throughputs(path: str | os.PathLike) -> Throughputs:
    """Read a throughputs file; a missing, foreign or malformed file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such throughputs file (benchmarks/gpu_acceptance.py writes one)")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a JSON throughputs file: {err}") from err
    if not isinstance(record, dict) or record.get("format") != THROUGHPUTS_FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"{path}: format {found!r}, expected {THROUGHPUTS_FORMAT!r} (written by benchmarks/gpu_acceptance.py)")
    rates = record.get("images_per_s")
    if not isinstance(rates, dict):
        raise ValueError(f"{path}: 'images_per_s' must map precision names to images/s")
    try:
        return Throughputs(images_per_s=rates, device=str(record.get("device", "unknown GPU")),
                           measured=str(record.get("measured", "unknown date")), source=str(record.get("source", "")))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def hours_against_spec(
    config_like: Mapping[str, Any] | CostInputs,
    measured: Mapping[str, float],
    spec: Mapping[str, float] = SPEC_THROUGHPUTS,
    dataset_sizes: Mapping[str, int] | None = None,
    layer_fractions: Sequence[float] | None = None,
) -> pd.DataFrame:
    """GPU-hours per rule (and total) at the ``measured`` throughputs next to ``spec``'s.

    For each of the two: ``naive_fp32`` (every forward, fp32), ``cached_bf16`` (prefix reuse,
    bf16 weights: SPEC's <= 12 H100-hours target) and ``configured`` (prefix reuse, each rule
    at its configured precision). Both sets of throughputs need ``fp32``, ``bf16`` and every
    precision the config names.
    """
    inputs = (
        config_like
        if isinstance(config_like, CostInputs)
        else cost_inputs_from_config(config_like, dataset_sizes, layer_fractions)
    )
    needed = sorted({"fp32", "bf16", *(p for p in inputs.precision.values() if p)})
    table = None
    for label, rates in (("measured", measured), ("spec", spec)):
        missing = [name for name in needed if name not in rates]
        if missing:
            raise KeyError(f"{label} throughputs lack {', '.join(missing)} (needed: {', '.join(needed)})")
        priced = estimate_by_precision(inputs, {name: rates[name] for name in needed})
        if table is None:
            table = priced[["rule", "precision", "forwards_naive", "forwards_cached"]].copy()
        table[f"hours_naive_fp32_{label}"] = priced["hours_naive_fp32"]
        table[f"hours_cached_bf16_{label}"] = priced["hours_cached_bf16"]
        table[f"hours_configured_{label}"] = priced["hours_configured"]
    return table
