"""Classifier checkpoints: the model-soups format we write, and the formats we read.

We write one format, model-soups' (``model_{i}.pt``): a plain state dict of
``model.<OpenAI CLIP keys>`` with the text transformer removed, plus
``classification_head.weight/bias``. Paper-world checkpoints written here load in model-soups
code and theirs load here. A tower that is not OpenAI's QuickGELU ViT with OpenAI's input
normalisation (a GELU ViT-B-16, a LAION ViT-L-14 with mean/std 0.5) also gets one string entry,
``interpsharp.tower`` (:class:`TowerSpec` as JSON): what shapes cannot tell must travel with
the weights, or a GELU tower would be reloaded as QuickGELU and give other logits.

We read, always with ``torch.load(weights_only=True)`` (a checkpoint is data, never code):

- model-soups: ``model.visual.*`` + ``classification_head.*`` (+ text-side leftovers);
- WiSE-FT state dicts (``ImageClassifier.state_dict()``): ``image_encoder.model.visual.*`` +
  ``classification_head.*``;
- plain classifier state dicts: ``visual.*`` + ``classification_head.*``;
- open_clip training checkpoints ``{"state_dict": {"module.visual...": ...}, "epoch": ...}``
  (with or without ``module.``) and bare open_clip CLIP state dicts: these have no head, so one
  is given with them (a head file, or a zero-shot head built with their own text tower).

Pickled whole modules (``torch.save(model)``, WiSE-FT's ``ImageClassifier.save``) are refused
with a recipe for turning them into a state dict. A fine-tune loaded *like* theta_0 must have
theta_0's architecture exactly; otherwise the error names the first key that differs and its
two shapes.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from interpsharp.classifier import ACTIVATIONS, CLIPClassifier, Preprocess, VitArchitecture

MODEL_PREFIX = "model."
HEAD_PREFIX = "classification_head."
#: The one non-tensor entry a checkpoint may hold: the :class:`TowerSpec` as a JSON string.
SPEC_KEY = "interpsharp.tower"

#: Keys of the text side of an open_clip CLIP (relative to the model); they may be present or
#: absent. ``text.*`` is the text tower of open_clip's CustomTextCLIP (Hugging Face towers).
_TEXT_KEY = re.compile(
    r"^(transformer\..*|text\..*|token_embedding\.weight|positional_embedding|ln_final\.(weight|bias)"
    r"|text_projection|logit_scale|logit_bias|attn_mask)$"
)
#: Text-side keys not written back: the text transformer (model-soups drops it too) and buffers.
_DROPPED_TEXT_KEY = re.compile(r"^(transformer\..*|text\..*|attn_mask)$")
_BLOCK_KEY = re.compile(r"^visual\.transformer\.resblocks\.(\d+)\.")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class TowerSpec:
    """What a checkpoint's tensor shapes cannot tell: the MLP activation, the attention head
    width and the input normalisation. The default is what model-soups / WiSE-FT checkpoints
    imply (OpenAI's ViTs), so files without a spec load as they always did."""

    act: str = "quick_gelu"
    head_width: int = 64
    preprocess: Preprocess = field(default_factory=Preprocess)

    def __post_init__(self) -> None:
        if self.act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.act!r}; choose one of {', '.join(ACTIVATIONS)}")

    @classmethod
    def of(cls, model: CLIPClassifier) -> "TowerSpec":
        return cls(act=model.arch.act, head_width=model.arch.head_width, preprocess=model.preprocess)

    def to_json(self) -> str:
        return json.dumps({"act": self.act, "head_width": self.head_width, "mean": list(self.preprocess.mean),
                           "std": list(self.preprocess.std)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TowerSpec":
        try:
            data = json.loads(text)
            return cls(act=data["act"], head_width=int(data["head_width"]),
                       preprocess=Preprocess(mean=tuple(data["mean"]), std=tuple(data["std"])))
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"entry {SPEC_KEY!r} is not a valid tower description ({err}): {text[:200]!r}") from None

    def describe(self) -> str:
        return (f"{self.act}, {self.head_width}-wide heads, mean {_rounded(self.preprocess.mean)}, "
                f"std {_rounded(self.preprocess.std)}")


def _rounded(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def read_checkpoint(path: str | os.PathLike) -> Mapping[str, Any]:
    """Read a checkpoint file with ``weights_only=True``, turning low-level failures into
    messages that name the file: tensors, numbers, strings and containers only, never code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = _torch_load(path)
    except pickle.UnpicklingError as err:
        reason = _weights_unpickler_reason(str(err))
        if "Unsupported global" in reason:
            raise CheckpointError(
                f"{path}: refused to load: the file holds pickled Python objects other than tensors "
                f"({reason}), e.g. a whole model saved with torch.save(model), as WiSE-FT's "
                f"ImageClassifier.save does. Checkpoints are only ever read with weights_only=True, so "
                f"such a file is never unpickled here. Turn it into a state dict where the code that "
                f"made it is importable, and only for a file you trust: "
                f"python -c \"import torch; torch.save(torch.load('{path.name}', weights_only=False).state_dict(), "
                f"'{path.stem}_state_dict.pt')\", then give that file (a WiSE-FT ImageClassifier's state dict "
                f"is read as is)"
            ) from err
        raise _unreadable(path, reason) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, KeyError, ValueError) as err:
        # A truncated zip archive raises RuntimeError; bytes that are no pickle at all can
        # surface as KeyError/ValueError from the unpickler.
        raise _unreadable(path, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from err
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a state dict (a mapping of names to tensors), got {type(state).__name__}")
    return state


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``, memory-mapped where the file allows it: tensors are
    then read from the page cache when copied into a model, instead of held twice in memory
    (a ViT-L-14 checkpoint is 1.2 GB). Files in torch's legacy (pre-zip) format cannot be
    mapped and are read whole."""
    if zipfile.is_zipfile(path):
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return torch.load(path, map_location="cpu", weights_only=True)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a state-dict file (its tower spec entry, if any, left out)."""
    state = {k: v for k, v in read_checkpoint(path).items() if k != SPEC_KEY}
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        kinds = sorted({type(v).__name__ for v in state.values() if not isinstance(v, torch.Tensor)})
        raise CheckpointError(f"{path}: expected a state dict mapping names to tensors, found {', '.join(kinds)} values")
    return state


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


def infer_architecture(state: Mapping[str, torch.Tensor], head_width: int = 64, act: str = "quick_gelu") -> VitArchitecture:
    """Infer the ViT shape from classifier-keyed tensors (``visual.*``, ``classification_head.*``).

    As in OpenAI's ``build_model``, the number of heads cannot be read from shapes, nor the
    activation: both come from the caller (a :class:`TowerSpec`), defaulting to OpenAI's.
    """
    required = ["visual.conv1.weight", "visual.positional_embedding", "visual.proj", "classification_head.weight"]
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"not an OpenAI-layout ViT classifier: missing {', '.join(missing)}")
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
        act=act,
    )


# -- formats ---------------------------------------------------------------------------------

@dataclass
class ClassifierTensors:
    """A checkpoint file's content in classifier keys, whatever format it came in."""

    classifier: dict[str, torch.Tensor]
    text: dict[str, torch.Tensor]
    spec: TowerSpec | None
    format: str

    @property
    def has_head(self) -> bool:
        return any(k.startswith(HEAD_PREFIX) for k in self.classifier)


#: Model prefixes of the state-dict formats, tried in order: model-soups, WiSE-FT, plain.
_MODEL_PREFIXES = {"model-soups": MODEL_PREFIX, "wise-ft": "image_encoder.model.", "classifier": ""}


def classifier_tensors(raw: Mapping[str, Any]) -> ClassifierTensors:
    """Sort a checkpoint's entries into image tower + head, text-side leftovers and the spec.

    Any key that is neither an image-tower / head key nor a known text-tower key is an error:
    silently dropping it could hide a checkpoint of another architecture.
    """
    raw = dict(raw)
    spec = TowerSpec.from_json(raw.pop(SPEC_KEY)) if isinstance(raw.get(SPEC_KEY), str) else None
    training = isinstance(raw.get("state_dict"), Mapping)
    if training:  # open_clip's training checkpoints: {"epoch", "name", "state_dict", "optimizer", ...}
        raw = dict(raw["state_dict"])
        if raw and all(k.startswith("module.") for k in raw):
            raw = {k[len("module."):]: v for k, v in raw.items()}
    not_tensors = sorted(k for k, v in raw.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise CheckpointError(f"expected a state dict mapping names to tensors; not tensors: {_names(not_tensors)}")
    fmt = next((name for name, prefix in _MODEL_PREFIXES.items() if prefix + "visual.conv1.weight" in raw), None)
    if fmt is None:
        raise CheckpointError(
            "no image tower found (no model.visual.*, image_encoder.model.visual.* or visual.* keys); "
            f"first keys: {_names(sorted(raw), 6)}. Accepted: model-soups, WiSE-FT and plain classifier state "
            "dicts, open_clip training checkpoints"
        )
    prefix = _MODEL_PREFIXES[fmt]
    classifier: dict[str, torch.Tensor] = {}
    text: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in raw.items():
        inner = key[len(prefix):] if key.startswith(prefix) else None
        if key.startswith(HEAD_PREFIX):
            classifier[key] = tensor
        elif inner is not None and inner.startswith("visual."):
            classifier[inner] = tensor
        elif inner is not None and _TEXT_KEY.match(inner):
            if not _DROPPED_TEXT_KEY.match(inner):
                text[inner] = tensor
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"unexpected keys (not an image tower, head or text tower): {_names(unknown)}")
    if training or (fmt == "classifier" and not any(k.startswith(HEAD_PREFIX) for k in classifier)):
        fmt = "open_clip training checkpoint" if training else "open_clip CLIP state dict"
    return ClassifierTensors(classifier, text, spec, fmt)


def read_head(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A classification head from a file: ``classification_head.weight/bias`` (alone or inside
    any classifier checkpoint) or a bare ``weight``/``bias`` pair (an ``nn.Linear``'s state dict)."""
    state = read_state_dict(path)
    head = {k: v for k, v in state.items() if k.startswith(HEAD_PREFIX)}
    if not head and set(state) <= {"weight", "bias"} and "weight" in state:
        head = {HEAD_PREFIX + k: v for k, v in state.items()}
    if HEAD_PREFIX + "weight" not in head:
        raise CheckpointError(f"{path}: no classification head (classification_head.weight, or weight + bias); "
                              f"keys: {_names(sorted(state), 6)}")
    weight = head[HEAD_PREFIX + "weight"]
    head.setdefault(HEAD_PREFIX + "bias", torch.zeros(weight.shape[0], dtype=weight.dtype))
    return head


def _resolve_spec(own: TowerSpec | None, like: CLIPClassifier | None, head_width: int | None) -> TowerSpec:
    """The tower spec a file is loaded with: its own, else theta_0's (``like``), else OpenAI's.
    Sources that disagree are an error: loading a GELU tower as QuickGELU gives wrong logits."""
    given = [(name, spec) for name, spec in (("the checkpoint's own", own), ("theta_0's", TowerSpec.of(like) if like else None))
             if spec is not None]
    if len(given) == 2 and given[0][1] != given[1][1]:
        raise CheckpointError(f"tower spec differs from theta_0's: {given[0][1].describe()} in the file, "
                              f"{given[1][1].describe()} in theta_0")
    spec = given[0][1] if given else TowerSpec(head_width=head_width or 64)
    if head_width is not None and head_width != spec.head_width:
        raise CheckpointError(f"head width {head_width} was asked for, but {given[0][0]} tower spec says {spec.head_width}")
    return spec


def check_same_architecture(reference: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
                            name: str = "the fine-tune", reference_name: str = "theta_0") -> None:
    """Refuse ``state`` unless it has ``reference``'s keys and shapes; the error names the first
    key (in ``reference``'s order) that differs, with both shapes."""
    for key, tensor in reference.items():
        other = state.get(key)
        if other is None or other.shape != tensor.shape:
            shape = "absent" if other is None else str(tuple(other.shape))
            raise CheckpointError(
                f"{name} does not have {reference_name}'s architecture: first mismatching key {key}: "
                f"{shape} in {name}, {tuple(tensor.shape)} in {reference_name}"
            )
    extra = [k for k in state if k not in reference]
    if extra:
        raise CheckpointError(f"{name} does not have {reference_name}'s architecture: first mismatching key "
                              f"{extra[0]}: {tuple(state[extra[0]].shape)} in {name}, absent in {reference_name}")


def classifier_from_state(
    state: Mapping[str, torch.Tensor],
    text_state: Mapping[str, torch.Tensor] | None = None,
    head_width: int | None = None,
    spec: TowerSpec | None = None,
) -> CLIPClassifier:
    """Build a classifier from classifier-keyed tensors, checking every key and shape.

    ``spec`` says what shapes cannot (default: OpenAI's QuickGELU ViT with ``head_width``).
    """
    if spec is None:
        spec = TowerSpec(head_width=head_width or 64)
    elif head_width is not None and head_width != spec.head_width:
        raise ValueError(f"head_width {head_width} contradicts the tower spec's {spec.head_width}")
    # Built on the meta device: no memory or time spent on a random init that is overwritten
    # anyway (ViT-L-14: 1.2 GB). The loaded tensors are contiguous copies, never shared with the
    # caller's: a strided view would select other kernels and change logits in the last bits.
    with torch.device("meta"):
        model = CLIPClassifier(infer_architecture(state, spec.head_width, spec.act), text_state=dict(text_state or {}),
                               preprocess=spec.preprocess)
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
    model.load_state_dict(
        {k: v.to(torch.float32, memory_format=torch.contiguous_format, copy=True) for k, v in state.items()}, assign=True
    )
    return model.eval()


def load_classifier(
    path: str | os.PathLike,
    head_width: int | None = None,
    like: CLIPClassifier | None = None,
    head: Mapping[str, torch.Tensor] | None = None,
) -> CLIPClassifier:
    """Load a classifier from any accepted checkpoint format (see the module docstring).

    ``like`` is theta_0 when loading a fine-tune: the file must have its architecture (keys
    and shapes, checked first so the error names the first difference) and gets its activation,
    head width and normalisation unless the file records its own (which must then agree).
    ``head`` (``classification_head.weight/bias``) completes checkpoints that have none (open_clip
    training checkpoints). ``head_width`` is for spec-less files of towers whose heads are not
    64 wide.
    """
    try:
        tensors = classifier_tensors(read_checkpoint(path))
        if head is not None:
            if tensors.has_head:
                raise CheckpointError(f"a head was given, but this {tensors.format} has its own")
            tensors.classifier.update({k: v for k, v in head.items() if k.startswith(HEAD_PREFIX)})
        if not tensors.has_head:
            raise CheckpointError(
                f"this {tensors.format} has no classification head; give it one (finetuned.checkpoints.<name>.head: "
                f"a file holding classification_head.weight/bias, or 'zeroshot' for the zero-shot head of its own "
                f"text tower)"
            )
        spec = _resolve_spec(tensors.spec, like, head_width)
        if like is not None:
            check_same_architecture(like.state_dict(), tensors.classifier, name=Path(path).name)
        return classifier_from_state(tensors.classifier, tensors.text, spec=spec)
    except CheckpointError as err:
        message = str(err)
        raise CheckpointError(message if message.startswith(str(path)) else f"{path}: {message}") from None


def checkpoint_state(model: CLIPClassifier) -> dict[str, Any]:
    """The model-soups-format state dict of a classifier (image tower, head, text leftovers),
    plus the tower spec entry when the tower is not OpenAI's QuickGELU ViT with OpenAI's
    normalisation (see the module docstring)."""
    state: dict[str, Any] = {}
    for key, tensor in model.state_dict().items():
        name = key if key.startswith(HEAD_PREFIX) else MODEL_PREFIX + key
        state[name] = tensor.detach().cpu().contiguous()
    for key, tensor in model.text_state.items():
        state[MODEL_PREFIX + key] = tensor.detach().cpu().contiguous()
    spec = TowerSpec.of(model)
    if spec != TowerSpec():
        state[SPEC_KEY] = spec.to_json()
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


# -- zero-shot heads -------------------------------------------------------------------------

def read_templates(path: str | os.PathLike) -> list[str]:
    """Prompt templates from a text file, one a line, each with ``{}`` where the class name
    goes (a template without it would give every class the same prompt)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such templates file")
    templates = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not templates:
        raise ValueError(f"{path}: no templates (expected one per line, e.g. 'a photo of a {{}}.')")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ValueError(f"{path}: templates without '{{}}' for the class name: {bad[:3]}")
    return templates


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


def classifier_from_clip(
    clip_model: torch.nn.Module,
    head: Mapping[str, torch.Tensor],
    model_name: str = "open_clip model",
) -> CLIPClassifier:
    """An open_clip CLIP's image tower with ``head`` (``classification_head.weight/bias``).

    The activation, head width and normalisation are read from the built model
    (:mod:`interpsharp.towers`); a tower that is not a plain ViT is refused there. The text
    tower's small tensors are kept as text leftovers (model-soups checkpoints carry them).
    """
    from interpsharp.towers import tower_architecture, tower_preprocess

    weight = head[HEAD_PREFIX + "weight"]
    arch = tower_architecture(clip_model, weight.shape[0], model_name)
    spec = TowerSpec(act=arch.act, head_width=arch.head_width, preprocess=tower_preprocess(clip_model, model_name))
    full = {k: v.detach().float().cpu() for k, v in clip_model.state_dict().items()}
    visual = {k: v for k, v in full.items() if k.startswith("visual.")}
    text = {k: v for k, v in full.items() if _TEXT_KEY.match(k) and not _DROPPED_TEXT_KEY.match(k)}
    visual[HEAD_PREFIX + "weight"] = weight.detach().float().cpu()
    visual[HEAD_PREFIX + "bias"] = head.get(HEAD_PREFIX + "bias", torch.zeros(weight.shape[0])).detach().float().cpu()
    return classifier_from_state(visual, text, spec=spec)


def zeroshot_classifier_from_clip(
    clip_model: torch.nn.Module,
    tokenizer: Callable,
    classnames: Sequence[str],
    templates: Sequence[str | Callable[[str], str]],
    head_width: int | None = None,
    device: str | torch.device = "cpu",
    model_name: str = "open_clip model",
) -> CLIPClassifier:
    """Image tower of an open_clip CLIP + its zero-shot head, as a CLIPClassifier (theta_0)."""
    from interpsharp.towers import tower_architecture

    tower_architecture(clip_model, len(classnames), model_name)  # refuse before the text tower runs
    weights = zeroshot_head_weights(clip_model, tokenizer, classnames, templates, device=device)
    model = classifier_from_clip(clip_model, {HEAD_PREFIX + "weight": weights}, model_name)
    if head_width is not None and head_width != model.arch.head_width:
        raise ValueError(f"{model_name}: head width {head_width} was asked for, but the tower's heads are {model.arch.head_width} wide")
    return model


def build_zeroshot_classifier(
    model_name: str,
    pretrained: str | None,
    classnames: Sequence[str],
    templates: Sequence[str | Callable[[str], str]],
    cache_dir: str | os.PathLike | None = None,
    head_width: int | None = None,
    device: str | torch.device = "cpu",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> CLIPClassifier:
    """theta_0 for an open_clip model: ``pretrained`` is an open_clip tag (downloaded into
    ``cache_dir`` when online) or a path to a local weights file; ``mean``/``std`` override the
    normalisation open_clip derives (which for a local file is the model config's or OpenAI's)."""
    import open_clip

    from interpsharp.towers import create_open_clip

    clip_model = create_open_clip(model_name, pretrained, str(cache_dir) if cache_dir else None, mean=mean, std=std)
    tokenizer = open_clip.get_tokenizer(model_name)
    return zeroshot_classifier_from_clip(clip_model, tokenizer, classnames, templates, head_width, device, model_name)


def zeroshot_head_of_checkpoint(
    path: str | os.PathLike,
    model_name: str,
    classnames: Sequence[str],
    templates: Sequence[str | Callable[[str], str]],
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """The zero-shot head built with a checkpoint's *own* text tower (an open_clip training
    checkpoint or CLIP state dict of ``model_name``), as ``classification_head.*`` tensors.

    For contrastively fine-tuned CLIPs (FLYP-style), whose classifier is their zero-shot head.
    """
    import open_clip

    from interpsharp.towers import create_open_clip

    raw = dict(read_checkpoint(path))
    state = raw["state_dict"] if isinstance(raw.get("state_dict"), Mapping) else raw
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    clip_model = create_open_clip(model_name, None)
    try:
        clip_model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: not a complete open_clip {model_name} (image and text towers), so no "
                              f"zero-shot head can be built with its text tower: {str(err).splitlines()[0]}") from None
    weights = zeroshot_head_weights(clip_model, open_clip.get_tokenizer(model_name), classnames, templates, device)
    return {HEAD_PREFIX + "weight": weights, HEAD_PREFIX + "bias": torch.zeros(weights.shape[0])}


def random_classifier(model_name: str = "ViT-B-32-quickgelu", num_classes: int = 1000, seed: int = 0) -> CLIPClassifier:
    """An open_clip image tower with random weights and a random head, built offline.

    For throughput benchmarks and shape tests, where the weights do not matter but the
    architecture must be exactly the named model's (activation and head width included).
    """
    from interpsharp.towers import create_open_clip

    torch.manual_seed(seed)
    clip = create_open_clip(model_name, None)
    head = {HEAD_PREFIX + "weight": 0.01 * torch.randn(num_classes, clip.visual.proj.shape[1])}
    return classifier_from_clip(clip, head, model_name)


def _names(items: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" ... and {len(items) - limit} more" if len(items) > limit else "")
