"""Classifier checkpoints in the model-soups format.

A model-soups checkpoint (``model_{i}.pt``) is a plain state dict: ``model.<OpenAI CLIP keys>``
with the text transformer removed, plus ``classification_head.weight/bias``. Everything the
pipeline writes uses the same format, so our checkpoints load in model-soups code and theirs
load here. Files are always read with ``torch.load(weights_only=True)``: a checkpoint is data,
never code.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from interpsharp.classifier import CLIPClassifier, VitArchitecture

MODEL_PREFIX = "model."
HEAD_PREFIX = "classification_head."

#: Keys of the text side of an OpenAI CLIP, relative to ``model.``; they may be present or absent.
_TEXT_KEY = re.compile(
    r"^(transformer\..*|token_embedding\.weight|positional_embedding|ln_final\.(weight|bias)"
    r"|text_projection|logit_scale|attn_mask)$"
)
_BLOCK_KEY = re.compile(r"^visual\.transformer\.resblocks\.(\d+)\.")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and what is wrong."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict safely, turning low-level failures into messages that name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _weights_unpickler_reason(str(err))
        if "Unsupported global" in reason:
            raise CheckpointError(
                f"{path}: refused to load: the file holds pickled Python objects other than "
                f"tensors, and checkpoints are only ever read with weights_only=True ({reason})"
            ) from err
        raise _unreadable(path, reason) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, KeyError, ValueError) as err:
        # A truncated zip archive raises RuntimeError; bytes that are no pickle at all can
        # surface as KeyError/ValueError from the unpickler.
        raise _unreadable(path, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from err
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict mapping names to tensors, got {type(state).__name__}")
    return dict(state)


def _weights_unpickler_reason(message: str) -> str:
    """The one useful line of torch's long weights_only error message."""
    for line in message.splitlines():
        if "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip()
            if rest:
                return rest
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    tail = [ln for ln in lines if not ln.startswith(("Check the documentation", "Please file an issue"))]
    return tail[-1] if tail else message


def _unreadable(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: not a readable PyTorch checkpoint (truncated or corrupt download?): {reason}. "
        f"Delete it and fetch it again."
    )


def infer_architecture(state: Mapping[str, torch.Tensor], head_width: int = 64) -> VitArchitecture:
    """Infer the ViT shape from classifier-keyed tensors (``visual.*``, ``classification_head.*``).

    As in OpenAI's ``build_model``, the number of heads cannot be read from shapes; OpenAI's
    ViTs all use 64-dimensional heads, hence the default.
    """
    required = ["visual.conv1.weight", "visual.positional_embedding", "visual.proj", "classification_head.weight"]
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"not an OpenAI-CLIP ViT classifier: missing {', '.join(missing)}")
    conv = state["visual.conv1.weight"]
    width, patch_size = conv.shape[0], conv.shape[-1]
    n_tokens = state["visual.positional_embedding"].shape[0]
    grid = round((n_tokens - 1) ** 0.5)
    if grid * grid + 1 != n_tokens:
        raise CheckpointError(f"positional_embedding has {n_tokens} rows, not 1 + a square number of patches")
    blocks = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k))}
    if blocks != set(range(len(blocks))):
        raise CheckpointError(f"transformer blocks are not numbered 0..n-1: {sorted(blocks)}")
    c_fc = state.get("visual.transformer.resblocks.0.mlp.c_fc.weight")
    mlp_ratio = c_fc.shape[0] / width if c_fc is not None else 4.0
    head = state["classification_head.weight"]
    return VitArchitecture(
        image_size=grid * patch_size,
        patch_size=patch_size,
        width=width,
        layers=len(blocks),
        head_width=head_width,
        mlp_ratio=mlp_ratio,
        embed_dim=state["visual.proj"].shape[1],
        num_classes=head.shape[0],
    )


def split_checkpoint(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split model-soups keys into classifier tensors and text-side tensors.

    Any key that is neither an image-tower / head key nor a known text-tower key is an error:
    silently dropping it could hide a checkpoint of another architecture.
    """
    classifier: dict[str, torch.Tensor] = {}
    text: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state.items():
        if key.startswith(HEAD_PREFIX):
            classifier[key] = tensor
        elif key.startswith(MODEL_PREFIX + "visual."):
            classifier[key[len(MODEL_PREFIX):]] = tensor
        elif key.startswith(MODEL_PREFIX) and _TEXT_KEY.match(key[len(MODEL_PREFIX):]):
            if not key.startswith(MODEL_PREFIX + "transformer.") and key != MODEL_PREFIX + "attn_mask":
                text[key[len(MODEL_PREFIX):]] = tensor
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"unexpected keys (not OpenAI CLIP image tower, head or text tower): {_names(unknown)}")
    return classifier, text


def classifier_from_state(
    state: Mapping[str, torch.Tensor],
    text_state: Mapping[str, torch.Tensor] | None = None,
    head_width: int = 64,
) -> CLIPClassifier:
    """Build a classifier from classifier-keyed tensors, checking every key and shape."""
    model = CLIPClassifier(infer_architecture(state, head_width), text_state=dict(text_state or {}))
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    misshaped = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_names(missing)}")
    if extra:
        problems.append(f"unexpected keys: {_names(extra)}")
    if misshaped:
        problems.append(f"mis-shaped tensors: {_names(misshaped)}")
    if problems:
        raise CheckpointError("; ".join(problems))
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def load_classifier(path: str | os.PathLike, head_width: int = 64) -> CLIPClassifier:
    """Load a model-soups-format checkpoint into exactly the architecture that made it."""
    state = read_state_dict(path)
    try:
        classifier, text = split_checkpoint(state)
        return classifier_from_state(classifier, text, head_width=head_width)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None


def checkpoint_state(model: CLIPClassifier) -> dict[str, torch.Tensor]:
    """The model-soups-format state dict of a classifier (image tower, head, text leftovers)."""
    state: dict[str, torch.Tensor] = {}
    for key, tensor in model.state_dict().items():
        name = key if key.startswith(HEAD_PREFIX) else MODEL_PREFIX + key
        state[name] = tensor.detach().cpu().contiguous()
    for key, tensor in model.text_state.items():
        state[MODEL_PREFIX + key] = tensor.detach().cpu().contiguous()
    return state


def save_classifier(model: CLIPClassifier, path: str | os.PathLike) -> None:
    """Write a classifier in the model-soups format, atomically (temp file, then rename)."""
    atomic_torch_save(checkpoint_state(model), path)


def atomic_torch_save(obj: object, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the target folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        # Through a file object, torch names the archive "archive" instead of after the random
        # temp file, so the same tensors always give the same bytes (checksummable rebuilds).
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def zeroshot_head_weights(
    clip_model: torch.nn.Module,
    tokenizer: Callable,
    classnames: Sequence[str],
    templates: Sequence[str | Callable[[str], str]],
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Head weight ``(num_classes, embed_dim)``: per class, the normalised mean of the normalised
    text embeddings of all templates, times the CLIP logit scale (open_clip's builder)."""
    from open_clip import build_zero_shot_classifier

    clip_model = clip_model.to(device).eval()
    with torch.no_grad():
        weights = build_zero_shot_classifier(
            clip_model, tokenizer, classnames, templates, num_classes_per_batch=10, device=device, use_tqdm=True
        )
        scale = clip_model.logit_scale.exp().item()
    return (scale * weights.T).float().cpu()


def zeroshot_classifier_from_clip(
    clip_model: torch.nn.Module,
    tokenizer: Callable,
    classnames: Sequence[str],
    templates: Sequence[str | Callable[[str], str]],
    head_width: int = 64,
    device: str | torch.device = "cpu",
) -> CLIPClassifier:
    """Image tower of an open_clip CLIP + its zero-shot head, as a CLIPClassifier (theta_0)."""
    weights = zeroshot_head_weights(clip_model, tokenizer, classnames, templates, device=device)
    full = {k: v.detach().float().cpu() for k, v in clip_model.state_dict().items()}
    visual = {k: v for k, v in full.items() if k.startswith("visual.")}
    text = {k: v for k, v in full.items() if not k.startswith("visual.") and _TEXT_KEY.match(k)
            and not k.startswith("transformer.") and k != "attn_mask"}
    visual["classification_head.weight"] = weights
    visual["classification_head.bias"] = torch.zeros(weights.shape[0])
    return classifier_from_state(visual, text, head_width=head_width)


def build_zeroshot_classifier(
    model_name: str,
    pretrained: str | None,
    classnames: Sequence[str],
    templates: Sequence[str | Callable[[str], str]],
    cache_dir: str | os.PathLike | None = None,
    head_width: int = 64,
    device: str | torch.device = "cpu",
) -> CLIPClassifier:
    """theta_0 for an open_clip model: ``pretrained`` is an open_clip tag (downloaded into
    ``cache_dir`` when online) or a path to a local weights file."""
    import open_clip

    clip_model = open_clip.create_model(
        model_name, pretrained=pretrained, cache_dir=str(cache_dir) if cache_dir else None, device="cpu"
    )
    tokenizer = open_clip.get_tokenizer(model_name)
    return zeroshot_classifier_from_clip(clip_model, tokenizer, classnames, templates, head_width, device)


def random_classifier(model_name: str = "ViT-B-32-quickgelu", num_classes: int = 1000, seed: int = 0) -> CLIPClassifier:
    """An open_clip image tower with random weights and a random head, built offline.

    For throughput benchmarks and shape tests, where the weights do not matter but the
    architecture must be exactly the paper world's.
    """
    import open_clip

    torch.manual_seed(seed)
    clip = open_clip.create_model(model_name, pretrained=None)
    state = {k: v for k, v in clip.state_dict().items() if k.startswith("visual.")}
    state["classification_head.weight"] = 0.01 * torch.randn(num_classes, state["visual.proj"].shape[1])
    state["classification_head.bias"] = torch.zeros(num_classes)
    return classifier_from_state(state)


def _names(items: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" ... and {len(items) - limit} more" if len(items) > limit else "")
