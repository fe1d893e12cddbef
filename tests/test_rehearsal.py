"""The paper world rehearsed for real (config/rehearsal.yaml): every paper-world rule runs on a
CPU against stand-ins in the real layouts, served by a loopback HTTP server, so a glue bug
between download_finetuned, download_dataset, unpack_dataset, build_cache,
build_zeroshot_classifier and the rest shows here and not on a user's GPU allocation.

One run (module fixture) feeds every test; a second run must verify every download and rerun
nothing; a download changed afterwards must stop the next run before any job.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import open_clip
import pytest
import torch
import torch.nn.functional as F

from interpsharp.checkpoints import SPEC_KEY, load_classifier, read_checkpoint
from interpsharp.class_maps import OBJECTNET_IMAGES, objectnet_classes
from interpsharp.data import load_cache
from interpsharp.datasets import imagenet_class_subset

from test_workflow import ROOT, snakemake
from worlds import loopback_server, paper_world_standins

pytestmark = pytest.mark.slow

REHEARSAL = ROOT / "config" / "rehearsal.yaml"
RESOURCES = "resources/paper"


@pytest.fixture(scope="module")
def rehearsal():
    """Stand-ins written and served, the rehearsal config run once; yields what the tests read."""
    with tempfile.TemporaryDirectory(prefix="interpsharp-rehearsal-") as tmp:
        work = Path(tmp)
        served = paper_world_standins(work / "rehearsal")
        with loopback_server(served) as server:
            config = work / "config.yaml"
            config.write_text(REHEARSAL.read_text().replace("PORT", str(server.port)))
            start = time.perf_counter()
            run = snakemake(["-j2", "--configfile", str(config), "--show-failed-logs"], work, timeout=1500)
            seconds = time.perf_counter() - start
            assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
            yield SimpleNamespace(work=work, config=config, served=served, server=server, seconds=seconds,
                                  output=run.stdout + run.stderr)


def test_every_paper_world_rule_ran(rehearsal, capsys):
    listed = snakemake(["--list-rules", "--configfile", str(rehearsal.config)], rehearsal.work)
    rules = set(listed.stdout.split()) - {"all"}
    assert {"download_finetuned", "download_dataset", "unpack_dataset", "build_cache", "id_classes",
            "build_zeroshot_classifier", "evaluate_interpolation", "prune_stragglers", "report_html"} <= rules
    benchmarks = rehearsal.work / "results/paper/benchmarks"
    ran = {p.name for p in benchmarks.iterdir() if any(p.rglob("*.tsv"))}
    assert ran == rules
    jobs = {rule: len(list((benchmarks / rule).rglob("*.tsv"))) for rule in sorted(ran)}
    with capsys.disabled():
        print(f"\nrehearsal: {sum(jobs.values())} jobs in {rehearsal.seconds:.0f} s wall: {jobs}")
    assert (rehearsal.work / "results/paper/report.html").stat().st_size > 10_000


def test_the_manifest_records_the_sha256_of_every_file_served(rehearsal):
    manifest = json.loads((rehearsal.work / RESOURCES / "downloads/manifest.json").read_text())
    expected = {Path(path).name: hashlib.sha256(data).hexdigest() for path, data in rehearsal.served.items()}
    assert {name: entry["sha256"] for name, entry in manifest.items()} == expected
    assert all(entry["url"].startswith(rehearsal.server.url) for entry in manifest.values())


def test_caches_come_from_the_real_layouts_with_their_class_relations(rehearsal):
    caches = rehearsal.work / RESOURCES / "caches"
    imagenet = load_cache(caches / "imagenet")
    assert imagenet.classnames == list(open_clip.IMAGENET_CLASSNAMES) and imagenet.meta["num_found"] == 1000
    a = load_cache(caches / "imagenet-a")
    assert a.class_subset == imagenet_class_subset("imagenet_a") and a.meta["num_found"] == 200
    assert load_cache(caches / "imagenet-r").class_subset == imagenet_class_subset("imagenet_r")
    assert load_cache(caches / "imagenetv2").meta["layout"] == "imagenetv2"
    objectnet = load_cache(caches / "objectnet")
    assert objectnet.class_groups == objectnet_classes().imagenet_groups
    assert objectnet.meta["num_found"] == OBJECTNET_IMAGES and "crop 2 px" in objectnet.meta["preprocess"]
    for name in ("imagenet", "imagenet-a", "imagenet-r", "imagenet-sketch", "imagenetv2", "objectnet"):
        cache = load_cache(caches / name)
        assert len(cache) == 24 and cache.images.shape[-1] == 16, name  # datasets.limit; the model's 16 px


def test_theta_0_is_open_clips_tower_from_the_local_weights_with_the_zeroshot_head(rehearsal):
    weights = torch.load(rehearsal.work / "rehearsal/clip.pt", weights_only=True)
    theta_0 = load_classifier(rehearsal.work / RESOURCES / "checkpoints/zeroshot.pt")
    assert theta_0.arch.head_width == 32 and SPEC_KEY in read_checkpoint(rehearsal.work / RESOURCES / "checkpoints/zeroshot.pt")
    for key, value in theta_0.visual.state_dict().items():
        assert torch.equal(value, weights[f"visual.{key}"]), key
    # Three rows of SPEC's head, computed here from the text tower with the configured templates.
    name = "interpsharp-rehearsal-vit"
    clip = open_clip.create_model(name, pretrained=str(rehearsal.work / "rehearsal/clip.pt")).eval()
    tokenizer = open_clip.get_tokenizer(name)
    templates = ["a photo of a {}.", "a sketch of the {}."]
    for index in (0, 409, 999):
        classname = open_clip.IMAGENET_CLASSNAMES[index]
        with torch.no_grad():
            emb = F.normalize(clip.encode_text(tokenizer([t.format(classname) for t in templates])), dim=-1)
            row = clip.logit_scale.exp() * F.normalize(emb.mean(0), dim=0)
        torch.testing.assert_close(theta_0.classification_head.weight[index], row, rtol=1e-5, atol=1e-5)


def test_a_second_run_verifies_every_download_and_reruns_nothing(rehearsal):
    requests = len(rehearsal.server.log)
    again = snakemake(["-j2", "--configfile", str(rehearsal.config)], rehearsal.work)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-3000:]
    assert f"verified {len(rehearsal.served)} downloaded files against {RESOURCES}/downloads/manifest.json" in output
    assert "Nothing to be done" in output
    assert len(rehearsal.server.log) == requests, "a second run must not download anything"


def test_a_download_changed_after_the_fact_stops_the_next_run_before_any_job(rehearsal):
    # Runs last on purpose: it damages the shared run.
    checkpoint = rehearsal.work / RESOURCES / "checkpoints/model_3.pt"
    data = bytearray(checkpoint.read_bytes())
    data[-100] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    before = sorted((rehearsal.work / "results/paper/benchmarks").rglob("*.tsv"))
    failed = snakemake(["-j2", "--configfile", str(rehearsal.config)], rehearsal.work)
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "model_3.pt: sha256" in output and "a downloaded file failed its check; nothing was run" in output
    assert sorted((rehearsal.work / "results/paper/benchmarks").rglob("*.tsv")) == before
