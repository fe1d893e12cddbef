"""``interpsharp prune``: Algorithm 1, zero half the elements of a fine-tuned model's straggler layers."""

from __future__ import annotations

import argparse
from pathlib import Path

from interpsharp.commands._arguments import add_head_width, add_model_name, add_output


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prune",
        help="prune the straggler layers of a fine-tuned checkpoint (Algorithm 1)",
        description=(
            "Set each element of every straggler layer of theta_1 to 0 with probability 0.5 (Algorithm 1;\n"
            "see --probability), with a seeded Bernoulli mask per layer: the same seed gives the same mask on\n"
            "any machine. Writes the pruned checkpoint in the model-soups format, ready to be interpolated\n"
            "with theta_0 again, and a mask summary TSV (layer, parameters, numel, zeroed, fraction,\n"
            "probability, seed, mask_seed, model)."
        ),
        epilog=(
            "examples: interpsharp prune model_0.pt --stragglers visual.transformer.resblocks.11.mlp.c_proj "
            "--seed 0 -o pruned.pt\n"
            "          interpsharp prune model_0.pt --stragglers-from stragglers.tsv --model model_0 --seed 1 -o pruned.pt"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("finetuned", help="theta_1 checkpoint (model-soups format)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--stragglers", nargs="+", metavar="LAYER", help="straggler layer names (see 'interpsharp layers')")
    which.add_argument(
        "--stragglers-from", metavar="TSV",
        help="straggler table: a 'layer' column, optionally 'straggler' (true/false), 'model' and 'criterion' columns, as "
        "written for stragglers by sharpness or by interpolation; an empty table prunes nothing",
    )
    parser.add_argument("--model", help="with --stragglers-from: the model whose rows to use when the table has several")
    parser.add_argument("--criterion", help="with --stragglers-from: keep rows whose 'criterion' column has this value (e.g. sharpness)")
    parser.add_argument("--seed", type=int, required=True, help="mask seed")
    parser.add_argument("--probability", type=float, default=0.5, help="probability that an element is zeroed (default: %(default)s)")
    add_model_name(parser, "the summary's")
    add_head_width(parser)
    add_output(parser, "pruned checkpoint to write (.pt)")
    parser.add_argument("--summary", help="mask summary TSV to write (default: OUTPUT with suffix .masks.tsv)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interpsharp.checkpoints import load_classifier, save_classifier
    from interpsharp.layers import layer_groups
    from interpsharp.pruning import prune_stragglers
    from interpsharp.stragglers import straggler_layers
    from interpsharp.tables import read_tsv, write_tsv

    if args.stragglers_from:
        layers = straggler_layers(read_tsv(args.stragglers_from, required=["layer"]), args.model, args.criterion)
    else:
        layers = args.stragglers
    model = load_classifier(args.finetuned, head_width=args.head_width)
    pruned, summary = prune_stragglers(model.state_dict(), layer_groups(model), layers, args.seed, args.probability)
    model.load_state_dict(pruned)
    save_classifier(model, args.output)
    summary["model"] = args.model_name or Path(args.finetuned).stem
    summary_path = args.summary or Path(args.output).with_suffix(".masks.tsv")
    write_tsv(summary, summary_path)
    print(f"wrote {args.output} ({len(summary)} straggler layers pruned, seed {args.seed}) and {summary_path}")
    return 0
