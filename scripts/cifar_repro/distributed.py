"""Training in several processes that synchronise through MXNet's parameter servers (kvstore dist_*),
started by MXNet's own tracker: the `dmlc_tracker` package of the mxnet wheel, as its
tools/launch.py uses it. Nothing here serves parameters or schedules nodes.

The rule's process is the launcher. It writes the job (the arguments of `training.train`) to a JSON
file and hands dmlc_tracker one command, `python -m cifar_repro.distributed JOB.json`: the tracker
runs it here as the scheduler and through the chosen launcher (local, ssh, mpi, slurm) as every
server and worker. In a server or the scheduler, `import mxnet` serves and exits; a worker trains.

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
import ctypes
import fcntl
import json
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from .atomic import atomic_path
from .errors import InputError, TrainingError

log = logging.getLogger("cifar-repro")

SCRIPTS_DIR = Path(__file__).resolve().parents[1]
GONE = (psutil.NoSuchProcess, psutil.AccessDenied)  # a process that ended while we looked
PR_SET_PDEATHSIG = 1  # linux/prctl.h
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


@dataclass(frozen=True)
class Worker:
    """Where a worker of the job logs and says who it is."""

    log_path: str  # the rule's log: rank 0 appends its progress there, as a single process would
    run_dir: str  # each worker's rank file (task-<launcher task>) and, beyond rank 0, its log


@dataclass(frozen=True)
class Job:
    train_arguments: dict  # of training.train, as JSON
    worker: Worker


def worker_command(job_path: Path) -> str:
    """The one command the tracker runs for the scheduler, every server and every worker. The
    package is put on PYTHONPATH in the command itself, as ssh and srun pass on few variables."""
    return " ".join(
        shlex.quote(word)
        for word in ["env", f"PYTHONPATH={SCRIPTS_DIR}", sys.executable, "-m", __name__, str(job_path)]
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


def recorded_rank(run_dir: Path, task: str) -> str | None:
    path = run_dir / f"task-{task}"
    return path.read_text().strip() if path.exists() else None


def describe_failure(error: BaseException, run_dir: Path) -> str:
    """One line on which process of the job failed and how, from what a tracker thread raised."""
    text = str(error)
    local = LOCAL_FAILURE.search(text)
    if local:  # dmlc_tracker/local.py: the return code and the process's environment
        environment = ast.literal_eval(local.group(2))
        role, task = environment.get("DMLC_ROLE", "process"), environment.get("DMLC_TASK_ID", "?")
        status = exit_status(int(local.group(1)))
        rank = recorded_rank(run_dir, task) if role == "worker" else None
        named = f"{role} rank {rank} (launcher task {task})" if rank else f"{role} (launcher task {task})"
        return f"{named} {status}"
    if isinstance(error, StepFailed):
        for line in error.srun_errors:
            task_failure = SRUN_TASK_FAILURE.search(line)
            if task_failure:
                task, status = task_failure.groups()
                rank = recorded_rank(run_dir, task) if error.role == "worker" else None
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

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.failures: list[str] = []
        self.failed = threading.Event()

    def excepthook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        self.failures.append(describe_failure(args.exc_value, self.run_dir))
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


def launch(job: Job, distributed: dict, job_path: Path, launch_lock: Path, threads: int) -> None:
    """Run the job through dmlc_tracker; return when every process has finished, or raise
    TrainingError naming the first one that failed (after stopping the rest). `threads`: the job's
    cores, which a local launch shares out between its workers."""
    check_launcher(distributed)
    patch_tracker_for_python_3_9()
    from dmlc_tracker import local, mpi, opts, ssh  # the wheel's tracker, after the patch

    launchers = {"local": local.submit, "ssh": ssh.submit, "mpi": mpi.submit, "slurm": srun_submit}
    with atomic_path(job_path) as partial:
        partial.write_text(json.dumps(asdict(job), indent=2))
    Path(job.worker.run_dir).mkdir(parents=True, exist_ok=True)
    for stale in Path(job.worker.run_dir).glob("task-*"):
        stale.unlink()
    arguments = opts.get_opts(tracker_options(distributed, worker_command(job_path)))
    watch = Watch(Path(job.worker.run_dir))
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


def train_distributed(arguments: dict, log_path: str, lock_dir: str, threads: int) -> None:
    """training.train's `arguments`, run by the job's workers; `threads`: the job's cores."""
    from .training import as_json

    run_dir = Path(arguments["checkpoint_dir"]) / "distributed"
    job = Job(as_json(arguments), Worker(log_path, str(run_dir)))
    distributed = arguments["experiment"]["distributed"]
    launch(job, distributed, run_dir / "job.json", Path(lock_dir) / "launch.lock", threads)


# A process's index among those its launcher started: local (workers first), srun, mpirun (Open MPI,
# MPICH). The ssh launcher numbers nothing.
TASK_VARIABLES = ("DMLC_TASK_ID", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK")


def launcher_task(environ=os.environ) -> str | None:
    return next((environ[name] for name in TASK_VARIABLES if name in environ), None)


def join_kvstore(kind: str, worker: Worker):
    """Join the job's kvstore (blocks until every process has registered) and log as its rank.

    Except with dist_async, the workers apply the updates themselves (MXNET_UPDATE_ON_KVSTORE=0):
    the servers only sum the gradients, and the optimizer's state stays in each worker, identical
    in all of them, so a checkpoint holds it and a resumed run restores it."""
    import mxnet as mx

    if kind != "dist_async":
        os.environ["MXNET_UPDATE_ON_KVSTORE"] = "0"
    kvstore = mx.kv.create(kind)
    run_dir = Path(worker.run_dir)
    task = launcher_task()
    if task is not None:  # for the failure line, which knows the launcher's task
        (run_dir / f"task-{task}").write_text(f"{kvstore.rank}\n")
    own_log = worker.log_path if kvstore.rank == 0 else run_dir / f"worker-{kvstore.rank}.log"
    handler = logging.FileHandler(own_log, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    step = (
        f", Slurm step {os.environ['SLURM_JOB_ID']}.{os.environ['SLURM_STEP_ID']}"
        if "SLURM_STEP_ID" in os.environ
        else ""
    )
    where = f" (launcher task {task})" if task is not None else ""
    log.info("worker rank %d of %d%s on %s%s, kvstore %s", kvstore.rank, kvstore.num_workers, where,
             socket.gethostname(), step, kind)  # fmt: skip
    return kvstore


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
    """A process of the job: the scheduler and the servers serve inside `import mxnet`."""
    end_with_parent()
    import mxnet  # noqa: F401 -- for DMLC_ROLE scheduler/server this serves, then exits

    from .rule import setup_logging
    from .training import train_from_json

    setup_logging(None)
    job = json.loads(Path(job_path).read_text())
    try:
        train_from_json(job["train_arguments"], Worker(**job["worker"]))
    except Exception:
        log.exception("%s on %s failed", os.environ.get("DMLC_ROLE", "worker"), socket.gethostname())
        sys.exit(1)


if __name__ == "__main__":
    run_worker(sys.argv[1])
