"""Any open_clip ViT as theta_0: open_clip's own models with random weights (offline), saved
in every accepted checkpoint format, must give open_clip's logits; non-ViT towers are refused
naming what does not fit; layer counts agree with a count made from open_clip's module tree.

The reference is open_clip itself: ``normalize(clip.encode_image(x)) @ W.T + b``, never our
staged forward.
"""

from __future__ import annotations

import gc
import io
from contextlib import redirect_stdout
from dataclasses import replace
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F

from interpsharp.checkpoints import (
    SPEC_KEY,
    CheckpointError,
    TowerSpec,
    build_zeroshot_classifier,
    classifier_from_clip,
    load_classifier,
    read_head,
    save_classifier,
    zeroshot_head_of_checkpoint,
)
from interpsharp.cli import main
from interpsharp.prefix_cache import PrefixCache
from interpsharp.towers import UnsupportedTowerError, check_model_config, tower_architecture, tower_preprocess

from conftest import TINY_ARCH, tiny_classifier

NUM_CLASSES = 10

#: (open_clip name, activation its modules must have, head width, blocks)
ARCHITECTURES = [
    pytest.param("ViT-B-32-quickgelu", "quick_gelu", 64, 12, id="ViT-B-32-quickgelu"),
    pytest.param("ViT-B-16", "gelu", 64, 12, id="ViT-B-16"),
    pytest.param("ViT-L-14", "gelu", 64, 24, id="ViT-L-14", marks=pytest.mark.slow),
]


def _formats(clip: torch.nn.Module, head: dict[str, torch.Tensor]):
    """(name, object to torch.save, needs a separate head) for every accepted input format."""
    full = clip.state_dict()  # references, not copies: ViT-L-14 is 1.7 GB
    no_text_transformer = {k: v for k, v in full.items() if not k.startswith("transformer.")}
    yield "model-soups", {**{f"model.{k}": v for k, v in no_text_transformer.items()}, **head}, False
    yield "wise-ft state dict", {**{f"image_encoder.model.{k}": v for k, v in full.items()}, **head}, False
    yield "visual + head", {**{k: v for k, v in full.items() if k.startswith("visual.")}, **head}, False
    optimizer = {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0, 1]}]}
    yield "open_clip training (module.)", {"epoch": 3, "name": "ft", "state_dict": {f"module.{k}": v for k, v in full.items()},
                                           "optimizer": optimizer}, True
    yield "open_clip training", {"epoch": 3, "name": "ft", "state_dict": full}, True
    yield "open_clip state dict", full, True


def _layer_count_from_open_clip(visual: torch.nn.Module) -> int:
    """Independent of interpsharp.layers: every open_clip module owning parameters directly is
    one layer (its weight and bias together), every bare parameter of the tower one more, plus
    the classification head."""
    owners = sum(1 for m in visual.modules() if m is not visual and any(True for _ in m.parameters(recurse=False)))
    bare = sum(1 for _ in visual.parameters(recurse=False))
    return owners + bare + 1


@pytest.mark.parametrize("name, act, head_width, blocks", ARCHITECTURES)
def test_every_checkpoint_format_gives_open_clips_logits(name, act, head_width, blocks, tmp_path: Path, capsys):
    torch.manual_seed(0)
    clip = open_clip.create_model(name, pretrained=None).eval()
    g = torch.Generator().manual_seed(1)
    dim = clip.visual.proj.shape[1]
    head = {"classification_head.weight": torch.randn(NUM_CLASSES, dim, generator=g),
            "classification_head.bias": torch.randn(NUM_CLASSES, generator=g)}
    size = clip.visual.image_size[0]
    x = torch.randn(1, 3, size, size, generator=g)
    with torch.no_grad():
        expected = F.normalize(clip.encode_image(x), dim=-1) @ head["classification_head.weight"].T + head["classification_head.bias"]

    theta_0 = classifier_from_clip(clip, head, name)
    assert (theta_0.arch.act, theta_0.arch.head_width, theta_0.arch.layers) == (act, head_width, blocks)
    ours = tmp_path / "ours.pt"
    save_classifier(theta_0, ours)
    del theta_0
    gc.collect()
    # Our own format carries the spec exactly when it is not OpenAI's QuickGELU default.
    assert (SPEC_KEY in torch.load(ours, weights_only=True)) == (act != "quick_gelu")
    reference = load_classifier(ours)
    figures = {}
    with torch.no_grad():
        figures["interpsharp (model-soups + spec)"] = (reference(x) - expected).abs().max().item()
    head_file = tmp_path / "head.pt"
    torch.save({k.removeprefix("classification_head."): v for k, v in head.items()}, head_file)

    for fmt, obj, needs_head in _formats(clip, head):
        path = tmp_path / "ft.pt"
        torch.save(obj, path)
        del obj
        loaded = load_classifier(path, like=reference, head=read_head(head_file) if needs_head else None)
        with torch.no_grad():
            figures[fmt] = (loaded(x) - expected).abs().max().item()
        assert TowerSpec.of(loaded) == TowerSpec.of(reference), fmt
        del loaded
        path.unlink()
        gc.collect()
    with capsys.disabled():
        print(f"\n{name}: max |logit - open_clip's| per format: " + ", ".join(f"{k} {v:.1e}" for k, v in figures.items()))
    assert max(figures.values()) <= 1e-5, figures

    # The layer list `interpsharp layers` prints, against two independent counts.
    capsys.readouterr()
    assert main(["layers", str(ours)]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    assert len(rows) == _layer_count_from_open_clip(clip.visual) == 4 + 6 * blocks + 3


@pytest.mark.parametrize("name", ["ViT-B-32-quickgelu", "ViT-B-16"])
def test_prefix_cache_resumes_bit_for_bit_on_quickgelu_and_gelu_towers(name):
    """Inside a block the cache resumes at the attention residual or the MLP hidden state,
    whose recomputation goes through the tower's own activation."""
    torch.manual_seed(0)
    clip = open_clip.create_model(name, pretrained=None).eval()
    model = classifier_from_clip(clip, {"classification_head.weight": 0.1 * torch.randn(NUM_CLASSES, clip.visual.proj.shape[1])}, name)
    x = torch.randn(2, 3, 224, 224)
    layers = ["visual.transformer.resblocks.7.mlp.c_proj", "visual.transformer.resblocks.7.ln_2",
              "visual.transformer.resblocks.3.attn"]
    cache = PrefixCache(model, [x], layers)
    params = dict(model.named_parameters())
    for layer in layers:
        weight = params[f"{layer}.weight" if not layer.endswith("attn") else f"{layer}.in_proj_weight"]
        with torch.no_grad():
            original = weight.clone()
            weight.mul_(1.5)
            resumed, full = cache.resume(layer, 0), model(x)
            weight.copy_(original)
        assert torch.equal(resumed, full), layer
        assert not torch.equal(full, cache.outputs[0]), layer


@pytest.mark.parametrize(
    "name, feature",
    [
        ("coca_ViT-B-32", "attentional pooling"),
        ("ViT-M-16-alt", "layer scale"),
        ("ViT-B-16-SigLIP", "SigLIP's map head"),
        ("ViT-B-16-SigLIP", "a timm trunk (vit_base_patch16_siglip_224)"),
        ("convnext_base", "ConvNeXt (convnext_base)"),
        ("RN50", "a ResNet tower"),
        ("EVA02-B-16", "a timm trunk"),
        ("ViT-L-14-CLIPA", "no ln_pre"),
    ],
)
def test_towers_that_are_not_plain_vits_are_refused_naming_the_feature(name, feature):
    with pytest.raises(UnsupportedTowerError) as err:
        build_zeroshot_classifier(name, None, ["cat"], ["a {}."])
    assert feature in str(err.value) and name in str(err.value)


def test_the_built_model_is_checked_too_not_only_its_config():
    """open_clip can build towers whose config looks plain (force_* arguments, JIT files):
    the modules are the authority."""
    layer_scale = open_clip.create_model("ViT-M-16-alt", pretrained=None)
    with pytest.raises(UnsupportedTowerError, match="layer scale"):
        tower_architecture(layer_scale, 5, "ViT-M-16-alt")
    resnet = open_clip.create_model("RN50", pretrained=None)
    with pytest.raises(UnsupportedTowerError, match="ModifiedResNet, not open_clip's VisionTransformer"):
        tower_architecture(resnet, 5, "RN50")
    forced = open_clip.create_model("ViT-S-32", pretrained=None, force_quick_gelu=True)
    assert tower_architecture(forced, 5).act == "quick_gelu"
    assert check_model_config("ViT-B-32")["vision_cfg"]["patch_size"] == 32


def test_normalisation_comes_from_open_clips_preprocess_config_and_squash_is_refused():
    laion = open_clip.create_model("ViT-S-32", pretrained=None, force_preprocess_cfg={"mean": (0.5,) * 3, "std": (0.5,) * 3})
    assert tower_preprocess(laion).mean == (0.5, 0.5, 0.5)
    assert tower_preprocess(open_clip.create_model("ViT-S-32", pretrained=None)).std == pytest.approx(
        (0.26862954, 0.26130258, 0.27577711))
    squash = open_clip.create_model("ViT-S-32", pretrained=None, force_preprocess_cfg={"resize_mode": "squash"})
    with pytest.raises(UnsupportedTowerError, match="resize_mode='squash'"):
        tower_preprocess(squash, "ViT-S-32")


def test_zeroshot_head_built_with_a_checkpoints_own_text_tower(tiny_clip_name, tmp_path: Path):
    torch.manual_seed(3)
    clip = open_clip.create_model(tiny_clip_name, pretrained=None).eval()
    path = tmp_path / "epoch_2.pt"
    torch.save({"epoch": 2, "state_dict": {f"module.{k}": v for k, v in clip.state_dict().items()}}, path)
    classnames, templates = ["cat", "dog"], ["a photo of a {}.", "art of the {}."]
    head = zeroshot_head_of_checkpoint(path, tiny_clip_name, classnames, templates)
    tokenizer = open_clip.get_tokenizer(tiny_clip_name)
    with torch.no_grad():
        rows = [F.normalize(F.normalize(clip.encode_text(tokenizer([t.format(c) for t in templates])), dim=-1).mean(0), dim=0)
                for c in classnames]
        expected = clip.logit_scale.exp() * torch.stack(rows)
    torch.testing.assert_close(head["classification_head.weight"], expected, rtol=1e-5, atol=1e-5)
    model = load_classifier(path, head=head)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), F.normalize(clip.encode_image(x), dim=-1) @ expected.T, rtol=1e-5, atol=1e-4)


def test_a_headless_checkpoint_asks_for_a_head(tiny_clip_name, tmp_path: Path):
    clip = open_clip.create_model(tiny_clip_name, pretrained=None)
    path = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "state_dict": clip.state_dict()}, path)
    with pytest.raises(CheckpointError, match="epoch_1.pt: this open_clip training checkpoint has no classification head"):
        load_classifier(path)


def test_a_fine_tune_of_another_architecture_names_the_first_mismatching_key_and_both_shapes(tmp_path: Path):
    theta_0 = tiny_classifier(0)
    other = tiny_classifier(1, replace(TINY_ARCH, patch_size=4))
    save_classifier(other, tmp_path / "wrong_patch.pt")
    with pytest.raises(CheckpointError) as err:
        load_classifier(tmp_path / "wrong_patch.pt", like=theta_0)
    message = str(err.value)
    assert "first mismatching key visual.positional_embedding: (17, 64) in wrong_patch.pt, (5, 64) in theta_0" in message
    deeper = tiny_classifier(2, replace(TINY_ARCH, layers=3))
    save_classifier(deeper, tmp_path / "deeper.pt")
    with pytest.raises(CheckpointError, match=r"first mismatching key visual\.transformer\.resblocks\.2\.ln_1\.weight: \(64,\) in deeper\.pt, absent in theta_0"):
        load_classifier(tmp_path / "deeper.pt", like=theta_0)


def test_a_gelu_file_is_not_loaded_as_quickgelu_and_a_conflicting_spec_is_refused(tmp_path: Path):
    gelu = tiny_classifier(0, replace(TINY_ARCH, act="gelu"))
    save_classifier(gelu, tmp_path / "gelu.pt")
    assert load_classifier(tmp_path / "gelu.pt").arch.act == "gelu"
    with pytest.raises(CheckpointError, match="tower spec differs from theta_0's: gelu"):
        load_classifier(tmp_path / "gelu.pt", like=tiny_classifier(1))


class ImageClassifier(torch.nn.Module):
    """Stands in for WiSE-FT's ImageClassifier, which ``.save`` pickles whole."""

    def __init__(self) -> None:
        super().__init__()
        self.classification_head = torch.nn.Linear(4, 2)


def test_a_pickled_whole_module_is_refused_with_a_recipe_and_never_unpickled(tmp_path: Path):
    path = tmp_path / "wiseft.pt"
    torch.save(ImageClassifier(), path)
    with pytest.raises(CheckpointError) as err:
        load_classifier(path)
    message = str(err.value)
    assert "refused to load" in message and "ImageClassifier" in message and ".state_dict()" in message
    assert "weights_only=True" in message


def test_interpsharp_layers_output_via_the_cli_for_a_spec_file(tmp_path: Path):
    """The CLI prints one header line then one row per layer group (what the count test reads)."""
    save_classifier(tiny_classifier(0), tmp_path / "m.pt")
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["layers", str(tmp_path / "m.pt")]) == 0
    lines = out.getvalue().strip().splitlines()
    assert lines[0] == "layer\tparameters\tnumel" and lines[-1].startswith("classification_head\t")
