"""``interpsharp prepare-data``: decode an evaluation set once into a memory-mappable cache."""

from __future__ import annotations

import argparse

#: Help text for the layouts of ``interpsharp.datasets.LAYOUTS``, written out so that ``--help``
#: need not import torch and open_clip (seconds); a test keeps it in step with the registry.
LAYOUT_HELP = (
    "imagenet, imagenet-sketch: 1000 WordNet-ID folders like n01440764/; "
    "imagenet-a, imagenet-r: 200 WordNet-ID folders; "
    "imagenetv2 (matched frequency): 1000 folders named 0 .. 999; "
    "objectnet: objectnet-1.0/images (the 113 classes that overlap ImageNet, all 18,574 images); "
    "imagefolder: one folder per class, any names"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare-data",
        help="decode an evaluation set into a cache",
        description=(
            "Read every image of an evaluation set once (sha256 recorded), resize its shortest side to "
            "--image-size (bicubic), centre crop, and store uint8 pixels with labels and class metadata. "
            f"Expected layouts under --root: {LAYOUT_HELP}."
        ),
        epilog="example: interpsharp prepare-data --layout imagenet-a --root data/imagenet-a -o resources/caches/imagenet-a",
    )
    parser.add_argument("--layout", required=True, help="on-disk layout of --root (see above)")
    parser.add_argument("--root", required=True, help="folder holding the class folders")
    parser.add_argument("--image-size", type=int, default=224, help="side of the square crop (default: %(default)s)")
    parser.add_argument("-o", "--output", required=True, help="cache directory to write (replaced if present)")
    parser.add_argument("--name", help="dataset name in result tables (default: the layout name)")
    parser.add_argument("--max-per-class", type=int, help="keep the first N files of each class (by name)")
    parser.add_argument("--limit", type=int, help="then keep N images evenly spaced over the classes")
    parser.add_argument("--workers", type=int, default=1, help="decoding threads (default: %(default)s)")
    parser.add_argument(
        "--like-cache", metavar="DIR",
        help="the ID set's cache: this set's classes are checked against (and labelled by) its classes, the head's",
    )
    parser.add_argument("--classnames", metavar="JSON", help="imagefolder: {folder: class name} (default: folder names)")
    parser.add_argument("--subset", action="store_true", help="imagefolder: the classes are a subset of the ID set's")
    parser.add_argument("--class-mapping", metavar="JSON", help="imagefolder: {class: [ID classes]}, logits max-projected")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interpsharp.data import load_cache
    from interpsharp.datasets import ClassSource, build_cache

    head = load_cache(args.like_cache).classnames if args.like_cache else None
    out = build_cache(
        args.layout, args.root, args.output, image_size=args.image_size, max_per_class=args.max_per_class,
        limit=args.limit, workers=args.workers, name=args.name, progress=not args.no_progress, head_classnames=head,
        classes=ClassSource(classnames=args.classnames, subset=args.subset, mapping=args.class_mapping),
    )
    cache = load_cache(out)
    print(f"wrote {out}: {len(cache)} images, {len(cache.classnames)} classes, name {cache.name!r}")
    return 0
