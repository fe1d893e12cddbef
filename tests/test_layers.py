"""Layer groups and the staged forward that prefix caching relies on."""

from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F

from interpsharp.checkpoints import classifier_from_state
from interpsharp.layers import layer_groups, stage_of_layer

from conftest import tiny_classifier


@pytest.fixture(scope="module")
def vit_b32():
    """ViT-B-32-quickgelu with random weights (no download) as a classifier, plus the open_clip model."""
    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None).eval()
    state = {k: v for k, v in clip.state_dict().items() if k.startswith("visual.")}
    state["classification_head.weight"] = torch.randn(1000, 512) * 0.01
    state["classification_head.bias"] = torch.zeros(1000)
    return clip, classifier_from_state(state)


def _golden_vit_layers(blocks: int) -> list[str]:
    """The paper's layer units for an OpenAI ViT, written out from SPEC's definition."""
    names = ["visual.conv1", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre"]
    for k in range(blocks):
        p = f"visual.transformer.resblocks.{k}"
        names += [f"{p}.ln_1", f"{p}.attn", f"{p}.attn.out_proj", f"{p}.ln_2", f"{p}.mlp.c_fc", f"{p}.mlp.c_proj"]
    return names + ["visual.ln_post", "visual.proj", "classification_head"]


def test_vit_b32_layer_groups_golden(vit_b32):
    _, model = vit_b32
    groups = layer_groups(model)
    assert len(groups) == 79  # 78 image-tower groups + the head
    assert list(groups) == _golden_vit_layers(12)
    assert groups["visual.transformer.resblocks.5.attn"] == [
        "visual.transformer.resblocks.5.attn.in_proj_weight",
        "visual.transformer.resblocks.5.attn.in_proj_bias",
    ]
    assert groups["visual.conv1"] == ["visual.conv1.weight"]  # OpenAI's patch conv has no bias
    assert groups["classification_head"] == ["classification_head.weight", "classification_head.bias"]


def test_layer_groups_cover_every_parameter_once(vit_b32):
    _, model = vit_b32
    listed = [p for names in layer_groups(model).values() for p in names]
    assert len(listed) == len(set(listed))
    assert set(listed) == {name for name, _ in model.named_parameters()}
    total = sum(p.numel() for p in model.parameters())
    params = dict(model.named_parameters())
    assert sum(params[p].numel() for p in listed) == total


def test_staged_forward_equals_open_clip(vit_b32):
    clip, model = vit_b32
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = model.classification_head(F.normalize(clip.visual(x), dim=-1))
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.encode_image(x), clip.visual(x), rtol=1e-5, atol=1e-5)


def test_perturbing_a_layer_leaves_earlier_stages_unchanged():
    """stage_of_layer is exact: a layer changes its own stage's output and nothing before it."""
    model = tiny_classifier(0).double()
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    params = dict(model.named_parameters())
    with torch.no_grad():
        before = model.stage_inputs(x)
        for layer, names in layer_groups(model).items():
            stage = stage_of_layer(model, layer)
            saved = {n: params[n].clone() for n in names}
            for n in names:
                params[n].add_(0.5 + torch.rand_like(params[n]))
            after = model.stage_inputs(x)
            for i in range(stage + 1):
                assert torch.equal(after[i], before[i]), f"{layer} changed the input of stage {i}"
            assert not torch.equal(after[stage + 1], before[stage + 1]), f"{layer} did not change stage {stage}"
            torch.testing.assert_close(model.forward_from(stage, before[stage]), after[-1])
            for n in names:
                params[n].copy_(saved[n])
