"""The kinds of failure a rule explains in one line: every script raises one of these.

A rule's log ends with that line (the traceback is in the log above it); see `rule.py`.
"""


class PipelineError(Exception):
    """A failure explained by its message."""


class InputError(PipelineError):
    """An input (archive, pickle, config value, file) is missing or malformed."""


class TrainingError(PipelineError):
    """Training cannot go on (e.g. the loss became NaN)."""


class ToolError(PipelineError):
    """A tool the rule runs (im2rec.py, OpenCV, snakemake --report) failed."""


class StoppedToResume(PipelineError):
    """Training stopped cleanly at a checkpoint (a time limit ahead, SIGTERM): a retry resumes it."""


class RunHeld(PipelineError):
    """Another training job holds the run's lease: a second writer would corrupt its checkpoints."""
