"""The CLI end to end on tiny checkpoints, caches and dataset trees (no downloads)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

from interpsharp.checkpoints import load_classifier, save_classifier
from interpsharp.cli import build_parser, main
from interpsharp.commands.evaluate import PRECISION_CHOICES
from interpsharp.commands.prepare_data import LAYOUT_HELP
from interpsharp.data import load_cache, write_cache
from interpsharp.datasets import LAYOUTS
from interpsharp.evaluate import PRECISIONS, evaluate
from interpsharp.interpolate import interpolate
from interpsharp.layers import layer_groups
from interpsharp.tables import read_tsv

from conftest import TINY_ARCH, tiny_classifier
from dataset_trees import make_flat_tree, wnids


def _subcommands() -> list[str]:
    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(actions[0].choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help(command: str, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: interpsharp {command}" in capsys.readouterr().out


def _options(command: str) -> dict[str, argparse.Action]:
    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: action for action in actions[0].choices[command]._actions for name in action.option_strings}


def test_commands_that_run_a_model_share_one_definition_of_its_options():
    """interpsharp/commands/_arguments.py defines them once: a command running a model over
    images (it has --batch-size) takes every one of them, with the same meaning and default;
    every command that loads a checkpoint takes the same --head-width. check-precision compares
    precisions (--candidates), so it alone has no --precision."""
    shared = ("--batch-size", "--device", "--precision", "--head-width", "--no-progress")
    runners = {command: _options(command) for command in _subcommands() if "--batch-size" in _options(command)}
    assert {"evaluate", "sharpness"} <= set(runners)
    reference = runners["evaluate"]
    for command, options in runners.items():
        for name in shared:
            if name == "--precision" and "--candidates" in options:
                continue
            assert name in options, f"{command} lacks {name}"
            same = ("default", "type", "nargs") + (() if name == "--precision" else ("help",))
            assert [getattr(options[name], key) for key in same] == [getattr(reference[name], key) for key in same], (command, name)
        assert "fp32" in options.get("--precision", options.get("--candidates")).choices
    # --head-width only fills in what a checkpoint does not record (None: take the recorded one);
    # zeroshot reads it from the open_clip model config instead.
    loaders = ("evaluate", "sharpness", "interpolate", "prune", "layers", "check-precision")
    assert {_options(command)["--head-width"].default for command in loaders} == {None}
    assert len({_options(command)["--head-width"].help for command in loaders}) == 1
    assert "--head-width" not in _options("zeroshot")


def test_help_texts_written_out_match_the_registries():
    assert PRECISION_CHOICES == tuple(PRECISIONS)
    for name in LAYOUTS:
        assert name in LAYOUT_HELP


@pytest.fixture
def checkpoints(tmp_path: Path) -> tuple[Path, Path]:
    zs, ft = tmp_path / "zeroshot.pt", tmp_path / "ft_3.pt"
    save_classifier(tiny_classifier(seed=20), zs)
    save_classifier(tiny_classifier(seed=21), ft)
    return zs, ft


def test_interpolate_writes_theta_alpha(checkpoints, tmp_path: Path):
    zs, ft = checkpoints
    out = tmp_path / "mix.pt"
    assert main(["interpolate", str(zs), str(ft), "--alpha", "0.25", "-o", str(out)]) == 0
    theta_0 = load_classifier(zs).state_dict()
    theta_1 = load_classifier(ft).state_dict()
    expected = interpolate(theta_0, theta_1, 0.25)
    got = load_classifier(out).state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, atol=0, rtol=0)
    assert all(not torch.equal(got[k], theta_0[k]) for k in got)  # every tensor moved, head included


def test_interpolate_one_layer(checkpoints, tmp_path: Path):
    zs, ft = checkpoints
    out = tmp_path / "layer.pt"
    layer = "visual.transformer.resblocks.0.attn"
    assert main(["interpolate", str(zs), str(ft), "--alpha", "1", "--layer", layer, "-o", str(out)]) == 0
    theta_0, theta_1 = load_classifier(zs).state_dict(), load_classifier(ft).state_dict()
    got = load_classifier(out).state_dict()
    names = set(layer_groups(load_classifier(zs))[layer])
    assert names == {f"{layer}.in_proj_weight", f"{layer}.in_proj_bias"}
    for key in got:
        assert torch.equal(got[key], theta_1[key] if key in names else theta_0[key]), key


def test_interpolate_refusals(checkpoints, tmp_path: Path, capsys):
    zs, ft = checkpoints
    assert main(["interpolate", str(zs), str(ft), "--alpha", "1.5", "-o", str(tmp_path / "x.pt")]) == 2
    assert "--alpha 1.5 is outside [0, 1]" in capsys.readouterr().err
    assert main(["interpolate", str(zs), str(ft), "--alpha", "0.5", "--layer", "visual.nope", "-o", str(tmp_path / "x.pt")]) == 2
    assert "no layer 'visual.nope'" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_evaluate_writes_the_path_table(checkpoints, tmp_path: Path):
    zs, ft = checkpoints
    rng = np.random.default_rng(0)
    data = []
    for name, n in (("set-one", 7), ("set-two", 5)):
        images = rng.integers(0, 256, (n, 3, TINY_ARCH.image_size, TINY_ARCH.image_size), dtype=np.uint8)
        write_cache(tmp_path / f"dir-{name}", images, rng.integers(0, 5, n), list("abcde"), meta={"name": name})
        data.append(str(tmp_path / f"dir-{name}"))
    out = tmp_path / "results" / "path.tsv"
    argv = ["evaluate", str(zs), str(ft), "--alphas", "0", "1", "--data", *data,
            "--batch-size", "3", "--device", "cpu", "--no-progress", "-o", str(out)]
    assert main(argv) == 0
    df = read_tsv(out, required=["model", "dataset", "alpha", "metric", "value", "n"])
    assert list(df.columns) == ["model", "dataset", "split", "alpha", "metric", "value", "n"]
    assert set(df["model"]) == {"ft_3"} and set(df["dataset"]) == {"set-one", "set-two"} and len(df) == 8
    assert set(df["split"]) == {"all"}
    for alpha, ckpt in ((0.0, zs), (1.0, ft)):
        for directory in data:
            cache = load_cache(directory)
            direct = evaluate(load_classifier(ckpt), cache, batch_size=3, device="cpu", progress=False)
            rows = df[(df.alpha == alpha) & (df.dataset == cache.name)].set_index("metric")
            assert rows.loc["accuracy", "value"] == pytest.approx(direct.accuracy, abs=1e-12)
            assert rows.loc["loss", "value"] == pytest.approx(direct.loss, rel=1e-6)
            assert set(rows["n"]) == {len(cache)}


def test_evaluate_layerwise_matches_a_checkpoint_with_that_layer_interpolated(checkpoints, tmp_path: Path):
    """Two CLI routes to one model: `evaluate --layers L --alphas a` and `interpolate --layer L
    --alpha a` followed by a plain evaluation of that checkpoint."""
    zs, ft = checkpoints
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (9, 3, TINY_ARCH.image_size, TINY_ARCH.image_size), dtype=np.uint8)
    write_cache(tmp_path / "c", images, rng.integers(0, 5, 9), list("abcde"), meta={"name": "c"})
    layers = ["visual.transformer.resblocks.1.mlp.c_fc", "visual.proj"]
    out = tmp_path / "layerwise.tsv"
    common = ["--data", str(tmp_path / "c"), "--batch-size", "4", "--device", "cpu", "--no-progress"]
    assert main(["evaluate", str(zs), str(ft), "--alphas", "0", "0.6", "--layers", *layers, *common, "-o", str(out)]) == 0
    df = read_tsv(out, required=["model", "dataset", "alpha", "metric", "value", "n", "layer"])
    assert list(dict.fromkeys(df["layer"])) == layers and len(df) == 2 * 2 * 2
    for layer in layers:
        moved = tmp_path / "moved.pt"
        assert main(["interpolate", str(zs), str(ft), "--alpha", "0.6", "--layer", layer, "-o", str(moved)]) == 0
        direct = evaluate(load_classifier(moved), load_cache(tmp_path / "c"), batch_size=4, device="cpu", progress=False)
        rows = df[(df.layer == layer) & (df.alpha == 0.6)].set_index("metric")
        assert rows.loc["loss", "value"] == pytest.approx(direct.loss, rel=1e-6)
        assert rows.loc["accuracy", "value"] == pytest.approx(direct.accuracy, abs=1e-12)
    zero = df[df.alpha == 0.0].groupby("metric")["value"].nunique()
    assert (zero == 1).all(), "at alpha 0 every layer's model is theta_0"
    assert main(["evaluate", str(zs), str(ft), "--alphas", "1", "--layers", "visual.nope", *common,
                 "-o", str(tmp_path / "x.tsv")]) == 2
    assert not (tmp_path / "x.tsv").exists()


def test_prepare_data_builds_a_cache_and_reports_layout_errors(tmp_path: Path, capsys):
    root = tmp_path / "imagenet-r"
    make_flat_tree(root, wnids(200, seed=5))
    out = tmp_path / "caches" / "r"
    argv = ["prepare-data", "--layout", "imagenet-r", "--root", str(root), "--image-size", "8", "-o", str(out), "--no-progress"]
    assert main(argv) == 0
    cache = load_cache(out)
    assert len(cache) == 200 and cache.name == "imagenet-r" and cache.images.shape[1:] == (3, 8, 8)
    assert main(["prepare-data", "--layout", "imagenet-a", "--root", str(root / "missing"), "-o", str(out)]) == 2
    assert "missing: does not exist; expected the ImageNet-A root" in capsys.readouterr().err


def test_zeroshot_from_a_local_open_clip_checkpoint(tiny_clip_name: str, tmp_path: Path):
    torch.manual_seed(0)
    clip = open_clip.create_model(tiny_clip_name, pretrained=None).eval()
    weights = tmp_path / "tiny_clip.pt"
    torch.save(clip.state_dict(), weights)
    (tmp_path / "classes.txt").write_text("goldfish\n\ngreat white shark\ntiger shark\n")
    templates = ["a photo of a {}.", "a drawing of the {}."]
    (tmp_path / "templates.txt").write_text("\n".join(templates) + "\n")
    out = tmp_path / "zeroshot.pt"
    argv = ["zeroshot", "--model", tiny_clip_name, "--pretrained", str(weights), "--classnames", str(tmp_path / "classes.txt"),
            "--templates", str(tmp_path / "templates.txt"), "--device", "cpu", "-o", str(out)]
    assert main(argv) == 0
    model = load_classifier(out, head_width=TINY_ARCH.head_width)

    # SPEC's head, computed here directly from the text tower.
    tokenizer = open_clip.get_tokenizer(tiny_clip_name)
    with torch.no_grad():
        rows = []
        for name in ("goldfish", "great white shark", "tiger shark"):
            emb = F.normalize(clip.encode_text(tokenizer([t.format(name) for t in templates])), dim=-1)
            rows.append(F.normalize(emb.mean(0), dim=0))
        expected = clip.logit_scale.exp() * torch.stack(rows)
    torch.testing.assert_close(model.classification_head.weight, expected, atol=1e-5, rtol=1e-5)
    assert torch.count_nonzero(model.classification_head.bias) == 0
    for key, value in clip.visual.state_dict().items():
        assert torch.equal(model.visual.state_dict()[key], value), key


def test_zeroshot_rejects_templates_without_placeholder(tmp_path: Path, capsys):
    (tmp_path / "templates.txt").write_text("a photo.\n")
    argv = ["zeroshot", "--templates", str(tmp_path / "templates.txt"), "--classnames", "imagenet", "-o", str(tmp_path / "z.pt")]
    assert main(argv) == 2
    assert "templates without '{}'" in capsys.readouterr().err
