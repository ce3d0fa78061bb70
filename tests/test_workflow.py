"""The workflow as users run it: the demo config end to end, and the style checks the project keeps."""

import csv
import re
import shutil
import statistics
import subprocess
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest
import yaml
from conftest import BIN, REPO, demo_workdir, run_snakemake, scheduled_rules, snakemake_environment

from cifar_repro import archive, layout, mean, synthetic

pytestmark = pytest.mark.workflow


DEMO_RUN = ("--configfile", "config/demo.yaml", "--replace-workflow-config")
OUT = "results/demo"


def demo_runs() -> dict[str, dict]:
    """Every training run of the demo (each seed of an experiment with seeds): name -> config."""
    experiments = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())["experiments"]
    return {
        run: spec
        for name, experiment in experiments.items()
        for run, spec in layout.experiment_runs(name, experiment).items()
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A workdir where `make demo`'s run happened: config/demo.yaml alone, targets all and report."""
    workdir = demo_workdir(tmp_path_factory.mktemp("demo"))
    result = run_snakemake(workdir, *DEMO_RUN, "all", "report", "--set-threads", "train=1")  # as make demo
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def read_csv(path):
    with open(path) as rows:
        return list(csv.DictReader(rows))


def set_demo_config(workdir, change):
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    change(config)
    (workdir / "config" / "demo.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def test_demo_runs_every_stage_into_results_demo(demo):
    results = demo / "results" / "demo"
    for dataset in ("cifar10", "cifar100"):
        assert (results / dataset / "rec" / "train.rec").stat().st_size > 0
        assert cv2.imread(str(results / "figures" / f"{dataset}_samples.png")) is not None
    for run, experiment in demo_runs().items():
        rows = (demo / layout.run_files(OUT, run).metrics).read_text().splitlines()
        assert len(rows) == 1 + experiment["num_epochs"], run
    assert sorted(p.name for p in (demo / "results").iterdir()) == ["demo"]  # no collision with a full run
    again = run_snakemake(demo, *DEMO_RUN, "all", "report", "--dry-run")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_every_configured_figure_is_a_sensible_png_and_svg(demo):
    figures = demo / "results" / "demo" / "figures"
    for name in yaml.safe_load((REPO / "config" / "demo.yaml").read_text())["figures"]:
        image = cv2.imread(str(figures / f"{name}.png"))
        assert image is not None and image.shape[0] >= 400 and image.shape[1] >= 600, name
        assert (figures / f"{name}.svg").read_text().lstrip().startswith("<?xml"), name


def test_summary_numbers_equal_the_metrics(demo):
    results = demo / "results" / "demo"
    summary = {row["experiment"]: row for row in read_csv(results / "tables" / "summary.csv")}
    demo_config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    for name, row in summary.items():
        runs = layout.experiment_runs(name, demo_config["experiments"][name])
        curves = [
            [100 * float(m["val_accuracy"]) for m in read_csv(demo / layout.run_files(OUT, run).metrics)]
            for run in runs
        ]
        final = statistics.fmean(curve[-1] for curve in curves)  # the mean over the seeds
        assert (int(row["seeds"]), float(row["final_val_accuracy"])) == (len(runs), pytest.approx(final))
        assert float(row["best_val_accuracy"]) == pytest.approx(
            max(map(statistics.fmean, zip(*curves, strict=True)))
        )
        if name in demo_config["published_accuracy"]:
            assert float(row["difference"]) == pytest.approx(final - demo_config["published_accuracy"][name])
    assert "| lr_schedule.type | fixed | factor |" in (results / "tables" / "params_diff.md").read_text()


def test_report_holds_every_figure_table_and_caption(demo):
    report = (demo / "results" / "demo" / "report.html").read_text()
    for name, spec in yaml.safe_load((REPO / "config" / "demo.yaml").read_text())["figures"].items():
        assert f"{name}.png" in report and spec["title"] in report, name
    for needle in (
        "cifar10_samples.png",
        "summary.csv",
        "params_diff.csv",
        "CIFAR-100",
        "results vs published",
        "claims.csv",
        "the seeds' claims, with verdicts",
    ):
        assert needle in report, needle
    # the description, at the top of the report, opens by saying the data is synthetic
    description = report[report.index("var workflow_desc = ") :]
    assert description.index("Synthetic data:") < description.index("cifar-repro rebuilds")


def test_the_claims_table_judges_every_configured_claim_over_3_seeds(demo):
    rows = read_csv(demo / "results" / "demo" / "tables" / "claims.csv")
    claims = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())["claims"]
    assert sorted(row["claim"] for row in rows) == sorted(claims)
    for row in rows:
        assert row["verdict"] in {"holds", "does not hold", "inconclusive"} and row["seeds"] == "3", row


def test_the_demos_twins_end_apart_below_95_percent_and_stage_2_improves(demo):
    summary = {
        row["experiment"]: row for row in read_csv(demo / "results" / "demo" / "tables" / "summary.csv")
    }
    finals = {name: float(row["final_val_accuracy"]) for name, row in summary.items()}
    assert max(finals.values()) < 95, finals  # synthetic, but not trivial
    twins = [finals[name] for name in finals if name.startswith("cifar10_")]
    assert max(twins) - min(twins) >= 5, finals  # the comparisons show differences
    assert finals["cifar100_rrelu_stage2"] > finals["cifar100_rrelu"]


def test_changing_one_figure_reruns_only_that_figure(demo):
    def retitle(config):
        config["figures"]["throughput"]["title"] = "Throughput, renamed"

    set_demo_config(demo, retitle)
    other = run_snakemake(demo, *DEMO_RUN, "--dry-run", "results/demo/figures/cifar10_sgd_vs_adadelta.png")
    assert "Nothing to be done" in other.stdout + other.stderr
    changed = run_snakemake(demo, *DEMO_RUN, "--dry-run", "results/demo/figures/throughput.png")
    assert scheduled_rules(changed.stdout) == {"plot_figure": 1}
    (demo / "results" / "demo" / "figures" / "cifar10_sgd_vs_adadelta.png").unlink()
    rebuilt = run_snakemake(demo, *DEMO_RUN, "results/demo/figures/cifar10_sgd_vs_adadelta.png")
    assert rebuilt.returncode == 0 and scheduled_rules(rebuilt.stdout + rebuilt.stderr) == {"plot_figure": 1}


def test_an_upgrade_retrains_only_what_changed_a_runs_settings(demo, tmp_path):
    # the demo's results beside a copy of the workflow, as after a `git pull`
    checkout, workdir = tmp_path / "checkout", tmp_path / "work"
    for folder in ("workflow", "scripts", "envs"):
        shutil.copytree(REPO / folder, checkout / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("results", ".snakemake", "config"):
        shutil.copytree(demo / folder, workdir / folder, symlinks=True)
    (workdir / "config" / "demo.yaml").write_text((REPO / "config" / "demo.yaml").read_text())

    def dry_run():
        command = [str(BIN / "snakemake"), "--snakefile", str(checkout / "workflow" / "Snakefile")]
        command += ["--directory", str(workdir), "--cores", "2", *DEMO_RUN, "--dry-run", "all"]
        result = subprocess.run(
            command, capture_output=True, text=True, env=snakemake_environment(workdir), cwd=workdir
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    # the scripts rewritten (a checkout gives them new times), one edited, and a key added with a
    # default that leaves training as it was
    (checkout / "scripts" / "train.py").touch()
    with open(checkout / "scripts" / "plot_figure.py", "a") as script:
        script.write("# an edit\n")
    schema_path = checkout / "workflow" / "schemas" / "config.schema.yaml"
    schema_file = yaml.safe_load(schema_path.read_text())
    schema_file["$defs"]["experiment"]["properties"]["new_option"] = {
        "type": "integer", "default": 0, "neutral_default": True, "description": "added by an upgrade",
    }  # fmt: skip
    schema_path.write_text(yaml.safe_dump(schema_file, sort_keys=False))
    assert "Nothing to be done" in dry_run()

    # a changed value retrains that experiment's runs and nothing else
    config_path = workdir / "config" / "demo.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["experiments"]["cifar10_adadelta"]["optimizer_params"]["rho"] = 0.8
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    planned = dry_run()
    assert scheduled_rules(planned)["train"] == 3
    retrained = set(re.findall(r"wildcards: run=([^,\s]+)", planned))
    assert retrained == {f"cifar10_adadelta/seed{seed}" for seed in (0, 1, 2)}, planned[-3000:]


def test_a_config_file_on_the_command_line_replaces_the_default_config(tmp_path):
    # as --replace-workflow-config would, but also in the jobs Snakemake submits to a cluster, which
    # get --configfiles and not that flag (the Slurm test's demo found config.yaml's gpu_ids there)
    demo_workdir(tmp_path)
    result = run_snakemake(tmp_path, "--configfile", "config/demo.yaml", "--dry-run", "all")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cifar10_scratch/seed0" in result.stdout and "resnext101" not in result.stdout
    both = run_snakemake(
        tmp_path, "--configfile", "config/config.yaml", "config/demo.yaml", "--dry-run", "all"
    )
    assert "cifar10_scratch/seed0" in both.stdout and "cifar10_resnext101_scratch" in both.stdout


def test_the_real_data_cpu_config_plans_3_seeds_of_each_twin(tmp_path):
    demo_workdir(tmp_path)
    archive = tmp_path / "results" / "benchmark" / "cifar-10-python.tar.gz"  # make builds it there
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"")  # a dry run reads nothing
    real = ("--configfile", "config/cpu-real.yaml", "--replace-workflow-config")
    result = run_snakemake(tmp_path, *real, "--dry-run", "all", "report")
    assert result.returncode == 0, result.stderr[-3000:]
    names = (
        "cifar10_quick",
        "cifar10_scratch",
        "cifar10_scratch_steplr",
        "cifar10_scratch_stage2",
        "cifar10_adadelta",
    )
    assert scheduled_rules(result.stdout)["train"] == len(names) * 3
    for name in names:
        for seed in range(3):
            assert f"results/cpu-real/experiments/{name}/seed{seed}/metrics.csv" in result.stdout
    assert "results/cpu-real/cifar10/whitening_2x2.npy" in result.stdout
    assert scheduled_rules(result.stdout)["claims_table"] == 1
    # no experiment trains on CIFAR-100: its default (official, online) archive is not fetched
    assert "cifar100" not in result.stdout


def test_the_synthetic_archive_rule_needs_its_config(tmp_path):
    result = run_snakemake(tmp_path, "results/synthetic/cifar10.tar.gz", config={})
    assert result.returncode != 0
    assert "cifar10: no synthetic_archives.cifar10 entry in the config" in result.stderr


def test_dry_run_of_everything_plans_every_stage(tmp_path):
    result = run_snakemake(tmp_path, "--dry-run", config={})
    assert result.returncode == 0, result.stderr
    assert scheduled_rules(result.stdout) == {
        "all": 1,
        "download_archive": 2,
        "unpack_arrays": 2,
        "export_images": 4,
        "pack_records": 4,
        "mean_image": 4,
        "plot_samples": 2,
    }  # no experiments or figures configured: the data chain only


@pytest.mark.parametrize(
    "command",
    [
        ["snakemake", "--lint"],
        ["snakefmt", "--check", "workflow"],
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
    ],
)
def test_workflow_style_checks_pass(command):
    result = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_rule_script_runs_alone_with_the_jobs_inputs_and_outputs(tmp_path):
    """cifar_repro.standalone, the debugging route: the mean_image job's script on arrays made here."""
    path = tmp_path / "cifar-10-python.tar.gz"
    md5 = synthetic.write_archive(path, synthetic.archive_members("cifar10", 2, 1, seed=0, noise=30.0))
    train = archive.read_archive(path, "cifar10")["train"]
    archive.save_arrays(train, tmp_path / "results" / "cifar10" / "arrays" / "train.npz")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(
        yaml.safe_dump({"datasets": {"cifar10": {"url": str(path), "md5": md5}}})
    )
    target = "results/cifar10/mean_24x20.bin"
    result = subprocess.run(
        [str(BIN / "python"), "-m", "cifar_repro.standalone", target],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "scripts"), "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(
        mx.nd.load(str(tmp_path / target))["mean_img"].asnumpy(), mean.mean_image(train["data"], 24, 20)
    )
    assert (
        "mean image (3, 24, 20)"
        in (tmp_path / "results" / "logs" / "mean_image" / "cifar10" / "24x20.log").read_text()
    )


def test_the_slurm_profile_without_sbatch_on_path_stops_at_once(tmp_path):
    """A clear error before anything is submitted, not one failed submission per job."""
    tools = tmp_path / "bin"  # the machine's commands, less Slurm's
    tools.mkdir()
    for command in Path("/usr/bin").iterdir():
        if command.name not in {
            "sbatch",
            "srun",
            "squeue",
            "sinfo",
            "sacct",
            "scancel",
            "scontrol",
            "salloc",
        }:
            (tools / command.name).symlink_to(command)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("{}\n")  # the official archives
    profile = REPO / "workflow" / "profiles" / "slurm"
    result = subprocess.run(
        [str(BIN / "snakemake"), "--snakefile", str(REPO / "workflow" / "Snakefile"),
         "--workflow-profile", str(profile), "results/cifar10/arrays/train.npz"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": f"{BIN}:{tools}", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode != 0
    assert (
        "the slurm executor (workflow/profiles/slurm) needs Slurm's sbatch, which is not on PATH"
        in result.stderr
    )
    assert not (tmp_path / "results").exists()
