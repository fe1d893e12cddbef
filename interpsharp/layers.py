"""Layers: the units of parameters the paper interpolates and perturbs one at a time.

SPEC: a module's weight and bias form one layer (the attention in-projection weight and bias
included), a bare parameter is a layer on its own, the head is the last layer, and layers
come in forward order. Each layer also knows the first forward *stage* that uses it, which
is what prefix caching needs: changing a layer leaves every earlier stage's output intact.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Iterable, Mapping

from interpsharp.classifier import CLIPClassifier

_GROUPED_SUFFIXES = ("weight", "bias", "in_proj_weight", "in_proj_bias")
_STEM_ORDER = ("visual.conv1", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre")
_BLOCK = re.compile(r"^visual\.transformer\.resblocks\.(\d+)(\.|$)")


def layer_name_of(param_name: str) -> str:
    """``a.b.weight`` -> ``a.b``; ``attn.in_proj_bias`` -> ``attn``; bare parameters keep their name."""
    prefix, _, leaf = param_name.rpartition(".")
    if prefix and leaf in _GROUPED_SUFFIXES:
        return prefix
    return param_name


def stage_of_layer(model: CLIPClassifier, layer: str) -> int:
    """Index of the first stage of ``model.forward_from`` that reads this layer's parameters."""
    n_blocks = model.arch.layers
    if layer in _STEM_ORDER:
        return 0
    if m := _BLOCK.match(layer):
        return 1 + int(m.group(1))
    tail = {"visual.ln_post": n_blocks + 2, "visual.proj": n_blocks + 3, "classification_head": n_blocks + 4}
    if layer not in tail:
        raise KeyError(f"unknown layer {layer!r}")
    return tail[layer]


def layer_groups(model: CLIPClassifier) -> "OrderedDict[str, list[str]]":
    """Ordered mapping from layer name to the names of its parameters, in forward order.

    Every parameter of the classifier appears exactly once.
    """
    groups: "OrderedDict[str, list[str]]" = OrderedDict()
    for name, _ in model.named_parameters():
        groups.setdefault(layer_name_of(name), []).append(name)

    def forward_position(item: tuple[int, tuple[str, list[str]]]) -> tuple[int, int, int]:
        index, (layer, _) = item
        stage = stage_of_layer(model, layer)
        within = _STEM_ORDER.index(layer) if stage == 0 else index
        return stage, within, index

    ordered = sorted(enumerate(groups.items()), key=forward_position)
    return OrderedDict(item for _, item in ordered)


def select_layers(groups: Mapping[str, list[str]], layers: Iterable[str] | None) -> list[str]:
    """``layers`` checked against the model's layer ``groups`` (all of them when None)."""
    if layers is None:
        return list(groups)
    chosen = list(layers)
    unknown = [layer for layer in chosen if layer not in groups]
    if unknown:
        raise KeyError(f"unknown layer(s) {', '.join(unknown)}; the model's layers are: {', '.join(groups)}")
    return chosen
