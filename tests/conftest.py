"""Fixtures shared by the tests: CIFAR-format archives generated in the official layout, a loopback
HTTP server that serves them, and a runner for the real `snakemake` command line."""

import copy
import csv
import functools
import hashlib
import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from cifar_repro import synthetic

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
BIN = Path(sys.executable).parent

# tiny but complete: every class present in both splits
TEST_ARCHIVES = {
    "cifar10": {"file": "cifar-10-python.tar.gz", "train_per_class": 6, "test_per_class": 2},
    "cifar100": {"file": "cifar-100-python.tar.gz", "train_per_class": 1, "test_per_class": 1},
}


def demo_workdir(folder: Path) -> Path:
    """`folder` set up as a checkout's working directory for the demo: the config files, and the
    published curves the figures read."""
    shutil.copytree(REPO / "config", folder / "config", dirs_exist_ok=True)
    return folder


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """The real `snakemake` CLI on the workflow, in `workdir`, on 2 cores."""
    return [
        str(BIN / "snakemake"),
        "--snakefile",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        *args,
    ]


def snakemake_environment(workdir: Path) -> dict[str, str]:
    return {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(workdir), "LC_ALL": "C.UTF-8"}


def run_snakemake(
    workdir: Path, *args: str, config: dict | None = None, environment: dict | None = None
) -> subprocess.CompletedProcess:
    """Run the workflow in `workdir`; `config` becomes its config/config.yaml (the Snakefile's default);
    `environment` adds to or replaces variables of the default environment."""
    if config is not None:
        (workdir / "config").mkdir(parents=True, exist_ok=True)
        (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    command = snakemake_command(workdir, *args)
    env = snakemake_environment(workdir) | (environment or {})
    # run inside the workdir, so that relative paths on the command line (--configfile) are its own
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, cwd=workdir)


@pytest.fixture(scope="session")
def archives(tmp_path_factory):
    """{dataset: (path, md5, members)} of archives in the official layout."""
    folder = tmp_path_factory.mktemp("served")
    made = {}
    for dataset, spec in TEST_ARCHIVES.items():
        members = synthetic.archive_members(
            dataset, spec["train_per_class"], spec["test_per_class"], seed=1, noise=30.0
        )
        path = folder / spec["file"]
        made[dataset] = (path, synthetic.write_archive(path, members), members)
    return made


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def http_base_url(archives):
    """Base URL of a server on 127.0.0.1 serving the archives' folder."""
    folder = next(iter(archives.values()))[0].parent
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=folder)
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def scheduled_rules(dry_run_output: str) -> dict[str, int]:
    """Rule -> job count, from the "Job stats" table a (dry) run prints."""
    lines = dry_run_output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == ["job", "count"])
    counts = {}
    for line in lines[header + 2 :]:
        rule, count = line.split()
        if rule == "total":
            return counts
        counts[rule] = int(count)
    raise ValueError("no total line in the job stats")


def http_config(archives, base_url: str, **overrides) -> dict:
    config = {
        "output_dir": "results",
        "allow_cpu_fallback": True,  # GPU experiments on CPU contexts: no GPU here
        "datasets": {
            dataset: {"url": f"{base_url}/{path.name}", "md5": md5}
            for dataset, (path, md5, _) in archives.items()
        },
    }
    config.update(overrides)
    return config


@functools.cache
def synthetic_md5(dataset: str, train_per_class: int, test_per_class: int) -> str:
    """MD5 of the archive rule synthesize_archive makes with these options (seed 0, noise 30)."""
    members = synthetic.archive_members(dataset, train_per_class, test_per_class, seed=0, noise=30.0)
    return hashlib.md5(synthetic.archive_bytes(members)).hexdigest()


def synthetic_config(sizes: dict[str, tuple[int, int]], **overrides) -> dict:
    """A config whose datasets the workflow generates itself: {dataset: (train, test) per class}."""
    config = {
        "allow_cpu_fallback": True,  # GPU experiments on CPU contexts: no GPU here
        "synthetic_archives": {
            d: {"train_per_class": tr, "test_per_class": te} for d, (tr, te) in sizes.items()
        },
        "datasets": {
            d: {"url": f"file:results/synthetic/{d}.tar.gz", "md5": synthetic_md5(d, tr, te)}
            for d, (tr, te) in sizes.items()
        },
    }
    config.update(overrides)
    return config


# A CPU-sized experiment for the training tests: ResNet-8 on 28x28 crops, 3 epochs of batches of 20
TINY_EXPERIMENT = {
    "dataset": "cifar10",
    "network": "resnet",
    "num_layers": 8,
    "data_shape": [3, 28, 28],
    "batch_size": 20,
    "num_epochs": 3,
    "optimizer": "sgd",
    "optimizer_params": {"learning_rate": 0.05, "momentum": 0.9, "wd": 0.0001},
    "augment": {"rand_crop": True, "rand_mirror": True},
    "seed": 3,
    "disp_batches": 5,
}


def tiny_experiment(**changes) -> dict:
    """TINY_EXPERIMENT with top-level keys replaced."""
    return copy.deepcopy(TINY_EXPERIMENT) | changes


# metrics.csv columns that depend on the machine's speed, not on the training
TIMING_COLUMNS = {"seconds", "samples_per_second"}


def read_metrics(path) -> list[dict]:
    with open(path) as rows:
        return list(csv.DictReader(rows))


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]
