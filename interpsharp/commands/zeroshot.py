"""``interpsharp zeroshot``: build theta_0, an open_clip image tower with its zero-shot head."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Sequence

from interpsharp.commands._arguments import add_device, add_output



def _imagenet_classnames() -> list[str]:
    from open_clip import IMAGENET_CLASSNAMES

    return list(IMAGENET_CLASSNAMES)


def _openai_imagenet_templates() -> list[Callable[[str], str]]:
    from open_clip import OPENAI_IMAGENET_TEMPLATES

    return list(OPENAI_IMAGENET_TEMPLATES)


#: Built-in class-name and template lists, by name; anything else is read as a text file.
#: Loaded on use: importing open_clip takes seconds, and ``--help`` should not wait for it.
CLASSNAMES: dict[str, Callable[[], list]] = {"imagenet": _imagenet_classnames}
TEMPLATES: dict[str, Callable[[], list]] = {"openai_imagenet": _openai_imagenet_templates}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "zeroshot",
        help="build the zero-shot classifier theta_0 from an open_clip model",
        description=(
            "Image tower of an open_clip CLIP plus its zero-shot head: for each class, the normalised "
            "mean of the normalised text embeddings of all templates, times the logit scale. "
            "Written as a model-soups-format checkpoint."
        ),
        epilog="example: interpsharp zeroshot --model ViT-B-32-quickgelu --pretrained openai -o resources/models/zeroshot.pt",
    )
    parser.add_argument("--model", default="ViT-B-32-quickgelu", help="open_clip model name (default: %(default)s)")
    parser.add_argument(
        "--pretrained", default="openai",
        help="open_clip pretrained tag (downloaded when online) or a local weights file (default: %(default)s)",
    )
    parser.add_argument(
        "--classnames", default="imagenet",
        help=f"built-in list ({', '.join(CLASSNAMES)}) or a text file with one class name per line (default: %(default)s)",
    )
    parser.add_argument(
        "--templates", default="openai_imagenet",
        help=f"built-in list ({', '.join(TEMPLATES)}) or a text file with one template per line, "
        "'{}' marking the class name, e.g. 'a photo of a {}.' (default: %(default)s)",
    )
    parser.add_argument("--cache-dir", help="where open_clip keeps downloaded weights")
    parser.add_argument(
        "--model-config", metavar="JSON",
        help="an open_clip model config of your own, registered under its file stem (then --model is that stem)",
    )
    parser.add_argument("--mean", type=float, nargs=3, help="input mean per channel (default: open_clip's for the tag, else the config's)")
    parser.add_argument("--std", type=float, nargs=3, help="input std per channel (default: as --mean)")
    add_device(parser, "the text tower")
    add_output(parser, "checkpoint to write (.pt)")
    parser.set_defaults(func=run)


def read_lines(spec: str, builtins: dict[str, Callable[[], list]], what: str) -> list:
    """A built-in list by name, or the non-empty lines of the text file ``spec``."""
    if spec in builtins:
        return builtins[spec]()
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"{spec}: neither a built-in {what} list ({', '.join(builtins)}) nor a file")
    lines = [line.strip() for line in path.read_text().splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError(f"{path}: no {what} (expected one per line)")
    return lines


def check_templates(templates: Sequence, source: str) -> None:
    """Text templates must mark where the class name goes, or every class gets the same prompt."""
    bad = [t for t in templates if isinstance(t, str) and "{}" not in t]
    if bad:
        raise ValueError(f"{source}: templates without '{{}}' for the class name: {bad[:3]}")


def run(args: argparse.Namespace) -> int:
    from interpsharp.checkpoints import TowerSpec, build_zeroshot_classifier, save_classifier
    from interpsharp.evaluate import pick_device
    from interpsharp.towers import register_model_config

    classnames = read_lines(args.classnames, CLASSNAMES, "class name")
    templates = read_lines(args.templates, TEMPLATES, "template")
    check_templates(templates, args.templates)
    register_model_config(args.model_config)
    model = build_zeroshot_classifier(
        args.model, args.pretrained, classnames, templates,
        cache_dir=args.cache_dir, device=pick_device(args.device), mean=args.mean, std=args.std,
    )
    save_classifier(model, args.output)
    print(f"wrote {args.output}: {args.model} ({args.pretrained}), {len(classnames)} classes, {len(templates)} templates; "
          f"tower: {TowerSpec.of(model).describe()}")
    return 0
