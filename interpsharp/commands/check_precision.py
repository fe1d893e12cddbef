"""``interpsharp check-precision``: may this pair run in bf16? fp32 against cheaper precisions."""

from __future__ import annotations

import argparse
from pathlib import Path

from interpsharp.commands._arguments import (
    add_batch_size,
    add_device,
    add_head_width,
    add_model_name,
    add_progress_switch,
)

#: ``interpsharp.precision.FORMS``, written out so that ``--help`` need not import torch; a test
#: keeps the two in step.
CANDIDATE_CHOICES = ("fp32", "tf32", "bf16", "bf16_autocast", "bf16_emulated", "bf16_delta_emulated")
MODE_CHOICES = ("perturb_finetuned", "perturb_interpolated")

DESCRIPTION = """\
Evaluate the whole alpha path on every cache, and general and layer-wise sharpness, in fp32
(TF32 off) and in each candidate precision, on the same images and the same noise draws, and
give SPEC's precision gate a verdict per quantity. Prints the figures; with -o writes path.tsv
(per set and alpha: both accuracies, top-1 difference in points, images lost and gained, both
losses), labels.tsv (outcome, alpha*, gain, barrier depth, instability in both precisions),
sharpness.tsv (both values, the reference's stderr, z) and verdicts.tsv.

The gate, per candidate (all limits are options):
  top1            at every alpha and on every set, (lost + gained) / n <= --tolerance, where
                  lost/gained count images correct in fp32 only / in the candidate only.
                  This bounds |top-1 difference| by the tolerance (SPEC: 0.1 points) and, on
                  a set of fewer than 1/tolerance images, allows no flip at all.
  outcome_labels  on every set, the outcome label and alpha* are the same in both precisions.
  loss_shape      has_barrier unchanged, and barrier depth and instability within
                  --loss-tolerance nats (a constant loss offset cancels in both).
  general_sharpness, layerwise_sharpness (per rho)
                  every value within --z-max reference Monte-Carlo standard errors of fp32:
                  |bf16 - fp32| / stderr <= 1 by default. A value with stderr 0 must be equal;
                  NaN never passes.
  evaluation      = top1 and outcome_labels and loss_shape: the precision may be configured for
                  evaluation, layer-wise interpolation and the pruned paths.
  sharpness       = every sharpness row: the precision may be configured for sharpness.
The exit status is 0 whenever the check ran; read the verdicts.

Candidates: bf16 (weights and inputs in bfloat16), bf16_autocast (fp32 weights, bf16 matmuls),
tf32 (CUDA only), and two emulations that decide whether the delta form of bf16 is worth
building: bf16_delta_emulated = fp32 arithmetic on bf16(theta_0) + alpha * bf16(theta_1 -
theta_0) with every module's inputs and outputs rounded to bf16; bf16_emulated = the same on
bf16(theta(alpha)), the control that shows how close the emulation is to the real bf16.
fp32 as a candidate runs the reference twice: any difference is run-to-run nondeterminism."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check-precision",
        help="SPEC's precision gate: fp32 against bf16 (and others) on the same images and noise",
        description=DESCRIPTION,
        epilog=(
            "example: interpsharp check-precision zeroshot.pt model_0.pt model_1.pt --data caches/photo caches/clutter "
            "--alphas 0 0.02 0.05 0.1 0.2 0.5 1 --candidates bf16 bf16_delta_emulated --sharpness-data clutter "
            "--m 500 --rho 1 0.1 0.5 --n-iter 5 --layerwise-n-iter 3 -o precision"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("zeroshot", help="theta_0 checkpoint (model-soups format)")
    parser.add_argument("finetuned", nargs="+", help="theta_1 checkpoint(s) (model-soups format); each is checked in turn")
    parser.add_argument("--data", nargs="+", required=True, metavar="CACHE_DIR", help="caches from 'interpsharp prepare-data'")
    parser.add_argument(
        "--alphas", type=float, nargs="+", default=[0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0],
        help="mixing coefficients; must include 0 and 1; small ones are where bf16 spacing bites "
        "(default: %(default)s)",
    )
    parser.add_argument("--candidates", nargs="+", default=["bf16"], choices=CANDIDATE_CHOICES, metavar="PRECISION",
                        help=f"precisions compared with fp32: {', '.join(CANDIDATE_CHOICES)} (default: bf16)")
    gate = parser.add_argument_group("gate")
    gate.add_argument("--tolerance", type=float, default=0.001,
                      help="outcome tolerance = largest allowed flip rate (config outcome.tolerance; default: %(default)s)")
    gate.add_argument("--delta", type=float, default=0.1, help="barrier threshold, nats (config outcome.delta; default: %(default)s)")
    gate.add_argument("--xi", type=float, default=0.02, help="high-gain threshold (config outcome.xi; default: %(default)s)")
    gate.add_argument("--loss-tolerance", type=float, default=0.01,
                      help="largest allowed change of barrier depth and instability, nats (default: %(default)s)")
    gate.add_argument("--z-max", type=float, default=1.0,
                      help="largest allowed |sharpness difference| in reference standard errors (default: %(default)s)")
    sharp = parser.add_argument_group("sharpness")
    sharp.add_argument("--sharpness", choices=("both", "general", "layerwise", "none"), default="both",
                       help="which sharpness to compare (default: %(default)s)")
    sharp.add_argument("--sharpness-data", metavar="NAME", help="cache name the sharpness runs on (default: the last --data)")
    sharp.add_argument("--m", type=int, help="size of the fixed sharpness subset (default: every image)")
    sharp.add_argument("--rho", type=float, nargs="+", default=[1.0], help="general sharpness radii (default: 1.0)")
    sharp.add_argument("--n-iter", type=int, default=20, help="general sharpness draws (default: %(default)s)")
    sharp.add_argument("--layerwise-rho", type=float, nargs="+", default=[1.0], help="layer-wise radii (default: 1.0)")
    sharp.add_argument("--layerwise-n-iter", type=int, default=20, help="layer-wise draws (default: %(default)s)")
    sharp.add_argument("--mode", default="perturb_finetuned", choices=MODE_CHOICES,
                       help="layer-wise perturbation mode (default: %(default)s)")
    sharp.add_argument("--layers", nargs="+", metavar="LAYER", help="layer-wise: just these layers (default: every layer)")
    sharp.add_argument("--sharpness-alphas", type=float, nargs="+", help="alphas of the sharpness runs (default: --alphas)")
    sharp.add_argument("--seed", type=int, default=0, help="seed of the noise draws and the subset (default: %(default)s)")
    add_model_name(parser, "the tables', one fine-tuned model only:")
    add_batch_size(parser)
    add_device(parser)
    add_head_width(parser)
    add_progress_switch(parser)
    parser.add_argument("-o", "--output", metavar="DIR", help="folder for path.tsv, labels.tsv, sharpness.tsv, verdicts.tsv")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interpsharp.checkpoints import load_classifier
    from interpsharp.data import load_caches_by_name
    from interpsharp.evaluate import pick_device
    from interpsharp.interpolate import InterpolationPath
    from interpsharp.metrics import OutcomeThresholds
    from interpsharp.precision import PrecisionGate, PrecisionReport, SharpnessSettings, compare_precisions

    caches = load_caches_by_name(args.data)
    sharpness = None
    if args.sharpness != "none":
        sharpness = SharpnessSettings(
            dataset=args.sharpness_data or list(caches)[-1], n_samples=args.m, seed=args.seed,
            general_rhos=tuple(args.rho) if args.sharpness in ("both", "general") else (),
            general_n_iter=args.n_iter,
            layerwise_rhos=tuple(args.layerwise_rho) if args.sharpness in ("both", "layerwise") else (),
            layerwise_n_iter=args.layerwise_n_iter, mode=args.mode,
            layers=tuple(args.layers) if args.layers else None,
            alphas=tuple(args.sharpness_alphas) if args.sharpness_alphas else None,
        )
    gate = PrecisionGate(OutcomeThresholds(delta=args.delta, xi=args.xi, tolerance=args.tolerance),
                         loss_tolerance=args.loss_tolerance, z_max=args.z_max)
    if args.model_name and len(args.finetuned) > 1:
        raise ValueError("--model-name names one fine-tuned model; with several, the file stems name them")
    device = pick_device(args.device)
    zeroshot = load_classifier(args.zeroshot, head_width=args.head_width).state_dict()
    reports = []
    for checkpoint in args.finetuned:
        model = load_classifier(checkpoint, head_width=args.head_width)
        path = InterpolationPath(zeroshot, model.state_dict(), device=device)
        reports.append(compare_precisions(
            model, path, caches, args.alphas, candidates=args.candidates, sharpness=sharpness, gate=gate,
            model_name=args.model_name or Path(checkpoint).stem, batch_size=args.batch_size, device=device,
            progress=not args.no_progress,
        ))
        del model, path
    report = PrecisionReport.combine(reports)
    print(report.summary())
    if args.output:
        written = report.write(args.output)
        print(f"\nwrote {', '.join(str(p) for p in written.values())}")
    return 0
