"""Tests of the GPU lease (real lock files, real processes, real SIGKILL), of the compute capability
checks, and of the CPU stand-in for GPUs on this CPU build of MXNet."""

import ctypes
import itertools
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import mxnet as mx
import pytest

from cifar_repro import devices
from cifar_repro.errors import InputError

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
CHILD_ENV = {**os.environ, "PYTHONPATH": str(SCRIPTS)}

# Waits for "go" on stdin so that all workers compete for the ids at the same moment, then leases
# `count` ids and prints when it held them.
WORKER = """
import json, sys, time
from cifar_repro import devices
gpu_ids, count, lock_dir, hold_seconds = json.loads(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
with devices.acquire_gpus(gpu_ids, count, lock_dir, timeout_seconds=20, poll_seconds=0.02) as lease:
    start = time.time()
    time.sleep(hold_seconds)
    end = time.time()
print(json.dumps({"ids": lease.ids, "start": start, "end": end}), flush=True)
"""

# Leases ids 0 and 1, says so, and keeps them until killed.
HOLDER = """
import sys, time
from cifar_repro import devices
lease = devices.acquire_gpus([0, 1], 2, sys.argv[1], timeout_seconds=10)
print(*lease.ids, flush=True)
time.sleep(60)
"""

# A stand-in for the CUDA driver: GPU 0 is a 7.5, GPU 1 a 9.0, there is no GPU 2.
FAKE_LIBCUDA = r"""
#include <stdlib.h>
int cuInit(unsigned int flags) { return getenv("FAKE_CUINIT_FAILS") ? 100 : 0; }
int cuDeviceGet(int *device, int ordinal) {
    if (ordinal < 0 || ordinal > 1) return 101;
    *device = ordinal;
    return 0;
}
int cuDeviceGetAttribute(int *value, int attribute, int device) {
    if (attribute == 75) *value = device == 0 ? 7 : 9;
    else if (attribute == 76) *value = device == 0 ? 5 : 0;
    else return 1;
    return 0;
}
int cuGetErrorName(int error, const char **name) {
    *name = error == 100 ? "CUDA_ERROR_NO_DEVICE" : error == 101 ? "CUDA_ERROR_INVALID_DEVICE" : "OTHER";
    return 0;
}
"""

# Asks the (fake) driver for the capabilities of the ids in argv[1]; prints them or the error.
ASK_CAPABILITIES = """
import json, sys
from cifar_repro import devices
from cifar_repro.errors import InputError
try:
    print(json.dumps(devices.compute_capabilities(json.loads(sys.argv[1]))))
except InputError as error:
    print("InputError:", error)
"""


def libcuda_loads() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def lock_is_free(lock_dir: Path, gpu_id: int) -> bool:
    try:
        devices.acquire_gpus([gpu_id], 1, lock_dir, timeout_seconds=0).release()
    except InputError:
        return False
    return True


@pytest.mark.parametrize(
    "capability, runs",
    [
        ((5, 0), True),
        ((5, 2), True),
        ((6, 1), True),
        ((7, 0), True),
        ((7, 5), True),
        ((8, 0), True),
        ((8, 6), True),
        ((8, 9), True),
        ((3, 7), False),
        ((9, 0), False),
        ((10, 0), False),
    ],
)
def test_wheel_kernels_run_on_same_major_and_newer_minor(capability, runs):
    assert devices.runs_on(capability) is runs


def test_runs_on_takes_other_architectures():
    assert devices.runs_on((9, 0), architectures=((9, 0),))
    assert not devices.runs_on((8, 6), architectures=((9, 0),))


def test_check_supported_names_each_unsupported_device():
    with pytest.raises(InputError) as raised:
        devices.check_supported({0: (7, 5), 1: (9, 0), 2: (3, 7)})
    message = str(raised.value)
    assert "GPU 1 has compute capability 9.0" in message
    assert "GPU 2 has compute capability 3.7" in message
    assert "GPU 0" not in message
    assert "5.0, 6.0, 7.0, 8.0, 8.6" in message
    assert "5.x-8.x" in message and "sm_37, sm_90" in message


def test_check_supported_accepts_supported_devices():
    devices.check_supported({0: (7, 5), 1: (8, 6), 3: (5, 2)})


def test_concurrent_jobs_never_share_an_id(tmp_path):
    gpu_ids = [0, 1, 2]
    counts = [2, 1, 2, 1, 2]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps([gpu_ids, count, str(tmp_path), 0.3])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=CHILD_ENV,
        )
        for count in counts
    ]
    try:
        for worker in workers:
            assert worker.stdout.readline() == "ready\n"
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=25)[0] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    assert [worker.returncode for worker in workers] == [0] * len(workers)
    held = [json.loads(output) for output in outputs]
    assert [len(record["ids"]) for record in held] == counts
    for record in held:
        assert len(set(record["ids"])) == len(record["ids"]) and set(record["ids"]) <= set(gpu_ids)
    for first, second in itertools.combinations(held, 2):
        if first["start"] < second["end"] and second["start"] < first["end"]:
            assert not set(first["ids"]) & set(second["ids"]), (first, second)


def test_killed_holder_frees_its_ids(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=CHILD_ENV
    )
    try:
        assert holder.stdout.readline() == "0 1\n"
        assert (tmp_path / "gpu-0.lock").read_text() == f"{holder.pid}\n"
        with pytest.raises(InputError):
            devices.acquire_gpus([0, 1], 1, tmp_path, timeout_seconds=0.3)
        os.kill(holder.pid, signal.SIGKILL)
        assert holder.wait(timeout=10) == -signal.SIGKILL
    finally:
        holder.kill()
    with devices.acquire_gpus([0, 1], 2, tmp_path, timeout_seconds=0) as lease:
        assert lease.ids == [0, 1]


def test_lease_takes_free_ids_in_list_order(tmp_path):
    with devices.acquire_gpus([1], 1, tmp_path), devices.acquire_gpus([0, 1, 2, 3], 2, tmp_path) as lease:
        assert lease.ids == [0, 2]


def test_lease_is_all_or_nothing(tmp_path):
    with devices.acquire_gpus([1, 2], 2, tmp_path):
        with pytest.raises(InputError):
            devices.acquire_gpus([0, 1, 2], 2, tmp_path, timeout_seconds=0)
        assert lock_is_free(tmp_path, 0)


def test_release_frees_the_ids_and_clears_the_pid(tmp_path):
    lease = devices.acquire_gpus([5], 1, tmp_path)
    assert (tmp_path / "gpu-5.lock").read_text() == f"{os.getpid()}\n"
    assert not lock_is_free(tmp_path, 5)
    lease.release()
    lease.release()
    assert lock_is_free(tmp_path, 5)
    assert (tmp_path / "gpu-5.lock").read_text() == ""
    assert lease.ids == [5]


def test_waits_until_enough_ids_are_free(tmp_path, caplog):
    busy = devices.acquire_gpus([0], 1, tmp_path)
    releaser = threading.Timer(0.3, busy.release)
    releaser.start()
    started = time.monotonic()
    with (
        caplog.at_level(logging.INFO, logger="cifar_repro"),
        devices.acquire_gpus([0, 1], 2, tmp_path, timeout_seconds=10, poll_seconds=0.02) as lease,
    ):
        waited = time.monotonic() - started
    releaser.join()
    assert lease.ids == [0, 1]
    assert 0.25 < waited < 5
    waiting = [record.getMessage() for record in caplog.records if "waiting for" in record.getMessage()]
    assert waiting == [f"waiting for 2 free GPU ids of [0, 1] (lock files in {tmp_path})"]


def test_timeout_names_the_ids(tmp_path):
    with devices.acquire_gpus([7], 1, tmp_path):
        started = time.monotonic()
        with pytest.raises(InputError, match=r"timed out .* 2 free GPU ids of \[7, 8\]"):
            devices.acquire_gpus([7, 8], 2, tmp_path, timeout_seconds=0.2, poll_seconds=0.05)
        assert 0.2 <= time.monotonic() - started < 2


def test_more_gpus_than_gpu_ids_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=r"asks for 3 GPUs but gpu_ids lists only 2: \[0, 1\]"):
        devices.acquire_gpus([0, 1], 3, tmp_path)


@pytest.mark.parametrize("gpu_ids, count", [([0, 0], 1), ([0], 0)])
def test_bad_requests_are_input_errors(tmp_path, gpu_ids, count):
    with pytest.raises(InputError):
        devices.acquire_gpus(gpu_ids, count, tmp_path, timeout_seconds=0)


def test_lock_dir_is_created_shareable(tmp_path):
    lock_dir = tmp_path / "locks" / "gpus"
    devices.acquire_gpus([0], 1, lock_dir).release()
    assert stat.S_IMODE(lock_dir.stat().st_mode) == 0o1777


cpu_build = pytest.mark.skipif(devices.cuda_available(), reason="MXNet here has CUDA and a GPU")


NO_SLURM: dict[str, str] = {}
SLURM_JOB = {"SLURM_JOB_ID": "42", "SLURMD_NODENAME": "node7", "CUDA_VISIBLE_DEVICES": "2,3"}


@cpu_build
def test_a_gpu_experiment_without_cuda_stops_naming_the_fix(tmp_path):
    with pytest.raises(InputError) as error:
        devices.training_devices(2, [], tmp_path, False, environ=NO_SLURM)
    message = str(error.value)
    assert "asks for 2 GPUs, but MXNet is built without CUDA" in message
    assert "make setup GPU=cu112" in message and "allow_cpu_fallback: true" in message


@cpu_build
def test_cpu_stand_ins_when_allowed(tmp_path):
    assigned = devices.training_devices(2, [], tmp_path, True, environ=NO_SLURM)
    assert assigned.contexts == [mx.cpu(0), mx.cpu(1)] and assigned.lease is None
    assert assigned.record() == {
        "description": "CPU stand-in: 2 CPU contexts in place of 2 GPUs (MXNet is built without CUDA)",
        "assignment": "cpu",
        "contexts": ["cpu(0)", "cpu(1)"],
        "gpu_ids": [],
        "cpu_stand_in": True,
    }


@cpu_build
def test_cpu_stand_ins_still_lease_gpu_ids(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        assigned = devices.training_devices(2, [3, 4], tmp_path, True, timeout_seconds=0, environ=NO_SLURM)
    with assigned.lease:
        assert assigned.contexts == [mx.cpu(0), mx.cpu(1)]
        assert assigned.how == "lease" and assigned.gpu_ids == ["3", "4"]
        assert not lock_is_free(tmp_path, 3) and not lock_is_free(tmp_path, 4)
        assert "given GPU ids ['3', '4']" in assigned.description
        assert f"training on {assigned.description}" in caplog.messages
    assert lock_is_free(tmp_path, 3)


@cpu_build
def test_inside_slurm_the_job_takes_the_gpus_it_was_given_and_no_lock(tmp_path):
    assigned = devices.training_devices(2, [0, 1, 2, 3], tmp_path, True, timeout_seconds=0, environ=SLURM_JOB)
    record = assigned.record()
    assert record["assignment"] == "slurm" and record["gpu_ids"] == ["2", "3"]
    assert record["slurm_job_id"] == "42" and record["node"] == "node7"
    assert assigned.lease is None and not list(tmp_path.iterdir())  # no lock file taken


@pytest.mark.parametrize("visible", ["0", "", "0,1,2"])
def test_inside_slurm_another_gpu_count_is_an_error_naming_both(tmp_path, visible):
    environ = SLURM_JOB | {"CUDA_VISIBLE_DEVICES": visible}
    given = len([v for v in visible.split(",") if v])
    with pytest.raises(InputError, match=rf"asks for 2 GPUs, but Slurm job 42 was given {given} "):
        devices.training_devices(2, [], tmp_path, True, environ=environ)


def test_a_cpu_experiment_trains_on_one_cpu_context_anywhere(tmp_path):
    for environ in (NO_SLURM, SLURM_JOB):
        assigned = devices.training_devices(0, [0], tmp_path, False, environ=environ)
        assert assigned.contexts == [mx.cpu()] and assigned.how == "cpu" and not assigned.cpu_stand_in


def test_a_negative_gpu_count_is_refused(tmp_path):
    with pytest.raises(InputError, match="0 \\(CPU\\) or more"):
        devices.training_devices(-1, [], tmp_path, True)


@pytest.mark.skipif(libcuda_loads(), reason="libcuda.so.1 loads on this machine")
def test_compute_capabilities_without_driver_is_an_input_error():
    with pytest.raises(InputError, match="cannot load the CUDA driver library libcuda.so.1"):
        devices.compute_capabilities([0])


@pytest.fixture(scope="module")
def fake_libcuda_dir(tmp_path_factory):
    """A folder holding a libcuda.so.1 built from FAKE_LIBCUDA."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc to build a fake libcuda.so.1")
    folder = tmp_path_factory.mktemp("fake-libcuda")
    (folder / "fake_libcuda.c").write_text(FAKE_LIBCUDA)
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", folder / "libcuda.so.1", folder / "fake_libcuda.c"], check=True
    )
    return folder


@pytest.mark.parametrize(
    "ids, extra_env, expected",
    [
        ([0, 1], {}, '{"0": [7, 5], "1": [9, 0]}'),
        (
            [0, 2],
            {},
            "InputError: CUDA driver call cuDeviceGet for GPU 2 failed with CUresult 101 "
            "(CUDA_ERROR_INVALID_DEVICE)",
        ),
        (
            [0],
            {"FAKE_CUINIT_FAILS": "1"},
            "InputError: CUDA driver call cuInit failed with CUresult 100 (CUDA_ERROR_NO_DEVICE)",
        ),
    ],
)
def test_compute_capabilities_asks_the_driver(fake_libcuda_dir, ids, extra_env, expected):
    # the dynamic loader reads LD_LIBRARY_PATH at start-up, hence a child process
    env = {**CHILD_ENV, **extra_env, "LD_LIBRARY_PATH": str(fake_libcuda_dir)}
    asked = subprocess.run(
        [sys.executable, "-c", ASK_CAPABILITIES, json.dumps(ids)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=True,
    )
    assert asked.stdout.strip() == expected


@pytest.mark.parametrize(
    "worker, expected",
    [({"DMLC_TASK_ID": "1", "SLURM_LOCALID": "0"}, "6,7"), ({"SLURM_LOCALID": "0"}, "4,5")],
)
def test_each_worker_of_a_distributed_job_takes_its_own_share_of_the_jobs_gpus(worker, expected):
    # the local launcher numbers its workers (inside one Slurm job too); srun numbers a node's tasks
    environ = SLURM_JOB | {"CUDA_VISIBLE_DEVICES": "4,5,6,7"} | worker
    assert devices.share_of_worker(environ, 2)["CUDA_VISIBLE_DEVICES"] == expected
    assert devices.share_of_worker(environ | {"CUDA_VISIBLE_DEVICES": "4,5"}, 2) == environ | {
        "CUDA_VISIBLE_DEVICES": "4,5"
    }
