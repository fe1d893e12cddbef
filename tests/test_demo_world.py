"""The micro demo world end to end: every step, the paper world's formats, bit-identical rebuilds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from interpsharp.checkpoints import load_classifier, read_state_dict
from interpsharp.cli import main
from interpsharp.data import load_cache
from interpsharp.demo.captions import TEMPLATES
from interpsharp.demo.images import CLASSNAMES
from interpsharp.demo.model_config import create_tiny_clip
from interpsharp.demo.world import EVAL_SETS, TRAIN_SET, WorldConfig, WorldLayout, build_world, world_seeds
from interpsharp.evaluate import evaluate
from interpsharp.layers import layer_groups
from test_demo_model import independent_zeroshot_head

CONFIG = WorldConfig.micro(seed=5)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> WorldLayout:
    root = tmp_path_factory.mktemp("micro") / "world"
    assert main(["demo", "build", "--micro", "--seed", "5", "--threads", "1", "--out", str(root)]) == 0
    return WorldLayout(root)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _checkpoints(layout: WorldLayout) -> list[Path]:
    return [layout.clip, layout.zeroshot] + [layout.finetuned(i) for i in range(len(CONFIG.sweep))]


def test_rebuild_is_bit_identical(world, tmp_path):
    timings = build_world(tmp_path / "again", CONFIG, threads=1)
    assert set(timings) == {"images", "pretrain", "zeroshot", "finetune_0", "finetune_1", "total"}
    again = WorldLayout(tmp_path / "again")
    for first, second in zip(_checkpoints(world), _checkpoints(again)):
        a, b = read_state_dict(first), read_state_dict(second)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), first.name
        assert _sha256(first) == _sha256(second), first.name  # same bytes, so rebuilds can be checksummed
    for name in [*EVAL_SETS, TRAIN_SET]:
        np.testing.assert_array_equal(load_cache(world.data / name).images, load_cache(again.data / name).images)


def test_other_seed_gives_other_world(world, tmp_path):
    other = WorldLayout(tmp_path / "other")
    build_world(other.root, WorldConfig.micro(seed=6), threads=1)
    a, b = read_state_dict(world.finetuned(0)), read_state_dict(other.finetuned(0))
    assert not torch.equal(a["model.visual.conv1.weight"], b["model.visual.conv1.weight"])


def test_data_sets_use_disjoint_seeds_and_images(world):
    seeds = world_seeds(CONFIG)
    cache_seeds = {name: load_cache(world.data / name).meta["seed"] for name in [*EVAL_SETS, TRAIN_SET]}
    pretrain_seeds = json.loads(world.clip.with_suffix(".json").read_text())["data_seeds"]
    all_seeds = list(cache_seeds.values()) + list(pretrain_seeds.values())
    assert len(set(all_seeds)) == len(all_seeds) and set(all_seeds) <= set(seeds.values())

    def hashes(name: str) -> set[str]:
        return {hashlib.sha256(img.tobytes()).hexdigest() for img in np.asarray(load_cache(world.data / name).images)}

    assert not hashes(TRAIN_SET) & hashes("photo")
    assert load_cache(world.data / TRAIN_SET).meta["style"] == "photo"


def test_zeroshot_head_is_the_paper_worlds_head(world):
    clip = create_tiny_clip(pretrained=str(world.clip)).eval()
    theta_0 = load_classifier(world.zeroshot)
    expected = independent_zeroshot_head(clip, CLASSNAMES, TEMPLATES)
    torch.testing.assert_close(theta_0.classification_head.weight, expected, rtol=1e-5, atol=1e-5)
    record = json.loads(world.zeroshot.with_suffix(".json").read_text())
    assert record["templates"] == list(TEMPLATES) and record["classnames"] == list(CLASSNAMES)


def test_finetunes_are_model_soups_checkpoints_with_records(world):
    theta_0 = load_classifier(world.zeroshot)
    for i, hparams in enumerate(CONFIG.sweep):
        model = load_classifier(world.finetuned(i))
        assert list(layer_groups(model)) == list(layer_groups(theta_0))
        record = json.loads(world.finetuned(i).with_suffix(".json").read_text())
        assert record["hparams"]["lr"] == hparams.lr and record["seed"] == world_seeds(CONFIG)[f"finetune/{i}"]
        assert record["steps"] == hparams.epochs * (CONFIG.train_images // hparams.batch_size)
        moved = [k for k, v in model.state_dict().items() if not torch.equal(v, theta_0.state_dict()[k])]
        assert "visual.conv1.weight" in moved and "classification_head.weight" in moved  # end to end
        result = evaluate(model, load_cache(world.data / "photo"), batch_size=16, device="cpu", progress=False)
        assert result.n == CONFIG.eval_images and 0.0 <= result.accuracy <= 1.0


def test_build_record_lists_stage_timings(world):
    record = json.loads((world.root / "build.json").read_text())
    assert record["config"]["seed"] == 5 and record["threads"] == 1
    assert record["seconds"]["total"] == pytest.approx(sum(v for k, v in record["seconds"].items() if k != "total"),
                                                       abs=0.05)


def test_default_world_is_the_one_config_demo_yaml_builds():
    """`interpsharp demo build` (WorldConfig defaults), the schema defaults and config/demo.yaml
    describe one world, so the CLI, the library and `make demo` do not drift apart."""
    import yaml

    from interpsharp.demo.finetune import DEFAULT_SWEEP, FinetuneHparams

    root = Path(__file__).resolve().parents[1]
    demo = yaml.safe_load((root / "config" / "demo.yaml").read_text())["demo"]
    schema = yaml.safe_load((root / "workflow_schemas" / "config.schema.yaml").read_text())
    defaults = schema["properties"]["demo"]["properties"]
    world = WorldConfig()
    assert tuple(FinetuneHparams(**r) for r in demo["finetune"]["recipes"]) == DEFAULT_SWEEP == world.sweep
    assert tuple(FinetuneHparams(**r) for r in defaults["finetune"]["properties"]["recipes"]["default"]) == DEFAULT_SWEEP
    assert WorldConfig(set_images=defaults["set_images"]["default"]).set_images == world.set_images == ()
    assert WorldConfig(set_images=demo["set_images"]).images_of("clutter") > world.eval_images
    assert (demo["eval_images"], demo["train_images"], demo["pretrain"]["steps"]) == \
        (world.eval_images, world.train_images, world.pretrain.steps)
