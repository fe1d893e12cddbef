"""``interpsharp sharpness``: general or layer-wise adaptive sharpness along the path, as a tidy TSV."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from interpsharp.commands._arguments import add_alphas, add_checkpoint_pair, add_model_name, add_model_options, add_output
from interpsharp.sharpness_modes import MODES, PERTURB_FINETUNED

if TYPE_CHECKING:
    from interpsharp.data import EvalCache

#: ``interpsharp.sharpness.PRECISIONS``, written out so that ``--help`` need not import torch;
#: a test keeps them in step. (The modes come from the torch-free ``sharpness_modes``.)
PRECISION_CHOICES = ("fp64", "fp32", "bf16")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sharpness",
        help="adaptive average-case sharpness of theta(alpha), general or per layer",
        description=(
            "Monte-Carlo adaptive average-case sharpness E[L(w + delta)] - L(w), delta ~ N(0, rho^2 |w|^2), "
            "on a fixed subset of M images of a cache. Default: general sharpness (noise on every parameter "
            "of theta(alpha)). With --layerwise: noise on one layer at a time, for every layer, reusing the "
            "forward pass up to that layer. Writes a tidy TSV with columns model, dataset, alpha, layer, "
            "metric, value, stderr, n, n_iter, n_nonfinite, rho, mode, seed, antithetic, precision; metric "
            "is general_sharpness or layerwise_sharpness, plus the unperturbed loss per alpha."
        ),
        epilog=(
            "example: interpsharp sharpness zeroshot.pt model_0.pt --alphas 0 0.5 1 --data caches/imagenet-a "
            "--m 1024 --rho 1.0 --n-iter 20 --layerwise -o layerwise.tsv"
        ),
    )
    add_checkpoint_pair(parser)
    add_alphas(parser, "--alpha")
    parser.add_argument("--data", required=True, metavar="CACHE_DIR", help="evaluation cache from 'interpsharp prepare-data'")
    parser.add_argument("--m", type=int, default=None, help="size of the fixed evaluation subset (default: every image)")
    parser.add_argument("--rho", type=float, nargs="+", default=[1.0], help="noise radius, or several (default: 1.0)")
    parser.add_argument("--n-iter", type=int, default=20, help="noise draws per estimate (default: %(default)s)")
    parser.add_argument(
        "--seed", type=int, default=0,
        help="seed of the noise draws and of the image subset; the same seed gives the same numbers on any device "
        "(default: %(default)s)",
    )
    parser.add_argument("--layerwise", action="store_true", help="layer-wise sharpness of every layer instead of general sharpness")
    parser.add_argument(
        "--mode", default=PERTURB_FINETUNED, choices=MODES,
        help="layer-wise only: perturb_finetuned = perturb layer i of theta_1 by |W1_i|, then interpolate (the paper); "
        "perturb_interpolated = noise scaled by |W_i(alpha)| (default: %(default)s)",
    )
    parser.add_argument("--layers", nargs="+", help="layer-wise only: just these layers (see 'interpsharp layers')")
    parser.add_argument(
        "--implementation", default="prefix_cached", choices=("prefix_cached", "reference"),
        help="layer-wise only: reuse the forward pass before the perturbed layer, or rerun it all "
        "(reference, slower; same numbers) (default: %(default)s)",
    )
    parser.add_argument("--antithetic", action="store_true", help="draw noise in +z/-z pairs (less variance at small rho; n-iter must be even)")
    add_model_name(parser)
    parser.add_argument("--dataset", help="value of the dataset column (default: the cache's name)")
    add_model_options(
        parser, PRECISION_CHOICES,
        "weights and inputs dtype; bf16 only where 'interpsharp check-precision' shows it agrees with fp32 "
        "within the Monte-Carlo standard error",
    )
    add_output(parser, "TSV file to write")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from interpsharp.checkpoints import load_classifier
    from interpsharp.data import load_cache
    from interpsharp.evaluate import check_outputs, normalize_images, pick_device
    from interpsharp.interpolate import InterpolationPath
    from interpsharp.sharpness import PRECISIONS, general_sharpness, layerwise_sharpness
    from interpsharp.subsets import select_subset
    from interpsharp.tables import write_tsv

    if not args.layerwise and (args.layers or args.mode != "perturb_finetuned" or args.implementation != "prefix_cached"):
        raise ValueError("--layers, --mode and --implementation apply to layer-wise sharpness only; add --layerwise")
    cache = load_cache(args.data)
    device = pick_device(args.device)
    zeroshot = load_classifier(args.zeroshot, head_width=args.head_width)
    model = load_classifier(args.finetuned, like=zeroshot)
    check_outputs(cache, model.arch.num_classes)
    path = InterpolationPath(zeroshot.state_dict(), model.state_dict(), device=device)
    del zeroshot
    model.to(device)
    subset = select_subset(len(cache), args.m, args.seed)
    images = normalize_images(torch.from_numpy(np.array(cache.images[subset])).to(device), model.preprocess,
                              dtype=PRECISIONS[args.precision])
    labels = torch.from_numpy(cache.labels[subset]).to(device)
    common = dict(
        rhos=args.rho, n_iter=args.n_iter, seed=args.seed, class_subset=cache.class_subset, class_groups=cache.class_groups,
        batch_size=args.batch_size,
        precision=args.precision, antithetic=args.antithetic, model_name=args.model_name or Path(args.finetuned).stem,
        dataset=args.dataset or cache.name, progress=not args.no_progress,
    )
    if args.layerwise:
        table = layerwise_sharpness(model, path, args.alphas, images, labels, mode=args.mode, layers=args.layers,
                                    implementation=args.implementation, **common)
    else:
        table = general_sharpness(model, path, args.alphas, images, labels, **common)
    write_tsv(table, args.output)
    print(f"wrote {args.output}: {len(table)} rows ({len(subset)} images of {cache.path}, seed {args.seed})")
    return 0
