"""Snakemake's self-contained HTML report of the given targets (the `report` rule).

It runs `snakemake --report` with the running workflow's resolved config and without taking the
working directory's lock, which the Snakemake running the rule holds. This is the one place the
workflow starts Snakemake from inside a job: a report can only be made by Snakemake itself.
"""

import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import ToolError

log = logging.getLogger(__name__)


def report_command(snakefile: str, config_file: str, output: str, targets: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", "--snakefile", snakefile, "--nolock", "--cores", "1",
        "--configfile", config_file, "--replace-workflow-config", "--report", output, *targets,
    ]  # fmt: skip


def build_report(snakefile: str, config: dict, output: str, targets: list[str]) -> None:
    with tempfile.TemporaryDirectory() as work:
        config_file = Path(work) / "config.json"
        config_file.write_text(json.dumps(config))
        command = report_command(snakefile, str(config_file), output, targets)
        log.info("running %s", " ".join(command))
        result = subprocess.run(command, capture_output=True, text=True)
    for line in (result.stdout + result.stderr).splitlines():
        log.info("snakemake: %s", line)
    if result.returncode != 0:
        raise ToolError(f"{output}: snakemake --report failed with exit code {result.returncode}")
