"""``interpsharp estimate``: GPU-hours of the configured DAG, per rule, before running it."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "estimate",
        help="count the forward passes of the configured workflow and convert them to GPU-hours",
        description=(
            "Count image forward passes per rule (evaluation, layer-wise interpolation, general and "
            "layer-wise sharpness, stragglers, pruning) from the workflow config, naive and with "
            "prefix caching, and convert them to FLOPs and GPU-hours. Without --throughput or "
            "--precision, hours are shown at SPEC's measured H100 throughputs (fp32 4.4k, bf16 26.1k, "
            "bf16+compile 31.3k images/s) and at the precision each rule is configured to run in. "
            "With --throughputs, at the images/s a GPU acceptance run measured (benchmarks/gpu_acceptance.py "
            "writes the file), next to SPEC's."
        ),
    )
    parser.add_argument("--config", required=True, help="workflow config YAML (missing keys take the paper-world defaults)")
    rates = parser.add_mutually_exclusive_group()
    rates.add_argument("--throughput", type=float, help="images per second of one GPU (overrides --precision)")
    rates.add_argument("--precision", choices=["fp32", "bf16"], help="use SPEC's measured H100 throughput for this precision")
    rates.add_argument("--throughputs", metavar="FILE",
                       help="measured images/s per precision (JSON from benchmarks/gpu_acceptance.py): hours on that "
                       "GPU next to SPEC's")
    parser.add_argument("--gflops", type=float, help="GFLOPs of one image forward (default: ViT-B/32's 5.9)")
    parser.add_argument(
        "--dataset-size", action="append", default=[], metavar="NAME=N",
        help="images of an evaluation set the estimate does not know (your own sets); repeatable",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd
    import yaml

    from interpsharp.estimate import (
        SPEC_THROUGHPUTS,
        VIT_B32_GFLOPS,
        estimate_by_precision,
        estimate_cost,
        hours_against_spec,
        read_throughputs,
    )

    path = Path(args.config)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    config = yaml.safe_load(path.read_text()) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a YAML mapping at the top level")
    sizes = {}
    for item in args.dataset_size:
        name, _, count = item.partition("=")
        if not name or not count.isdigit():
            raise ValueError(f"--dataset-size {item!r}: expected NAME=N, e.g. mydata=5000")
        sizes[name] = int(count)
    gflops = args.gflops or VIT_B32_GFLOPS
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.float_format", "{:,.2f}".format):
        if args.throughputs:
            measured = read_throughputs(args.throughputs)
            names = list(dict.fromkeys([*measured.images_per_s, *SPEC_THROUGHPUTS]))
            rates = pd.DataFrame({
                "precision": names,
                "measured_images_per_s": [float(measured.images_per_s.get(n, "nan")) for n in names],
                "spec_h100_images_per_s": [SPEC_THROUGHPUTS.get(n, float("nan")) for n in names],
            })
            try:
                table = hours_against_spec(config, measured.images_per_s)
            except KeyError as err:
                raise ValueError(f"{args.throughputs}: {err.args[0]}") from err
            table["forwards_naive"] = table["forwards_naive"] / 1e6
            table["forwards_cached"] = table["forwards_cached"] / 1e6
            print(f"{path}: GPU-hours on {measured.device} (measured {measured.measured}"
                  f"{', ' + measured.source if measured.source else ''}) next to SPEC's H100 throughputs")
            print(rates.to_string(index=False, float_format="{:,.0f}".format))
            print("\nforwards in millions; hours: naive fp32, prefix-cached bf16, as configured")
            print(table.rename(columns={"forwards_naive": "Mfwd_naive", "forwards_cached": "Mfwd_cached"}).to_string(index=False))
        elif args.throughput or args.precision:
            rate = args.throughput or SPEC_THROUGHPUTS[args.precision]
            table = estimate_cost(config, rate, gflops, dataset_sizes=sizes)
            table["forwards_naive"] = table["forwards_naive"] / 1e6
            table["forwards_cached"] = table["forwards_cached"] / 1e6
            print(f"{path}: {rate:,.0f} images/s, {gflops} GFLOP/image; forwards in millions, FLOPs in PFLOP")
            print(table.drop(columns="precision").rename(columns={"forwards_naive": "Mfwd_naive", "forwards_cached": "Mfwd_cached"}).to_string(index=False))
        else:
            table = estimate_by_precision(config, dataset_sizes=sizes)
            table["forwards_naive"] = table["forwards_naive"] / 1e6
            table["forwards_cached"] = table["forwards_cached"] / 1e6
            print(f"{path}: GPU-hours on one H100 at SPEC's measured throughputs; forwards in millions")
            print(table.rename(columns={"forwards_naive": "Mfwd_naive", "forwards_cached": "Mfwd_cached"}).to_string(index=False))
    return 0
