"""WiSE-FT interpolation of classifier weights, whole-model and layer-wise.

Convention (SPEC): ``theta(alpha) = (1 - alpha) * theta_0 + alpha * theta_1``; alpha = 0 is
the zero-shot model. Interpolation happens in float32 with ``torch.lerp``, which returns the
endpoints exactly at alpha 0 and 1.

Evaluating many alphas must not copy models: :class:`InterpolationPath` keeps both endpoints
once and writes ``theta(alpha)`` into one preallocated model in place.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn

StateDict = Mapping[str, torch.Tensor]


class StateDictMismatch(ValueError):
    """The two endpoints do not have the same keys and shapes."""


def check_compatible(theta_0: StateDict, theta_1: StateDict) -> None:
    """Raise :class:`StateDictMismatch` naming every key that is missing on one side or mis-shaped."""
    only_0 = sorted(set(theta_0) - set(theta_1))
    only_1 = sorted(set(theta_1) - set(theta_0))
    shapes = sorted(k for k in set(theta_0) & set(theta_1) if theta_0[k].shape != theta_1[k].shape)
    problems = []
    if only_0:
        problems.append(f"only in theta_0: {', '.join(only_0)}")
    if only_1:
        problems.append(f"only in theta_1: {', '.join(only_1)}")
    if shapes:
        problems.append("shapes differ: " + ", ".join(f"{k} {tuple(theta_0[k].shape)} vs {tuple(theta_1[k].shape)}" for k in shapes))
    if problems:
        raise StateDictMismatch("cannot interpolate: " + "; ".join(problems))


def interpolate(theta_0: StateDict, theta_1: StateDict, alpha: float) -> dict[str, torch.Tensor]:
    """WiSE-FT interpolation of every tensor: ``(1 - alpha) * theta_0 + alpha * theta_1``."""
    check_compatible(theta_0, theta_1)
    return {k: torch.lerp(theta_0[k].float(), theta_1[k].float(), float(alpha)) for k in theta_0}


def interpolate_layer(
    theta_0: StateDict, theta_1: StateDict, alpha: float, param_names: Iterable[str]
) -> dict[str, torch.Tensor]:
    """Layer-wise interpolation: theta_0 everywhere except ``param_names``, which are interpolated."""
    check_compatible(theta_0, theta_1)
    names = set(param_names)
    unknown = names - set(theta_0)
    if unknown:
        raise KeyError(f"parameters not in the state dict: {', '.join(sorted(unknown))}")
    return {
        k: torch.lerp(theta_0[k].float(), theta_1[k].float(), float(alpha)) if k in names else theta_0[k].float().clone()
        for k in theta_0
    }


class InterpolationPath:
    """Both endpoints of a path, held once, written into a preallocated model per alpha."""

    def __init__(self, theta_0: StateDict, theta_1: StateDict, device: str | torch.device = "cpu") -> None:
        check_compatible(theta_0, theta_1)
        # copy=True: the endpoints are often the state dict of the very model written into
        # (``InterpolationPath(model.state_dict(), ...)``); without a copy they would alias its
        # parameters on the same device and the first load_into would overwrite theta_0.
        self.theta_0 = {k: v.detach().to(device, torch.float32, copy=True) for k, v in theta_0.items()}
        self.theta_1 = {k: v.detach().to(device, torch.float32, copy=True) for k, v in theta_1.items()}

    @torch.no_grad()
    def load_into(self, model: nn.Module, alpha: float, only: Iterable[str] | None = None) -> nn.Module:
        """Set ``model``'s tensors to ``theta(alpha)``; with ``only``, interpolate just those
        parameter names and set the rest to theta_0 (layer-wise interpolation)."""
        selected = None if only is None else set(only)
        targets = _tensors_of(model)
        missing = set(self.theta_0) - set(targets)
        if missing:
            raise StateDictMismatch(f"model has no tensors named {', '.join(sorted(missing))}")
        for name, w0 in self.theta_0.items():
            target = targets[name]
            if selected is None or name in selected:
                target.copy_(self.point(name, alpha))
            else:
                target.copy_(w0)
        return model

    @torch.no_grad()
    def load_layer(self, model: nn.Module, alpha: float, names: Iterable[str]) -> nn.Module:
        """Write ``theta(alpha)`` into the tensors ``names`` only, leaving every other tensor as
        it is. Moving one layer of a model that holds theta_0 costs that layer's size, not the
        model's: the layer-wise sweep does it once per (layer, alpha, chunk of images)."""
        names = list(names)
        targets = _tensors_of(model)
        unknown = sorted(set(names) - (set(self.theta_0) & set(targets)))
        if unknown:
            raise StateDictMismatch(f"not a tensor of both the path and the model: {', '.join(unknown)}")
        for name in names:
            targets[name].copy_(self.point(name, alpha))
        return model

    def point(self, name: str, alpha: float) -> torch.Tensor:
        """Tensor ``name`` of ``theta(alpha)``; both loaders write what this returns, so a
        subclass that changes how a point is formed (``interpsharp.precision``'s bf16
        emulations) changes every write."""
        return torch.lerp(self.theta_0[name], self.theta_1[name], float(alpha))

    def require_sets_every_tensor_of(self, model: nn.Module) -> None:
        """Raise unless the path sets every tensor of ``model``: a tensor it leaves alone would
        keep whatever value it had, and results would depend on it."""
        unset = sorted(set(model.state_dict()) - set(self.theta_0))
        if unset:
            raise StateDictMismatch(
                f"the path does not set these model tensors, so results would depend on stale values: {', '.join(unset)}"
            )


def _tensors_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor a path writes into: the model's parameters and buffers, by name."""
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}
