"""``interpsharp layers CKPT``: list a checkpoint's layers in forward order."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "layers",
        help="list the layer groups of a classifier checkpoint",
        description="Print one row per layer (forward order): name, parameter names, element count.",
    )
    parser.add_argument("checkpoint", help="classifier checkpoint in the model-soups format")
    parser.add_argument(
        "--head-width", type=int,
        help="attention head width of a checkpoint that does not record it (default: recorded, else 64 as in OpenAI ViTs)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interpsharp.checkpoints import load_classifier
    from interpsharp.layers import layer_groups

    model = load_classifier(args.checkpoint, head_width=args.head_width)
    params = dict(model.named_parameters())
    print("layer\tparameters\tnumel")
    for layer, names in layer_groups(model).items():
        print(f"{layer}\t{','.join(names)}\t{sum(params[n].numel() for n in names)}")
    return 0
