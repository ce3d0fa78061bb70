"""Which devices a training job runs on, and which GPU ids it may use.

Snakemake only counts GPUs (`resources: gpu=N`); it does not say which ones a job gets. So each job
takes N free ids from the configured `gpu_ids` itself, by locking one file per id with `flock`.
The kernel drops those locks when the process ends however it ends (even on SIGKILL), so a crashed
job never leaves a GPU reserved. Lock files are never deleted: removing a file another process
has open and locked would let a third process lock a new file of the same name at the same time.

On a machine whose MXNet has no CUDA, N GPUs become N CPU contexts (MXNet runs data-parallel over
several CPU contexts exactly as over several GPUs), and the ids are still leased when `gpu_ids`
lists any, so the multi-device path and the allocator run everywhere.

The mxnet-cu112 1.9.1 wheel carries machine code (SASS) for a few GPU architectures only and no
PTX, so a GPU of any other architecture fails at its first kernel; `check_supported` says so up
front instead.
"""

import ctypes
import errno
import fcntl
import logging
import os
import time
from pathlib import Path

import mxnet as mx

from .errors import InputError

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
    log: logging.Logger | None = None,
) -> GpuLease:
    """Lease `count` distinct free ids of `gpu_ids` (first free ones in list order), waiting until
    that many are free at once; with `timeout_seconds`, give up after that long."""
    log = log or logging.getLogger("cifar-repro")
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


def training_devices(
    count: int,
    gpu_ids: list[int],
    lock_dir: str | Path,
    log: logging.Logger,
    timeout_seconds: float | None = None,
) -> tuple[list[mx.Context], GpuLease | None, str]:
    """The contexts a job asking for `count` GPUs trains on, the lease of its GPU ids (None if none
    are leased; release it when training ends, or let the process exit), and a one-line description.

    With CUDA, empty `gpu_ids` means every visible GPU. Without CUDA, the job trains on `count` CPU
    contexts, still leasing ids when `gpu_ids` lists any.
    """
    if count < 1:
        raise InputError(f"gpus must be at least 1, got {count}")
    no_cuda = _no_cuda_reason()
    if no_cuda is None:
        visible = mx.context.num_gpus()
        gpu_ids = gpu_ids or list(range(visible))
        invisible = [gpu_id for gpu_id in gpu_ids if not 0 <= gpu_id < visible]
        if invisible:
            raise InputError(
                f"gpu_ids {invisible} are not among the {visible} GPUs MXNet sees "
                f"(ids 0-{visible - 1}, after CUDA_VISIBLE_DEVICES)"
            )
        lease = acquire_gpus(gpu_ids, count, lock_dir, timeout_seconds, log=log)
        try:
            capabilities = compute_capabilities(lease.ids)
            check_supported(capabilities)
        except BaseException:
            lease.release()
            raise
        described = ", ".join(
            f"{gpu_id} (compute capability {major}.{minor})"
            for gpu_id, (major, minor) in capabilities.items()
        )
        description = f"{count} GPU{'s' if count > 1 else ''}: {described}"
        log.info("training on %s", description)
        return [mx.gpu(gpu_id) for gpu_id in lease.ids], lease, description

    lease = acquire_gpus(gpu_ids, count, lock_dir, timeout_seconds, log=log) if gpu_ids else None
    leased = f", leased GPU ids {lease.ids}" if lease else ""
    description = (
        f"{count} CPU context{'s' if count > 1 else ''} in place of {count} "
        f"GPU{'s' if count > 1 else ''} ({no_cuda}{leased})"
    )
    log.warning("training on %s", description)
    return [mx.cpu(index) for index in range(count)], lease, description
