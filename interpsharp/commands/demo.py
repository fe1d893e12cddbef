"""interpsharp demo ...: build the offline demo world, one step at a time or all at once.

Steps (each usable alone, as one Snakemake rule each):

- images    evaluation caches (photo, photo2, sketch, texture, clutter) + photo_train;
- pretrain  contrastive pretraining of the tiny CLIP -> clip.pt + clip.json;
- zeroshot  theta_0 from clip.pt (paper world's zero-shot head code) -> model-soups .pt;
- finetune  one sweep entry fine-tuned on photo_train -> model_{i}.pt + model_{i}.json;
- build     all of the above into one folder, printing the time of each stage.
"""

from __future__ import annotations

import argparse
from dataclasses import replace


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="build the offline demo world (shape images, tiny CLIP, fine-tunes)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    steps = parser.add_subparsers(dest="step", metavar="STEP", required=True)

    def common(p: argparse.ArgumentParser, threads: bool = True) -> None:
        p.add_argument("--seed", type=int, default=0, help="world seed; every stream's seed derives from it (default 0)")
        p.add_argument("--micro", action="store_true", help="the seconds-long micro world used by the tests")
        if threads:
            p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
        p.add_argument("--progress", action="store_true", help="show progress bars")

    p = steps.add_parser("images", help="write the evaluation caches and the photo fine-tuning split")
    p.add_argument("--out", required=True, help="folder that receives one cache folder per data set")
    p.add_argument("--name", action="append", dest="names", metavar="NAME",
                   help="only this data set (repeatable): photo, photo2, sketch, texture, clutter, photo_train")
    p.add_argument("--eval-images", type=int, help="images per evaluation set (default 1000)")
    p.add_argument("--train-images", type=int, help="images in photo_train (default 4000)")
    set_images(p)
    common(p, threads=False)
    p.set_defaults(func=run_images)

    p = steps.add_parser("pretrain", help="pretrain the tiny CLIP contrastively -> clip.pt + clip.json")
    p.add_argument("--out", required=True, help="output .pt (open_clip state dict); the record goes to .json beside it")
    p.add_argument("--steps", type=int, help="optimiser steps (default 1000)")
    common(p)
    p.set_defaults(func=run_pretrain)

    p = steps.add_parser("zeroshot", help="zero-shot classifier theta_0 from a pretrained tiny CLIP")
    p.add_argument("--clip", required=True, help="clip.pt written by 'demo pretrain'")
    p.add_argument("--out", required=True, help="output checkpoint (model-soups format)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.set_defaults(func=run_zeroshot)

    p = steps.add_parser("finetune", help="fine-tune theta_0 on photo_train with one sweep entry")
    p.add_argument("--zeroshot", required=True, help="theta_0 checkpoint from 'demo zeroshot'")
    p.add_argument("--train", required=True, help="photo_train cache folder from 'demo images'")
    p.add_argument("--index", type=int, required=True, help="sweep entry (0-based); also picks the derived seed")
    p.add_argument("--out", required=True, help="output model_{i}.pt; hyperparameters go to model_{i}.json")
    p.add_argument("--lr", type=float, help="override the entry's learning rate")
    p.add_argument("--epochs", type=int, help="override the entry's epochs")
    common(p)
    p.set_defaults(func=run_finetune)

    p = steps.add_parser("build", help="build the whole world into one folder and print per-stage timings")
    p.add_argument("--out", required=True, help="output folder (data/, models/, build.json)")
    set_images(p)
    common(p)
    p.set_defaults(func=run_build)


def set_images(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set-images", action="append", metavar="NAME=N", default=[],
                   help="images of one evaluation set where it differs from --eval-images (repeatable); "
                        "config/demo.yaml's world has clutter=5000")


def _config(args: argparse.Namespace):
    from interpsharp.demo.world import WorldConfig

    config = WorldConfig.micro(args.seed) if args.micro else WorldConfig(seed=args.seed)
    if getattr(args, "eval_images", None):
        config = replace(config, eval_images=args.eval_images)
    if getattr(args, "train_images", None):
        config = replace(config, train_images=args.train_images)
    if getattr(args, "set_images", None):
        try:
            sizes = {name: int(n) for name, n in (item.split("=", 1) for item in args.set_images)}
        except ValueError:
            raise SystemExit(f"--set-images takes NAME=N (e.g. clutter=5000), got {args.set_images}")
        config = replace(config, set_images=sizes)
    if getattr(args, "steps", None):
        config = replace(config, pretrain=replace(config.pretrain, steps=args.steps))
    return config


def run_images(args: argparse.Namespace) -> int:
    from interpsharp.demo.world import write_images

    for name, path in write_images(args.out, _config(args), args.names, progress=args.progress).items():
        print(f"{name}\t{path}")
    return 0


def run_pretrain(args: argparse.Namespace) -> int:
    from interpsharp.demo.world import pretrain

    print(pretrain(args.out, _config(args), args.threads, progress=args.progress))
    return 0


def run_zeroshot(args: argparse.Namespace) -> int:
    from interpsharp.demo.world import build_zeroshot

    print(build_zeroshot(args.clip, args.out, args.threads))
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from interpsharp.demo.world import finetune_from_sweep

    overrides = {k: v for k, v in (("lr", args.lr), ("epochs", args.epochs)) if v is not None}
    print(finetune_from_sweep(args.zeroshot, args.train, args.out, _config(args), args.index, args.threads,
                              progress=args.progress, **overrides))
    return 0


def run_build(args: argparse.Namespace) -> int:
    from interpsharp.demo.world import build_world

    timings = build_world(args.out, _config(args), args.threads, progress=args.progress)
    print("stage\tseconds")
    for stage, seconds in timings.items():
        print(f"{stage}\t{seconds:.1f}")
    return 0
