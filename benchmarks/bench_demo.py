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
- Start-up: for each kind of job (by the heavy libraries it loaded, torch and open_clip, torch
  alone, or neither, as its usage line says), one import-only job (a fresh interpreter doing
  only that kind's imports, :data:`IMPORTS`) is timed ``--repeats`` times here and now; its
  median times the number of such jobs is that kind's start-up share. It is measured on this
  machine at this moment, so run it on the machine and load of the run (the load is printed).
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

#: What a workflow job imports before its first line of work, by the heavy libraries it loads
#: (the usage line at the end of its log names them): Snakemake's script preamble and
#: workflow_scripts/workflow_job.py's provenance stamp always, torch and open_clip with the
#: library modules of the compute rules, or neither for the table, figure and report jobs.
IMPORTS = {
    "torch,open_clip": "import snakemake.script, torch, pandas, open_clip, interpsharp.evaluate, interpsharp.sharpness, "
                       "interpsharp.checkpoints, interpsharp.layerwise_interpolation, interpsharp.provenance",
    "torch": "import snakemake.script, torch, pandas, interpsharp.pruning, interpsharp.tables, interpsharp.provenance",
    "none": "import snakemake.script, pandas, interpsharp.heldout, interpsharp.summary, interpsharp.tables, "
            "interpsharp.provenance",
}
#: Jobs whose log has no usage line (a run of older code) are counted as loading everything.
UNKNOWN = "torch,open_clip"

_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]")
#: The last line of a job's log (workflow_scripts/workflow_job.py: report_usage).
_USAGE = re.compile(r"^job usage: wall ([\d.]+) s, cpu ([\d.]+) s, loaded ([\w,]+)$")


def job_usage(log: Path) -> tuple[float, str] | None:
    """CPU seconds the job measured itself and the heavy libraries it loaded (its log's usage
    line), None without one."""
    if not log.is_file():
        return None
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if match := _USAGE.match(line.strip()):
            return float(match.group(2)), match.group(3)
    return None


def job_table(results: Path) -> pd.DataFrame:
    """One row per job: rule, wall seconds (its benchmark file), CPU seconds (its log; Snakemake's
    sample where the log has none, flagged ``cpu_sampled``) and the heavy libraries it loaded."""
    rows = []
    for tsv in sorted((results / "benchmarks").glob("*/**/*.tsv")):
        relative = tsv.relative_to(results / "benchmarks")
        bench = pd.read_csv(tsv, sep="\t")
        usage = job_usage((results / "logs" / relative).with_suffix(".log"))
        cpu, loaded = usage if usage else (float(bench["cpu_time"].iloc[-1]), UNKNOWN)
        rows.append({"rule": relative.parts[0], "wall_s": float(bench["s"].iloc[-1]), "cpu_s": cpu,
                     "cpu_sampled": usage is None, "loaded": loaded})
    if not rows:
        raise FileNotFoundError(f"no benchmark files under {results / 'benchmarks'}; run the workflow first")
    return pd.DataFrame(rows)


def rule_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """One row per rule (by summed wall): jobs, summed wall and CPU seconds, jobs whose CPU is
    Snakemake's sample, what its jobs loaded, and the mean wall per job."""
    table = jobs.groupby("rule").agg(jobs=("wall_s", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"),
                                     cpu_sampled=("cpu_sampled", "sum"),
                                     loaded=("loaded", lambda kinds: " / ".join(sorted(set(kinds)))))
    table["wall_per_job_s"] = table["wall_s"] / table["jobs"]
    return table.sort_values("wall_s", ascending=False)


def elapsed_seconds(log: Path) -> float:
    """Seconds between the first and the last timestamp of a Snakemake log."""
    stamps = [datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y") for line in log.read_text().splitlines()
              if (m := _STAMP.match(line))]
    if len(stamps) < 2:
        raise ValueError(f"{log}: fewer than two timestamps; is it a Snakemake log of a finished run?")
    return (stamps[-1] - stamps[0]).total_seconds()


def import_only_job(imports: str, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of a fresh interpreter doing only ``imports``."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = os.times()
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", imports], check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
        walls.append(time.perf_counter() - start)
        after = os.times()
        cpus.append(after.children_user - before.children_user + after.children_system - before.children_system)
    return statistics.median(walls), statistics.median(cpus)


def startup_share(jobs_by_kind: dict[str, int], repeats: int) -> list[str]:
    """Per kind of job: its import-only time, times its number of jobs; then the total."""
    lines, total_wall, total_cpu = [], 0.0, 0.0
    for kind, n in sorted(jobs_by_kind.items()):
        wall, cpu = import_only_job(IMPORTS[kind], repeats)
        total_wall, total_cpu = total_wall + wall * n, total_cpu + cpu * n
        lines.append(f"  loading {kind}: {wall:.2f} s wall, {cpu:.2f} s CPU (median of {repeats}) x {n} jobs")
    lines.append(f"  start-up in all: {total_wall:.0f} s wall, {total_cpu:.0f} s CPU (load {os.getloadavg()[0]:.1f} now)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results/demo", help="the run's results folder (default results/demo)")
    parser.add_argument("--log", help="the run's Snakemake log (default: newest .snakemake/log/*.snakemake.log)")
    parser.add_argument("--repeats", type=int, default=3, help="import-only jobs to time (default 3)")
    args = parser.parse_args(argv)

    jobs = job_table(Path(args.results))
    table = rule_table(jobs)
    pd.set_option("display.width", 200)
    print(table.round(1).to_string())
    n_jobs = len(jobs)
    print(f"\n{n_jobs} jobs; summed wall {table['wall_s'].sum():.0f} s, summed CPU {table['cpu_s'].sum():.0f} s")
    logs = sorted(Path(".snakemake/log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    log = Path(args.log) if args.log else (logs[-1] if logs else None)
    if log is not None:
        print(f"Snakemake elapsed: {elapsed_seconds(log):.0f} s ({log})")
    jobs_by_kind = {str(kind): int(n) for kind, n in jobs["loaded"].value_counts().items()}
    print("import-only jobs, by the heavy libraries a job loaded:")
    print("\n".join(startup_share(jobs_by_kind, args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
