"""The custom world end to end: config/example-custom.yaml with its EDIT values pointed at tiny
local files, run on a CPU. The same code paths as a user's run: a GELU tower (open_clip, from a
local weights file), fine-tunes as files in two formats (a model-soups state dict, and an
open_clip training checkpoint scored with its own text tower's zero-shot head), image folders
as ID and OOD sets (one a declared subset), through every rule that loads a model. The tables'
statistics, figures and report are the same code whichever world made the checkpoints (the demo
and rehearsal runs cover them), so this run stops at the per-rule tables to save CI time."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

from interpsharp.checkpoints import load_classifier
from interpsharp.data import load_cache

from dataset_trees import make_tree
from test_workflow import ROOT, snakemake
from worlds import finetuned_state, model_soups_format, tiny_clip, tiny_clip_config

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "config" / "example-custom.yaml"
CLASSES = ["barn_owl", "golden_retriever", "red_fox", "tabby_cat"]
#: Every rule that loads a model runs for these; statistics, figures and the report do not.
TARGETS = [f"results/custom/tables/{table}.tsv" for table in
           ("evaluation", "general_sharpness", "layerwise_sharpness", "layerwise_interpolation", "pruning")]


def custom_config(work: Path) -> Path:
    """config/example-custom.yaml as a user edits it: the EDIT values point at the files under
    ``work``; a tiny CPU budget replaces the paper world's sizes."""
    config = yaml.safe_load(EXAMPLE.read_text())
    config["zeroshot"].update(model_name="interpsharp-custom-vit", pretrained="mine/clip.pt",
                              model_config="mine/interpsharp-custom-vit.json")
    checkpoints = config["finetuned"]["checkpoints"]
    checkpoints["lr_1e-5"]["path"] = "mine/lr_1e-5.pt"
    checkpoints["lr_3e-5"]["path"] = "mine/lr_3e-5/epoch_10.pt"
    sources = config["datasets"]["sources"]
    sources["mydata"]["path"] = "data/mydata/val"
    sources["mydata-shifted"]["path"] = "data/mydata-shifted"
    sources["mydata-two"] = {"layout": "imagefolder", "path": "data/mydata-two", "subset": True}
    config["datasets"]["ood"] = ["mydata-shifted", "mydata-two"]
    config.update(
        compute={"device": "cpu", "gpus": 0, "path_jobs": "per_model", "gpu_job_threads": 1, "cpu_job_threads": 1,
                 "gpu_job_mem_mb": 2000, "cpu_job_mem_mb": 1000},
        interpolation={"alphas": [0.0, 0.5, 1.0]},
        evaluation={"batch_size": 64, "precision": "fp32"},
        general_sharpness={"rho_sweep": [], "n_iter": 1, "n_samples": 16, "batch_size": 16},
        layerwise_sharpness={"n_iter": 1, "n_samples": 16, "batch_size": 16},
        layerwise_interpolation={"batch_size": 64, "precision": "fp32"},
        stragglers={"n_iter": 2, "n_samples": 16},  # not the sweep's draws: detection draws its own
        pruning={"mask_seeds": [0]},
        statistics={"n_boot": 50},
    )
    path = work / "my-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def custom_run():
    with tempfile.TemporaryDirectory(prefix="interpsharp-custom-world-") as tmp:
        work = Path(tmp)
        name = tiny_clip_config(work / "mine/interpsharp-custom-vit.json", quick_gelu=False)
        clip = tiny_clip(name, seed=1)
        torch.save(clip.state_dict(), work / "mine/clip.pt")
        torch.save(model_soups_format(finetuned_state(clip, len(CLASSES), seed=2)), work / "mine/lr_1e-5.pt")
        trained = {f"module.{k}": v for k, v in finetuned_state(clip, len(CLASSES), seed=3).items()
                   if not k.startswith("classification_head.")}
        (work / "mine/lr_3e-5").mkdir()
        torch.save({"epoch": 10, "name": "lr_3e-5", "state_dict": trained}, work / "mine/lr_3e-5/epoch_10.pt")
        make_tree(work / "data/mydata/val", CLASSES, 6, seed=4)
        make_tree(work / "data/mydata-shifted", list(reversed(CLASSES)), 5, seed=5)
        make_tree(work / "data/mydata-two", ["red_fox", "barn_owl"], 4, seed=6)
        config = custom_config(work)
        start = time.perf_counter()
        # The targets go first: --configfile takes every argument after it.
        run = snakemake([*TARGETS, "-j2", "--show-failed-logs", "--configfile", str(config)], work, timeout=1500)
        seconds = time.perf_counter() - start
        assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
        yield SimpleNamespace(work=work, config=config, clip=clip, seconds=seconds)


def test_every_rule_that_loads_a_model_ran(custom_run, capsys):
    benchmarks = custom_run.work / "results/custom/benchmarks"
    ran = {p.name for p in benchmarks.iterdir() if any(p.rglob("*.tsv"))}
    assert ran == {"id_classes", "build_cache", "build_zeroshot_classifier", "import_finetuned", "evaluate_interpolation",
                   "general_sharpness", "layerwise_sharpness", "layerwise_interpolation", "detect_stragglers",
                   "prune_stragglers", "collect_table"}
    jobs = {rule: len(list((benchmarks / rule).rglob("*.tsv"))) for rule in sorted(ran)}
    with capsys.disabled():
        print(f"\ncustom world: {sum(jobs.values())} jobs in {custom_run.seconds:.0f} s wall: {jobs}")
    assert jobs["import_finetuned"] == 2 and jobs["build_cache"] == 3


def test_theta_0_is_the_gelu_tower_with_a_head_for_the_id_folders(custom_run):
    theta_0 = load_classifier(custom_run.work / "resources/custom/checkpoints/zeroshot.pt")
    assert theta_0.arch.act == "gelu" and theta_0.arch.head_width == 32 and theta_0.arch.num_classes == 4
    cache = load_cache(custom_run.work / "resources/custom/caches/mydata")
    assert cache.classnames == [c.replace("_", " ") for c in CLASSES]
    shifted = load_cache(custom_run.work / "resources/custom/caches/mydata-shifted")
    assert shifted.classnames == cache.classnames and shifted.class_subset is None
    two = load_cache(custom_run.work / "resources/custom/caches/mydata-two")
    assert two.classnames == ["barn owl", "red fox"] and two.class_subset == [0, 2]


def test_both_file_formats_were_imported_with_theta_0s_tower(custom_run):
    checkpoints = custom_run.work / "resources/custom/checkpoints"
    soups = torch.load(custom_run.work / "mine/lr_1e-5.pt", weights_only=True)
    imported = load_classifier(checkpoints / "lr_1e-5.pt")
    assert imported.arch.act == "gelu"
    for key, value in imported.state_dict().items():
        original = soups[key] if key.startswith("classification_head.") else soups[f"model.{key}"]
        assert torch.equal(value, original), key
    trained = load_classifier(checkpoints / "lr_3e-5.pt")
    assert trained.arch.act == "gelu" and trained.classification_head.weight.shape == (4, 16)
    assert torch.count_nonzero(trained.classification_head.bias) == 0  # a zero-shot head


def test_the_zero_shot_accuracy_in_the_tables_is_open_clips_gelu_tower_on_the_cached_images(custom_run):
    """alpha = 0 recomputed outside the workflow: open_clip's own GELU encode_image, OpenAI's
    normalisation (the tiny config names none), theta_0's head."""
    theta_0 = load_classifier(custom_run.work / "resources/custom/checkpoints/zeroshot.pt")
    clip = custom_run.clip
    table = pd.read_csv(custom_run.work / "results/custom/tables/evaluation.tsv", sep="\t")
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    for dataset in ("mydata", "mydata-shifted", "mydata-two"):
        cache = load_cache(custom_run.work / "resources/custom/caches" / dataset)
        x = (torch.from_numpy(np.array(cache.images)).float() / 255 - mean) / std
        with torch.no_grad():
            logits = F.normalize(clip.encode_image(x), dim=-1) @ theta_0.classification_head.weight.T
        if cache.class_subset is not None:
            logits = logits[:, cache.class_subset]
        expected = (logits.argmax(dim=1).numpy() == cache.labels).mean()
        rows = table[(table["dataset"] == dataset) & (table["split"] == "all") & (table["alpha"] == 0)
                     & (table["metric"] == "accuracy")]
        assert len(rows) == 2 and np.allclose(rows["value"], expected), dataset
