"""Run one rule's script outside a workflow run, for debugging: the job that makes TARGET is
resolved by Snakemake (inputs, outputs, params, log, threads, resources), and its script runs in
this process with that `snakemake` object, so a debugger or profiler can be attached:

    PYTHONPATH=scripts .venv/bin/python -m cifar_repro.standalone TARGET \
        [--configfile config/demo.yaml --replace-workflow-config] [--pdb]

TARGET's inputs must exist (make them with snakemake first). Nothing else is run.
"""

import argparse
import os
import pdb
import runpy
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.dag import DAG
from snakemake.iocontainers import Snakemake
from snakemake.jobs import Job
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

REPOSITORY = Path(__file__).resolve().parents[2]


def script_job(target: str, configfiles: list[Path], replace_workflow_config: bool) -> tuple[Path, Snakemake]:
    """The script of the rule that makes `target` in the working directory, and the `snakemake`
    object Snakemake would hand it."""
    config = ConfigSettings(configfiles=configfiles, replace_workflow_config=replace_workflow_config)
    with SnakemakeApi(OutputSettings(quiet=True)) as api:
        workflow_api = api.workflow(
            ResourceSettings(), config, snakefile=REPOSITORY / "workflow" / "Snakefile", workdir=Path.cwd()
        )
        workflow_api.dag(DAGSettings(targets={target}))
        workflow = workflow_api._workflow  # noqa: SLF001 -- the public API stops at running whole workflows
        producers = [rule for rule in workflow.rules if rule.is_producer(target) and rule.script]
        if not producers:
            raise SystemExit(f"{target}: no rule with a script makes this file")
        rule = producers[0]
        dag = DAG(workflow, rules=workflow.rules, targetfiles={target})
        job = Job(rule, dag, wildcards_dict=rule.get_wildcards(target), targetfile=target)
        snakemake = Snakemake(
            job.input, job.output, job.params, job.wildcards, job.threads, job.resources, job.log,
            workflow.config, rule.name, None, str(REPOSITORY / "scripts"),
        )  # fmt: skip
        return Path(rule.basedir.get_path_or_uri(secret_free=True)) / rule.script, snakemake


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", help="a file a rule makes, relative to the working directory")
    parser.add_argument("--configfile", type=Path, action="append", default=[])
    parser.add_argument("--replace-workflow-config", action="store_true")
    parser.add_argument("--pdb", action="store_true", help="stop in the debugger on an exception")
    args = parser.parse_args()
    script, snakemake = script_job(args.target, args.configfile, args.replace_workflow_config)
    os.environ.setdefault("OMP_NUM_THREADS", str(snakemake.threads))  # as Snakemake sets it for a job
    print(f"running {script} for {args.target} (rule {snakemake.rule})")
    try:
        runpy.run_path(str(script), init_globals={"snakemake": snakemake}, run_name="__main__")
    except BaseException:
        if not args.pdb:
            raise
        pdb.post_mortem()


if __name__ == "__main__":
    main()
