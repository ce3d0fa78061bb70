"""What makes a run's attempts safe: its lease (one writer per run) and when a job stops early."""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from cifar_repro import lease, stopping
from cifar_repro.atomic import remove_partials
from cifar_repro.errors import RunHeld, StoppedToResume, TrainingError


def write_holder(folder, **changes):
    holder = dataclasses.replace(lease.Holder.this_process(), **changes)
    (folder / lease.LEASE_FILE).write_text(json.dumps(dataclasses.asdict(holder)))
    return holder


def test_the_lease_is_held_inside_and_released_after(tmp_path):
    with lease.RunLease(tmp_path, "run") as held:
        recorded = json.loads((tmp_path / lease.LEASE_FILE).read_text())
        assert (recorded["host"], recorded["pid"]) == (socket.gethostname(), os.getpid())
        assert not held.lost.is_set()
    assert not (tmp_path / lease.LEASE_FILE).exists()


def test_a_live_holder_is_named_and_the_lease_left_alone(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_holder(tmp_path, pid=sleeper.pid, slurm_job_id=None)
        before = (tmp_path / lease.LEASE_FILE).read_text()
        with pytest.raises(RunHeld, match=f"run is being trained by pid {sleeper.pid} on "):
            lease.RunLease(tmp_path, "run").__enter__()
        assert (tmp_path / lease.LEASE_FILE).read_text() == before
    finally:
        sleeper.kill()


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"pid": 2**22 + 1}, "has exited"),  # above Linux's default pid_max: no such process
        ({"host": "elsewhere", "heartbeat": time.time() - 2 * lease.STALE_SECONDS}, "heartbeat is"),
    ],
    ids=["dead process", "stale heartbeat"],
)
def test_a_holder_that_is_provably_gone_is_taken_over(tmp_path, caplog, changes, reason):
    write_holder(tmp_path, slurm_job_id=None, **changes)
    with lease.RunLease(tmp_path, "run"):
        assert json.loads((tmp_path / lease.LEASE_FILE).read_text())["pid"] == os.getpid()
    assert reason in caplog.text
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_a_requeued_slurm_job_takes_over_from_its_earlier_run(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    write_holder(tmp_path, host="node7", slurm_job_id="41", restart_count=0)
    me = lease.Holder.this_process()
    holder = lease.Holder(**json.loads((tmp_path / lease.LEASE_FILE).read_text()))
    assert lease.gone_because(holder, me, time.time()) == "Slurm requeued its job 41"


def test_another_live_slurm_job_is_named_with_the_job_to_cancel(tmp_path, monkeypatch):
    holder = write_holder(tmp_path, host="node7", slurm_job_id="41")
    monkeypatch.setattr(lease.slurm_job, "job_state", lambda job_id: "RUNNING")
    with pytest.raises(RunHeld, match=r"Slurm job 41 \(to stop it: scancel 41\)"):
        lease.RunLease(tmp_path, "run").__enter__()
    monkeypatch.setattr(lease.slurm_job, "job_state", lambda job_id: "TIMEOUT")
    assert (
        lease.gone_because(holder, lease.Holder.this_process(), time.time()) == "its Slurm job 41 is TIMEOUT"
    )


def test_a_holder_whose_lease_was_taken_over_learns_it_at_its_next_heartbeat(tmp_path, monkeypatch):
    monkeypatch.setattr(lease, "HEARTBEAT_SECONDS", 0.05)
    with lease.RunLease(tmp_path, "run") as held:
        write_holder(tmp_path, host="elsewhere")
        assert held.lost.wait(5)
        conditions = stopping.StopConditions(lease_lost=held.lost)
        with pytest.raises(RunHeld, match="another trainer took this run's lease over"):
            conditions.check_batch(0)
    assert json.loads((tmp_path / lease.LEASE_FILE).read_text())["host"] == "elsewhere"  # theirs, kept


def test_a_job_stops_after_the_epoch_when_the_next_would_not_fit():
    conditions = stopping.StopConditions(deadline=time.time() + 100)
    conditions.check_epoch_end(3, 10, slowest_epoch=50)  # 100 s left >= 1.5 x 50 + 10
    with pytest.raises(
        StoppedToResume, match="stopped after epoch 3 of 10: .* a retry resumes after epoch 3"
    ):
        conditions.check_epoch_end(3, 10, slowest_epoch=70)
    conditions.check_epoch_end(10, 10, slowest_epoch=70)  # the last epoch: nothing to stop


def test_a_job_without_room_for_one_epoch_says_to_ask_for_more_time():
    conditions = stopping.StopConditions(deadline=time.time() + 30)
    with pytest.raises(TrainingError, match="no attempt can get past epoch 4; ask for more time per job"):
        conditions.check_start(4, slowest_epoch=60)
    conditions.check_start(0, slowest_epoch=None)  # the first attempt has no epoch time yet


def test_sigterm_is_noted_and_stops_training_at_the_next_batch():
    conditions = stopping.StopConditions()
    with conditions.on_sigterm():
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(StoppedToResume, match="SIGTERM during epoch 3: that epoch is dropped"):
            conditions.check_batch(2)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_partial_files_of_dead_writers_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "sub").mkdir()
    kept = [tmp_path / "model-0003.params", tmp_path / "sub" / "progress.json"]
    partials = [tmp_path / ".model-0004.params.partial-123", tmp_path / "sub" / ".progress.json.partial-9"]
    for path in kept + partials:
        path.write_text("x")
    assert remove_partials(tmp_path) == sorted(partials)
    assert all(path.exists() for path in kept) and not any(path.exists() for path in partials)
