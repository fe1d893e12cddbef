"""benchmarks/bench_batch_size.py on a tiny world laid out as a built demo world's resources:
it runs, and what it reports backs the demo's choice of batch size (results that do not
depend on the batch size beyond float reordering)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from interpsharp.checkpoints import save_classifier
from interpsharp.data import write_cache

from conftest import TINY_ARCH, tiny_classifier

ROOT = Path(__file__).resolve().parents[1]


def _tiny_resources(root: Path) -> Path:
    """checkpoints/{zeroshot,model_2}.pt and a 600-image ``clutter`` cache, as `make demo` lays them out."""
    (root / "checkpoints").mkdir(parents=True)
    save_classifier(tiny_classifier(seed=0), root / "checkpoints" / "zeroshot.pt")
    save_classifier(tiny_classifier(seed=1), root / "checkpoints" / "model_2.pt")
    rng = np.random.default_rng(0)
    size, n = TINY_ARCH.image_size, 600
    images = rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    labels = rng.integers(0, TINY_ARCH.num_classes, n)
    write_cache(root / "caches" / "clutter", images, labels, [f"class {i}" for i in range(TINY_ARCH.num_classes)],
                meta={"name": "clutter"})
    return root


def test_reports_each_batch_size_and_results_that_do_not_depend_on_it(tmp_path: Path):
    resources = _tiny_resources(tmp_path / "resources")
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_batch_size.py"), "--resources", str(resources),
         "--kinds", "evaluate", "layerwise_sharpness", "--batch-sizes", "200", "32", "--processes", "1"],
        capture_output=True, text=True, timeout=600, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:1] in (["evaluate"], ["layerwise_sharpness"])]
    assert [(r[0], int(r[1])) for r in rows] == [("evaluate", 200), ("evaluate", 32),
                                                 ("layerwise_sharpness", 200), ("layerwise_sharpness", 32)]
    for kind, _, wall, speedup, diff in rows:
        assert float(wall) > 0 and speedup.endswith("x")
        # A batch of 32 against one of 200: the same numbers up to float reordering.
        assert float(diff) < 1e-5, (kind, diff)


def test_refuses_a_folder_without_a_built_world(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_batch_size.py"), "--resources", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0 and "make demo" in result.stderr
