"""Pretraining data and the training helpers: schedule, augmentation, the distinct-caption shortcut."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from interpsharp.demo.captions import PRETRAIN_STYLES
from interpsharp.demo.finetune import FinetuneHparams, augment
from interpsharp.demo.images import CLASSNAMES
from interpsharp.demo.model_config import create_tiny_clip, tiny_clip_tokenizer
from interpsharp.demo.pretrain import pretraining_pairs
from interpsharp.demo.training import warmup_cosine
from interpsharp.classifier import Preprocess
from interpsharp.evaluate import normalize_images


def test_warmup_cosine_closed_form():
    f = warmup_cosine(warmup_steps=10, total_steps=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0)
    assert f(35) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))


def test_pretraining_pairs_ignore_mapping_order_and_caption_the_label():
    seeds = {s: 10 + i for i, s in enumerate(PRETRAIN_STYLES)}
    sizes = {s: 20 for s in PRETRAIN_STYLES}
    a = pretraining_pairs(sizes, seeds)
    b = pretraining_pairs(dict(reversed(list(sizes.items()))), seeds)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.caption_ids, b.caption_ids)
    labels = np.tile(np.arange(20) % len(CLASSNAMES), len(PRETRAIN_STYLES))
    assert all(CLASSNAMES[y] in a.captions[c].split() for y, c in zip(labels, a.caption_ids))
    with pytest.raises(KeyError, match="photo2"):
        pretraining_pairs({"photo2": 10}, {"photo2": 1})


def test_distinct_caption_features_equal_per_row_features():
    """Encoding each distinct caption once and gathering equals encoding every row."""
    clip = create_tiny_clip(seed=0).eval()
    tokens = tiny_clip_tokenizer()(["a sketch of a star", "a photo of a red circle", "a cluttered picture of a heart"])
    ids = torch.tensor([2, 0, 0, 1, 2, 2])
    distinct, inverse = torch.unique(ids, return_inverse=True)
    with torch.no_grad():
        gathered = clip.encode_text(tokens[distinct], normalize=True)[inverse]
        per_row = clip.encode_text(tokens[ids], normalize=True)
    torch.testing.assert_close(gathered, per_row, rtol=1e-5, atol=1e-6)


def _images(n: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_light_augmentation_without_shift_is_identity_or_mirror():
    images = _images()
    out = augment(images, "light", torch.Generator().manual_seed(1), max_shift=0)
    plain, mirrored = normalize_images(images, Preprocess()), normalize_images(images.flip(-1), Preprocess())
    for i in range(len(images)):
        assert torch.equal(out[i], plain[i]) or torch.equal(out[i], mirrored[i])
    assert not torch.equal(out, plain) and not torch.equal(out, mirrored)  # both branches taken


def test_light_augmentation_is_a_flip_then_edge_replicating_shift():
    h = w = 10
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    coded = torch.stack([rows * 20, cols * 20, torch.zeros_like(rows)]).to(torch.uint8)  # pixel = its position
    out = augment(coded.expand(32, -1, -1, -1), "light", torch.Generator().manual_seed(2), max_shift=3)

    def moved(flip: bool, dx: int, dy: int) -> torch.Tensor:
        c = (w - 1 - torch.arange(w)) if flip else torch.arange(w)
        c = (c - dx).clamp(0, w - 1)
        r = (torch.arange(h) - dy).clamp(0, h - 1)
        return normalize_images(coded[:, r][:, :, c][None], Preprocess())[0]

    candidates = [moved(f, dx, dy) for f in (False, True) for dx in range(-3, 4) for dy in range(-3, 4)]
    matched = [next(k for k, c in enumerate(candidates) if torch.equal(o, c)) for o in out]  # StopIteration = no match
    assert len(set(matched)) > 5  # the draws vary between images


def test_augmentations_are_seeded():
    images = _images()
    for kind in ("light", "strong"):
        a = augment(images, kind, torch.Generator().manual_seed(3))
        b = augment(images, kind, torch.Generator().manual_seed(3))
        assert torch.equal(a, b) and a.dtype == torch.float32 and a.shape == images.shape
    assert torch.equal(augment(images, "none", torch.Generator()), normalize_images(images, Preprocess()))


def test_bad_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="augmentation 'autoaug' unknown"):
        FinetuneHparams(lr=1e-4, epochs=1, augmentation="autoaug")
    with pytest.raises(ValueError, match="lr > 0"):
        FinetuneHparams(lr=0.0, epochs=1)


def test_layer_settings_pick_the_longest_prefix_and_refuse_typos():
    from interpsharp.demo.finetune import param_groups

    from conftest import tiny_classifier

    model = tiny_classifier(seed=0)
    hparams = FinetuneHparams(
        lr=1e-3, epochs=1, weight_decay=0.1,
        layer_lr={"visual.transformer": 0.5, "visual.transformer.resblocks.1": 2.0, "visual.conv1": 0.0},
        layer_weight_decay={"visual.transformer.resblocks.1.mlp.c_proj": 50.0},
    )
    groups = param_groups(model, hparams)
    settings = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert id(named["visual.conv1.weight"]) not in settings and not named["visual.conv1.weight"].requires_grad
    assert settings[id(named["visual.transformer.resblocks.0.mlp.c_fc.weight"])] == (5e-4, 0.1)
    assert settings[id(named["visual.transformer.resblocks.1.mlp.c_fc.weight"])] == (2e-3, 0.1)
    assert settings[id(named["visual.transformer.resblocks.1.mlp.c_proj.bias"])] == (2e-3, 50.0)
    assert settings[id(named["classification_head.weight"])] == (1e-3, 0.1)
    assert sum(len(g["params"]) for g in groups) == len(named) - 1
    # Recipes from YAML are mappings; they become sorted pairs, so equal recipes compare equal.
    assert hparams.layer_lr[0] == ("visual.conv1", 0.0) and hash(hparams) == hash(FinetuneHparams(**{
        "lr": 1e-3, "epochs": 1, "weight_decay": 0.1, "layer_lr": dict(reversed(hparams.layer_lr)),
        "layer_weight_decay": hparams.layer_weight_decay}))
    with pytest.raises(ValueError, match="matches no parameter"):
        param_groups(model, FinetuneHparams(lr=1e-3, epochs=1, layer_lr={"visual.transformer.resblock.0": 0.0}))
    with pytest.raises(ValueError, match=">= 0"):
        FinetuneHparams(lr=1e-3, epochs=1, layer_weight_decay={"visual.conv1": -1.0})


def test_frozen_layers_stay_and_decayed_layers_shrink():
    from interpsharp.demo.finetune import finetune_classifier

    from conftest import TINY_ARCH, tiny_classifier

    theta_0 = tiny_classifier(seed=1)
    images = torch.randint(0, 256, (64, 3, TINY_ARCH.image_size, TINY_ARCH.image_size), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0)).numpy()
    labels = np.arange(64) % TINY_ARCH.num_classes
    frozen, decayed = "visual.transformer.resblocks.0.attn", "visual.transformer.resblocks.1.mlp.c_proj"
    hparams = FinetuneHparams(lr=1e-3, epochs=3, batch_size=16, warmup_steps=1,
                              layer_lr={frozen: 0.0}, layer_weight_decay={decayed: 300.0})
    model, _ = finetune_classifier(theta_0, images, labels, hparams, seed=0, threads=1, progress=False)
    before, after = theta_0.state_dict(), model.state_dict()
    for name in after:
        if name.startswith(frozen):
            assert torch.equal(after[name], before[name]), name
    assert all(p.requires_grad for p in model.parameters())  # frozen for the optimiser only
    # 12 steps of decoupled decay lr * 300 (0.3 at the peak, cosine after it): the layer keeps a
    # few per cent of its norm, while a layer with the default decay keeps nearly all of it.
    shrink = after[f"{decayed}.weight"].norm() / before[f"{decayed}.weight"].norm()
    other = after["visual.transformer.resblocks.0.mlp.c_proj.weight"].norm() / \
        before["visual.transformer.resblocks.0.mlp.c_proj.weight"].norm()
    assert shrink < 0.2 and 0.9 < other < 1.1, (shrink, other)
