"""Algorithm 1's pruning: every element of a straggler layer of theta_1 is set to 0 with
probability 1/2 before interpolating again (the stragglers come from
:mod:`interpsharp.stragglers`)."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import pandas as pd
import torch

from interpsharp.subsets import stable_seed


def prune_stragglers(
    theta_1: Mapping[str, torch.Tensor],
    layer_params: Mapping[str, Sequence[str]],
    stragglers: Iterable[str],
    seed: int,
    probability: float = 0.5,
) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    """Algorithm 1: zero each element of every straggler layer of ``theta_1`` with ``probability``.

    The mask of a layer comes from a CPU generator seeded by a hash of ``(seed, layer)``, so it
    does not depend on which other layers are stragglers, nor on the device. Tensors of other
    layers are passed through (the same objects, no copies); ``theta_1`` is not modified.

    Returns the pruned state and a summary with one row per straggler layer: ``layer,
    parameters, numel, zeroed, fraction, probability, seed, mask_seed``.
    """
    if not 0 < probability < 1:
        raise ValueError(f"pruning probability must lie in (0, 1), got {probability}")
    pruned = dict(theta_1)
    rows = []
    for layer in dict.fromkeys(stragglers):
        if layer not in layer_params:
            raise KeyError(f"straggler {layer!r} is not a layer of this model; layers: {', '.join(layer_params)}")
        mask_seed = stable_seed("prune", seed, layer)
        gen = torch.Generator(device="cpu").manual_seed(mask_seed)
        numel = zeroed = 0
        for name in layer_params[layer]:
            if name not in theta_1:
                raise KeyError(f"parameter {name!r} of straggler {layer!r} is not in the fine-tuned state dict")
            weight = theta_1[name]
            mask = torch.bernoulli(torch.full(weight.shape, probability), generator=gen).bool()
            pruned[name] = weight.masked_fill(mask.to(weight.device), 0)
            numel += weight.numel()
            zeroed += int(mask.sum())
        rows.append((layer, ",".join(layer_params[layer]), numel, zeroed, zeroed / numel, probability, seed, mask_seed))
    columns = ["layer", "parameters", "numel", "zeroed", "fraction", "probability", "seed", "mask_seed"]
    return pruned, pd.DataFrame(rows, columns=columns)
