"""How a rule's script runs: its log, and one clear last line when it fails.

Every rule runs its script through Snakemake's `script:` directive, which gives the script a global
`snakemake` (input, output, params, wildcards, threads, resources, log). A script's body is

    from cifar_repro.rule import rule_log

    with rule_log(snakemake) as log:
        from cifar_repro.x import y  # inside: a failed import (e.g. MXNet missing a CUDA library)
        ...                          # is logged like any other failure

Progress goes to the rule's log file and to stderr. On any exception the traceback goes to the log
file, then one line says what went wrong (a `PipelineError` names the input; anything else is
reported with the rule's inputs), and the script exits 1, so Snakemake marks the job failed and
removes its outputs.
"""

import contextlib
import logging
import sys
from collections.abc import Iterator

from .errors import PipelineError, StoppedToResume
from .logs import setup_logging


def failure_line(rule: str, error: Exception, inputs: list[str]) -> str:
    """The one line that ends a failed rule's log."""
    if isinstance(error, StoppedToResume):
        return f"{rule} stopped to resume: {error}"
    if isinstance(error, PipelineError):
        return f"{rule} failed: {error}"
    given = ", ".join(inputs) or "no inputs"
    return f"{rule} failed on {given}: unexpected {type(error).__name__}: {error}"


@contextlib.contextmanager
def rule_log(snakemake, open_log: bool = True) -> Iterator[logging.Logger]:
    """Log to the rule's log (with `open_log` False, to the terminal until the script opens the log
    itself); on an exception, log its traceback and one line, then exit 1."""
    log = setup_logging(snakemake.log[0] if snakemake.log and open_log else None)
    try:
        yield log
    except Exception as error:  # every failure ends the same way, whatever raised it
        if not isinstance(error, StoppedToResume):  # a planned stop, not a failure to debug
            log.debug("traceback:", exc_info=True)  # the log file only: the terminal gets one line
        log.error("%s", failure_line(snakemake.rule, error, [str(path) for path in snakemake.input]))
        sys.exit(1)
