"""The workflow as users run it: the demo config end to end, and the style checks the project keeps."""

import subprocess

import cv2
import pytest
import yaml

from conftest import BIN, REPO, run_snakemake, scheduled_rules


def test_demo_runs_the_whole_pipeline_from_its_own_archives(tmp_path):
    """`make demo`'s run: config/demo.yaml alone (file: URLs, results/demo, the twin experiments)."""
    (tmp_path / "config").mkdir()
    for name in ("config.yaml", "demo.yaml"):
        (tmp_path / "config" / name).write_text((REPO / "config" / name).read_text())
    demo_run = ("--configfile", "config/demo.yaml", "--replace-workflow-config")
    result = run_snakemake(tmp_path, *demo_run)
    assert result.returncode == 0, result.stderr[-3000:]
    demo = tmp_path / "results" / "demo"
    for dataset in ("cifar10", "cifar100"):
        assert (demo / dataset / "rec" / "train.rec").stat().st_size > 0
        assert cv2.imread(str(demo / "figures" / f"{dataset}_samples.png")) is not None
    demo_config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    for name, experiment in demo_config["experiments"].items():
        rows = (demo / "experiments" / name / "metrics.csv").read_text().splitlines()
        assert len(rows) == 1 + experiment["num_epochs"], name
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["demo"]  # no collision with a full run
    again = run_snakemake(tmp_path, *demo_run, "--dry-run")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_the_synthetic_archive_rule_needs_its_config(tmp_path):
    result = run_snakemake(tmp_path, "results/synthetic/cifar10.tar.gz", config={})
    assert result.returncode != 0
    assert "cifar10: no synthetic_archives.cifar10 entry in the config" in result.stderr


def test_dry_run_of_everything_plans_every_stage(tmp_path):
    result = run_snakemake(tmp_path, "--dry-run", config={})
    assert result.returncode == 0, result.stderr
    assert scheduled_rules(result.stdout) == {
        "all": 1, "download_archive": 2, "unpack_arrays": 2, "export_images": 4, "pack_records": 4,
        "mean_image": 4, "plot_samples": 2,
    }


@pytest.mark.parametrize("command", [["snakemake", "--lint"], ["snakefmt", "--check", "workflow"]])
def test_workflow_style_checks_pass(command):
    result = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
