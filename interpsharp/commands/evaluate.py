"""``interpsharp evaluate``: accuracy and loss along the interpolation path, as a tidy TSV."""

from __future__ import annotations

import argparse
from pathlib import Path

from interpsharp.commands._arguments import add_alphas, add_checkpoint_pair, add_model_name, add_model_options, add_output


#: ``interpsharp.evaluate.PRECISIONS``, written out so that ``--help`` need not import torch;
#: a test keeps the two in step.
PRECISION_CHOICES = ("fp32", "bf16", "bf16_autocast")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate theta(alpha) on evaluation caches",
        description=(
            "For each alpha, load theta(alpha) = (1 - alpha) * theta_0 + alpha * theta_1 into one model and "
            "measure top-1 accuracy and mean cross-entropy on each cache. Writes a tidy TSV with columns "
            "model, dataset, alpha, metric, value, n (dataset = the cache's name). With --layerwise (or "
            "--layers), layer-wise interpolation (Def. 1.1): one layer at a time moves to alpha while the rest "
            "stays theta_0, for every layer, prefix-cached; the table gains a layer column."
        ),
        epilog=(
            "examples: interpsharp evaluate zeroshot.pt model_0.pt --alphas 0 0.5 1 --data caches/imagenet-a -o path.tsv\n"
            "          interpsharp evaluate zeroshot.pt model_0.pt --alphas 0 0.5 1 --data caches/imagenet-a "
            "--layerwise -o layerwise.tsv"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_checkpoint_pair(parser)
    add_alphas(parser)
    parser.add_argument("--data", nargs="+", required=True, metavar="CACHE_DIR", help="caches from 'interpsharp prepare-data'")
    parser.add_argument("--layerwise", action="store_true", help="layer-wise interpolation paths of every layer")
    parser.add_argument("--layers", nargs="+", metavar="LAYER",
                        help="layer-wise interpolation of just these layers (names: 'interpsharp layers CKPT')")
    add_model_name(parser)
    add_model_options(
        parser, PRECISION_CHOICES,
        "fp32; bf16 = weights cast to bfloat16 (fastest on CUDA); bf16_autocast = fp32 weights, bf16 matmuls",
    )
    add_output(parser, "TSV file to write")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interpsharp.checkpoints import load_classifier
    from interpsharp.data import load_caches_by_name
    from interpsharp.evaluate import evaluate_path, pick_device
    from interpsharp.interpolate import InterpolationPath
    from interpsharp.layerwise_interpolation import layerwise_interpolation
    from interpsharp.tables import write_tsv

    caches = load_caches_by_name(args.data)
    device = pick_device(args.device)
    model = load_classifier(args.zeroshot, head_width=args.head_width)
    finetuned = load_classifier(args.finetuned, like=model)
    path = InterpolationPath(model.state_dict(), finetuned.state_dict(), device=device)
    del finetuned
    common = dict(model_name=args.model_name or Path(args.finetuned).stem, batch_size=args.batch_size, device=device,
                  precision=args.precision, progress=not args.no_progress)
    if args.layerwise or args.layers:
        table = layerwise_interpolation(model, path, caches, args.alphas, layers=args.layers, **common)
    else:
        table = evaluate_path(model, path, caches, args.alphas, **common)
    write_tsv(table, args.output)
    print(f"wrote {args.output}: {len(table)} rows")
    return 0
