"""Which open_clip image towers the pipeline can work on, and what it must know about them.

Every measurement here runs on :class:`~interpsharp.classifier.CLIPClassifier`, whose staged
forward (prefix caching) is written for one family: open_clip's ``VisionTransformer`` in
OpenAI's layout (patch conv, class token, learned positional embedding, ``ln_pre``, plain
pre-norm blocks, class-token pooling, ``ln_post``, ``proj``). That family covers OpenAI's
ViTs and most LAION / DataComp / MetaCLIP / DFN towers (``ViT-B-32``, ``ViT-B-16``,
``ViT-L-14``, ``ViT-H-14``, ``ViT-bigG-14`` and their ``-quickgelu`` variants). Other towers
are refused up front with the feature that does not fit named, rather than evaluated wrongly.

Two things the tensors cannot tell are read from the built open_clip model, not assumed:
the MLP activation (QuickGELU or GELU; open_clip even builds ``ViT-B-16`` + ``openai`` with
GELU, warning about it) and the input normalisation (``preprocess_cfg``: the pretrained tag's
mean/std, else the model config's). The attention head width comes from the module too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from torch import nn

from interpsharp.classifier import Preprocess, VitArchitecture

#: The evaluation caches hold images resized on their shortest side (bicubic) and centre
#: cropped, OpenAI's eval transform (:mod:`interpsharp.datasets`); a tower expecting another
#: resize would be fed the wrong pixels.
CACHE_RESIZE = {"interpolation": "bicubic", "resize_mode": "shortest"}

#: Vision-config keys of open_clip's ``CLIPVisionCfg`` that leave the OpenAI layout, with
#: the value that keeps it and the name a user recognises.
_VISION_FEATURES: tuple[tuple[str, Any, str], ...] = (
    ("attentional_pool", False, "attentional pooling (CoCa-style attn_pool)"),
    ("ls_init_value", None, "layer scale (ls_init_value)"),
    ("no_ln_pre", False, "no ln_pre (no_ln_pre)"),
    ("pool_type", "tok", "token pooling other than the class token (pool_type)"),
    ("pos_embed_type", "learnable", "fixed positional embedding (pos_embed_type)"),
    ("act_kwargs", None, "activation arguments (act_kwargs)"),
    ("norm_kwargs", None, "LayerNorm arguments (norm_kwargs)"),
    ("block_type", None, "custom transformer blocks (block_type)"),
    ("qk_norm", False, "query/key normalisation (qk_norm)"),
    ("scaled_cosine_attn", False, "scaled cosine attention"),
    ("scale_heads", False, "per-head scaling (scale_heads)"),
    ("scale_attn_inner", False, "inner attention LayerNorm (scale_attn_inner)"),
    ("scale_attn", False, "attention output LayerNorm (scale_attn)"),
    ("scale_fc", False, "MLP LayerNorm (scale_fc)"),
)


class UnsupportedTowerError(ValueError):
    """An open_clip model whose image tower is not a plain OpenAI-layout ViT."""


def unsupported_features(model_cfg: Mapping[str, Any]) -> list[str]:
    """What in an open_clip model config (``open_clip.get_model_config``) is not a plain ViT."""
    vision = dict(model_cfg.get("vision_cfg") or {})
    found = []
    if "multimodal_cfg" in model_cfg:
        found.append("a CoCa text decoder (multimodal_cfg)")
    timm_name = vision.get("timm_model_name")
    if timm_name:
        kind = "ConvNeXt" if "convnext" in timm_name else "a timm trunk"
        found.append(f"{kind} ({timm_name})")
        if vision.get("timm_pool") == "map":
            found.append("SigLIP's map head (attention-pool, timm_pool: map)")
    elif isinstance(vision.get("layers"), (list, tuple)):
        found.append("a ResNet tower (ModifiedResNet)")
    for key, plain, name in _VISION_FEATURES:
        if key in vision and vision[key] != plain and not (key == "block_type" and vision[key] == "default"):
            found.append(name)
    return found


def check_model_config(model_name: str, model_cfg: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The open_clip config of ``model_name``, refused if its tower is not a plain ViT."""
    if model_cfg is None:
        import open_clip

        model_cfg = open_clip.get_model_config(model_name)
    if model_cfg is None:
        raise UnsupportedTowerError(
            f"{model_name!r} is not an open_clip model config (open_clip.list_models() lists them; a config "
            f"of your own can be given with zeroshot.model_config)"
        )
    found = unsupported_features(model_cfg)
    if found:
        raise UnsupportedTowerError(_refusal(model_name, found))
    return dict(model_cfg)


def _refusal(model_name: str, found: list[str]) -> str:
    return (
        f"open_clip model {model_name!r}: its image tower is not a plain OpenAI-layout ViT; unsupported: "
        f"{'; '.join(found)}. interpsharp's staged forward (prefix caching) covers open_clip's "
        f"VisionTransformer with class-token pooling, ln_pre and plain blocks (ViT-B-32, ViT-B-16, "
        f"ViT-L-14, ViT-H-14, ... with QuickGELU or GELU)."
    )


def tower_architecture(clip_model: nn.Module, num_classes: int, model_name: str = "open_clip model") -> VitArchitecture:
    """Shape, activation and head width of a built open_clip model's image tower.

    Read from the modules rather than the config, so it also holds for towers built from
    OpenAI's JIT files or with ``force_quick_gelu``, and checked feature by feature.
    """
    from open_clip.transformer import QuickGELU, ResidualAttentionBlock, VisionTransformer

    visual = getattr(clip_model, "visual", clip_model)
    if not isinstance(visual, VisionTransformer):
        raise UnsupportedTowerError(_refusal(model_name, [f"image tower {type(visual).__name__}, not open_clip's VisionTransformer"]))
    found = []
    if getattr(visual, "attn_pool", None) is not None:
        found.append("attentional pooling (attn_pool)")
    if getattr(visual, "pool_type", "tok") != "tok":
        found.append(f"{visual.pool_type!r} token pooling")
    if isinstance(visual.ln_pre, nn.Identity):
        found.append("no ln_pre")
    if not visual.positional_embedding.requires_grad:
        found.append("fixed positional embedding")
    if tuple(visual.patch_size) != (visual.patch_size[0],) * 2 or tuple(visual.image_size) != (visual.image_size[0],) * 2:
        found.append(f"non-square patches or images ({visual.patch_size}, {visual.image_size})")
    blocks = list(visual.transformer.resblocks)
    acts = set()
    for block in blocks:
        if type(block) is not ResidualAttentionBlock:
            found.append(f"custom transformer blocks ({type(block).__name__})")
            break
        if not isinstance(block.ls_1, nn.Identity) or not isinstance(block.ls_2, nn.Identity):
            found.append("layer scale (ls_1/ls_2)")
            break
        norms = [m for m in block.modules() if isinstance(m, nn.LayerNorm)]
        if any(m.eps != 1e-5 or not m.elementwise_affine for m in norms):
            found.append("LayerNorm with non-default eps or without affine parameters")
            break
        gelu = block.mlp.gelu
        if isinstance(gelu, QuickGELU):
            acts.add("quick_gelu")
        elif type(gelu) is nn.GELU and gelu.approximate == "none":
            acts.add("gelu")
        else:
            found.append(f"MLP activation {gelu!r}")
            break
    if len(acts) > 1:
        found.append("mixed activations across blocks")
    if found:
        raise UnsupportedTowerError(_refusal(model_name, found))
    width = visual.conv1.weight.shape[0]
    return VitArchitecture(
        image_size=int(visual.image_size[0]),
        patch_size=int(visual.patch_size[0]),
        width=width,
        layers=len(blocks),
        head_width=width // blocks[0].attn.num_heads,
        mlp_ratio=blocks[0].mlp.c_fc.weight.shape[0] / width,
        embed_dim=visual.proj.shape[1],
        num_classes=num_classes,
        act=acts.pop(),
    )


def tower_preprocess(clip_model: nn.Module, model_name: str = "open_clip model") -> Preprocess:
    """The tower's input normalisation from open_clip's ``preprocess_cfg`` (the pretrained tag's
    values when the weights came from a tag, else the model config's, else OpenAI's).

    Towers that expect another resize than the caches' (SigLIP's and CLIPA's ``squash``,
    bilinear interpolation) are refused: their numbers would be measured on wrong pixels.
    """
    visual = getattr(clip_model, "visual", clip_model)
    cfg = dict(getattr(visual, "preprocess_cfg", None) or {})
    wrong = {key: cfg[key] for key, value in CACHE_RESIZE.items() if key in cfg and cfg[key] != value}
    if wrong:
        settings = ", ".join(f"{k}={v!r}" for k, v in wrong.items())
        raise UnsupportedTowerError(
            f"open_clip model {model_name!r} expects images preprocessed with {settings}; interpsharp's "
            f"evaluation caches resize the shortest side (bicubic) and centre crop, OpenAI's eval "
            f"transform, so this tower would see other pixels than it was trained on"
        )
    mean = cfg.get("mean") or getattr(visual, "image_mean", None)
    std = cfg.get("std") or getattr(visual, "image_std", None)
    return Preprocess(**{k: tuple(v) for k, v in (("mean", mean), ("std", std)) if v is not None})


def vision_architecture_from_config(model_name: str, num_classes: int, model_cfg: Mapping[str, Any] | None = None) -> VitArchitecture:
    """The architecture an open_clip config describes, without building the model (for cost
    estimates and checks made before any weights exist). The activation follows the config's
    ``quick_gelu``; a built model is the authority (:func:`tower_architecture`)."""
    cfg = check_model_config(model_name, model_cfg)
    vision = cfg["vision_cfg"]
    return VitArchitecture(
        image_size=int(vision.get("image_size", 224)),
        patch_size=int(vision.get("patch_size", 16)),
        width=int(vision.get("width", 768)),
        layers=int(vision.get("layers", 12)),
        head_width=int(vision.get("head_width", 64)),
        mlp_ratio=float(vision.get("mlp_ratio", 4.0)),
        embed_dim=int(cfg["embed_dim"]),
        num_classes=num_classes,
        act="quick_gelu" if cfg.get("quick_gelu", False) else "gelu",
    )


def register_model_config(path: str | None) -> str | None:
    """Make an open_clip model config JSON of your own known to open_clip under its file stem
    (``my-vit.json`` -> ``my-vit``); returns that name (None when ``path`` is None)."""
    if path is None:
        return None
    import open_clip

    config = Path(path)
    if not config.is_file():
        raise FileNotFoundError(f"{config}: no such open_clip model config (zeroshot.model_config)")
    open_clip.add_model_config(config)
    return config.stem


def create_open_clip(model_name: str, pretrained: str | None, cache_dir: str | None = None,
                     mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> nn.Module:
    """An open_clip model on the CPU, its config checked first (so a refused tower fails before
    gigabytes of weights are fetched); ``mean``/``std`` override the normalisation open_clip
    derives (for weights given as a local file, whose tag open_clip cannot know)."""
    import open_clip

    check_model_config(model_name)
    force = {k: tuple(v) for k, v in (("mean", mean), ("std", std)) if v is not None}
    return open_clip.create_model(
        model_name, pretrained=pretrained, cache_dir=cache_dir, device="cpu", force_preprocess_cfg=force or None,
    )
