"""Building the demo world step by step: images, pretraining, zero-shot head, fine-tunes.

Each step is a function from paths and plain values to files, usable alone (one Snakemake rule
or CLI call per step) or all together through :func:`build_world`. The files are those of the
paper world: data caches (``interpsharp.data``), model-soups checkpoints
(``interpsharp.checkpoints``), JSON records beside them; nothing downstream can tell which
world made them.

Seeds (``interpsharp.demo.seeds``): one world seed; every random stream gets its own seed
derived from it and a purpose string, and :func:`world_seeds` refuses a world in which two
purposes collide, so pretraining data, fine-tuning data and evaluation sets never share a seed.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from interpsharp.checkpoints import load_classifier, save_classifier, zeroshot_classifier_from_clip
from interpsharp.data import load_cache
from interpsharp.demo.captions import PRETRAIN_STYLES, TEMPLATES
from interpsharp.demo.finetune import DEFAULT_SWEEP, FinetuneHparams, finetune_classifier, save_finetuned
from interpsharp.demo.images import CLASSNAMES
from interpsharp.demo.model_config import HEAD_WIDTH, MODEL_NAME, create_tiny_clip, tiny_clip_tokenizer
from interpsharp.demo.pretrain import PretrainConfig, pretrain_clip, pretraining_pairs, save_clip
from interpsharp.demo.seeds import EVAL_SETS, TRAIN_SET, image_set_purpose, stream_seeds, write_image_set
from interpsharp.demo.training import configure_torch, write_record

@dataclass(frozen=True)
class WorldConfig:
    """Sizes and seeds of a demo world; the defaults are the world ``make demo`` builds."""

    seed: int = 0
    image_size: int = 32
    eval_images: int = 1000
    train_images: int = 4000
    #: Images of the evaluation sets whose size differs from ``eval_images``: the main OOD set
    #: must be large enough that a 1-2 point gain stands out of its held-out half's noise
    #: (config/demo.yaml: ``{clutter: 5000}``).
    set_images: Mapping[str, int] | tuple[tuple[str, int], ...] = ()
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    sweep: tuple[FinetuneHparams, ...] = DEFAULT_SWEEP

    def __post_init__(self) -> None:
        # Sorted pairs, so the config stays hashable and a YAML mapping's order does not matter.
        pairs = self.set_images.items() if isinstance(self.set_images, Mapping) else self.set_images
        object.__setattr__(self, "set_images", tuple(sorted((str(k), int(v)) for k, v in pairs)))
        unknown = sorted(dict(self.set_images).keys() - set(EVAL_SETS))
        if unknown:
            raise KeyError(f"set_images names unknown evaluation sets {unknown}; known: {', '.join(EVAL_SETS)}")

    def images_of(self, name: str) -> int:
        """Images in evaluation set ``name``."""
        return dict(self.set_images).get(name, self.eval_images)

    @classmethod
    def micro(cls, seed: int = 0) -> "WorldConfig":
        """A world that builds in seconds (tests): few images, few steps, two fine-tunes."""
        return cls(
            seed=seed,
            eval_images=40,
            train_images=64,
            pretrain=PretrainConfig(images_per_style={s: 32 for s in PRETRAIN_STYLES}, steps=3, batch_size=32,
                                    warmup_steps=1),
            sweep=(FinetuneHparams(lr=1e-4, epochs=1, batch_size=32, warmup_steps=1),
                   FinetuneHparams(lr=1e-3, epochs=1, batch_size=32, warmup_steps=1, augmentation="strong",
                                   mixup=0.4, label_smoothing=0.1)),
        )


def world_seeds(config: WorldConfig) -> dict[str, int]:
    """Every stream's seed, by purpose; raises if two purposes would share a seed."""
    return stream_seeds(config.seed, len(config.sweep))


# -- steps -------------------------------------------------------------------------------

def write_images(out_dir: str | os.PathLike, config: WorldConfig, names: Sequence[str] | None = None,
                 progress: bool = False) -> dict[str, Path]:
    """Write the evaluation caches (one per style) and the ``photo_train`` split under ``out_dir``.

    ``names`` picks a subset (e.g. one cache per Snakemake job); default: all of them.
    """
    world_seeds(config)  # refuses a world whose streams share a seed
    names = list([*EVAL_SETS, TRAIN_SET] if names is None else names)
    for name in names:
        image_set_purpose(name)  # refuses an unknown name before any set is written
    written = {}
    for name in names:
        path = Path(out_dir) / name
        n = config.train_images if name == TRAIN_SET else config.images_of(name)
        write_image_set(path, name, n, config.seed, config.image_size, progress=progress)
        written[name] = path
    return written


def pretrain(out_path: str | os.PathLike, config: WorldConfig, threads: int, progress: bool = False) -> Path:
    """Generate the pretraining pairs, pretrain the tiny CLIP and save it (``clip.pt`` + ``clip.json``)."""
    configure_torch(threads)
    seeds = world_seeds(config)
    pairs = pretraining_pairs(config.pretrain.images_per_style, {s: seeds[f"pretrain/{s}"] for s in PRETRAIN_STYLES},
                              config.pretrain.image_size, progress=progress)
    model, record = pretrain_clip(pairs, config.pretrain, seeds["pretrain/init"], threads, progress=progress)
    record["world_seed"] = config.seed
    save_clip(model, out_path, record)
    return Path(out_path)


def build_zeroshot(clip_path: str | os.PathLike, out_path: str | os.PathLike, threads: int,
                   templates: Sequence[str] = TEMPLATES) -> Path:
    """theta_0: the pretrained tiny CLIP's image tower plus its zero-shot head, built by the
    paper world's code, saved in the model-soups format with a JSON record beside it."""
    configure_torch(threads)
    clip_path = Path(clip_path)
    if not clip_path.is_file():
        raise FileNotFoundError(f"{clip_path}: no pretrained tiny CLIP; run 'interpsharp demo pretrain' first")
    clip = create_tiny_clip(pretrained=str(clip_path))
    classifier = zeroshot_classifier_from_clip(clip, tiny_clip_tokenizer(), CLASSNAMES, templates, head_width=HEAD_WIDTH)
    save_classifier(classifier, out_path)
    write_record({"model_name": MODEL_NAME, "clip": str(clip_path), "classnames": list(CLASSNAMES),
                  "templates": list(templates), "head_width": HEAD_WIDTH}, Path(out_path).with_suffix(".json"))
    return Path(out_path)


def finetune(zeroshot_path: str | os.PathLike, train_cache: str | os.PathLike, out_path: str | os.PathLike,
             hparams: FinetuneHparams, seed: int, threads: int, progress: bool = False) -> Path:
    """Fine-tune theta_0 on the ``photo_train`` cache and save ``model_{i}.pt`` + ``model_{i}.json``."""
    theta_0 = load_classifier(zeroshot_path, head_width=HEAD_WIDTH)
    cache = load_cache(train_cache)
    if cache.meta.get("style") != "photo":
        raise ValueError(f"{train_cache}: fine-tuning data must be the photo style, got {cache.meta.get('style')!r}")
    model, record = finetune_classifier(theta_0, np.array(cache.images), cache.labels, hparams, seed, threads, progress)
    record.update({"zeroshot": str(zeroshot_path), "train_cache": str(train_cache),
                   "train_cache_seed": cache.meta.get("seed")})
    save_finetuned(model, out_path, record)
    return Path(out_path)


def finetune_from_sweep(zeroshot_path: str | os.PathLike, train_cache: str | os.PathLike,
                        out_path: str | os.PathLike, config: WorldConfig, index: int, threads: int,
                        progress: bool = False, **overrides: Any) -> Path:
    """Run sweep entry ``index`` of ``config`` (with its derived seed), optionally overriding hyperparameters."""
    if not 0 <= index < len(config.sweep):
        raise IndexError(f"sweep index {index} out of range 0..{len(config.sweep) - 1}")
    hparams = replace(config.sweep[index], **overrides)
    seed = world_seeds(config)[f"finetune/{index}"]
    return finetune(zeroshot_path, train_cache, out_path, hparams, seed, threads, progress)


# -- everything --------------------------------------------------------------------------

@dataclass(frozen=True)
class WorldLayout:
    """Where :func:`build_world` puts things (the workflow may choose other paths per step)."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def clip(self) -> Path:
        return self.root / "models" / "clip.pt"

    @property
    def zeroshot(self) -> Path:
        return self.root / "models" / "zeroshot.pt"

    def finetuned(self, index: int) -> Path:
        return self.root / "models" / "finetuned" / f"model_{index}.pt"


def build_world(out_dir: str | os.PathLike, config: WorldConfig, threads: int,
                progress: bool = False) -> dict[str, float]:
    """Build every step into ``out_dir``; returns seconds per stage (also written to ``build.json``)."""
    layout = WorldLayout(Path(out_dir))
    timings: dict[str, float] = {}

    def timed(stage: str, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        timings[stage] = round(time.perf_counter() - start, 2)
        return result

    timed("images", write_images, layout.data, config, progress=progress)
    timed("pretrain", pretrain, layout.clip, config, threads, progress=progress)
    timed("zeroshot", build_zeroshot, layout.clip, layout.zeroshot, threads)
    for i in range(len(config.sweep)):
        timed(f"finetune_{i}", finetune_from_sweep, layout.zeroshot, layout.data / TRAIN_SET, layout.finetuned(i),
              config, i, threads, progress=progress)
    timings["total"] = round(sum(timings.values()), 2)
    write_record({"config": asdict(config), "seeds": world_seeds(config), "threads": threads,
                  "seconds": timings}, layout.root / "build.json")
    return timings
