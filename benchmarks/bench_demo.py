"""Where the time of a workflow run went: per-rule wall and CPU seconds, Snakemake's elapsed
time, and the share of process start-up (issue 13).

Run after a workflow run (``make demo``), from the repository root:

    python benchmarks/bench_demo.py [--results results/demo] [--log .snakemake/log/<run>.snakemake.log]

- Per rule: jobs, summed wall seconds of Snakemake's ``benchmark:`` files
  (``results/<world>/benchmarks/<rule>/*.tsv``), the mean wall per job, and summed CPU seconds
  as each job measured them itself (the ``job usage:`` line that
  ``workflow_scripts/workflow_job.py`` ends every job's log with). Snakemake's own ``cpu_time``
  samples every 0.5 s for 15 s and then every 30 s, so it loses most of a 15-45 s job's CPU;
  a job whose log has no usage line (a run of older code) falls back to that sample, and the
  ``cpu_sampled`` column counts such jobs.
- Snakemake's elapsed time: first to last timestamp of the run's log (default: the newest
  ``.snakemake/log/*.snakemake.log``).
- Start-up: one import-only job (a fresh interpreter importing what every workflow script
  imports: Snakemake's script preamble, torch, open_clip, pandas and interpsharp) is timed
  ``--repeats`` times here and now; its median times the number of jobs is the start-up share.
  It is measured on this machine at this moment, so run it on the machine and load of the run
  (``uptime`` is printed beside it).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd

#: What a workflow job imports before its first line of work (workflow_scripts/workflow_job.py
#: and the library modules the compute rules use).
IMPORTS = ("import snakemake.script, torch, pandas, open_clip, interpsharp.evaluate, interpsharp.sharpness, "
           "interpsharp.checkpoints, interpsharp.layerwise_interpolation")

_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]")
#: The last line of a job's log (workflow_scripts/workflow_job.py: report_usage).
_USAGE = re.compile(r"^job usage: wall ([\d.]+) s, cpu ([\d.]+) s$")


def job_cpu_seconds(log: Path) -> float | None:
    """CPU seconds the job measured itself (its log's usage line), None without one."""
    if not log.is_file():
        return None
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if match := _USAGE.match(line.strip()):
            return float(match.group(2))
    return None


def rule_table(results: Path) -> pd.DataFrame:
    """One row per rule: jobs, wall seconds (sums, the benchmark files), CPU seconds (sums, each
    job's log; Snakemake's sample where a log has none) and how many jobs fell back to the sample."""
    rows = []
    for tsv in sorted((results / "benchmarks").glob("*/**/*.tsv")):
        relative = tsv.relative_to(results / "benchmarks")
        bench = pd.read_csv(tsv, sep="\t")
        cpu = job_cpu_seconds((results / "logs" / relative).with_suffix(".log"))
        rows.append({"rule": relative.parts[0], "wall_s": float(bench["s"].iloc[-1]),
                     "cpu_s": float(bench["cpu_time"].iloc[-1]) if cpu is None else cpu, "cpu_sampled": cpu is None})
    if not rows:
        raise FileNotFoundError(f"no benchmark files under {results / 'benchmarks'}; run the workflow first")
    jobs = pd.DataFrame(rows)
    table = jobs.groupby("rule").agg(jobs=("wall_s", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"),
                                     cpu_sampled=("cpu_sampled", "sum"))
    table["wall_per_job_s"] = table["wall_s"] / table["jobs"]
    return table.sort_values("wall_s", ascending=False)


def elapsed_seconds(log: Path) -> float:
    """Seconds between the first and the last timestamp of a Snakemake log."""
    stamps = [datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y") for line in log.read_text().splitlines()
              if (m := _STAMP.match(line))]
    if len(stamps) < 2:
        raise ValueError(f"{log}: fewer than two timestamps; is it a Snakemake log of a finished run?")
    return (stamps[-1] - stamps[0]).total_seconds()


def import_only_job(repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of a fresh interpreter doing only the imports of a job."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = os.times()
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", IMPORTS], check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
        walls.append(time.perf_counter() - start)
        after = os.times()
        cpus.append(after.children_user - before.children_user + after.children_system - before.children_system)
    return statistics.median(walls), statistics.median(cpus)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results/demo", help="the run's results folder (default results/demo)")
    parser.add_argument("--log", help="the run's Snakemake log (default: newest .snakemake/log/*.snakemake.log)")
    parser.add_argument("--repeats", type=int, default=3, help="import-only jobs to time (default 3)")
    args = parser.parse_args(argv)

    table = rule_table(Path(args.results))
    pd.set_option("display.width", 200)
    print(table.round(1).to_string())
    n_jobs = int(table["jobs"].sum())
    print(f"\n{n_jobs} jobs; summed wall {table['wall_s'].sum():.0f} s, summed CPU {table['cpu_s'].sum():.0f} s")
    logs = sorted(Path(".snakemake/log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    log = Path(args.log) if args.log else (logs[-1] if logs else None)
    if log is not None:
        print(f"Snakemake elapsed: {elapsed_seconds(log):.0f} s ({log})")
    wall, cpu = import_only_job(args.repeats)
    load = os.getloadavg()[0]
    print(f"import-only job: {wall:.2f} s wall, {cpu:.2f} s CPU (median of {args.repeats}, load {load:.1f} now); "
          f"x {n_jobs} jobs = {wall * n_jobs:.0f} s wall, {cpu * n_jobs:.0f} s CPU of start-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
