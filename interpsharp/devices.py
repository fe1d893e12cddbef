"""Pin a job to one free GPU on a machine that runs several jobs at once.

Snakemake's local executor counts GPUs (``resources: gpu=N``) but does not say *which* GPU a
job may use, so without this every job would open the first device. A job claims a slot by
holding an exclusive ``flock`` on one of N lock files for its whole life; the kernel drops the
lock when the process ends, even on a crash, so a slot can never leak. Under SLURM (or any
launcher that already set ``CUDA_VISIBLE_DEVICES``) nothing is claimed.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO

#: Lock files held by this process; kept referenced so the locks live as long as the process.
_HELD: list[IO[str]] = []


def machine_gpu_count() -> int:
    """NVIDIA GPUs on this machine, from ``nvidia-smi -L`` (0 without it).

    Asked in a subprocess on purpose: ``torch.cuda.is_available()`` initialises the CUDA driver,
    which fixes the visible devices before :func:`claim_gpu` could restrict them.
    """
    if shutil.which("nvidia-smi") is None:
        return 0
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return sum(line.startswith("GPU ") for line in listing.stdout.splitlines()) if listing.returncode == 0 else 0


def claim_gpu(lock_dir: str | os.PathLike, n_gpus: int, timeout_s: float = 3600.0, poll_s: float = 1.0) -> int | None:
    """Claim a free GPU slot and restrict this process to it via ``CUDA_VISIBLE_DEVICES``.

    Returns the claimed index, or None when a launcher already chose the devices or there are
    no GPUs. Must run before CUDA is initialised in this process. Waits (up to ``timeout_s``)
    when every slot is taken, which only happens if more GPU jobs run than ``gpu=N`` allows.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None or n_gpus < 1:
        return None
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        for index in range(n_gpus):
            handle = open(lock_dir / f"gpu{index}.lock", "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            _HELD.append(handle)
            os.environ["CUDA_VISIBLE_DEVICES"] = str(index)
            return index
        if time.monotonic() > deadline:
            raise TimeoutError(f"all {n_gpus} GPU slots in {lock_dir} stayed busy for {timeout_s:.0f} s")
        time.sleep(poll_s)
