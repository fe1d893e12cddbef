"""The demo world's random streams and image sets, without torch.

One world seed; every random stream (each evaluation set, the fine-tuning split, each
pretraining style, model initialisation, each fine-tune) gets its own seed derived from it and
a purpose string. Kept apart from ``world.py`` (which needs torch and open_clip for pretraining
and fine-tuning) so that the jobs that only draw images start in a second instead of six: they
run before pretraining, on the demo's critical path.
"""

from __future__ import annotations

import os
import zlib

import numpy as np

from interpsharp.demo.captions import PRETRAIN_STYLES
from interpsharp.demo.images import STYLES, write_style_cache

#: Evaluation sets are named after their style; the fine-tuning split is a separate ``photo`` set.
EVAL_SETS: tuple[str, ...] = tuple(STYLES)
TRAIN_SET = "photo_train"


def derive_seed(world_seed: int, purpose: str) -> int:
    """A 32-bit seed for one random stream, from the world seed and a purpose string."""
    entropy = [int(world_seed), zlib.crc32(purpose.encode())]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def image_set_purpose(name: str) -> str:
    """The purpose string of an image set's stream (``eval/<style>`` or ``train/photo_train``)."""
    if name == TRAIN_SET:
        return f"train/{TRAIN_SET}"
    if name in EVAL_SETS:
        return f"eval/{name}"
    raise KeyError(f"unknown demo data set {name!r}; known: {', '.join([*EVAL_SETS, TRAIN_SET])}")


def image_set_style(name: str) -> str:
    """The style an image set is drawn in: its own name, ``photo`` for the fine-tuning split."""
    image_set_purpose(name)  # refuses unknown names
    return "photo" if name == TRAIN_SET else name


def write_image_set(path: str | os.PathLike, name: str, n: int, world_seed: int, image_size: int,
                    progress: bool = False) -> None:
    """Draw image set ``name`` (``n`` images, its style, its stream's seed) into a cache at ``path``."""
    seed = derive_seed(world_seed, image_set_purpose(name))
    write_style_cache(path, image_set_style(name), n, seed, image_size, name=name, progress=progress)


def stream_seeds(world_seed: int, n_finetunes: int) -> dict[str, int]:
    """Every stream's seed, by purpose; raises if two purposes would share a seed."""
    purposes = [image_set_purpose(s) for s in (*EVAL_SETS, TRAIN_SET)]
    purposes += [f"pretrain/{s}" for s in PRETRAIN_STYLES] + ["pretrain/init"]
    purposes += [f"finetune/{i}" for i in range(n_finetunes)]
    seeds = {p: derive_seed(world_seed, p) for p in purposes}
    if len(set(seeds.values())) != len(seeds):
        raise ValueError(f"world seed {world_seed}: two random streams got the same derived seed; pick another seed")
    return seeds
