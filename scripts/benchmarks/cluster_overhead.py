"""Benchmark (not a test): what running through Slurm costs, on the demo.

The demo (config/demo.yaml: data chain, a training job per seed of each twin, figures, tables,
report) runs twice in fresh folders: with the local default profile as `make demo` runs it (`--cores
2`, one core per training job), and through a running Slurm cluster with workflow/profiles/slurm and
the options that fit it to the test cluster (tests/cluster/snakemake_options.txt), with the same one
core per training job. Prints both wall times, their ratio against the 1.5x target, and how many
Slurm jobs the cluster run submitted (one per dataset's data chain, one per training job: the light
rules run locally). The cluster's node declares the machine's CPUs (--cores), as a real node does,
so Slurm never runs more threads at once than the local run may; `--cores` also caps what each Slurm
job asks for, the data chain's group job included.

usage: make benchmark-cluster   (starts and stops a local Slurm with NODE_CPUS=CORES; needs root)
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
TARGET_RATIO = 1.5
DEMO = ["--configfile", "config/demo.yaml", "--replace-workflow-config", "all", "report"]
ONE_CORE_PER_TRAINING_JOB = ["--set-threads", "train=1"]  # as make demo


def run_demo(options: list[str]) -> tuple[float, str]:
    """Wall seconds of the demo in a fresh folder, and Snakemake's log."""
    with tempfile.TemporaryDirectory() as work:
        shutil.copytree(REPOSITORY / "config", Path(work) / "config")  # demo.yaml and published curves
        command = [str(Path(sys.executable).parent / "snakemake"), "--snakefile",
                   str(REPOSITORY / "workflow" / "Snakefile"), *DEMO, *options]  # fmt: skip
        started = time.monotonic()
        result = subprocess.run(command, cwd=work, capture_output=True, text=True)
        seconds = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"the demo failed ({' '.join(options)}):\n{result.stderr[-3000:]}")
    return seconds, result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cores", type=int, default=2, help="the CPUs of the machine and of the Slurm node")
    cores = str(parser.parse_args().cores)
    words = (REPOSITORY / "tests" / "cluster" / "snakemake_options.txt").read_text().split()
    cluster = [str(REPOSITORY / word) if word.startswith("workflow/") else word for word in words]
    local_seconds, _ = run_demo(["--cores", cores, *ONE_CORE_PER_TRAINING_JOB])
    slurm_one_core = [
        *ONE_CORE_PER_TRAINING_JOB,
        "--set-resources",
        "train:cpus_per_task=1",
        "train:mem_mb=2000",
    ]
    slurm_seconds, log = run_demo([*cluster, "--cores", cores, *slurm_one_core])
    jobs = sum("has been submitted with SLURM jobid" in line for line in log.splitlines())
    print(f"{f'demo, local profile (--cores {cores})':<40} {local_seconds:8.1f} s")
    print(f"{'demo, through Slurm':<40} {slurm_seconds:8.1f} s")
    print(f"{'ratio (target <= ' + str(TARGET_RATIO) + ')':<40} {slurm_seconds / local_seconds:8.2f}")
    print(f"{'Slurm jobs submitted':<40} {jobs:8d}")


if __name__ == "__main__":
    main()
