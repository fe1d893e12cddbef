"""Prefix caching: one forward pass kept so that a change to one layer recomputes only what
depends on it.

Both layer-wise sweeps change one layer at a time and evaluate the model again: layer-wise
sharpness (a perturbed layer, many draws) and layer-wise interpolation (one layer moved to
alpha, many alphas). Every forward stage before the changed layer is untouched, so
:class:`PrefixCache` keeps the input of each stage from one pass with the reference weights and
resumes at the first stage that reads the layer. Inside a transformer block it resumes after
the attention residual (``ln_2``, ``mlp.c_fc``) or at the MLP hidden state (``mlp.c_proj``).
The pieces chain the very modules of open_clip's block in its order, so a resumed pass equals a
full forward pass bit for bit on the same batches (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from open_clip.transformer import ResidualAttentionBlock

from interpsharp.classifier import CLIPClassifier
from interpsharp.layers import stage_of_layer

# Where a forward pass can resume: the input of a stage, or inside block stage `stage` after
# its attention residual ("after_attention", needs x1) or at its MLP hidden state ("mlp_hidden",
# needs x1 and h = gelu(c_fc(ln_2(x1)))).
_INPUT, _AFTER_ATTENTION, _MLP_HIDDEN = "input", "after_attention", "mlp_hidden"

#: Memory for keeping every block's ``x1`` and ``h`` from the first forward pass (see
#: :class:`PrefixCache`); above it they are recomputed one block at a time.
BLOCK_CACHE_BYTES = 2 * 2**30


@dataclass(frozen=True)
class ResumePoint:
    """The earliest point of the forward pass that depends on a layer."""

    stage: int
    part: str = _INPUT


def _splittable(model: CLIPClassifier) -> bool:
    """Whether blocks can be resumed mid-way with ops identical to the block's own forward."""
    transformer = model.visual.transformer
    return getattr(transformer, "batch_first", True) and all(
        type(block) is ResidualAttentionBlock
        and not hasattr(block, "ln_1_kv")
        and list(block.mlp._modules) == ["c_fc", "gelu", "c_proj"]
        for block in transformer.resblocks
    )


def resume_point(model: CLIPClassifier, layer: str, within_blocks: bool = True) -> ResumePoint:
    """Where the forward pass must restart after ``layer`` changes."""
    stage = stage_of_layer(model, layer)
    if within_blocks and 1 <= stage <= model.arch.layers and _splittable(model):
        block = f"visual.transformer.resblocks.{stage - 1}."
        part = {block + "ln_2": _AFTER_ATTENTION, block + "mlp.c_fc": _AFTER_ATTENTION, block + "mlp.c_proj": _MLP_HIDDEN}
        return ResumePoint(stage, part.get(layer, _INPUT))
    return ResumePoint(stage)


# These three functions are open_clip's ResidualAttentionBlock.forward cut in pieces: the same
# modules in the same order, so the pieces chained equal block(x) bit for bit (tested).
def _attention_residual(block: ResidualAttentionBlock, x: torch.Tensor) -> torch.Tensor:
    return x + block.ls_1(block.attention(q_x=block.ln_1(x)))


def _mlp_hidden(block: ResidualAttentionBlock, x1: torch.Tensor) -> torch.Tensor:
    return block.mlp.gelu(block.mlp.c_fc(block.ln_2(x1)))


def _from_mlp_hidden(block: ResidualAttentionBlock, x1: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return x1 + block.ls_2(block.mlp.c_proj(h))


def stage_input_bytes(model: CLIPClassifier, layers: Iterable[str]) -> int:
    """Bytes per image of the stage inputs a cache for ``layers`` keeps plus the model inputs
    (which the caller holds anyway), so callers can size chunks of images to a memory budget."""
    arch = model.arch
    element = next(model.parameters()).element_size()
    per_stage = {0: 3 * arch.image_size**2}
    per_stage.update({stage: arch.tokens * arch.width for stage in range(1, arch.layers + 2)})
    per_stage.update({arch.layers + 2: arch.width, arch.layers + 3: arch.width, arch.layers + 4: arch.embed_dim})
    stages = {stage_of_layer(model, layer) for layer in layers} | {0}
    return element * sum(per_stage[stage] for stage in stages)


class PrefixCache:
    """The forward pass of ``model``'s current weights over ``inputs``, kept for resuming.

    Built once per set of reference weights: one pass keeps the input of every stage the given
    layers need (every batch, on the model's device: memory grows with the number of images) and
    the final ``outputs``. ``resume(layer, b)`` then recomputes batch ``b`` from the first point
    that reads ``layer``, with the model's current weights, which must differ from the reference
    weights only in ``layer``.

    Inside a block, resuming needs the attention residual ``x1`` and the MLP hidden state ``h``
    (4x wider). Kept for every block they take 5x the memory of the block inputs (ViT-B/32 on all
    of ImageNet-A in fp32: ~70 GB), so they are kept from the first pass only when that fits in
    ``block_cache_bytes``; otherwise they are recomputed from the cached block input when first
    needed and kept for that one block. Recomputing costs about 2/3 of a block per block and
    set of reference weights. The one-changed-layer contract is what makes recomputing right:
    ``x1`` depends only on ``ln_1`` and the attention (not the changed layer when that is
    ``ln_2``, ``c_fc`` or ``c_proj``), and ``h``, needed only for ``c_proj``, only on ``ln_2``
    and ``c_fc``.
    """

    def __init__(
        self,
        model: CLIPClassifier,
        inputs: Sequence[torch.Tensor],
        layers: Iterable[str],
        within_blocks: bool = True,
        block_cache_bytes: int = BLOCK_CACHE_BYTES,
    ) -> None:
        self.model = model
        self.points = {layer: resume_point(model, layer, within_blocks) for layer in layers}
        self.n_images = sum(len(x) for x in inputs)
        stages = {p.stage for p in self.points.values()}
        split = {p.stage for p in self.points.values() if p.part != _INPUT}
        self.inputs: list[dict[int, torch.Tensor]] = []
        # Block stage -> (x1 per batch, h per batch or None): every split block's when they fit
        # the budget (filled by the first pass), else only the block being worked on.
        self._blocks: dict[int, tuple[list[torch.Tensor], list[torch.Tensor] | None]] = {}
        keep = split if self._block_bytes(len(split)) <= block_cache_bytes else set()
        with torch.no_grad():
            self.outputs = [self._fill(x, stages, keep) for x in inputs]

    def _block_bytes(self, n_blocks: int) -> int:
        """Bytes of ``x1`` and ``h`` for ``n_blocks`` blocks and every image."""
        arch = self.model.arch
        per_token = arch.width + int(arch.width * arch.mlp_ratio)
        return n_blocks * self.n_images * arch.tokens * per_token * next(self.model.parameters()).element_size()

    def _fill(self, x: torch.Tensor, stages: set[int], keep: set[int]) -> torch.Tensor:
        entry: dict[int, torch.Tensor] = {}
        for stage in range(self.model.num_stages):
            if stage in stages:
                entry[stage] = x
            if stage in keep:
                block = self.model.visual.transformer.resblocks[stage - 1]
                x1s, hs = self._blocks.setdefault(stage, ([], []))
                x1s.append(_attention_residual(block, x))
                hs.append(_mlp_hidden(block, x1s[-1]))
                x = _from_mlp_hidden(block, x1s[-1], hs[-1])
            else:
                x = self.model.stage(stage)(x)
        self.inputs.append(entry)
        return x

    def _inside_block(self, stage: int, need_hidden: bool) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        if stage not in self._blocks:
            block = self.model.visual.transformer.resblocks[stage - 1]
            self._blocks.clear()  # free the previous block's activations before computing these
            self._blocks[stage] = ([_attention_residual(block, entry[stage]) for entry in self.inputs], None)
        x1s, hs = self._blocks[stage]
        if need_hidden and hs is None:
            block = self.model.visual.transformer.resblocks[stage - 1]
            hs = [_mlp_hidden(block, x1) for x1 in x1s]
            self._blocks[stage] = (x1s, hs)
        return x1s, hs

    @torch.no_grad()
    def resume(self, layer: str, b: int) -> torch.Tensor:
        """Outputs of batch ``b`` with the model's current weights (changed only in ``layer``)."""
        if layer not in self.points:
            raise KeyError(f"layer {layer!r} was not among the layers this cache was built for")
        point = self.points[layer]
        if point.part == _INPUT:
            return self.model.forward_from(point.stage, self.inputs[b][point.stage])
        block = self.model.visual.transformer.resblocks[point.stage - 1]
        x1s, hs = self._inside_block(point.stage, need_hidden=point.part == _MLP_HIDDEN)
        h = hs[b] if point.part == _MLP_HIDDEN else _mlp_hidden(block, x1s[b])
        return self.model.forward_from(point.stage + 1, _from_mlp_hidden(block, x1s[b], h))
