"""``interpsharp`` command line: the library for users who work outside Snakemake.

Each subcommand lives in ``interpsharp/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to the function to run.
Modules are discovered, so adding a command never touches this file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Sequence

from interpsharp import __version__, commands


def command_modules() -> list[str]:
    """Names of the modules under ``interpsharp.commands``, alphabetically."""
    return sorted(m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interpsharp",
        description="Weight-space interpolation of CLIP classifiers: paths, sharpness, straggler layers.",
    )
    parser.add_argument("--version", action="version", version=f"interpsharp {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in command_modules():
        importlib.import_module(f"interpsharp.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, FileNotFoundError) as err:
        # Library errors carry messages written for users (bad file, bad key, what to do).
        print(f"interpsharp {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
