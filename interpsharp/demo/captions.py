"""Captions for contrastive pretraining and prompt templates for the zero-shot head.

CLIP learns from web captions that describe *what* is shown and often *how* (a photo, a
sketch, a pattern). The demo captions do the same: each pretraining image gets one caption
naming its class, its style and, where the style has one, its colour or pattern
("a photo of a red star", "a sketch of a star", "a star with a striped texture",
"a cluttered picture of a star"). Attributes make captions more distinct, which matters
because duplicate captions in a batch act as false negatives under the plain CLIP loss.
Cluttered pictures get no colour: their distractors are coloured too, so a colour would not
say which object the caption is about.

The zero-shot head (built by the paper world's code) averages class prompts over templates
that name the style but no attribute, as OpenAI's ImageNet templates do.
"""

from __future__ import annotations

from interpsharp.demo.images import CLASSNAMES, COLOURS, PATTERNS, ImageAttributes

#: Styles seen during pretraining; ``photo2`` is held out as the natural (V2-like) shift.
PRETRAIN_STYLES: tuple[str, ...] = ("photo", "sketch", "texture", "clutter")

#: Prompt templates for the zero-shot head, one per pretraining style plus a neutral one.
TEMPLATES: tuple[str, ...] = (
    "a photo of a {}",
    "a picture of a {}",
    "a sketch of a {}",
    "a {} with a striped texture",
    "a cluttered picture of a {}",
)


def caption(style: str, classname: str, attributes: ImageAttributes) -> str:
    """The pretraining caption of one image."""
    if style == "photo":
        return f"a photo of a {attributes.colour} {classname}"
    if style == "sketch":
        return f"a sketch of a {classname}"
    if style == "texture":
        return f"a {classname} with a {attributes.pattern} texture"
    if style == "clutter":
        return f"a cluttered picture of a {classname}"
    raise KeyError(f"no captions for style {style!r}; pretraining styles: {', '.join(PRETRAIN_STYLES)}")


def all_captions() -> list[str]:
    """Every caption the pretraining data can contain, in a fixed order."""
    out = []
    for classname in CLASSNAMES:
        out += [caption("photo", classname, ImageAttributes(colour)) for colour in COLOURS]
        out.append(caption("sketch", classname, ImageAttributes("grey")))
        out += [caption("texture", classname, ImageAttributes("", pattern)) for pattern in PATTERNS]
        out.append(caption("clutter", classname, ImageAttributes("")))
    return out
