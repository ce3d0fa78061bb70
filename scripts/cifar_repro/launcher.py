"""The launcher of a distributed job: training in several processes that synchronise through
MXNet's parameter servers (kvstore dist_*), started by MXNet's own tracker, the `dmlc_tracker`
package of the mxnet wheel, as its tools/launch.py uses it. Nothing here serves parameters or
schedules nodes.

The rule's process is the launcher. It writes the training job to a JSON file and hands
dmlc_tracker one command, `python -m cifar_repro.worker JOB.json` (worker.py): the tracker runs it
here as the scheduler and through the chosen launcher (local, ssh, mpi, slurm) as every server and
worker.

ps-lite waits forever when a peer dies, and the tracker's launchers only raise in one of their
threads. So the launcher watches: when any process it started exits non-zero or is killed, it stops
the others and fails with one line naming the role, rank and exit status. Concurrent launches on
one machine take turns until their scheduler listens, because the tracker picks the first port of
9091-9999 that binds at the moment it looks, before the scheduler takes it.

The wheel's slurm launcher no longer runs on current Slurm (srun dropped its `--share` option), so
`srun_submit` hands the tracker the same two srun steps with today's options.
"""

import ast
import contextlib
import fcntl
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from .atomic import atomic_path
from .errors import InputError, TrainingError
from .job import TrainingJob
from .ranks import rank_file, recorded_rank

log = logging.getLogger(__name__)

SCRIPTS_DIR = Path(__file__).resolve().parents[1]
WORKER_MODULE = f"{__package__}.worker"  # started by name: the launcher never imports the training loop
GONE = (psutil.NoSuchProcess, psutil.AccessDenied)  # a process that ended while we looked
STOP_GRACE_SECONDS = 10  # SIGTERM, then SIGKILL: every process is gone well within 30 s
SCHEDULER_START_SECONDS = 60
# the tracker's threads raise these when a process they started fails
LOCAL_FAILURE = re.compile(r"Get nonzero return code=(-?\d+) on \[.*?\] (\{.*\})", re.DOTALL)
# dmlc_tracker/ssh.py's command: ssh -o StrictHostKeyChecking=no HOST -p PORT '...'
SSH_HOST = re.compile(r"ssh -o StrictHostKeyChecking=no (\S+) -p (\d+)")
# srun's words for a task that failed: "srun: error: node1: task 1: Killed"
SRUN_TASK_FAILURE = re.compile(r"srun: error: \S+: tasks? ([\d,-]+): (.+)")


class StepFailed(Exception):
    """An srun step of the job (all its workers, or all its servers) ended with a failed task."""

    def __init__(self, role: str, returncode: int, srun_errors: list[str]):
        super().__init__(f"the {role}s' srun step exited with status {returncode}: {srun_errors}")
        self.role, self.returncode, self.srun_errors = role, returncode, srun_errors


def patch_tracker_for_python_3_9() -> None:
    """mxnet 1.9.1's dmlc_tracker calls Thread.isAlive, which Python 3.9 removed; it is is_alive."""
    if not hasattr(threading.Thread, "isAlive"):
        threading.Thread.isAlive = threading.Thread.is_alive


def worker_command(job_path: Path) -> str:
    """The one command the tracker runs for the scheduler, every server and every worker. The
    package is put on PYTHONPATH in the command itself, as ssh and srun pass on few variables."""
    return " ".join(
        shlex.quote(word)
        for word in ["env", f"PYTHONPATH={SCRIPTS_DIR}", sys.executable, "-m", WORKER_MODULE, str(job_path)]
    )


def tracker_options(distributed: dict, command: str) -> list[str]:
    """dmlc_tracker's command line (dmlc_tracker/opts.py) for the experiment's `distributed`."""
    options = [
        "--cluster", distributed["launcher"],
        "--num-workers", str(distributed["workers"]),
        "--num-servers", str(distributed["servers"]),
    ]  # fmt: skip
    if distributed["launcher"] == "local":  # every connection on loopback
        options += ["--host-ip", "127.0.0.1"]
    if "hosts" in distributed:
        options += ["--host-file", distributed["hosts"]]
    if distributed["launcher"] == "slurm":
        nodes = distributed.get("nodes", distributed["workers"])
        options += ["--slurm-worker-nodes", str(min(nodes, distributed["workers"]))]
        options += ["--slurm-server-nodes", str(min(nodes, distributed["servers"]))]
    return [*options, command]


def check_launcher(distributed: dict, environ=os.environ) -> None:
    if distributed["launcher"] == "slurm" and "SLURM_JOB_ID" not in environ:
        raise InputError(
            "distributed.launcher slurm starts its servers and workers with srun inside a Slurm "
            "allocation, and this job runs outside one: run it with the slurm profile "
            "(--workflow-profile workflow/profiles/slurm), or choose launcher local, ssh or mpi"
        )


def exit_status(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    if code > 128 and code - 128 in signal.valid_signals():  # a shell reports a killed child so
        return f"was killed by {signal.Signals(code - 128).name}"
    return f"exited with status {code}"


def describe_failure(error: BaseException, distributed_dir: Path) -> str:
    """One line on which process of the job failed and how, from what a tracker thread raised."""
    text = str(error)
    local = LOCAL_FAILURE.search(text)
    if local:  # dmlc_tracker/local.py: the return code and the process's environment
        environment = ast.literal_eval(local.group(2))
        role, task = environment.get("DMLC_ROLE", "process"), environment.get("DMLC_TASK_ID", "?")
        status = exit_status(int(local.group(1)))
        rank = recorded_rank(distributed_dir, task) if role == "worker" else None
        named = f"{role} rank {rank} (launcher task {task})" if rank else f"{role} (launcher task {task})"
        return f"{named} {status}"
    if isinstance(error, StepFailed):
        for line in error.srun_errors:
            task_failure = SRUN_TASK_FAILURE.search(line)
            if task_failure:
                task, status = task_failure.groups()
                rank = recorded_rank(distributed_dir, task) if error.role == "worker" else None
                named = f"{error.role} rank {rank}" if rank else error.role
                return f"{named} (srun task {task}): {status.strip()}"
        return f"the {error.role}s' srun step {exit_status(error.returncode)}"
    if isinstance(error, subprocess.CalledProcessError):  # ssh, mpi, or the scheduler
        command = error.cmd if isinstance(error.cmd, str) else " ".join(error.cmd)
        role = re.search(r"DMLC_ROLE[= ](\w+)", command)  # Open MPI's -x K=V, MPICH's -env K V
        status = exit_status(error.returncode)
        ssh = SSH_HOST.match(command)
        if ssh and role:  # dmlc_tracker/ssh.py: one ssh per process
            if error.returncode == 255:  # ssh's own: the connection, or the remote process, ended
                status = "was killed or lost its connection (ssh exit status 255)"
            return f"{role.group(1)} on {ssh.group(1)} (ssh) {status}"
        if role:  # dmlc_tracker/mpi.py: one mpirun per role
            return f"the {role.group(1)}s' mpirun {status} (command: {command[-200:]})"
        return f"the scheduler {status} (command: {command[-200:]})"
    return f"the launcher failed: {type(error).__name__}: {text[:300]}"


class Watch:
    """Collects the failures the tracker's threads raise, and stops every process this one started."""

    def __init__(self, distributed_dir: Path):
        self.distributed_dir = distributed_dir
        self.failures: list[str] = []
        self.failed = threading.Event()

    def excepthook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        self.failures.append(describe_failure(args.exc_value, self.distributed_dir))
        self.failed.set()

    @staticmethod
    def stop_all() -> None:
        """SIGTERM to every descendant, SIGKILL to those still there after a grace period."""
        processes = psutil.Process().children(recursive=True)
        for process in processes:
            with contextlib.suppress(*GONE):
                process.terminate()
        _, alive = psutil.wait_procs(processes, timeout=STOP_GRACE_SECONDS)
        for process in alive:
            with contextlib.suppress(*GONE):
                process.kill()
        psutil.wait_procs(alive, timeout=STOP_GRACE_SECONDS)


def scheduler_port() -> int | None:
    """The port a scheduler this process started listens on, once it does."""
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(*GONE):
            if process.environ().get("DMLC_ROLE") == "scheduler":
                for connection in process.net_connections("tcp"):
                    if connection.status == psutil.CONN_LISTEN:
                        return connection.laddr.port
    return None


def run_step(role: str, command: list[str], environment: dict) -> None:
    """One srun step; its error lines go on to our stderr (the rule's log) and into the failure."""
    step = subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, text=True)
    errors = []
    for line in step.stderr:
        sys.stderr.write(line)
        if line.startswith("srun: error:"):
            errors.append(line.strip())
    if step.wait() != 0:
        raise StepFailed(role, step.returncode, errors)


def srun_submit(arguments) -> None:
    """dmlc_tracker/slurm.py's launcher for the Slurm of today: one srun step for the workers and one
    for the servers, inside the job's allocation. `--overlap` lets the two steps run at once (else
    the servers' step waits for the workers', which wait for the servers), `--kill-on-bad-exit` ends
    a step as soon as one of its tasks fails (ps-lite would wait for it forever)."""
    from dmlc_tracker import tracker

    def start_steps(workers: int, servers: int, environment: dict) -> None:
        for role, tasks, nodes in (
            ("worker", workers, arguments.slurm_worker_nodes),
            ("server", servers, arguments.slurm_server_nodes),
        ):
            variables = {**os.environ, **{k: str(v) for k, v in environment.items()},
                         "DMLC_ROLE": role, "DMLC_JOB_CLUSTER": "slurm"}  # fmt: skip
            command = ["srun", "--overlap", "--kill-on-bad-exit=1", f"--nodes={nodes}", f"--ntasks={tasks}",
                       *shlex.split(" ".join(arguments.command))]  # fmt: skip
            threading.Thread(target=run_step, args=(role, command, variables), daemon=True).start()

    tracker.submit(arguments.num_workers, arguments.num_servers, fun_submit=start_steps,
                   hostIP=arguments.host_ip, pscmd=" ".join(arguments.command))  # fmt: skip


def launch(job: TrainingJob, threads: int) -> None:
    """Run the job through dmlc_tracker; return when every process has finished, or raise
    TrainingError naming the first one that failed (after stopping the rest). `threads`: the job's
    cores, which a local launch shares out between its workers."""
    distributed = job.distributed
    check_launcher(distributed)
    patch_tracker_for_python_3_9()
    from dmlc_tracker import local, mpi, opts, ssh  # the wheel's tracker, after the patch

    launchers = {"local": local.submit, "ssh": ssh.submit, "mpi": mpi.submit, "slurm": srun_submit}
    distributed_dir = Path(job.distributed_dir)
    job_path = distributed_dir / "job.json"
    with atomic_path(job_path) as partial:
        partial.write_text(job.to_json())
    for stale in distributed_dir.glob(rank_file(distributed_dir, "*").name):
        stale.unlink()
    arguments = opts.get_opts(tracker_options(distributed, worker_command(job_path)))
    watch = Watch(distributed_dir)
    threads_before = set(threading.enumerate())
    launch_lock = Path(job.granted.lock_dir) / "launch.lock"
    launch_lock.parent.mkdir(parents=True, exist_ok=True)
    with process_environment(distributed, threads), open(launch_lock, "w") as lock:
        threading.excepthook = watch.excepthook
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # until our scheduler listens (see the module's text)
            log.info(
                "dmlc_tracker --cluster %s: %d workers, %d servers, each running %s",
                distributed["launcher"], distributed["workers"], distributed["servers"], arguments.command[0],
            )  # fmt: skip
            tracker = threading.Thread(target=launchers[distributed["launcher"]], args=(arguments,))
            tracker.start()
            deadline = time.monotonic() + SCHEDULER_START_SECONDS
            while (port := scheduler_port()) is None and tracker.is_alive() and time.monotonic() < deadline:
                time.sleep(0.2)
            if port:
                log.info("the job's scheduler listens on port %d", port)
            fcntl.flock(lock, fcntl.LOCK_UN)
            while tracker.is_alive():
                if watch.failed.wait(0.5):
                    log.error("%s: stopping the other processes of the job", watch.failures[0])
                    watch.stop_all()
                    tracker.join()
            # The tracker leaves a thread per process, which logs when its process has gone: let
            # them end first, so that the failure is the log's last line.
            for thread in set(threading.enumerate()) - threads_before:
                thread.join(STOP_GRACE_SECONDS)
        finally:
            threading.excepthook = threading.__excepthook__
    if watch.failures:
        raise TrainingError(f"distributed training failed: {watch.failures[0]}")


@contextlib.contextmanager
def process_environment(distributed: dict, threads: int):
    """The environment of a local launch's processes, for the launch only (the tracker's launchers
    copy os.environ into each process they start)."""
    saved = dict(os.environ)
    if distributed["launcher"] == "local":
        os.environ["DMLC_NODE_HOST"] = "127.0.0.1"  # servers and workers announce loopback
        # The workers share the job's cores: by default each would run a thread per core of the
        # machine and together oversubscribe them (2 workers on 2 cores: 0.52x the samples/s of one
        # process, against 1.5x with a thread each).
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, threads // distributed["workers"])))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
