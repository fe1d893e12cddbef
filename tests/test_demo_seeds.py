"""The demo world's size-independent claims, rebuilt at reduced size under two world seeds (issue 13).

Other CPUs give other floats, and pretraining amplifies them, so what the README says about the
demo world must hold for any seed, not for one machine's decimals. Seeds stand in for machines
here: each builds a smaller world (a tenth of the pretraining, fewer images, three of the
sweep's recipes) and checks, with the pipeline's own library calls, the claims that do not
depend on size:

- the zero-shot model is above chance (10 classes) by more than 5 standard errors in
  distribution, and the fine-tunes with large steps beat it there;
- the recipe that decays block 1's attention output makes that layer a straggler by sharpness
  (layer-wise sharpness at alpha = 1 consistent with 0 and under the threshold), and the other
  recipes do not.

What needs the full-size world (zero-shot accuracies, outcomes on clutter, stragglers by
interpolation, pruning, Figure 2) is measured on full runs for seeds 0, 1 and 2 by
``benchmarks/demo_content.py`` and stated as ranges in the README. At this size the zero-shot
model is too weak for those: at 300 steps it reached 20-30% on photo, and moving the decayed
layer alone did not raise the clutter loss beyond delta.
"""

from __future__ import annotations

import math

import pytest

from interpsharp.checkpoints import load_classifier
from interpsharp.data import load_cache
from interpsharp.demo.captions import PRETRAIN_STYLES
from interpsharp.demo.finetune import DEFAULT_SWEEP
from interpsharp.demo.pretrain import PretrainConfig
from interpsharp.demo.world import WorldConfig, WorldLayout, build_world
from interpsharp.evaluate import evaluate_path, normalize_images
from interpsharp.interpolate import InterpolationPath
from interpsharp.sharpness import layerwise_sharpness
from interpsharp.stragglers import stragglers_by_sharpness
from interpsharp.subsets import select_subset

pytestmark = pytest.mark.slow

DECAYED = "visual.transformer.resblocks.1.attn.out_proj"
#: The sweep's recipes checked here (DEFAULT_SWEEP is config/demo.yaml's sweep, tested in
#: test_demo_world.py): the smallest step, a large one, and the decayed branch.
RECIPES = {
    "lr_1e-5": DEFAULT_SWEEP[0],
    "lr_1e-3_smoothed": DEFAULT_SWEEP[2],
    "decayed": DEFAULT_SWEEP[5],
}
#: The straggler thresholds of config.yaml and config/demo.yaml (stragglers.eps, eps_rel, k).
EPS, EPS_REL, K = 1e-3, 1e-3, 2.0


def reduced_world(seed: int) -> WorldConfig:
    """The demo world at about a tenth of its build time: same recipes, fewer images and steps."""
    assert dict(DEFAULT_SWEEP[5].layer_weight_decay).get(DECAYED) == 3000.0, "the sweep's decayed recipe moved"
    return WorldConfig(
        seed=seed,
        eval_images=400,
        train_images=2000,
        set_images={"clutter": 600},
        pretrain=PretrainConfig(images_per_style={s: 2000 for s in PRETRAIN_STYLES}, steps=300, batch_size=128,
                                warmup_steps=20),
        sweep=tuple(RECIPES.values()),
    )


@pytest.fixture(scope="module", params=[0, 1], ids=["seed0", "seed1"])
def world(request, tmp_path_factory) -> WorldLayout:
    root = tmp_path_factory.mktemp(f"seed{request.param}") / "world"
    build_world(root, reduced_world(request.param), threads=2)
    return WorldLayout(root)


def path_of(world: WorldLayout, i: int):
    model = load_classifier(world.zeroshot)
    theta_1 = load_classifier(world.finetuned(i), like=model)
    return model, InterpolationPath(model.state_dict(), theta_1.state_dict())


def accuracy(table, dataset: str, alpha: float) -> float:
    rows = table[(table["dataset"] == dataset) & (table["alpha"] == alpha) & (table["metric"] == "accuracy")
                 & (table["split"] == "all")]
    return float(rows["value"].iloc[0])


def test_zero_shot_above_chance_and_large_step_fine_tunes_beat_it_in_distribution(world):
    photo = {"photo": load_cache(world.data / "photo")}
    n, chance = len(photo["photo"]), 0.1
    for i, name in enumerate(RECIPES):
        model, path = path_of(world, i)
        table = evaluate_path(model, path, photo, [0.0, 1.0], progress=False)
        zero_shot, fine_tuned = accuracy(table, "photo", 0.0), accuracy(table, "photo", 1.0)
        assert zero_shot > chance + 5 * math.sqrt(chance * (1 - chance) / n), f"zero-shot photo accuracy {zero_shot:.3f}"
        if name != "lr_1e-5":  # at this size lr 1e-5 barely moves: 22.0% against 22.5% (seed 0)
            assert fine_tuned > zero_shot, f"{name}: fine-tuned {fine_tuned:.3f} <= zero-shot {zero_shot:.3f}"


def flagged_by_sharpness(world: WorldLayout, i: int) -> set[str]:
    model, path = path_of(world, i)
    clutter = load_cache(world.data / "clutter")
    images, labels = next(clutter.batches(250, select_subset(len(clutter), 250, 0)))
    table = layerwise_sharpness(model, path, [1.0], normalize_images(images, model.preprocess), labels, [1.0], 3, 0,
                                batch_size=250, progress=False)
    flags = stragglers_by_sharpness(table, EPS, EPS_REL, alpha=1.0, k=K)
    return set(flags.loc[flags["straggler"], "layer"])


def test_the_decayed_branch_is_a_straggler_by_sharpness_only_in_its_recipe(world):
    decayed = list(RECIPES).index("decayed")
    assert DECAYED in flagged_by_sharpness(world, decayed)
    for i, name in enumerate(RECIPES):
        if i != decayed:
            assert DECAYED not in flagged_by_sharpness(world, i), name

