"""Shared fixtures: tiny OpenAI-CLIP-shaped models that build in milliseconds, offline."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch

from interpsharp.classifier import CLIPClassifier, VitArchitecture

TINY_ARCH = VitArchitecture(
    image_size=16, patch_size=8, width=64, layers=2, head_width=64, mlp_ratio=2.0, embed_dim=16, num_classes=5
)


@pytest.fixture(autouse=True)
def _few_threads():
    """Tests share 2 cores with other jobs; one torch thread avoids oversubscription."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_classifier(seed: int = 0, arch: VitArchitecture = TINY_ARCH) -> CLIPClassifier:
    """A randomly initialised tiny classifier; different seeds give different weights."""
    torch.manual_seed(seed)
    model = CLIPClassifier(arch)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


@pytest.fixture
def tiny_clip_name(tmp_path_factory) -> str:
    """Register a tiny open_clip CLIP (OpenAI layout, QuickGELU) and return its name."""
    name = "interpsharp-test-tiny"
    cfg = {
        "embed_dim": 16,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 16, "layers": 2, "width": 64, "head_width": 64, "patch_size": 8, "mlp_ratio": 2.0},
        "text_cfg": {"context_length": 12, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    path = tmp_path_factory.mktemp("cfg") / f"{name}.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return name
