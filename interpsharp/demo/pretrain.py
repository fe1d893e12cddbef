"""Contrastive pretraining of the tiny CLIP on generated image-caption pairs.

The recipe is CLIP's: open_clip's ``ClipLoss`` (symmetric InfoNCE over the batch, learnable
temperature clamped at 100), AdamW with betas (0.9, 0.98) and eps 1e-6, no weight decay on
gains, biases and the temperature (open_clip's rule), linear warm-up then cosine decay.

One shortcut that changes nothing mathematically: a batch of 256 pairs holds only a few
hundred distinct captions, so each step encodes every distinct caption once and gathers the
text features back to the batch rows. The loss and its gradients are exactly those of the
plain batch (duplicate captions still act as each other's negatives, as in CLIP).

Pretraining data come from their own seeds (see ``seeds.derive_seed``), disjoint from every
evaluation set and from the fine-tuning split.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from open_clip.loss import ClipLoss
from tqdm import tqdm

from interpsharp.checkpoints import atomic_torch_save
from interpsharp.demo.captions import PRETRAIN_STYLES, caption
from interpsharp.demo.images import CLASSNAMES, STYLES, generate
from interpsharp.demo.model_config import MODEL_NAME, create_tiny_clip, model_config, tiny_clip_tokenizer
from interpsharp.demo.training import configure_torch, warmup_cosine, write_record
from interpsharp.classifier import Preprocess
from interpsharp.evaluate import normalize_images

#: ``logit_scale`` is clamped at ln(100), as in CLIP.
MAX_LOGIT_SCALE = math.log(100.0)


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that determines the pretrained weights (recorded beside them)."""

    images_per_style: Mapping[str, int] = field(default_factory=lambda: {s: 4000 for s in PRETRAIN_STYLES})
    steps: int = 1000
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    image_size: int = 32


@dataclass
class PretrainingPairs:
    """uint8 images, the index of each image's caption, and the distinct captions."""

    images: np.ndarray
    caption_ids: np.ndarray
    captions: list[str]
    seeds: dict[str, int]
    style_params: dict[str, dict[str, Any]]


def pretraining_pairs(images_per_style: Mapping[str, int], seeds: Mapping[str, int], image_size: int = 32,
                      progress: bool = False) -> PretrainingPairs:
    """Generate each pretraining style with its own seed and caption every image."""
    unknown = set(images_per_style) - set(PRETRAIN_STYLES)
    if unknown:
        raise KeyError(f"pretraining styles {sorted(unknown)} have no captions; use {', '.join(PRETRAIN_STYLES)}")
    parts, texts, used = [], [], {}
    # Canonical style order, not the mapping's: a config read from YAML or JSON may list the
    # styles in any order, and the order decides which image sits at which index.
    for style in PRETRAIN_STYLES:
        n = images_per_style.get(style, 0)
        if n <= 0:
            continue
        used[style] = asdict(STYLES[style])
        data = generate(style, n, seeds[style], image_size, progress=progress)
        parts.append(data.images)
        texts += [caption(style, CLASSNAMES[int(y)], a) for y, a in zip(data.labels, data.attributes)]
    captions = sorted(set(texts))
    index = {c: i for i, c in enumerate(captions)}
    return PretrainingPairs(
        images=np.concatenate(parts),
        caption_ids=np.array([index[t] for t in texts], dtype=np.int64),
        captions=captions,
        seeds={s: int(seeds[s]) for s in used},
        style_params=used,
    )


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """open_clip's rule: no weight decay on gains, biases, norms and the temperature."""
    def exempt(name: str, p: torch.Tensor) -> bool:
        return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if exempt(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in named if not exempt(n, p)], "weight_decay": weight_decay},
    ]


def pretrain_clip(pairs: PretrainingPairs, config: PretrainConfig, seed: int, threads: int,
                  progress: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train a freshly initialised tiny CLIP on ``pairs``; returns the model and a record of the run."""
    configure_torch(threads)
    expected = model_config()["vision_cfg"]["image_size"]
    if pairs.images.shape[-1] != expected:
        raise ValueError(f"pretraining images are {pairs.images.shape[-1]} px but the tiny CLIP config "
                         f"({MODEL_NAME}) takes {expected} px; set image_size to {expected}")
    model = create_tiny_clip(seed=seed)
    model.train()
    tokens = tiny_clip_tokenizer()(pairs.captions)
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr, betas=config.betas,
                                  eps=config.eps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config.warmup_steps, config.steps))
    loss_fn = ClipLoss()
    order = torch.Generator().manual_seed(seed)
    images = torch.from_numpy(pairs.images)
    caption_ids = torch.from_numpy(pairs.caption_ids)
    n = len(images)
    if n < config.batch_size:
        raise ValueError(f"pretraining needs at least batch_size={config.batch_size} pairs, got {n}")
    perm, cursor = torch.randperm(n, generator=order), 0
    losses = []
    start = time.perf_counter()
    for _ in tqdm(range(config.steps), desc="pretrain tiny CLIP", disable=not progress):
        if cursor + config.batch_size > n:
            perm, cursor = torch.randperm(n, generator=order), 0
        batch = perm[cursor:cursor + config.batch_size]
        cursor += config.batch_size
        distinct, inverse = torch.unique(caption_ids[batch], return_inverse=True)
        image_features = model.encode_image(normalize_images(images[batch], Preprocess()), normalize=True)
        text_features = model.encode_text(tokens[distinct], normalize=True)[inverse]
        loss = loss_fn(image_features, text_features, model.logit_scale.exp())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        losses.append(loss.item())
    model.eval()
    curve = {str(i): round(float(np.mean(losses[max(0, i - 20):i])), 4)
             for i in range(50, config.steps + 1, 50)}
    record = {
        "model_name": MODEL_NAME,
        "model_config": model_config(),
        "config": asdict(config),
        "seed": seed,
        "data_seeds": pairs.seeds,
        "style_params": pairs.style_params,
        "num_pairs": n,
        "num_distinct_captions": len(pairs.captions),
        "threads": threads,
        "train_seconds": round(time.perf_counter() - start, 2),
        "final_loss": float(np.mean(losses[-20:])),
        "loss_curve": curve,
        "logit_scale": float(model.logit_scale.exp().item()),
    }
    return model, record


def save_clip(model: torch.nn.Module, path: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write the CLIP's open_clip state dict (loadable with ``create_model(name, pretrained=path)``)
    and its training record as ``<path>.json``, both atomically. Returns the record's path."""
    path = Path(path)
    atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    record_path = path.with_suffix(".json")
    write_record(record, record_path)
    return record_path

