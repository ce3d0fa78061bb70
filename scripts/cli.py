"""What every rule entry point shares: logging to the rule's log and to stderr, and clear failures.

A rule's script fails by raising a `PipelineError` (an `InputError` for bad input, naming the input
and what is wrong; a `TrainingError` when training itself fails); `run` prints it as one line (no
traceback) and exits 1, so Snakemake marks the job failed and deletes its declared outputs.
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence


class PipelineError(Exception):
    """A failure explained by its message; no traceback needed."""


class InputError(PipelineError):
    """An input (archive, pickle, config value, file) is missing or malformed."""


class TrainingError(PipelineError):
    """Training cannot go on (e.g. the loss became NaN)."""


def setup_logging(log_path: str | None) -> logging.Logger:
    """Log to stderr and, when given, to the rule's log file (overwritten on each run)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        handlers=handlers,
        force=True,
    )
    return logging.getLogger("cifar-repro")


def run(main: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser,
        argv: Sequence[str] | None = None) -> int:
    """Parse arguments (every entry has --log), run `main`, and turn a PipelineError into exit 1."""
    parser.add_argument("--log", help="log file (the rule's log:)")
    args = parser.parse_args(argv)
    log = setup_logging(args.log)
    try:
        main(args)
    except PipelineError as error:
        log.error("%s", error)
        return 1
    return 0
