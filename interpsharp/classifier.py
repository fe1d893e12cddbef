"""The classifier every part of the pipeline works on.

SPEC fixes one form: ``logits = head(normalize(encode_image(x)))`` with an open_clip ViT image
tower: OpenAI's layout (class token, ``ln_pre``, ``ln_post``, ``proj``), QuickGELU or GELU, any
width, depth and input size. What the tensors' shapes cannot tell (the activation, the
attention head width, the input normalisation) travels with the classifier as
:class:`VitArchitecture` ``act``/``head_width`` and :class:`Preprocess`.

The forward pass is written here as an explicit list of *stages* (patch embedding, each
transformer block, token pooling, ``ln_post``, ``proj``, head) rather than as one opaque call,
because the sharpness and layer-wise interpolation sweeps reuse cached stage inputs: perturbing
a layer used in stage k leaves stages 0..k-1 unchanged. A test checks that running the stages
equals open_clip's own ``encode_image`` for QuickGELU and GELU towers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from open_clip.model import CLIPVisionCfg, _build_vision_tower
from open_clip.transformer import VisionTransformer
from torch import nn

#: OpenAI CLIP's input normalisation (also most LAION / DataComp towers'); other towers say
#: theirs in their open_clip config, and :class:`Preprocess` carries it with the classifier.
OPENAI_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

#: MLP activations of the towers we build: OpenAI's QuickGELU (``x * sigmoid(1.702 x)``) and
#: the exact GELU of most LAION / DataComp towers. Same shapes, different function: a
#: checkpoint cannot tell them apart, so the choice is recorded, never guessed.
ACTIVATIONS = ("quick_gelu", "gelu")


@dataclass(frozen=True)
class Preprocess:
    """Per-channel mean and std that turn ``pixels / 255`` into the tower's input.

    Applied on the device at evaluation time (:func:`interpsharp.evaluate.normalize_images`);
    caches hold raw uint8 pixels, so one cache serves towers with different constants.
    """

    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3:
                raise ValueError(f"Preprocess.{name} needs one value per RGB channel, got {value}")
            object.__setattr__(self, name, value)
        if min(self.std) <= 0:
            raise ValueError(f"Preprocess.std must be positive, got {self.std}")


@dataclass(frozen=True)
class VitArchitecture:
    """Shape of an OpenAI-layout ViT image tower plus its classification head, and its MLP
    activation (``quick_gelu`` or ``gelu``, see :data:`ACTIVATIONS`)."""

    image_size: int
    patch_size: int
    width: int
    layers: int
    head_width: int
    mlp_ratio: float
    embed_dim: int
    num_classes: int
    act: str = "quick_gelu"

    def __post_init__(self) -> None:
        if self.act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.act!r}; choose one of {', '.join(ACTIVATIONS)}")

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def tokens(self) -> int:
        """Sequence length inside the tower: one token per patch plus the class token."""
        return (self.image_size // self.patch_size) ** 2 + 1


def build_visual(arch: VitArchitecture) -> VisionTransformer:
    """Build open_clip's ViT image tower in OpenAI's layout (class-token pooling, ln_pre) with
    the architecture's activation."""
    if arch.width % arch.head_width:
        raise ValueError(f"width {arch.width} is not a multiple of head_width {arch.head_width}")
    cfg = CLIPVisionCfg(
        layers=arch.layers,
        width=arch.width,
        head_width=arch.head_width,
        mlp_ratio=arch.mlp_ratio,
        patch_size=arch.patch_size,
        image_size=arch.image_size,
    )
    visual = _build_vision_tower(arch.embed_dim, cfg, quick_gelu=arch.act == "quick_gelu")
    assert isinstance(visual, VisionTransformer)
    return visual


class CLIPClassifier(nn.Module):
    """CLIP image tower followed by a linear head on L2-normalised features.

    Parameter names are the model-soups names without their ``model.`` prefix
    (``visual.conv1.weight``, ..., ``classification_head.weight``), so a state dict of this
    module maps one-to-one onto a model-soups checkpoint.

    ``preprocess`` is the tower's input normalisation (:class:`Preprocess`); it is not a
    parameter (interpolation must never touch it) but belongs to the model all the same.

    ``text_state`` keeps the text-side tensors that model-soups checkpoints carry besides the
    image tower (token embedding, ``ln_final``, ``text_projection``, ``logit_scale``...). They
    are not parameters of the classifier (SPEC: the text tower is not part of it) but are
    written back on save so model-soups code can load our checkpoints strictly.
    """

    def __init__(
        self,
        arch: VitArchitecture,
        text_state: dict[str, torch.Tensor] | None = None,
        preprocess: Preprocess = Preprocess(),
    ) -> None:
        super().__init__()
        self.arch = arch
        self.preprocess = preprocess
        self.visual = build_visual(arch)
        self.classification_head = nn.Linear(arch.embed_dim, arch.num_classes)
        self.text_state: dict[str, torch.Tensor] = dict(text_state or {})

    # -- staged forward ------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        """embed + one per block + pool + ln_post + proj + head."""
        return self.arch.layers + 5

    def stage(self, index: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """The function computing stage ``index`` from the output of stage ``index - 1``."""
        n_blocks = self.arch.layers
        if index == 0:
            return self._embed
        if 1 <= index <= n_blocks:
            return self._block(index - 1)
        named = {
            n_blocks + 1: self._pool,
            n_blocks + 2: self.visual.ln_post,
            n_blocks + 3: self._project,
            n_blocks + 4: self._head,
        }
        if index not in named:
            raise IndexError(f"stage {index} out of range 0..{self.num_stages - 1}")
        return named[index]

    def forward_from(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Run stages ``index``.. on ``x``, the (cached) output of stage ``index - 1``."""
        for i in range(index, self.num_stages):
            x = self.stage(i)(x)
        return x

    def stage_inputs(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Inputs of every stage for ``images`` (entry 0 is the images, last is the logits)."""
        xs = [images]
        for i in range(self.num_stages):
            xs.append(self.stage(i)(xs[-1]))
        return xs

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_from(0, images)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised image features, as CLIP's ``encode_image``."""
        x = images
        for i in range(self.num_stages - 1):
            x = self.stage(i)(x)
        return x

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        v = self.visual
        x = v.conv1(images)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        return v.ln_pre(x)

    def _block(self, k: int) -> Callable[[torch.Tensor], torch.Tensor]:
        block = self.visual.transformer.resblocks[k]
        if getattr(self.visual.transformer, "batch_first", True):
            return block

        def run_sequence_first(x: torch.Tensor) -> torch.Tensor:
            return block(x.transpose(0, 1)).transpose(0, 1)

        return run_sequence_first

    @staticmethod
    def _pool(x: torch.Tensor) -> torch.Tensor:
        # ln_post is per token, so pooling the class token first gives the same result as
        # OpenAI's ln_post-then-pool at 1/(tokens) of the cost.
        return x[:, 0]

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.visual.proj

    def _head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classification_head(F.normalize(features, dim=-1))
