"""What pretraining and fine-tuning share: deterministic torch settings, the learning-rate
schedule, and the JSON record written beside every checkpoint.

Determinism matters because the demo world is a test fixture: the same seeds must give the
same checkpoints bit for bit on a CPU. That needs seeded generators everywhere, a fixed thread
count (a reduction split over a different number of threads sums in a different order) and
torch's deterministic algorithms.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import torch


def configure_torch(threads: int) -> None:
    """Fix torch's CPU thread count and ask for deterministic kernels."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    # warn_only: an op without a deterministic kernel should warn, not stop a build; none of
    # the CPU ops used here lacks one (the micro-build test checks bit-identical rebuilds).
    torch.use_deterministic_algorithms(True, warn_only=True)


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate: linear warm-up, then cosine decay to 0."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def write_record(record: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write a run record as JSON, atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
