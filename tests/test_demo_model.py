"""The tiny CLIP config: registration, the paper world's layout, checkpoint round trip, zero-shot head."""

from __future__ import annotations

import open_clip
import torch
from open_clip.transformer import QuickGELU

from interpsharp.checkpoints import load_classifier, save_classifier, zeroshot_classifier_from_clip
from interpsharp.demo.captions import TEMPLATES
from interpsharp.demo.images import CLASSNAMES
from interpsharp.demo.model_config import MODEL_NAME, create_tiny_clip, model_config, register_model_config, \
    tiny_clip_tokenizer
from interpsharp.layers import layer_groups


def independent_zeroshot_head(clip: torch.nn.Module, classnames, templates) -> torch.Tensor:
    """CLIP's zero-shot head written out from its definition (SPEC), not via open_clip's builder."""
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    rows = []
    with torch.no_grad():
        for name in classnames:
            text = clip.encode_text(tokenizer([t.format(name) for t in templates]))
            text = text / text.norm(dim=-1, keepdim=True)
            mean = text.mean(dim=0)
            rows.append(mean / mean.norm())
        return clip.logit_scale.exp() * torch.stack(rows)


def test_config_registers_with_openai_layout():
    assert register_model_config() == MODEL_NAME == register_model_config()
    assert MODEL_NAME in open_clip.list_models()
    cfg = model_config()
    assert cfg["quick_gelu"] is True and cfg["vision_cfg"]["head_width"] == 64
    clip = create_tiny_clip(seed=0)
    blocks = clip.visual.transformer.resblocks
    assert len(blocks) == cfg["vision_cfg"]["layers"]
    assert blocks[0].attn.num_heads == cfg["vision_cfg"]["width"] // 64
    assert isinstance(blocks[0].mlp.gelu, QuickGELU)
    assert tiny_clip_tokenizer()(["a photo of a star"]).shape == (1, cfg["text_cfg"]["context_length"])


def test_seeded_creation_is_reproducible():
    a, b = create_tiny_clip(seed=3).state_dict(), create_tiny_clip(seed=3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = create_tiny_clip(seed=4).state_dict()
    assert not torch.equal(a["visual.conv1.weight"], c["visual.conv1.weight"])


def test_zeroshot_classifier_round_trips_through_checkpoint_format(tmp_path):
    clip = create_tiny_clip(seed=1).eval()
    classifier = zeroshot_classifier_from_clip(clip, tiny_clip_tokenizer(), CLASSNAMES, TEMPLATES, head_width=64)
    save_classifier(classifier, tmp_path / "zs.pt")
    loaded = load_classifier(tmp_path / "zs.pt")
    assert loaded.arch == classifier.arch and loaded.arch.heads == 2

    torch.manual_seed(0)
    images = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        logits = classifier(images)
        assert torch.equal(loaded(images), logits)
        # The classifier is CLIP's image tower + a head on normalised features.
        features = clip.encode_image(images, normalize=True)
        expected = features @ classifier.classification_head.weight.T
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    n_layers = model_config()["vision_cfg"]["layers"]
    assert len(layer_groups(loaded)) == 4 + 6 * n_layers + 3


def test_zeroshot_head_matches_independent_computation():
    clip = create_tiny_clip(seed=2).eval()
    classifier = zeroshot_classifier_from_clip(clip, tiny_clip_tokenizer(), CLASSNAMES, TEMPLATES, head_width=64)
    expected = independent_zeroshot_head(clip, CLASSNAMES, TEMPLATES)
    torch.testing.assert_close(classifier.classification_head.weight, expected, rtol=1e-5, atol=1e-5)
    assert torch.count_nonzero(classifier.classification_head.bias) == 0
