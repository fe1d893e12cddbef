"""``interpsharp interpolate``: write theta(alpha), whole-model or one layer, as a checkpoint."""

from __future__ import annotations

import argparse

from interpsharp.commands._arguments import add_checkpoint_pair, add_head_width, add_output


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "interpolate",
        help="interpolate a zero-shot and a fine-tuned checkpoint",
        description=(
            "Write theta(alpha) = (1 - alpha) * theta_0 + alpha * theta_1 (WiSE-FT convention: alpha 0 is "
            "the zero-shot model, 1 the fine-tuned one) for every parameter, or with --layer for one "
            "layer only (the rest stays theta_0). Text-side tensors are kept from the zero-shot checkpoint."
        ),
        epilog="example: interpsharp interpolate zeroshot.pt model_0.pt --alpha 0.5 -o wise_0.5.pt",
    )
    add_checkpoint_pair(parser)
    parser.add_argument("--alpha", type=float, required=True, help="mixing coefficient in [0, 1]")
    parser.add_argument("--layer", help="interpolate only this layer (names: 'interpsharp layers CKPT')")
    add_head_width(parser)
    add_output(parser, "checkpoint to write (.pt)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interpsharp.checkpoints import load_classifier, save_classifier
    from interpsharp.interpolate import InterpolationPath
    from interpsharp.layers import layer_groups

    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha {args.alpha} is outside [0, 1] (0 = zero-shot, 1 = fine-tuned)")
    model = load_classifier(args.zeroshot, head_width=args.head_width)
    finetuned = load_classifier(args.finetuned, like=model)
    only = None
    if args.layer is not None:
        groups = layer_groups(model)
        if args.layer not in groups:
            raise KeyError(f"{args.zeroshot}: no layer {args.layer!r}; layers are e.g. {', '.join(list(groups)[:4])} "
                           f"(all: 'interpsharp layers {args.zeroshot}')")
        only = groups[args.layer]
    InterpolationPath(model.state_dict(), finetuned.state_dict()).load_into(model, args.alpha, only=only)
    save_classifier(model, args.output)
    print(f"wrote {args.output}: alpha {args.alpha}" + (f", layer {args.layer}" if args.layer else ""))
    return 0
