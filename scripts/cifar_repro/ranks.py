"""What a worker of a distributed job needs inside training: who it is, where it logs, and its join
of the job's kvstore (the launcher, launcher.py, reads the rank files to name a failed worker)."""

import logging
import os
import socket
from pathlib import Path

from .logs import append_to

log = logging.getLogger(__name__)

# A process's index among those its launcher started: local (workers first), srun, mpirun (Open MPI,
# MPICH). The ssh launcher numbers nothing.
TASK_VARIABLES = ("DMLC_TASK_ID", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK")


def launcher_task(environ=os.environ) -> str | None:
    return next((environ[name] for name in TASK_VARIABLES if name in environ), None)


def rank_file(distributed_dir: str | Path, task: str) -> Path:
    """Where the worker that is the launcher's task `task` records its kvstore rank."""
    return Path(distributed_dir) / f"task-{task}"


def recorded_rank(distributed_dir: str | Path, task: str) -> str | None:
    path = rank_file(distributed_dir, task)
    return path.read_text().strip() if path.exists() else None


def worker_log(distributed_dir: str | Path, rank: int) -> Path:
    """The log of a worker other than rank 0 (rank 0 logs to the rule's log, as one process would)."""
    return Path(distributed_dir) / f"worker-{rank}.log"


def join_kvstore(kind: str, job_log: str, distributed_dir: str):
    """Join the job's kvstore (blocks until every process has registered) and log as its rank.

    Except with dist_async, the workers apply the updates themselves (MXNET_UPDATE_ON_KVSTORE=0):
    the servers only sum the gradients, and the optimizer's state stays in each worker, identical
    in all of them, so a checkpoint holds it and a resumed run restores it."""
    import mxnet as mx

    if kind != "dist_async":
        os.environ["MXNET_UPDATE_ON_KVSTORE"] = "0"
    kvstore = mx.kv.create(kind)
    task = launcher_task()
    if task is not None:  # for the failure line, which knows the launcher's task
        rank_file(distributed_dir, task).write_text(f"{kvstore.rank}\n")
    append_to(job_log if kvstore.rank == 0 else worker_log(distributed_dir, kvstore.rank))
    step = (
        f", Slurm step {os.environ['SLURM_JOB_ID']}.{os.environ['SLURM_STEP_ID']}"
        if "SLURM_STEP_ID" in os.environ
        else ""
    )
    where = f" (launcher task {task})" if task is not None else ""
    log.info("worker rank %d of %d%s on %s%s, kvstore %s", kvstore.rank, kvstore.num_workers, where,
             socket.gethostname(), step, kind)  # fmt: skip
    return kvstore
