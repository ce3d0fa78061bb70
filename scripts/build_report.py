"""Build Snakemake's self-contained HTML report of the given targets (the `report` rule's entry).

It runs `snakemake --report` with the running workflow's resolved config, and without taking the
working directory's lock, which the Snakemake running this rule holds.
"""

import argparse
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

from cli import TrainingError, run

log = logging.getLogger("cifar-repro")


def report_command(python: str, snakefile: str, config_file: str, output: str, targets: list[str]) -> list[str]:
    return [python, "-m", "snakemake", "--snakefile", snakefile, "--nolock", "--cores", "1",
            "--configfile", config_file, "--replace-workflow-config", "--report", output, *targets]


def _main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as work:
        config_file = Path(work) / "config.json"
        config_file.write_text(args.config_json)
        json.loads(args.config_json)  # fail here, not inside snakemake, on a malformed config
        command = report_command(sys.executable, args.snakefile, str(config_file), args.output, args.targets)
        log.info("running %s", " ".join(command))
        result = subprocess.run(command, capture_output=True, text=True)
    for line in (result.stdout + result.stderr).splitlines():
        log.info("snakemake: %s", line)
    if result.returncode != 0:
        raise TrainingError(f"{args.output}: snakemake --report failed with exit code {result.returncode}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--snakefile", required=True)
    parser.add_argument("--config-json", required=True, help="the workflow's resolved config")
    parser.add_argument("--output", required=True, help="report .html")
    parser.add_argument("targets", nargs="+", help="the files the report is about")
    return run(_main, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
