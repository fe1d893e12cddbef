"""GPU slot claiming: concurrent processes get distinct slots; a launcher's choice wins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from interpsharp.devices import claim_gpu

_CLAIM_AND_HOLD = """
import sys, time
from interpsharp.devices import claim_gpu
print(claim_gpu(sys.argv[1], int(sys.argv[2]), timeout_s=float(sys.argv[3]), poll_s=0.05), flush=True)
time.sleep(float(sys.argv[4]))
"""


def _spawn(lock_dir: Path, n: int, timeout: float, hold: float) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    return subprocess.Popen([sys.executable, "-c", _CLAIM_AND_HOLD, str(lock_dir), str(n), str(timeout), str(hold)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_concurrent_jobs_get_distinct_gpus(tmp_path: Path):
    holders = [_spawn(tmp_path, 2, 5, 3) for _ in range(2)]
    claimed = sorted(int(p.stdout.readline()) for p in holders)
    assert claimed == [0, 1]
    # A third job waits for a slot, and gets one once a holder exits.
    third = _spawn(tmp_path, 2, 30, 0)
    for p in holders:
        p.wait(timeout=30)
    out, err = third.communicate(timeout=30)
    assert third.returncode == 0, err
    assert int(out.strip()) in (0, 1)


def test_all_slots_busy_times_out(tmp_path: Path):
    holder = _spawn(tmp_path, 1, 5, 5)
    assert holder.stdout.readline().strip() == "0"
    waiter = _spawn(tmp_path, 1, 0.3, 0)
    _, err = waiter.communicate(timeout=30)
    holder.kill()
    assert waiter.returncode != 0 and "all 1 GPU slots" in err


def test_launcher_choice_is_kept(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert claim_gpu(tmp_path, 4) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert not list(tmp_path.iterdir())
