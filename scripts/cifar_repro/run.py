"""The one entry point of a training job: in this process, or as a distributed job whose workers
MXNet's tracker starts (launcher.py)."""

from .job import TrainingJob
from .launcher import launch
from .training import train


def run_training(job: TrainingJob, threads: int) -> None:
    """Train `job` on `threads` cores: one process, or a distributed launch for an experiment with
    `distributed` (its local workers share the cores)."""
    if job.distributed:
        launch(job, threads)
    else:
        train(job)
