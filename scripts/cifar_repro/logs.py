"""How the package logs: every module's logger is `logging.getLogger(__name__)`, a child of the
package's logger, and every log file of a run has one line format."""

import logging
import sys
from pathlib import Path

PACKAGE_LOGGER = logging.getLogger(__package__)
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def append_to(log_path: str | Path) -> None:
    """Send every record to `log_path` too (appended: the workers of a distributed job share the
    rule's log)."""
    handler = logging.FileHandler(log_path, mode="a")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(handler)


def start_log(log_path: str | Path, history: str = "") -> None:
    """Log everything to `log_path` too, which starts with `history` (what earlier attempts logged)."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    Path(log_path).write_text(history)
    append_to(log_path)


def setup_logging(log_path: str | Path | None) -> logging.Logger:
    """Log INFO to stderr and, when given, everything to `log_path` (emptied first); return the
    package's logger."""
    terminal = logging.StreamHandler(sys.stderr)
    terminal.setLevel(logging.INFO)
    logging.basicConfig(level=logging.DEBUG, format=LOG_FORMAT, handlers=[terminal], force=True)
    if log_path:
        start_log(log_path)
    return PACKAGE_LOGGER
