"""Benchmark (not a test): what a run pays for spanning several Slurm jobs, and for its lease.

1. Stop and resume. The demo's cifar10_scratch twin with 60 epochs (seed 1) trains through a running
   Slurm cluster and workflow/profiles/slurm, on the partition `short` (MaxTime 1 minute, as
   tests/cluster/local_slurm.sh makes it) with max_job_minutes=1: it needs several jobs. For each stop
   the attempts' own logs give: the stop (`train stopped to resume`), the next attempt's start in its
   new job, and that attempt's first batch (the end of its first epoch less the epoch's time cost).
   The seconds from stop to start are Slurm's and Snakemake's (the plugin's status polling, which
   backs off by 10 s per poll up to 180 s, sbatch, the two Snakemakes of a job); from start to first
   batch ours (imports, data iterators, the checkpoint).
2. The lease's overhead on an uninterrupted run. The same run, in this process, on the data chain
   that part 1 made: run.run_training (the lease, its heartbeat thread, the stop checks between
   batches, the logs) against training.train with neither (the baseline), rounds alternating so that
   drift in the machine's speed hits both; wall seconds of the whole run, medians. Target: at most
   1 % more. Beside it, the bound from the parts: a stop check times the batches, a heartbeat times
   the run's seconds / HEARTBEAT_SECONDS.

usage: make benchmark-cluster   (starts and stops a local Slurm; needs root)
"""

import argparse
import itertools
import logging
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

from cifar_repro import layout
from cifar_repro.job import TrainingJob
from cifar_repro.lease import HEARTBEAT_SECONDS, RunLease
from cifar_repro.run import run_training
from cifar_repro.schema import with_defaults
from cifar_repro.stopping import StopConditions
from cifar_repro.training import train

REPOSITORY = Path(__file__).resolve().parents[2]
OUT = "results/demo"
RUN = "over_jobs"
TARGET_OVERHEAD = 0.01
STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) "


def stamp_of(line: str) -> float:
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def long_experiment(demo: dict) -> dict:
    scratch = {key: value for key, value in demo["experiments"]["cifar10_scratch"].items() if key != "seeds"}
    return scratch | {"seed": 1, "num_epochs": 60}


def train_over_jobs(work: Path, cores: str) -> list[str]:
    """RUN through Slurm on the partition `short`; its attempts' own logs."""
    shutil.copytree(REPOSITORY / "config", work / "config")
    config = yaml.safe_load((work / "config" / "demo.yaml").read_text())
    config["experiments"][RUN] = long_experiment(config)
    (work / "config" / "demo.yaml").write_text(yaml.safe_dump(config))
    words = (REPOSITORY / "tests" / "cluster" / "snakemake_options.txt").read_text().split()
    cluster = [str(REPOSITORY / word) if word.startswith("workflow/") else word for word in words]
    command = [
        str(Path(sys.executable).parent / "snakemake"),
        "--snakefile", str(REPOSITORY / "workflow" / "Snakefile"),
        "--configfile", "config/demo.yaml", "--replace-workflow-config", layout.run_files(OUT, RUN).metrics,
        *cluster, "--cores", cores, "--config", "max_job_minutes=1",
        "--set-resources", f"train:cpus_per_task={cores}", "train:mem_mb=2000", "train:slurm_partition=short",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=work, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"the run through Slurm failed:\n{result.stderr[-3000:]}")
    attempts = sorted((work / layout.checkpoint_dir(OUT, RUN) / "attempts").glob("*.log"))
    return [path.read_text() for path in attempts]


def stop_resume_costs(attempts: list[str]) -> list[tuple[float, float]]:
    """Per stop: (seconds from the stop to the next attempt's start, from that start to its first batch)."""
    costs = []
    for stopped, resumed in itertools.pairwise(attempts):
        stop = stamp_of(next(line for line in stopped.splitlines() if "train stopped to resume" in line))
        start = stamp_of(resumed.splitlines()[0])
        first_epoch = re.search(STAMP + r"INFO Epoch\[\d+\] Time cost=([\d.]+)$", resumed, re.M)
        first_batch = stamp_of(first_epoch.group(1)) - float(first_epoch.group(2))
        costs.append((start - stop, first_batch - start))
    return costs


def timed_run(data, experiment: dict, with_lease: bool) -> float:
    with tempfile.TemporaryDirectory() as work:
        job = TrainingJob.under(work, RUN, experiment, data)
        started = time.monotonic()
        if with_lease:
            run_training(job, threads=1)
        else:
            train(job)
        return time.monotonic() - started


def part_costs(work: Path) -> tuple[float, float]:
    """(seconds of one stop check between batches, of one heartbeat's lease write)."""
    stop, calls = StopConditions(), 100_000
    started = time.perf_counter()
    for _ in range(calls):
        stop.check_batch(0)
    check = (time.perf_counter() - started) / calls
    with RunLease(work / "lease-benchmark", "benchmark") as lease:
        started, writes = time.perf_counter(), 200
        for _ in range(writes):
            lease._write()  # noqa: SLF001  (what each heartbeat does)
        heartbeat = (time.perf_counter() - started) / writes
    return check, heartbeat


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cores", type=int, default=2, help="threads per training job")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        attempts = train_over_jobs(work, str(args.cores))
        costs = stop_resume_costs(attempts)
        print(f"1. {RUN}: 60 epochs over {len(attempts)} Slurm jobs of at most 1 minute")
        print("   stop  stop -> next job's start (s)  start -> first batch (s)  stop -> first batch (s)")
        for number, (scheduling, ours) in enumerate(costs, 1):
            print(f"   {number:>4}  {scheduling:>28.1f}  {ours:>24.1f}  {scheduling + ours:>23.1f}")

        logging.basicConfig(level=logging.WARNING)
        data = layout.packed_dataset(work / OUT, "cifar10")
        demo = yaml.safe_load((work / "config" / "demo.yaml").read_text())
        experiment = with_defaults(long_experiment(demo) | {"gpus": 0, "num_epochs": 8})
        leased, bare = [], []
        for _ in range(args.rounds):
            leased.append(timed_run(data, experiment, with_lease=True))
            bare.append(timed_run(data, experiment, with_lease=False))
        images = len(Path(data.train_idx).read_text().splitlines())
        batches = experiment["num_epochs"] * -(-images // experiment["batch_size"])
        check, heartbeat = part_costs(work)
    ratio = statistics.median(leased) / statistics.median(bare)
    run_seconds = statistics.median(bare)
    bound = (batches * check + run_seconds / HEARTBEAT_SECONDS * heartbeat) / run_seconds
    print(
        f"2. the lease's overhead: {experiment['num_epochs']} epochs, {args.rounds} alternating rounds, "
        "wall seconds"
    )
    print(f"   run_training (lease, stop checks, logs)  {', '.join(f'{s:.2f}' for s in leased)}")
    print(f"   train alone (baseline)                   {', '.join(f'{s:.2f}' for s in bare)}")
    print(
        f"   median ratio {ratio:.4f} ({(ratio - 1) * 100:+.2f} %, target <= {TARGET_OVERHEAD * 100:.0f} %)"
    )
    print(
        f"   from the parts: a stop check {check * 1e9:.0f} ns x {batches} batches, a heartbeat "
        f"{heartbeat * 1e3:.2f} ms every {HEARTBEAT_SECONDS:.0f} s: {bound * 100:.4f} % of the run"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
