"""One writer per run: the training job that trains a run holds a lease on its checkpoint folder.

The lease is a file, `checkpoints/<run>/lease.json`, created with O_EXCL (atomic on a local disk and
on NFS v3+, so it works across the nodes of a cluster's shared file system). It names its holder
(host, pid, Slurm job id and restart count) and a heartbeat that a thread renews every
HEARTBEAT_SECONDS. A second trainer of the run refuses, naming the holder, unless the holder is
provably gone: its Slurm job has ended or was requeued (Slurm killed its processes), its process on
this host has exited, or its heartbeat is older than STALE_SECONDS (a dead node, a stopped process);
then it takes the lease over. A holder whose lease was taken over stops at its next batch.
"""

import contextlib
import dataclasses
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

from . import slurm_job
from .atomic import atomic_path
from .errors import RunHeld

log = logging.getLogger(__name__)

LEASE_FILE = "lease.json"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 10 * HEARTBEAT_SECONDS  # ten missed heartbeats: clocks of nodes may differ a little


@dataclasses.dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    slurm_job_id: str | None
    restart_count: int
    heartbeat: float  # POSIX time of the last renewal

    @classmethod
    def this_process(cls) -> "Holder":
        return cls(
            socket.gethostname(), os.getpid(), slurm_job.this_job(), slurm_job.restart_count(), time.time()
        )

    def same_process(self, other: "Holder") -> bool:
        return (self.host, self.pid, self.slurm_job_id, self.restart_count) == (
            other.host, other.pid, other.slurm_job_id, other.restart_count,
        )  # fmt: skip

    def describe(self) -> str:
        where = f"pid {self.pid} on {self.host}"
        if self.slurm_job_id:
            where += f", Slurm job {self.slurm_job_id} (to stop it: scancel {self.slurm_job_id})"
        return where


def gone_because(holder: Holder, me: Holder, now: float) -> str | None:
    """Why `holder` provably trains no more, or None when it may still be training."""
    if holder.slurm_job_id:
        if holder.slurm_job_id == me.slurm_job_id and holder.restart_count != me.restart_count:
            return f"Slurm requeued its job {holder.slurm_job_id}"
        if holder.slurm_job_id != me.slurm_job_id:
            state = slurm_job.job_state(holder.slurm_job_id)
            if state is not None and state not in slurm_job.ACTIVE_STATES:
                return f"its Slurm job {holder.slurm_job_id} is {state}"
    if holder.host == me.host and not pid_alive(holder.pid):
        return f"its process {holder.pid} has exited"
    if now - holder.heartbeat > STALE_SECONDS:
        return f"its heartbeat is {now - holder.heartbeat:.0f} s old (more than {STALE_SECONDS:.0f})"
    return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


class RunLease:
    """The lease on a run's checkpoint folder, held from `with` to its end (see the module's text)."""

    def __init__(self, folder: str | Path, run: str):
        self.folder, self.run = Path(folder), run
        self.path = self.folder / LEASE_FILE
        self.me = Holder.this_process()
        self.lost = threading.Event()  # set when another trainer took the lease over
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._renew, name="lease heartbeat", daemon=True)

    def read(self) -> Holder | None:
        try:
            return Holder(**json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as error:  # half-written by a writer that died: a stale lease
            log.warning("%s is unreadable (%s): treating it as stale", self.path, error)
            return dataclasses.replace(self.me, host="?", pid=0, slurm_job_id=None, heartbeat=0.0)

    def _renewed_record(self) -> str:
        """This holder's record, its heartbeat now."""
        self.me = dataclasses.replace(self.me, heartbeat=time.time())
        return json.dumps(dataclasses.asdict(self.me))

    def _write(self) -> None:
        with atomic_path(self.path) as partial:
            partial.write_text(self._renewed_record())

    def _create(self) -> bool:
        """Create the lease if no one holds it."""
        try:
            descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "w") as lease:
            lease.write(self._renewed_record())
            lease.flush()
            os.fsync(lease.fileno())
        return True

    def _take_over(self, stale: Holder) -> None:
        """Move the stale lease aside, unless another trainer has replaced or renewed it since."""
        aside = self.folder / f"{LEASE_FILE}.stale-{self.me.host}-{self.me.pid}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # another trainer moved it first
        try:
            moved = Holder(**json.loads(aside.read_text()))
        except (ValueError, TypeError):
            moved = stale  # the unreadable one
        if moved != stale:
            with contextlib.suppress(FileExistsError):  # a live lease: put it back
                os.link(aside, self.path)
        aside.unlink()

    def __enter__(self) -> "RunLease":
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            if self._create():
                self._heartbeat.start()
                log.info("%s: this job holds the run's lease (%s)", self.run, self.path)
                return self
            holder = self.read()
            if holder is None:
                continue  # released in the meantime
            reason = gone_because(holder, self.me, time.time())
            if reason is None:
                raise RunHeld(
                    f"{self.run} is being trained by {holder.describe()}, whose lease {self.path} was "
                    f"renewed {time.time() - holder.heartbeat:.0f} s ago: a second trainer would write "
                    "into the same checkpoints; wait for it to end, or stop it"
                )
            log.warning("%s: taking the lease over from %s: %s", self.run, holder.describe(), reason)
            self._take_over(holder)
        raise RunHeld(f"{self.path}: other trainers kept taking the lease; is {self.run} trained twice?")

    def _renew(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            holder = self.read()
            if holder is None or not holder.same_process(self.me):
                log.error("%s: the run's lease is now held by %s", self.run, holder and holder.describe())
                self.lost.set()
                return
            self._write()

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._heartbeat.is_alive():
            self._heartbeat.join()
        holder = self.read()
        if holder is not None and holder.same_process(self.me):
            self.path.unlink(missing_ok=True)
