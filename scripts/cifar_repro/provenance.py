"""What a run.json records about where a result came from: versions, code revision, host."""

import platform
import subprocess
from pathlib import Path

import mxnet as mx
import numpy as np

CODE_FOLDER = Path(__file__).resolve().parent  # inside the checkout the code runs from


def git_revision(folder: Path = CODE_FOLDER) -> str:
    """HEAD of the checkout the code runs from, with -dirty for uncommitted changes."""
    try:
        revision = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return revision + ("-dirty" if dirty else "")


def provenance() -> dict:
    return {
        "versions": {"python": platform.python_version(), "mxnet": mx.__version__, "numpy": np.__version__},
        "git_revision": git_revision(),
        "host": platform.node(),
    }
