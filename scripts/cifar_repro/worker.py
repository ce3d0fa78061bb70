"""A process of a distributed job: `python -m cifar_repro.worker JOB.json`, the one command MXNet's
tracker runs for the scheduler, every server and every worker (see launcher.py). In the scheduler
and the servers, `import mxnet` serves and exits; a worker trains the job (training.train)."""

import ctypes
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from .logs import setup_logging

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def end_with_parent() -> None:
    """Have Linux SIGKILL this process when the one that started it ends: a launcher stopped by the
    watch, or an ssh session whose client it killed. ps-lite would wait for its peers forever."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    if os.getppid() != parent:  # it ended before the request
        os.kill(os.getpid(), signal.SIGKILL)


def run_worker(job_path: str) -> None:
    end_with_parent()
    import mxnet  # noqa: F401 -- for DMLC_ROLE scheduler/server this serves, then exits

    from .job import TrainingJob
    from .training import train

    setup_logging(None)
    try:
        train(TrainingJob.from_json(Path(job_path).read_text()))
    except Exception:
        log.exception("%s on %s failed", os.environ.get("DMLC_ROLE", "worker"), socket.gethostname())
        sys.exit(1)


if __name__ == "__main__":
    run_worker(sys.argv[1])
