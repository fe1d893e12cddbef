"""benchmarks/bench_demo.py's CPU seconds: each job measures its own (workflow_job.report_usage),
because Snakemake's benchmark files sample CPU time and lose most of a 15-45 s job's."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_demo  # noqa: E402

#: Snakemake's benchmark columns (snakemake.benchmark.BenchmarkRecord.get_header).
BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def test_a_jobs_usage_line_counts_the_cpu_it_burned(tmp_path):
    """A job that burns about 1.5 CPU seconds after its imports reports at least that much, and
    no more CPU than wall time (one thread), in the line bench_demo reads."""
    log = tmp_path / "job.log"
    script = textwrap.dedent(f"""
        import atexit, sys, time
        sys.path.insert(0, {str(ROOT / "workflow_scripts")!r})
        import workflow_job
        sys.stdout = open({str(log)!r}, "w", buffering=1)
        atexit.register(workflow_job.report_usage)
        start = time.process_time()
        while time.process_time() - start < 1.5:
            pass
        print(f"burned {{time.process_time():.3f}}")
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    lines = log.read_text().splitlines()
    burned = float(lines[0].split()[1])
    cpu, loaded = bench_demo.job_usage(log)
    wall = float(lines[-1].split("wall ")[1].split(" s")[0])
    assert cpu >= burned >= 1.5
    assert cpu <= wall + 0.05
    assert loaded == "none"  # workflow_job alone imports neither torch nor open_clip


def write_job(results: Path, rule: str, name: str, wall: float, sampled_cpu: float, usage: str | None) -> None:
    bench = results / "benchmarks" / rule / f"{name}.tsv"
    bench.parent.mkdir(parents=True, exist_ok=True)
    bench.write_text(BENCH_HEADER + f"{wall}\t0:00:{int(wall):02d}\t1\t1\t1\t1\t0\t0\t50\t{sampled_cpu}\n")
    log = results / "logs" / rule / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("rule x\nsome output\n" + (f"{usage}\n" if usage else ""))


def test_rule_table_takes_cpu_from_the_jobs_logs_and_counts_the_sampled_fallbacks(tmp_path):
    write_job(tmp_path, "layerwise_interpolation", "model_0", 44.0, 15.0,
              "job usage: wall 44.50 s, cpu 43.25 s, loaded torch,open_clip")
    write_job(tmp_path, "layerwise_interpolation", "model_1", 40.0, 14.0,
              "job usage: wall 40.10 s, cpu 39.00 s, loaded torch,open_clip")
    write_job(tmp_path, "heldout_gains", "all", 2.0, 1.5, "job usage: wall 2.10 s, cpu 1.90 s, loaded none")
    write_job(tmp_path, "report_html", "all", 9.0, 8.0, None)  # an older run's log: the sample stands
    jobs = bench_demo.job_table(tmp_path)
    table = bench_demo.rule_table(jobs)
    assert table.loc["layerwise_interpolation", "cpu_s"] == 43.25 + 39.0
    assert table.loc["layerwise_interpolation", "cpu_sampled"] == 0
    assert table.loc["layerwise_interpolation", "wall_s"] == 84.0
    assert table.loc["report_html", "cpu_s"] == 8.0 and table.loc["report_html", "cpu_sampled"] == 1
    assert table.loc["heldout_gains", "cpu_s"] == 1.9 and table.loc["heldout_gains", "loaded"] == "none"
    assert list(table.index) == ["layerwise_interpolation", "report_html", "heldout_gains"]  # by summed wall
    # Start-up is counted per kind of job; a job without a usage line counts as loading everything.
    assert jobs["loaded"].value_counts().to_dict() == {"torch,open_clip": 3, "none": 1}
    assert set(jobs["loaded"]) <= set(bench_demo.IMPORTS)
