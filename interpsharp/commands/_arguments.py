"""Arguments several subcommands share, defined once: a new option for every command that runs
a model (say ``--compile``) is one line in :func:`add_model_options`, and every such command
gets it with the same name, default and help. (The leading underscore keeps ``interpsharp.cli``
from taking this module for a subcommand.)

Choices are written out by the commands (``PRECISION_CHOICES``) rather than read from the
library here, so that ``--help`` never imports torch.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence



def add_checkpoint_pair(parser: argparse.ArgumentParser) -> None:
    """The two ends of the path, as positionals: ``zeroshot finetuned``."""
    parser.add_argument("zeroshot", help="theta_0 checkpoint (model-soups format)")
    parser.add_argument("finetuned", help="theta_1 checkpoint (model-soups format)")


def add_alphas(parser: argparse.ArgumentParser, *aliases: str) -> None:
    """``--alphas A [A ...]``, required; ``aliases`` (e.g. ``--alpha``) name it too."""
    parser.add_argument("--alphas", *aliases, type=float, nargs="+", required=True, help="mixing coefficients, e.g. 0 0.5 1")


def add_head_width(parser: argparse.ArgumentParser) -> None:
    """Checkpoints written by this tool record their head width; older model-soups files do not."""
    parser.add_argument(
        "--head-width", type=int,
        help="attention head width of a checkpoint that does not record it (default: recorded, else 64 as in OpenAI ViTs)",
    )


def add_device(parser: argparse.ArgumentParser, what: str = "") -> None:
    """``--device``; ``what`` says what runs there when it is not the whole model."""
    where = f"device for {what}" if what else "e.g. cpu, cuda, cuda:1"
    parser.add_argument("--device", help=f"{where} (default: CUDA if present, else CPU)")


def add_model_name(parser: argparse.ArgumentParser, table: str = "the table's") -> None:
    parser.add_argument("--model-name", help=f"value of {table} model column (default: the fine-tuned file's stem)")


def add_output(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("-o", "--output", required=True, help=what)


def add_model_options(
    parser: argparse.ArgumentParser, precisions: Sequence[str], precision_help: str, batch_size: int = 256
) -> None:
    """What every command that runs a model over images takes: batch size, device, precision
    (``precisions``, default fp32; ``precision_help`` says what each means for this command),
    head width and the progress switch."""
    add_batch_size(parser, batch_size)
    add_device(parser)
    parser.add_argument("--precision", default="fp32", choices=tuple(precisions), help=f"{precision_help} (default: %(default)s)")
    add_head_width(parser)
    add_progress_switch(parser)


def add_batch_size(parser: argparse.ArgumentParser, batch_size: int = 256) -> None:
    parser.add_argument("--batch-size", type=int, default=batch_size, help="images per forward pass (default: %(default)s)")


def add_progress_switch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
