"""What a training job asks Slurm about itself and about other jobs, through squeue (which needs no
accounting database): its end time, and whether a job still runs."""

import datetime
import logging
import os
import shutil
import subprocess

log = logging.getLogger(__name__)

# States in which a job's processes may still be running (squeue %T); every other state, or a job
# squeue no longer lists, has none left. A requeued job is PENDING until it runs again: its earlier
# processes are gone.
ACTIVE_STATES = {
    "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED", "SIGNALING", "RESIZING", "STAGE_OUT",
}  # fmt: skip
SQUEUE_SECONDS = 20


def this_job() -> str | None:
    """The Slurm job id of this process, outside Slurm None."""
    return os.environ.get("SLURM_JOB_ID")


def restart_count() -> int:
    """How often Slurm has requeued this job (its batch script starts again under the same id)."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0"))


ENDED = "ENDED"  # the state of a job squeue no longer lists


def _squeue(job_id: str, field: str) -> str | None:
    """One field of a job as squeue prints it: ENDED when squeue no longer lists the job, None when
    squeue cannot be asked (not on a machine of the cluster)."""
    if shutil.which("squeue") is None:
        return None
    try:
        result = subprocess.run(
            ["squeue", "-h", "-j", job_id, "-o", field],
            capture_output=True,
            text=True,
            timeout=SQUEUE_SECONDS,
        )
    except subprocess.TimeoutExpired:
        log.warning("squeue did not answer within %d s about job %s", SQUEUE_SECONDS, job_id)
        return None
    if result.returncode == 0 and result.stdout.strip():
        return result.stdout.strip()
    # a job that ended and was purged: "slurm_load_jobs error: Invalid job id specified"
    return ENDED if "Invalid job id" in result.stderr or result.returncode == 0 else None


def job_state(job_id: str) -> str | None:
    """The job's state (RUNNING, PENDING, ... or ENDED); None when squeue cannot be asked."""
    return _squeue(job_id, "%T")


def end_time(job_id: str) -> float | None:
    """When Slurm ends the job (its time limit), as a POSIX time; None without a limit, or when
    squeue cannot be asked."""
    value = _squeue(job_id, "%e")
    if value is None or value in {ENDED, "N/A", "NONE", "Unknown"}:
        return None
    return datetime.datetime.fromisoformat(value).timestamp()  # squeue prints the local time
