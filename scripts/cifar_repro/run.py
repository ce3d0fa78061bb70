"""The one entry point of a training job: in this process, or as a distributed job whose workers
MXNet's tracker starts (launcher.py). Whichever, the job first takes the run's lease (one writer per
run), removes what dead writers left half-written, and starts the rule's log with the earlier
attempts' epochs; each attempt's own log is kept beside the checkpoints."""

import logging
from pathlib import Path

from .atomic import hard_link, remove_partials
from .job import TrainingJob
from .launcher import launch
from .lease import RunLease
from .logs import append_to, start_log
from .stopping import StopConditions
from .training import checkpoints_of, train

log = logging.getLogger(__name__)


def attempt_log(checkpoint_dir: str | Path) -> Path:
    """The next attempt's own log: checkpoints/<run>/attempts/01.log, 02.log, ..."""
    folder = Path(checkpoint_dir) / "attempts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{len(list(folder.glob('*.log'))) + 1:02d}.log"


def open_logs(job: TrainingJob) -> Path:
    """The rule's log, holding every epoch once: as it was at the checkpoint this attempt resumes
    from, then this attempt; and this attempt's own log. Returns the run's log (Checkpoints.run_log),
    of which the rule's log is a hard link."""
    checkpoints = checkpoints_of(job)
    begin, _ = checkpoints.latest()
    snapshot = checkpoints.log_path(begin)
    start_log(checkpoints.run_log, snapshot.read_text() if begin and snapshot.exists() else "")
    hard_link(checkpoints.run_log, job.log)
    own = attempt_log(job.checkpoint_dir)
    append_to(own)
    log.info("%s: attempt %s, after epoch %d; its own log: %s", job.run, own.stem, begin, own)
    return checkpoints.run_log


def run_training(job: TrainingJob, threads: int) -> None:
    """Train `job` on `threads` cores: one process, or a distributed launch for an experiment with
    `distributed` (its local workers share the cores)."""
    with RunLease(job.checkpoint_dir, job.run) as lease:
        run_log = open_logs(job)
        for folder in (job.checkpoint_dir, Path(job.outputs.metrics).parent):
            for partial in remove_partials(folder):
                log.info("removed %s, left half-written by an earlier writer", partial)
        if job.distributed:
            launch(job, threads)
        else:
            stop = StopConditions.of_this_job(lease.lost)
            with stop.on_sigterm():
                train(job, stop)
        hard_link(run_log, job.log)  # again, if a refused second Snakemake of the run deleted it
