"""The demo world's tiny CLIP: an open_clip model config kept in the repository.

The image tower is an OpenAI-style ViT (QuickGELU, class token, ``ln_pre``) with the same
parameter names as ViT-B/32, so layer groups, layer-wise interpolation and prefix caching
run through the paper world's code unchanged. Heads are 64 wide because our checkpoint
loader, like OpenAI's ``build_model``, infers the head count as ``width // 64``.
The text tower uses open_clip's own BPE tokenizer with a 12-token context: the captions are
short, and a short context keeps pretraining cheap.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import open_clip
import torch

MODEL_NAME = "interpsharp-tiny-vit"

#: Attention head width of every tower the pipeline loads (see ``infer_architecture``).
HEAD_WIDTH = 64


def config_path() -> Path:
    """The JSON config shipped in ``interpsharp/resources/model_configs``."""
    return Path(str(resources.files("interpsharp") / "resources" / "model_configs" / f"{MODEL_NAME}.json"))


def model_config() -> dict[str, Any]:
    """The config as a dict (what gets recorded next to pretrained weights)."""
    return json.loads(config_path().read_text())


def register_model_config() -> str:
    """Make ``MODEL_NAME`` known to open_clip (idempotent) and return it."""
    if MODEL_NAME not in open_clip.list_models():
        path = config_path()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: tiny CLIP config missing from the installed package; reinstall interpsharp")
        open_clip.add_model_config(path)
    return MODEL_NAME


def create_tiny_clip(pretrained: str | None = None, seed: int | None = None) -> torch.nn.Module:
    """The tiny CLIP, randomly initialised (seeded) or loaded from a local weights file."""
    name = register_model_config()
    if seed is not None:
        torch.manual_seed(seed)
    return open_clip.create_model(name, pretrained=pretrained, device="cpu")


def tiny_clip_tokenizer():
    """open_clip's tokenizer with the tiny CLIP's context length."""
    return open_clip.get_tokenizer(register_model_config())
