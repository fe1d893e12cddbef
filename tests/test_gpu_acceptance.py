"""The GPU acceptance run (benchmarks/gpu_acceptance.py): its smoke run end to end on this
machine, the step budgets and selection, the table comparison of step 5, the GPU-slot checks,
and the synthetic classifier that makes step 1's top-1 agreement meaningful."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_acceptance as acceptance  # noqa: E402

from interpsharp.estimate import read_throughputs  # noqa: E402


@pytest.mark.slow
def test_smoke_run_covers_every_step(tmp_path):
    """Every step runs at toy size: no step crashes, the CUDA-only ones say why they skipped,
    and the files the GPU run leaves behind are written and readable."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_acceptance.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    record = json.loads((out / "gpu_acceptance.json").read_text())
    assert record["format"] == acceptance.RESULT_FORMAT and record["mode"] == "smoke"
    steps = {s["number"]: s for s in record["steps"]}
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    assert not [s for s in steps.values() if s["status"] in ("error", "timeout", "failed")]
    cuda = torch.cuda.is_available()
    for step in acceptance.STEPS:
        if step.cuda_only and not cuda:
            assert steps[step.number]["status"] == "skipped" and steps[step.number]["reason"].startswith("no CUDA")
    # Step 3 needs interpsharp.precision; where it exists it must have run.
    try:
        import interpsharp.precision  # noqa: F401
        assert steps[3]["status"] == "measured" and (out / "precision_verdicts.tsv").is_file()
    except ImportError:
        assert steps[3]["status"] == "skipped"
    names = [f["name"] for f in steps[1]["figures"]]
    for variant in ("fp32", "bf16_autocast", "bf16", "bf16+compile"):
        assert f"{variant}: images/s from the cache" in names
    assert any(name.startswith("peers' loop: JPEG ImageFolder") for name in names)
    # Goals are shown but not judged on a toy model.
    assert all(f["passed"] is None for s in steps.values() for f in s["figures"])
    throughputs = read_throughputs(out / "throughputs.json")
    assert {"fp32", "bf16", "bf16_autocast", "bf16+compile"} <= set(throughputs.images_per_s)
    assert "total" in (out / "estimate.txt").read_text()
    md = (out / "gpu_acceptance.md").read_text()
    for step in acceptance.STEPS:
        assert f"| {step.number} {step.name} |" in md
    print(f"smoke run: {record['seconds']} s wall, {record['cpu_seconds']} s CPU")


def test_budgets_fit_the_limit_and_the_listing_shows_them(capsys):
    assert sum(s.budget_s for s in acceptance.STEPS) <= acceptance.TOTAL_BUDGET_S
    assert sorted(acceptance.RUN_ORDER) == [s.number for s in acceptance.STEPS]
    assert acceptance.main(["--list"]) == 0
    out = capsys.readouterr().out
    for step in acceptance.STEPS:
        assert f"{step.budget_s} s" in out and step.name in out
    assert f"add up to {sum(s.budget_s for s in acceptance.STEPS)} s" in out


def test_steps_are_chosen_by_number_or_name_in_run_order():
    assert [s.number for s in acceptance.select_steps(None, None)] == list(acceptance.RUN_ORDER)
    assert [s.number for s in acceptance.select_steps(["6", "precision", "1"], None)] == [1, 3, 6]
    assert [s.number for s in acceptance.select_steps(None, ["ci-world", "2"])] == [1, 4, 3, 6]
    with pytest.raises(ValueError, match="unknown step '7'"):
        acceptance.select_steps(["7"], None)


def test_a_full_run_needs_cuda(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert acceptance.main(["--out", str(tmp_path)]) == 2
    assert "--smoke" in capsys.readouterr().err


# -- step 5: two runs' tables --------------------------------------------------------------

def _evaluation(n: int = 100) -> pd.DataFrame:
    rows = []
    for alpha in (0.0, 0.5, 1.0):
        rows.append(("model_0", "photo", "all", alpha, "accuracy", 0.61 + alpha / 10, n))
        rows.append(("model_0", "photo", "all", alpha, "loss", 1.4 - alpha / 3, n))
    table = pd.DataFrame(rows, columns=["model", "dataset", "split", "alpha", "metric", "value", "n"])
    return table.assign(note=[None, "nothing pruned"] * 3)  # a text column with missing values


def test_tables_within_tolerance_and_beyond():
    reference = _evaluation()
    assert acceptance.compare_tables(reference, reference.copy())[0] == "equal"
    # Rows in another order are the same rows.
    assert acceptance.compare_tables(reference, reference.iloc[::-1].reset_index(drop=True))[0] == "equal"
    loss = reference["metric"] == "loss"
    accuracy = reference["metric"] == "accuracy"

    def changed(mask, delta):
        other = reference.copy()
        other.loc[mask[mask].index[:1], "value"] += delta
        return acceptance.compare_tables(reference, other)

    assert changed(loss, 5e-4)[0] == "within tolerance"          # 1e-3 below a loss of 1
    assert changed(loss, 3e-3)[:2] == ("differs", 1)
    assert changed(accuracy, 1 / 100)[0] == "within tolerance"   # one image of 100
    status, outside, worst = changed(accuracy, 2 / 100)
    assert (status, outside) == ("differs", 1) and "value row" in worst
    large = reference.copy()
    large.loc[loss, "value"] *= 10                                # relative above 1: 1e-3 of 14
    shifted = large.copy()
    shifted.loc[loss[loss].index[0], "value"] += 0.01
    assert acceptance.compare_tables(large, shifted)[0] == "within tolerance"
    nan = reference.copy()
    nan.loc[0, "value"] = np.nan
    assert acceptance.compare_tables(reference, nan)[0] == "differs"
    label = reference.copy()
    label.loc[1, "dataset"] = "sketch"
    assert acceptance.compare_tables(reference, label)[0] == "differs"
    assert acceptance.compare_tables(reference, reference.drop(columns="n"))[0] == "differs"
    assert acceptance.compare_tables(reference, reference.iloc[:-1])[0] == "differs"


def test_runs_are_compared_table_by_table(tmp_path):
    cpu, gpu = tmp_path / "cpu", tmp_path / "gpu"
    cpu.mkdir()
    gpu.mkdir()
    reference = _evaluation()
    reference.to_csv(cpu / "evaluation.tsv", sep="\t", index=False)
    reference.to_csv(gpu / "evaluation.tsv", sep="\t", index=False)
    reference.to_csv(cpu / "pruning.tsv", sep="\t", index=False)
    reference.to_csv(gpu / "extra.tsv", sep="\t", index=False)
    table = acceptance.compare_runs(cpu, gpu).set_index("table")
    assert table.loc["evaluation", "status"] == "equal"
    assert table.loc["pruning", "status"] == "missing" and table.loc["extra", "status"] == "missing"


def test_gpu_jobs_and_slots_are_read_from_logs_and_locks(tmp_path):
    logs = tmp_path / "results" / "demo" / "logs"
    (logs / "evaluate_interpolation").mkdir(parents=True)
    (logs / "collect_table").mkdir(parents=True)
    (logs / "evaluate_interpolation" / "model_0.log").write_text(
        "rule evaluate_interpolation\nparams {'device': 'cuda', 'batch_size': 100}\n"
        "CUDA_VISIBLE_DEVICES=0 (claimed slot 0)\n")
    (logs / "evaluate_interpolation" / "model_1.log").write_text(
        "rule evaluate_interpolation\nparams {'device': 'cuda'}\nCUDA_VISIBLE_DEVICES=None (claimed slot None)\n")
    (logs / "collect_table" / "all.log").write_text("rule collect_table\nparams {}\n")
    found = {log.name: (on_cuda, claimed) for log, on_cuda, claimed in acceptance.gpu_job_logs(tmp_path)}
    assert found == {"model_0.log": (True, True), "model_1.log": (True, False), "all.log": (False, False)}

    slots = tmp_path / "gpu-slots"
    assert acceptance.slots_released(slots) is None
    slots.mkdir()
    lock = slots / "gpu0.lock"
    lock.touch()
    assert acceptance.slots_released(slots) is True
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert acceptance.slots_released(slots) is False
    assert acceptance.slots_released(slots) is True


def test_ci_configs_differ_only_in_where_models_run(tmp_path):
    import yaml

    cpu = yaml.safe_load(acceptance.ci_config(tmp_path / "cpu.yaml", "cpu").read_text())
    gpu = yaml.safe_load(acceptance.ci_config(tmp_path / "gpu.yaml", "cuda").read_text())
    ci = yaml.safe_load((ROOT / "config" / "ci.yaml").read_text())
    assert {k: v for k, v in gpu.items() if k != "compute"} == {k: v for k, v in ci.items() if k != "compute"}
    assert (gpu["compute"]["device"], gpu["compute"]["gpus"], cpu["compute"]["device"]) == ("cuda", 1, "cpu")
    command = acceptance.snakemake_command(tmp_path, tmp_path / "gpu.yaml", 4, gpu=True)
    assert str(ROOT / "profiles" / "workstation") in command and command[command.index("--resources") + 1] == "gpu=1"
    assert "--profile" not in acceptance.snakemake_command(tmp_path, tmp_path / "cpu.yaml", 4, gpu=False)


# -- step 1: the synthetic classifier ------------------------------------------------------

def test_prototype_head_gives_noisy_copies_their_prototype_class(tmp_path):
    """Centred prototype features as head rows: every prototype is its own class (Cauchy-Schwarz:
    <c_k, c_j / |c_j|> <= |c_k| with equality only at j = k), and most noisy copies keep it, so
    top-1 agreement between precisions is measured on images with real margins."""
    device = torch.device("cpu")
    model, prototypes = acceptance.prototype_classifier("tiny", device, batch_size=250)
    with torch.no_grad():
        logits = model(acceptance.normalize_images(prototypes, model.preprocess))
    assert torch.equal(logits.argmax(1), torch.arange(len(prototypes)))
    cache = acceptance.write_synthetic_cache(tmp_path / "c", prototypes, 200, sigma=40.0, seed=1)
    top1 = acceptance.predictions(model, cache, 100, device, "fp32")
    assert (top1 == cache.labels).mean() > 0.7
    assert len(np.unique(top1)) > 150  # images spread over the classes
    # The head is what does it: a random one gives almost every image one class.
    torch.manual_seed(0)
    with torch.no_grad():
        model.classification_head.weight.normal_(0, 0.01)
        model.classification_head.bias.zero_()
    assert len(np.unique(acceptance.predictions(model, cache, 100, device, "fp32"))) < 20


def test_a_broken_part_becomes_a_failed_figure_and_the_step_goes_on():
    figures = []
    assert acceptance.attempt(figures, "compile", lambda: 1 / 0) is None
    assert acceptance.attempt(figures, "fine", lambda: 7) == 7
    assert len(figures) == 1 and figures[0].passed is False and "ZeroDivisionError" in figures[0].value

    def broken(run):
        raise RuntimeError("no kernel image is available")

    step = acceptance.Step(9, "broken", "a step that crashes", 5, False, broken)
    run = acceptance.Run(smoke=True, device=torch.device("cpu"), out=Path("."), scratch=Path("."), sizes=acceptance.SMOKE)
    result = acceptance.run_step(step, run)
    assert result.status == "error" and "no kernel image" in result.reason


def test_a_step_past_its_hard_stop_is_interrupted():
    import time

    start = time.monotonic()
    with pytest.raises(acceptance.StepTimeout):
        with acceptance.hard_stop(0.2):
            time.sleep(5)
    assert time.monotonic() - start < 3


def test_readme_shows_the_current_listing():
    assert acceptance.listing() in (ROOT / "README.md").read_text(), "README 'Checking a GPU': paste the new --list"
