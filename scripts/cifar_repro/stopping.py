"""When a training job stops before its last epoch, and how: at a checkpoint, so the next attempt
resumes exactly.

- Slurm's time limit. A job inside Slurm reads its end time from the scheduler once, at its start;
  after each epoch's checkpoint it stops when the next epoch might not fit: when less than
  EPOCH_MARGIN x its slowest epoch so far, plus EXIT_SECONDS, is left. The job fails with one line
  saying it stopped to resume, and Snakemake's retry (workflow/profiles/slurm) resumes it in a new job.
- SIGTERM (Slurm's time limit reached, scancel, preemption): the epoch in progress is dropped at its
  next batch and the job ends within seconds, well inside Slurm's KillWait; its last checkpoint is
  whole, because checkpoints are written under temporary names and renamed.
- The run's lease taken over by another trainer (lease.py): it stops at its next batch.
"""

import contextlib
import logging
import signal
import threading
import time

from . import slurm_job
from .errors import RunHeld, StoppedToResume, TrainingError

log = logging.getLogger(__name__)

EPOCH_MARGIN = 1.5  # the next epoch may be slower than the slowest so far (a busy node, I/O)
EXIT_SECONDS = 10.0  # to leave the job: the process, Snakemake's bookkeeping


class StopConditions:
    def __init__(self, deadline: float | None = None, lease_lost: threading.Event | None = None):
        self.deadline = deadline  # POSIX time the job is ended at, if it has a limit
        self.lease_lost = lease_lost
        self.signalled: str | None = None

    @classmethod
    def of_this_job(cls, lease_lost: threading.Event | None = None) -> "StopConditions":
        job_id = slurm_job.this_job()
        deadline = slurm_job.end_time(job_id) if job_id else None
        if deadline is not None:
            log.info(
                "Slurm job %s ends at %s: training stops at the last checkpoint before then",
                job_id, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(deadline)),
            )  # fmt: skip
        return cls(deadline, lease_lost)

    @contextlib.contextmanager
    def on_sigterm(self):
        """Note SIGTERM instead of dying of it, while inside."""

        def note(number, frame) -> None:
            self.signalled = signal.Signals(number).name
            log.warning("%s received: stopping at the next batch", self.signalled)

        previous = signal.signal(signal.SIGTERM, note)
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)

    def seconds_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    def check_batch(self, epoch: int) -> None:
        """Between two batches of `epoch` (counted from 0)."""
        if self.signalled:
            raise StoppedToResume(
                f"{self.signalled} during epoch {epoch + 1}: that epoch is dropped, a retry resumes "
                f"after epoch {epoch}"
            )
        if self.lease_lost is not None and self.lease_lost.is_set():
            raise RunHeld("another trainer took this run's lease over (see the log above): stopping")

    def check_start(self, done: int, slowest_epoch: float | None) -> None:
        """Before the first epoch of an attempt that resumes after `done`, with the slowest epoch of the
        earlier attempts: refuse a job that has no room for even one epoch (it would never progress)."""
        left = self.seconds_left()
        if left is None or slowest_epoch is None or left >= slowest_epoch + EXIT_SECONDS:
            return
        raise TrainingError(
            f"an epoch took {slowest_epoch:.0f} s, but this Slurm job has {left:.0f} s left: no attempt "
            f"can get past epoch {done}; ask for more time per job (max_job_minutes, at most the "
            "partition's MaxTime)"
        )

    def check_epoch_end(self, done: int, total: int, slowest_epoch: float) -> None:
        """After the checkpoint of epoch `done` of `total`, the slowest epoch (with its validation and
        checkpoint) of this attempt having taken `slowest_epoch` seconds."""
        if done >= total:
            return
        if self.signalled:
            raise StoppedToResume(f"{self.signalled} during epoch {done}: a retry resumes after epoch {done}")
        left = self.seconds_left()
        if left is not None and left < EPOCH_MARGIN * slowest_epoch + EXIT_SECONDS:
            raise StoppedToResume(
                f"stopped after epoch {done} of {total}: the Slurm job's time limit is {max(left, 0):.0f} s "
                f"away and an epoch takes up to {slowest_epoch:.0f} s; a retry resumes after epoch {done}"
            )
