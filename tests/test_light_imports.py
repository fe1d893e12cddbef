"""The modules behind the table, statistics, report and demo-image jobs import neither torch nor
open_clip.

Every workflow job is a fresh interpreter, and importing open_clip costs seconds (it pulls in
torchvision, and torchvision's ops pull in torch._dynamo). The jobs at the end of the DAG
(held-out gains, straggler flags, summary, claims, report) only read tables and per-image
scores, and they run one after another once the models are done: each second of import there
is a second of the demo's wall time. So is each second of the image jobs, which run before
pretraining. One fresh interpreter per module, so that one module's
imports cannot hide another's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: What the table-only workflow scripts import (workflow_scripts/: heldout_gains, detect_stragglers
#: when it reuses the sweep, summarize_models, correlate_sharpness, report_html, path_metrics,
#: layerwise_instability, check_reproduction, collect_table) and workflow_job.start itself.
TABLE_MODULES = (
    "interpsharp.scores",
    "interpsharp.heldout",
    "interpsharp.data",
    "interpsharp.subsets",
    "interpsharp.stragglers",
    "interpsharp.metrics",
    "interpsharp.summary",
    "interpsharp.claims",
    "interpsharp.landing",
    "interpsharp.reproduction",
    "interpsharp.tables",
    "interpsharp.provenance",
    "interpsharp.unpruned_path",  # a pruning job of a model without stragglers
    "interpsharp.demo.seeds",  # with interpsharp.demo.images: the demo's image jobs
    "interpsharp.demo.content",  # report_html: what the figures of a run show
)
HEAVY = ("torch", "open_clip")


def imported_heavy(module: str) -> list[str]:
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120, check=True)
    return [m for m in done.stdout.strip().split(",") if m]


@pytest.mark.parametrize("module", TABLE_MODULES)
def test_table_modules_do_not_import_torch_or_open_clip(module):
    assert imported_heavy(module) == [], f"{module} imports {imported_heavy(module)}"


def test_the_check_sees_a_heavy_import():
    """The probe itself: a module that needs torch is reported."""
    assert imported_heavy("interpsharp.pruning") == ["torch"]
