"""Which devices a training job runs on.

Inside a Slurm job the scheduler has already chosen the GPUs and set CUDA_VISIBLE_DEVICES: the job
uses exactly those, and takes no lock.

On a workstation Snakemake only counts GPUs (`resources: gpu=N`); it does not say which ones a job
gets. So each job takes N free ids from the configured `gpu_ids` itself, by locking one file per id
with `flock`. The kernel drops those locks when the process ends however it ends (even on SIGKILL),
so a crashed job never leaves a GPU reserved. Lock files are never deleted: removing a file another
process has open and locked would let a third process lock a new file of the same name at the same
time.

A GPU experiment whose MXNet has no CUDA stops, unless the config allows CPU stand-ins
(`allow_cpu_fallback`, as the demo and the tests do): then N GPUs become N CPU contexts (MXNet runs
data-parallel over several CPU contexts exactly as over several GPUs), with the GPU ids still taken
from Slurm or leased, so the multi-device path and the allocators run everywhere.

The mxnet-cu112 1.9.1 wheel carries machine code (SASS) for a few GPU architectures only and no
PTX, so a GPU of any other architecture fails at its first kernel; `check_supported` says so up
front instead.
"""

import ctypes
import errno
import fcntl
import logging
import os
import platform
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import mxnet as mx

from .errors import InputError

log = logging.getLogger(__name__)

# Compute capabilities the mxnet-cu112 1.9.1 wheel has SASS for (sm_50, sm_60, sm_70, sm_80, sm_86).
SUPPORTED_ARCHITECTURES = ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6))

# CUdevice_attribute values of the CUDA driver API (cuda.h).
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
CUDA_SUCCESS = 0


class GpuLease:
    """GPU ids held by this process through locked lock files, until `release` or process exit."""

    def __init__(self, locked_files: dict[int, int]):
        """`locked_files` maps each GPU id to the descriptor of its locked lock file."""
        self.ids = list(locked_files)
        self._descriptors = list(locked_files.values())

    def release(self) -> None:
        """Unlock every id (closing a descriptor drops its lock); calling it again does nothing."""
        for descriptor in self._descriptors:
            _clear_holder(descriptor)
            os.close(descriptor)
        self._descriptors = []

    def __enter__(self) -> "GpuLease":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self._descriptors else "released"
        return f"GpuLease(ids={self.ids}, {state})"


def acquire_gpus(
    gpu_ids: list[int],
    count: int,
    lock_dir: str | Path,
    timeout_seconds: float | None = None,
    poll_seconds: float = 0.5,
) -> GpuLease:
    """Lease `count` distinct free ids of `gpu_ids` (first free ones in list order), waiting until
    that many are free at once; with `timeout_seconds`, give up after that long."""
    if count < 1:
        raise InputError(f"a job needs at least 1 GPU, got {count}")
    if len(set(gpu_ids)) != len(gpu_ids):
        # the second lock of one id by the same process would fail forever
        raise InputError(f"gpu_ids lists an id twice: {gpu_ids}")
    if count > len(gpu_ids):
        raise InputError(f"the job asks for {count} GPUs but gpu_ids lists only {len(gpu_ids)}: {gpu_ids}")
    lock_dir = Path(lock_dir)
    _make_lock_dir(lock_dir)
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    waiting_logged = False
    while True:
        lease = _try_acquire(gpu_ids, count, lock_dir)
        if lease is not None:
            log.info("leased GPU ids %s of %s", lease.ids, gpu_ids)
            return lease
        if not waiting_logged:
            log.info("waiting for %d free GPU ids of %s (lock files in %s)", count, gpu_ids, lock_dir)
            waiting_logged = True
        pause = poll_seconds
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InputError(
                    f"timed out after {timeout_seconds} s waiting for {count} free GPU ids of {gpu_ids}; "
                    f"the pid holding each id is in {lock_dir}/gpu-<id>.lock"
                )
            pause = min(pause, remaining)
        time.sleep(pause)


def _make_lock_dir(lock_dir: Path) -> None:
    try:
        lock_dir.mkdir(parents=True)
    except FileExistsError:
        if not lock_dir.is_dir():
            raise InputError(f"GPU lock directory {lock_dir} exists but is not a directory") from None
        return
    except OSError as error:
        raise InputError(f"cannot create the GPU lock directory {lock_dir}: {error}") from None
    # world-writable with the sticky bit, like /tmp, so jobs of several users can share it
    # (mkdir's own mode would be cut down by the umask)
    lock_dir.chmod(0o1777)


def _try_acquire(gpu_ids: list[int], count: int, lock_dir: Path) -> GpuLease | None:
    """All or nothing: lock `count` ids now, or unlock the ones taken and return None."""
    locked_files: dict[int, int] = {}
    for gpu_id in gpu_ids:
        descriptor = _try_lock(lock_dir / f"gpu-{gpu_id}.lock")
        if descriptor is None:
            continue
        locked_files[gpu_id] = descriptor
        if len(locked_files) == count:
            return GpuLease(locked_files)
    GpuLease(locked_files).release()
    return None


def _try_lock(path: Path) -> int | None:
    """The descriptor of `path`, exclusively locked, or None if another process holds the lock."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        # another user's lock file that their umask left read-only: flock needs no write access
        descriptor = _open_read_only(path)
    except OSError as error:
        raise InputError(f"cannot open the GPU lock file {path}: {error}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    _record_holder(descriptor)
    return descriptor


def _open_read_only(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as error:
        raise InputError(f"cannot open the GPU lock file {path}: {error}") from None


def _record_holder(descriptor: int) -> None:
    """Write our pid into the locked file, for humans only: the lock, not the pid, is what counts."""
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    except OSError as error:
        if error.errno not in (errno.EBADF, errno.EINVAL):  # read-only descriptor: no pid, still locked
            raise


def _clear_holder(descriptor: int) -> None:
    """Empty the file while still holding its lock, so it never shows a pid that no longer holds it
    (unless the holder was killed)."""
    try:
        os.ftruncate(descriptor, 0)
    except OSError as error:
        if error.errno not in (errno.EBADF, errno.EINVAL):
            raise


def _no_cuda_reason() -> str | None:
    """Why MXNet cannot train on GPUs here, or None if it can."""
    if not mx.runtime.Features().is_enabled("CUDA"):
        return "MXNet is built without CUDA"
    try:
        if mx.context.num_gpus() == 0:
            return "MXNet is built with CUDA but sees no GPU"
    except mx.base.MXNetError as error:  # e.g. no driver, or a driver older than the CUDA runtime
        first_line = str(error).splitlines()[0]  # the rest is MXNet's C++ stack trace
        return f"MXNet is built with CUDA but cannot count GPUs ({first_line})"
    return None


def cuda_available() -> bool:
    """Whether MXNet is built with CUDA and sees at least one GPU."""
    return _no_cuda_reason() is None


def runs_on(
    capability: tuple[int, int], architectures: tuple[tuple[int, int], ...] = SUPPORTED_ARCHITECTURES
) -> bool:
    """Whether machine code for `architectures` runs on a GPU of compute `capability`: a cubin for
    sm_XY runs on devices of the same major X and minor >= Y (CUDA binary compatibility)."""
    major, minor = capability
    return any(major == built_major and minor >= built_minor for built_major, built_minor in architectures)


def compute_capabilities(ids: list[int]) -> dict[int, tuple[int, int]]:
    """{id: (major, minor)} of the GPUs `ids`, asked of the CUDA driver (libcuda.so.1)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as error:
        raise InputError(
            f"cannot load the CUDA driver library libcuda.so.1 to check the GPUs' compute "
            f"capability; is the NVIDIA driver installed? ({error})"
        ) from None
    _check_cuda(cuda, cuda.cuInit(0), "cuInit")
    capabilities = {}
    for gpu_id in ids:
        device = ctypes.c_int()
        _check_cuda(cuda, cuda.cuDeviceGet(ctypes.byref(device), gpu_id), f"cuDeviceGet for GPU {gpu_id}")
        major, minor = ctypes.c_int(), ctypes.c_int()
        for value, attribute in (
            (major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
            (minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
        ):
            _check_cuda(
                cuda,
                cuda.cuDeviceGetAttribute(ctypes.byref(value), attribute, device),
                f"cuDeviceGetAttribute({attribute}) for GPU {gpu_id}",
            )
        capabilities[gpu_id] = (major.value, minor.value)
    return capabilities


def _check_cuda(cuda: ctypes.CDLL, result: int, call: str) -> None:
    if result == CUDA_SUCCESS:
        return
    name = ctypes.c_char_p()
    known = cuda.cuGetErrorName(result, ctypes.byref(name)) == CUDA_SUCCESS and name.value
    suffix = f" ({name.value.decode()})" if known else ""
    raise InputError(f"CUDA driver call {call} failed with CUresult {result}{suffix}")


def check_supported(capabilities: dict[int, tuple[int, int]]) -> None:
    """Fail, naming each GPU, if any of `capabilities` ({id: (major, minor)}) cannot run the wheel's
    kernels."""
    unsupported = {
        gpu_id: capability for gpu_id, capability in capabilities.items() if not runs_on(capability)
    }
    if not unsupported:
        return
    devices = ", ".join(
        f"GPU {gpu_id} has compute capability {major}.{minor}"
        for gpu_id, (major, minor) in unsupported.items()
    )
    built = ", ".join(f"{major}.{minor}" for major, minor in SUPPORTED_ARCHITECTURES)
    majors = sorted({major for major, _ in SUPPORTED_ARCHITECTURES})
    missing = ", ".join(sorted({f"sm_{major}{minor}" for major, minor in unsupported.values()}))
    raise InputError(
        f"{devices}, but the mxnet-cu112 1.9.1 wheel carries kernels only for compute capability {built} "
        f"(no PTX), which run on {majors[0]}.x-{majors[-1]}.x; use a GPU of compute capability "
        f"{majors[0]}.x-{majors[-1]}.x, or build MXNet from source for {missing}"
    )


@dataclass
class Assignment:
    """The devices a training job runs on, and how they were chosen."""

    contexts: list[mx.Context]
    how: str  # "slurm" (the scheduler's), "lease" (flock over gpu_ids), "cpu" (a CPU experiment)
    gpu_ids: list[str]  # as the scheduler or the lease named them; [] on CPU
    cpu_stand_in: bool  # GPUs asked for, CPU contexts used (allow_cpu_fallback)
    description: str
    lease: GpuLease | None = None  # release it when training ends (or let the process exit)
    slurm: dict[str, str] = field(default_factory=dict)  # job id and node, inside a Slurm job

    def record(self) -> dict:
        """What run.json says about the devices."""
        return {
            "description": self.description,
            "assignment": self.how,
            "contexts": [str(context) for context in self.contexts],
            "gpu_ids": self.gpu_ids,
            "cpu_stand_in": self.cpu_stand_in,
            **({"slurm_job_id": self.slurm["job_id"], "node": self.slurm["node"]} if self.slurm else {}),
        }


def slurm_job(environ: Mapping[str, str]) -> dict[str, str]:
    """The Slurm job this process runs in ({} outside Slurm)."""
    if "SLURM_JOB_ID" not in environ:
        return {}
    return {"job_id": environ["SLURM_JOB_ID"], "node": environ.get("SLURMD_NODENAME", platform.node())}


def scheduler_gpu_ids(environ: Mapping[str, str]) -> list[str]:
    """The GPUs the scheduler gave this job, as CUDA_VISIBLE_DEVICES lists them (Slurm sets it for a
    job with GPUs; none when unset or empty)."""
    visible = environ.get("CUDA_VISIBLE_DEVICES", "")
    return [gpu_id.strip() for gpu_id in visible.split(",") if gpu_id.strip()]


def share_of_worker(environ: Mapping[str, str], gpus: int) -> Mapping[str, str]:
    """One worker's view of the job's GPUs: when the scheduler gave the job more than one worker
    uses (several workers on a node), the n-th run of `gpus` of them for the n-th worker on the
    node: the local launcher numbers its workers 0..W-1 (DMLC_TASK_ID), srun its tasks on a node
    (SLURM_LOCALID)."""
    ids = scheduler_gpu_ids(environ)
    if gpus == 0 or len(ids) <= gpus:
        return environ
    first = int(environ.get("DMLC_TASK_ID", environ.get("SLURM_LOCALID", "0"))) * gpus
    return {**environ, "CUDA_VISIBLE_DEVICES": ",".join(ids[first : first + gpus])}


@dataclass(frozen=True)
class DeviceGrant:
    """What a training job (or each worker of a distributed one) was granted: `gpus` devices (0: a
    CPU experiment), leased from `gpu_ids` through the lock files in `lock_dir` outside Slurm."""

    gpus: int
    gpu_ids: list[int]
    lock_dir: str
    allow_cpu_fallback: bool = False

    def assign(self, environ: Mapping[str, str] = os.environ) -> "Assignment":
        return training_devices(
            self.gpus, self.gpu_ids, self.lock_dir, self.allow_cpu_fallback, environ=environ
        )


def no_gpu_error(count: int, reason: str) -> InputError:
    return InputError(
        f"the experiment asks for {count} GPU{'s' if count > 1 else ''}, but {reason} "
        f"(Python {sys.executable}, mxnet {mx.__version__}). Install MXNet for GPUs with "
        "`make setup GPU=cu112`, or run with `--sdm conda`, which gives GPU experiments "
        "envs/train-cu112.yaml; or, to train on CPU contexts in place of the GPUs, set "
        "allow_cpu_fallback: true in the config"
    )


def training_devices(
    count: int,
    gpu_ids: list[int],
    lock_dir: str | Path,
    allow_cpu_fallback: bool,
    timeout_seconds: float | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Assignment:
    """The devices of a job that asks for `count` GPUs (0: a CPU experiment, one CPU context).

    Inside a Slurm job the scheduler has chosen the GPUs: the job uses exactly those it was given
    (CUDA_VISIBLE_DEVICES), which must be `count`, and takes no lock. Elsewhere it leases `count`
    ids of `gpu_ids` (empty: every GPU MXNet sees) by flock, so that concurrent jobs on one machine
    never share a GPU. Without CUDA, GPUs become as many CPU contexts only if `allow_cpu_fallback`.
    """
    if count < 0:
        raise InputError(f"gpus must be 0 (CPU) or more, got {count}")
    if count == 0:
        return Assignment([mx.cpu()], "cpu", [], False, "1 CPU context (a CPU experiment)")
    no_cuda = _no_cuda_reason()
    if no_cuda is not None and not allow_cpu_fallback:
        raise no_gpu_error(count, no_cuda)
    slurm = slurm_job(environ)
    if slurm:
        ids = scheduler_gpu_ids(environ)
        if len(ids) != count:
            visible = environ.get("CUDA_VISIBLE_DEVICES", "")
            raise InputError(
                f"the experiment asks for {count} GPU{'s' if count > 1 else ''}, but Slurm job "
                f"{slurm['job_id']} was given {len(ids)} (CUDA_VISIBLE_DEVICES={visible!r}); "
                "the rule's gpu resource must equal the experiment's gpus"
            )
        log.info("Slurm job %s on %s gave GPUs %s", slurm["job_id"], slurm["node"], ids)
        if no_cuda is None:
            # CUDA_VISIBLE_DEVICES renumbers the job's GPUs 0..count-1 for MXNet
            return _on_gpus(list(range(count)), ids, "slurm", None, slurm)
        return _cpu_stand_in(count, ids, "slurm", None, no_cuda, slurm)
    if no_cuda is None:
        visible = mx.context.num_gpus()
        gpu_ids = gpu_ids or list(range(visible))
        invisible = [gpu_id for gpu_id in gpu_ids if not 0 <= gpu_id < visible]
        if invisible:
            raise InputError(
                f"gpu_ids {invisible} are not among the {visible} GPUs MXNet sees "
                f"(ids 0-{visible - 1}, after CUDA_VISIBLE_DEVICES)"
            )
        lease = acquire_gpus(gpu_ids, count, lock_dir, timeout_seconds)
        try:
            return _on_gpus(lease.ids, [str(gpu_id) for gpu_id in lease.ids], "lease", lease, {})
        except BaseException:
            lease.release()
            raise
    lease = acquire_gpus(gpu_ids, count, lock_dir, timeout_seconds) if gpu_ids else None
    ids = [str(gpu_id) for gpu_id in lease.ids] if lease else []
    return _cpu_stand_in(count, ids, "lease" if lease else "cpu", lease, no_cuda, {})


def _on_gpus(
    mxnet_ids: list[int], ids: list[str], how: str, lease: GpuLease | None, slurm: dict[str, str]
) -> Assignment:
    capabilities = compute_capabilities(mxnet_ids)
    check_supported(capabilities)
    described = ", ".join(
        f"{gpu_id} (compute capability {major}.{minor})"
        for gpu_id, (major, minor) in zip(ids, capabilities.values(), strict=True)
    )
    count = len(ids)
    description = f"{count} GPU{'s' if count > 1 else ''}: {described}"
    return Assignment([mx.gpu(i) for i in mxnet_ids], how, ids, False, description, lease, slurm)


def _cpu_stand_in(
    count: int,
    ids: list[str],
    how: str,
    lease: GpuLease | None,
    no_cuda: str,
    slurm: dict[str, str],
) -> Assignment:
    plural = "s" if count > 1 else ""
    given = f", given GPU ids {ids}" if ids else ""
    description = (
        f"CPU stand-in: {count} CPU context{plural} in place of {count} GPU{plural} ({no_cuda}{given})"
    )
    log.warning("training on %s", description)
    return Assignment([mx.cpu(i) for i in range(count)], how, ids, True, description, lease, slurm)
